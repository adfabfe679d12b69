"""config.toml: defaults when missing, strict validation naming file and key, safe saves."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.config import (
    AppConfig,
    ModelDefaults,
    SamplingOverrides,
    config_path,
    load_config,
    save_config,
    set_theme,
)
from engine.errors import ConfigError
from engine.model.spec import ModelSpec
from engine.params import resolve_sampling


def test_missing_file_means_defaults() -> None:
    assert not config_path().exists()
    assert load_config() == AppConfig()


def test_config_path_follows_env(isolated_user_dirs: Path) -> None:
    assert config_path() == isolated_user_dirs / "config" / "config.toml"


FULL = """
theme = "logitlab-nord"
allow_special = true

[model]
model = "HuggingFaceTB/SmolLM2-360M-Instruct"
gguf_file = "model.gguf"
device = "cpu"
dtype = "float32"
quantize = "8bit"

[sampling]
temperature = 1
top_k = 40
top_p = 0.9
min_p = 0.05
repetition_penalty = 1.1
max_new_tokens = 64
seed = 1234
top_logprobs = 5
"""


def _write(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_full_file_loads_typed() -> None:
    _write(FULL)
    config = load_config()
    assert config.theme == "logitlab-nord"
    assert config.allow_special is True
    assert config.model.to_spec() == ModelSpec(
        model="HuggingFaceTB/SmolLM2-360M-Instruct",
        gguf_file="model.gguf",
        device="cpu",
        dtype="float32",
        quantize="8bit",
    )
    assert config.sampling.temperature == 1.0 and isinstance(config.sampling.temperature, float)
    assert config.sampling.seed == 1234


def test_remote_code_is_never_from_the_file() -> None:
    _write("[model]\ntrust_remote_code = true\n")
    with pytest.raises(ConfigError, match=r"model\.trust_remote_code: unknown key"):
        load_config()
    assert ModelDefaults().to_spec().trust_remote_code is False
    assert ModelDefaults().to_spec(trust_remote_code=True).trust_remote_code is True


def test_sampling_overrides_feed_resolve_sampling() -> None:
    _write("[sampling]\ntemperature = 0.5\n")
    params, sources = resolve_sampling(
        {"do_sample": True, "top_p": 0.8}, load_config().sampling.as_overrides()
    )
    assert params.temperature == 0.5 and sources["temperature"] == "user"
    assert params.top_p == 0.8 and sources["top_p"] == "model"


def test_save_then_load_round_trips() -> None:
    _write(FULL)
    config = load_config()
    save_config(AppConfig())  # overwrite with defaults...
    save_config(config)  # ...and back
    assert load_config() == config


def test_save_omits_unset_and_default_values() -> None:
    config = AppConfig(
        model=ModelDefaults(device="cpu"), sampling=SamplingOverrides(seed=7, temperature=0.0)
    )
    save_config(config)
    text = config_path().read_text()
    assert tomllib.loads(text) == {
        "model": {"device": "cpu"},
        "sampling": {"seed": 7, "temperature": 0.0},
    }
    assert "null" not in text and "None" not in text
    save_config(AppConfig())
    assert config_path().read_text() == ""
    assert load_config() == AppConfig()


def test_save_is_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write('theme = "high-contrast"\n')

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_config(AppConfig(theme="logitlab-light"))
    assert path.read_text() == 'theme = "high-contrast"\n'
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp left


# --- the theme choice ---------------------------------------------------------------


def test_set_theme_creates_the_file_and_persists() -> None:
    set_theme("logitlab-gruvbox")
    assert load_config().theme == "logitlab-gruvbox"
    set_theme("high-contrast")
    assert load_config().theme == "high-contrast"


def test_set_theme_keeps_the_rest_of_the_file() -> None:
    _write(FULL)
    before = load_config()
    set_theme("logitlab-light")
    after = load_config()
    assert after.theme == "logitlab-light"
    assert after.model == before.model
    assert after.sampling == before.sampling
    assert after.allow_special == before.allow_special


def test_set_theme_refuses_to_clobber_an_invalid_file() -> None:
    path = _write("temprature = 0.2\n")
    with pytest.raises(ConfigError, match="temprature"):
        set_theme("logitlab-light")
    assert path.read_text() == "temprature = 0.2\n"


def test_set_theme_with_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "c.toml"
    set_theme("logitlab-nord", path)
    assert load_config(path).theme == "logitlab-nord"
    assert not config_path().exists()


# --- validation errors name the file and the key ------------------------------------

BAD = [
    ("unknown top-level key", "temprature = 0.2\n", "temprature"),
    ("unknown section key", "[sampling]\ntemprature = 0.2\n", "sampling.temprature"),
    ("section not a table", "model = 'gpt2'\n", "model"),
    ("theme not a string", "theme = 3\n", "theme"),
    ("empty theme", 'theme = ""\n', "theme"),
    ("allow_special not bool", 'allow_special = "yes"\n', "allow_special"),
    ("bad device", '[model]\ndevice = "gpu"\n', "model.device"),
    ("bad dtype", '[model]\ndtype = "fp8"\n', "model.dtype"),
    ("empty model", '[model]\nmodel = " "\n', "model.model"),
    ("model not a string", "[model]\nmodel = 1\n", "model.model"),
    ("top_p out of range", "[sampling]\ntop_p = 1.5\n", "sampling.top_p"),
    ("negative temperature", "[sampling]\ntemperature = -1\n", "sampling.temperature"),
    ("top_k float", "[sampling]\ntop_k = 1.5\n", "sampling.top_k"),
    ("top_k bool", "[sampling]\ntop_k = true\n", "sampling.top_k"),
    ("temperature string", '[sampling]\ntemperature = "hot"\n', "sampling.temperature"),
    ("max_new_tokens zero", "[sampling]\nmax_new_tokens = 0\n", "sampling.max_new_tokens"),
    ("top_logprobs too many", "[sampling]\ntop_logprobs = 500\n", "sampling.top_logprobs"),
]


@pytest.mark.parametrize(("case", "text", "key"), BAD, ids=[b[0] for b in BAD])
def test_invalid_config_names_file_and_key(case: str, text: str, key: str) -> None:
    path = _write(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value).startswith(f"{path}: {key}: "), str(info.value)


def test_invalid_toml_names_the_file() -> None:
    path = _write("theme = \n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_config()
    assert str(path) in str(info.value)


def test_engine_config_is_headless() -> None:
    code = (
        "import sys, engine.config; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chat_merges_config_model_defaults_under_cli_flags() -> None:
    import argparse

    from engine.config import ModelDefaults
    from tui.cli.chat_cmd import merge_model_defaults

    defaults = ModelDefaults(model=None, device="cpu", dtype="bfloat16", quantize="8bit")
    typed = argparse.Namespace(
        model=None,
        gguf_file=None,
        device="auto",
        dtype="float32",
        quantize="none",
        trust_remote_code=False,
    )
    merged = merge_model_defaults(typed, defaults)
    assert (merged.model, merged.device, merged.dtype, merged.quantize) == (
        None,
        "cpu",
        "float32",
        "8bit",
    )
    other = ModelDefaults(model="./m", gguf_file="m.gguf")
    given = argparse.Namespace(**{**vars(typed), "model": "./other"})
    merged = merge_model_defaults(given, other)
    assert merged.model == "./other" and merged.gguf_file is None
