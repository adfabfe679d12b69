"""logitlab over a real vLLM (run by hand; needs ``make vllm``): starts ``vllm serve`` on
the bundled model's converted checkpoint (fp32, CPU) on a free loopback port and checks,
through the remote engine (``--engine``), what tests/test_vllm_real.py asserts: the
probe, greedy ids equal to the local transformers loop, logprobs, step-through with a
forced token, a branch, /tokenize ids and pieces. Prints one JSON report.

    .venv/bin/python bench/vllm_check.py [--url http://127.0.0.1:8000/v1]

With ``--url`` it checks a vLLM already serving that checkpoint instead of starting one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
SERVED = "smollm2"
START_LIMIT_S = 600.0  # a cold start on 2 busy cores took ~70 s
PROMPTS = ("What is the capital of France?", "Name three primary colours.")
MARGIN = 0.05  # a step counts where the local top-1 leads the top-2 by this (nats)
NO_VLLM = "no vLLM here: run `make vllm` first"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bundled_checkpoint() -> Path:
    """The bundled GGUF's converted checkpoint (a transformers load of the bundled model,
    any dtype, writes it first); vLLM serves it as ``--dtype float32``."""
    from engine.model import gguf_cache
    from engine.model.default_model import default_gguf_path

    checkpoint = gguf_cache.cached_conversion(default_gguf_path())
    if checkpoint is None:
        raise RuntimeError("no converted checkpoint: load the bundled model (transformers) first")
    return checkpoint


def vllm_version() -> str:
    out = subprocess.run([str(VLLM), "--version"], capture_output=True, text=True, timeout=120)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"


@contextlib.contextmanager
def vllm_server(checkpoint: Path, log: Path) -> Iterator[str]:
    """`vllm serve` on a free loopback port until the block ends; yields its /v1 URL."""
    import httpx

    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(VLLM), "serve", str(checkpoint), "--served-model-name", SERVED,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        "--max-model-len", "2048", "--enforce-eager",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"vllm serve exited ({proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve did not start within {START_LIMIT_S:g} s")
            time.sleep(1.0)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def clear_steps(steps: list[Any]) -> int:
    """How many leading steps have a clear local top-1 (margin over the top-2)."""
    for n, step in enumerate(steps):
        if len(step.top) > 1 and step.top[0].logprob - step.top[1].logprob < MARGIN:
            return n
    return len(steps)


def check(url: str, local: Any) -> dict[str, Any]:
    """Everything the test asserts, measured (`local`: a loaded `LocalEngine`)."""
    from engine.decode import RemoteEngine, run_reply
    from engine.model.spec import ModelSpec
    from engine.params import SamplingParams
    from engine.tokens import ChatMessage

    remote = RemoteEngine(url)
    remote.load(ModelSpec())
    report: dict[str, Any] = {"capabilities": remote.capabilities.as_dict(), "prompts": []}
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24, top_logprobs=5)
    for prompt in PROMPTS:
        messages = [ChatMessage("user", prompt)]
        ours = run_reply(local.start(messages, greedy))
        theirs = run_reply(remote.start(messages, greedy))
        n = clear_steps(list(ours.steps))
        ours_ids = [s.token_id for s in ours.steps][:n]
        their_ids = [s.token_id for s in theirs.steps][:n]
        diffs = [
            abs(a.logprob - b.logprob)
            for a, b in zip(ours.steps[:n], theirs.steps[:n], strict=False)
            if a.token_id == b.token_id
        ]
        report["prompts"].append({
            "prompt": prompt,
            "clear_steps": n,
            "tokens": len(ours.steps),
            "same_ids": ours_ids == their_ids,
            "same_ids_all": ours.summary.token_ids == theirs.summary.token_ids,
            "same_pieces": [s.piece for s in ours.steps][:n] == [s.piece for s in theirs.steps][:n],
            "same_text": ours.summary.text == theirs.summary.text,
            "max_logprob_diff": max(diffs, default=0.0),
            "tokenize_same": remote.render_prompt(messages).ids == local.render_prompt(messages).ids,
        })  # fmt: skip
    report["step_force"] = step_force_branch(remote, local)
    remote.close()
    return report


def step_force_branch(remote: Any, local: Any) -> dict[str, Any]:
    """The issue's example (step, step, force candidate 2, continue), then a branch
    (rewind 2, force candidate 1, continue), on both engines."""
    from engine.params import SamplingParams
    from engine.tokens import ChatMessage

    messages = [ChatMessage("user", "What is 2+2?")]
    params = SamplingParams(temperature=0.0, max_new_tokens=16, top_logprobs=5)
    runs = []
    for engine in (remote, local):
        reply = engine.start(messages, params)
        reply.prefill()
        reply.step()
        reply.step()
        reply.step(force=reply.propose().top[2].token_id)
        while not reply.done:
            reply.step()
        forced = reply.summary()
        reply.rewind(2)
        reply.step(force=reply.propose().top[1].token_id)
        while not reply.done:
            reply.step()
        runs.append((forced, reply.summary()))
    (r_forced, r_branch), (l_forced, l_branch) = runs
    return {
        "forced_ids_same": r_forced.token_ids == l_forced.token_ids,
        "forced_text": r_forced.text,
        "forced_text_same": r_forced.text == l_forced.text,
        "branch_ids_same": r_branch.token_ids == l_branch.token_ids,
        "branch_text_same": r_branch.text == l_branch.text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a vLLM already serving the converted checkpoint")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine.decode import LocalEngine
    from engine.model.spec import ModelSpec

    local = LocalEngine()
    local.load(ModelSpec(device="cpu", dtype="float32"))  # converts the GGUF if needed
    checkpoint = bundled_checkpoint()
    started = time.perf_counter()
    if args.url:
        report = check(args.url, local)
    else:
        if not VLLM.exists():
            print(NO_VLLM, file=sys.stderr)
            return 2
        log = Path(tempfile.mkdtemp(prefix="vllm-check-")) / "vllm.log"
        with vllm_server(checkpoint, log) as url:
            report = {"vllm": vllm_version(), "start_s": round(time.perf_counter() - started, 1)}
            report.update(check(url, local))
    local.thread.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
