"""The logit lens: what each layer would predict if the model stopped there.

One forward over the prompt up to a position with ``output_hidden_states=True``;
each layer's hidden state at that position goes through the model's final norm
and ``lm_head`` (the tutorials' "push hidden states through lm_head, take a
top-k"). Row 0 is the embedding output, row i the output of decoder layer i; the
last row is transformers' last hidden state, which already has the final norm
applied, so it is exactly the model's next-token distribution.

Pure functions over a `LoadedModel`; call them on the engine's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import FeatureUnavailableError, InvalidParameterError

if TYPE_CHECKING:
    import torch

    from engine.model.loading import LoadedModel

# where decoder-only architectures keep their final norm (llama/mistral/qwen/gemma: norm,
# gpt2/gpt-j/bloom/falcon: ln_f, phi: final_layernorm, opt: decoder.final_layer_norm)
_NORM_PATHS = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "decoder.final_layer_norm")
MAX_TOP = 50


@dataclass(frozen=True)
class LensToken:
    """One token of a layer's distribution: its id, log-probability and 1-based rank."""

    token_id: int
    logprob: float
    rank: int = 0


@dataclass(frozen=True)
class LensRow:
    """One layer: its top tokens and where the target token stands."""

    layer: int  # 0 = embeddings, i = output of decoder layer i
    name: str
    top: tuple[LensToken, ...]
    target: LensToken


@dataclass(frozen=True)
class LensResult:
    """The lens at one position: the input token there, the target it explains, one row
    per layer (embeddings first, the model's real distribution last)."""

    position: int
    input_id: int
    target_id: int
    rows: tuple[LensRow, ...]

    @property
    def settles_at(self) -> int | None:
        """The first layer from which the target stays top-1 to the end (None: never)."""
        settled: int | None = None
        for row in reversed(self.rows):
            if row.target.rank != 1:
                break
            settled = row.layer
        return settled


def final_norm(model: Any) -> Any:
    """The model's final norm module; FeatureUnavailableError when there is none we know."""
    base = getattr(model, "base_model", model)
    for path in _NORM_PATHS:
        module = base
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None and callable(module):
            return module
    raise FeatureUnavailableError(
        f"the layer lens does not know where {type(model).__name__} keeps its final norm"
    )


def logit_lens(
    loaded: LoadedModel,
    ids: list[int],
    position: int = -1,
    *,
    top: int = 10,
    target: int | None = None,
) -> LensResult:
    """The lens at `position` of `ids` (negative counts from the end): what follows it.

    `target` is the token explained (ranked in every row); default: the final layer's
    top-1. Only ``ids[: position + 1]`` run through the model."""
    import torch

    if not ids:
        raise InvalidParameterError("position", "there are no tokens to look at")
    if not -len(ids) <= position < len(ids):
        raise InvalidParameterError(
            "position", f"{position} is outside the prompt (0..{len(ids) - 1})"
        )
    if not 1 <= top <= MAX_TOP:
        raise InvalidParameterError("top", f"must be between 1 and {MAX_TOP}, not {top}")
    position %= len(ids)
    model = loaded.model
    norm, head = final_norm(model), model.get_output_embeddings()
    if head is None:
        raise FeatureUnavailableError(f"{type(model).__name__} has no output embeddings (lm_head)")
    device = next(model.parameters()).device
    with torch.inference_mode():
        input_ids = torch.tensor([ids[: position + 1]], device=device)
        out = model(input_ids=input_ids, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states  # (layers + 1) x [1, seq, hidden]
        # every row but the last gets the final norm; the last has it already
        states = [norm(h[:, -1:]) for h in hidden[:-1]] + [hidden[-1][:, -1:]]
        stacked = torch.cat(states, dim=1)  # [1, layers + 1, hidden]
        logits = head(stacked)[0].float()  # [layers + 1, vocab]
        logprobs = torch.log_softmax(logits, dim=-1)
        return _result(logprobs, ids[position], position, top, target)


def _result(
    logprobs: torch.Tensor, input_id: int, position: int, top: int, target: int | None
) -> LensResult:
    import torch

    vocab = logprobs.shape[-1]
    if target is None:
        target = int(logprobs[-1].argmax())
    elif not 0 <= target < vocab:
        raise InvalidParameterError("target", f"{target} is not a token id (0..{vocab - 1})")
    values, indices = torch.topk(logprobs, k=min(top, vocab), dim=-1)  # [rows, top]
    target_lp = logprobs[:, target]  # [rows]
    ranks = (logprobs > target_lp[:, None]).sum(dim=-1) + 1  # [rows]
    rows = []
    for layer in range(logprobs.shape[0]):
        name = "embeddings" if layer == 0 else f"layer {layer}"
        rows.append(
            LensRow(
                layer=layer,
                name=name,
                top=tuple(
                    LensToken(int(i), float(v), r + 1)
                    for r, (v, i) in enumerate(zip(values[layer], indices[layer], strict=True))
                ),
                target=LensToken(target, float(target_lp[layer]), int(ranks[layer])),
            )
        )
    return LensResult(position=position, input_id=int(input_id), target_id=target, rows=tuple(rows))
