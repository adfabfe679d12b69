"""Where logitlab keeps its files: user dirs from platformdirs, overridable by env."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "logitlab"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def cache_dir() -> Path:
    """Converted models (GGUF -> safetensors). `LOGITLAB_CACHE_DIR` overrides."""
    return _dir("LOGITLAB_CACHE_DIR", platformdirs.user_cache_dir(APP))


def data_dir() -> Path:
    """The session database. `LOGITLAB_DATA_DIR` overrides."""
    return _dir("LOGITLAB_DATA_DIR", platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    """config.toml and user themes. `LOGITLAB_CONFIG_DIR` overrides."""
    return _dir("LOGITLAB_CONFIG_DIR", platformdirs.user_config_dir(APP))
