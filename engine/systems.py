"""The engine's own work in the tick, as ordinary systems of the one schedule.

Each is a ``fn(world)`` with declared reads and writes, like a plugin's; it holds the
``first`` or ``last`` slot of its phase (``engine/schedule.py``), so the printed schedule
shows every step of the tick and the conflict check covers the engine too. Where a tick's
inputs and decision results come from (the live queue and resolver, or a journal record
on replay) is read from ``world.step_context``; the systems fill its ``record``.

Registered by ``World.build`` (``engine_systems``), once the tables and channels exist,
so the declarations name them.
"""

from __future__ import annotations

from norn.engine.events import group_events
from norn.engine.schedule import System


def drain_inputs(world) -> None:
    """ingest, first: this tick's batches (the queue, or the journal) grouped per kind."""
    ctx = world.step_context
    batches = ctx.replay.inputs if ctx.replay is not None else world.inputs.drain(ctx.tick)
    world.ingested = batches
    world.events = group_events(batches, world.kinds.event_schemas)
    ctx.record.inputs = batches


def deliver_messages(world) -> None:
    """deliver, first: every channel's outbox becomes its inbox, in canonical order."""
    for name in sorted(world.channels):
        world.channels[name].deliver()


def submit_decisions(world) -> None:
    """decide, first: hand the tick's new requests to the resolver (never blocks).

    On replay nothing is submitted: results come from the journal.
    """
    ctx = world.step_context
    new = world.decisions.take_new()
    said_ids, said = world.decisions.take_said()
    if ctx.replay is None and len(new):
        if len(said_ids):
            world.resolver.said(said_ids, said)
        world.resolver.submit(ctx.tick, new)


def settle_decisions(world) -> None:
    """apply, first: results due now are validated and applied (or the journal's set)."""
    ctx = world.step_context
    if ctx.replay is not None:
        records, notes, texts = ctx.replay.decisions, ctx.replay.notes, ctx.replay.texts
    else:
        if world.lockstep:
            world.resolver.wait(ctx.tick, world.lockstep_timeout_s)
        records = world.decisions.settle(ctx.tick, world.resolver.collect(ctx.tick))
        notes, texts = world.resolver.take_notes(records)
    world.decisions.apply(records, texts)
    ctx.record.decisions, ctx.record.notes, ctx.record.texts = records, notes, texts


def sync_spawns(world) -> None:
    """apply, last: the sync point; queued spawns come alive, despawns free their slots.

    Marks exactly the rows it touched, so the whole tables are not rehashed.
    """
    for table in world.tables.values():
        table.sync()
    world.mark_spawn_rows()


def number_actions(world) -> None:
    """emit, last: number the tick's actions in canonical order; they leave on Committed."""
    ctx = world.step_context
    batch = world.actions.take(ctx.tick)
    world.last_actions = batch
    ctx.record.emitted = batch
    ctx.record.actions = batch.count()


def digest_state(world) -> None:
    """commit, last: rehash the dirty chunks; the tick digest. The runner journals next."""
    ctx = world.step_context
    ctx.record.digest, ctx.record.chunks = world.digest.commit(ctx.tick)


def engine_systems(world) -> list[System]:
    """The engine's systems for ``world``, declaring the tables and channels it has."""
    tables = tuple(f"{t}.*" for t in sorted(world.tables))
    outs = tuple(f"out:{c}" for c in sorted(world.channels))
    ins = tuple(f"in:{c}" for c in sorted(world.channels))
    return [
        System("engine.drain_inputs", "ingest", drain_inputs, writes=("events",), slot="first"),
        System("engine.deliver_messages", "deliver", deliver_messages, reads=outs,
               writes=(*outs, *ins), slot="first"),
        System("engine.submit_decisions", "decide", submit_decisions, reads=("decisions",),
               writes=("decisions",), slot="first"),
        System("engine.settle_decisions", "apply", settle_decisions, reads=("decisions",),
               writes=("decisions",), slot="first"),
        System("engine.sync_spawns", "apply", sync_spawns, writes=tables, slot="last",
               marks_own_writes=True),
        System("engine.number_actions", "emit", number_actions, reads=("actions",),
               writes=("actions",), slot="last"),
        System("engine.digest_state", "commit", digest_state,
               reads=(*tables, *outs, "decisions", "actions"), slot="last"),
    ]

