"""Where logitlab keeps its files (user dirs from platformdirs, overridable by env),
and how it writes them: atomically, so a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
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


def write_atomically(path: Path, text: str, *, make_parents: bool = False) -> None:
    """Write via a temp file in the same directory, fsync, then rename over the target.

    The file gets the permissions of a normally created one (mkstemp's are 0600).
    A missing directory is an error unless `make_parents` (our own config dir).
    Raises OSError; callers turn it into their own error with the path.
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
