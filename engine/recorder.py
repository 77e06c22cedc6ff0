"""Journal payloads: how a run's header, ticks and snapshot references are encoded.

Every payload is a msgpack map. Arrays travel as raw little-endian bytes whose dtype is
fixed by the schema (event columns by the kind's schema, decisions by ``RECORD``, chunk
hashes by ``CHUNK_RECORD``), so decoding is ``np.frombuffer`` and never a per-row loop.
The frame layout around the payloads is ``engine.journal``'s.

Input kinds are numbered by the journal itself: the header's ``kinds`` lists the world's
event kinds (name and columns) in id order, and a tick frame's inputs carry that index.
A replay decodes with the header's table (``event_table``), never with whatever kinds the
code it runs on declares. Protocol v1's kinds come first in every world, so a journal of
a v1-only world is byte-for-byte what FORMAT 1 always wrote, and a header without
``kinds`` (older journals) means protocol v1: FORMAT stays 1.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from norn.engine import journal, limits, snapshot_io, state
from norn.engine.decisions import NOTE, RECORD, TEXT
from norn.engine.digest import CHUNK_RECORD
from norn.engine.errors import EnvironmentFailure, JournalError
from norn.engine.inputs import InputBatch
from norn.engine.kinds import EventTable, Kinds
from norn.engine.observe import log_event
from norn.engine.tick import TickRecord

_log = logging.getLogger("norn.engine.recorder")

JOURNAL_NAME = "journal.norn"
SNAPSHOT_DIR = "snapshots"
FORMAT = 1


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


#: Protocol v1's event kinds: what a journal whose header names no kinds was written with.
V1_EVENTS = EventTable.of(Kinds.protocol_v1())


def event_table(header: dict[str, Any]) -> EventTable:
    """The event kinds a journal's tick frames are numbered by (its header's, or v1)."""
    table = header.get("kinds")
    return V1_EVENTS if table is None else EventTable.from_journal(table)


def _raw(column: np.ndarray) -> memoryview:
    """A column's bytes for msgpack's bin without copying them first (msgpack packs a
    buffer exactly as the ``bytes`` it holds: the frame is byte for byte the same)."""
    return memoryview(np.ascontiguousarray(column).reshape(-1).view(np.uint8))


def encode_tick(rec: TickRecord, kinds: EventTable | Kinds | None = None) -> bytes:
    """A tick frame; inputs numbered by ``kinds`` (the world's; protocol v1 by default)."""
    table = EventTable.of(kinds) if isinstance(kinds, Kinds) else kinds or V1_EVENTS
    inputs = []
    for b in rec.inputs:
        kind_id = table.ids.get(b.kind)
        if kind_id is None:
            raise JournalError(
                f"tick {rec.tick}: input kind {b.kind!r} is not in the journal's kinds "
                f"{list(table.names)}; encode with the world's kinds"
            )
        inputs.append([
            b.source,
            int(b.seq),
            kind_id,
            [_raw(b.columns[name]) for name, _ in table.schemas[kind_id]],
        ])
    chunks = rec.chunks if rec.chunks is not None else np.empty(0, dtype=CHUNK_RECORD)
    doc = {
        "t": rec.tick,
        "in": inputs,
        "dec": np.ascontiguousarray(rec.decisions, dtype=RECORD).tobytes(),
        "d": rec.digest,
        "ch": chunks.tobytes(),
        "na": rec.actions,
    }
    # The decision tier's notes and free texts: only when there are any, so journals of
    # worlds without them are byte-identical to those written before these keys existed.
    if len(rec.notes):
        doc["dn"] = np.ascontiguousarray(rec.notes, dtype=NOTE).tobytes()
    if len(rec.texts):
        doc["dt"] = np.ascontiguousarray(rec.texts, dtype=TEXT).tobytes()
    return pack(doc)


def decode_tick(payload: bytes, kinds: EventTable | None = None) -> TickRecord:
    """A tick frame; ``kinds`` is the journal's table (``event_table(header)``), v1 if None."""
    table = kinds or V1_EVENTS
    doc = unpack(payload)
    inputs = []
    for source, seq, kind_id, cols in doc["in"]:
        if not 0 <= kind_id < len(table.names):
            raise JournalError(
                f"tick {doc['t']}: input kind id {kind_id} is not in the journal's kinds "
                f"{list(table.names)}; decode with the header's table (event_table)"
            )
        schema = table.schemas[kind_id]
        columns = {
            name: np.frombuffer(raw, dtype=dt) for (name, dt), raw in zip(schema, cols, strict=True)
        }
        inputs.append(InputBatch(source, seq, table.names[kind_id], columns))
    return TickRecord(
        tick=doc["t"],
        inputs=inputs,
        decisions=np.frombuffer(doc["dec"], dtype=RECORD),
        notes=np.frombuffer(doc.get("dn", b""), dtype=NOTE),
        texts=np.frombuffer(doc.get("dt", b""), dtype=TEXT),
        digest=doc["d"],
        chunks=np.frombuffer(doc["ch"], dtype=CHUNK_RECORD),
        actions=doc["na"],
    )


def make_dir(path: Path, what: str) -> None:
    """``mkdir -p path``; an OS refusal becomes one EnvironmentFailure naming ``path``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # something that is not a directory is in the way
        raise EnvironmentFailure(f"{path}: cannot create {what}: it exists and is not a "
                                 "directory") from e
    except OSError as e:
        raise EnvironmentFailure.from_os(path, f"cannot create {what}", e) from e


def prepare_run_dir(out_dir: str | Path) -> list[Path]:
    """Create the run directory and prove it writable, before anything costly is built.

    A read-only location, a file where the directory should be, or a directory this user
    may not write: one EnvironmentFailure naming the path and the OS's reason (exit 3).
    Returns the directories it created, deepest first (``discard_dirs`` undoes them).
    """
    out = Path(out_dir)
    created = []
    try:
        p = out
        while not p.exists() and p != p.parent:
            created.append(p)
            p = p.parent
    except OSError as e:
        raise EnvironmentFailure.from_os(out, "cannot look at the run directory", e) from e
    make_dir(out, "the run directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".norn-write-check-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        discard_dirs(created)
        raise EnvironmentFailure.from_os(out, "cannot write the run directory", e) from e
    return created


def discard_dirs(dirs: list[Path]) -> None:
    """Remove directories ``prepare_run_dir`` created, deepest first, if still empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


def initial_chunks(world) -> bytes:
    """Every region's chunk hashes at tick 0, so verify can follow the chunk-level state."""
    return pack({r.key: r.hashes.tobytes() for r in world.digest.regions})


class Recorder:
    """Writes a run's journal and periodic snapshots; one fsync per tick at most.

    A periodic snapshot is captured on the tick thread (a copy of the state, about 12 ms
    for the default world) and written off it (Arrow, hashes, fsync: about 100 ms, which
    made the paced demo's snapshot tick late); the journal names it once the file is
    durable, in a later tick's commit, so a crash before that resumes from the one
    before. At most ``limits.snapshots_in_flight_max`` are being written.
    """

    def __init__(
        self, out_dir: Path, writer: journal.JournalWriter, snapshot_every: int,
        kinds: EventTable | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.writer = writer
        self.snapshot_every = snapshot_every
        self.snapshots: list[tuple[int, str]] = []
        self.kinds = kinds  # the header's event kinds; None: the world's (same ids)
        self._writing: deque[tuple[Future, int, str, int]] = deque()  # (write, tick, file, d)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def create(
        cls, out_dir: str | Path, header: dict, *, fsync: bool, snapshot_every: int
    ) -> Recorder:
        out = Path(out_dir)
        prepare_run_dir(out)
        path = out / JOURNAL_NAME
        if path.exists():
            raise JournalError(
                f"{path}: a journal already exists; choose another --out or --resume"
            )
        writer = journal.JournalWriter.create(path, fsync=fsync)
        writer.append(journal.KIND_HEADER, pack(header))
        writer.commit()
        kinds = event_table(header) if "kinds" in header else None
        return cls(out, writer, snapshot_every, kinds)

    def record(self, world, rec: TickRecord) -> None:
        """Append the tick's frame (and a due snapshot); return once durable (one fsync).

        The caller then publishes ``Committed`` (``engine/runner.py``); nothing here tells
        the outside, so there is one path from durability to acks and actions.
        """
        self.writer.append(journal.KIND_TICK, encode_tick(rec, self.kinds or world.kinds))
        self._name_written(wait=False)
        if self.snapshot_every and rec.tick % self.snapshot_every == 0:
            while len(self._writing) >= limits.snapshots_in_flight_max:
                self._name_written(wait=True, first_only=True)
            self._start_snapshot(world)
        self.writer.commit()

    def snapshot(self, world) -> str:
        """Write a snapshot of ``world`` now and name it in the journal (its next commit)."""
        arrays, meta = state.capture(world)
        rel = self._snapshot_path(world.tick)
        snapshot_io.write_snapshot(self.out_dir / rel, arrays, meta)
        self._name(world.tick, rel, world.digest.combine(world.tick, state_only=True))
        return rel

    def _snapshot_path(self, tick: int) -> str:
        rel = f"{SNAPSHOT_DIR}/tick-{tick:09d}.arrow"
        make_dir((self.out_dir / rel).parent, "the snapshots directory")
        return rel

    def _start_snapshot(self, world) -> None:
        arrays, meta = state.capture(world)  # copies: the next tick may change the world
        rel = self._snapshot_path(world.tick)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(limits.snapshots_in_flight_max,
                                            thread_name_prefix="norn-snapshot")
        write = self._pool.submit(snapshot_io.write_snapshot, self.out_dir / rel, arrays, meta)
        self._writing.append((write, world.tick, rel,
                              world.digest.combine(world.tick, state_only=True)))

    def _name_written(self, *, wait: bool, first_only: bool = False) -> None:
        """Name the snapshots whose files are durable, oldest first (``wait``: wait for
        them). A failed write fails the run here, on the tick thread."""
        while self._writing and (wait or self._writing[0][0].done()):
            write, tick, rel, digest = self._writing.popleft()
            write.result()
            self._name(tick, rel, digest)
            if first_only:
                return

    def _name(self, tick: int, rel: str, digest: int) -> None:
        self.writer.append(journal.KIND_SNAPSHOT, pack({"t": tick, "file": rel, "d": digest}))
        self.snapshots.append((tick, rel))
        log_event(_log, "snapshot_written", f"snapshot of tick {tick} written to {rel}",
                  tick=tick, file=rel)

    def close(self, world, reason: str) -> None:
        try:
            self._name_written(wait=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self.writer.append(journal.KIND_END, pack({"t": world.tick, "reason": reason}))
        self.writer.commit()
        self.writer.close()
