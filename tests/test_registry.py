"""The engine registry: one table of backends whose names agree with the spec's, and
`open_engine` giving every kind of spec its engine (nothing loaded, no torch)."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest

from engine.decode import BackendEngine, RemoteEngine, open_engine
from engine.decode.registry import BACKEND_ENGINES, RemoteSpec, load_spec
from engine.errors import InvalidParameterError
from engine.model.spec import BACKENDS, Backend, ModelSpec


def test_every_backend_name_has_an_engine() -> None:
    """A backend added to `Backend` or `BACKENDS` without its engine (or the reverse)
    fails here: the three lists are one set of names."""
    assert set(BACKEND_ENGINES) == set(get_args(Backend)) == set(BACKENDS) - {"auto"}


def test_a_model_spec_gets_a_backend_engine() -> None:
    engine = open_engine(ModelSpec(backend="transformers"))
    assert isinstance(engine, BackendEngine)
    assert engine.backend == "transformers"


def test_a_remote_spec_gets_a_remote_engine() -> None:
    spec = RemoteSpec("http://127.0.0.1:9/v1", model="m", timeout=2.0)
    engine = open_engine(spec)
    assert isinstance(engine, RemoteEngine)
    assert engine.url == "http://127.0.0.1:9/v1"
    assert load_spec(spec).model == "m"
    assert load_spec(RemoteSpec("http://x/v1")).model == "http://x/v1"


def test_a_remote_spec_refuses_a_bad_timeout() -> None:
    with pytest.raises(InvalidParameterError, match="--engine-timeout"):
        RemoteSpec("http://127.0.0.1:9/v1", timeout=0)


def test_resolve_backend_refusals_come_through_open_engine() -> None:
    with pytest.raises(InvalidParameterError, match=r"llama\.cpp runs \.gguf files only"):
        open_engine(ModelSpec(model="some/checkpoint", backend="llama.cpp"))


def test_the_registry_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from engine.decode import open_engine, RemoteSpec\n"
        "from engine.model.spec import ModelSpec\n"
        "open_engine(ModelSpec(backend='transformers'))\n"
        "open_engine(RemoteSpec('http://127.0.0.1:9/v1'))\n"
        "print([m for m in ('torch', 'transformers', 'textual') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == "[]"
