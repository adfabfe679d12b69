"""Fan-out of K continuations as one batched run against one reply (run by hand).

The bundled model on transformers (CPU, float32): a sampled reply of `--new` tokens
is fanned out from its step 4 into K continuations, (a) as one batched run (what the
workbench's fan-out does on transformers, engine/decode/fanout.py) and (b) one after
another on the live reply (the sequential fan-out), against (c) one continuation
alone. Rounds alternate so machine noise hits all three alike. Prints medians, tokens
made, and the ratios a/c (the issue's bound: 2.5 for K = 8) and b/c.

    .venv/bin/python bench/fanout.py [--k 8] [--new 64] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.decode import BranchFinished, LocalEngine, ReplyDriver
from engine.decode import driver as driver_module
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage

PROMPT = "Write a long story about a lighthouse keeper and a storm."
AT = 4  # the fan-out's step


def fan_out(
    engine: Any, params: SamplingParams, seeds: list[int], batched: bool
) -> tuple[float, int]:
    """(seconds, tokens made) of a fan-out of `seeds` from step AT of a fresh reply."""
    driver_module.can_batch = _can_batch if batched else (lambda _e: False)  # type: ignore[assignment]
    events: list[Any] = []
    driver = ReplyDriver(engine, [ChatMessage("user", PROMPT)], params, on_event=events.append)
    driver.run()  # the reply the fan-out branches from (not timed)
    target = driver.live[:AT]
    events.clear()
    started = time.perf_counter()
    driver.fan_out(target, seeds)
    seconds = time.perf_counter() - started
    made = sum(len(e.steps) for e in events if isinstance(e, BranchFinished))
    return seconds, made


_can_batch = driver_module.can_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--new", type=int, default=64, help="max new tokens of the reply")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = LocalEngine()
    engine.load(ModelSpec(device="cpu", dtype="float32", backend="transformers"))
    # top-k 0, temperature 1: rows rarely stop early, so K rows decode about `new` tokens
    params = SamplingParams(temperature=1.0, top_k=0, max_new_tokens=args.new, top_logprobs=10)
    seeds = list(range(100, 100 + args.k))
    times: dict[str, list[float]] = {"batched": [], "sequential": [], "one": []}
    made: dict[str, list[int]] = {"batched": [], "sequential": [], "one": []}
    for _ in range(args.rounds):
        for name, batched, these in (
            ("batched", True, seeds),
            ("sequential", False, seeds),
            ("one", False, seeds[:1]),
        ):
            seconds, tokens = fan_out(engine, params, these, batched)
            times[name].append(seconds)
            made[name].append(tokens)
            print(f"  {name}: {seconds:.2f} s, {tokens} tokens", flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    for name in times:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:>10}: median {median[name]:.2f} s ({runs}); tokens made {made[name]}")
    print(f"K = {args.k}: batched / one = {median['batched'] / median['one']:.2f} "
          f"(issue bound 2.5), sequential / one = {median['sequential'] / median['one']:.2f}")  # fmt: skip
    engine.thread.close()


if __name__ == "__main__":
    main()
