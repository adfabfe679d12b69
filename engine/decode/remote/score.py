"""`PromptScoring.score` over HTTP: a server scores a token path, or says it cannot.

Two ways a server scores a prompt, found by `probe_scoring` on connect:

- ``prompt_logprobs`` (vLLM, logitlab serve): ``/v1/completions`` with the ids and
  ``prompt_logprobs: N`` answers ``choices[0].prompt_logprobs``: ``null`` first, then
  per position ``{token_id: {"logprob", "rank", "decoded_token"}}`` with the actual
  token and the top N. The rank is the server's (over the whole vocabulary).
- ``echo`` (OpenAI's legacy shape, logitlab serve): ``echo: true`` with ``logprobs: N``
  puts the prompt's tokens first in the choice's logprobs, the first one ``null``. The
  rank is known only where the token is among the N candidates (else 0, unknown).

Neither gives the entropy (it needs the whole distribution): it is NaN, never a number
made up from the top N. A server with neither (llama.cpp's, which echoes nothing) gets
one line from `prompt_scoring(engine)`; a lm-eval run against it would otherwise score
every choice 0.0. No torch here: the argument rule is the torch-free
engine/decode/score_request.py's `check_request`, with a server's own limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from engine.decode.remote.client import HttpClient
from engine.decode.remote.mapping import id_from_string
from engine.decode.score_request import check_request
from engine.errors import EngineServerError, FeatureUnavailableError
from engine.records import ScoredCandidate, TokenScore


class Capabilities(Protocol):
    """What scoring reads of a server's probed capabilities (remote/capabilities.py's
    `Capabilities`, which imports this module)."""

    @property
    def url(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def context_window(self) -> int: ...
    @property
    def prompt_scoring(self) -> str: ...


Mode = Literal["prompt_logprobs", "echo", "none"]
MAX_TOP = 20  # what servers give per position (OpenAI's and vLLM's default limit)


def probe_scoring(client: HttpClient, model: str, ids: Sequence[int]) -> Mode:
    """Which way this server scores a prompt of token ids (`ids`: two or more)."""
    path = [int(i) for i in ids]
    if len(path) < 2:
        return "none"
    answer = client.try_post("/v1/completions", _body(model, path, "prompt_logprobs", 1))
    entries = _choice(answer).get("prompt_logprobs")
    if isinstance(entries, list) and len(entries) >= len(path) and isinstance(entries[1], dict):
        return "prompt_logprobs"
    answer = client.try_post("/v1/completions", _body(model, path, "echo", 1))
    logprobs = _choice(answer).get("logprobs")
    values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    if (
        isinstance(values, list)
        and len(values) >= len(path)
        and values[0] is None
        and all(isinstance(v, int | float) for v in values[1 : len(path)])
        and any(v < 0 for v in values[1 : len(path)])  # a server that echoes 0.0 scores nothing
    ):
        return "echo"
    return "none"


def unavailable(caps: Capabilities) -> str | None:
    """Why `caps`' server cannot score a prompt, in one line (None: it can)."""
    if caps.prompt_scoring != "none":
        return None
    return (
        f"{caps.url} cannot score a prompt: it offers neither prompt_logprobs (vLLM) "
        "nor echo with logprobs on token-id prompts"
    )


def score(
    client: HttpClient, caps: Capabilities, ids: Sequence[int], *, top: int = 0, start: int = 1
) -> tuple[TokenScore, ...]:
    """`PromptScoring.score` on `caps`' server: one request for the whole path."""
    why = unavailable(caps)
    if why is not None:
        raise FeatureUnavailableError(why)
    path = check_request(
        ids,
        start=start,
        top=top,
        context_window=caps.context_window or None,
        max_top=MAX_TOP,
        why=" (the most a server gives per position)",
    )
    if start == len(path):
        return ()
    mode: Mode = caps.prompt_scoring  # type: ignore[assignment]
    answer = client.post("/v1/completions", _body(caps.model, path, mode, top))
    choice = _choice(answer)
    try:
        if mode == "prompt_logprobs":
            return _from_prompt_logprobs(client.url, choice, path, top, start)
        return _from_echo(client.url, choice, path, top, start)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape we do not know
        raise _short(client.url, f"unreadable ({type(exc).__name__}: {exc})") from exc


def _body(model: str, ids: list[int], mode: Mode, top: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0}
    if mode == "prompt_logprobs":
        body["prompt_logprobs"] = top
    else:
        body.update(echo=True, logprobs=max(top, 1))
    return body


def _choice(answer: Any) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def _short(url: str, what: str) -> EngineServerError:
    return EngineServerError(f"{url}: the prompt's scores are {what}")


def _from_prompt_logprobs(
    url: str, choice: dict[str, Any], ids: list[int], top: int, start: int
) -> tuple[TokenScore, ...]:
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) < len(ids):
        raise _short(url, f"missing (prompt_logprobs for {len(ids)} tokens expected)")
    out = []
    for position in range(start, len(ids)):
        entry = entries[position]
        token = ids[position]
        mine = entry.get(str(token)) if isinstance(entry, dict) else None
        if not isinstance(mine, dict):
            raise _short(url, f"missing token {token} at position {position}")
        ranked = sorted(
            ((int(k), v) for k, v in entry.items() if isinstance(v, dict)),
            key=lambda kv: -float(kv[1].get("logprob", -math.inf)),
        )
        best = tuple(
            ScoredCandidate(k, float(v["logprob"]), str(v.get("decoded_token") or ""))
            for k, v in ranked[:top]
        )
        rank = mine.get("rank")
        out.append(
            TokenScore(
                position=position,
                token_id=token,
                logprob=float(mine["logprob"]),
                rank=int(rank)
                if isinstance(rank, int)
                else _rank(token, float(mine["logprob"]), best),
                entropy=math.nan,
                top=best,
                piece=str(mine.get("decoded_token") or ""),
            )
        )
    return tuple(out)


def _from_echo(
    url: str, choice: dict[str, Any], ids: list[int], top: int, start: int
) -> tuple[TokenScore, ...]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        raise _short(url, "missing (no logprobs in the echoed reply)")
    values = logprobs.get("token_logprobs") or []
    tokens = logprobs.get("tokens") or []
    if len(values) < len(ids):
        raise _short(url, f"missing ({len(values)} echoed for {len(ids)} prompt tokens)")
    known = logprobs.get("top_candidates")  # logitlab's: candidates with their ids
    tops = logprobs.get("top_logprobs") or []
    out = []
    for position in range(start, len(ids)):
        if values[position] is None:
            raise _short(url, f"missing at position {position}")
        logprob = float(values[position])
        if isinstance(known, list) and isinstance(known[position], list):
            cands = tuple(
                ScoredCandidate(
                    int(c.get("token_id", -1)), float(c["logprob"]), str(c.get("token", ""))
                )
                for c in known[position]
            )
        else:
            row = (
                tops[position] if position < len(tops) and isinstance(tops[position], dict) else {}
            )
            cands = tuple(
                ScoredCandidate(id_from_string(str(k)), float(v), str(k))
                for k, v in sorted(row.items(), key=lambda kv: -float(kv[1]))
            )
        piece = str(tokens[position]) if position < len(tokens) else ""
        out.append(
            TokenScore(
                position=position,
                token_id=ids[position],
                logprob=logprob,
                rank=_rank(ids[position], logprob, cands),
                entropy=math.nan,
                top=cands[:top],
                piece="" if piece.startswith("token_id:") else piece,
            )
        )
    return tuple(out)


def _rank(token: int, logprob: float, best: Sequence[ScoredCandidate]) -> int:
    """1-based rank where the token is among the candidates, else 0 (unknown)."""
    if not any(c.token_id == token for c in best):
        return 0
    return 1 + sum(1 for c in best if c.logprob > logprob)
