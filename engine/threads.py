"""How Norn's parallel kernels share the cores: numba's threading layer and its wait policy.

Norn runs beside rAthena's map server, which must never be starved. numba's default layer
on Linux is OpenMP (libgomp), whose idle workers spin before they sleep: on a busy 2-core
machine one verify took 40.9 CPU-s instead of 5.3 with ``OMP_WAIT_POLICY=passive``, and a
parallel kernel waiting for a worker that another process holds loses the spin and then
some. The choice below is measured in docs/benchmarks.md ("Threading"): OpenMP with the
passive wait policy (a worker sleeps as soon as it has no work) kept the tick's rate
quiet and under load, and cost the fewest CPU-seconds, with no extra dependency (TBB did
as well but is a 7 MB library more; numba's own ``workqueue`` layer aborts the process
when two threads launch parallel kernels at once).

``configure()`` runs when ``norn.engine`` is first imported, before any kernel can start
numba's threads (the layer is fixed at the first parallel launch, libgomp reads its
environment when it loads). An operator's own ``NUMBA_THREADING_LAYER`` or
``OMP_WAIT_POLICY`` wins and is recorded as theirs (``describe``); every bench result file
records what ran. Thread counts are numba's (``NUMBA_NUM_THREADS``); results never depend
on them or on the layer (tests/test_threading_layers.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the layer Norn asks numba for, unless the environment names one
LAYER = "omp"
#: CPython's switch interval while a run ticks (its default is 5 ms): how long the bridge's,
#: the LLM tier's or the log writer's Python work may hold the GIL while the tick thread,
#: back from a kernel, waits for it. A tick returns from dozens of kernels, so at 5 ms a busy
#: background thread added milliseconds to the tick's tail (norn bench llm, bench bridge).
SWITCH_INTERVAL_S = 0.0005
#: libgomp's wait policy unless the environment sets one: workers sleep when idle
WAIT_POLICY = "passive"

_chosen: dict[str, str] = {}


def configure() -> None:
    """Ask numba for ``LAYER`` and libgomp for ``WAIT_POLICY``, unless already chosen.

    Idempotent. Safe to call after numba was imported (the layer is read at the first
    parallel launch), useless after that launch: then the layer that runs is reported.
    """
    if _chosen:
        return
    for var, value in (("NUMBA_THREADING_LAYER", LAYER), ("OMP_WAIT_POLICY", WAIT_POLICY)):
        if os.environ.get(var):
            _chosen[var] = "environment"
        else:
            os.environ[var] = value
            _chosen[var] = "norn"
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba read its environment already: tell it directly
        config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]


def describe() -> dict[str, Any]:
    """What runs: the layer asked for and the one numba started (None before the first
    parallel launch), the wait policy, threads, and who chose each (norn or environment)."""
    import numba

    try:
        running = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        running = None
    return {
        "layer": os.environ.get("NUMBA_THREADING_LAYER"),
        "running": running,
        "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "threads": int(numba.config.NUMBA_NUM_THREADS),
        "chosen_by": {
            "layer": _chosen.get("NUMBA_THREADING_LAYER", "unknown"),
            "wait_policy": _chosen.get("OMP_WAIT_POLICY", "unknown"),
        },
    }


@contextmanager
def tick_priority() -> Iterator[None]:
    """While a run ticks: a GIL switch interval of at most ``SWITCH_INTERVAL_S``, restored
    after (the interval is process-wide; a library embedding the engine gets its own back)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(old)
