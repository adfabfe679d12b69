"""Step-through on servers whose OpenAI endpoints cannot do it: their own endpoints.

llama.cpp's server answers ``/v1/completions`` logprobs in its chat shape without the
legacy fields, and SGLang's without token ids, so one token of a token-id prompt with
its candidates comes from their native endpoints instead, chosen by the probe:

- llama.cpp: ``POST /completion`` with ``prompt`` = ids, ``n_predict`` 1, ``n_probs`` N and
  ``post_sampling_probs`` false (the raw softmax of the logits, as our ``logprob``); each
  ``completion_probabilities`` entry has ``id``, ``bytes``, ``logprob`` and
  ``top_logprobs``. Its prompt ids: ``/apply-template`` then ``/tokenize`` (specials
  parsed, as the server itself tokenizes a chat).
- SGLang: ``POST /generate`` with ``input_ids``, ``return_logprob``, ``top_logprobs_num``
  and ``return_text_in_logprobs``; ``meta_info.output_token_logprobs`` holds
  ``[logprob, id, text]`` and ``output_top_logprobs`` one such list per token.

Both are sent every sampling setting explicitly (their defaults differ from ours:
llama.cpp's top-k 40 and min-p 0.05). Free decoding from ids on these servers is one
such request per token (`RemoteReply`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from engine.decode.remote.client import HttpClient
from engine.decode.remote.mapping import Token, chat_token, legacy_tokens
from engine.errors import GenerationError
from engine.params import SamplingParams
from engine.records import Candidate, FinishReason

StepApi = Literal["completions", "llama.cpp", "sglang", "none"]
ENDPOINT: dict[str, str] = {
    "completions": "/v1/completions",
    "llama.cpp": "/completion",
    "sglang": "/generate",
    "none": "-",
}


# --- llama.cpp ------------------------------------------------------------------------


def llama_tokenize(client: HttpClient, text: str, *, special: bool) -> list[int] | None:
    """llama.cpp's ``/tokenize`` (``content``); None where the server refuses it."""
    answer = client.try_post(
        "/tokenize", {"content": text, "add_special": special, "parse_special": special}
    )
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(i, int) for i in tokens):
        return None
    return [int(i) for i in tokens]


def llama_chat_ids(client: HttpClient, messages: Sequence[dict[str, str]]) -> list[int] | None:
    """A chat's prompt ids as llama.cpp builds them: its template, then its tokenizer."""
    rendered = client.try_post("/apply-template", {"messages": list(messages)})
    prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
    if not isinstance(prompt, str):
        return None
    return llama_tokenize(client, prompt, special=True)


def llama_body(ids: Sequence[int], params: SamplingParams, top_n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": [int(i) for i in ids],
        "n_predict": 1,
        "n_probs": top_n,
        "post_sampling_probs": False,
        "temperature": params.temperature,
        "top_k": params.top_k or 0,  # 0: off (the server's default is 40)
        "top_p": params.top_p,
        "min_p": params.min_p,  # the server's default is 0.05
        "repeat_penalty": params.repetition_penalty,
        "repeat_last_n": len(ids),  # the whole context, as transformers' (-1 is refused)
        "cache_prompt": True,
        "return_tokens": True,
        "stream": False,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    return body


def llama_token(answer: dict[str, Any]) -> tuple[Token, str, FinishReason | None]:
    """The token, its text and whether the server stopped (EOS, a stop word) there."""
    probs = answer.get("completion_probabilities")
    if not isinstance(probs, list) or not probs or not isinstance(probs[0], dict):
        raise GenerationError("llama.cpp's /completion returned no completion_probabilities")
    stopped = answer.get("stop_type") in ("eos", "word") or bool(
        answer.get("stopped_eos") or answer.get("stopped_word")
    )
    return chat_token(probs[0]), str(answer.get("content") or ""), "stop" if stopped else None


# --- SGLang ---------------------------------------------------------------------------


def sglang_body(ids: Sequence[int], params: SamplingParams, top_n: int) -> dict[str, Any]:
    sampling: dict[str, Any] = {
        "max_new_tokens": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or -1,  # -1: off
        "min_p": params.min_p,
        "repetition_penalty": params.repetition_penalty,
    }
    if params.seed is not None:
        sampling["sampling_seed"] = params.seed
    if params.stop:
        sampling["stop"] = list(params.stop)
    return {
        "input_ids": [int(i) for i in ids],
        "sampling_params": sampling,
        "return_logprob": True,
        "top_logprobs_num": top_n,
        "return_text_in_logprobs": True,
        "logprob_start_len": -1,
        "stream": False,
    }


def _sglang_entry(item: Any) -> tuple[float, int, str | None]:
    logprob, token_id, text = [*list(item), None, None, None][:3]
    value = -math.inf if logprob is None or float(logprob) <= -9999.0 else float(logprob)
    return value, int(token_id), text if isinstance(text, str) else None


def _sglang_token(entry: tuple[float, int, str | None], top: list[Any]) -> Token:
    """A token (and its candidates) from SGLang's triples; text the server decoded alone
    as U+FFFD (part of a character), or no text, leaves it to the vocabulary (id_only)."""
    logprob, token_id, text = entry
    cands, datas = [], []
    for item in top:
        c_lp, c_id, c_text = _sglang_entry(item)
        whole = c_text is not None and "\ufffd" not in c_text
        piece = c_text if whole and c_text is not None else f"token_id:{c_id}"
        cands.append(Candidate(c_id, piece, c_lp, math.nan, text=piece if whole else ""))
        datas.append(piece.encode("utf-8") if whole else b"")
    whole = text is not None and "\ufffd" not in text
    return Token(
        token_id=token_id,
        data=text.encode("utf-8") if whole and text is not None else b"",
        logprob=logprob,
        processed_logprob=math.nan,
        top=tuple(cands),
        top_bytes=tuple(datas),
        id_only=not whole,
    )


def sglang_token(answer: dict[str, Any]) -> tuple[Token, str, FinishReason | None]:
    meta = answer.get("meta_info")
    meta = meta if isinstance(meta, dict) else {}
    tokens = meta.get("output_token_logprobs")
    if not isinstance(tokens, list) or not tokens:
        raise GenerationError("SGLang's /generate returned no output_token_logprobs")
    tops = meta.get("output_top_logprobs") or [[]]
    token = _sglang_token(_sglang_entry(tokens[0]), list(tops[0] or []))
    reason = meta.get("finish_reason")
    kind = reason.get("type") if isinstance(reason, dict) else reason
    return token, str(answer.get("text") or ""), "stop" if kind == "stop" else None


# --- one token, any step API ------------------------------------------------------------


def one_token_request(
    api: StepApi, model: str, sampling: dict[str, Any], ids: Sequence[int],
    params: SamplingParams, top_n: int,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """(path, body) of the request for one token of `ids` with `top_n` candidates."""
    if api == "llama.cpp":
        return ENDPOINT[api], llama_body(ids, params, top_n)
    if api == "sglang":
        return ENDPOINT[api], sglang_body(ids, params, top_n)
    body = {**sampling, "model": model, "prompt": [int(i) for i in ids], "logprobs": top_n}
    return ENDPOINT["completions"], body


def read_one_token(
    api: StepApi, answer: Any, url: str
) -> tuple[list[Token], str, FinishReason | None]:
    """The tokens, text and server stop of a one-token answer (as sent: ids may lack text)."""
    if not isinstance(answer, dict):
        raise GenerationError(f"{url} answered the step with no JSON object")
    if api in ("llama.cpp", "sglang"):
        token, text, stop = llama_token(answer) if api == "llama.cpp" else sglang_token(answer)
        return [token], text, stop
    choice = (answer.get("choices") or [{}])[0]
    tokens = legacy_tokens(choice.get("logprobs") or {})
    # "length" is only the one-token limit of this request
    finish: FinishReason | None = "stop" if choice.get("finish_reason") == "stop" else None
    return tokens, str(choice.get("text") or ""), finish


def probe_step_api(
    client: HttpClient, server: str, ids: Sequence[int], top: int
) -> tuple[StepApi, int] | None:
    """The native endpoint that gives one token of a token-id prompt with candidates and
    ids (llama.cpp's /completion, SGLang's /generate), and how many candidates it gave."""
    api: StepApi
    if server == "llama.cpp":
        api = "llama.cpp"
    elif server == "sglang":
        api = "sglang"
    else:
        return None
    path, body = one_token_request(api, "", {}, ids, SamplingParams(temperature=0.0), top)
    try:
        tokens, _text, _finish = read_one_token(api, client.try_post(path, body), client.url)
    except GenerationError:
        return None
    if not tokens or tokens[0].token_id < 0:
        return None
    return api, len(tokens[0].top)
