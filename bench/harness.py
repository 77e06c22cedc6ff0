"""Measuring one benchmark case: setup apart from the measured run, repetitions, summaries.

A case is a plain function ``fn(**params) -> dict`` in a scenario module. By default each
case runs in a fresh Python process (``run_case(..., isolate=True)``), so its peak RSS is
its own and no case warms the caches, the allocator or the JIT for the next one. Tests and
``--in-process`` run them here instead.

``measure_world`` is the common loop of the world scenarios: build the world (setup,
timed apart), run warm-up ticks (JIT compile time is reported apart; with numba's on-disk
cache it is mostly cache loading), then ``repeat`` repetitions of ``ticks`` ticks on the
same world, each giving ticks/s and entity-updates/s; tick-time percentiles, per-phase and
per-system times are taken over all measured ticks.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from norn.bench.machine import ROOT, LoadMeter, peak_rss_bytes, wait_for_quiet
from norn.bench.stats import percentile_ms, summarize
from norn.engine import clock
from norn.engine.config import RunConfig, make_config
from norn.engine.runner import CompileTimer, build_world, run
from norn.engine.scenario import Scenario
from norn.engine.world import World

#: marks the worker's result line on stdout, so stray prints from libraries cannot break it
RESULT_MARK = "NORN-BENCH-RESULT "


@dataclass
class CaseSpec:
    """One measurement to make: ``module:function`` called with ``params``."""

    scenario: str
    name: str
    target: str  # "norn.bench.scenarios.core:empty_world"
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 1800.0


class CaseFailed(RuntimeError):
    pass


def call_target(target: str, params: dict[str, Any]) -> dict[str, Any]:
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)(**params)


def run_case(
    spec: CaseSpec,
    *,
    isolate: bool = True,
    env: dict[str, str] | None = None,
    quiet_wait_s: float = 0.0,
) -> dict:
    """Run one case, in a fresh process unless ``isolate`` is False; returns its result.

    With ``quiet_wait_s`` it first waits (that long at most) for other processes to
    leave the cores idle; the load they caused during the case is reported regardless.
    """
    if quiet_wait_s > 0:
        wait_for_quiet(quiet_wait_s)
    if not isolate:
        result = call_target(spec.target, spec.params)
        result.setdefault("isolated", False)
        return result
    payload = json.dumps({"target": spec.target, "params": spec.params})
    proc = subprocess.run(
        [sys.executable, "-m", "norn.bench.worker", payload],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=spec.timeout_s,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
            result["isolated"] = True
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    raise CaseFailed(
        f"{spec.scenario}/{spec.name} failed (exit {proc.returncode}):\n" + "\n".join(tail)
    )


# -- the world loop ------------------------------------------------------------------------
def measure_world(
    make_world: Callable[[], World],
    config: RunConfig,
    *,
    entities: int,
    ticks: int,
    warmup: int,
    repeat: int,
    before_tick: Callable[[World, int], None] | None = None,
    fresh_world: bool = False,
) -> dict[str, Any]:
    """Build (setup), warm up (compile), then ``repeat`` x ``ticks`` measured ticks.

    With ``fresh_world`` every repetition starts from a newly built world (its build is
    setup, untimed): for models whose figure is a whole run from the initial state.
    """
    state: dict[str, World] = {}

    def hook(tick: int) -> None:
        if before_tick is not None:
            before_tick(state["world"], tick)

    with CompileTimer() as ct:
        t0 = clock.monotonic()
        world = state["world"] = make_world()
        setup_s = [clock.monotonic() - t0]
        run(world, config, ticks=warmup, before_tick=hook if before_tick else None)
    compile_s = ct.seconds
    rates, updates, all_ticks = [], [], []
    phase_ms: dict[str, list[float]] = {}
    system_ms: dict[str, list[float]] = {}
    meter = LoadMeter()
    for _ in range(repeat):
        if fresh_world:
            del world, state["world"]
            t0 = clock.monotonic()
            world = state["world"] = make_world()
            setup_s.append(clock.monotonic() - t0)
        world.phase_seconds.clear()
        world.system_seconds.clear()
        summary = run(world, config, ticks=ticks, before_tick=hook if before_tick else None)
        run_s = float(np.sum(summary.tick_s))
        rates.append(ticks / run_s)
        updates.append(entities * ticks / run_s)
        all_ticks.extend(summary.tick_s)
        for k, v in summary.phase_s.items():
            phase_ms.setdefault(k, []).append(v / ticks * 1e3)
        for k, v in summary.system_s.items():
            system_ms.setdefault(k, []).append(v / ticks * 1e3)
    figures: dict[str, Any] = {
        "ticks_per_s": summarize(rates),
        "entity_updates_per_s": summarize(updates),
        "tick_ms_p50": percentile_ms(all_ticks, 50),
        "tick_ms_p99": percentile_ms(all_ticks, 99),
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
    }
    out: dict[str, Any] = {
        "entities": entities,
        "ticks": ticks,
        "warmup_ticks": warmup,
        "repeat": repeat,
        "setup_s": round(float(np.median(setup_s)), 4),
        "compile_s": round(compile_s, 4),
        "figures": figures,
        "phase_ms": {k: round(float(np.median(v)), 4) for k, v in phase_ms.items()},
        "system_ms": {k: round(float(np.median(v)), 4) for k, v in sorted(system_ms.items())},
        "last_tick": world.tick,
        "other_load_cores": meter.other_cores(),
    }
    out["_world"] = world  # for the caller's checks; dropped before the result is written
    return out


def scenario_world(scenario: Scenario, config: RunConfig) -> Callable[[], World]:
    return lambda: build_world(scenario, config)


def bench_config(seed: int = 1, **overrides: Any) -> RunConfig:
    """A run config for benchmarks: fast clock, no fsync, no snapshots unless asked."""
    base = {"clock": "fast", "fsync": False, "snapshot_every": 0}
    return make_config(None, seed=seed, **{**base, **overrides})


def world_bytes_per_update(world: World, messages_per_tick: float, entities: int) -> float:
    """Estimated bytes of memory traffic per entity-update, for the efficiency figure.

    The estimate, the same for every world scenario: every column of every table is read
    once and written once per tick; every message is written by its sender, read by the
    delivery and read by the digest (its row size each time). It ignores caches, so it is
    an order-of-magnitude yardstick for comparing machines, not a traffic measurement.
    """
    table_bytes = 0
    for t in world.tables.values():
        row = sum(col.itemsize * int(np.prod(col.shape[1:])) for col in t.columns.values())
        table_bytes += 2 * row * t.hwm
    msg_row = 0.0
    if world.channels:
        rows = [sum(np.dtype(dt).itemsize for _, dt in ch.fields) for ch in world.channels.values()]
        msg_row = float(np.mean(rows))
    return (table_bytes + 3 * msg_row * messages_per_tick) / max(entities, 1)


def efficiency(bytes_per_update: float, updates_per_s: float, triad_gbs: float) -> float:
    """Fraction of the machine's triad bandwidth the scenario's estimated traffic uses."""
    if not triad_gbs:
        return 0.0
    return round(bytes_per_update * updates_per_s / (triad_gbs * 1e9), 4)


def strip_private(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}
