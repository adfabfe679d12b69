"""llama.cpp with extra buffer types (CPU repack, AMX) on and off (run by hand;
needs ``make llamacpp``). The numbers behind `engine.model.llama_safety`'s choice.

The bundled GGUF (Q4_1) is requantized to Q4_0 and Q4_K_M in a temp dir (the
types llama.cpp repacks on AVX2/AVX-512); each (file, configuration) runs in its
own process, in turn, in one run: prefill at 43 / 542 / 2,042 prompt tokens and
greedy decode of 64 tokens, best of `--rounds`. Ratios are on / off.

``--threads 1 --clock cpu`` measures the process's CPU time on one thread instead of
the wall clock: on a machine other work is loading, the wall clock measures the
load, the CPU time of one thread mostly the kernels' own work.

    .venv/bin/python bench/llamacpp_bufts.py [--rounds 3] [--types Q4_1,Q4_0,Q4_K_M]
        [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FILLER = "The quick brown fox jumps over the lazy dog while the river runs to the sea. "
PREFILL = (43, 542, 2042)
DECODE = 64
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}  # llama_ftype values


def requantize(source: Path, kind: str, folder: Path) -> Path:
    """`source` requantized to `kind` (from its Q4_1 weights: a speed test, not a quality one)."""
    import llama_cpp

    target = folder / f"{source.stem}.{kind}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.allow_requantize = True
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if code != 0:
        raise SystemExit(f"quantizing to {kind} failed ({code})")
    return target


def child(path: str, extra: bool, rounds: int, threads: int, clock: str) -> dict[str, Any]:
    import llama_cpp

    from engine.model.llama_selftest import model_params

    now = time.process_time if clock == "cpu" else time.perf_counter
    with model_params(extra):
        llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=4096,
            n_batch=512,
            verbose=False,
            seed=0,
            **({"n_threads": threads, "n_threads_batch": threads} if threads else {}),
        )
    ids = list(llm.tokenize((FILLER * 200).encode(), add_bos=False))
    result: dict[str, Any] = {}
    for n in PREFILL:
        best = float("inf")
        for _ in range(rounds):
            llm.reset()
            llm._ctx.kv_cache_clear()
            started = now()
            llm.eval(ids[:n])
            best = min(best, now() - started)
        result[f"prefill_{n}_tok_s"] = n / best
    best = float("inf")
    for _ in range(rounds):
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(ids[:43])
        started = now()
        for token in ids[43 : 43 + DECODE]:
            llm.eval([token])
        best = min(best, now() - started)
    result["decode_tok_s"] = DECODE / best
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--types", default="Q4_1,Q4_0,Q4_K_M")
    parser.add_argument("--threads", type=int, default=0, help="0: llama.cpp's default")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "EXTRA"))
    args = parser.parse_args()
    if args.child:
        on = args.child[1] == "on"
        print(json.dumps(child(args.child[0], on, args.rounds, args.threads, args.clock)))
        return
    from engine.model.default_model import default_gguf_path

    source = default_gguf_path()
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.types.split(","):
            path = source if kind == "Q4_1" else requantize(source, kind, Path(folder))
            rows = {}
            for extra in ("on", "off"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--rounds",
                        str(args.rounds),
                        "--threads",
                        str(args.threads),
                        "--clock",
                        args.clock,
                        "--child",
                        str(path),
                        extra,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows[extra] = json.loads(out.stdout.strip().splitlines()[-1])
            for key in rows["on"]:
                on, off = rows["on"][key], rows["off"][key]
                print(f"{kind:<7} {key:<20} on {on:8.1f}  off {off:8.1f}  ratio {on / off:5.2f}")


if __name__ == "__main__":
    main()
