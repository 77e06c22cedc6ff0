"""Runners around the one pure ``step``: building a world, the clock modes, the summary.

``fast`` steps as fast as possible; ``realtime`` paces ticks to ``tick_ms`` (``Pacer``) and
counts overruns (never hides them); ``lockstep`` is fast but waits for due decision results.
``synctest`` checks each tick by snapshot, step, restore, step again (GGPO's SyncTest).

After each tick is journaled (one fsync), ``run`` publishes the one ``Committed`` notice
(``engine/commit.py``): acks and action release follow from it and from nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash
from numba.core import event as numba_event

from norn.engine import clock, state, threads
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed
from norn.engine.config import RunConfig
from norn.engine.decisions import DeterministicResolver
from norn.engine.errors import NornBug
from norn.engine.fingerprint import fingerprint
from norn.engine.observe import log_event
from norn.engine.recorder import FORMAT, Recorder, initial_chunks
from norn.engine.scenario import Scenario
from norn.engine.tick import TickRecord, step
from norn.engine.world import World

_log = logging.getLogger("norn.engine.runner")


class CompileTimer:
    """Accumulates numba JIT compile time (reported apart from tick time)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._t0 = 0.0

    def _listener(self) -> numba_event.Listener:
        timer = self

        class _L(numba_event.Listener):
            def on_start(self, ev: numba_event.Event) -> None:
                if timer._depth == 0:
                    timer._t0 = clock.monotonic()
                timer._depth += 1

            def on_end(self, ev: numba_event.Event) -> None:
                timer._depth -= 1
                if timer._depth == 0:
                    timer.seconds += clock.monotonic() - timer._t0

        return _L()

    def __enter__(self) -> CompileTimer:
        self._l = self._listener()
        numba_event.register("numba:compile", self._l)
        return self

    def __exit__(self, *exc: object) -> None:
        numba_event.unregister("numba:compile", self._l)

    def clock(self) -> float:
        """The monotonic clock less the compile time so far: phase and system times taken
        on it leave compile out, as the tick times do."""
        return clock.monotonic() - self.seconds


#: How far (ms) the realtime schedule may fall behind and still catch up by running the
#: late ticks back to back. Further behind (a JIT compile, a stopped process, a slow disk)
#: the schedule is re-phased from now instead: the lost time is skipped, not raced through.
#: rAthena's own interval timers do the same past 1000 ms (``src/common/timer.cpp``,
#: ``do_timer``: "Reset the timer if it has fallen too far behind").
realtime_behind_ms_max = 1000


class Pacer:
    """Realtime pacing of the ticks to ``period_s``, with time injected (``now``, ``sleep_until``).

    Tick ``i`` is due at ``due``; after it, the next is due one period later. A tick that
    ends past that point is an **overrun**, counted once when the schedule falls behind
    (the ticks that only catch up the backlog are not counted again). Behind by at most
    ``behind_max_s`` the next ticks run back to back until the schedule is met; behind by
    more it is a **stall**: counted once, and the schedule re-phased to start now, so a long
    first tick (a JIT compile) never makes the rest of the run race to catch up.
    """

    def __init__(self, period_s: float, now: Callable[[], float] | None = None,
                 sleep_until: Callable[[float], None] | None = None,
                 behind_max_s: float = realtime_behind_ms_max / 1000) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self.now = now or clock.monotonic  # engine/clock.py, looked up now: tests inject it
        self.sleep_until = sleep_until or clock.sleep_until
        self.behind_max_s = behind_max_s
        self.due = self.now()  # when the current tick was due to start
        self.behind = False  # catching up a backlog
        self.overruns = 0
        self.stalls = 0
        self.skipped_s = 0.0  # schedule time dropped by re-phasing

    def start(self) -> None:
        """The first tick is due now."""
        self.due = self.now()
        self.behind = False

    def tick_done(self) -> None:
        """After a tick: sleep to the next one's start, or count it late (and re-phase)."""
        self.due += self.period_s
        t = self.now()
        late_s = t - self.due
        if late_s <= 0:
            self.behind = False
            self.sleep_until(self.due)
            return
        if not self.behind:
            self.overruns += 1
            self.behind = True
        if late_s > self.behind_max_s:
            self.stalls += 1
            self.skipped_s += late_s
            log_event(_log, "clock_stalled", f"the realtime clock fell {late_s:.2f} s behind: "
                      "re-phased from now (the lost time is skipped, not raced through)",
                      level=logging.WARNING, behind_s=round(late_s, 3), stalls=self.stalls)
            self.due = t  # re-phased: the next tick starts now, the ones after it on time
            self.behind = False


def build_world(scenario: Scenario, config: RunConfig) -> World:
    world = World(
        config.seed,
        chunk_rows=config.chunk_rows,
        tick_ms=config.tick_ms,
        resolver=DeterministicResolver(config.decision_latency_ticks),
        actions_max=config.actions_per_tick_max,
        input_batches_max=config.input_batches_max,
        input_events_max=config.input_events_max,
    )
    scenario.builder()(world, scenario)
    world.build()
    start(world)
    return world


def start(world: World) -> None:
    """Make the initial population alive and hash the initial state (tick 0)."""
    for table in world.tables.values():
        table.sync()
    world.mark_spawn_rows()
    for region in world.digest.regions:
        world.digest._rehash(region, full=True)


def make_header(scenario: Scenario, config: RunConfig, world: World) -> dict[str, Any]:
    cfg = config.model_dump()
    cfg_bytes = repr(sorted(cfg.items())).encode()
    return {
        "format": FORMAT,
        "norn": fingerprint()["norn"],
        "scenario": {
            "name": scenario.name,
            "model": scenario.model,
            "text": scenario.text,
            "source": scenario.source,
            "hash": xxhash.xxh3_64_hexdigest(scenario.text.encode()),
        },
        "config": cfg,
        "config_hash": xxhash.xxh3_64_hexdigest(cfg_bytes),
        "seed": config.seed,
        "env": fingerprint(),
        "regions": world.digest.keys(),
        "kinds": world.kinds.journal_table(),  # event kind ids of the tick frames
        "chunk_rows": config.chunk_rows,
        "tick_ms": config.tick_ms,
        "t0": world.tick,
        "d0": world.digest.combine(world.tick),
        "ch0": initial_chunks(world),
    }


@dataclass
class RunSummary:
    ticks: int = 0
    first_tick: int = 0
    last_tick: int = 0
    wall_s: float = 0.0
    compile_s: float = 0.0
    tick_s: list[float] = field(default_factory=list)
    overruns: int = 0
    stalls: int = 0  # realtime: fell more than realtime_behind_ms_max behind; re-phased
    stall_s: float = 0.0  # realtime: schedule time skipped by those re-phases
    last_digest: int = 0
    actions: int = 0
    inputs: int = 0
    phase_s: dict[str, float] = field(default_factory=dict)
    system_s: dict[str, float] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    stopped: str = "completed"

    def as_dict(self) -> dict[str, Any]:
        ts = np.array(self.tick_s) if self.tick_s else np.zeros(1)
        run_s = float(ts.sum())
        return {
            "ticks": self.ticks,
            "first_tick": self.first_tick,
            "last_tick": self.last_tick,
            "wall_s": round(self.wall_s, 4),
            "compile_s": round(self.compile_s, 4),
            "tick_time_s": round(run_s, 4),
            "ticks_per_s": round(self.ticks / run_s, 2) if run_s > 0 else None,
            "tick_ms_p50": round(float(np.percentile(ts, 50)) * 1e3, 3),
            "tick_ms_p99": round(float(np.percentile(ts, 99)) * 1e3, 3),
            "overruns": self.overruns,
            "stalls": self.stalls,
            "stall_s": round(self.stall_s, 4),
            # realtime: the rate the run kept, apart from the time its stalls skipped
            "paced_ticks_per_s": round(self.ticks / (self.wall_s - self.stall_s), 2)
            if self.wall_s - self.stall_s > 0 else None,
            "last_digest": f"{self.last_digest:016x}",
            "actions": self.actions,
            "input_batches": self.inputs,
            "phase_s": {k: round(v, 4) for k, v in self.phase_s.items()},
            "system_s": {k: round(v, 4) for k, v in sorted(self.system_s.items())},
            "decisions": self.decisions,
            "stopped": self.stopped,
        }


class _NullResolver:
    def submit(self, tick: int, requests: np.ndarray) -> None:
        pass

    def collect(self, tick: int) -> np.ndarray:
        raise AssertionError("replayed step must not collect")

    def wait(self, tick: int, timeout_s: float) -> None:
        pass


def synctest_step(world: World) -> TickRecord:
    """Step, then restore the pre-tick snapshot and step again from the same record.

    Also rehashes every chunk from scratch: a region whose incremental hash is stale was
    written without being marked (a column not declared, or rows a system that marks its
    own writes did not mark); the error names it and the systems declaring it.
    """
    arrays, meta = state.capture(world)
    first = step(world)
    stale = world.digest.full_check()
    if stale:
        writers = {
            key: [s.name for s in world.schedule.systems  # the engine's sync marks its own
                  if s.plugin != "engine" and any(_declares(w, key) for w in s.writes)]
            for key in stale
        }
        named = "; ".join(
            f"{key} (declared written by {', '.join(ws) if ws else 'no system'})"
            for key, ws in writers.items()
        )
        raise NornBug(
            f"undeclared writes (or writes outside the rows a system marked) to {named}",
            seed=world.seed, tick=first.tick, system="synctest",
        )
    after = {r.key: r.hashes.copy() for r in world.digest.regions}
    live_resolver = world.resolver
    world.resolver = _NullResolver()
    state.restore(world, arrays, meta)
    again = step(world, TickRecord(first.tick, first.inputs, first.decisions))
    world.resolver = live_resolver
    if again.digest != first.digest:
        diff = [r.key for r in world.digest.regions if not np.array_equal(after[r.key], r.hashes)]
        raise NornBug(
            f"synctest: state after restore+step differs in {diff}",
            seed=world.seed,
            tick=first.tick,
            system="synctest",
        )
    return first


def _declares(write: str, region_key: str) -> bool:
    table, _, col = write.partition(".")
    rt, _, rc = region_key.partition(".")
    return table == rt and col in ("*", rc)


def committed_notice(rec: TickRecord) -> Committed:
    """The notice for a stepped (and journaled) tick."""
    actions = rec.emitted if rec.emitted is not None else ActionBatch(rec.tick)
    return Committed(rec.tick, tuple(rec.inputs), actions)


def run(
    world: World,
    config: RunConfig,
    recorder: Recorder | None = None,
    *,
    ticks: int | None = None,
    on_tick: Callable[[TickRecord], None] | None = None,
    before_tick: Callable[[int], bool | None] | None = None,
    stop: threading.Event | None = None,
    pacer: Pacer | None = None,
) -> RunSummary:
    """Run ``ticks`` (default ``config.ticks``) ticks in the configured clock mode.

    ``before_tick(tick)`` runs before each tick (feeding inputs, the lockstep barrier); if it
    returns False the run stops there with ``stopped = "stalled"``, the tick not stepped.
    ``pacer``: the realtime schedule (default: ``tick_ms`` on the wall clock); tests inject
    one with their own clock.
    """
    n = config.ticks if ticks is None else ticks
    world.lockstep = config.clock == "lockstep"
    world.lockstep_timeout_s = config.lockstep_timeout_s
    summary = RunSummary(first_tick=world.tick + 1)
    t_start = clock.monotonic()
    if config.clock == "realtime" and pacer is None:
        pacer = Pacer(config.tick_ms / 1000.0)
    if config.clock != "realtime":
        pacer = None
    if pacer is not None:
        pacer.start()
    with threads.tick_priority(), CompileTimer() as compile_timer:
        world.clock = compile_timer.clock  # phase and system times without compiles
        for _ in range(n):
            if stop is not None and stop.is_set():
                summary.stopped = "interrupted"
                break
            if before_tick is not None and before_tick(world.tick + 1) is False:
                summary.stopped = "stalled"
                break
            t0 = clock.monotonic()
            c0 = compile_timer.seconds
            rec = synctest_step(world) if config.synctest else step(world)
            if recorder is not None:
                recorder.record(world, rec)  # returns once the frame is durable
            world.committed(committed_notice(rec))  # acks and actions may leave now
            t1 = clock.monotonic()
            summary.tick_s.append((t1 - t0) - (compile_timer.seconds - c0))
            summary.ticks += 1
            summary.last_digest = rec.digest
            summary.actions += rec.actions
            summary.inputs += len(rec.inputs)
            if on_tick is not None:
                on_tick(rec)
            if pacer is not None:
                pacer.tick_done()
    if pacer is not None:
        summary.overruns, summary.stalls = pacer.overruns, pacer.stalls
        summary.stall_s = pacer.skipped_s
    summary.wall_s = clock.monotonic() - t_start
    summary.compile_s = compile_timer.seconds
    summary.last_tick = world.tick
    summary.phase_s = dict(world.phase_seconds)
    summary.system_s = dict(world.system_seconds)
    summary.decisions = dict(world.decisions.counters)
    return summary
