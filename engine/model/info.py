"""The model's anatomy, as the tutorials inspect it by hand: `print(model)`,
parameter counts, config essentials, special tokens, and the effective
generation config with where each value came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from engine.model.description import ModelDescription
from engine.params import SamplingParams, resolve_sampling
from engine.tokens.views import special_tokens_summary

if TYPE_CHECKING:
    from engine.model.llama import LlamaModel
    from engine.model.loading import LoadedModel

# parameter-name fragments -> a readable kind; first match wins
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lm_head", ("lm_head",)),
    ("embeddings", ("embed_tokens", "wte", "wpe", "embed_positions", "word_embeddings")),
    ("attention.q", ("q_proj", "query")),
    ("attention.k", ("k_proj", "key")),
    ("attention.v", ("v_proj", "value")),
    ("attention.qkv", ("c_attn", "qkv_proj", "query_key_value", "Wqkv")),
    ("attention.o", ("o_proj", "out_proj", "c_proj.attn", "dense")),
    ("mlp.gate", ("gate_proj", "w1")),
    ("mlp.up", ("up_proj", "w3", "c_fc", "fc1")),
    ("mlp.down", ("down_proj", "w2", "c_proj", "fc2")),
    ("norms", ("norm", "ln_", "layernorm")),
)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model; `to_dict()` is `logitlab info --format json`."""

    model_id: str
    source: str
    architecture: str
    model_type: str
    device: str
    dtype: str
    quantize: str
    checkpoint_dir: str
    load_seconds: float
    config: dict[str, Any]
    parameters: dict[str, Any]
    memory_bytes: int
    special_tokens: dict[str, Any]
    generation: dict[str, dict[str, Any]]
    module_tree: str
    backend: str = "transformers"
    gguf: dict[str, Any] | None = None  # llama.cpp: what the GGUF file says

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(loaded: LoadedModel) -> ModelInfo:
    model = loaded.model
    config = model.config
    params, sources = resolve_sampling(loaded.generation_config_file)
    return ModelInfo(
        model_id=loaded.model_id,
        source=loaded.source,
        architecture=type(model).__name__,
        model_type=str(getattr(config, "model_type", "unknown")),
        device=str(loaded.device),
        dtype=loaded.dtype_name,
        quantize=loaded.quantize,
        checkpoint_dir=str(loaded.checkpoint_dir),
        load_seconds=round(loaded.load_seconds, 3),
        config=config_essentials(config, loaded.context_window),
        parameters=parameter_counts(model),
        memory_bytes=int(model.get_memory_footprint()),
        special_tokens=special_tokens_summary(loaded.tokenizer, loaded.eos_token_ids),
        generation=generation_table(params, sources),
        module_tree=str(model),
    )


def description(loaded: LoadedModel) -> ModelDescription:
    """What front ends show about `loaded` (no module tree, no memory walk)."""
    model = loaded.model
    counts = parameter_counts(model)
    return ModelDescription(
        spec=loaded.spec,
        model_id=loaded.model_id,
        source=loaded.source,
        device=str(loaded.device),
        dtype=loaded.dtype_name,
        quantize=loaded.quantize,
        context_window=loaded.context_window,
        architecture=type(model).__name__,
        parameters_total=int(counts["total"]),
        parameters_by_kind=dict(counts["by_kind"]),
        config=config_essentials(model.config, loaded.context_window),
        generation_config=dict(loaded.generation_config_file),
    )


def llama_description(loaded: LlamaModel) -> ModelDescription:
    """What front ends show about a GGUF file running on llama.cpp."""
    header = loaded.gguf
    counts = gguf_parameter_counts(loaded)
    return ModelDescription(
        spec=loaded.spec,
        model_id=loaded.model_id,
        source=loaded.source,
        device=loaded.offload.split(":")[0],
        dtype=header.file_type,
        quantize=header.file_type,
        context_window=loaded.context_window,
        architecture=f"{header.architecture} (GGUF)",
        parameters_total=int(counts["total"]),
        parameters_by_kind=dict(counts["by_kind"]),
        config={**header.essentials(), "context_length": loaded.context_window},
        generation_config=dict(loaded.generation_config_file),
        backend="llama.cpp",
    )


def describe_llama(loaded: LlamaModel) -> ModelInfo:
    """`info` for a GGUF file on llama.cpp: what the file's header says."""
    header = loaded.gguf
    params, sources = resolve_sampling(loaded.generation_config_file)
    template = getattr(loaded.tokenizer, "chat_template", None)
    return ModelInfo(
        model_id=loaded.model_id,
        source=loaded.source,
        architecture=f"{header.architecture} (GGUF)",
        model_type=header.architecture,
        device=loaded.offload,
        dtype=header.file_type,
        quantize=header.file_type,
        checkpoint_dir=str(loaded.gguf_path),
        load_seconds=round(loaded.load_seconds, 3),
        config={
            **header.essentials(),
            "trained_context_length": header.arch("context_length"),
            "context_length": loaded.context_window,
        },
        parameters=gguf_parameter_counts(loaded),
        memory_bytes=header.size_bytes,
        special_tokens=special_tokens_summary(loaded.tokenizer, loaded.eos_token_ids),
        generation=generation_table(params, sources),
        module_tree="\n".join(
            f"{t.name:<32} {t.type_name:<6} {list(t.shape)}" for t in header.tensors
        ),
        backend="llama.cpp",
        gguf={
            "path": str(loaded.gguf_path),
            "file_size_bytes": header.size_bytes,
            "file_type": header.file_type,
            "name": header.metadata.get("general.name"),
            "tensor_groups": header.groups(),
            "tensor_count": len(header.tensors),
            "chat_template": template,
            "chat_template_in_file": header.metadata.get("tokenizer.chat_template"),
            "tokenizer": loaded.tokenizer_source,
            "tokenizer_agrees_with_llama_cpp": loaded.tokenizer_agrees,
            "offload": loaded.offload,
            "native": native_facts(loaded),
        },
    )


def native_facts(loaded: LlamaModel) -> dict[str, Any]:
    """The binding's system info, the buffer types in use and the self-test behind them
    (`engine.model.llama_safety`)."""
    native = loaded.native
    if native is None:
        return {}
    return {
        "system_info": native.system_info,
        "extra_buffer_types": native.config.extra_bufts,
        "buffer_types": list(native.verdict.buffers),
        "self_test": native.verdict.detail,
        "not_used": list(native.skipped),
    }


def gguf_parameter_counts(loaded: LlamaModel) -> dict[str, Any]:
    """Exact counts from the tensor shapes, in `parameter_counts`' shape."""
    groups = loaded.gguf.groups()
    total = loaded.gguf.parameters
    by_kind = {group: int(entry["parameters"]) for group, entry in groups.items()}
    return {
        "total": total,
        "trainable": 0,
        "by_module": by_kind,
        "by_kind": by_kind,
        "lm_head_tied": bool(loaded.gguf.essentials().get("tie_word_embeddings")),
    }


def config_essentials(config: Any, context_window: int) -> dict[str, Any]:
    def get(*names: str) -> Any:
        for name in names:
            value = getattr(config, name, None)
            if value is not None:
                return value
        return None

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    rope = get("rope_parameters", "rope_scaling") or {}
    essentials = {
        "layers": get("num_hidden_layers", "n_layer"),
        "hidden_size": hidden,
        "intermediate_size": get("intermediate_size", "n_inner"),
        "attention_heads": heads,
        "kv_heads": get("num_key_value_heads") or heads,
        "head_dim": get("head_dim") or (hidden // heads if hidden and heads else None),
        "vocab_size": get("vocab_size"),
        "context_length": context_window,
        "rope_theta": (rope.get("rope_theta") if isinstance(rope, dict) else None)
        or get("rope_theta"),
        "rope_type": rope.get("rope_type") if isinstance(rope, dict) else None,
        "activation": get("hidden_act", "activation_function"),
        "tie_word_embeddings": bool(get("tie_word_embeddings")),
    }
    return {k: v for k, v in essentials.items() if v is not None}


def parameter_counts(model: Any) -> dict[str, Any]:
    """Counts by top-level module, by layer kind, and the exact total.

    ``named_parameters()`` lists a tied weight once (under the embedding), so
    every breakdown sums to the total; ``lm_head_tied`` says when that happened.
    """
    by_module: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    total = 0
    for name, param in model.named_parameters():
        count = logical_numel(param)
        total += count
        by_module[_module_key(name)] += count
        by_kind[_kind(name)] += count
    head = getattr(model, "lm_head", None)
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = bool(
        head is not None
        and embeddings is not None
        and getattr(head, "weight", None) is getattr(embeddings, "weight", None)
    )
    return {
        "total": total,
        "trainable": sum(logical_numel(p) for p in model.parameters() if p.requires_grad),
        "by_module": dict(by_module),
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "lm_head_tied": tied,
    }


def logical_numel(param: Any) -> int:
    """Elements of the parameter as the model defines it, not as stored.

    bitsandbytes 4-bit packs two weights per byte into a flat tensor; its
    ``quant_state.shape`` keeps the original shape, which is what we count.
    """
    state = getattr(param, "quant_state", None)
    shape = getattr(state, "shape", None)
    if shape is not None:
        count = 1
        for size in shape:
            count *= int(size)
        return count
    return int(param.numel())


def _module_key(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 and parts[1] in {"layers", "h", "blocks", "decoder"}:
        return f"{parts[0]}.{parts[1]}"
    return ".".join(parts[:-1]) or name


def _kind(name: str) -> str:
    lowered = name.lower()
    for kind, fragments in _KINDS:
        if any(fragment.lower() in lowered for fragment in fragments):
            return kind
    return "other"


def generation_table(
    params: SamplingParams, sources: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    table = {}
    for name, source in sources.items():
        value = getattr(params, name)
        table[name] = {
            "value": list(value) if isinstance(value, tuple) else value,
            "source": source,
        }
    return table
