"""One tick: the seven phases of DESIGN §1, in order, as one pure function of the world.

``step`` takes its inputs and decision results either live (drained from the input queue,
collected from the resolver) or from a ``TickRecord`` of the journal (replay), and returns
the ``TickRecord`` of what it did. Time is never read here: the runner injects
``world.clock`` for metrics, and nothing in state depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.engine.decisions import RECORD
from norn.engine.digest import CHUNK_RECORD
from norn.engine.errors import NornBug, NornError
from norn.engine.events import EVENT_KINDS, EVENT_SCHEMAS, empty_columns
from norn.engine.inputs import InputBatch


@dataclass
class TickRecord:
    """What a tick consumed and produced: the journal's per-tick frame."""

    tick: int
    inputs: list[InputBatch]
    decisions: np.ndarray  # RECORD rows applied in this tick
    digest: int = 0
    chunks: np.ndarray | None = None  # CHUNK_RECORD rows whose hash changed
    actions: int = 0


def step(world, replay: TickRecord | None = None, *, emit: bool = True) -> TickRecord:
    """Advance ``world`` by one tick. With ``replay``, inputs and decisions come from it."""
    tick = world.tick + 1
    clock = world.clock
    times = world.phase_seconds

    def run_phase(phase: str) -> None:
        for system in world.schedule.phase(phase):
            t0 = clock()
            try:
                system.fn(world)
            except NornError:
                raise
            except Exception as exc:  # a bug: stop naming seed, tick and system
                raise NornBug(
                    f"{type(exc).__name__}: {exc}", seed=world.seed, tick=tick, system=system.name
                ) from exc
            world.system_seconds[system.name] = world.system_seconds.get(system.name, 0.0) + (
                clock() - t0
            )
            world.mark_written(system.writes)

    # 1. ingest -------------------------------------------------------------------------
    t0 = clock()
    world.tick = tick
    batches = replay.inputs if replay is not None else world.inputs.drain(tick)
    world.ingested = batches
    world.events = _group_events(batches)
    run_phase("ingest")
    t1 = clock()
    times["ingest"] = times.get("ingest", 0.0) + t1 - t0

    # 2. deliver ------------------------------------------------------------------------
    for name in sorted(world.channels):
        world.channels[name].deliver()
    run_phase("deliver")
    t2 = clock()
    times["deliver"] = times.get("deliver", 0.0) + t2 - t1

    # 3. act ----------------------------------------------------------------------------
    run_phase("act")
    t3 = clock()
    times["act"] = times.get("act", 0.0) + t3 - t2

    # 4. decide: tier-1 rules already ran in act; the rest goes to the resolver ----------
    new = world.decisions.take_new()
    if replay is None and len(new):
        world.resolver.submit(tick, new)
    run_phase("decide")
    t4 = clock()
    times["decide"] = times.get("decide", 0.0) + t4 - t3

    # 5. apply: results due now are validated and applied; then the spawn/despawn sync ----
    if replay is not None:
        records = replay.decisions
    else:
        if getattr(world, "lockstep", False):
            world.resolver.wait(tick, world.lockstep_timeout_s)
        records = world.decisions.settle(tick, world.resolver.collect(tick))
    world.decisions.apply(records)
    run_phase("apply")
    for table in world.tables.values():
        table.sync()
    world.mark_spawn_rows()
    t5 = clock()
    times["apply"] = times.get("apply", 0.0) + t5 - t4

    # 6. emit ---------------------------------------------------------------------------
    run_phase("emit")
    batch = world.actions.take(tick)
    world.last_actions = batch
    if emit:
        for sink in world.sinks:
            sink.emit(batch)
    t6 = clock()
    times["emit"] = times.get("emit", 0.0) + t6 - t5

    # 7. commit: digest here; the runner journals and snapshots the returned record ------
    run_phase("commit")
    digest, chunks = world.digest.commit(tick)
    t7 = clock()
    times["commit"] = times.get("commit", 0.0) + t7 - t6
    return TickRecord(tick, batches, records, digest, chunks, batch.count())


def _group_events(batches: list[InputBatch]) -> dict[str, dict[str, np.ndarray]]:
    """Concatenate this tick's batches per event kind (a loop over batches, not events)."""
    parts: dict[str, list[InputBatch]] = {}
    for b in batches:
        parts.setdefault(b.kind, []).append(b)
    grouped = {}
    for kind in EVENT_KINDS:
        bs = parts.get(kind)
        if not bs:
            grouped[kind] = empty_columns(kind)
            continue
        cols = {
            name: np.concatenate([b.columns[name] for b in bs]) for name, _ in EVENT_SCHEMAS[kind]
        }
        grouped[kind] = cols
    return grouped


EMPTY_RECORDS = np.empty(0, dtype=RECORD)
EMPTY_CHUNKS = np.empty(0, dtype=CHUNK_RECORD)
