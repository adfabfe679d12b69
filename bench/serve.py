"""Serving overhead: one client's decode through the server against in-process, in one run.

Bundled model, greedy, the same chat prompt and `--new` tokens. Rounds alternate
(a) in-process `LocalEngine` + `run_reply` and (b) a streaming request through a
live server on loopback (httpx, SSE parsed), so machine noise hits both alike.
Decode tok/s = tokens after the first / time after the first (the JSONL summary's
definition), TTFT from the request's start. Then 1, 4, 16 and 32 concurrent
streaming clients against two servers on the same engine, one run: the FIFO
(``--max-batch 1``) and continuous batching (``--max-batch N``, default the CPU's 16),
alternating per client count so machine noise hits both alike: total throughput,
p50/p95 request latency, and the ratios (batched / FIFO at that count, and batched /
one client on the FIFO: the issue's "16 clients >= 4x one client").

With ``--vllm`` (explicit, never automatic: a cold vLLM start costs 1-2 minutes; it needs
``make vllm``) a real vLLM CPU build serves the same model too, as bench/vllm_check.py
starts it (the bundled GGUF's converted checkpoint, float32, eager, 1 GiB KV cache) in its
own process group, stopped at the end, on Ctrl+C and on SIGTERM. Per client count it
alternates with the batched server (which goes first flips each count); the clients send
it the same chat requests, and tokens are counted alike for every server: the entries of
each SSE chunk's ``logprobs.content`` (tok/req shows the count per reply). The ratio
batched / vLLM at each count is the issue's "16 clients >= 0.5x vLLM CPU". ``--no-fifo``
skips the FIFO server's runs (the slowest: it serves one request at a time). On a 2-core
box vLLM's automatic thread binding computes on one core and keeps the other for its API
process (its log says so); logitlab's servers run in this process on ``--threads`` torch
threads, beside the client threads. A markdown table for docs/serve.md ends the output.

``--backend llama.cpp`` serves the bundled GGUF on llama.cpp instead (its continuous
batch: a sequence id per reply in one llama.cpp context, engine/decode/llama_batch.py).

    .venv/bin/python bench/serve.py [--rounds 3] [--new 64] [--threads 2] [--max-batch 16]
                                    [--clients 1,4,16,32] [--vllm] [--no-fifo]
                                    [--backend transformers|llama.cpp]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import torch

from bench.vllm_check import NO_VLLM, SERVED, VLLM, bundled_checkpoint, vllm_server
from engine.decode import LlamaEngine, LocalEngine, run_reply
from engine.model import ModelSpec
from engine.params import resolve_sampling
from engine.serve import ServeOptions, ServerThread, create_app
from engine.serve.batching import CPU_MAX_BATCH
from engine.tokens import ChatMessage

PROMPT = "Write a short story about a lighthouse keeper."


@dataclass(frozen=True)
class Target:
    """A server under load: its name in the output, base URL (no /v1) and model name."""

    name: str
    url: str
    model: str


@dataclass(frozen=True)
class Load:
    """One client count against one server: total tok/s, latency quantiles (s), tokens per reply."""

    tps: float
    p50: float
    p95: float
    per_reply: float

    def line(self, name: str) -> str:
        return (
            f"{name} {self.tps:6.1f} tok/s, p50 {self.p50:6.2f} s, p95 {self.p95:6.2f} s,"
            f" {self.per_reply:4.1f} tok/req"
        )


def in_process(engine: LocalEngine | LlamaEngine, params: object) -> tuple[float, float, int]:
    started = time.perf_counter()
    times: list[float] = []
    run_reply(
        engine.start([ChatMessage("user", PROMPT)], params),  # type: ignore[arg-type]
        on_step=lambda _s: times.append(time.perf_counter()),
    )
    return _rates(started, times)


def served(url: str, model: str, new: int) -> tuple[float, float, int]:
    """One streaming chat request; a token is an entry of a chunk's logprobs.content, so
    every server is counted alike however it groups tokens into chunks."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": new,
        "temperature": 0,
        "stream": True,
        "logprobs": True,
        "top_logprobs": 5,
    }
    started = time.perf_counter()
    times: list[float] = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk["choices"]:
                lp = choice.get("logprobs")
                now = time.perf_counter()
                times += [now] * (len(lp["content"] or ()) if lp else 0)
    if not times:
        raise RuntimeError(f"{url}: a streamed reply without logprobs (no tokens to count)")
    return _rates(started, times)


def _rates(started: float, times: list[float]) -> tuple[float, float, int]:
    ttft = (times[0] - started) * 1000
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return rate, ttft, len(times)


def concurrent(target: Target, clients: int, new: int) -> Load:
    latencies: list[float] = []
    tokens = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        started = time.perf_counter()
        try:
            _rate, _ttft, n = served(target.url, target.model, new)
        except Exception as exc:  # reported by the main thread
            with lock:
                errors.append(exc)
            return
        with lock:
            latencies.append(time.perf_counter() - started)
            tokens[0] += n

    begin = time.perf_counter()
    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    if errors:
        failed = f"{target.name}: {len(errors)} of {clients} requests failed"
        raise RuntimeError(failed) from errors[0]
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return Load(tokens[0] / wall, statistics.median(latencies), q[18], tokens[0] / clients)


def fifo_tps(loads: dict[str, Load]) -> float:
    return loads["FIFO"].tps if "FIFO" in loads else 0.0


def ratios(loads: dict[str, Load], one: float) -> list[str]:
    """Batched against the FIFO at this count and one client on the FIFO (the issue's
    "16 clients >= 4x one client"), and against vLLM (">= 0.5x vLLM CPU")."""
    b = loads["batched"].tps
    out = []
    if "FIFO" in loads:
        out += [f"batched/FIFO {b / loads['FIFO'].tps:.2f}", f"batched/one client {b / one:.2f}"]
    if "vLLM" in loads:
        out.append(f"batched/vLLM {b / loads['vLLM'].tps:.2f}")
    return out


def table(rows: dict[int, dict[str, Load]], names: list[str]) -> str:
    """The markdown table for docs/serve.md: per client count, each server's tok/s and
    p50/p95, then batched / vLLM where vLLM ran."""
    head = ["clients"] + [f"{n} {col}" for n in names for col in ("tok/s", "p50 s", "p95 s")]
    if "vLLM" in names:
        head.append("batched / vLLM")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for clients, loads in rows.items():
        cells = [str(clients)]
        for n in names:
            cells += [f"{loads[n].tps:.1f}", f"{loads[n].p50:.2f}", f"{loads[n].p95:.2f}"]
        if "vLLM" in names:
            cells.append(f"{loads['batched'].tps / loads['vLLM'].tps:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def start_vllm(stack: contextlib.ExitStack, new: int) -> Target:
    """vLLM on the converted checkpoint, until `stack` closes; warmed by one short request."""
    log = Path(tempfile.mkdtemp(prefix="serve-bench-vllm-")) / "vllm.log"
    print(f"starting vLLM (log {log}) ...", flush=True)
    started = time.perf_counter()
    url = stack.enter_context(vllm_server(bundled_checkpoint(), log))
    target = Target("vLLM", url.removesuffix("/v1"), SERVED)
    served(target.url, target.model, min(new, 4))
    print(f"vLLM up in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=CPU_MAX_BATCH)
    ap.add_argument("--clients", default="1,4,16,32")
    ap.add_argument("--vllm", action="store_true", help="compare with vLLM CPU (make vllm)")
    ap.add_argument("--fifo", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--backend", choices=("transformers", "llama.cpp"), default="transformers")
    args = ap.parse_args()
    if args.vllm and not VLLM.exists():
        print(f"--vllm: {NO_VLLM} (no {VLLM})", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl+C, so vLLM's process group is stopped either way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    torch.set_num_threads(args.threads)
    engine = LlamaEngine() if args.backend == "llama.cpp" else LocalEngine()
    model = engine.load(ModelSpec(backend=args.backend, device="cpu"))
    params, _ = resolve_sampling(
        model.generation_config,
        {"temperature": 0.0, "max_new_tokens": args.new, "top_logprobs": 5, "stop": ()},
    )
    fifo_app = create_app(engine, model, ServeOptions(record=False))
    batched_app = create_app(engine, model, ServeOptions(record=False, max_batch=args.max_batch))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ServerThread(fifo_app))
        batched = stack.enter_context(ServerThread(batched_app))
        fifo = Target("FIFO", server.url, model.model_id)
        pair = [Target("batched", batched.url, model.model_id)]
        if args.vllm:
            pair.append(start_vllm(stack, args.new))
        served(server.url, model.model_id, 4)  # warm up both paths
        served(batched.url, model.model_id, 4)
        in_process(engine, params)
        local, remote = [], []
        for _ in range(args.rounds):
            local.append(in_process(engine, params))
            remote.append(served(server.url, model.model_id, args.new))
        lr = statistics.median(r[0] for r in local)
        sr = statistics.median(r[0] for r in remote)
        lt = statistics.median(r[1] for r in local)
        st = statistics.median(r[1] for r in remote)
        print(
            f"model {model.model_id} on {args.backend}, greedy, {args.new} new tokens, top_logprobs 5"
        )
        print(f"decode tok/s  in-process {lr:.1f}  served {sr:.1f}  ratio {sr / lr:.3f}")
        print(f"TTFT ms       in-process {lt:.1f}  served {st:.1f}  overhead {st - lt:+.1f}")
        names = (["FIFO"] if args.fifo else []) + [t.name for t in pair]
        print(f"clients: {' | '.join(names)} (FIFO: --max-batch 1, batched: {args.max_batch})")
        rows: dict[int, dict[str, Load]] = {}
        one = 0.0
        for i, clients in enumerate(int(c) for c in args.clients.split(",")):
            order = ([fifo] if args.fifo else []) + (pair if i % 2 == 0 else pair[::-1])
            loads = rows[clients] = {t.name: concurrent(t, clients, args.new) for t in order}
            print(f"{clients:2d} clients: " + " | ".join(loads[n].line(n) for n in names))
            one = one or fifo_tps(loads)
            print("            " + ", ".join(ratios(loads, one)))
    engine.thread.close()
    print()
    print(f"{model.model_id}, greedy, {args.new} new tokens, top_logprobs 5, streaming:")
    print(table(rows, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
