"""The HTTP client of a remote serving engine: one `httpx.Client`, errors a user can act on.

Every failure becomes one `RemoteEngineError` naming the URL: nothing listening,
a refused API key, a timeout (with the option that raises it), an error body
from the server (its message, one line). Streams are server-sent events read
line by line; `close()` from another thread ends a stream being read (cancel).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from engine.errors import (
    EngineAuthError,
    EngineServerError,
    EngineTimeoutError,
    EngineUnreachableError,
    RemoteEngineError,
)

DEFAULT_TIMEOUT = 60.0


def _httpx() -> Any:
    """httpx, imported on first use: its package init loads its own CLI helpers, which
    pull in rich where it is installed, and importing the engine must load no UI code."""
    import httpx

    return httpx


def split_url(url: str) -> tuple[str, str]:
    """(root, OpenAI base): ``http://h:8000/v1`` and ``http://h:8000`` both give
    ``("http://h:8000", "http://h:8000/v1")``."""
    cleaned = url.strip().rstrip("/")
    if not cleaned.startswith(("http://", "https://")):
        raise EngineUnreachableError(f"--engine {url!r}: give an http:// or https:// URL")
    root = cleaned[: -len("/v1")] if cleaned.endswith("/v1") else cleaned
    return root, root + "/v1"


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_message(response: httpx.Response) -> str:
    """The server's own words from an error body (OpenAI, FastAPI or llama.cpp shape)."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text) or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _one_line(str(err))
    return _one_line(str(body))


class HttpClient:
    """Requests to one server, with its API key and timeout; thread-safe enough to
    close a stream from the UI thread while a worker reads it."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.url = url.strip().rstrip("/")
        self.root, self.api = split_url(url)
        self.timeout = timeout
        hx = _httpx()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.has_key = bool(api_key)
        self._http = hx.Client(
            timeout=hx.Timeout(timeout, connect=min(timeout, 10.0)), headers=headers
        )
        self._open: set[httpx.Response] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.close_streams()
        self._http.close()

    # --- plain requests -----------------------------------------------------------

    def get(self, path: str) -> Any:
        return self._json(self._send("GET", path, None))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._json(self._send("POST", path, body))

    def try_post(self, path: str, body: dict[str, Any]) -> Any | None:
        """None where the server has no such endpoint or refuses the request's shape
        (a capability probe); unreachable / 401 / timeouts still raise."""
        try:
            return self.post(path, body)
        except EngineServerError:
            return None

    def try_get(self, path: str) -> Any | None:
        try:
            return self.get(path)
        except EngineServerError:
            return None

    def _full(self, path: str) -> str:
        return path if path.startswith("http") else self.root + path

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        hx = _httpx()
        try:
            response: httpx.Response = self._http.request(method, self._full(path), json=body)
        except hx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        self.raise_for(response, path)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise EngineServerError(
                f"{self.url}: {response.request.url.path} answered with no JSON"
            ) from exc

    # --- streams ------------------------------------------------------------------

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON objects of a server-sent event stream, until ``[DONE]``."""
        hx = _httpx()
        try:
            request = self._http.build_request("POST", self._full(path), json=body)
            response = self._http.send(request, stream=True)
        except hx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        with self._lock:
            self._open.add(response)
        try:
            if response.status_code >= 400:
                response.read()
                self.raise_for(response, path)
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if isinstance(event, dict) and event.get("error"):
                    err = event["error"]
                    message = err.get("message", err) if isinstance(err, dict) else err
                    raise EngineServerError(
                        f"{self.url}: the server failed mid-reply: {_one_line(str(message))}"
                    )
                yield event
        except hx.HTTPError as exc:
            if response.is_closed and not response.is_stream_consumed:
                return  # closed by close_streams(): a cancel
            raise self._transport_error(exc, mid_stream=True) from exc
        except (ValueError, RuntimeError) as exc:  # bad JSON, or read after a close
            if response.is_closed:
                return
            raise EngineServerError(f"{self.url}: unreadable stream: {exc}") from exc
        finally:
            with self._lock:
                self._open.discard(response)
            response.close()

    def close_streams(self) -> None:
        """End every stream being read (from any thread): the reader stops at once."""
        with self._lock:
            streams = list(self._open)
        for response in streams:
            # closing while another thread reads can race; it ends up closed either way
            with contextlib.suppress(Exception):
                response.close()

    # --- errors -------------------------------------------------------------------

    def raise_for(self, response: httpx.Response, path: str) -> None:
        code = response.status_code
        if code < 400:
            return
        message = error_message(response)
        if code in (401, 403):
            hint = (
                "the API key was refused; check --api-key / LOGITLAB_API_KEY"
                if self.has_key
                else "the server wants an API key: pass --api-key KEY or set LOGITLAB_API_KEY"
            )
            raise EngineAuthError(f"{self.url}: HTTP {code}: {hint}")
        raise EngineServerError(f"{self.url}: HTTP {code} from {path}: {message}")

    def _transport_error(self, exc: httpx.HTTPError, mid_stream: bool = False) -> RemoteEngineError:
        hx = _httpx()
        if isinstance(exc, hx.TimeoutException):
            return EngineTimeoutError(
                f"{self.url} did not answer within {self.timeout:g} s"
                " (raise it with --engine-timeout SECONDS)"
            )
        if mid_stream:
            return EngineServerError(f"{self.url}: the server broke off the reply: {exc}")
        reason = _one_line(str(exc)) or type(exc).__name__
        return EngineUnreachableError(
            f"cannot reach the engine at {self.url}: {reason} (is the server running?)"
        )
