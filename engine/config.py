"""The user's config file: `<config dir>/config.toml`, read once, typed at the edge.

The file is the user's standing defaults — theme, model, sampling — so that
`logitlab` with no arguments opens the way they like it. It is read once with
`tomllib` into frozen dataclasses; nothing downstream sees a dict. Every key is
checked: an unknown key or a bad value is a `ConfigError` naming the file and the
dotted key, because a silently ignored typo (``temprature = 0.2``) is worse than
a refusal.

Layout (every key optional)::

    theme = "logitlab-dark"
    allow_special = false          # let typed special tokens through as specials

    [model]
    model = "HuggingFaceTB/SmolLM2-360M-Instruct"   # hub id, directory or .gguf
    gguf_file = "model.Q8_0.gguf"
    device = "auto"                # auto | cpu | cuda | cuda:N | mps
    dtype = "auto"                 # auto | float32 | bfloat16 | float16
    quantize = "none"              # none | 8bit | 4bit
    backend = "auto"               # auto | transformers | llama.cpp
    n_gpu_layers = -1              # llama.cpp: layers offloaded to the GPU (-1 = all)

    [sampling]                     # unset = the model's generation config
    temperature = 0.7              # 0 = greedy
    top_k = 50
    top_p = 0.9
    min_p = 0.0
    repetition_penalty = 1.0
    max_new_tokens = 256
    seed = 1234
    top_logprobs = 10

    [keymap]                       # binding id = keys (F1 lists the ids' keys)
    "gen.stop" = "ctrl+c"          # several keys: "f9,ctrl+s"

`trust_remote_code` is deliberately not a config key: running a checkpoint's
own code is asked for per run on the command line, never stored.

Saving writes TOML with `tomli-w` atomically (temp file + rename), omits unset
values (TOML has no null) and values equal to the defaults, and drops comments:
the file is data the app owns once the user lets it save.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from engine.errors import ConfigError, InvalidParameterError
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.paths import config_dir, write_atomically

CONFIG_FILENAME = "config.toml"


@dataclass(frozen=True)
class ModelDefaults:
    """The model to open when the command line names none (fields of `ModelSpec`)."""

    model: str | None = None
    gguf_file: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    backend: str = "auto"  # auto | transformers | llama.cpp
    n_gpu_layers: int | None = None

    def __post_init__(self) -> None:
        self.to_spec()  # validate with ModelSpec's own rules; raises InvalidParameterError

    def to_spec(self, *, trust_remote_code: bool = False) -> ModelSpec:
        """The `ModelSpec` these defaults describe; remote code only if asked this run."""
        return ModelSpec(
            model=self.model,
            gguf_file=self.gguf_file,
            device=self.device,
            dtype=self.dtype,
            quantize=self.quantize,
            trust_remote_code=trust_remote_code,
            backend=self.backend,
            n_gpu_layers=self.n_gpu_layers,
        )


@dataclass(frozen=True)
class SamplingOverrides:
    """Sampling values the user set in the file; ``None`` = use the model's own.

    These are *overrides*, not params: they go through
    `engine.params.resolve_sampling` so the model's generation config still fills
    whatever the user left unset, and the UI can show each value's source.
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.as_overrides().items():
            SamplingParams(**{name: value})  # SamplingParams' rules; raises InvalidParameterError

    def as_overrides(self) -> dict[str, Any]:
        """The values that are set, for `resolve_sampling(..., overrides=...)`."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class Keymap:
    """The user's key bindings: binding id -> keys (Textual's `App.set_keymap`).

    The engine does not know the UI's binding ids, so the UI checks them with
    `checked` (an unknown id is a typo the user should hear about, not a no-op);
    `source` names the file in that error.
    """

    keys: tuple[tuple[str, str], ...] = ()
    source: str = field(default="config", compare=False)

    def as_dict(self) -> dict[str, str]:
        return dict(self.keys)

    def checked(self, known: Collection[str]) -> dict[str, str]:
        """The keymap, if every binding id in it is one of `known`; else `ConfigError`."""
        for binding_id, _ in self.keys:
            if binding_id not in known:
                raise ConfigError(
                    f"{self.source}: keymap.{binding_id}: unknown binding id "
                    f"(known: {', '.join(sorted(known))})"
                )
        return self.as_dict()


@dataclass(frozen=True)
class AppConfig:
    """Everything config.toml can say. The defaults are what a missing file means."""

    theme: str | None = None
    model: ModelDefaults = field(default_factory=ModelDefaults)
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)
    allow_special: bool = False
    keymap: Keymap = field(default_factory=Keymap)


def config_path() -> Path:
    """`<config dir>/config.toml`; `LOGITLAB_CONFIG_DIR` moves the directory."""
    return config_dir() / CONFIG_FILENAME


def load_config(path: Path | None = None) -> AppConfig:
    """Read and validate the config file; a missing file means all defaults.

    Raises `ConfigError` (message: ``<file>: <key>: <problem>``) for unreadable
    TOML, unknown keys, wrong types or out-of-range values.
    """
    path = path if path is not None else config_path()
    raw = _read_toml(path)
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: Mapping[str, Any], source: str = "config") -> AppConfig:
    """Validate an already-parsed TOML table; `source` names the file in errors."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {problem}")

    _reject_unknown(raw, ("theme", "allow_special", "model", "sampling", "keymap"), "", fail)
    theme = raw.get("theme")
    if theme is not None and (not isinstance(theme, str) or not theme.strip()):
        raise fail("theme", f"must be a non-empty string, got {theme!r}")
    allow_special = raw.get("allow_special", False)
    if not isinstance(allow_special, bool):
        raise fail("allow_special", f"must be true or false, got {allow_special!r}")

    model = _section(raw, "model", ModelDefaults, fail)
    sampling = _section(raw, "sampling", SamplingOverrides, fail)
    keymap = _keymap(raw.get("keymap", {}), source, fail)
    return AppConfig(
        theme=theme, model=model, sampling=sampling, allow_special=allow_special, keymap=keymap
    )


def save_config(config: AppConfig, path: Path | None = None) -> None:
    """Write the config atomically: a crash mid-write never leaves half a file.

    Unset values and values equal to the defaults are left out, so the file says
    only what the user chose and later default changes still reach them.
    """
    path = path if path is not None else config_path()
    write_atomically(path, tomli_w.dumps(config_to_dict(config)), make_parents=True)


def config_to_dict(config: AppConfig) -> dict[str, Any]:
    """The TOML tree `save_config` writes (no None, no defaults, no empty tables)."""
    out: dict[str, Any] = {}
    if config.theme is not None:
        out["theme"] = config.theme
    if config.allow_special:
        out["allow_special"] = True
    for name, section in (("model", config.model), ("sampling", config.sampling)):
        default = type(section)()
        table = {
            f.name: getattr(section, f.name)
            for f in fields(section)
            if getattr(section, f.name) is not None
            and getattr(section, f.name) != getattr(default, f.name)
        }
        if table:
            out[name] = table
    if config.keymap.keys:
        out["keymap"] = config.keymap.as_dict()
    return out


def set_theme(name: str, path: Path | None = None) -> None:
    """Persist the theme choice, keeping every other setting in the file.

    Raises `ConfigError` if the existing file is invalid rather than overwrite
    what the user wrote; the caller shows the message and the choice still
    applies for this run.
    """
    if not name.strip():
        raise ConfigError("theme name must not be empty")
    path = path if path is not None else config_path()
    save_config(replace(load_config(path), theme=name), path)


# --- helpers ---------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _reject_unknown(
    table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, fail: Any
) -> None:
    for key in table:
        if key not in allowed:
            raise fail(f"{prefix}{key}", f"unknown key (known: {', '.join(allowed)})")


def _section(raw: Mapping[str, Any], name: str, cls: type[Any], fail: Any) -> Any:
    """Build one frozen section dataclass from its table, checking keys and types."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise fail(name, f"must be a table ([{name}]), got {type(table).__name__}")
    hints = {f.name: f.type for f in fields(cls)}
    _reject_unknown(table, tuple(hints), f"{name}.", fail)
    values: dict[str, Any] = {}
    for key, value in table.items():
        hint = str(hints[key])
        dotted = f"{name}.{key}"
        if "float" in hint and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # TOML `temperature = 1` means 1.0
        expected = float if "float" in hint else int if "int" in hint else str
        if not isinstance(value, expected) or isinstance(value, bool):
            raise fail(dotted, f"must be {_TYPE_WORDS[expected]}, got {value!r}")
        values[key] = value
    try:
        return cls(**values)
    except InvalidParameterError as exc:
        raise fail(f"{name}.{exc.field}", str(exc).split(": ", 1)[-1]) from exc


def _keymap(table: Any, source: str, fail: Any) -> Keymap:
    """[keymap]: each key a binding id, each value keys as Textual writes them
    ("ctrl+s", several separated by commas). The ids are checked by the UI."""
    if not isinstance(table, dict):
        raise fail("keymap", f"must be a table ([keymap]), got {type(table).__name__}")
    keys: list[tuple[str, str]] = []
    for binding_id, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise fail(f"keymap.{binding_id}", f'must be keys like "ctrl+s", got {value!r}')
        names = [k.strip() for k in value.split(",")]
        if any(not k or any(c.isspace() for c in k) for k in names):
            raise fail(f"keymap.{binding_id}", f"keys are separated by commas, got {value!r}")
        keys.append((binding_id, ",".join(names)))
    return Keymap(tuple(keys), source)


_TYPE_WORDS = {float: "a number", int: "an integer", str: "a string"}
