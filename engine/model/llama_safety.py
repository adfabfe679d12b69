"""Which native configuration llama.cpp may run in this process, proven in a child first.

llama.cpp is C: a kernel that crashes (its AMX matrix multiply on Sapphire Rapids
class CPUs, ggml-org/llama.cpp#20824, dies of SIGSEGV at the first batch of two
or more tokens) kills the whole process, where no Python handler can catch it. So:

- A configuration known to crash never runs: where the binding's system info
  reports ``AMX_INT8 = 1``, extra buffer types (AMX, CPU repack) are off.
- Anything else runs in a child process first (`engine.model.llama_selftest`):
  load, one multi-token batch, a few steps. The verdict is cached in the data
  directory (``llama-selftest.json``) per binding build (version and system info),
  CPU and GGUF file type, so it is paid once. If the child dies, that
  configuration never runs in process: the safe one (extra buffer types off) is
  tried in a child next, and if that dies too, `NativeCrashError` says why and
  how to rebuild (the backend registry then falls back to transformers on `auto`).

Measured (docs/models.md, "llama.cpp on every CPU"): extra buffer types speed up
some quantizations' matrix multiplies, so they stay on wherever they are safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from engine.errors import NativeCrashError
from engine.paths import data_dir, write_atomically

CACHE_FILE = "llama-selftest.json"
TIMEOUT_ENV = "LOGITLAB_LLAMA_SELFTEST_TIMEOUT"
CACHE_ENV = "LOGITLAB_LLAMA_SELFTEST_CACHE"
DEFAULT_TIMEOUT = 300.0  # a child that loads a large model from a cold disk takes a while
KNOWN_CRASH = "AMX_INT8 = 1"  # llama.cpp#20824: AMX kernels crash on multi-token batches
REBUILD = (
    "rebuild llama-cpp-python without native CPU kernels: "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    "pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36"
)


@dataclass(frozen=True)
class NativeConfig:
    """The native knobs logitlab sets on llama.cpp's model parameters."""

    extra_bufts: bool  # extra buffer types: AMX and CPU repack of weights

    @property
    def name(self) -> str:
        return "extra-bufts-on" if self.extra_bufts else "extra-bufts-off"

    @property
    def label(self) -> str:
        return "extra buffer types on" if self.extra_bufts else "extra buffer types off"


FAST = NativeConfig(extra_bufts=True)
SAFE = NativeConfig(extra_bufts=False)


@dataclass(frozen=True)
class Verdict:
    """What one self-test child showed."""

    ok: bool
    detail: str  # "passed in 1.2 s" | "died of SIGSEGV" | "exit status 1: ..."
    buffers: tuple[str, ...] = ()  # weight buffer types the child's load allocated
    log: str = ""  # where the child's output was written when it failed


@dataclass(frozen=True)
class NativeChoice:
    """The configuration a model runs in, and the self-test history behind it."""

    config: NativeConfig
    verdict: Verdict
    system_info: str
    skipped: tuple[str, ...] = ()  # one line per configuration not used, and why


def system_info(llama_cpp: Any) -> str:
    """The binding's system info line (CPU features the build uses), stripped."""
    raw = llama_cpp.llama_print_system_info()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())


def candidates(info: str) -> tuple[NativeConfig, ...]:
    """The configurations to try, fastest first; a known-crashing one is never tried."""
    return (SAFE,) if KNOWN_CRASH in info else (FAST, SAFE)


def choose(llama_cpp: Any, path: Path, file_type: str) -> NativeChoice:
    """The first configuration that survives its self-test for this build, CPU and
    file type (cached); raises `NativeCrashError` when none does."""
    info = system_info(llama_cpp)
    skipped: list[str] = []
    if KNOWN_CRASH in info:
        skipped.append(f"{FAST.label}: not tried, AMX kernels crash (llama.cpp#20824)")
    cache = _read_cache()
    for config in candidates(info):
        key = _key(info, file_type, config)
        verdict = _from_cache(cache.get(key))
        if verdict is None:
            verdict = run_child(path, config)
            cache[key] = {**verdict.__dict__, "buffers": list(verdict.buffers), "at": _now()}
            _write_cache(cache)
        if verdict.ok:
            return NativeChoice(config, verdict, info, tuple(skipped))
        skipped.append(f"{config.label}: {verdict.detail}")
    raise NativeCrashError(
        f"llama.cpp crashed in its self-test on this CPU ({'; '.join(skipped)}), so it "
        f"will not run here; {REBUILD} (or use --backend transformers)"
    )


def run_child(path: Path, config: NativeConfig) -> Verdict:
    """Load `path` in a child with `config`, decode a batch and a few steps."""
    command = [
        sys.executable,
        "-m",
        "engine.model.llama_selftest",
        str(path),
        "--extra-bufts",
        "on" if config.extra_bufts else "off",
    ]
    started = time.perf_counter()
    try:
        child = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_timeout(),
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Verdict(False, f"did not finish in {_timeout():.0f} s")
    except OSError as exc:
        return Verdict(False, f"could not start ({exc.strerror or exc})")
    if child.returncode == 0:
        facts = _last_json(child.stdout)
        buffers = tuple(str(b) for b in facts.get("buffers", ()))
        return Verdict(True, f"passed in {time.perf_counter() - started:.1f} s", buffers)
    if child.returncode < 0:
        detail = f"died of {_signal_name(-child.returncode)}"
    else:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        detail = f"exit status {child.returncode}: {last[:200]}"
    log = _write_log(config, detail, child.stdout, child.stderr)
    return Verdict(False, detail + (f" (log: {log})" if log else ""), (), log)


def _child_env() -> dict[str, str]:
    """Our environment, with this `engine` package importable however it was installed."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, path) if p)}


def _key(info: str, file_type: str, config: NativeConfig) -> str:
    build = f"{_binding_version()}|{info}|{_cpu_model()}"
    digest = hashlib.sha256(build.encode("utf-8")).hexdigest()[:16]
    return f"{digest}|{file_type}|{config.name}"


def _binding_version() -> str:
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    """The CPU's model name and feature flags: one build can move between machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line  # the first of either identifies the CPU well enough
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, "") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _cache_path() -> Path:
    """Where verdicts are kept: the data directory, or the file LOGITLAB_LLAMA_SELFTEST_CACHE
    names (the test suite shares one among its per-test data directories)."""
    named = os.environ.get(CACHE_ENV, "")
    return Path(named) if named else data_dir() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        value = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: the self-test runs again
    return value if isinstance(value, dict) else {}


def _write_cache(cache: dict[str, Any]) -> None:
    # unwritable: the verdict holds for this process; the next one tests again
    with contextlib.suppress(OSError):
        write_atomically(_cache_path(), json.dumps(cache, indent=1), make_parents=True)


def _from_cache(entry: Any) -> Verdict | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("ok"), bool):
        return None
    buffers = entry.get("buffers")
    return Verdict(
        entry["ok"],
        str(entry.get("detail", "")) + " (cached)",
        tuple(str(b) for b in buffers) if isinstance(buffers, list) else (),
        str(entry.get("log", "")),
    )


def _write_log(config: NativeConfig, detail: str, stdout: str, stderr: str) -> str:
    """The child's output, kept beside the crash logs; "" if it cannot be written."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = data_dir() / f"llama-selftest-{stamp}-{config.name}.log"
    text = f"llama.cpp self-test, {config.label}: {detail}\n\n{stderr}\n{stdout}"
    try:
        write_atomically(path, text, make_parents=True)
    except OSError:
        return ""
    return str(path)


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
