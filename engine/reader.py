"""Reading a recorded run: its header, tick records and snapshot references.

The counterpart of ``recorder.py``, and state code like it: ``resume`` rebuilds a world
from what this reads, so it lives in the engine (``norn.replays.reader`` re-exports it for
designers' tools).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine import journal, snapshot_io, state
from norn.engine.config import RunConfig
from norn.engine.errors import JournalError, JournalVersionError
from norn.engine.recorder import FORMAT, JOURNAL_NAME, decode_tick, event_table, unpack
from norn.engine.runner import build_world
from norn.engine.scenario import parse_scenario
from norn.engine.tick import TickRecord
from norn.engine.world import World


@dataclass
class RunJournal:
    dir: Path
    header: dict[str, Any]
    snapshots: list[tuple[int, str, int]] = field(default_factory=list)  # (tick, file, digest)
    end: dict[str, Any] | None = None
    last_tick: int = 0
    tick_frames: int = 0
    torn_tail_bytes: int = 0
    tick_offsets: list[int] = field(default_factory=list)  # byte offset of each tick frame

    @property
    def path(self) -> Path:
        return self.dir / JOURNAL_NAME

    def ticks(self, after: int = 0) -> Iterator[TickRecord]:
        """Tick records with tick > ``after``, in order."""
        reader = journal.JournalReader(self.path)
        kinds = event_table(self.header)  # the ids the frames were numbered by
        for frame in reader.frames():
            if frame.kind == journal.KIND_TICK:
                rec = decode_tick(frame.payload, kinds)
                if rec.tick > after:
                    yield rec

    def config(self) -> RunConfig:
        return RunConfig(**self.header["config"])

    def build_world(self) -> World:
        """The world at the journal's first tick: built from the header alone, or, for a
        fork (``header["fork"]``), its parent's state at the fork tick, kept as the fork's
        first snapshot (another seed or scenario cannot rebuild it from tick 0)."""
        sc = self.header["scenario"]
        scenario = parse_scenario(sc["text"], sc["source"])
        world = build_world(scenario, self.config())
        fork = self.header.get("fork")
        if fork is not None:
            arrays, meta = snapshot_io.read_snapshot(self.dir / fork["snapshot"])
            state.restore(world, arrays, meta)
            if world.digest.combine(world.tick) != self.header["d0"]:
                raise JournalError(f"{self.dir / fork['snapshot']}: the fork's starting state "
                                   "does not match its header's digest")
        return world

    def restore_latest(self, world: World, at_or_before: int | None = None) -> int:
        """Restore the latest snapshot at or before ``at_or_before``; returns its tick (0: none)."""
        best = None
        for tick, rel, digest in self.snapshots:
            if at_or_before is None or tick <= at_or_before:
                best = (tick, rel, digest)
        if best is None:
            return 0
        arrays, meta = snapshot_io.read_snapshot(self.dir / best[1])
        state.restore(world, arrays, meta)
        if world.digest.combine(world.tick, state_only=True) != best[2]:
            raise JournalError(f"{self.dir / best[1]}: snapshot does not match its recorded digest")
        return best[0]


def open_run(path: str | Path) -> RunJournal:
    """Scan a run directory (or a journal file); raises JournalError for unusable input."""
    p = Path(path)
    run_dir = p.parent if p.is_file() else p
    jpath = run_dir / JOURNAL_NAME
    if not jpath.is_file():
        raise JournalError(f"{run_dir}: no {JOURNAL_NAME} here; is this a run directory?")
    reader = journal.JournalReader(jpath)
    run: RunJournal | None = None
    for frame in reader.frames():
        if run is None:
            if frame.kind != journal.KIND_HEADER:
                raise JournalError(f"{jpath}: first frame is not a header (kind {frame.kind})")
            header = unpack(frame.payload)
            if header.get("format") != FORMAT:
                raise JournalVersionError(
                    f"{jpath}: run format {header.get('format')} is not supported "
                    f"(this Norn reads {FORMAT})"
                )
            run = RunJournal(run_dir, header)
            run.last_tick = header.get("t0", 0)
        elif frame.kind == journal.KIND_TICK:
            run.tick_frames += 1
            run.tick_offsets.append(frame.offset)
            run.last_tick = int(unpack(frame.payload)["t"])
        elif frame.kind == journal.KIND_SNAPSHOT:
            doc = unpack(frame.payload)
            run.snapshots.append((int(doc["t"]), doc["file"], int(doc["d"])))
        elif frame.kind == journal.KIND_END:
            run.end = unpack(frame.payload)
    if run is None:
        raise JournalError(f"{jpath}: journal has no header frame")
    run.torn_tail_bytes = reader.torn_tail_bytes
    return run


def durable_seqs(run: RunJournal) -> dict[str, int]:
    """Highest journaled input sequence number per source (the bridge's resume point)."""
    seqs: dict[str, int] = {}
    for rec in run.ticks():
        for b in rec.inputs:
            seqs[b.source] = max(seqs.get(b.source, -1), b.seq)
    return seqs


def chunk_state(header: dict[str, Any]) -> dict[str, np.ndarray]:
    raw = unpack(header["ch0"])
    return {k: np.frombuffer(v, dtype=np.uint64).copy() for k, v in raw.items()}
