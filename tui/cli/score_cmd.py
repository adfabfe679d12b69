"""`logitlab score [TEXT | --file PATH | -]`: a text's perplexity and per-token surprisal.

The text is tokenized as `logitlab tokenize` does (special-token text stays plain
text), with the model's BOS in front where its tokenizer adds one (``--no-bos``:
never). Long texts go through the sliding window of transformers' guide
"Perplexity of fixed-length models": windows of ``--window W`` tokens (default:
the context window, at most 4,096) start every ``--stride S`` tokens (default
W/2), and each window scores only the tokens the previous one did not, each
given everything before it in its window. The first token is never scored (it
has no context). Every window goes through the engine's `PromptScoring.score`
(engine/decode/protocol.py), so transformers, llama.cpp and a remote server that
scores prompts give the same numbers by the same rule.

Output: ``text`` (default) writes the text coloured by surprisal as the Prompt tab
colours it, then the summary; ``json`` the summary object; ``jsonl`` one object per
scored token, then the summary object (keys fixed by DESIGN.md). ``nll`` is the
mean nats per scored token, ``ppl`` its exp, and ``bits_per_byte`` the total nll
in bits over the UTF-8 bytes of the scored tokens (the text less its first token).
Ctrl+C stops after the chunk in progress and still prints the summary of what
was scored (exit 130).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from engine.errors import InvalidParameterError
from engine.records import ScoreSummary, TokenScore
from tui.cli.options import (
    add_engine_options,
    add_model_options,
    model_spec_from,
    remote_engine_from,
    remote_spec,
)

EXIT_OK, EXIT_INTERRUPTED = 0, 130
MAX_DEFAULT_WINDOW = 4096
MAX_TOP = 50  # engine.decode.scoring.MAX_TOP, without importing torch before the load
PROGRESS_FROM = 1024  # tokens: shorter texts score too fast for a progress bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="perplexity and per-token surprisal of a text (sliding window)",
        description="Score TEXT (or --file PATH, or - for stdin) under the model: "
        "each token's logprob given the text before it, and the perplexity.",
    )
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the text to score; - reads stdin")
    parser.add_argument("--file", metavar="PATH", help="score this UTF-8 file instead of TEXT")
    add_model_options(parser)
    add_engine_options(parser)
    parser.add_argument(
        "--window",
        type=int,
        metavar="W",
        help="tokens per window (default: the context window, at most 4096)",
    )
    parser.add_argument(
        "--stride", type=int, metavar="S", help="tokens between window starts (default: W/2)"
    )
    parser.add_argument(
        "--no-bos", action="store_true", help="never put the model's BOS token before the text"
    )
    parser.add_argument(
        "--top-logprobs",
        "--top",
        dest="top",
        type=int,
        metavar="N",
        help=f"candidates per scored token, 0-{MAX_TOP} (default: 10 for jsonl, else 0)",
    )
    parser.add_argument("--format", choices=("text", "json", "jsonl"), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.decode import Engine, open_engine, prompt_scoring
    from tui.cli.notices import print_notices

    text = read_text(args.text, args.file, sys.stdin)
    top = _top(args)
    _check_sizes(args.window, args.stride)  # what can be checked before the load
    remote = remote_engine_from(args)  # --engine URL: nothing is loaded here
    spec = remote_spec(args) if remote is not None else model_spec_from(args)
    engine: Engine = remote if remote is not None else open_engine(spec)
    model = print_notices(engine.load(spec))
    scoring = prompt_scoring(engine)  # a backend that cannot score says so in one line
    window, stride = plan_sizes(args.window, args.stride, model.context_window)
    ids, bos = token_ids(engine, text, no_bos=args.no_bos)
    if len(ids) < 2:
        raise InvalidParameterError("TEXT", "is a single token; there is nothing to score")
    sink = _sink(args.format, engine, model.model_id, model.backend, window, stride, bos)
    wanted = _wants_progress(len(ids), args.format)
    progress = Progress(sys.stderr, len(ids) - 1) if wanted else None
    started = time.perf_counter()
    with Interrupts() as ctrl_c:
        try:
            for begin, end, start in windows(len(ids), window, stride):
                with ctrl_c.raising():  # the window in progress is dropped at once
                    scores = scoring.score(ids[begin:end], top=top, start=start)
                sink.add(ids, [replace(s, position=begin + s.position) for s in scores])
                if progress is not None:
                    progress.update(sink.summary.tokens)
                if ctrl_c.pressed:  # while its lines went out: after them
                    break
        except KeyboardInterrupt:
            ctrl_c.pressed = True
        finally:
            if progress is not None:
                progress.clear()
        sink.finish(time.perf_counter() - started, interrupted=ctrl_c.pressed)
    return EXIT_INTERRUPTED if ctrl_c.pressed else EXIT_OK


class Interrupts:
    """Ctrl+C while a window is scored interrupts the engine call at once (the engine
    finishes only its chunk in progress); while a window's output is written, it
    stops after it, so the lines out and the summary agree. Main thread only."""

    def __init__(self) -> None:
        self.pressed = False
        self._raise = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handler(self, _signum: int, _frame: Any) -> None:
        self.pressed = True
        if self._raise:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        self._raise = True
        try:
            yield
        finally:
            self._raise = False


# --- input -------------------------------------------------------------------------------


def read_text(value: str | None, file: str | None, stdin: TextIO) -> str:
    """The text to score: TEXT, all of stdin for ``-``, or the UTF-8 file ``--file``."""
    if value is not None and file is not None:
        raise InvalidParameterError("--file", "cannot be combined with TEXT")
    if file is not None:
        try:
            data = Path(file).expanduser().read_bytes()
        except OSError as exc:
            raise InvalidParameterError("--file", f"cannot read {file}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterError(
                "--file", f"{file} is not UTF-8 text (byte {exc.start} is not UTF-8)"
            ) from None
        where = "--file"
    elif value is None:
        raise InvalidParameterError("TEXT", "give a text, --file PATH, or - for stdin")
    elif value == "-":
        text, where = stdin.read(), "TEXT"
    else:
        text, where = value, "TEXT"
    if not text.strip():
        raise InvalidParameterError(where, "is empty; there is nothing to score")
    return text


def _top(args: argparse.Namespace) -> int:
    top = args.top if args.top is not None else (10 if args.format == "jsonl" else 0)
    if not 0 <= top <= MAX_TOP:
        raise InvalidParameterError("--top-logprobs", f"must be 0-{MAX_TOP}, not {top}")
    return int(top)


def _check_sizes(window: int | None, stride: int | None) -> None:
    if window is not None and window < 2:
        raise InvalidParameterError("--window", f"must be at least 2 tokens, not {window}")
    if stride is not None and stride < 1:
        raise InvalidParameterError("--stride", f"must be at least 1 token, not {stride}")
    if window is not None and stride is not None and stride > window:
        raise InvalidParameterError(
            "--stride", f"{stride} is larger than the window ({window}): tokens would be skipped"
        )


def plan_sizes(window: int | None, stride: int | None, context: int) -> tuple[int, int]:
    """(window, stride): the defaults filled in, checked against the context window
    (0: unknown, as a server that does not say; the default window is then 4096)."""
    _check_sizes(window, stride)
    if window is None:
        window = min(context, MAX_DEFAULT_WINDOW) if context > 1 else MAX_DEFAULT_WINDOW
    elif context > 1 and window > context:
        raise InvalidParameterError(
            "--window", f"{window} is larger than the model's context window ({context})"
        )
    if stride is None:
        stride = max(1, window // 2)
    elif stride > window:
        raise InvalidParameterError(
            "--stride", f"{stride} is larger than the window ({window}): tokens would be skipped"
        )
    return window, stride


def token_ids(engine: Any, text: str, *, no_bos: bool) -> tuple[list[int], int | None]:
    """The text's ids as `tokenize` gives them, with the model's BOS in front where its
    tokenizer adds one (and `no_bos` is off); and that BOS id (None: none added)."""
    if getattr(getattr(engine, "loaded", None), "tokenizer", None) is not None:
        from engine.model import quiet_transformers

        with quiet_transformers():  # not "longer than the maximum length": it is windowed
            ids = [int(i) for i in engine.encode(text)]
    else:
        ids = [int(i) for i in engine.encode(text)]
    bos = None if no_bos else bos_id(engine)
    return ([bos, *ids], bos) if bos is not None else (ids, None)


def bos_id(engine: Any) -> int | None:
    """The BOS the model's tokenizer puts before a text (``add_special_tokens``), if any.
    A remote engine has no local tokenizer to ask: None."""
    tokenizer = getattr(getattr(engine, "loaded", None), "tokenizer", None)
    bos = getattr(tokenizer, "bos_token_id", None)
    if tokenizer is None or not isinstance(bos, int):
        return None
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if probe and probe[0] == bos else None


def windows(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, start) per window over `n` tokens, as in transformers' guide: windows
    ``[begin, end)`` start every `stride` tokens; each scores from ``begin + start`` to
    ``end``, the tokens the previous window did not reach. A window's first token has
    no context in it and is never scored: the text's first token, and with ``stride ==
    window`` (no overlap) each window's first, as the guide's loss leaves them out."""
    found: list[tuple[int, int, int]] = []
    previous_end = 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        found.append((begin, end, max(1, previous_end - begin)))
        previous_end = end
        if end == n:
            break
    return found


def _wants_progress(n: int, fmt: str) -> bool:
    """A progress bar for a long text when stderr is a terminal (never in a pipe or a
    log), unless the text itself is streaming to that terminal."""
    if fmt == "text" and sys.stdout.isatty():
        return False
    return n > PROGRESS_FROM and sys.stderr.isatty()


# --- output --------------------------------------------------------------------------------


@dataclass
class Sink:
    """Collects scored tokens and writes them in one format."""

    out: TextIO
    model: str
    backend: str
    window: int
    stride: int
    display: Callable[[int], str]
    token_bytes: Callable[[int], bytes]
    summary: ScoreSummary = field(default_factory=ScoreSummary)
    n_bytes: int = 0

    def add(self, ids: Sequence[int], scores: Sequence[TokenScore]) -> None:
        self.summary = self.summary.plus(scores)
        self.n_bytes += sum(len(self.token_bytes(s.token_id)) for s in scores)
        self.write(ids, scores)

    def write(self, ids: Sequence[int], scores: Sequence[TokenScore]) -> None:
        """Format-specific: what goes out as a window is scored."""

    def finish(self, elapsed: float, *, interrupted: bool) -> None:
        self.out.write(json.dumps(self.summary_object(elapsed, interrupted=interrupted)) + "\n")
        self.out.flush()

    def summary_object(self, elapsed: float, *, interrupted: bool) -> dict[str, Any]:
        s = self.summary
        found: dict[str, Any] = {
            "model": self.model,
            "backend": self.backend,
            "tokens": s.tokens,
            "nll": _finite(s.nll),
            "ppl": _finite(s.ppl),
            "bits_per_byte": _finite(s.bits_per_byte(self.n_bytes)),
            "window": self.window,
            "stride": self.stride,
            "elapsed_s": round(elapsed, 3),
        }
        if interrupted:
            found["interrupted"] = True
        return found


class JsonlSink(Sink):
    def write(self, ids: Sequence[int], scores: Sequence[TokenScore]) -> None:
        for s in scores:
            self.out.write(json.dumps(token_object(s, self.display), ensure_ascii=False) + "\n")
        self.out.flush()


class TextSink(Sink):
    """The text as it is scored, each token coloured by its probability band (the Prompt
    tab's), then the summary line. No colour where stdout is not a terminal."""

    def __init__(self, *args: Any, bos: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from rich.console import Console

        from tui.theming import load_themes, theme_variable_defaults

        self._console = Console(file=self.out, highlight=False, soft_wrap=True)
        colours = theme_variable_defaults(load_themes()[0])
        self._styles = {
            "high": colours["prob-high"],
            "mid": colours["prob-mid"],
            "low": f"bold {colours['prob-low']}",
        }
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._bos = bos
        self._started = False

    def write(self, ids: Sequence[int], scores: Sequence[TokenScore]) -> None:
        from rich.text import Text

        from tui.widgets.prompt_tokens import surprisal_band

        out = Text()
        if not self._started and scores:  # the unscored first token, plain
            self._started = True
            if ids[0] != self._bos:
                out.append(self._decoder.decode(self.token_bytes(ids[0])))
        for s in scores:
            piece = self._decoder.decode(self.token_bytes(s.token_id))
            out.append(piece, self._styles[surprisal_band(s.prob)])
        self._console.print(out, end="")
        self.out.flush()

    def finish(self, elapsed: float, *, interrupted: bool) -> None:
        s, end = self.summary, self._decoder.decode(b"", final=True)
        self._console.print(end, end="\n")
        line = (
            f"[{s.tokens} tokens scored · nll {s.nll:.4f} nats/token · ppl {s.ppl:.3f} · "
            f"{s.bits_per_byte(self.n_bytes):.4f} bits/byte · window {self.window}, "
            f"stride {self.stride} · {elapsed:.1f} s{' · interrupted' if interrupted else ''}]"
        )
        self._console.print(line, style="dim", markup=False)
        self.out.flush()


def _sink(
    fmt: str,
    engine: Any,
    model: str,
    backend: str,
    window: int,
    stride: int,
    bos: int | None,
) -> Sink:
    common: dict[str, Any] = {
        "out": sys.stdout,
        "model": model,
        "backend": backend,
        "window": window,
        "stride": stride,
        "display": engine.token_display,
        "token_bytes": _cached(engine.token_bytes),
    }
    if fmt == "jsonl":
        return JsonlSink(**common)
    if fmt == "text":
        return TextSink(**common, bos=bos)
    return Sink(**common)


def token_object(s: TokenScore, display: Callable[[int], str]) -> dict[str, Any]:
    """The JSONL object of one scored token (DESIGN.md keys)."""
    return {
        "position": s.position,
        "token_id": s.token_id,
        "token": display(s.token_id),
        "logprob": _finite(s.logprob),
        "rank": s.rank,  # 0: unknown (a server that reports only its top-N)
        "entropy": _finite(s.entropy),  # null: unknown
        "top": [
            {"token_id": c.token_id, "token": display(c.token_id), "logprob": _finite(c.logprob)}
            for c in s.top
        ],
    }


def _cached(fn: Callable[[int], bytes]) -> Callable[[int], bytes]:
    memo: dict[int, bytes] = {}

    def get(token_id: int) -> bytes:
        if token_id not in memo:
            memo[token_id] = fn(token_id)
        return memo[token_id]

    return get


def _finite(value: float) -> float | None:
    """JSON has no -inf/NaN: an underflowed or unknown number is written as null."""
    return value if math.isfinite(value) else None


class Progress:
    """A one-line progress bar on stderr (a terminal), cleared when scoring ends."""

    WIDTH = 30

    def __init__(self, err: TextIO, total: int) -> None:
        self._err, self._total = err, max(total, 1)
        self._started = time.perf_counter()
        self.update(0)

    def update(self, done: int) -> None:
        filled = int(self.WIDTH * done / self._total)
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        self._err.write(f"\rscoring {bar} {done}/{self._total} tokens · {rate:.0f} tok/s")
        self._err.flush()

    def clear(self) -> None:
        self._err.write("\r\033[K")
        self._err.flush()
