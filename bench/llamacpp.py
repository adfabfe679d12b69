"""The llama.cpp backend's speed (run by hand; needs ``make llamacpp``).

Each part runs in its own process (peak RSS is per process), on the bundled
model, greedy, 128 new tokens from the same 43-token chat prompt:

  backend     our `LlamaEngine`: the Decoder recording top-10, raw and processed numbers
  bare        a plain llama-cpp-python loop: eval one token, read the full logits row,
              top-10 and entropy in numpy (the ceiling for any loop over the binding)
  completion  llama-cpp-python's ``create_completion(logprobs=10)`` (logits_all=True)
  transformers our `LocalEngine` (the GGUF dequantized to float32), top-10 recorded

then prefill (time to first token) at 43 / 542 / 2,042 prompt tokens on both of
our backends. Rates count the tokens after the first over the time after it.

    .venv/bin/python bench/llamacpp.py [--new 128] [--rounds 3] [--no-prefill]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT = "Explain in a few paragraphs how a transformer language model generates text."
FILLER = "The quick brown fox jumps over the lazy dog while the river runs to the sea. "


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(backend: str) -> Any:
    from engine.decode import backend_engine
    from engine.model import ModelSpec

    engine = backend_engine("llama.cpp" if backend == "backend" else "transformers")
    engine.load(ModelSpec(backend="llama.cpp" if backend == "backend" else "transformers"))
    return engine


def _prompt_ids(engine: Any) -> list[int]:
    from engine.tokens import ChatMessage

    ids: list[int] = engine.chat_ids([ChatMessage("user", PROMPT)])
    return ids


def part_engine(backend: str, new: int, rounds: int, prefill: bool) -> dict[str, Any]:
    from engine.decode import run_reply
    from engine.params import SamplingParams

    engine = _engine(backend)
    ids = _prompt_ids(engine)
    params = SamplingParams(temperature=0.0, max_new_tokens=new, top_logprobs=10)
    rates = []
    for _ in range(rounds):
        result = run_reply(engine.start_ids(ids, params))
        assert result.summary.completion_tokens == new, "the prompt hit EOS early"
        rates.append(result.summary.tokens_per_second)
    out: dict[str, Any] = {"prompt_tokens": len(ids), "tok_s": statistics.median(rates)}
    if prefill:
        filler = engine.encode(FILLER * 200)
        for n in (43, 542, 2042):
            prompt = [*ids, *filler][:n]
            times = []
            for round_ in range(rounds):
                # a different first token each round: llama.cpp's prefix reuse must not help
                prompt[0] = filler[round_]
                reply = engine.start_ids(prompt, params.with_changes(max_new_tokens=1))
                started = time.perf_counter()
                reply.prefill()
                reply.step()
                times.append((time.perf_counter() - started) * 1000)
            out[f"ttft_ms_{n}"] = statistics.median(times)
    out["peak_rss_mib"] = _peak_mib()
    return out


def _llama(**kwargs: Any) -> Any:
    import llama_cpp

    from engine.model.default_model import default_gguf_path

    return llama_cpp.Llama(model_path=str(default_gguf_path()), n_ctx=8192, verbose=False, **kwargs)


def part_bare(new: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    engine = _engine("backend")  # for the prompt ids only
    ids = _prompt_ids(engine)
    del engine
    llm = _llama()
    n_vocab = llm.n_vocab()
    rates = []
    for _ in range(rounds):
        llm.reset()
        llm.eval(ids)
        started = 0.0
        for i in range(new):
            if i == 1:
                started = time.perf_counter()
            row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,)).copy()
            shifted = row - row.max()
            logprobs = shifted - np.log(np.exp(shifted).sum())
            _entropy = -(np.exp(logprobs) * logprobs).sum()
            top = np.argpartition(-logprobs, 10)[:10]
            _top = top[np.argsort(-logprobs[top])]
            llm.eval([int(row.argmax())])
        rates.append((new - 1) / (time.perf_counter() - started))
    return {"tok_s": statistics.median(rates), "peak_rss_mib": _peak_mib()}


def part_completion(new: int, rounds: int) -> dict[str, Any]:
    llm = _llama(logits_all=True)
    from engine.tokens import ChatMessage

    engine = _engine("backend")
    text = engine.loaded.tokenizer.decode(engine.chat_ids([ChatMessage("user", PROMPT)]))
    del engine
    rates = []
    for _ in range(rounds):
        llm.reset()
        started = time.perf_counter()
        llm.create_completion(text, max_tokens=1, temperature=0.0, logprobs=10)
        first = time.perf_counter() - started
        llm.reset()
        started = time.perf_counter()
        out = llm.create_completion(text, max_tokens=new, temperature=0.0, logprobs=10)
        total = time.perf_counter() - started
        made = out["usage"]["completion_tokens"]
        rates.append((made - 1) / max(total - first, 1e-9))
    return {"tok_s": statistics.median(rates), "peak_rss_mib": _peak_mib()}


def run_part(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{argv[:2]} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-prefill", action="store_true")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        prefill = not args.no_prefill
        if args.part in ("backend", "transformers"):
            result = part_engine(args.part, args.new, args.rounds, prefill)
        elif args.part == "bare":
            result = part_bare(args.new, args.rounds)
        else:
            result = part_completion(args.new, args.rounds)
        print(json.dumps(result))
        return
    common = ["--new", str(args.new), "--rounds", str(args.rounds)]
    common += ["--no-prefill"] if args.no_prefill else []
    results = {p: run_part(["--part", p, *common]) for p in ("backend", "bare", "completion")}
    results["transformers"] = run_part(["--part", "transformers", *common])
    ours = results["backend"]["tok_s"]
    print(f"{'':<14} {'tok/s':>8} {'peak RSS MiB':>13}")
    for name, result in results.items():
        print(f"{name:<14} {result['tok_s']:>8.1f} {result['peak_rss_mib']:>13.0f}")
    print(f"backend / bare       {ours / results['bare']['tok_s']:.2f}  (target >= 0.9)")
    print(f"backend / completion {ours / results['completion']['tok_s']:.2f}  (target >= 3)")
    print(f"backend / transformers {ours / results['transformers']['tok_s']:.2f}")
    if not args.no_prefill:
        for n in (43, 542, 2042):
            key = f"ttft_ms_{n}"
            print(
                f"TTFT at {n:>5} tokens: llama.cpp {results['backend'][key]:8.0f} ms   "
                f"transformers {results['transformers'][key]:8.0f} ms"
            )


if __name__ == "__main__":
    main()
