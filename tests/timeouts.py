"""How long a test waits before it calls a wait a failure.

Tests wait for states and events; a wall clock bounds each wait only so a broken test
ends. LOGITLAB_TEST_TIMEOUT_SCALE (default 1) multiplies every bound: the `until`
waits of the TUI tests, the bounded waits of the others, and the `timeout` markers
(conftest.py scales them).
"""

from __future__ import annotations

import os

TIMEOUT_SCALE = float(os.environ.get("LOGITLAB_TEST_TIMEOUT_SCALE") or 1.0)


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_SCALE
