"""`logitlab generate PROMPT`: one generation through our decode loop, streamed.

``--format text`` writes the text to stdout as it is generated (stderr gets a
one-line summary); ``--format jsonl`` writes one object per token, then the
summary object (keys fixed by DESIGN.md). Ctrl+C stops between steps, still
prints the summary (finish reason ``cancelled``) and exits 130.

The generation itself is `generate()`, independent of printing, so ``--save``
can reuse its `GenerationResult` (decoder, steps, summary) later.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from engine.errors import GenerationError, InvalidParameterError
from tui.cli.options import (
    add_model_options,
    add_sampling_options,
    model_spec_from,
    sampling_overrides,
)

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate a reply to PROMPT and stream it (text or per-token JSONL)"
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the user message; - reads stdin")
    add_model_options(parser)
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


@dataclass(frozen=True)
class GenerationResult:
    """A finished generation: what printing and a future ``--save`` need."""

    decoder: Any  # engine.decode.decoder.Decoder
    steps: tuple[Any, ...]  # engine.records.Step
    summary: Any  # engine.records.GenerationSummary
    prompt_ids: tuple[int, ...]


def run(args: argparse.Namespace) -> int:
    from engine.model.loading import load
    from engine.params import resolve_sampling

    prompt = _read_prompt(args.prompt)
    if args.raw and args.system is not None:
        raise InvalidParameterError("--system", "cannot be combined with --raw")
    if args.title is not None and not args.save:
        raise InvalidParameterError("--title", "only applies with --save")
    overrides = {**sampling_overrides(args), "top_logprobs": _top_logprobs(args)}
    resolve_sampling({}, overrides)  # bad values fail now, before the model loads
    spec = model_spec_from(args)
    store = _open_store() if args.save else None  # a refused database fails before the work
    loaded = load(spec)
    params, _sources = resolve_sampling(loaded.generation_config_file, overrides)
    prompt_ids = build_prompt_ids(loaded, prompt, raw=args.raw, system=args.system)
    sink = JsonlSink(sys.stdout, loaded.tokenizer) if args.format == "jsonl" else TextSink()
    cancel = threading.Event()
    with _sigint_sets(cancel):
        result = generate(loaded, prompt_ids, params, cancel=cancel, on_step=sink.step)
    sink.finish(result)
    if store is not None:
        session = save_run(store, loaded, params, prompt, args.system, result, args.title)
        print(f"logitlab: saved session {session.id}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.summary.finish_reason == "cancelled" else EXIT_OK


def generate(
    loaded: Any,
    prompt_ids: list[int],
    params: Any,
    *,
    cancel: threading.Event | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> GenerationResult:
    """Prefill, iterate to a stop, and report each step to `on_step` as it comes."""
    from engine.decode.decoder import Decoder

    decoder = Decoder(loaded, params, cancel=cancel)
    decoder.prefill(prompt_ids)
    for step in decoder:
        if on_step is not None:
            on_step(step)
    return GenerationResult(
        decoder=decoder,
        steps=tuple(decoder.steps),
        summary=decoder.summary(),
        prompt_ids=tuple(decoder.prompt_ids),
    )


def _open_store() -> Any:
    from engine.sessions.store import SessionStore

    store = SessionStore.open_default()
    if store.recovered_from is not None:
        print(
            f"logitlab: warning: the session database was unreadable and was moved to "
            f"{store.recovered_from}",
            file=sys.stderr,
        )
    return store


def save_run(
    store: Any,
    loaded: Any,
    params: Any,
    prompt: str,
    system: str | None,
    result: GenerationResult,
    title: str | None,
) -> Any:
    """Store the run as a new session: the user message and the reply with its steps
    (a cancelled reply is stored as cancelled)."""
    from engine.sessions.records import (
        ModelRecord,
        SessionMessage,
        SessionSettings,
        reply_from_steps,
        utc_now,
    )
    from engine.sessions.store import save_generation

    messages = [SessionMessage("user", prompt, utc_now())]
    reply = reply_from_steps(result.steps, result.summary.finish_reason)
    settings = SessionSettings(system_prompt=system or "", sampling=params)
    return save_generation(
        store, ModelRecord.from_loaded(loaded), settings, [*messages, reply], title
    )


def build_prompt_ids(loaded: Any, prompt: str, *, raw: bool, system: str | None) -> list[int]:
    """The prompt's ids: plain text with --raw, else the chat template's rendering."""
    tokenizer = loaded.tokenizer
    if raw:
        return list(tokenizer(prompt)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise GenerationError(f"{loaded.model_id} has no chat template; use --raw")
    from engine.tokens.chat import ChatMessage, chat_prompt_ids

    messages = [ChatMessage("system", system)] if system is not None else []
    return chat_prompt_ids(tokenizer, [*messages, ChatMessage("user", prompt)])


# --- output ----------------------------------------------------------------------------


class TextSink:
    """Streams the text to stdout, flushed per token; the summary goes to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr

    def step(self, step: Any) -> None:
        if step.text:
            self._out.write(step.text)
            self._out.flush()

    def finish(self, result: GenerationResult) -> None:
        s = result.summary
        self._out.write("\n")
        self._out.flush()
        self._err.write(
            f"[{s.completion_tokens} tokens, {s.tokens_per_second:.1f} tok/s, "
            f"time to first token {s.time_to_first_token_ms:.0f} ms, {s.finish_reason}]\n"
        )


class JsonlSink:
    """One JSON object per token, then the summary object (DESIGN.md keys)."""

    def __init__(self, out: TextIO, tokenizer: Any) -> None:
        from engine.decode.textstream import TokenTable

        self._out = out
        self._tokens = TokenTable(tokenizer)

    def step(self, step: Any) -> None:
        self._write(step_object(step, self._tokens.display))

    def finish(self, result: GenerationResult) -> None:
        self._write(summary_object(result.summary))

    def _write(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._out.flush()


def step_object(step: Any, display: Callable[[int], str]) -> dict[str, Any]:
    """The JSONL object of one step; `display` gives a token's text."""
    return {
        "step": step.index,
        "token_id": step.token_id,
        "token": display(step.token_id),
        "text": step.text,
        "logprob": _finite(step.logprob),
        "prob": step.prob,
        "rank": step.rank,
        "entropy": step.entropy,
        "forced": step.forced,
        "top": [
            {"token_id": c.token_id, "token": display(c.token_id), "logprob": _finite(c.logprob)}
            for c in step.top
        ],
        "elapsed_ms": round(step.elapsed_ms, 3),
    }


def summary_object(summary: Any) -> dict[str, Any]:
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
    """JSON has no -inf: a probability that underflowed is written as null."""
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
    return 0 if args.format == "text" else None  # text shows no candidates: record none


@contextlib.contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """Ctrl+C sets `event` (the loop stops between steps); a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(_signum: int, _frame: Any) -> None:
        event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
