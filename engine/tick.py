"""One tick: the schedule's phases in order, every system in them, as one loop.

``step`` is a loop over ``PHASES`` calling each phase's ordered systems, the engine's own
(``engine/systems.py``: drain inputs, deliver, submit and settle decisions, spawn/despawn
sync, number actions, digest) and the plugins' alike, with one timing block and one error
path. Where inputs and decision results come from is the only thing a replay changes: the
``StepContext`` hands the engine's drain and settle systems a ``TickRecord`` of the journal
instead of the live queue and resolver. Time is never read for state here: the runner
injects ``world.clock`` for metrics only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from norn.engine.actions import ActionBatch
from norn.engine.decisions import EMPTY_NOTES, EMPTY_TEXTS, RECORD
from norn.engine.digest import CHUNK_RECORD
from norn.engine.errors import NornBug, NornError
from norn.engine.inputs import InputBatch
from norn.engine.schedule import PHASES

EMPTY_RECORDS = np.empty(0, dtype=RECORD)
EMPTY_CHUNKS = np.empty(0, dtype=CHUNK_RECORD)


@dataclass
class TickRecord:
    """What a tick consumed and produced: the journal's per-tick frame (and its actions)."""

    tick: int
    inputs: list[InputBatch]
    decisions: np.ndarray  # RECORD rows applied in this tick
    notes: np.ndarray = field(default_factory=lambda: EMPTY_NOTES)  # NOTE rows (tiers)
    texts: np.ndarray = field(default_factory=lambda: EMPTY_TEXTS)  # TEXT rows (free text)
    digest: int = 0
    chunks: np.ndarray | None = None  # CHUNK_RECORD rows whose hash changed
    actions: int = 0
    emitted: ActionBatch | None = None  # not journaled: a pure function of the journal


@dataclass
class StepContext:
    """The tick being stepped: where its inputs and decisions come from, what it produced.

    ``replay`` is None for a live tick (the input queue, the resolver) or the journal's
    record to take them from; the engine systems fill ``record``.
    """

    tick: int
    replay: TickRecord | None
    record: TickRecord = field(init=False)

    def __post_init__(self) -> None:
        self.record = TickRecord(self.tick, [], EMPTY_RECORDS)


def step(world, replay: TickRecord | None = None) -> TickRecord:
    """Advance ``world`` by one tick. With ``replay``, inputs and decisions come from it."""
    tick = world.tick + 1
    world.tick = tick
    ctx = StepContext(tick, replay)
    world.step_context = ctx
    clock = world.clock
    phase_s = world.phase_seconds
    system_s = world.system_seconds
    for phase in PHASES:
        t_phase = clock()
        for system in world.schedule.phase(phase):
            t0 = clock()
            try:
                system.fn(world)
            except NornError as exc:  # named on purpose: add where it happened
                exc.within(seed=world.seed, tick=tick, system=system.name)
                raise
            except Exception as exc:  # a bug: stop naming seed, tick and system
                raise NornBug(
                    f"{type(exc).__name__}: {exc}", seed=world.seed, tick=tick, system=system.name
                ) from exc
            system_s[system.name] = system_s.get(system.name, 0.0) + (clock() - t0)
            world.after_system(system)
        phase_s[phase] = phase_s.get(phase, 0.0) + (clock() - t_phase)
    return ctx.record
