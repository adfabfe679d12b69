"""`pytest -m "not real_model"` is the quick inner loop: it must not touch the bundled
model. conftest's `bundled_model_guard` fails an unmarked test that does; these tests
check that the guard itself works and that the tiny model is built without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.model.default_model import GGUF_NAME

ROOT = Path(__file__).resolve().parent.parent


def test_the_guard_sees_a_bundled_file_opened(
    bundled_model_guard: list[str], tmp_path: Path
) -> None:
    stand_in = tmp_path / GGUF_NAME  # the name is what the guard knows the file by
    stand_in.write_bytes(b"GGUF")
    converted = tmp_path / (Path(GGUF_NAME).stem + "-0123456789abcdef0123") / "config.json"
    converted.parent.mkdir()
    converted.write_text("{}")
    assert len(bundled_model_guard) == 2  # writing them opened them
    bundled_model_guard.clear()
    stand_in.read_bytes()
    converted.read_text()
    assert bundled_model_guard == [str(stand_in), str(converted)]
    bundled_model_guard.clear()  # provoked on purpose: the test itself must not fail


def test_the_guard_refuses_the_real_model_fixture_without_the_mark(tmp_path: Path) -> None:
    """A pytest run of two tests over a stand-in `real_model` fixture: the unmarked one
    is refused before it runs, the marked one passes."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n"
        "from tests.conftest import (  # noqa: F401\n"
        "    bundled_model_guard, pytest_runtest_setup, pytest_runtest_teardown)\n\n"
        "@pytest.fixture(scope='session')\n"
        "def real_model():\n"
        "    return object()\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    real_model: bundled\n")
    (tmp_path / "test_guarded.py").write_text(
        "import pytest\n\n"
        "def test_unmarked(real_model):\n"
        "    pass\n\n"
        "@pytest.mark.real_model\n"
        "def test_marked(real_model):\n"
        "    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "uses the real_model fixture: mark the test real_model" in result.stdout
    assert "1 passed, 1 error" in result.stdout, result.stdout


def test_the_tiny_model_has_its_own_tokenizer(tiny_model: object) -> None:
    from tests.tiny_tokenizer import VOCAB_SIZE

    tokenizer = tiny_model.tokenizer  # type: ignore[attr-defined]
    assert len(tokenizer) <= VOCAB_SIZE  # the bundled tokenizer has 49,152
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
    ]
    assert "SmolLM" not in tokenizer.chat_template
