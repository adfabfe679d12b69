"""Stub llama.cpp and SGLang servers for tests: their native endpoints, in the shapes
their sources write (llama.cpp tools/server/server-task.cpp ``probs_vector_to_json``,
``/tokenize`` ``content``, ``/apply-template``, ``/detokenize`` ``content``; SGLang
``/generate`` ``meta_info.output_token_logprobs`` triples, ``/tokenize`` without chat,
``/detokenize`` ``text``), answered by a local engine on the tiny model over real HTTP
on a loopback port. Each one-token request runs the local reply for those ids."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.decode import run_reply
from engine.params import SamplingParams
from engine.records import Step

Route = Callable[[dict[str, Any]], tuple[int, Any]]


class NativeStub:
    """A server of `routes` (path -> handler of the JSON body); `url` ends in /v1."""

    owner = "someone"

    def __init__(self, engine: Any, tokenizer: Any) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.calls: list[str] = []
        self.lock = threading.Lock()  # one local reply at a time
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub.answer(self, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                stub.answer(self, json.loads(self.rfile.read(length) or b"{}"))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> NativeStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def routes(self) -> dict[str, Route]:
        return {
            "/v1/models": lambda _body: (200, {"data": [{"id": "tiny", "owned_by": self.owner}]})
        }

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        self.calls.append(handler.path)
        route = self.routes().get(handler.path)
        status, out = route(body) if route else (404, {"error": {"message": "Not Found"}})
        data = json.dumps(out).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def one_step(self, ids: list[int], params: SamplingParams) -> Step:
        with self.lock:
            return run_reply(self.engine.start_ids(ids, params)).steps[0]

    def text_of(self, token_id: int) -> str:
        """A token decoded alone, specials kept (as both servers' logprob texts)."""
        return str(self.tokenizer.decode([token_id]))


class LlamaCppStub(NativeStub):
    owner = "llamacpp"

    def routes(self) -> dict[str, Route]:
        return {
            **super().routes(),
            "/props": lambda _b: (200, {"default_generation_settings": {"n_ctx": 256}}),
            "/tokenize": self.tokenize,
            "/apply-template": self.apply_template,
            "/detokenize": lambda b: (200, {"content": self.tokenizer.decode(b["tokens"])}),
            "/completion": self.completion,
        }

    def tokenize(self, body: dict[str, Any]) -> tuple[int, Any]:
        if "content" not in body:
            return 200, {"tokens": []}  # llama.cpp reads `content` only
        special = bool(body.get("parse_special", True))
        return 200, {"tokens": self.engine.encode(body["content"], allow_special=special)}

    def apply_template(self, body: dict[str, Any]) -> tuple[int, Any]:
        text = self.tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=True
        )
        return 200, {"prompt": text}

    def _entry(self, token_id: int, logprob: float, data: bytes) -> dict[str, Any]:
        return {
            "id": token_id,
            "token": data.decode("utf-8", errors="ignore"),
            "bytes": list(data),
            "logprob": logprob,
        }

    def completion(self, body: dict[str, Any]) -> tuple[int, Any]:
        assert body["n_predict"] == 1 and body["post_sampling_probs"] is False
        if body.get("repeat_last_n", 0) < 0 or body.get("top_k", 0) < 0:  # its hard limits
            return 400, {"error": {"code": 400, "message": "value out of range"}}
        params = SamplingParams(
            temperature=body["temperature"],
            top_k=body["top_k"] or 0,
            top_p=body["top_p"],
            min_p=body["min_p"],
            repetition_penalty=body["repeat_penalty"],
            seed=body.get("seed"),
            max_new_tokens=1,
            top_logprobs=body["n_probs"],
        )
        step = self.one_step(list(body["prompt"]), params)
        table = self.engine.token_bytes
        entry = self._entry(step.token_id, step.logprob, table(step.token_id))
        entry["top_logprobs"] = [
            self._entry(c.token_id, c.logprob, table(c.token_id)) for c in step.top
        ]
        eos = step.finish_reason == "stop"
        return 200, {
            "content": step.text,
            "tokens": [step.token_id],
            "stop": True,
            "stop_type": "eos" if eos else "limit",
            "completion_probabilities": [entry],
        }


class SglangStub(NativeStub):
    owner = "sglang"

    def routes(self) -> dict[str, Route]:
        return {
            **super().routes(),
            "/tokenize": self.tokenize,
            "/detokenize": self.detokenize,
            "/generate": self.generate,
        }

    def tokenize(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("prompt"), str):  # no chat messages on SGLang
            return 400, {"error": {"message": "Invalid prompt type"}}
        ids = self.engine.encode(body["prompt"])
        return 200, {"tokens": ids, "count": len(ids), "max_model_len": 256}

    def detokenize(self, body: dict[str, Any]) -> tuple[int, Any]:
        tokens = body["tokens"]
        if tokens and isinstance(tokens[0], list):
            return 200, {"text": [self.tokenizer.decode(t) for t in tokens]}
        return 200, {"text": self.tokenizer.decode(tokens)}

    def generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        sampling = body["sampling_params"]
        assert sampling["max_new_tokens"] == 1 and body["return_text_in_logprobs"]
        params = SamplingParams(
            temperature=sampling["temperature"],
            top_k=max(0, sampling["top_k"]),
            top_p=sampling["top_p"],
            min_p=sampling["min_p"],
            repetition_penalty=sampling["repetition_penalty"],
            seed=sampling.get("sampling_seed"),
            max_new_tokens=1,
            top_logprobs=body["top_logprobs_num"],
        )
        step = self.one_step(list(body["input_ids"]), params)
        eos = step.finish_reason == "stop"
        meta = {
            "finish_reason": {"type": "stop", "matched": step.token_id}
            if eos
            else {"type": "length", "length": 1},
            "prompt_tokens": len(body["input_ids"]),
            "completion_tokens": 1,
            "output_token_logprobs": [[step.logprob, step.token_id, self.text_of(step.token_id)]],
            "output_top_logprobs": [
                [[c.logprob, c.token_id, self.text_of(c.token_id)] for c in step.top]
            ],
        }
        return 200, {"text": step.text, "output_ids": [step.token_id], "meta_info": meta}
