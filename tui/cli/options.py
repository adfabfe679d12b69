"""Options shared by subcommands: MODEL OPTS, ENGINE OPTS and SAMPLING OPTS from DESIGN.md."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidParameterError
from engine.model import BACKENDS, DTYPES, LLAMACPP_INSTALL_COMMAND, QUANTIZE, ModelSpec

if TYPE_CHECKING:
    from engine.decode import RemoteEngine, RemoteSpec


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model options")
    group.add_argument(
        "--model",
        metavar="ID_OR_PATH",
        help="hub id, local checkpoint dir, or .gguf file (default: bundled SmolLM2-135M-Instruct)",
    )
    group.add_argument(
        "--gguf-file", metavar="NAME", help="GGUF file inside --model (a hub repo or a directory)"
    )
    group.add_argument(
        "--device",
        default="auto",
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="where to run (default: auto)",
    )
    group.add_argument(
        "--dtype", default="auto", choices=DTYPES, help="weights dtype (default: auto)"
    )
    group.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE,
        help="bitsandbytes quantization (default: none)",
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto: llama.cpp for a .gguf file when installed, else transformers "
        f"(llama.cpp: {LLAMACPP_INSTALL_COMMAND})",
    )
    group.add_argument(
        "--n-gpu-layers",
        type=int,
        metavar="N",
        help="llama.cpp: layers to offload to the GPU (-1 = all; --device cuda = all)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow custom model code from the checkpoint (off by default)",
    )


def model_spec_from(args: argparse.Namespace) -> ModelSpec:
    """Build the spec; raises InvalidParameterError (exit 2) on a bad value."""
    return ModelSpec(
        model=args.model,
        gguf_file=args.gguf_file,
        device=args.device,
        dtype=args.dtype,
        quantize=args.quantize,
        trust_remote_code=args.trust_remote_code,
        backend=getattr(args, "backend", "auto"),
        n_gpu_layers=getattr(args, "n_gpu_layers", None),
    )


def internals_spec(spec: ModelSpec, feature: str) -> ModelSpec:
    """`spec` on transformers, for a feature that reads hidden states or embeddings
    (llama.cpp exposes neither): `auto` becomes transformers, llama.cpp is refused."""
    from dataclasses import replace

    from engine.errors import FeatureUnavailableError

    if spec.backend == "llama.cpp":
        raise FeatureUnavailableError(
            f"{feature} needs hidden states or embeddings, which llama.cpp does not expose; "
            "use --backend transformers"
        )
    return replace(spec, backend="transformers", n_gpu_layers=None)


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling options (unset = the model's generation config)")
    group.add_argument("--max-new-tokens", type=int, metavar="N")
    group.add_argument("--temperature", type=float, metavar="T", help="0 = greedy")
    group.add_argument("--top-k", type=int, metavar="K", help="0 = off")
    group.add_argument("--top-p", type=float, metavar="P")
    group.add_argument("--min-p", type=float, metavar="P")
    group.add_argument("--repetition-penalty", type=float, metavar="R")
    group.add_argument("--seed", type=int, metavar="S")
    group.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling values the user gave on the command line (None = not given)."""
    stop = getattr(args, "stop", None)
    return {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "min_p": args.min_p,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
        "stop": tuple(stop) if stop else None,
    }


def merge_model_defaults(args: argparse.Namespace, defaults: Any) -> argparse.Namespace:
    """Command-line model options over config.toml's ``[model]``, field by field.

    An option left at its command-line default (no --model, ``auto``, ``none``)
    takes the config file's value; one the user typed always wins.
    """
    merged = argparse.Namespace(**vars(args))
    merged.model = args.model or defaults.model
    merged.gguf_file = args.gguf_file or (defaults.gguf_file if not args.model else None)
    merged.device = args.device if args.device != "auto" else defaults.device
    merged.dtype = args.dtype if args.dtype != "auto" else defaults.dtype
    merged.quantize = args.quantize if args.quantize != "none" else defaults.quantize
    backend = getattr(args, "backend", "auto")
    merged.backend = backend if backend != "auto" else defaults.backend
    layers = getattr(args, "n_gpu_layers", None)
    merged.n_gpu_layers = layers if layers is not None else defaults.n_gpu_layers
    return merged


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """ENGINE OPTS: a remote serving engine instead of a local model."""
    group = parser.add_argument_group(
        "engine options (a remote OpenAI-compatible server; nothing is loaded locally)"
    )
    group.add_argument(
        "--engine", metavar="URL", help="server URL, e.g. http://127.0.0.1:8000/v1 (vLLM, "
        "SGLang, llama.cpp, logitlab serve)"
    )  # fmt: skip
    group.add_argument(
        "--api-key", metavar="KEY", help="the server's API key (default: $LOGITLAB_API_KEY)"
    )
    group.add_argument(
        "--engine-model", metavar="NAME", help="which model, when the server hosts several"
    )
    group.add_argument(
        "--engine-tokenizer",
        metavar="NAME_OR_PATH",
        help="the served model's tokenizer (hub id or directory): exact pieces and bytes "
        "of the token ids a server sends (default: the server's /detokenize)",
    )
    group.add_argument(
        "--engine-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the server to answer (default: 60)",
    )


def remote_spec_from(args: argparse.Namespace) -> RemoteSpec | None:
    """The remote server the options name, or None for a local model.

    Raises InvalidParameterError (exit 2) for ``--engine`` with local model
    options, or engine options without ``--engine``.
    """
    url = getattr(args, "engine", None)
    if url is None:
        for name in ("api_key", "engine_model", "engine_tokenizer"):
            if getattr(args, name, None) is not None:
                flag = "--" + name.replace("_", "-")
                raise InvalidParameterError(flag, "only applies with --engine URL")
        return None
    for name in ("model", "gguf_file"):
        if getattr(args, name, None):
            flag = "--" + name.replace("_", "-")
            raise InvalidParameterError("--engine", f"cannot be combined with {flag}")
    from engine.decode import RemoteSpec

    key = args.api_key or os.environ.get("LOGITLAB_API_KEY") or None
    return RemoteSpec(
        url,
        api_key=key,
        model=args.engine_model,
        timeout=args.engine_timeout,
        tokenizer=getattr(args, "engine_tokenizer", None),
    )


def remote_engine_from(args: argparse.Namespace) -> RemoteEngine | None:
    """The remote engine the options ask for (from the registry), or None for a local model."""
    spec = remote_spec_from(args)
    if spec is None:
        return None
    from engine.decode import open_engine

    return open_engine(spec)


def remote_spec(args: argparse.Namespace) -> ModelSpec:
    """The spec a remote engine is 'loaded' with: the model name (or the URL) to show."""
    spec = remote_spec_from(args)
    return spec.model_spec if spec is not None else ModelSpec()
