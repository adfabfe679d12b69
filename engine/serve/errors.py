"""Every failure as OpenAI's error shape, never a traceback, and the ASGI guards
(body size limit, API key) that answer before FastAPI parses anything."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import InvalidParameterError, LogitlabError, PromptTooLongError
from engine.serve.openai_shapes import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# engine field names that the OpenAI API spells differently
_PARAM_NAMES = {"max_new_tokens": "max_tokens"}


class ApiError(Exception):
    """An error response the server decided on: status, message, type, param, code."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )
        self.headers = headers

    def response_body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.response_body(), status_code=self.status, headers=self.headers)


def api_error(exc: BaseException) -> ApiError:
    """The response an exception deserves (engine errors keep their one-line message)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidParameterError):
        param = _PARAM_NAMES.get(exc.field, exc.field)
        message = exc.message.replace(exc.field, param, 1)
        return ApiError(400, message, param=param, code="invalid_parameter")
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, exc.message, param="messages", code="context_length_exceeded")
    if isinstance(exc, LogitlabError):
        return ApiError(500, exc.message, type_="server_error")
    return ApiError(500, f"internal error ({type(exc).__name__})", type_="server_error")


def install_handlers(app: FastAPI) -> None:
    """Route every kind of failure to the error shape."""

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(LogitlabError)
    async def _engine(_request: Request, exc: LogitlabError) -> JSONResponse:
        return api_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # pydantic's raw list stays here: the client gets one sentence and the parameter
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            return ApiError(400, "the request body is not valid JSON").response()
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid body"
        return ApiError(400, message, param=param, code="invalid_parameter").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
            return ApiError(404, message, code="not_found").response()
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        return api_error(exc).response()


class _BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: refuse bodies over `max_body` (413) and requests without the
    API key (401, ``/health`` exempt), before the app reads anything."""

    def __init__(self, app: ASGIApp, *, max_body: int, api_key: str | None) -> None:
        self._app, self._max_body, self._api_key = app, max_body, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self._api_key is not None and scope["path"] != "/health":
            given = headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self._api_key.encode()):
                message = "missing or wrong API key (send Authorization: Bearer KEY)"
                body = error_body(message, "invalid_request_error", None, "invalid_api_key")
                await _send_json(send, 401, body)
                return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_body:
            await _send_json(send, 413, self._too_large())
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_body:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, self._too_large())

    def _too_large(self) -> dict[str, Any]:
        message = f"the request body is over the limit of {self._max_body} bytes"
        return error_body(message, "invalid_request_error", None, "request_too_large")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
