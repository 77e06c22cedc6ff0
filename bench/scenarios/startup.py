"""The ``startup`` scenario: how long ``norn run`` takes to its first tick, cold and warm.

Cold: a fresh ``NUMBA_CACHE_DIR`` (empty), so every kernel the run calls is compiled, as
on a fresh clone before ``norn warmup``. Warm: the same command again on that cache. Each
start is a fresh process running ``norn run --ticks 1`` (fast clock, no fsync), timed from
spawn to exit: imports, the build, the first tick, the journal and the report. The
process's CPU seconds are reported beside the wall time (on a shared machine the wall
time grows with others' load, the CPU time much less), and the run's own report gives
the compile seconds inside its tick.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from norn.bench.machine import ROOT, LoadMeter
from norn.bench.stats import summarize

#: the issue 11 goals, on the project's 2-core machine
GOAL_COLD_S = 20.0
GOAL_WARM_S = 3.0


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def start_once(cache: Path, out: Path, world: str | None) -> dict[str, float]:
    """One ``norn run --ticks 1`` in a fresh process on ``cache``: wall, CPU, compile s."""
    cmd = [sys.executable, "-m", "norn.engine.cli", "run", "--ticks", "1", "--clock", "fast",
           "--no-fsync", "--json", "--replace", "--out", str(out)]
    if world:
        cmd += ["--scenario", world]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"norn run --ticks 1 failed (exit {proc.returncode}):\n{tail}")
    report = json.loads(proc.stdout)
    return {"wall_s": wall, "cpu_s": _children_cpu_s() - cpu0,
            "tick_compile_s": float(report["compile_s"])}


def startup_case(cold: int, warm: int, world: str | None = None) -> dict[str, Any]:
    """``cold`` starts, each on a new empty cache, then ``warm`` starts on the last one;
    ``world``: a scenario name or file (default: the embedded default world)."""
    meter = LoadMeter()
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="norn-startup-") as tmp:
        cache = Path(tmp) / "cache-0"
        for k in range(cold):
            cache = Path(tmp) / f"cache-{k}"
            cache.mkdir()
            runs["cold"].append(start_once(cache, Path(tmp) / "run", world))
        for _ in range(warm):
            runs["warm"].append(start_once(cache, Path(tmp) / "run", world))
    figures: dict[str, Any] = {}
    for kind, rs in runs.items():
        if rs:
            figures[f"{kind}_s"] = summarize([r["wall_s"] for r in rs])
            figures[f"{kind}_cpu_s"] = summarize([r["cpu_s"] for r in rs])
    if runs["cold"]:
        figures["cold_tick_compile_s"] = summarize([r["tick_compile_s"] for r in runs["cold"]])
    return {
        "world": world or "default (embedded Rune-Midgarts)",
        "cold": cold,
        "warm": warm,
        "figures": figures,
        "other_load_cores": meter.other_cores(),
    }
