"""Compare over a file against two `score` passes, and the memory of both sides (run by hand).

Loads the bundled model twice, on transformers (float32, side A) and on llama.cpp
(Q4_1, side B), in one process, and prints the peak RSS with both loaded. Then, on a
corpus (docs/workbench.md by default) tokenized and windowed as `logitlab score` does, it
alternates (a) a `score` pass of A, (b) a `score` pass of B and (c) the corpus
comparison of A against B (`engine.compare.corpus.compare_corpus`, what `logitlab
compare --file` runs), so machine noise hits all three alike. Prints each median and
the ratio c / (a + b): the issue's bound is 1.1.

    .venv/bin/python bench/compare.py [--file PATH] [--tokens N] [--rounds 3] [--window W] [--stride S]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.compare import Side, close_side, open_side, parse_side
from engine.compare.corpus import compare_corpus
from engine.decode import prompt_scoring
from tui.cli.score_cmd import bos_id, plan_sizes, windows

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def score_pass(side: Side, ids: list[int], plan: list[tuple[int, int, int]]) -> None:
    """What `logitlab score` does per window (top 0: the text and json formats)."""
    scoring = prompt_scoring(side.engine)
    for begin, end, start in plan:
        scoring.score(ids[begin:end], top=0, start=start)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "docs" / "workbench.md"))
    parser.add_argument("--tokens", type=int, default=2048, help="corpus tokens used")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=None, help="default: score's")
    parser.add_argument("--stride", type=int, default=None, help="default: score's")
    args = parser.parse_args()

    base = peak_rss_mb()
    a = open_side(parse_side(["backend=transformers", "dtype=float32", "device=cpu"]), "A")
    after_a = peak_rss_mb()
    b = open_side(parse_side(["backend=llama.cpp", "device=cpu"], flag="--b"), "B")
    both = peak_rss_mb()
    print(
        f"peak RSS: {base:.0f} MB at start, {after_a:.0f} MB with A (transformers fp32), "
        f"{both:.0f} MB with A and B (llama.cpp Q4_1) loaded at once"
    )
    text = Path(args.file).read_text(encoding="utf-8")
    bos = bos_id(a.engine)
    ids = [*([bos] if bos is not None else []), *a.engine.encode(text)][: args.tokens]
    context = min(a.model.context_window, b.model.context_window)
    window, stride = plan_sizes(args.window, args.stride, context)
    plan = windows(len(ids), window, stride)
    print(f"corpus: {len(ids)} tokens of {args.file}, window {window}, stride {stride}, "
          f"{len(plan)} windows")  # fmt: skip
    times: dict[str, list[float]] = {"score A": [], "score B": [], "compare": []}
    for _ in range(args.rounds):
        times["score A"].append(timed(lambda: score_pass(a, ids, plan)))
        times["score B"].append(timed(lambda: score_pass(b, ids, plan)))
        times["compare"].append(timed(lambda: compare_corpus(a, b, ids, plan)))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, value in medians.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:>8}: median {value:.2f} s  ({runs})")
    ratio = medians["compare"] / (medians["score A"] + medians["score B"])
    print(f"compare / (score A + score B) = {ratio:.3f}  (issue bound: 1.1)")
    print(f"peak RSS at the end: {peak_rss_mb():.0f} MB")
    close_side(b)
    close_side(a)


if __name__ == "__main__":
    main()
