"""What a GGUF file says about its model, read from the header alone: metadata,
tensor names, shapes and quantization types. No weights are read and nothing is
dequantized, so a 7B file answers as fast as the bundled one.

`gguf.GGUFReader` builds a field object per vocabulary entry (seconds for a 49k
vocabulary); this reader skips arrays it does not need in one pass.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.errors import CorruptModelError

_MAGIC = b"GGUF"
# value type -> struct format of a scalar (GGUF spec: 8 = string, 9 = array)
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAYS = ("general.languages", "general.tags")  # small arrays worth showing


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    type_name: str  # GGML quantization type: Q4_1, F32, ...

    @property
    def elements(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF file's header: metadata (arrays summarised by length) and tensors."""

    path: Path
    size_bytes: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]
    array_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch(self, key: str) -> Any:
        """An architecture-scoped key (``llama.block_count`` for ``block_count``)."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def parameters(self) -> int:
        """Exact: the sum of every tensor's elements."""
        return sum(t.elements for t in self.tensors)

    def groups(self) -> dict[str, dict[str, Any]]:
        """Tensors grouped by role (``attn_q``, ``ffn_down``, ``token_embd``...): how many,
        their parameters, and the quantization types they are stored in."""
        counts: Counter[str] = Counter()
        params: Counter[str] = Counter()
        types: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for tensor in self.tensors:
            group = tensor_group(tensor.name)
            counts[group] += 1
            params[group] += tensor.elements
            types[group][tensor.type_name] += 1
        return {
            group: {
                "tensors": counts[group],
                "parameters": params[group],
                "types": dict(types[group]),
            }
            for group in sorted(params, key=lambda g: -params[g])
        }

    def essentials(self) -> dict[str, Any]:
        """The config keys `info` shows for a transformers model, from the GGUF's metadata."""
        heads = self.arch("attention.head_count")
        hidden = self.arch("embedding_length")
        vocab = self.arch("vocab_size") or self.array_lengths.get("tokenizer.ggml.tokens")
        values = {
            "layers": self.arch("block_count"),
            "hidden_size": hidden,
            "intermediate_size": self.arch("feed_forward_length"),
            "attention_heads": heads,
            "kv_heads": self.arch("attention.head_count_kv") or heads,
            "head_dim": self.arch("rope.dimension_count")
            or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int) else None),
            "vocab_size": vocab,
            "context_length": self.arch("context_length"),
            "rope_theta": self.arch("rope.freq_base"),
            "tie_word_embeddings": not any(t.name == "output.weight" for t in self.tensors),
        }
        return {k: v for k, v in values.items() if v is not None}

    @property
    def file_type(self) -> str:
        """The file's overall quantization (``general.file_type``), e.g. MOSTLY_Q4_1."""
        value = self.metadata.get("general.file_type")
        if value is None:
            return "unknown"
        try:
            from gguf import LlamaFileType

            return str(LlamaFileType(int(value)).name).removeprefix("MOSTLY_")
        except (ImportError, ValueError):
            return f"type {value}"


def tensor_group(name: str) -> str:
    """``blk.12.attn_q.weight`` -> ``attn_q``; ``token_embd.weight`` -> ``token_embd``."""
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) > 2:
        parts = parts[2:]
    if parts[-1] in {"weight", "bias"} and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def read_gguf(path: Path) -> GGUFFile:
    """The header of the GGUF file at `path`; CorruptModelError when it is not one."""
    try:
        with path.open("rb") as handle:
            return _read(handle, path)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise CorruptModelError(f"{path.name} is not a readable GGUF file ({exc})") from None


def _read(handle: IO[bytes], path: Path) -> GGUFFile:
    if handle.read(4) != _MAGIC:
        raise ValueError("no GGUF magic")
    version, tensor_count, kv_count = struct.unpack("<IQQ", handle.read(20))
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(kv_count):
        key = _string(handle)
        kind = _u32(handle)
        if kind == _ARRAY:
            item_kind, count = struct.unpack("<IQ", handle.read(12))
            lengths[key] = count
            items = [_value(handle, item_kind) for _ in range(count)]
            if key in _KEEP_ARRAYS:
                metadata[key] = items
        else:
            metadata[key] = _value(handle, kind)
    from gguf import GGMLQuantizationType

    tensors = []
    for _ in range(tensor_count):
        name = _string(handle)
        (dims,) = struct.unpack("<I", handle.read(4))
        shape = struct.unpack(f"<{dims}Q", handle.read(8 * dims))
        kind, _offset = struct.unpack("<IQ", handle.read(12))
        try:
            type_name = GGMLQuantizationType(kind).name
        except ValueError:
            type_name = f"type {kind}"
        tensors.append(GGUFTensor(name, tuple(int(s) for s in shape), type_name))
    return GGUFFile(path, path.stat().st_size, metadata, tuple(tensors), lengths)


def _u32(handle: IO[bytes]) -> int:
    value: int = struct.unpack("<I", handle.read(4))[0]
    return value


def _string(handle: IO[bytes]) -> str:
    (length,) = struct.unpack("<Q", handle.read(8))
    return handle.read(length).decode("utf-8")


def _value(handle: IO[bytes], kind: int) -> Any:
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", handle.read(12))
        return [_value(handle, item_kind) for _ in range(count)]
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {kind}")
    return struct.unpack("<" + fmt, handle.read(struct.calcsize(fmt)))[0]
