"""`RemoteEngine` / `RemoteReply`: the decode protocol over an OpenAI-compatible server.

Full replies stream ``/v1/chat/completions`` with ``logprobs`` and turn each
entry into a `Step`. Step-through asks ``/v1/completions`` for one token of a
token-id prompt (prompt ids from ``/tokenize`` + the reply so far) with its
candidates: accepting keeps the server's pick, forcing appends another id,
branching (rewind) cuts the id list. Free decoding after a force or a rewind
streams ``/v1/completions`` from the ids. A server without token-id prompts
gets full replies only (`FeatureUnavailableError`, one line): text is never
re-tokenized and called exact.

All calls block (httpx); front ends call them from worker threads, as they do
the local engine. No torch anywhere on this path. The reply is
engine/decode/remote/reply.py, reading streams with engine/decode/remote/stream.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from engine.decode.protocol import ProgressFn, PromptView
from engine.decode.remote import score as remote_score
from engine.decode.remote.capabilities import Capabilities, probe
from engine.decode.remote.client import DEFAULT_TIMEOUT, HttpClient
from engine.decode.remote.native import llama_chat_ids, llama_tokenize
from engine.decode.remote.pieces import Pieces, ServerSource, Source, TokenizerSource
from engine.decode.remote.reply import RemoteReply
from engine.errors import EngineServerError, FeatureUnavailableError, ModelLoadError
from engine.model.description import ModelDescription
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import PromptScores, TokenScore
from engine.tokens.chat import ChatMessage
from engine.tokens.views import TokenInfo

# servers that take top_k, min_p and repetition_penalty beside OpenAI's fields
EXPLICIT_SAMPLERS = frozenset({"logitlab", "vllm", "sglang", "llama.cpp"})


class RemoteEngine:
    """A model on a serving engine (vLLM, SGLang, llama.cpp, logitlab serve)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tokenizer: str | None = None,
    ) -> None:
        self.client = HttpClient(url, api_key, timeout)
        self.wanted = model
        self.tokenizer = tokenizer  # a tokenizer the user named for the server's ids
        self._caps: Capabilities | None = None
        self._pieces: Pieces | None = None  # per connection: what each id stands for
        self._local: TokenizerSource | None = None  # the named tokenizer, loaded
        # ids that end a reply when forced: the named tokenizer's end-of-sequence ids, and
        # the special tokens this server ended its own replies with (learnt per connection)
        self._ends: set[int] = set()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            raise ModelLoadError(f"not connected to {self.url} yet")
        return self._caps

    def capabilities_or_none(self) -> Capabilities | None:
        return self._caps

    def step_unavailable(self) -> str | None:
        """Why step mode cannot run here (None: it can, or not connected yet)."""
        return self._caps.step_unavailable() if self._caps is not None else None

    def close(self) -> None:
        self.client.close()

    # --- PromptScoring: the server's prompt_logprobs or echo (remote/score.py) ----------

    def score(self, ids: Sequence[int], *, top: int = 0, start: int = 1) -> tuple[TokenScore, ...]:
        return remote_score.score(self.client, self.capabilities, ids, top=top, start=start)

    def score_unavailable(self) -> str | None:
        """Why this server cannot score a prompt (None: it can, or not connected yet)."""
        return remote_score.unavailable(self._caps) if self._caps is not None else None

    def prompt_scores(self, ids: Sequence[int]) -> PromptScores:
        """The Prompt tab's view of `score(ids)`."""
        return PromptScores.from_scores(ids, self.score(ids))

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        report = progress or (lambda _stage, _fraction, _detail: None)
        report("connecting", 0.0, self.url)
        self._caps = caps = probe(self.client, self.wanted)
        if self.tokenizer and self._local is None:
            self._local = TokenizerSource.load(self.tokenizer)
        source: Source = self._local or ServerSource(self.client, caps.model)
        self._pieces = Pieces(source)
        self._ends = set(self._local.eos_ids()) if self._local is not None else set()
        report("ready", 1.0, caps.model)
        return ModelDescription(
            spec=spec,
            model_id=caps.model,
            source="remote",
            device=self.url,
            dtype="server",
            quantize="server",
            context_window=caps.context_window,
            architecture=caps.server,
            config={"engine": caps.as_dict()},
        )

    # --- tokens ------------------------------------------------------------------------

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        caps = self.capabilities
        if not caps.tokenize_chat and self._local is None:
            return PromptView(
                tokens=(),
                context_window=caps.context_window,
                warnings=(
                    f"{caps.url} cannot tokenize chat messages: the exact prompt ids are unknown",
                ),
            )
        ids, strs = self._tokenize_chat(messages)
        tokens = tuple(
            TokenInfo(
                position=i,
                id=tid,
                piece=piece,
                display=piece,
                bytes=self._known_bytes(tid),
                special=piece.startswith("<") and piece.endswith(">") and len(piece) > 2,
                partial=False,
                origin="template",
            )
            for i, (tid, piece) in enumerate(zip(ids, strs, strict=True))
        )
        return PromptView(tokens=tokens, context_window=caps.context_window)

    def _tokenize_chat(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        """The chat's prompt ids and pieces: the server's tokenizing, else the named
        tokenizer's template (--engine-tokenizer); llama.cpp's through /apply-template."""
        if not self.capabilities.tokenize_chat and self._local is not None:
            ids = self._local.chat_ids(messages)
            return ids, [self.pieces.get(i).piece for i in ids]
        if self.capabilities.server == "llama.cpp":
            wire = [{"role": m.role, "content": m.content} for m in messages]
            found = llama_chat_ids(self.client, wire)
            if found is None:
                raise EngineServerError(f"{self.url} could not tokenize the chat messages")
            return found, [self.pieces.get(i).piece for i in found]
        answer = self.client.post(
            "/tokenize",
            {
                "model": self.capabilities.model,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "add_generation_prompt": True,
                "return_token_strs": True,
            },
        )
        ids = [int(i) for i in answer.get("tokens") or []]
        strs = answer.get("token_strs") or [str(i) for i in ids]
        return ids, [str(s) for s in strs]

    def chat_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        if not self.capabilities.tokenize_chat and self._local is None:
            raise FeatureUnavailableError(
                f"{self.url} cannot tokenize chat messages, so a reply cannot continue from ids"
                " (name the model's tokenizer with --engine-tokenizer)"
            )
        return self._tokenize_chat(messages)[0]

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if not self.capabilities.tokenize_text:
            raise FeatureUnavailableError(f"{self.url} has no /tokenize endpoint")
        if self.capabilities.server == "llama.cpp":
            ids = llama_tokenize(self.client, text, special=allow_special)
            if ids is None:
                raise EngineServerError(f"{self.url} could not tokenize the text")
            return ids
        answer = self.client.post(
            "/tokenize",
            {"model": self.capabilities.model, "prompt": text, "add_special_tokens": False},
        )
        return [int(i) for i in answer.get("tokens") or []]

    @property
    def pieces(self) -> Pieces:
        """What each token id stands for (pieces.py): learnt from replies, else looked up."""
        if self._pieces is None:
            raise ModelLoadError(f"not connected to {self.url} yet")
        return self._pieces

    def _known_bytes(self, token_id: int) -> bytes:
        facts = self.pieces.known(token_id)
        return facts.data if facts is not None else b""

    def learn(self, token_id: int, data: bytes) -> None:
        self.pieces.learn(token_id, data)

    def ends_reply(self, token_id: int) -> bool:
        """Whether `token_id` forced into a reply ends it, as an end-of-sequence token
        ends a local one. A server does not say which ids those are: the named tokenizer
        does (``--engine-tokenizer``), and a special token the server stopped on is one."""
        return token_id in self._ends

    def learn_end(self, token_id: int) -> None:
        self._ends.add(token_id)

    def token_bytes(self, token_id: int) -> bytes:
        return self.pieces.get(token_id).data if token_id >= 0 else b""

    def token_display(self, token_id: int) -> str:
        if token_id < 0:
            return "?"
        return self.pieces.get(token_id).display  # as the local engine shows it

    # --- replies -----------------------------------------------------------------------

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> RemoteReply:
        return RemoteReply(self, params, cancel, messages=messages, prefix=prefix)

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> RemoteReply:
        self.need_ids()
        return RemoteReply(self, params, cancel, prompt_ids=prompt_ids, prefix=prefix)

    def need_ids(self) -> None:
        """Refuse (one line) where the server cannot continue from token ids."""
        why = self.capabilities.step_unavailable()
        if why is not None:
            raise FeatureUnavailableError(why)

    def sampling_body(self, params: SamplingParams, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.capabilities.model,
            "max_tokens": max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        # a server applies its own defaults (vLLM and logitlab serve: the model's generation
        # config, top-k 50 for many) to what is left out: to one that knows these fields,
        # "off" is said too (top-k off is -1 to all four), so its sampling is the local one
        known = self.capabilities.server in EXPLICIT_SAMPLERS
        if params.top_k or known:
            body["top_k"] = params.top_k or -1
        if params.min_p or known:
            body["min_p"] = params.min_p
        if params.repetition_penalty != 1.0 or known:
            body["repetition_penalty"] = params.repetition_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.capabilities.server == "vllm":
            body["return_tokens_as_token_ids"] = True
        return body

    def top_n(self, params: SamplingParams) -> int:
        most = self.capabilities.max_top_logprobs or 20
        return max(1, min(params.top_logprobs or 1, most))
