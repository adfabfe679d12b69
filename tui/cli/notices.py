"""Notices a load leaves (a backend fallen back from, and why): one stderr line each."""

from __future__ import annotations

import sys

from engine.model import ModelDescription


def print_notices(model: ModelDescription) -> ModelDescription:
    """Print `model`'s notices as warnings on stderr; returns `model` for chaining."""
    for notice in model.notices:
        print(f"logitlab: warning: {notice}", file=sys.stderr)
    return model
