"""Step through a reply: look at the next token's candidates before committing, force
another candidate, then rewind and let the model choose again.

    python examples/step_and_force.py [MODEL]   (default: the bundled SmolLM2 GGUF)
"""

import sys

from engine.decode import open_engine
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage

spec = ModelSpec(model=sys.argv[1] if len(sys.argv) > 1 else None, device="cpu")
engine = open_engine(spec)
engine.load(spec)
messages = [ChatMessage("user", "Name a colour.")]
reply = engine.start(messages, SamplingParams(temperature=0.0, max_new_tokens=8, top_logprobs=3))
reply.prefill()

proposal = reply.propose()  # the distribution and the sampler's pick, nothing committed
for c in proposal.top:
    mark = "<- pick" if c.token_id == proposal.sampled else ""
    print(f"  {engine.token_display(c.token_id)!r:16} p={c.prob:.3f} {mark}")

other = next(c for c in proposal.top if c.token_id != proposal.sampled)
forced = reply.step(force=other.token_id)  # commit the runner-up instead
print(f"forced {engine.token_display(forced.token_id)!r} (rank {forced.rank})")
for _ in range(3):
    print(f"then {reply.step().text!r}")

reply.rewind(4)  # back to before the forced token: the model's own pick this time
again = reply.step()
print(f"after rewind: {again.text!r} (the pick again: {again.token_id == proposal.sampled})")
