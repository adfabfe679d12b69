"""EleutherAI's lm-eval through `logitlab serve` equals lm-eval's own `hf` model.

Runs the small multiple-choice task in bench/lm_eval_task/ (40 questions, 4 choices,
kept here as JSON lines: no download) twice on the bundled SmolLM2-135M-Instruct:

1. ``lm_eval --model local-completions`` against ``logitlab serve --backend
   transformers`` (token-id prompts, a Hugging Face tokenizer, ``echo`` + ``logprobs``:
   the server scores each context + continuation);
2. ``lm_eval --model hf`` on the same converted checkpoint (float32, CPU),

then compares every choice's loglikelihood (the largest absolute difference) and the
accuracy. The served run is repeated for each ``--concurrent`` count (lm-eval's
``num_concurrent``: requests in flight at once; default 1 and 8) against the same
server, so their wall times compare in one run; each must equal the hf run. lm-eval is heavy (datasets, torch): install it in its own venv, outside the
repository, and name its ``lm_eval`` with ``--lm-eval`` (or put it on PATH)::

    python3 -m venv /work/lmeval-venv
    /work/lmeval-venv/bin/pip install <a CPU torch wheel> lm-eval 'lm-eval[api]'
    .venv/bin/python bench/lm_eval_serve.py --lm-eval /work/lmeval-venv/bin/lm_eval

Exit status 0 when the per-choice difference is within ``--tolerance`` (1e-3) and the
accuracies are equal, 1 otherwise; the numbers go to stdout (``--json`` for one object).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TASK_DIR = ROOT / "bench" / "lm_eval_task"
TASK = "logitlab_mc"
START_TIMEOUT_S = 600  # a first start converts the bundled GGUF (about a minute)
RUN_TIMEOUT_S = 3600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


THREADS = {"n": "1"}  # torch threads of the server and of lm-eval's hf model (--threads)


def _offline_env() -> dict[str, str]:
    """Offline (the task and the checkpoint are local), with `--threads` torch threads:
    two processes spinning OpenMP threads on a small shared machine slow each other ~10x."""
    threads = {"OMP_NUM_THREADS": THREADS["n"], "MKL_NUM_THREADS": THREADS["n"]}
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **threads}


def start_server(port: int, max_batch: int | None) -> tuple[subprocess.Popen[bytes], str]:
    """`logitlab serve --backend transformers` on `port`; its model name once it answers."""
    logitlab = str(Path(sys.executable).with_name("logitlab"))
    command = [logitlab, "serve", "--backend", "transformers", "--port", str(port), "--no-record"]
    if max_batch is not None:
        command += ["--max-batch", str(max_batch)]
    server = subprocess.Popen(command, cwd=ROOT, env=_offline_env(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"logitlab serve exited with status {server.returncode}")
        try:
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
            return server, str(models["data"][0]["id"])
        except httpx.HTTPError:
            time.sleep(1)
    stop_server(server)
    raise SystemExit(f"logitlab serve did not answer within {START_TIMEOUT_S} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def checkpoint() -> Path:
    """The converted checkpoint of the bundled GGUF (the server has converted it)."""
    from engine.model.default_model import default_gguf_path
    from engine.model.gguf_cache import cached_conversion

    found = cached_conversion(default_gguf_path())
    if found is None:
        raise SystemExit("the bundled model has no converted checkpoint yet")
    return found


def run_lm_eval(lm_eval: str, model: str, model_args: str, out: Path, extra: list[str]) -> float:
    """One lm_eval run writing its samples under `out`; its wall time in seconds."""
    command = [
        lm_eval, "--model", model, "--model_args", model_args,
        "--include_path", str(TASK_DIR), "--tasks", TASK,
        "--output_path", str(out), "--log_samples", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=_offline_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"lm_eval --model {model} failed: " + " | ".join(tail))
    return elapsed


def read_run(out: Path) -> tuple[dict[int, list[float]], float]:
    """Each document's per-choice loglikelihoods, and the accuracy, from a run's files."""
    samples = glob.glob(str(out / "**" / f"samples_{TASK}_*.jsonl"), recursive=True)
    results = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    if not samples or not results:
        raise SystemExit(f"lm_eval wrote no samples or results under {out}")
    choices: dict[int, list[float]] = {}
    for line in Path(samples[0]).read_text().splitlines():
        doc = json.loads(line)
        choices[int(doc["doc_id"])] = [float(r[0]) for r in doc["filtered_resps"]]
    accuracy = float(json.loads(Path(results[0]).read_text())["results"][TASK]["acc,none"])
    return choices, accuracy


def compare(served: dict[int, list[float]], hf: dict[int, list[float]]) -> dict[str, Any]:
    if served.keys() != hf.keys():
        raise SystemExit("the two runs scored different documents")
    diffs = [abs(a - b) for doc in served for a, b in zip(served[doc], hf[doc], strict=True)]
    return {"documents": len(served), "choices": len(diffs), "max_abs_diff": max(diffs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm-eval", default=shutil.which("lm_eval"), help="the lm_eval to run")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval hf's batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--concurrent", default="1,8", help="lm-eval num_concurrent values")
    parser.add_argument(
        "--max-batch", type=int, help="the server's --max-batch (1: the FIFO; default its own)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    THREADS["n"] = str(max(1, args.threads))
    if not args.lm_eval:
        parser.error("no lm_eval found: install lm-eval in its own venv and pass --lm-eval PATH")
    with tempfile.TemporaryDirectory(prefix="lm-eval-serve-") as tmp:
        port = _free_port()
        server, name = start_server(port, args.max_batch)
        concurrent = [int(c) for c in args.concurrent.split(",")]
        served_runs: dict[int, tuple[float, dict[int, list[float]], float]] = {}
        try:
            ckpt = checkpoint()
            for n in concurrent:
                out = Path(tmp) / f"served-{n}"
                seconds = run_lm_eval(
                    args.lm_eval,
                    "local-completions",
                    f"model={name},base_url=http://127.0.0.1:{port}/v1/completions,"
                    f"tokenizer_backend=huggingface,tokenizer={ckpt},tokenized_requests=True,"
                    f"max_retries=1,num_concurrent={n}",
                    out,
                    [],
                )
                served_runs[n] = (seconds, *read_run(out))
        finally:
            stop_server(server)
        hf_s = run_lm_eval(
            args.lm_eval,
            "hf",
            f"pretrained={ckpt},dtype=float32",
            Path(tmp) / "hf",
            ["--device", "cpu", "--batch_size", str(args.batch_size)],
        )
        hf, hf_acc = read_run(Path(tmp) / "hf")
    runs = {
        n: {**compare(choices, hf), "accuracy": acc, "seconds": round(seconds, 1)}
        for n, (seconds, choices, acc) in served_runs.items()
    }
    first = runs[concurrent[0]]
    report = {
        "documents": first["documents"],
        "choices": first["choices"],
        "max_abs_diff": max(r["max_abs_diff"] for r in runs.values()),
        "accuracy_hf": hf_acc,
        "hf_s": round(hf_s, 1),
        "served": {str(n): r for n, r in runs.items()},
        "checkpoint": str(ckpt),
    }
    ok = report["max_abs_diff"] <= args.tolerance and all(
        r["accuracy"] == hf_acc for r in runs.values()
    )
    if args.json:
        print(json.dumps({**report, "ok": ok}))
    else:
        print(f"lm-eval {TASK}: {report['documents']} questions, {report['choices']} choices")
        print(f"  max |loglikelihood served - hf| per choice: {report['max_abs_diff']:.2e}")
        print(f"  hf: accuracy {hf_acc:.3f}, {hf_s:.1f} s")
        base = runs[concurrent[0]]["seconds"]
        for n, r in runs.items():
            print(
                f"  served, num_concurrent={n}: accuracy {r['accuracy']:.3f}, "
                f"{r['seconds']:.1f} s ({base / r['seconds']:.2f}x num_concurrent={concurrent[0]})"
            )
        print("  OK" if ok else f"  NOT EQUAL (tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
