"""Decode speed: our loop against ``model.generate()`` in one process (run by hand).

Same model, prompt and 128 new tokens; runs alternate (a) ``generate(do_sample=
False)``, (b) our loop greedy recording the top-10, (c) our loop recording
nothing, so machine noise hits all three alike. Prints median tok/s, the
ratios b/a and b/c, time to first token, and peak RSS.

It then times prefill (time to first token) on longer prompts, 542 and 2,042
tokens, alternating ``generate(max_new_tokens=1)`` with our prefill + first step.

    .venv/bin/python bench/decode.py [--rounds 3] [--new 128] [--threads 2] [--no-prefill]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.decode import Decoder
from engine.model import ModelSpec, load
from engine.params import SamplingParams
from engine.tokens import ChatMessage, chat_prompt_ids

PROMPT = "Explain in a few paragraphs how a transformer language model generates text."


def run_generate(loaded: Any, ids: list[int], new: int) -> tuple[float, float]:
    """(tokens/s after the first token, TTFT ms) for generate(); TTFT from a 1-token run.

    The prompt is chosen so greedy decoding runs all `new` tokens without EOS
    (our ids equal generate()'s, so both decode the same tokens).
    """
    tensor = torch.tensor([ids])
    mask = torch.ones_like(tensor)
    kwargs = {"attention_mask": mask, "do_sample": False, "pad_token_id": 2}
    with torch.inference_mode():
        started = time.perf_counter()
        loaded.model.generate(tensor, max_new_tokens=1, **kwargs)
        ttft = time.perf_counter() - started
        started = time.perf_counter()
        out = loaded.model.generate(tensor, max_new_tokens=new, **kwargs)
        total = time.perf_counter() - started
    made = out.shape[1] - len(ids)
    return (made - 1) / max(total - ttft, 1e-9), ttft * 1000


def run_ours(loaded: Any, ids: list[int], new: int, top: int) -> tuple[float, float]:
    decoder = Decoder(loaded, SamplingParams(max_new_tokens=new, top_logprobs=top))
    decoder.prefill(ids)
    for _ in decoder:
        pass
    summary = decoder.summary()
    return summary.tokens_per_second, summary.time_to_first_token_ms


def prefill_ms(loaded: Any, ids: list[int]) -> tuple[float, float]:
    """(generate TTFT ms, our TTFT ms) for one prompt, measured back to back."""
    tensor = torch.tensor([ids])
    kwargs = {"attention_mask": torch.ones_like(tensor), "do_sample": False, "pad_token_id": 2}
    with torch.inference_mode():
        started = time.perf_counter()
        loaded.model.generate(tensor, max_new_tokens=1, **kwargs)
        theirs = time.perf_counter() - started
    started = time.perf_counter()
    decoder = Decoder(loaded, SamplingParams(max_new_tokens=1, top_logprobs=10))
    decoder.prefill(ids)
    decoder.step()
    ours = time.perf_counter() - started
    return theirs * 1000, ours * 1000


def long_prompt(loaded: Any, size: int) -> list[int]:
    text = " ".join([PROMPT] * (size // 10 + 2))
    return list(loaded.tokenizer(text)["input_ids"][:size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-prefill", action="store_true", help="skip the long-prompt TTFT part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load(ModelSpec(device="cpu", dtype="float32"))
    ids = chat_prompt_ids(loaded.tokenizer, [ChatMessage("user", PROMPT)])
    runs: dict[str, list[tuple[float, float]]] = {"a": [], "b": [], "c": []}
    run_ours(loaded, ids, 8, 10)  # warm-up
    run_generate(loaded, ids, 8)
    for _ in range(args.rounds):
        runs["a"].append(run_generate(loaded, ids, args.new))
        runs["b"].append(run_ours(loaded, ids, args.new, 10))
        runs["c"].append(run_ours(loaded, ids, args.new, 0))
    tps = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    ttft = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    names = {
        "a": "generate(do_sample=False)",
        "b": "ours greedy, top-10 recorded",
        "c": "ours greedy, recording off",
    }
    print(
        f"prompt {len(ids)} tokens, {args.new} new, {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    for key, name in names.items():
        per_run = ", ".join(f"{r[0]:.1f}" for r in runs[key])
        print(f"({key}) {name:<30} {tps[key]:6.2f} tok/s  TTFT {ttft[key]:7.1f} ms  [{per_run}]")
    print(f"ratio b/a {tps['b'] / tps['a']:.3f}   b/c {tps['b'] / tps['c']:.3f}")
    if not args.no_prefill:
        for size in (len(ids), 542, 2042):
            prompt = ids if size == len(ids) else long_prompt(loaded, size)
            pairs = [prefill_ms(loaded, prompt) for _ in range(args.rounds)]
            theirs = statistics.median(p[0] for p in pairs)
            ours = statistics.median(p[1] for p in pairs)
            print(
                f"prefill {len(prompt):5d} tokens: generate {theirs:7.1f} ms  ours {ours:7.1f} ms"
                f"  ratio ours/theirs {ours / theirs:.3f}"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
