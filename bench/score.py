"""`logitlab score`'s speed against the bare evaluation each backend does anyway
(run by hand; the llama.cpp half needs ``make llamacpp``).

A 20,000-token text assembled from a fixed word list by a seeded generator (no
download) is scored by the sliding window `logitlab score` uses (windows of W
tokens every W/2, each scoring what the previous did not), on the bundled model:

  transformers  ours: `LocalEngine.score` per window (chunked teacher forcing, the
                records: logprob, rank, entropy)
                bare: ``model(input_ids=window)``, one plain forward per window
                (every position's logits, nothing read from them)
  llama.cpp     ours: `LlamaEngine.score` per window (batches with logits on, records)
                bare: llama-cpp-python ``Llama(logits_all=True)``: ``reset()`` then
                ``eval(window)`` (the same batches, every row copied to ``scores``)

Each pair runs alternately `--rounds` times; the best of each is kept. Rates are
scored tokens per second of wall time (and of process CPU time, steadier on a
shared machine); the ratio is ours / bare (the goal: >= 0.9).

    .venv/bin/python bench/score.py [--tokens 20000] [--window 4096] [--rounds 1]
        [--backends transformers,llama.cpp] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there one all we their been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take "
    "three river city garden morning letter window mountain story music number question"
)
WORDS = _WORDS.split()


def text_ids(engine: Any, tokens: int, seed: int = 0) -> list[int]:
    """Exactly `tokens` ids of a deterministic text: sentences of words from WORDS."""
    rng = random.Random(seed)
    sentences: list[str] = []
    ids: list[int] = []
    while len(ids) < tokens:
        for _ in range(200):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", ",", "?"]))
        ids = [int(i) for i in engine.encode(" ".join(sentences))]
    return ids[:tokens]


def timed(fn: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    scored = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": scored, "wall_s": wall, "cpu_s": cpu, "tok_s": scored / wall}


def pair(
    name: str, ours: Callable[[], int], bare: Callable[[], int], rounds: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "bare": []}
    for _ in range(rounds):
        runs["ours"].append(timed(ours))
        runs["bare"].append(timed(bare))
    best = {key: min(found, key=lambda r: r["wall_s"]) for key, found in runs.items()}
    result = {
        "backend": name,
        "ours": best["ours"],
        "bare": best["bare"],
        "ratio_wall": best["bare"]["wall_s"] / best["ours"]["wall_s"],
        "ratio_cpu": best["bare"]["cpu_s"] / best["ours"]["cpu_s"],
    }
    print(json.dumps(result), flush=True)
    return result


def bench_transformers(tokens: int, window: int, rounds: int, threads: int) -> dict[str, Any]:
    import torch

    from engine.decode import LocalEngine
    from engine.model import ModelSpec
    from tui.cli.score_cmd import windows

    engine = LocalEngine()
    engine.load(ModelSpec(backend="transformers", device="cpu"))
    engine.thread.call(torch.set_num_threads, threads)
    ids = text_ids(engine, tokens)
    plan = windows(len(ids), window, window // 2)
    model = engine.loaded.model

    def ours() -> int:
        return sum(len(engine.score(ids[b:e], start=s)) for b, e, s in plan)

    @torch.inference_mode()
    def forward_all() -> int:
        for b, e, _s in plan:
            model(input_ids=torch.tensor([ids[b:e]]))
        return sum(e - b - s for b, e, s in plan)

    return pair("transformers", ours, lambda: engine.thread.call(forward_all), rounds)


def bench_llama(tokens: int, window: int, rounds: int, threads: int) -> dict[str, Any]:
    import llama_cpp

    from engine.decode.llama import LlamaEngine
    from engine.model import ModelSpec
    from engine.model.llama_selftest import model_params
    from tui.cli.score_cmd import windows

    engine = LlamaEngine()
    engine.load(ModelSpec(backend="llama.cpp", device="cpu"))
    loaded = engine.loaded
    with model_params(loaded.native.config.extra_bufts if loaded.native else False):
        reference = llama_cpp.Llama(  # the same file, context, batch and native setup
            model_path=str(loaded.gguf_path),
            n_ctx=loaded.context_window,
            n_batch=int(loaded.llm.n_batch),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,
            verbose=False,
        )
    llama_cpp.llama_set_n_threads(loaded.llm.ctx, threads, threads)
    ids = text_ids(engine, tokens)
    plan = windows(len(ids), window, window // 2)

    def ours() -> int:
        return sum(len(engine.score(ids[b:e], start=s)) for b, e, s in plan)

    def eval_all() -> int:
        for b, e, _s in plan:
            reference.reset()
            reference.eval(ids[b:e])
        return sum(e - b - s for b, e, s in plan)

    return pair("llama.cpp", ours, eval_all, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backends", default="transformers,llama.cpp")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads for both sides (1 on a shared machine: spinning threads "
        "that lose their core distort both rates)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"# {args.tokens} tokens, window {args.window}, stride {args.window // 2}, "
          f"{args.threads} threads of {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for backend in args.backends.split(","):
        run = bench_transformers if backend == "transformers" else bench_llama
        result = run(args.tokens, args.window, args.rounds, args.threads)
        ours, bare = result["ours"], result["bare"]
        print(
            f"{backend:13} ours {ours['tok_s']:7.1f} tok/s ({ours['wall_s']:.1f} s, cpu "
            f"{ours['cpu_s']:.1f} s) · bare {bare['tok_s']:7.1f} tok/s ({bare['wall_s']:.1f} s, "
            f"cpu {bare['cpu_s']:.1f} s) · ratio {result['ratio_wall']:.2f} wall, "
            f"{result['ratio_cpu']:.2f} cpu",
            flush=True,
        )


if __name__ == "__main__":
    main()
