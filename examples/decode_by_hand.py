"""Decode a reply by hand with the engine's protocol: prefill once, then one step at
a time, each `Step` carrying its token, probability and rank.

    python examples/decode_by_hand.py [MODEL]   (default: the bundled SmolLM2 GGUF)
"""

import sys

from engine.decode import open_engine
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage

spec = ModelSpec(model=sys.argv[1] if len(sys.argv) > 1 else None, device="cpu")
engine = open_engine(spec)  # the registry picks transformers or llama.cpp for the spec
model = engine.load(spec)
print(f"{model.model_id} on {model.device}, context {model.context_window}")

messages = [ChatMessage("user", "What is the capital of France?")]
prompt = engine.render_prompt(messages)
print(f"prompt: {prompt.count} tokens")

reply = engine.start(messages, SamplingParams(temperature=0.0, max_new_tokens=12))
reply.prefill()  # the prompt goes through the model once, filling the KV cache
while not reply.done:  # stops on EOS, a stop string, max_new_tokens or the context window
    step = reply.step()
    print(f"{step.index:3} {step.token_id:6} p={step.prob:.3f} rank={step.rank} {step.text!r}")

summary = reply.summary()
print(f"{summary.finish_reason}: {summary.completion_tokens} tokens, {summary.text!r}")
