"""Nearest tokens by cosine similarity of the input embedding rows.

The row-normalised embedding matrix is built once per model and kept while the
model lives, so a query is one matrix-vector product and a top-k: well under a
second over a 150k vocabulary (bench/nearest.py measures it). Call on the engine
thread.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import FeatureUnavailableError, InvalidParameterError

if TYPE_CHECKING:
    import torch

MAX_NEAR = 500


@dataclass(frozen=True)
class Neighbour:
    token_id: int
    cosine: float


_NORMALISED: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def _embedding_rows(model: Any) -> torch.Tensor:
    import torch

    cached = _NORMALISED.get(model)
    if cached is not None:
        return cached
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if weight is None:
        raise FeatureUnavailableError(f"{type(model).__name__} exposes no input embeddings")
    with torch.inference_mode():
        rows = weight.detach().float()  # [vocab, hidden]
        rows = torch.nn.functional.normalize(rows, dim=-1)
    _NORMALISED[model] = rows
    return rows


def nearest_tokens(model: Any, token_id: int, n: int = 10) -> tuple[Neighbour, ...]:
    """The `n` tokens whose input embeddings are closest to `token_id`'s by cosine,
    the token itself first (1.0). Rows beyond the tokenizer (padding) are included."""
    import torch

    if not 1 <= n <= MAX_NEAR:
        raise InvalidParameterError("near", f"must be between 1 and {MAX_NEAR}, not {n}")
    rows = _embedding_rows(model)
    if not 0 <= token_id < rows.shape[0]:
        raise InvalidParameterError(
            "token_id", f"{token_id} has no embedding row (0..{rows.shape[0] - 1})"
        )
    with torch.inference_mode():
        cosines = rows @ rows[token_id]  # [vocab]
        cosines[token_id] = 2.0  # the token itself first, whatever ties exist
        values, indices = torch.topk(cosines, k=min(n, rows.shape[0]))
    out = [Neighbour(int(i), float(v)) for v, i in zip(values, indices, strict=True)]
    out[0] = Neighbour(token_id, 1.0)
    return tuple(out)


def ties_embeddings(model: Any) -> bool:
    """True when the input and output embeddings are one tensor (or the config says tied)."""
    inp = getattr(model.get_input_embeddings(), "weight", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = getattr(head, "weight", None)
    if inp is not None and out is not None:
        return inp is out or (inp.shape == out.shape and inp.data_ptr() == out.data_ptr())
    config = getattr(model, "config", None)
    return bool(getattr(config, "tie_word_embeddings", False))
