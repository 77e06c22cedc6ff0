"""The only place the engine reads the wall clock: metrics and realtime pacing.

Nothing read here may reach world state (STYLE habit 7); the tidy test allows wall-clock
calls in this module alone.
"""

from __future__ import annotations

import time


def monotonic() -> float:
    return time.perf_counter()


def sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
