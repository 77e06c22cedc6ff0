"""First run and compile time (issue 11): ``norn warmup`` fills the kernel cache a run then
uses, a run's phase and system times leave compile time out, and the compile line counts
what numba compiles.
"""

from __future__ import annotations

import json

import numba
import numpy as np
from numba.core import event as numba_event

from norn.engine import clock
from norn.engine.config import make_config
from norn.engine.runner import run, start
from norn.engine.table import Column
from norn.engine.warmup import COMPILING, CompileNotice, CompileWatch
from norn.engine.world import World
from tests.helpers import norn


def test_warmup_fills_the_cache_the_next_run_uses(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}  # empty: a fresh clone's first run
    first = norn("warmup", "--scenario", "toy", "--ticks", "2", "--json", env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    cold = json.loads(first.stdout)
    assert cold["scenario"] == "toy" and cold["ticks"] == 2
    assert cold["kernels_compiled"] > 0 and cold["compile_s"] > 0
    assert cold["cache"] == str(tmp_path / "cache")
    again = norn("warmup", "--scenario", "toy", "--ticks", "2", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["kernels_compiled"] == 0  # all loaded from the cache
    ran = norn("run", "--scenario", "toy", "--ticks", "3", "--clock", "fast", "--no-fsync",
               "--out", str(tmp_path / "run"), "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["compile_s"] == 0  # nothing left to compile in a tick


def test_warmup_refuses_zero_ticks():
    r = norn("warmup", "--ticks", "0")
    assert r.returncode == 2 and "--ticks must be at least 1" in r.stderr


def test_phase_and_system_times_leave_compile_time_out(monkeypatch):
    """A kernel compiled inside tick 1 "takes" 5 s on the injected clock: the run reports
    it as compile time, and neither the tick, its phase nor its system count it."""
    now = {"t": 0.0}

    def monotonic() -> float:
        now["t"] += 0.001
        return now["t"]

    class FiveSeconds(numba_event.Listener):  # registered first: runs before the timer's
        def on_start(self, ev: numba_event.Event) -> None:
            pass

        def on_end(self, ev: numba_event.Event) -> None:
            now["t"] += 5.0

    @numba.njit  # a new function: compiled at its first call, in tick 1
    def bump(v):
        for i in range(len(v)):
            v[i] += 1

    def compiling(world: World) -> None:
        bump(world.tables["cell"]["v"])

    world = World(1, chunk_rows=8)
    world.add_table("cell", [Column("v", np.int64)], 16)
    world.tables["cell"].spawn(16)
    world.add_system("test.compile", "act", compiling, writes=("cell.v",))
    world.build()
    start(world)
    monkeypatch.setattr(clock, "monotonic", monotonic)
    stall = FiveSeconds()
    numba_event.register("numba:compile", stall)
    try:
        summary = run(world, make_config(None, clock="fast", fsync=False), ticks=3)
    finally:
        numba_event.unregister("numba:compile", stall)
    assert summary.compile_s >= 5.0
    assert summary.system_s["test.compile"] < 1.0
    assert summary.phase_s["act"] < 1.0
    assert sum(summary.tick_s) < 1.0
    assert int(world.tables["cell"]["v"][:16].sum()) == 3 * 16


def test_the_compile_line_counts_kernels_as_they_compile(monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    seen: list[str] = []

    @numba.njit
    def twice(x):
        return 2 * x

    with CompileNotice(True) as notice:
        notice._progress = _Recorder(seen)  # the live line, recorded instead of drawn
        assert twice(21) == 42
    assert notice.watch.kernels >= 1 and notice.watch.seconds > 0
    assert seen[0].startswith(f"{COMPILING}: 0 compiled") and "test_warmup" in seen[0]
    assert seen[-1].startswith(f"{COMPILING}: {notice.watch.kernels} compiled")


def test_the_compile_line_stays_off_without_a_terminal():
    @numba.njit
    def thrice(x):
        return 3 * x

    with CompileNotice(True) as notice:  # pytest's stderr is not a terminal
        assert thrice(2) == 6
    assert notice.watch.kernels >= 1 and notice._progress is None


def test_compile_watch_counts_outermost_compiles_only():
    @numba.njit
    def inner(x):
        return x + 1

    @numba.njit
    def outer(x):
        return inner(x) * 2

    with CompileWatch() as watch:
        assert outer(1) == 4
    assert watch.kernels == 1 and list(watch.per_kernel) == [
        f"{__name__.removeprefix('norn.')}."
        "test_compile_watch_counts_outermost_compiles_only.<locals>.outer"
    ]


class _Recorder:
    """Stands in for a rich Progress: records each description shown."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def add_task(self, description: str, total: object = None) -> int:
        self.seen.append(description)
        return 0

    def update(self, task: int, description: str) -> None:
        self.seen.append(description)

    def remove_task(self, task: int) -> None:
        pass

    def stop(self) -> None:
        pass
