"""What a remote server offers, found out on connect (`probe`), never assumed from its name.

The probe lists the models (and picks one), reads the context window, then tries
the endpoints the workbench needs: `/tokenize` of chat messages (exact prompt
ids), `/v1/completions` with a list of token ids and `logprobs` (step-through
and branching), and reads the answer for token ids, the number of candidates
and which distribution the logprobs are of; then how the server scores a prompt
(``prompt_logprobs`` or ``echo`` with ``logprobs``: engine/decode/remote/score.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.decode.remote.client import HttpClient
from engine.decode.remote.native import (
    ENDPOINT,
    StepApi,
    llama_chat_ids,
    llama_tokenize,
    probe_step_api,
)
from engine.decode.remote.score import probe_scoring
from engine.errors import EngineModelNotFoundError, EngineServerError

Distribution = Literal["raw+processed", "raw", "processed", "unknown"]
ASKED_TOP = 20  # the most candidates asked of a server (OpenAI's and vLLM's default limit)


@dataclass(frozen=True)
class Capabilities:
    """One server's answers to the probe; `lines()` is what the Model tab and `info` show."""

    url: str
    server: str  # "logitlab" | "vllm" | "llama.cpp" | "sglang" | "openai-compatible"
    model: str
    models: tuple[str, ...]
    context_window: int  # 0: the server does not say
    token_id_prompts: bool  # step-through, forcing and branching need these
    tokenize_chat: bool  # exact prompt ids of chat messages
    tokenize_text: bool
    max_top_logprobs: int  # 0: unknown until a reply comes back
    distribution: Distribution
    ids_in_logprobs: str  # "token_id field" | "token_id:N strings" | "none"
    prompt_scoring: str = "none"  # "prompt_logprobs" | "echo" | "none" (remote/score.py)
    step_api: StepApi = "completions"  # where one token of ids comes from (remote/native.py)

    def step_unavailable(self) -> str | None:
        """Why step mode cannot run on this server (None: it can)."""
        if self.token_id_prompts:
            return None
        return (
            f"step mode needs token-id prompts, which {self.url} does not accept: full replies only"
        )

    def lines(self) -> list[tuple[str, str]]:
        yes = {True: "yes", False: "no"}
        return [
            ("engine", self.url),
            ("server", self.server),
            ("models", ", ".join(self.models) or "-"),
            ("context window", str(self.context_window or "unknown")),
            ("token-id prompts", yes[self.token_id_prompts] + " (step, force, branch)"),
            ("step endpoint", ENDPOINT[self.step_api]),
            ("tokenize chat", yes[self.tokenize_chat] + " (exact prompt ids)"),
            ("max top_logprobs", str(self.max_top_logprobs or "unknown")),
            ("probabilities", self.distribution),
            ("token ids", self.ids_in_logprobs),
            ("prompt scoring", self.prompt_scoring),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "server": self.server,
            "model": self.model,
            "models": list(self.models),
            "context_window": self.context_window,
            "token_id_prompts": self.token_id_prompts,
            "tokenize_chat": self.tokenize_chat,
            "tokenize_text": self.tokenize_text,
            "max_top_logprobs": self.max_top_logprobs,
            "distribution": self.distribution,
            "ids_in_logprobs": self.ids_in_logprobs,
            "prompt_scoring": self.prompt_scoring,
            "step_api": self.step_api,
        }


def _server_kind(cards: list[dict[str, Any]], client: HttpClient) -> str:
    owners = {str(c.get("owned_by", "")).lower() for c in cards}
    for owner, kind in (("logitlab", "logitlab"), ("vllm", "vllm"), ("llamacpp", "llama.cpp")):
        if owner in owners:
            return kind
    if owners & {"sglang"}:
        return "sglang"
    props = client.try_get("/props")
    if isinstance(props, dict) and "default_generation_settings" in props:
        return "llama.cpp"
    return "openai-compatible"


def _context_window(card: dict[str, Any], client: HttpClient, server: str) -> int:
    for key in ("context_window", "max_model_len", "context_length"):
        if isinstance(card.get(key), int):
            return int(card[key])
    meta = card.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):
        ctx = int(meta["n_ctx_train"])
    else:
        ctx = 0
    if server == "llama.cpp":
        props = client.try_get("/props")
        settings = props.get("default_generation_settings", {}) if isinstance(props, dict) else {}
        if isinstance(settings.get("n_ctx"), int):
            return int(settings["n_ctx"])
    return ctx


def pick_model(url: str, names: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted in names:
            return wanted
        raise EngineModelNotFoundError(
            f"{url} does not serve {wanted!r}; it serves: {', '.join(names) or 'nothing'}"
        )
    if not names:
        raise EngineServerError(f"{url}/v1/models lists no models")
    if len(names) > 1:
        raise EngineModelNotFoundError(
            f"{url} serves several models ({', '.join(names)}): pick one with --engine-model NAME"
        )
    return names[0]


def probe(client: HttpClient, wanted: str | None) -> Capabilities:
    """Connect, pick the model, and try each capability the workbench uses."""
    listing = client.get("/v1/models")
    cards = [c for c in (listing.get("data") or []) if isinstance(c, dict)]
    names = [str(c.get("id")) for c in cards]
    model = pick_model(client.url, names, wanted)
    card = cards[names.index(model)]
    server = _server_kind(cards, client)
    context = _context_window(card, client, server)

    hello = [{"role": "user", "content": "Hello"}]
    if server == "llama.cpp":  # its own /tokenize shape, and chats through /apply-template
        tokenized, text_ids = None, llama_tokenize(client, "Hello", special=False)
        tokenize_text = text_ids is not None
        tokenize_chat = llama_chat_ids(client, hello) is not None
    else:
        tokenized = client.try_post("/tokenize", {"model": model, "prompt": "Hello"})
        text_ids = tokenized.get("tokens") if isinstance(tokenized, dict) else None
        tokenize_text = isinstance(text_ids, list) and all(isinstance(i, int) for i in text_ids)
        chat = client.try_post(
            "/tokenize", {"model": model, "messages": hello, "add_generation_prompt": True}
        )
        tokenize_chat = isinstance(chat, dict) and isinstance(chat.get("tokens"), list)
    if isinstance(tokenized, dict) and isinstance(tokenized.get("max_model_len"), int):
        context = context or int(tokenized["max_model_len"])

    token_id_prompts, top, distribution, ids_in = False, 0, "unknown", "none"
    if tokenize_text and text_ids:
        body: dict[str, Any] = {
            "model": model,
            "prompt": [int(i) for i in text_ids],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": ASKED_TOP,
        }
        if server == "vllm":
            body["return_tokens_as_token_ids"] = True
        answer = client.try_post("/v1/completions", body)
        choice = (answer.get("choices") or [{}])[0] if isinstance(answer, dict) else {}
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        if isinstance(logprobs, dict) and logprobs.get("tokens"):
            token_id_prompts = True
            tops = logprobs.get("top_logprobs") or [{}]
            top = len(tops[0] or {}) if tops else 0
            if logprobs.get("token_ids") is not None:
                ids_in = "token_id field"
            elif str(logprobs["tokens"][0]).startswith("token_id:"):
                ids_in = "token_id:N strings"
            if logprobs.get("processed_token_logprobs") is not None:
                distribution = "raw+processed"
            elif server == "vllm":
                distribution = "raw"  # vLLM's default --logprobs-mode raw_logprobs
    step_api: StepApi = "completions" if token_id_prompts else "none"
    native = probe_step_api(client, server, text_ids, ASKED_TOP) if text_ids else None
    if native is not None:  # OpenAI endpoints without ids: the server's own
        step_api, top = native
        token_id_prompts, ids_in = True, "id field"
        # llama.cpp's post_sampling_probs false: the softmax of the raw logits; SGLang's
        # logprobs follow its temperature unless the server is told otherwise
        distribution = "raw" if step_api == "llama.cpp" else "unknown"
    scoring = probe_scoring(client, model, list(text_ids or []) * 2) if token_id_prompts else "none"
    return Capabilities(
        url=client.url,
        server=server,
        model=model,
        models=tuple(names),
        context_window=context,
        token_id_prompts=token_id_prompts,
        tokenize_chat=tokenize_chat,
        tokenize_text=tokenize_text,
        max_top_logprobs=top,
        distribution=distribution,  # type: ignore[arg-type]
        ids_in_logprobs=ids_in,
        prompt_scoring=scoring,
        step_api=step_api,
    )
