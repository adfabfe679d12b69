"""Drive a model on an OpenAI-compatible server through the same protocol: the reply
streams from the server, each step with the logprobs it reported.

    python examples/remote_engine.py http://127.0.0.1:8000/v1   (a running server)
    python examples/remote_engine.py --serve [MODEL]            (starts `logitlab serve`)
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.decode import RemoteSpec, open_engine, run_reply
from engine.params import SamplingParams
from engine.tokens import ChatMessage


def start_server(model: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """`logitlab serve` on a free loopback port; its URL once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        str(Path(sys.executable).with_name("logitlab")),
        "serve",
        "--port",
        str(port),
        "--no-record",
        "--device",
        "cpu",
    ]
    server = subprocess.Popen([*args, *(["--model", model] if model else [])])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health").status_code == 200:
                return server, url + "/v1"
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


server = None
if sys.argv[1:2] == ["--serve"]:
    server, url = start_server(sys.argv[2] if len(sys.argv) > 2 else None)
else:
    url = sys.argv[1]
try:
    spec = RemoteSpec(url)
    engine = open_engine(spec)  # nothing is loaded here: load() connects and probes
    model = engine.load(spec.model_spec)
    print(f"{model.model_id} at {url}: {engine.capabilities.server}")
    messages = [ChatMessage("user", "Say hello.")]
    params = SamplingParams(temperature=0.0, max_new_tokens=8, top_logprobs=3)
    result = run_reply(engine.start(messages, params))
    for step in result.steps:
        top = ", ".join(engine.token_display(c.token_id) for c in step.top)
        print(f"{step.index:3} {step.text!r:12} logprob={step.logprob:.3f} top: {top}")
    print(f"{result.summary.finish_reason}: {result.summary.text!r}")
finally:
    if server is not None:
        server.terminate()
        server.wait(30)
