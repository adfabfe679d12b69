"""Reading a session export back: total validation, or nothing at all.

An export file comes from outside (another tool, an old version, a hand edit),
so every field is checked for presence and type before anything is built, and
the first problem is reported with its field path, e.g.
``messages[2].logprobs.content[5].logprob: expected a number, got string``.
The result is a complete `Session` or a `SessionImportError`; the store is
only written afterwards, in one transaction, so an import never half-happens.

Keys this version does not know are ignored, so files from tools that add
their own keys still import. JSON or TOML is told from the content, not the
file name: a JSON export is an object, so it starts with ``{``.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from engine.errors import InvalidParameterError, SessionImportError
from engine.params import FIELD_NAMES
from engine.records import DROP_REASONS, FINISH_REASONS, Candidate, FinishReason, Step
from engine.sessions.files import FORMAT, MAX_IMPORT_BYTES, VERSION
from engine.sessions.records import (
    ROLES,
    SOURCES,
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    SessionSettings,
    StoredComparison,
    comparison_data,
    settings_from_dict,
)

_INT64 = 2**63
_MISSING: Any = object()
T = TypeVar("T")
Check = Callable[[Any, str], T]


def import_session_text(data: bytes) -> Session:
    """Parse and validate an export (JSON or TOML bytes) into a `Session`."""
    if len(data) > MAX_IMPORT_BYTES:
        raise SessionImportError(
            f"the file is too large: session files over {_size(MAX_IMPORT_BYTES)} are refused"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SessionImportError(
            f"the file is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from exc
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SessionImportError("the file is empty")
    return session_from_dict(_parse(text))


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _parse(text: str) -> Any:
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise SessionImportError(
                f"the file is not valid JSON (truncated?): {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from exc
        except RecursionError as exc:
            raise SessionImportError("the file is not a session: JSON nested too deeply") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        try:  # valid JSON that is not an object (e.g. an array): say what it is
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError, SessionImportError):
            pass
        raise SessionImportError(f"the file is neither JSON nor valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise SessionImportError("the file is not a session: TOML nested too deeply") from exc


def _reject_constant(name: str) -> Any:
    raise SessionImportError(f"the file is not valid JSON: {name} is not a number in JSON")


# --- field checks: each takes (value, path) and returns the typed value -----------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {
        str: "string",
        int: "integer",
        float: "number",
        dict: "object",
        list: "array",
    }.get(type(value), type(value).__name__)


def _fail(path: str, what: str, value: Any) -> SessionImportError:
    return SessionImportError(f"expected {what}, got {_kind(value)}", path)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "a string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SessionImportError("contains an invalid unicode surrogate", path) from exc
    return value


def _int(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(path, "an integer", value)
    if not 0 <= value < _INT64:
        raise SessionImportError(f"must be an integer in [0, 2^63), got {value}", path)
    return value


def _float(value: Any, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(path, "a number", value)
    if not math.isfinite(value):
        raise SessionImportError(f"must be a finite number, got {value}", path)
    return float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):  # a TOML datetime written by hand
        parsed = value
    else:
        text = _str(value, path)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise SessionImportError(f"not an RFC 3339 timestamp: {text!r}", path) from exc
    if parsed.tzinfo is None:
        raise SessionImportError("timestamp has no time zone (RFC 3339 needs one)", path)
    return parsed.astimezone(UTC)


def _one_of(choices: tuple[str, ...]) -> Check[str]:
    def check(value: Any, path: str) -> str:
        text = _str(value, path)
        if text not in choices:
            raise SessionImportError(f"must be one of {', '.join(choices)}, got {text!r}", path)
        return text

    return check


def _bytes(value: Any, path: str) -> bytes:
    items = _list(value, path)
    for i, b in enumerate(items):
        if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 255:
            raise SessionImportError(f"expected a byte (0-255), got {b!r}", f"{path}[{i}]")
    return bytes(items)


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "an array", value)
    return value


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    return value


def _get(obj: dict[str, Any], key: str, path: str, check: Check[T], default: Any = _MISSING) -> T:
    """``obj[key]`` checked, or `default`; a missing required key names its path."""
    full = f"{path}.{key}" if path else key
    if key not in obj:
        if default is _MISSING:
            raise SessionImportError("missing required field", full)
        return default  # type: ignore[no-any-return]
    return check(obj[key], full)


def _each(value: list[Any], path: str, build: Callable[[dict[str, Any], str], T]) -> list[T]:
    return [build(_obj(item, f"{path}[{i}]"), f"{path}[{i}]") for i, item in enumerate(value)]


# --- the tree ---------------------------------------------------------------------------


def session_from_dict(data: Any) -> Session:
    """Validate a parsed export tree and build the `Session` it describes."""
    if not isinstance(data, dict):
        raise SessionImportError(
            f"the file is not a logitlab session (expected an object, got {_kind(data)})"
        )
    fmt = _get(data, "format", "", _str)
    if fmt != FORMAT:
        raise SessionImportError(f"not a logitlab session export ({fmt!r} != {FORMAT!r})", "format")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        _get(data, "version", "", _int)  # a missing or mistyped version names itself
        raise SessionImportError(
            f"unsupported version {version} (this logitlab reads version {VERSION})", "version"
        )
    messages = tuple(_each(_get(data, "messages", "", _list), "messages", _message))
    comparisons = _get(data, "comparisons", "", _list, [])
    return Session(
        id=_get(data, "id", "", _str),
        title=_get(data, "title", "", _str),
        created_at=_get(data, "created_at", "", _timestamp),
        updated_at=_get(data, "updated_at", "", _timestamp),
        model=_model(_get(data, "model", "", _obj)),
        settings=_settings(_get(data, "settings", "", _obj)),
        messages=messages,
        comparisons=tuple(
            _comparison(_obj(item, f"comparisons[{i}]"), f"comparisons[{i}]", len(messages))
            for i, item in enumerate(comparisons)
        ),
    )


def _comparison(d: dict[str, Any], path: str, messages: int) -> StoredComparison:
    """A comparison of a reply (see engine/sessions/export.py); the comparison object is
    checked whole by `Comparison.from_json`, its null numbers may be left out."""
    index = _get(d, "message", path, _int)
    if index >= messages:
        raise SessionImportError(
            f"no message {index}: the session has {messages}", f"{path}.message"
        )
    created_at = _get(d, "created_at", path, _timestamp)
    where = f"{path}.comparison"
    raw = _get(d, "comparison", path, _obj)
    try:
        data = comparison_data(raw)
    except ValueError as exc:  # "steps[3].kl: must be a number", "comparison.steps: ..."
        field, _, message = str(exc).partition(": ")
        field = field.removeprefix("comparison").lstrip(".")
        raise SessionImportError(message, f"{where}.{field}" if field else where) from exc
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError) as exc:
        raise SessionImportError(f"cannot be stored: {exc}", where) from exc
    return StoredComparison(index, created_at, data)


def _model(d: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        id=_get(d, "id", "model", _str),
        source=_get(d, "source", "model", _one_of(SOURCES)),
        device=_get(d, "device", "model", _str),
        dtype=_get(d, "dtype", "model", _str),
        quantize=_get(d, "quantize", "model", _str),
    )


_SETTINGS_FLOATS = ("temperature", "top_p", "min_p", "repetition_penalty")


def _settings(d: dict[str, Any]) -> SessionSettings:
    p = "settings"
    values: dict[str, Any] = {"system_prompt": _get(d, "system_prompt", p, _str)}
    for name in _SETTINGS_FLOATS:
        values[name] = _get(d, name, p, _float)
    values["top_k"] = _get(d, "top_k", p, _int)
    values["max_new_tokens"] = _get(d, "max_new_tokens", p, _int)
    if "seed" in d:
        values["seed"] = _get(d, "seed", p, _int)
    if "top_logprobs" in d:
        values["top_logprobs"] = _get(d, "top_logprobs", p, _int)
    if "stop" in d:
        stop = _get(d, "stop", p, _list)
        values["stop"] = [_str(s, f"{p}.stop[{i}]") for i, s in enumerate(stop)]
    try:
        return settings_from_dict(values)
    except InvalidParameterError as exc:
        field = exc.field if exc.field in FIELD_NAMES else ""
        message = exc.message.removeprefix(f"{exc.field}: ")
        raise SessionImportError(message, f"{p}.{field}" if field else p) from exc


def _message(d: dict[str, Any], path: str) -> SessionMessage:
    alternatives = _get(d, "alternatives", path, _list, [])
    branches = _get(d, "branches", path, _list, [])
    steps = _logprobs(d, path)
    kept = (
        *_each(alternatives, f"{path}.alternatives", _alternative),
        *_each(branches, f"{path}.branches", _branch),
    )
    for i, alt in enumerate(kept):
        if alt.branch_index > len(steps):
            where = f"{path}.branches[{i - len(alternatives)}].parent_step"
            if i < len(alternatives):
                where = f"{path}.alternatives[{i}]"
            raise SessionImportError(
                f"leaves the reply at step {alt.branch_index}, but it has {len(steps)}", where
            )
    return SessionMessage(
        role=_get(d, "role", path, _one_of(ROLES)),
        content=_get(d, "content", path, _str),
        created_at=_get(d, "created_at", path, _timestamp),
        finish_reason=_get(d, "finish_reason", path, _one_of(FINISH_REASONS), None),
        steps=steps,
        alternatives=kept,
    )


def _branch(d: dict[str, Any], path: str) -> Alternative:
    """A branch of the reply tree (see engine/sessions/export.py)."""
    at = _get(d, "parent_step", path, _int)
    _get(d, "forced", path, _bool)  # checked; it is the first token's own `forced`
    tokens = _get(d, "tokens", path, _list)
    steps = tuple(
        step if "index" in raw else replace(step, index=at + i)
        for i, (raw, step) in enumerate(
            zip(tokens, _each(tokens, f"{path}.tokens", _step), strict=True)
        )
    )
    seed = _get(d, "seed", path, _int, None)
    return Alternative(
        content=_get(d, "content", path, _str),
        finish_reason=_get(d, "finish_reason", path, _one_of(FINISH_REASONS), None),
        steps=steps,
        created_at=_get(d, "created_at", path, _timestamp),
        parent_step=at,
        seed=seed,
    )


def _alternative(d: dict[str, Any], path: str) -> Alternative:
    return Alternative(
        content=_get(d, "content", path, _str),
        finish_reason=_get(d, "finish_reason", path, _one_of(FINISH_REASONS), None),
        steps=_logprobs(d, path),
        created_at=_get(d, "created_at", path, _timestamp),
    )


def _logprobs(d: dict[str, Any], path: str) -> tuple[Step, ...]:
    if "logprobs" not in d:
        return ()
    logprobs = _get(d, "logprobs", path, _obj)
    content = _get(logprobs, "content", f"{path}.logprobs", _list)
    return tuple(_each(content, f"{path}.logprobs.content", _step))


def _step(d: dict[str, Any], path: str) -> Step:
    text = _get(d, "token", path, _str)
    top = _get(d, "top_logprobs", path, _list)
    return Step(
        index=_get(d, "index", path, _int, int(path.rsplit("[", 1)[1][:-1])),
        token_id=_get(d, "token_id", path, _int),
        piece=_get(d, "piece", path, _str, text),
        text=text,
        forced=_get(d, "forced", path, _bool),
        logprob=_get(d, "logprob", path, _float),
        rank=_get(d, "rank", path, _int, 0),
        entropy=_get(d, "entropy", path, _float, 0.0),
        processed_logprob=_get(d, "processed_logprob", path, _float, -math.inf),
        processed_rank=_get(d, "processed_rank", path, _int, 0),
        processed_entropy=_get(d, "processed_entropy", path, _float, 0.0),
        top=tuple(_each(top, f"{path}.top_logprobs", _candidate)),
        elapsed_ms=_get(d, "elapsed_ms", path, _float, 0.0),
        special=_get(d, "special", path, _bool, False),
        token_bytes=_get(d, "bytes", path, _bytes),
        finish_reason=cast(
            "FinishReason | None",
            _get(d, "finish_reason", path, _one_of(FINISH_REASONS), None),
        ),
    )


def _candidate(d: dict[str, Any], path: str) -> Candidate:
    text = _get(d, "token", path, _str)
    _get(d, "bytes", path, _bytes)  # checked; a candidate's bytes are its text's UTF-8
    return Candidate(
        token_id=_get(d, "token_id", path, _int),
        piece=_get(d, "piece", path, _str, text),
        logprob=_get(d, "logprob", path, _float),
        processed_logprob=_get(d, "processed_logprob", path, _float, -math.inf),
        text=text,
        dropped_by=_get(d, "dropped_by", path, _one_of(DROP_REASONS), None),
    )
