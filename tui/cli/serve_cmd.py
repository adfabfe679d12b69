"""`logitlab serve`: the loaded model behind an OpenAI-compatible HTTP API.

Loads like `chat` (config.toml's ``[model]`` under the options, the bundled model
by default), prints the URL and a usage example, and serves until Ctrl+C; then
in-flight replies are cancelled and recorded sessions committed. The server is
`engine.serve`; this module only parses options and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from engine.errors import InvalidParameterError
from tui.cli.options import add_model_options, merge_model_defaults, model_spec_from


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API (with logprobs)"
    )
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (or LOGITLAB_API_KEY)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not store served requests as sessions"
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, metavar="N", help="requests waiting at most (64)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="replies decoded together on transformers and llama.cpp (continuous batching; "
        "1: one at a time); default 16 on a CPU, 32 on a GPU",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN (repeatable; none by default)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.decode import open_engine
    from engine.serve import ServeOptions, bind, create_app, is_loopback, serve
    from engine.serve.batching import default_max_batch
    from tui.cli.notices import print_notices
    from tui.cli.sessions_cmd import open_store

    if not 0 <= args.port <= 65535:
        raise InvalidParameterError("--port", f"must be in [0, 65535], got {args.port}")
    if args.max_queue < 1:
        raise InvalidParameterError("--max-queue", f"must be >= 1, got {args.max_queue}")
    if args.max_batch is not None and args.max_batch < 1:
        raise InvalidParameterError("--max-batch", f"must be >= 1, got {args.max_batch}")
    api_key = args.api_key or os.environ.get("LOGITLAB_API_KEY") or None
    config = load_config()
    spec = model_spec_from(merge_model_defaults(args, config.model))
    store = None if args.no_record else open_store()
    engine = open_engine(spec)
    model = print_notices(engine.load(spec))
    options = ServeOptions(
        api_key=api_key,
        record=not args.no_record,
        max_queue=args.max_queue,
        max_batch=args.max_batch or default_max_batch(model.device),
        cors_origins=tuple(args.cors_origin or ()),
    )
    app = create_app(engine, model, options, store)
    if not is_loopback(args.host) and api_key is None:
        print(
            f"logitlab: warning: serving on {args.host} without --api-key: "
            "anyone who can reach this address can use the model",
            file=sys.stderr,
        )
    sock = bind(args.host, args.port)  # a port in use: one line, before any URL is shown
    port = int(sock.getsockname()[1])  # --port 0: the port the system chose
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{port}"
    auth = f" -H 'Authorization: Bearer {api_key}'" if api_key else ""
    print(f"logitlab: serving {model.model_id} at {url}/v1 (Ctrl+C stops)", file=sys.stderr)
    print(
        f"  curl {url}/v1/chat/completions{auth} -H 'Content-Type: application/json' "
        f'-d \'{{"model": "{model.model_id}", "messages": [{{"role": "user", "content": "Hi"}}], '
        '"logprobs": true, "top_logprobs": 5}\'',
        file=sys.stderr,
    )
    batch = getattr(app.state.server.scheduler, "max_batch", 1)
    how = f"up to {batch} replies decoded together" if batch > 1 else "one reply at a time"
    print(f"  {how} (--max-batch), {args.max_queue} more may wait", file=sys.stderr)
    if store is not None:
        print(f"  requests are recorded as sessions in {store.path}", file=sys.stderr)
    serve(app, args.host, port, sock=sock)
    return 0
