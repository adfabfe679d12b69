"""A stub vLLM for tests: `logitlab serve` over a local model behind a proxy that
rewrites every answer into vLLM's shapes with ``return_tokens_as_token_ids``: tokens
as ``"token_id:N"`` strings (a chat entry's own ``bytes`` real, its candidates' the id
string's, as vLLM 0.32 sends them), no logitlab extensions, ``owned_by: vllm``;
``/tokenize`` answers vLLM's raw ``token_strs`` and ``/detokenize`` decodes with the
specials kept. Real HTTP on a loopback port; counts the ``/detokenize`` calls."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def _id_string(token_id: int) -> str:
    return f"token_id:{token_id}"


def _chat_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": _id_string(entry["token_id"]),
        "logprob": entry["logprob"],
        "bytes": entry["bytes"],
        "top_logprobs": [
            {
                "token": _id_string(c["token_id"]),
                "logprob": c["logprob"],
                "bytes": list(_id_string(c["token_id"]).encode()),
            }
            for c in entry.get("top_logprobs") or []
        ],
    }


def _legacy(logprobs: dict[str, Any]) -> dict[str, Any]:
    return {
        "text_offset": logprobs.get("text_offset"),
        "token_logprobs": logprobs["token_logprobs"],
        "tokens": [_id_string(i) for i in logprobs["token_ids"]],
        "top_logprobs": [
            {_id_string(c["token_id"]): c["logprob"] for c in cands}
            for cands in logprobs["top_candidates"]
        ],
    }


def as_vllm(body: dict[str, Any]) -> dict[str, Any]:
    """One logitlab answer (or stream event) in vLLM's token-id shapes."""
    for choice in body.get("choices") or []:
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            continue
        if "content" in logprobs:
            content = logprobs.get("content") or []
            choice["logprobs"] = {"content": [_chat_entry(e) for e in content]}
        elif logprobs.get("token_ids") is not None:
            choice["logprobs"] = _legacy(logprobs)
    return body


class VllmStub:
    """The proxy; `url` ends in /v1. Use as a context manager."""

    def __init__(self, upstream: str, tokenizer: Any) -> None:
        self.upstream = upstream.rstrip("/")
        self.tokenizer = tokenizer
        self.detokenized: Counter[int] = Counter()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub.get(self)

            def do_POST(self) -> None:
                stub.post(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._http = httpx.Client(timeout=60.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> VllmStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._http.close()

    # --- handlers -----------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        answer = self._http.get(self.upstream + handler.path)
        body = answer.json()
        if handler.path == "/v1/models":
            for card in body.get("data") or []:
                card["owned_by"] = "vllm"
        self._send(handler, answer.status_code, body)

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = json.loads(handler.rfile.read(length) or b"{}")
        request.pop("return_tokens_as_token_ids", None)
        if handler.path == "/detokenize":
            ids = [int(i) for i in request.get("tokens") or []]
            self.detokenized.update(ids)
            self._send(handler, 200, {"prompt": self.tokenizer.decode(ids)})
            return
        if handler.path == "/tokenize":
            strs = request.pop("return_token_strs", False)
            answer = self._http.post(self.upstream + handler.path, json=request)
            body = answer.json()
            if strs and answer.status_code == 200:
                body["token_strs"] = self.tokenizer.convert_ids_to_tokens(body["tokens"])
            self._send(handler, answer.status_code, body)
            return
        if not request.get("stream"):
            answer = self._http.post(self.upstream + handler.path, json=request)
            self._send(handler, answer.status_code, as_vllm(answer.json()))
            return
        with self._http.stream("POST", self.upstream + handler.path, json=request) as answer:
            handler.send_response(answer.status_code)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for line in answer.iter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    line = "data: " + json.dumps(as_vllm(json.loads(line[5:])))
                handler.wfile.write((line + "\n").encode())
                handler.wfile.flush()
