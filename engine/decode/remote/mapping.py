"""Server logprob entries -> the token records a `RemoteReply` turns into `Step`s.

Two shapes: chat (``logprobs.content[i]`` = ``{token, logprob, bytes, top_logprobs}``)
and legacy completions (``tokens``, ``token_logprobs``, ``top_logprobs``). Token
ids come from logitlab's ``token_id`` / ``token_ids`` / ``top_candidates``
extensions or vLLM's ``return_tokens_as_token_ids`` (``"token_id:123"``);
where a server gives none, the id is -1 (unknown) and forcing is not offered.
A token reported by id only (``"token_id:123"``) carries no text here (its `bytes`
field, where sent, spells the id string): it is `id_only`, and the reply fills in its
piece, bytes and special flag from the vocabulary (engine/decode/remote/pieces.py).

Probabilities: ``logprob`` is the server's number. ``processed_logprob`` is the
server's post-sampling number where it reports one (logitlab serve); otherwise
it is NaN, meaning *unknown* (not -inf, which means "filtered out"). Entropies
need the whole distribution, which no server sends: NaN. A rank is derived from
the candidates when the token is among them, else 0 (unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.records import Candidate

UNKNOWN = math.nan
LOGPROB_FLOOR = -9999.0


@dataclass(frozen=True)
class Token:
    """One token as a server reported it."""

    token_id: int  # -1: the server did not say
    data: bytes
    logprob: float
    processed_logprob: float  # NaN: unknown
    top: tuple[Candidate, ...]
    top_bytes: tuple[bytes, ...]
    in_text: bool = True  # False: the token is not in the reply's text (EOS, a special)
    piece: str = ""  # the vocabulary piece where known ("Ġis"); "" -> the decoded bytes
    special: bool = False  # the vocabulary says it is a special token
    id_only: bool = False  # the server sent "token_id:N": piece and bytes still unknown


def _float(value: Any, unknown: float = UNKNOWN) -> float:
    if value is None:
        return unknown
    number = float(value)
    return -math.inf if number <= LOGPROB_FLOOR else number


def _id_of(entry: dict[str, Any], token: str) -> int:
    if isinstance(entry.get("token_id"), int):
        return int(entry["token_id"])
    if isinstance(entry.get("id"), int):  # llama.cpp
        return int(entry["id"])
    return id_from_string(token)


def id_from_string(token: str) -> int:
    """The id in vLLM's ``"token_id:N"`` (-1 for any other token string)."""
    if token.startswith("token_id:"):
        try:
            return int(token[len("token_id:") :])
        except ValueError:
            return -1
    return -1


def _bytes_of(entry: dict[str, Any], token: str) -> bytes:
    if id_from_string(token) >= 0:
        return b""  # vLLM's bytes here are the id string's (or lossy): looked up instead
    raw = entry.get("bytes")
    if isinstance(raw, list):
        return bytes(int(b) & 0xFF for b in raw)
    return token.encode("utf-8")


def _candidate(entry: dict[str, Any], processed_known: bool) -> tuple[Candidate, bytes]:
    token = str(entry.get("token", ""))
    data = _bytes_of(entry, token)
    processed = _float(entry.get("processed_logprob"), -math.inf) if processed_known else UNKNOWN
    piece = data.decode("utf-8", errors="replace") if data else token
    cand = Candidate(
        token_id=_id_of(entry, token),
        piece=piece,
        logprob=_float(entry.get("logprob")),
        processed_logprob=processed,
        text=piece,
    )
    return cand, data


def chat_token(entry: dict[str, Any]) -> Token:
    """One entry of a chat chunk's ``logprobs.content``."""
    token = str(entry.get("token", ""))
    processed_known = "processed_logprob" in entry
    cands = [_candidate(c, processed_known) for c in entry.get("top_logprobs") or []]
    return Token(
        token_id=_id_of(entry, token),
        data=_bytes_of(entry, token),
        logprob=_float(entry.get("logprob")),
        processed_logprob=(
            _float(entry.get("processed_logprob"), -math.inf) if processed_known else UNKNOWN
        ),
        top=tuple(c for c, _ in cands),
        top_bytes=tuple(b for _, b in cands),
        id_only=id_from_string(token) >= 0,
    )


def legacy_tokens(logprobs: dict[str, Any]) -> list[Token]:
    """The tokens of a legacy completions ``logprobs`` object (a chunk's or a whole reply's)."""
    tokens = [str(t) for t in logprobs.get("tokens") or []]
    values = logprobs.get("token_logprobs") or []
    ids = logprobs.get("token_ids") or []
    processed = logprobs.get("processed_token_logprobs")
    candidates = logprobs.get("top_candidates")
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        if candidates is not None and i < len(candidates):
            cands = [_candidate(c, processed is not None) for c in candidates[i]]
        else:
            top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
            cands = [
                _candidate({"token": key, "logprob": value}, False) for key, value in top.items()
            ]
        token_id = int(ids[i]) if i < len(ids) and ids[i] is not None else id_from_string(token)
        out.append(
            Token(
                token_id=token_id,
                data=_bytes_of({}, token),
                logprob=_float(values[i] if i < len(values) else None),
                processed_logprob=(
                    _float(processed[i], -math.inf)
                    if processed is not None and i < len(processed)
                    else UNKNOWN
                ),
                top=tuple(c for c, _ in cands),
                top_bytes=tuple(b for _, b in cands),
                id_only=id_from_string(token) >= 0,
            )
        )
    return out


def mark_text(tokens: Sequence[Token], text: str) -> list[Token]:
    """Which tokens the server's text delta contains: a token whose own text is not
    where the delta goes on (EOS, a special token) is marked out of the text."""
    out, rest = [], text
    for tok in tokens:
        own = tok.data.decode("utf-8", errors="ignore")
        if own and not rest.startswith(own) and tok.data.startswith(b"<"):
            out.append(replace(tok, in_text=False))
            continue
        rest = rest[len(own) :] if rest.startswith(own) else rest
        out.append(tok)
    return out


def rank_of(token_id: int, data: bytes, logprob: float, top: Sequence[Candidate]) -> int:
    """1-based rank among the candidates where the token is one of them, else 0 (unknown)."""
    if not any(
        (c.token_id == token_id and token_id >= 0) or (token_id < 0 and c.piece.encode() == data)
        for c in top
    ):
        return 0
    return 1 + sum(1 for c in top if c.logprob > logprob)


def processed_rank(token: Token) -> int:
    if math.isnan(token.processed_logprob) or token.processed_logprob == -math.inf:
        return 0
    return 1 + sum(1 for c in token.top if c.processed_logprob > token.processed_logprob)


def text_only(text: str) -> Token:
    """A server that sent no logprobs: the chunk's text as one token of unknown id."""
    return Token(
        token_id=-1,
        data=text.encode("utf-8"),
        logprob=UNKNOWN,
        processed_logprob=UNKNOWN,
        top=(),
        top_bytes=(),
    )
