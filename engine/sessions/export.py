"""Sessions out to JSON, TOML and Markdown, and back in from JSON or TOML.

JSON and TOML follow the "Session export" schema of DESIGN.md exactly (format
``logitlab.session``, version 1); TOML is the same tree, written with tomli-w.
Other tools read these files, so the schema's keys keep their meaning and
shape; ``logprobs.content`` is OpenAI-shaped (``token`` is the token's text,
``logprob`` the **raw** log-probability).

Optional additions, so that a round trip loses nothing (each is omitted when
empty/absent; TOML has no null, so nothing is ever written as null/"None"):

- ``settings.stop`` (list of strings, omitted when empty) and
  ``settings.top_logprobs`` (int); ``settings.seed`` is omitted when unset.
- per token: ``piece`` (raw vocabulary piece), ``rank``/``entropy`` (raw
  distribution), ``processed_logprob``/``processed_rank``/``processed_entropy``
  (after the sampling processors; ``processed_logprob`` is omitted when -inf,
  i.e. a filter removed the token), ``special`` (only when true),
  ``elapsed_ms`` (only when non-zero), ``index`` (only when it differs from the
  token's position in the list: alternatives start at their branch point),
  ``finish_reason`` (on the step that ended generation).
- per top_logprobs entry: ``piece`` and ``processed_logprob`` (omitted when
  -inf), and ``dropped_by`` (omitted when the sampler could pick it): why it
  could not be, ``top-k``/``top-p``/``min-p`` (the processor that removed it) or
  ``greedy`` (not the argmax). Its ``bytes`` are the UTF-8 bytes of ``token``.
- per message: ``finish_reason`` and ``logprobs`` on any message that has them
  (in practice assistant replies), and ``branches``: the reply's other paths
  (the reply tree; the current path is ``content`` / ``logprobs.content``),
  ``[{parent_step, forced, content, created_at, finish_reason?, seed?, tokens}]``:
  each leaves the current path at ``parent_step`` (its prefix is
  ``logprobs.content[:parent_step]``), ``tokens`` are its own token objects from
  there on (same shape as ``logprobs.content``), ``forced`` says whether its
  first token was forced, ``content`` is its whole text. Files from before
  reply trees carry ``alternatives`` (``[{content, created_at, finish_reason?,
  logprobs?}]``, tokens indexed from their branch point); import reads both.

- top level: ``comparisons`` (omitted when there are none): the comparisons of a
  reply against another run made in the workbench, in the order they were made,
  ``[{message, created_at, comparison}]``: ``message`` is the index in
  ``messages`` of the reply compared, ``comparison`` the ``compare --format
  json`` object with its extensions (`Comparison.to_json(extended=True)`: each
  step's ``top_a``/``top_b``, ``b_path``, ``b_tokens``, ``problem``,
  ``version``), its null values omitted like every other absent value (a
  missing ``kl``/``logprob_*`` is null: unknown, or -inf).

A raw logprob of -inf (JSON cannot hold it) is written as -9999.0, the value
OpenAI uses for "practically impossible".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import tomli_w

from engine.compare.records import CompareStep, Comparison
from engine.errors import InvalidParameterError
from engine.records import Candidate, Step
from engine.sessions.files import FORMAT, VERSION
from engine.sessions.records import (
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    StoredComparison,
    rfc3339,
    settings_to_dict,
    without_nulls,
)

NEG_INF_LOGPROB = -9999.0

EXPORT_FORMATS = ("json", "toml", "markdown")


def export_text(session: Session, fmt: str, *, low_prob_tokens: int = 0) -> str:
    """The session as `fmt` (one of `EXPORT_FORMATS`); `low_prob_tokens` is Markdown's."""
    if fmt == "json":
        return export_json(session)
    if fmt == "toml":
        return export_toml(session)
    if fmt == "markdown":
        return export_markdown(session, low_prob_tokens=low_prob_tokens)
    raise InvalidParameterError("format", f"must be one of {', '.join(EXPORT_FORMATS)}")


def session_to_dict(session: Session) -> dict[str, Any]:
    """The DESIGN.md export tree (plus the optional additions in the module doc)."""
    m = session.model
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "id": session.id,
        "title": session.title,
        "created_at": rfc3339(session.created_at),
        "updated_at": rfc3339(session.updated_at),
        "model": _model(m),
        "settings": settings_to_dict(session.settings),
        "messages": [_message(msg) for msg in session.messages],
    }
    if session.comparisons:
        out["comparisons"] = [_comparison(c) for c in session.comparisons]
    return out


def _comparison(c: StoredComparison) -> dict[str, Any]:
    return {
        "message": c.message_index,
        "created_at": rfc3339(c.created_at),
        "comparison": without_nulls(c.data),
    }


def _model(m: ModelRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "source": m.source,
        "device": m.device,
        "dtype": m.dtype,
        "quantize": m.quantize,
    }
    if m.source == "remote":  # an addition readers can ignore: the device is the URL
        out["engine_url"] = m.device
    return out


def export_json(session: Session) -> str:
    """Strict JSON (no NaN/Infinity), non-ASCII kept as-is, one token per line.

    The structure is indented for reading, but each token object (with its
    top_logprobs) sits on one line: fully indented, a long reply is ~3x the
    size, which matters against the import size limit.
    """
    return _pretty(session_to_dict(session), 0) + "\n"


def _pretty(value: Any, level: int) -> str:
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and value and "token_id" not in value:
        items = (f"{inner}{_compact(k)}: {_pretty(v, level + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + _pretty(v, level + 1) for v in value) + f"\n{pad}]"
    return _compact(value)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def export_toml(session: Session) -> str:
    """The same tree as TOML (tomli-w); timestamps stay RFC 3339 strings."""
    return tomli_w.dumps(session_to_dict(session))


def _message(msg: SessionMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": msg.role,
        "content": msg.content,
        "created_at": rfc3339(msg.created_at),
    }
    if msg.finish_reason is not None:
        out["finish_reason"] = msg.finish_reason
    if msg.steps:
        out["logprobs"] = {"content": [_token(s, i) for i, s in enumerate(msg.steps)]}
    if msg.alternatives:
        out["branches"] = [_branch(a) for a in msg.alternatives]
    return out


def _branch(alt: Alternative) -> dict[str, Any]:
    at = alt.branch_index
    out: dict[str, Any] = {
        "parent_step": at,
        "forced": bool(alt.steps and alt.steps[0].forced),
        "content": alt.content,
        "created_at": rfc3339(alt.created_at),
    }
    if alt.finish_reason is not None:
        out["finish_reason"] = alt.finish_reason
    if alt.seed is not None:
        out["seed"] = alt.seed
    out["tokens"] = [_token(s, at + i) for i, s in enumerate(alt.steps)]
    return out


def _raw(logprob: float) -> float:
    # NaN: unknown (a remote server's forced token outside its top-N), written like -inf
    return NEG_INF_LOGPROB if logprob == -math.inf or math.isnan(logprob) else float(logprob)


def _known(out: dict[str, Any], key: str, value: float) -> None:
    """Set `key` unless the value is unknown (NaN from a remote server): omitted."""
    if not math.isnan(value):
        out[key] = float(value)


def _token(step: Step, position: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": step.text,
        "token_id": int(step.token_id),
        "logprob": _raw(step.logprob),
        "bytes": list(step.token_bytes),
        "forced": bool(step.forced),
        "top_logprobs": [_candidate(c) for c in step.top],
        "piece": step.piece,
        "rank": int(step.rank),
    }
    _known(out, "entropy", step.entropy)
    if step.processed_logprob != -math.inf:
        _known(out, "processed_logprob", step.processed_logprob)
    out["processed_rank"] = int(step.processed_rank)
    _known(out, "processed_entropy", step.processed_entropy)
    if step.special:
        out["special"] = True
    if step.elapsed_ms:
        out["elapsed_ms"] = float(step.elapsed_ms)
    if step.index != position:
        out["index"] = int(step.index)
    if step.finish_reason is not None:
        out["finish_reason"] = step.finish_reason
    return out


def _candidate(c: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": c.text,
        "token_id": int(c.token_id),
        "logprob": _raw(c.logprob),
        "bytes": list(c.text.encode("utf-8")),
        "piece": c.piece,
    }
    if c.processed_logprob != -math.inf:
        _known(out, "processed_logprob", c.processed_logprob)
    if c.dropped_by is not None:
        out["dropped_by"] = c.dropped_by
    return out


# --- Markdown ---------------------------------------------------------------------


def export_markdown(session: Session, *, low_prob_tokens: int = 0) -> str:
    """A readable transcript: model and settings in a header, then each message.

    With ``low_prob_tokens=N`` each reply is followed by its N least likely
    tokens (raw probability): where the model was unsure, or was overruled.
    """
    m = session.model
    settings = settings_to_dict(session.settings)
    sampling = " · ".join(
        f"{k} {v!r}" if isinstance(v, list) else f"{k} {v}"
        for k, v in settings.items()
        if k != "system_prompt"
    )
    # a GGUF on llama.cpp records its file type as both (Q4_1): say it once
    quantize = "" if m.quantize == m.dtype else f" · quantize {m.quantize}"
    lines = [
        f"# {session.title or 'Untitled session'}",
        "",
        f"- **Model:** `{m.id}` ({m.source}) · {m.device} · {m.dtype}{quantize}",
        f"- **Sampling:** {sampling}",
        f"- **Created:** {_when(session.created_at)} · **Updated:** {_when(session.updated_at)}",
        f"- **Session:** `{session.id}`",
    ]
    if session.settings.system_prompt:
        lines += ["", "**System prompt**", "", *_quote(session.settings.system_prompt)]
    for index, msg in enumerate(session.messages):
        heading = f"## {msg.role.capitalize()} · {_when(msg.created_at)}"
        if msg.finish_reason:
            heading += f" · {msg.finish_reason}"
        lines += ["", heading, "", msg.content if msg.content else "*(empty)*"]
        if msg.alternatives:
            lines += ["", *_branches_markdown(msg)]
        if low_prob_tokens > 0 and msg.steps:
            lines += ["", *_low_prob_table(msg.steps, low_prob_tokens)]
        for c in session.comparisons:
            if c.message_index == index:
                lines += ["", *_comparison_markdown(c)]
    return "\n".join(lines) + "\n"


def _branches_markdown(msg: SessionMessage) -> list[str]:
    """Each other branch under its branch point: the token the shown reply took
    there, the one the branch took, and the branch's text from there on."""
    n = len(msg.alternatives)
    lines = [f"**{n} other branch{'es' if n > 1 else ''}** (the reply above is the one shown):"]
    by_step = sorted(enumerate(msg.alternatives), key=lambda e: (e[1].branch_index, e[0]))
    for step in sorted({a.branch_index for _, a in by_step}):
        here = msg.steps[step] if step < len(msg.steps) else None
        taken = f"{_code(here.text or here.piece)} ({_prob(here.logprob)})" if here else "the end"
        lines += ["", f"- at step {step}, the reply took {taken}; instead:"]
        for i, alt in by_step:
            if alt.branch_index != step:
                continue
            first = alt.steps[0] if alt.steps else None
            token = f"{_code(first.text or first.piece)} ({_prob(first.logprob)})" if first else "—"
            tail = "".join(s.text for s in alt.steps if not s.special)
            extra = f", seed {alt.seed}" if alt.seed is not None else ""
            reason = alt.finish_reason or "unfinished"
            lines.append(
                f"  - branch {i + 1}: {token}, {len(alt.steps)} tokens, {reason}{extra}: "
                + _code(tail[:120])
            )
    return lines


# what a side's line shows when it differs from the other side (the model always)
_SIDE_KEYS = ("backend", "engine", "device", "dtype", "quantize", "template", "batch")
_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed")
LARGEST_KL_STEPS = 5


def _comparison_markdown(stored: StoredComparison) -> list[str]:
    """The comparison in short: both sides (what differs), the tokenization, the
    summary, and the steps where the sides disagree most."""
    head = f"**Comparison** ({_when(stored.created_at)})"
    try:
        c = Comparison.from_json(dict(stored.data))
    except ValueError as exc:  # the store and import check it: a hand-built session
        return [f"{head}: unreadable ({exc})"]
    a, b = _side_settings(c.a), _side_settings(c.b)
    differ = [k for k in (*_SIDE_KEYS, *_SAMPLING_KEYS) if a.get(k) != b.get(k)]
    lines = [
        head,
        "",
        f"- **A:** {_side_line(c.a, a, differ)}",
        f"- **B:** {_side_line(c.b, b, differ)}",
        f"- **Tokenization:** {_tokenization_markdown(c)}",
    ]
    if c.problem:
        lines.append(f"- **No steps:** {c.problem}")
    if not c.steps:
        return lines
    s = c.summary
    estimate = "" if all(st.exact for st in c.steps) else " (top-N estimate)"
    divergence = "none" if c.first_divergence is None else f"step {c.first_divergence}"
    same = "?" if s.same_top1 is None else f"{s.same_top1:.1%}"
    lines += [
        f"- **Summary:** {s.steps} steps · mean KL {_figure(s.mean_kl)}{estimate} · max KL"
        f" {_figure(s.max_kl)} · same top-1 {same} · first divergence {divergence}"
        f" · PPL A {_figure(s.ppl_a)} / B {_figure(s.ppl_b)}",
        "",
        *_largest_kl_table(c.steps),
    ]
    return lines


def _side_settings(side: Mapping[str, Any]) -> dict[str, Any]:
    sampling = side.get("sampling")
    values = {k: side.get(k) for k in _SIDE_KEYS}
    if isinstance(sampling, Mapping):
        values.update({k: sampling.get(k) for k in _SAMPLING_KEYS})
    return values


def _side_line(side: Mapping[str, Any], values: dict[str, Any], differ: list[str]) -> str:
    shown = [_code(str(side.get("model", "?")))]
    shown += [f"{k.replace('_', '-')} {_setting(k, values.get(k))}" for k in differ]
    return " · ".join(shown) if differ else f"{shown[0]} (no setting differs)"


def _setting(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key == "batch" and isinstance(value, Mapping):
        others = len(value.get("prompts") or ())
        mask = "on" if value.get("mask") else "off"
        plural = "" if others == 1 else "s"
        return f"with {others} other prompt{plural}, {value.get('padding')} padding, mask {mask}"
    return _compact(value) if isinstance(value, Mapping | list) else str(value)


def _tokenization_markdown(c: Comparison) -> str:
    t = c.tokenization
    if t.same:
        return f"same ({len(t.a_ids)} tokens)"
    i = t.first_difference or 0

    def at(ids: tuple[int, ...], texts: tuple[str, ...]) -> str:
        if i >= len(ids):
            return "(ends)"
        return f"{ids[i]} {_code(texts[i])}" if i < len(texts) else str(ids[i])

    return (
        f"differs at token {i}: A {at(t.a_ids, t.a_tokens)}, B {at(t.b_ids, t.b_tokens)}"
        f" ({len(t.a_ids)} and {len(t.b_ids)} tokens)"
    )


def _largest_kl_table(steps: tuple[CompareStep, ...]) -> list[str]:
    known = [st for st in steps if not math.isnan(st.kl)]
    worst = sorted(known, key=lambda st: (-st.kl, st.step))[:LARGEST_KL_STEPS]
    rows = [
        f"| {st.step} | {_code(st.token)} | {_figure(st.kl)} | {math.exp(st.logprob_a):.4f}"
        f" | {math.exp(st.logprob_b):.4f} | {'yes' if st.agree else 'no'} |"
        for st in worst
    ]
    unknown = len(steps) - len(known)
    note = f"; KL unknown at {unknown}" if unknown else ""
    return [
        f"Steps with the largest KL ({len(worst)} of {len(steps)}{note}):",
        "",
        "| step | token | KL | p A | p B | same top-1 |",
        "|---:|---|---:|---:|---:|---|",
        *rows,
    ]


def _figure(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "?"
    return "inf" if math.isinf(value) else f"{value:.4g}"


def _prob(logprob: float) -> str:
    return "p ?" if math.isnan(logprob) else f"p {math.exp(logprob):.3f}"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _quote(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.splitlines()] or [">"]


def _low_prob_table(steps: tuple[Step, ...], n: int) -> list[str]:
    worst = sorted(steps, key=lambda s: (s.logprob, s.index))[:n]
    rows = [
        f"| {s.index} | {_code(s.text or s.piece)} | {math.exp(s.logprob):.4f} | {s.rank}"
        f" | {'yes' if s.forced else ''} |"
        for s in worst
    ]
    return [
        f"Lowest-probability tokens ({len(worst)}):",
        "",
        "| step | token | prob | rank | forced |",
        "|---:|---|---:|---:|---|",
        *rows,
    ]


def _code(text: str) -> str:
    shown = json.dumps(text, ensure_ascii=False)[1:-1].replace("|", "\\|")
    fence = "``" if "`" in shown else "`"
    return f"{fence} {shown} {fence}" if fence == "``" else f"`{shown}`"
