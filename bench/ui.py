"""The workbench keeps up with the engine (run by hand).

On the bundled model, greedy, 128 new tokens, alternating in one process, all
torch work on one engine thread as in the app. Wall clock on both sides:
(h) the headless decoder: decode rate from the first step to the last, and time
to first token from the start (prompt rendering + prefill + first step);
(u) the UI: decode rate from the first token on the screen to the last, and
time to first token from pressing Enter. Then, during a generation, keys typed
into the prompt box: from the key sent to its character being on the screen.
Targets (issue 5): u/h decode rate >= 0.90, key latency < 100 ms.

    .venv/bin/python bench/ui.py [--rounds 3] [--new 128] [--threads 2]
        [--variants app,threads1,switch1ms,budget8] [--backend llama.cpp]

``--backend llama.cpp`` (needs ``make llamacpp``) runs both sides on the bundled
GGUF file in llama.cpp, the headless side through the engine's protocol.

Variants (alternating with the headless run in every round): ``app`` the UI as
the app runs it; ``threadsN`` torch's intra-op threads set to N for the UI run
only; ``switchXms`` the GIL switch interval set to X ms for the UI run only;
``budgetN`` the frame pacer's budget set to N% of the main thread
(tui/pacing.py); ``chatXs`` the chat appended every X seconds, ``inspectXs``
the inspector following the reply every X seconds; ``off-chat``, ``off-stream``, ``off-status``, ``off-entropy``
that part of the UI not painted (where the UI's cost goes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.text import Text
from textual.strip import Strip

import tui.screens.main as main_screen
import tui.widgets.chat_pane as chat_pane
from engine.decode import Decoder, Engine, LocalEngine
from engine.model import EngineThread, ModelSpec, load
from engine.params import SamplingParams
from engine.tokens import ChatMessage, chat_prompt_ids
from tui import pacing
from tui.app import make_app
from tui.screens.main import MainScreen
from tui.settings import UISettings
from tui.widgets.chat_pane import ChatPane
from tui.widgets.entropy_line import EntropyLine
from tui.widgets.status_bar import StatusBar
from tui.widgets.token_stream import TokenStream

PROMPT = "Explain in a few paragraphs how a transformer language model generates text."
SIZE = (120, 36)


def rate(count: int, first: float, last: float) -> float:
    return (count - 1) / max(last - first, 1e-9)


def headless(loaded: Any, new: int) -> tuple[float, float]:
    """(decode tok/s, TTFT ms) of the engine alone."""
    started = time.perf_counter()
    ids = chat_prompt_ids(loaded.tokenizer, [ChatMessage("user", PROMPT)])
    decoder = Decoder(loaded, SamplingParams(max_new_tokens=new, top_logprobs=10))
    decoder.prefill(ids)
    first = last = 0.0
    for _ in decoder:
        last = time.perf_counter()
        first = first or last
    return rate(len(decoder.steps), first, last), (first - started) * 1000


def headless_protocol(engine: Engine, new: int) -> tuple[float, float]:
    """(decode tok/s, TTFT ms) of an engine alone, through its protocol."""
    started = time.perf_counter()
    params = SamplingParams(max_new_tokens=new, top_logprobs=10, temperature=0.0)
    reply = engine.start([ChatMessage("user", PROMPT)], params)
    reply.prefill()
    first = last = 0.0
    count = 0
    while not reply.done:
        reply.step()
        last = time.perf_counter()
        first = first or last
        count += 1
    return rate(count, first, last), (first - started) * 1000


def sides(backend: str, thread: EngineThread) -> tuple[Callable[[int], Any], Callable[[], Engine]]:
    """(the headless run for N new tokens, the engine an app is given) on `backend`."""
    if backend == "llama.cpp":
        from engine.decode.llama import LlamaEngine

        engine = LlamaEngine(thread=thread)
        engine.load(ModelSpec(device="cpu", backend="llama.cpp"))
        return (lambda new: headless_protocol(engine, new)), (lambda: engine)
    loaded = thread.call(load, ModelSpec(device="cpu"))
    return (lambda new: thread.call(headless, loaded, new)), (
        lambda: LocalEngine(loaded, thread=thread)
    )


async def in_the_ui(
    engine: Engine, new: int, *, type_keys: bool
) -> tuple[float, float, list[float]]:
    """(decode tok/s on the screen, TTFT ms from Enter, key latencies ms) for one reply."""
    settings = UISettings(overrides={"temperature": 0.0, "max_new_tokens": new, "top_logprobs": 10})
    app = make_app(engine, settings=settings, persist_theme=False)
    latencies: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        while not (isinstance(app.screen, MainScreen) and app.screen.facts is not None):
            await pilot.pause(0.05)
        screen = app.screen
        prompt = screen.query_one("#prompt")
        prompt.focus()
        prompt.insert(PROMPT)  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        stream = screen.query_one(TokenStream)
        arrivals: list[tuple[float, int]] = []  # (when, steps on screen): no polling loop,
        append = stream.append  # which would itself take the CPU and GIL it measures

        def recording(steps: Any) -> None:
            append(steps)
            arrivals.append((time.perf_counter(), len(stream.steps)))

        stream.append = recording  # type: ignore[method-assign]
        sent = time.perf_counter()
        app.simulate_key("enter")  # not pilot.press: that also waits for the app to idle
        typed = 0
        while not (stream.steps and stream.steps[-1].finish_reason is not None):
            if type_keys and stream.steps and typed < 20:
                before = len(prompt.text)  # type: ignore[attr-defined]
                pressed = time.perf_counter()
                app.simulate_key("x")
                while len(prompt.text) == before:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.001)
                latencies.append((time.perf_counter() - pressed) * 1000)
                typed += 1
            await asyncio.sleep(0.15 if type_keys else 0.05)
        first, last, count = arrivals[0][0], arrivals[-1][0], arrivals[-1][1]
        await pilot.pause(0.2)  # let the finish land before the app closes
    # the first arrival holds one token (the driver flushes it at once)
    return rate(count - arrivals[0][1] + 1, first, last), (first - sent) * 1000, latencies


async def _no_append(_pane: Any, _delta: str) -> None:
    return None


# variant -> (class, attribute, stand-in): that part of the UI turned off
OFF: dict[str, tuple[type, str, Any]] = {
    "off-chat": (ChatPane, "append", _no_append),
    "off-stream": (TokenStream, "render_line", lambda _self, _y: Strip([])),
    "off-status": (StatusBar, "render", lambda _self: Text("status")),
    "off-entropy": (EntropyLine, "render", lambda _self: Text("H")),
}


@contextlib.contextmanager
def configured(variant: str, thread: EngineThread, threads: int) -> Iterator[None]:
    """The UI run under `variant` (see the module docstring); restored after."""
    switch = sys.getswitchinterval()
    if variant.startswith("threads"):
        thread.call(torch.set_num_threads, int(variant.removeprefix("threads")))
    elif variant.startswith("switch"):
        sys.setswitchinterval(float(variant.removeprefix("switch").removesuffix("ms")) / 1000)
    elif variant.startswith("budget"):
        pacing.BUDGET = float(variant.removeprefix("budget")) / 100
    elif variant.startswith("chat"):
        chat_pane.APPEND_EVERY = float(variant.removeprefix("chat").removesuffix("s"))
    elif variant.startswith("inspect"):
        main_screen.INSPECT_WHILE_STREAMING = float(
            variant.removeprefix("inspect").removesuffix("s")
        )
    elif variant.startswith("off-"):  # a diagnosis: where does the UI's cost go
        owner, name, stub = OFF[variant]
        real = owner.__dict__[name]
        setattr(owner, name, stub)
    elif variant != "app":
        raise SystemExit(f"unknown variant {variant!r}")
    kept = pacing.BUDGET, chat_pane.APPEND_EVERY, main_screen.INSPECT_WHILE_STREAMING
    try:
        yield
    finally:
        pacing.BUDGET, chat_pane.APPEND_EVERY, main_screen.INSPECT_WHILE_STREAMING = kept
        if variant.startswith("off-"):
            setattr(owner, name, real)
        thread.call(torch.set_num_threads, threads)
        sys.setswitchinterval(switch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="app", help="comma-separated, see above")
    parser.add_argument("--backend", default="transformers", choices=("transformers", "llama.cpp"))
    args = parser.parse_args()
    variants = args.variants.split(",")
    # all torch work on one thread, as the app does it (engine/model/thread.py says why)
    thread = EngineThread()
    thread.call(torch.set_num_threads, args.threads)
    run_headless, app_engine = sides(args.backend, thread)
    run_headless(8)  # warm-up
    asyncio.run(in_the_ui(app_engine(), 8, type_keys=False))
    h: list[tuple[float, float]] = []
    u: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        h.append(run_headless(args.new))
        for variant in variants:
            with configured(variant, thread, args.threads):
                u[variant].append(
                    asyncio.run(in_the_ui(app_engine(), args.new, type_keys=False))[:2]
                )
        latest = {"h": h[-1][0], **{v: u[v][-1][0] for v in variants}}
        print(
            f"round {round_ + 1}: " + "  ".join(f"{k} {r:.2f}" for k, r in latest.items()),
            flush=True,
        )
    with configured(variants[0], thread, args.threads):
        *_, latencies = asyncio.run(in_the_ui(app_engine(), args.new, type_keys=True))
    print(
        f"bundled model on {args.backend}, greedy, {args.new} new tokens, {args.rounds} rounds,"
        f" {args.threads} threads"
        f" (headless); load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs"
    )
    rows = [("h", "headless decoder", h)] + [(f"u {v}", "seen in the UI", u[v]) for v in variants]
    for key, name, runs in rows:
        tps = statistics.median(r[0] for r in runs)
        ttft = statistics.median(r[1] for r in runs)
        print(
            f"({key}) {name:<17} {tps:6.2f} tok/s  TTFT {ttft:6.1f} ms  {[round(r[0], 1) for r in runs]}"
        )
    for variant in variants:
        ratio = statistics.median(r[0] for r in u[variant]) / statistics.median(r[0] for r in h)
        print(f"ratio u/h ({variant}) {ratio:.3f}")
    if latencies:
        ordered = sorted(latencies)
        print(
            f"key latency during generation ({len(latencies)} keys): median "
            f"{statistics.median(latencies):.1f} ms, p90 {ordered[int(0.9 * (len(ordered) - 1))]:.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )


if __name__ == "__main__":
    main()
