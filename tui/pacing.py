"""How often a streaming reply repaints: as often as the main thread can afford.

Every millisecond the UI thread spends in Python is nearly a millisecond of
decoding lost: the decode thread needs the GIL between torch ops, and on a
2-core machine the UI competes with torch's threads for the cores too
(bench/ui.py measures it). So the screen measures the main thread's CPU time
per update (handling + painting, via `time.thread_time()`) and asks the driver
for batches spaced so that updates use at most `budget` of the wall clock:
30 ms apart where painting is cheap, up to a quarter second where it is not.

The UI loses a little more decode rate than the share of a core it takes (GIL
hand-offs), so 5% keeps the workbench at >= 0.9 of the headless rate on a quiet
2-core CPU (bench/ui.py --variants app,budget8: 8% gives about 0.01 less). What a
batch costs decides how often the stream moves within it: about 10 ms on that
machine, so about four batches a second.
"""

from __future__ import annotations

import time

BUDGET = 0.05  # share of the wall clock the streaming updates may take on the main thread
SHORTEST, LONGEST = 0.03, 0.25  # seconds between batches


class FramePacer:
    def __init__(
        self,
        budget: float | None = None,
        shortest: float = SHORTEST,
        longest: float = LONGEST,
    ) -> None:
        # read when made, not when defined: bench/ui.py's budget variants set BUDGET
        self.budget = BUDGET if budget is None else budget
        self.shortest, self.longest = shortest, longest
        self._last_cpu: float | None = None
        self._cost: float | None = None  # smoothed main-thread CPU seconds per update

    def reset(self) -> None:
        """A new reply: the first update measures from here."""
        self._last_cpu = time.thread_time()

    def interval_after_update(self) -> float:
        """Call on the main thread once per update; returns the next batch interval."""
        now = time.thread_time()
        if self._last_cpu is not None:
            used = now - self._last_cpu
            self._cost = used if self._cost is None else 0.7 * self._cost + 0.3 * used
        self._last_cpu = now
        if self._cost is None:
            return self.shortest
        return min(self.longest, max(self.shortest, self._cost / self.budget))
