"""Lazy public names for the engine's packages (PEP 562 module ``__getattr__``).

`engine.model` and `engine.decode` export names whose modules import torch; a
front end that only needs the torch-free ones (the protocol, a `ModelSpec`) must
not pay for torch. Each package lists ``name -> module`` and imports on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving `names` (public name -> submodule) on demand."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
