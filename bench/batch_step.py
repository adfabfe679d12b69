"""Where a continuous batch's step goes: the batched forward against the rest (each row's
sampling and records), per row count, on the bundled model (transformers, float32).

Each count: that many copies of one chat prompt join a `ContinuousBatch`, then
`--steps` steps are timed, the forward (`BatchRunner.step`) apart.

    .venv/bin/python bench/batch_step.py [--rows 1,4,16] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.decode.continuous import ContinuousBatch, Newcomer
from engine.model.loading import load
from engine.model.spec import ModelSpec
from engine.params import resolve_sampling

PROMPT = "Write a short story about a lighthouse keeper."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,4,16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load(ModelSpec(device="cpu"))
    params, _ = resolve_sampling(
        {},
        {"temperature": 0.0, "max_new_tokens": args.steps + 8, "top_logprobs": 5, "stop": ()},
    )
    chat = [{"role": "user", "content": PROMPT}]
    ids = loaded.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=False)
    for rows in (int(r) for r in args.rows.split(",")):
        batch = ContinuousBatch(loaded)
        batch.advance([Newcomer(i, ids, params, threading.Event()) for i in range(rows)])
        runner = batch._batch
        step, forward = runner.step, [0.0]

        def timed(
            tokens: list[int], step: object = step, forward: list[float] = forward
        ) -> torch.Tensor:
            started = time.perf_counter()
            out = step(tokens)  # type: ignore[operator]
            forward[0] += time.perf_counter() - started
            return out  # type: ignore[no-any-return]

        runner.step = timed  # type: ignore[method-assign]
        started = time.perf_counter()
        for _ in range(args.steps):
            batch.advance([])
        total = (time.perf_counter() - started) / args.steps * 1000.0
        fwd = forward[0] / args.steps * 1000.0
        print(
            f"{rows:3d} rows: step {total:6.1f} ms = forward {fwd:6.1f} ms + sampling and "
            f"records {total - fwd:5.1f} ms; {rows / total * 1000.0:6.1f} tok/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
