"""Running the app on uvicorn: in the foreground (`serve`) or a background thread.

On Ctrl+C (or `ServerThread.stop`) every waiting and running reply is cancelled
first, so open streams end within one step instead of holding shutdown up; then
uvicorn closes the connections and `close` commits the sessions still pending.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from engine.errors import LogitlabError


class _Server(uvicorn.Server):
    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.server.scheduler.cancel_all()
        super().handle_exit(sig, frame)


def _config(app: FastAPI, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app, log_level=log_level, timeout_graceful_shutdown=5, access_log=False, lifespan="off"
    )


class ServeBindError(LogitlabError):
    """The address cannot be listened on (a port in use, an address not on this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port`, made before `serve` prints its URL: a port in
    use is a one-line error here, not uvicorn's log line and its exit status 3."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeBindError(
                f"{host}:{port} is already in use; choose another --port"
            ) from None
        raise ServeBindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(
    app: FastAPI,
    host: str,
    port: int,
    log_level: str = "warning",
    sock: socket.socket | None = None,
) -> None:
    """Serve until Ctrl+C (on `sock` when given, from `bind`); then cancel in-flight
    replies and commit sessions."""
    config = _config(app, log_level)
    config.host, config.port = host, port
    server = _Server(app, config)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        app.state.server.close()


class ServerThread:
    """uvicorn on a free loopback port in a daemon thread; `stop` shuts it down."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", log_level: str = "warning") -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self._server = _Server(app, _config(app, log_level))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        for _ in range(int(timeout / 0.02)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.02)
        raise RuntimeError("the server did not start")

    def stop(self, timeout: float = 15.0) -> None:
        self.app.state.server.scheduler.cancel_all()
        self._server.should_exit = True
        self._thread.join(timeout)
        self.app.state.server.close()
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
