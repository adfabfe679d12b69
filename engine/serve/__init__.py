"""The OpenAI-compatible HTTP server over the decode protocol (`logitlab serve`).

`create_app` builds the FastAPI app for a loaded `Engine`; `ServerThread` runs it
on uvicorn in a background thread (tests, benchmarks); `serve` runs it in the
foreground until Ctrl+C, cancelling in-flight replies and committing sessions.
"""

from engine.serve.app import ServeOptions, create_app
from engine.serve.queue import Job, QueueFullError, Scheduler
from engine.serve.recorder import SERVED_PREFIX, Recorder
from engine.serve.server import ServeBindError, ServerThread, bind, is_loopback, serve

__all__ = [
    "SERVED_PREFIX",
    "Job",
    "QueueFullError",
    "Recorder",
    "Scheduler",
    "ServeBindError",
    "ServeOptions",
    "ServerThread",
    "bind",
    "create_app",
    "is_loopback",
    "serve",
]
