"""Time vocabulary lookup: index build, then searches as a user types them.

Runs on the bundled SmolLM2 tokenizer (49k) and on a synthetic 150k byte-level
vocabulary (the size of Llama 3 / Qwen) built in memory, so no download is
needed. The target is < 50 ms per search on 150k tokens: one keystroke.
Then nearest tokens by embedding on the bundled model: the first lookup builds
the normalised matrix, later ones reuse it (reported as a ratio; the test suite
checks only that the matrix is reused, tests/test_nearest.py).

    .venv/bin/python bench/vocab_lookup.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERIES = [
    ("h", "prefix"),
    ("he", "prefix"),
    ("hel", "prefix"),
    ("hello", "exact"),
    (" hello", "exact"),
    ("Ġthe", "prefix"),
    ("e", "substring"),
    ("ing", "substring"),
    ("tion", "substring"),
    ("qzxj", "substring"),
    ("<0xE4>", "prefix"),
]
TARGET_MS = 50.0


def synthetic_tokenizer(size: int = 150_000, seed: int = 0) -> Any:
    """A byte-level BPE tokenizer with `size` random word-like pieces (no merges needed)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    from engine.tokens.views import _unicode_to_byte

    rng = random.Random(seed)
    alphabet = list(_unicode_to_byte())
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    while len(vocab) < size:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
        if rng.random() < 0.5:
            word = "Ġ" + word
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def bundled_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from engine.model import default_model, gguf_cache

    checkpoint = gguf_cache.cached_conversion(default_model.default_gguf_path())
    if checkpoint is None:
        return None
    return AutoTokenizer.from_pretrained(str(checkpoint))


def bench(name: str, tokenizer: Any, repeats: int = 20) -> float:
    from engine.tokens import VocabIndex

    started = time.perf_counter()
    index = VocabIndex(tokenizer)
    build = time.perf_counter() - started
    print(f"\n{name}: {len(index):,} tokens, index built in {build * 1000:.0f} ms")
    print(f"  {'query':<12} {'mode':<10} {'hits':>5} {'median ms':>10} {'max ms':>8}")
    worst = 0.0
    for query, mode in QUERIES:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            hits = index.search(query, mode=mode, limit=50)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t0) * 1000)
        worst = max(worst, max(times))
        print(
            f"  {query!r:<12} {mode:<10} {len(hits):>5} {statistics.median(times):>10.3f} "
            f"{max(times):>8.3f}"
        )
    return worst


def bench_nearest(repeats: int = 20) -> None:
    """First lookup (builds the normalised embedding matrix) against later ones."""
    from engine.model import ModelSpec, load, nearest_tokens

    loaded = load(ModelSpec(device="cpu"))
    paris = loaded.tokenizer.convert_tokens_to_ids("ĠParis")
    t0 = time.perf_counter()
    nearest_tokens(loaded.model, paris, 10)
    first = (time.perf_counter() - t0) * 1000
    later = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        nearest_tokens(loaded.model, paris, 10)
        later.append((time.perf_counter() - t0) * 1000)
    median = statistics.median(later)
    print(
        f"\nnearest tokens (bundled): first {first:.1f} ms, then median {median:.1f} ms "
        f"(first/later = {first / median:.1f}x)"
    )


def main() -> int:
    results = {}
    bundled = bundled_tokenizer()
    if bundled is None:
        print("bundled model not converted yet (run `logitlab info` once); skipping it")
    else:
        results["SmolLM2 (bundled)"] = bench("SmolLM2 (bundled)", bundled)
        bench_nearest()
    results["synthetic 150k"] = bench("synthetic 150k byte-level", synthetic_tokenizer())
    print()
    ok = all(worst < TARGET_MS for worst in results.values())
    for name, worst in results.items():
        print(f"{name}: slowest search {worst:.2f} ms (target < {TARGET_MS:.0f} ms)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
