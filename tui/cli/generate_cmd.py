"""`logitlab generate PROMPT`: one generation through our decode loop, streamed.

``--format text`` writes the text to stdout as it is generated (stderr gets a
one-line summary); ``--format jsonl`` writes one object per token, then the
summary object (keys fixed by DESIGN.md). Ctrl+C stops between steps, still
prints the summary (finish reason ``cancelled``) and exits 130.

The reply is driven by the engine's `ReplyDriver` (the same driver as the
workbench's), whose step events stream out as they come; a failure it reports is
raised again here, so the CLI prints it as one line. ``--save`` stores the steps
with `engine.sessions.save_reply`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

from engine.decode import Engine
from engine.errors import InvalidParameterError, LogitlabError
from engine.records import GenerationSummary, Step
from engine.tokens import ChatMessage
from tui.cli.interrupts import sigint_sets
from tui.cli.options import (
    add_engine_options,
    add_model_options,
    add_sampling_options,
    model_spec_from,
    remote_engine_from,
    remote_spec,
    sampling_overrides,
)

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate a reply to PROMPT and stream it (text or per-token JSONL)"
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the user message; - reads stdin")
    add_model_options(parser)
    add_engine_options(parser)
    add_sampling_options(parser)
    parser.add_argument("--raw", action="store_true", help="skip the chat template")
    parser.add_argument("--system", metavar="TEXT", help="system message (chat template)")
    parser.add_argument(
        "--top-logprobs",
        type=int,
        metavar="N",
        help="candidates recorded per token, 0-50 (default: 10 for jsonl, 0 for text)",
    )
    parser.add_argument("--format", choices=("text", "jsonl"), default="text")
    parser.add_argument(
        "--save", action="store_true", help="store the run as a session; its id goes to stderr"
    )
    parser.add_argument("--title", metavar="T", help="session title for --save")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.decode import (
        ReplyDriver,
        ReplyFailed,
        ReplyFinished,
        ReplyResult,
        StepDecoded,
        open_engine,
    )
    from engine.params import resolve_sampling
    from tui.cli.notices import print_notices

    prompt = _read_prompt(args.prompt)
    if args.raw and args.system is not None:
        raise InvalidParameterError("--system", "cannot be combined with --raw")
    if args.title is not None and not args.save:
        raise InvalidParameterError("--title", "only applies with --save")
    overrides = {**sampling_overrides(args), "top_logprobs": _top_logprobs(args)}
    resolve_sampling({}, overrides)  # bad values fail now, before the model loads
    remote = remote_engine_from(args)  # --engine URL: nothing is loaded here
    spec = remote_spec(args) if remote is not None else model_spec_from(args)
    store = _open_store() if args.save else None  # a refused database fails before the work
    engine: Engine = remote if remote is not None else open_engine(spec)
    model = print_notices(engine.load(spec))
    params, _sources = resolve_sampling(model.generation_config, overrides)
    messages = _messages(prompt, args.system)
    sink = JsonlSink(sys.stdout, engine.token_display) if args.format == "jsonl" else TextSink()
    taken: list[Step] = []

    def on_event(event: object) -> None:
        if isinstance(event, StepDecoded):
            taken.append(event.step)
            sink.step(event.step)

    driver = ReplyDriver(
        engine,
        messages,
        params,
        on_event=on_event,
        # --raw: the same guarded encoding as `logitlab tokenize`, no chat template
        prompt_ids=engine.encode(prompt) if args.raw else None,
        render=False,
    )
    with sigint_sets(driver.cancel_event):
        end = driver.run()
    if isinstance(end, ReplyFailed):
        raise end.exception
    if not isinstance(end, ReplyFinished) or end.summary is None:
        raise LogitlabError("the engine gave no summary of the reply")
    result = ReplyResult(steps=tuple(taken), summary=end.summary)
    sink.finish(result.summary)
    for notice in getattr(driver.reply, "notices", ()):
        print(f"logitlab: warning: {notice}", file=sys.stderr)
    if store is not None:
        from engine.sessions import save_reply

        with store:
            session = save_reply(store, model, params, messages, result, args.title)
        print(f"logitlab: saved session {session.id}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.summary.finish_reason == "cancelled" else EXIT_OK


def _open_store() -> Any:
    from tui.cli.sessions_cmd import open_store

    return open_store()


def _messages(prompt: str, system: str | None) -> list[ChatMessage]:
    system_message = [ChatMessage("system", system)] if system is not None else []
    return [*system_message, ChatMessage("user", prompt)]


# --- output ----------------------------------------------------------------------------


class TextSink:
    """Streams the text to stdout, flushed per token; the summary goes to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr

    def step(self, step: Step) -> None:
        if step.text:
            self._out.write(step.text)
            self._out.flush()

    def finish(self, s: GenerationSummary) -> None:
        self._out.write("\n")
        self._out.flush()
        self._err.write(
            f"[{s.completion_tokens} tokens, {s.tokens_per_second:.1f} tok/s, "
            f"time to first token {s.time_to_first_token_ms:.0f} ms, {s.finish_reason}]\n"
        )


class JsonlSink:
    """One JSON object per token, then the summary object (DESIGN.md keys)."""

    def __init__(self, out: TextIO, display: Callable[[int], str]) -> None:
        self._out = out
        self._display = display

    def step(self, step: Step) -> None:
        self._write(step_object(step, self._display))

    def finish(self, summary: GenerationSummary) -> None:
        self._write(summary_object(summary))

    def _write(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._out.flush()


def step_object(step: Step, display: Callable[[int], str]) -> dict[str, Any]:
    """The JSONL object of one step; `display` gives a token's text."""
    return {
        "step": step.index,
        "token_id": step.token_id,
        "token": display(step.token_id),
        "text": step.text,
        "logprob": _finite(step.logprob),
        "prob": _finite(step.prob),
        "rank": step.rank,  # 0: unknown (a remote server's token outside its top-N)
        "entropy": _finite(step.entropy),  # null: unknown (a remote server sends top-N only)
        "forced": step.forced,
        "top": [
            {"token_id": c.token_id, "token": display(c.token_id), "logprob": _finite(c.logprob)}
            for c in step.top
        ],
        "elapsed_ms": round(step.elapsed_ms, 3),
    }


def summary_object(summary: GenerationSummary) -> dict[str, Any]:
    return {
        "done": True,
        "finish_reason": summary.finish_reason,
        "text": summary.text,
        "usage": {
            "prompt_tokens": summary.prompt_tokens,
            "completion_tokens": summary.completion_tokens,
        },
        "tokens_per_second": round(summary.tokens_per_second, 3),
        "time_to_first_token_ms": round(summary.time_to_first_token_ms, 3),
    }


def _finite(value: float) -> float | None:
    """JSON has no -inf/NaN: an underflowed or unknown number is written as null."""
    return value if math.isfinite(value) else None


# --- input and signals ------------------------------------------------------------------


def _read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise InvalidParameterError("PROMPT", "is empty")
    return text


def _top_logprobs(args: argparse.Namespace) -> int | None:
    if args.top_logprobs is not None:
        return int(args.top_logprobs)
    if args.save:  # a saved session opens in the workbench: record what its inspector shows
        return None
    return 0 if args.format == "text" else None  # text shows no candidates: record none
