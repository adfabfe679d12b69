"""Convert a GGUF file once and cache it as safetensors + tokenizer files.

transformers can load GGUF directly, but dequantizing takes tens of seconds on
a CPU. We do it once, write the state dict, config, generation config and
tokenizer to ``<cache dir>/converted/<stem>-<key>/`` and load that afterwards.
The key hashes the file's bytes and the transformers version, so a changed file
(or a converter that changed) is converted again. A directory is complete only
when its ``logitlab-conversion.json`` marker exists; conversion writes to a
temporary directory and renames it into place.

The checkpoint is a standard one, as ``save_pretrained`` writes a tied model: the
embedding's name (``model.embed_tokens.weight``) is kept and the tied output
(``lm_head.weight``) omitted, so vLLM, SGLang and lm-eval load the same files. The
marker's ``format`` says which writer made a directory: an older one is converted
again once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from engine.paths import cache_dir

MARKER = "logitlab-conversion.json"
FORMAT = 2  # 1 (no "format" in the marker): tied weights saved under lm_head.weight
KEYS = "keys.json"  # path -> {"stat": [...], "key": ...}: a hash already computed
_HASH_CHUNK = 4 << 20


@cache
def transformers_version() -> str:
    """The installed transformers' version, read from its metadata: importing
    transformers for ``__version__`` costs ~0.7 s, more than a tokenizer load."""
    return version("transformers")


def file_key(path: Path) -> str:
    """Content hash of the GGUF file plus the transformers version that converts it.

    Hashing reads the whole file (~0.15 s for the bundled 100 MB one) on every
    load, so the key is remembered per path under the file's size, mtime, ctime
    and inode; any change to the file (or a replaced file) hashes it again.
    """
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, transformers_version()]
    keys = _read_keys()
    known = keys.get(str(path.resolve()))
    if isinstance(known, dict) and known.get("stat") == stamp and isinstance(known.get("key"), str):
        return str(known["key"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    digest.update(f"transformers={transformers_version()}".encode())
    key = digest.hexdigest()[:20]
    keys = {name: entry for name, entry in keys.items() if os.path.exists(name)}
    keys[str(path.resolve())] = {"stat": stamp, "key": key}
    _write_keys(keys)
    return key


def _keys_path() -> Path:
    return cache_dir() / "converted" / KEYS


def _read_keys() -> dict[str, object]:
    try:
        data = json.loads(_keys_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_keys(keys: dict[str, object]) -> None:
    """Best effort, atomic: a memo that cannot be written only costs a re-hash."""
    target = _keys_path()
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(keys, handle)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def converted_dir(path: Path) -> Path:
    return cache_dir() / "converted" / f"{path.stem}-{file_key(path)}"


def _complete(target: Path) -> bool:
    """A finished conversion by the current writer (an older format is converted again)."""
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == FORMAT


def cached_conversion(path: Path) -> Path | None:
    """The converted directory for this GGUF file if a complete one exists."""
    target = converted_dir(path)
    return target if _complete(target) else None


def standard_state_dict(model: Any) -> dict[str, Any]:
    """The tensors to save, as ``save_pretrained`` saves a tied model: of names that share
    one tensor, the first in the model's order (the input embedding, registered before the
    output head) is kept, the others dropped; loaders tie them again from the config."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    tensors: dict[str, Any] = {}
    for name, tensor in model.state_dict().items():
        where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if where in seen:
            continue  # a tied duplicate (lm_head.weight of tied embeddings)
        seen.add(where)
        tensors[name] = tensor.contiguous()
    return tensors


def convert(path: Path, load_gguf: Callable[[Path], tuple[object, object]]) -> Path:
    """Convert `path` with `load_gguf` (returns model, tokenizer) into the cache.

    Returns the directory holding a regular transformers checkpoint.
    """
    from safetensors.torch import save_file

    target = converted_dir(path)
    if _complete(target):
        return target
    model, tokenizer = load_gguf(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        config = model.config  # type: ignore[attr-defined]
        # the checkpoint we write is plain safetensors, not GGUF
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)  # type: ignore[attr-defined]
        tensors = standard_state_dict(model)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)  # type: ignore[attr-defined]
        marker = {
            "format": FORMAT,
            "source": str(path),
            "size": path.stat().st_size,
            "transformers": transformers_version(),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
