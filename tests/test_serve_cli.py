"""`logitlab serve` as a user runs it: a real process on a free loopback port (the tiny
model), its printed URL, a port already in use, the warning for an open host without
a key, and Ctrl+C / SIGTERM with a reply in flight: cancelled, and its session kept."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from engine.serve import SERVED_PREFIX
from engine.sessions import SessionStore
from tests.timeouts import scaled

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parent.parent
# Ctrl+C ends it like any command (130, "interrupted"); SIGTERM, once the server has
# shut down, is re-raised (uvicorn): the process ends by that signal, as a service should
STOPPED_BY = {signal.SIGINT: 130, signal.SIGTERM: -signal.SIGTERM}
URL_LINE = re.compile(r"serving (\S+) at (http://\S+)/v1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(model: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tui.cli.main",
        "serve",
        "--model",
        str(model),
        "--device",
        "cpu",
        *args,
    ]


class Served:
    """`logitlab serve` in a child process; its stderr read line by line on a thread."""

    def __init__(self, model: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            _command(model, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ended = False  # stderr read to its end
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def url(self) -> tuple[str, str]:
        """The model name and base URL the server says it serves at (fails if it ends first)."""
        while (line := self._lines.get(timeout=scaled(120))) is not None:
            self.lines.append(line)
            if found := URL_LINE.search(line):
                return found.group(1), found.group(2)
        self._ended = True
        raise AssertionError(f"serve ended before printing its URL: {self.lines}")

    def stop(self, how: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            code = self.process.wait(scaled(60))
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        while not self._ended and (line := self._lines.get(timeout=scaled(10))) is not None:
            self.lines.append(line)
        self._ended = True
        return code


@pytest.fixture
def served(tiny_model_dir: Path) -> Iterator[Served]:
    server = Served(tiny_model_dir, "--port", str(_free_port()))
    try:
        yield server
    finally:
        server.stop()


def test_serve_prints_the_url_it_answers_on(served: Served) -> None:
    port = served.process.args[-1]  # type: ignore[index]
    name, url = served.url()
    assert url == f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/health", timeout=scaled(60)).json()["status"] == "ok"
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert served.stop(signal.SIGINT) == STOPPED_BY[signal.SIGINT]
    assert not [line for line in served.lines if "warning" in line or "Traceback" in line]
    # the default on a CPU: continuous batching of 16
    assert "  up to 16 replies decoded together (--max-batch), 64 more may wait" in served.lines


def test_a_port_in_use_is_one_line_and_exit_1(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _command(tiny_model_dir, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=scaled(120),
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("key", [None, "s3cret"])
def test_a_host_beyond_loopback_without_a_key_is_warned_about(
    tiny_model_dir: Path, key: str | None
) -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: the warning comes, then the bind
    fails (one line, exit 1), so nothing listens beyond loopback."""
    extra = ["--api-key", key] if key else []
    result = subprocess.run(
        _command(tiny_model_dir, "--host", "192.0.2.1", "--port", str(_free_port()), *extra),
        capture_output=True,
        text=True,
        timeout=scaled(120),
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "LOGITLAB_API_KEY"},
    )
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    if key is None:
        assert len(warnings) == 1 and "192.0.2.1" in warnings[0] and "--api-key" in warnings[0]
    else:
        assert warnings == []
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 4096-token window: a greedy reply of thousands of tokens is
    sure to be decoding when the signal comes."""
    directory = tmp_path_factory.mktemp("tiny-long")
    for file in tiny_model_dir.iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        data = json.loads((directory / name).read_text())
        data[key] = 4096
        (directory / name).write_text(json.dumps(data))
    return directory


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_the_reply_in_flight_and_keeps_its_session(
    long_model_dir: Path, how: int
) -> None:
    server = Served(long_model_dir, "--port", str(_free_port()))
    try:
        name, url = server.url()
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
        stream = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "Count to ten thousand"}],
            max_tokens=3500,
            temperature=0,
            stream=True,
        )
        finish = None
        for index, chunk in enumerate(stream):  # to its end: the server, not us, stops it
            if index == 3:
                server.process.send_signal(how)
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
        assert finish == "abort"  # cancelled, in OpenAI's words (vLLM's)
        assert server.stop(how) == STOPPED_BY[how]
    finally:
        server.stop()
    assert not [line for line in server.lines if "Traceback" in line], server.lines
    with SessionStore.open_default() as store:
        [summary] = store.list()
        session = store.get(summary.id)
    assert session.title.startswith(SERVED_PREFIX)
    reply = session.messages[-1]
    assert reply.finish_reason == "cancelled"
    assert 3 <= len(reply.steps) < 3500
