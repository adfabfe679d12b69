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

    .venv/bin/python bench/serve.py [--rounds 3] [--new 64] [--threads 2] [--max-batch 16]
                                    [--clients 1,4,16,32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import torch

from engine.decode import LocalEngine, run_reply
from engine.model import ModelSpec
from engine.params import resolve_sampling
from engine.serve import ServeOptions, ServerThread, create_app
from engine.serve.batching import CPU_MAX_BATCH
from engine.tokens import ChatMessage

PROMPT = "Write a short story about a lighthouse keeper."


def in_process(engine: LocalEngine, params: object) -> tuple[float, float, int]:
    started = time.perf_counter()
    times: list[float] = []
    run_reply(
        engine.start([ChatMessage("user", PROMPT)], params),  # type: ignore[arg-type]
        on_step=lambda _s: times.append(time.perf_counter()),
    )
    return _rates(started, times)


def served(url: str, model: str, new: int) -> tuple[float, float, int]:
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
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk["choices"]:
                lp = choice.get("logprobs")
                now = time.perf_counter()
                times += [now] * (len(lp["content"]) if lp else 0)
    return _rates(started, times)


def _rates(started: float, times: list[float]) -> tuple[float, float, int]:
    ttft = (times[0] - started) * 1000
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return rate, ttft, len(times)


def concurrent(url: str, model: str, clients: int, new: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def one() -> None:
        started = time.perf_counter()
        _rate, _ttft, n = served(url, model, new)
        with lock:
            latencies.append(time.perf_counter() - started)
            tokens[0] += n

    begin = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return tokens[0] / wall, statistics.median(latencies), q[18]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=CPU_MAX_BATCH)
    ap.add_argument("--clients", default="1,4,16,32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = LocalEngine()
    model = engine.load(ModelSpec(device="cpu"))
    params, _ = resolve_sampling(
        model.generation_config,
        {"temperature": 0.0, "max_new_tokens": args.new, "top_logprobs": 5, "stop": ()},
    )
    fifo_app = create_app(engine, model, ServeOptions(record=False))
    batched_app = create_app(engine, model, ServeOptions(record=False, max_batch=args.max_batch))
    with ServerThread(fifo_app) as server, ServerThread(batched_app) as batched:
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
        print(f"model {model.model_id}, greedy, {args.new} new tokens, top_logprobs 5")
        print(f"decode tok/s  in-process {lr:.1f}  served {sr:.1f}  ratio {sr / lr:.3f}")
        print(f"TTFT ms       in-process {lt:.1f}  served {st:.1f}  overhead {st - lt:+.1f}")
        print(f"clients: FIFO (--max-batch 1) | batched (--max-batch {args.max_batch})")
        one = 0.0
        for clients in (int(c) for c in args.clients.split(",")):
            f_tps, f50, f95 = concurrent(server.url, model.model_id, clients, args.new)
            b_tps, b50, b95 = concurrent(batched.url, model.model_id, clients, args.new)
            one = one or f_tps
            print(
                f"{clients:2d} clients: FIFO {f_tps:6.1f} tok/s, p50 {f50:6.2f} s, p95 {f95:6.2f} s"
                f" | batched {b_tps:6.1f} tok/s, p50 {b50:6.2f} s, p95 {b95:6.2f} s"
                f" | batched/FIFO {b_tps / f_tps:.2f}, batched/one client {b_tps / one:.2f}"
            )
    engine.thread.close()


if __name__ == "__main__":
    main()
