"""The child side of llama.cpp's self-test: ``python -m engine.model.llama_selftest``.

Loads one GGUF file with one native configuration, decodes a multi-token batch
(the shape that crashes llama.cpp's AMX kernels, ggml-org/llama.cpp#20824) and a
few single-token steps, and prints one JSON line: the binding's system info and
the buffer types in use. If the native code crashes, this process dies of the
signal and `engine.model.llama_safety` (the parent) sees it; nothing of the
parent is lost.

`LOGITLAB_LLAMA_SELFTEST_CRASH` is a test-only hook: ``all`` makes this child die
of a real SIGSEGV (an invalid memory read, not a Python exception) in every
configuration, ``extra`` only where extra buffer types are on, so the fallback
to the safe configuration and to transformers are tested on any CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

CRASH_ENV = "LOGITLAB_LLAMA_SELFTEST_CRASH"
# a prompt of ~40 tokens: several matrix-multiply tiles wide, as a real first message is
PROMPT = (
    "Hello there, how are you doing today my friend? Please count from one to ten, "
    "then name three planets of the solar system and say which is the largest."
)
STEPS = 4


@contextmanager
def model_params(extra_bufts: bool) -> Iterator[None]:
    """Make `llama_cpp.Llama` build its model with ``use_extra_bufts`` as asked.

    The constructor does not expose the field (llama-cpp-python 0.3.36); it starts
    from ``llama_model_default_params()``, so that function is wrapped for the
    duration of one construction. Loads run on one engine thread at a time."""
    import importlib

    binding: Any = importlib.import_module("llama_cpp.llama").llama_cpp  # the module Llama uses
    original = binding.llama_model_default_params

    def defaults() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = extra_bufts
        return params

    binding.llama_model_default_params = defaults
    try:
        yield
    finally:
        binding.llama_model_default_params = original


def _crash_on_purpose(extra_bufts: bool) -> None:
    hook = os.environ.get(CRASH_ENV, "").strip()
    if hook == "all" or (hook == "extra" and extra_bufts):
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing kernel would


def run(path: str, extra_bufts: bool) -> dict[str, Any]:
    """Load `path`, decode one batch and a few steps; the facts as a dict."""
    import llama_cpp

    log = io.StringIO()  # llama.cpp's load log names the buffer types it allocates
    with model_params(extra_bufts), redirect_stderr(log):
        llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_gpu_layers=0, verbose=True, seed=0)
    ids = list(llm.tokenize(PROMPT.encode("utf-8"), add_bos=False, special=False))
    _crash_on_purpose(extra_bufts)
    llm.eval(ids)  # one multi-token batch: the shape that crashes
    for _ in range(STEPS):
        row = _last_logits(llama_cpp, llm)
        if not all(math.isfinite(x) for x in row):
            raise RuntimeError("llama.cpp returned non-finite logits")
        llm.eval([max(range(len(row)), key=row.__getitem__)])  # greedy: one-token batches
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    return {
        "ok": True,
        "prompt_tokens": len(ids),
        "steps": STEPS,
        "system_info": info,
        "buffers": buffer_types(log.getvalue()),
    }


def buffer_types(load_log: str) -> list[str]:
    """The weight buffer types llama.cpp's load log names ("CPU_REPACK model buffer
    size = 26.6 MiB"), in order, each once."""
    found: list[str] = []
    for match in re.finditer(r"(\S+) model buffer size", load_log):
        if match.group(1) not in found:
            found.append(match.group(1))
    return found


def _last_logits(llama_cpp: Any, llm: Any) -> list[float]:
    """The logits after the last evaluated position: [vocab] floats."""
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    row = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float))
    return [float(row[i]) for i in range(int(llm.n_vocab()))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.model.llama_selftest")
    parser.add_argument("path")
    parser.add_argument("--extra-bufts", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    faulthandler.enable(file=sys.stderr)  # a crash leaves its stack for the parent's log
    result = run(args.path, args.extra_bufts == "on")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
