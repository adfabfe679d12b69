"""`logitlab info`: the model's anatomy as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.cli.options import (
    add_engine_options,
    add_model_options,
    model_spec_from,
    remote_engine_from,
    remote_spec,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info", help="show the model's anatomy: modules, parameters, config, tokens"
    )
    add_model_options(parser)
    add_engine_options(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--tree", action="store_true", help="text format: print the full module tree"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    remote = remote_engine_from(args)
    if remote is not None:
        return _remote_info(remote, args)
    from engine.errors import NativeCrashError
    from engine.model import (
        describe,
        describe_llama,
        gguf_without_binding,
        load,
        load_llama,
        resolve_backend,
    )

    spec = model_spec_from(args)
    info = None
    if resolve_backend(spec) == "llama.cpp":
        try:
            info = describe_llama(load_llama(spec))
        except NativeCrashError as exc:  # auto: as the engines do, run it on transformers
            if spec.backend != "auto":
                raise
            print(f"logitlab: warning: running on transformers: {exc}", file=sys.stderr)
    if info is None:
        info = describe(load(spec))
        tip = gguf_without_binding(spec)
        if tip and args.format == "text":
            print(f"logitlab: {tip}", file=sys.stderr)
    if args.format == "json":
        json.dump(info.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(info.to_dict(), tree=args.tree))
    return 0


def format_text(info: dict[str, Any], *, tree: bool = False) -> str:
    """A readable report, the way the tutorials print(model) and count parameters."""
    params = info["parameters"]
    lines = [
        f"{info['model_id']}  ({info['architecture']}, {info['source']}, "
        f"backend {info.get('backend', 'transformers')})",
        f"  device {info['device']}  dtype {info['dtype']}  quantize {info['quantize']}"
        f"  memory {info['memory_bytes'] / 2**20:.1f} MiB  loaded in {info['load_seconds']:.2f} s",
        "",
        "config",
        *(f"  {key:<20} {value}" for key, value in info["config"].items()),
        "",
        f"parameters  {params['total']:,} total"
        + ("  (lm_head tied to embeddings)" if params["lm_head_tied"] else ""),
        *(
            f"  {kind:<20} {count:>14,}  {100 * count / max(params['total'], 1):5.1f}%"
            for kind, count in params["by_kind"].items()
        ),
        "  by module",
        *(f"    {name:<18} {count:>14,}" for name, count in params["by_module"].items()),
        "",
        "special tokens",
        *(
            f"  {role + ' token':<20} {value['token']!r} (id {value['id']})"
            for role, value in info["special_tokens"].items()
            if isinstance(value, dict)
        ),
        f"  {'chat template':<20} {info['special_tokens']['chat_template_source']}",
        f"  {'eos ids':<20} {info['special_tokens']['eos_ids']}",
        f"  {'vocab size':<20} {info['special_tokens']['vocab_size']}",
        "",
        "generation config (effective value and source)",
        *(
            f"  {name:<20} {entry['value']!s:<12} {entry['source']}"
            for name, entry in info["generation"].items()
        ),
    ]
    gguf = info.get("gguf")
    if gguf:
        lines += [
            "",
            f"GGUF file  {gguf['path']}",
            f"  {'file size':<20} {gguf['file_size_bytes'] / 2**20:.1f} MiB",
            f"  {'file type':<20} {gguf['file_type']}  ({gguf['tensor_count']} tensors)",
            f"  {'offload':<20} {gguf['offload']}",
            *_native_lines(gguf.get("native") or {}),
            f"  {'tokenizer':<20} {gguf['tokenizer']}"
            + ("" if gguf["tokenizer_agrees_with_llama_cpp"] else "  (DIFFERS from llama.cpp's)"),
            "  quantization by tensor group",
            *(
                f"    {group:<18} {entry['parameters']:>14,}  "
                + ", ".join(f"{name} x{count}" for name, count in entry["types"].items())
                for group, entry in gguf["tensor_groups"].items()
            ),
        ]
        if gguf["chat_template"]:
            lines += [
                "",
                "chat template (the GGUF's, rendered by the engine)",
                gguf["chat_template"],
            ]
    if tree:
        lines += ["", "module tree", info["module_tree"]]
    return "\n".join(lines) + "\n"


def _remote_info(remote: Any, args: argparse.Namespace) -> int:
    """A server's model and what it offers; its parameters are not visible over HTTP."""
    model = remote.load(remote_spec(args))
    caps = remote.capabilities
    if args.format == "json":
        out = {
            "model_id": model.model_id,
            "source": "remote",
            "engine_url": caps.url,
            "context_window": caps.context_window,
            "parameters": {"total": None},  # unknown: the server does not say
            "engine": caps.as_dict(),
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        lines = [f"{model.model_id}  (remote, {caps.server})", ""]
        lines += [f"  {name:<20} {value}" for name, value in caps.lines()]
        why = caps.step_unavailable()
        if why:
            lines += ["", f"  {why}"]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _native_lines(native: dict[str, Any]) -> list[str]:
    """llama.cpp's system info, buffer types and self-test, as `info` prints them."""
    if not native:
        return []
    buffers = ", ".join(native["buffer_types"]) or "?"
    state = "on" if native["extra_buffer_types"] else "off"
    lines = [
        f"  {'system info':<20} {native['system_info']}",
        f"  {'buffer types':<20} {buffers}  (extra buffer types {state})",
        f"  {'self-test':<20} {native['self_test']}",
    ]
    lines += [f"  {'not used':<20} {line}" for line in native["not_used"]]
    return lines
