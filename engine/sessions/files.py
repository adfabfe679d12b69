"""Session files on disk: the export format's name and version, and the two file
operations every front end shares (write an export atomically, read an import
without reading more than the size limit)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from engine.errors import SessionError, SessionImportError
from engine.paths import write_atomically

FORMAT = "logitlab.session"
VERSION = 1
MAX_IMPORT_BYTES = 64 * 2**20


def write_export(path: Path, text: str) -> None:
    """Write an export atomically; a failure names the path and leaves no half file."""
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise SessionError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_import(name: str | Path, stdin: BinaryIO | None = None) -> bytes:
    """A file's bytes (``-``: standard input), stopping one byte past the import
    limit so an oversized file is refused without being read whole."""
    try:
        if str(name) == "-":
            return (stdin or sys.stdin.buffer).read(MAX_IMPORT_BYTES + 1)
        with Path(name).expanduser().open("rb") as f:
            return f.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise SessionImportError(f"cannot read {name}: {exc.strerror or exc}") from exc
