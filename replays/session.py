"""A recorded run opened for reading: seek to any tick, inputs, actions and decisions.

``norn.replays.open(run)`` returns a ``Replay``. Seeking restores the nearest snapshot at
or before the tick and steps forward with the journaled inputs and decisions, checking
every tick's digest against the journal (a seek that would show a state the run never had
stops as a divergence). The world is kept between seeks, so walking forward through a run
steps only the ticks in between.

Inputs are read from the journal directly. Actions and the decisions' details are not
journaled: they are a function of the journal, recomputed by one verified replay and kept
as Parquet beside the run (``derive.py``), so asking twice costs one replay.

Tick frames are found by an index of their byte offsets built when the run is opened (one
scan that checks every frame's CRC); a seek reads only the frames it steps. A seek index
(``norn replay index``, ``index.py``) adds derived snapshots between the run's own, each
checked against the journal's digest before it is used.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from norn.engine import snapshot_io, state
from norn.engine.errors import Diverged, JournalError, UserError
from norn.engine.reader import RunJournal, open_run
from norn.engine.recorder import decode_tick, event_table
from norn.engine.tick import TickRecord, step
from norn.engine.world import World
from norn.replays import index
from norn.replays.labels import Vocabulary, columns_table, world_table

_HEADER = struct.Struct("<IB3xI")


class NullResolver:
    """A replayed world never asks a resolver: results come from the journal."""

    def submit(self, tick: int, requests: np.ndarray) -> None:
        pass

    def collect(self, tick: int) -> np.ndarray:
        raise AssertionError("a replayed tick must not collect decision results")

    def wait(self, tick: int, timeout_s: float) -> None:
        pass

    def said(self, request_ids: np.ndarray, texts: np.ndarray) -> None:
        pass

    def take_notes(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("a replayed tick takes its notes from the journal")


class WorldAt:
    """The world at one tick, as readable Arrow tables (``.table``) or pandas frames."""

    def __init__(self, world: World, vocab: Vocabulary) -> None:
        self.world = world
        self.tick = world.tick
        self.vocab = vocab

    @property
    def tables(self) -> list[str]:
        return sorted(self.world.tables)

    def table(self, name: str, *, raw: bool = False, dead: bool = False) -> pa.Table:
        """Table ``name``'s live rows; names instead of ids unless ``raw``."""
        if name not in self.world.tables:
            raise UserError(f"no table {name!r} at tick {self.tick}; tables: {self.tables}")
        return world_table(self.world, name, self.vocab, raw=raw, dead=dead)

    def to_pandas(self, name: str, **kw: Any) -> Any:
        return self.table(name, **kw).to_pandas()

    def __getitem__(self, name: str) -> pa.Table:
        return self.table(name)

    def summary(self) -> dict[str, int]:
        """Live rows per table."""
        return self.world.state_summary()


class Replay:
    """A run directory opened for seeking and reading (``norn.replays.open``)."""

    def __init__(self, path: str | Path, *, use_index: bool = True) -> None:
        self.run: RunJournal = open_run(path)
        self.use_index = use_index
        self.warnings: list[str] = []  # e.g. a seek index refused, and why
        self._entries: list[Any] | None = None  # the seek index's, loaded at the first seek
        self.dir = self.run.dir
        self.header = self.run.header
        self.kinds = event_table(self.header)
        self.first_tick = int(self.header.get("t0", 0))
        self.last_tick = self.run.last_tick
        self._offsets = self._index()
        self._file = open(self.run.path, "rb")  # noqa: SIM115 (closed by close())
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._world: World | None = None
        self._vocab: Vocabulary | None = None

    # -- the journal -------------------------------------------------------------------
    def _index(self) -> np.ndarray:
        offsets = self.run.tick_offsets  # found by open_run's scan, which checked every CRC
        if len(offsets) != self.last_tick - self.first_tick:
            raise JournalError(f"{self.run.path}: tick frames are not consecutive from tick "
                               f"{self.first_tick + 1}")
        return np.asarray(offsets, np.int64)

    @property
    def fork(self) -> dict[str, Any] | None:
        """The parent and fork tick of a what-if fork, None for a recorded run."""
        return self.header.get("fork")

    def record(self, tick: int) -> TickRecord:
        """The journal's frame of ``tick``."""
        if not self.first_tick < tick <= self.last_tick:
            raise UserError(f"tick {tick} is not in this run (ticks {self.first_tick + 1}.."
                            f"{self.last_tick})")
        off = int(self._offsets[tick - self.first_tick - 1])
        n, _kind, _crc = _HEADER.unpack(self._map[off:off + _HEADER.size])
        rec = decode_tick(self._map[off + _HEADER.size:off + _HEADER.size + n], self.kinds)
        if rec.tick != tick:
            raise JournalError(f"{self.run.path}: frame at offset {off} is tick {rec.tick}, "
                               f"expected {tick}")
        return rec

    def records(self, after: int | None = None, upto: int | None = None
                ) -> Iterator[TickRecord]:
        """Tick records with ``after`` < tick <= ``upto`` (default: the whole run)."""
        lo = self.first_tick if after is None else max(after, self.first_tick)
        hi = self.last_tick if upto is None else min(upto, self.last_tick)
        for t in range(lo + 1, hi + 1):
            yield self.record(t)

    # -- the world ---------------------------------------------------------------------
    def fresh_world(self) -> World:
        """The world at the run's first tick, never asking a resolver."""
        world = self.run.build_world()
        world.resolver = NullResolver()
        return world

    @property
    def vocab(self) -> Vocabulary:
        if self._vocab is None:
            self._vocab = Vocabulary.of(self._world or self.world_at(self.first_tick))
        return self._vocab

    def world_at(self, tick: int, progress: Any = None) -> World:
        """The world at ``tick``: nearest snapshot, then the journal's ticks, each checked.

        The returned world is this replay's own; the next seek moves it.
        """
        if not self.first_tick <= tick <= self.last_tick:
            raise UserError(f"tick {tick} is not in this run (ticks {self.first_tick}.."
                            f"{self.last_tick})")
        snap = max((s for s in self.run.snapshots if s[0] <= tick), default=None,
                   key=lambda s: s[0])
        snap_tick = snap[0] if snap is not None else self.first_tick
        entry = max((e for e in self.index_entries() if e.tick <= tick), default=None,
                    key=lambda e: e.tick)
        base = max(snap_tick, entry.tick if entry is not None else self.first_tick)
        world = self._world
        if world is None or world.tick > tick or world.tick < base:
            if world is None:
                world = self._world = self.fresh_world()
            if entry is not None and entry.tick > snap_tick:
                try:
                    index.restore(self, world, entry)
                except index.StaleIndex as e:
                    self._refuse_index(str(e))
                    self._world = None
                    return self.world_at(tick, progress)
            elif snap is not None and snap_tick > self.first_tick:
                self._restore(world, snap)
            elif world.tick != self.first_tick:
                world = self._world = self.fresh_world()
        start = world.tick
        for rec in self.records(world.tick, tick):
            out = step(world, rec)
            if out.digest != rec.digest:
                raise Diverged(f"{self.dir}: the replay diverges from the journal; run "
                               f"'norn replay verify {self.dir}' for details",
                               seed=world.seed, tick=rec.tick)
            if progress is not None:
                progress(rec.tick - start, tick - start)
        return world

    def index_entries(self) -> list[Any]:
        """The seek index's entries (``norn replay index``), checked against the journal;
        empty without one, or when it was refused (the reason is in ``warnings``)."""
        if self._entries is None:
            self._entries = []
            if self.use_index:
                entries, reason = index.load(self)
                if reason is not None:
                    self._refuse_index(reason)
                else:
                    self._entries = entries
        return self._entries

    def _refuse_index(self, reason: str) -> None:
        self._entries = []
        self.warnings.append(f"seek index not used: {reason}; rebuild it with "
                             f"'norn replay index {self.dir}'")

    def _restore(self, world: World, snap: tuple[int, str, int]) -> None:
        arrays, meta = snapshot_io.read_snapshot(self.dir / snap[1])
        state.restore(world, arrays, meta)
        world.last_actions = None
        if world.digest.combine(world.tick, state_only=True) != snap[2]:
            raise JournalError(f"{self.dir / snap[1]}: snapshot does not match its digest")

    def at(self, tick: int, progress: Any = None) -> WorldAt:
        """The world at ``tick`` as readable tables."""
        world = self.world_at(tick, progress)
        if self._vocab is None:
            self._vocab = Vocabulary.of(world)
        return WorldAt(world, self._vocab)

    # -- what happened -------------------------------------------------------------------
    def events(self, kind: str | None = None, start: int | None = None,
               stop: int | None = None, *, raw: bool = False) -> pa.Table:
        """Input events of ticks ``start``..``stop`` (inclusive): one row per event with
        its tick, source, batch seq and kind; ``kind`` selects one kind's columns."""
        if kind is not None and kind not in self.kinds.ids:
            raise UserError(f"unknown event kind {kind!r}; this run's: {list(self.kinds.names)}")
        parts: dict[str, list[pa.Table]] = {}
        vocab = None if raw else self.vocab
        for rec in self.records(None if start is None else start - 1, stop):
            for b in rec.inputs:
                if kind is not None and b.kind != kind:
                    continue
                n = len(b)
                lead = {"tick": np.full(n, rec.tick, np.int64),
                        "source": np.full(n, b.source, object),
                        "seq": np.full(n, b.seq, np.int64),
                        "kind": np.full(n, b.kind, object)}
                parts.setdefault(b.kind, []).append(
                    columns_table(b.columns, vocab, b.kind, lead=lead))
        return concat(list(parts.values()), _EVENT_LEAD)

    def actions(self, kind: str | None = None, start: int | None = None,
                stop: int | None = None, progress: Any = None) -> pa.Table:
        """World actions (recomputed by a verified replay, cached as Parquet)."""
        from norn.replays.derive import derived_table

        return _between(derived_table(self, "actions", progress=progress), kind, start, stop)

    def decisions(self, start: int | None = None, stop: int | None = None,
                  progress: Any = None) -> pa.Table:
        """Applied decisions: tick, request, kind, actor, option, source and tier."""
        from norn.replays.derive import derived_table

        return _between(derived_table(self, "decisions", progress=progress), None, start, stop)

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        self._map.close()
        self._file.close()
        self._world = None

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_EVENT_LEAD = pa.schema([("tick", pa.int64()), ("source", pa.string()), ("seq", pa.int64()),
                         ("kind", pa.string())])


def concat(groups: list[list[pa.Table]], lead: pa.Schema) -> pa.Table:
    """Tables of several kinds as one (columns a kind lacks are null), ordered by tick."""
    tables = [pa.concat_tables(g) for g in groups if g]
    if not tables:
        return lead.empty_table()
    out = pa.concat_tables(tables, promote_options="permissive")
    return out.sort_by([("tick", "ascending")]) if len(tables) > 1 else out


def _between(t: pa.Table, kind: str | None, start: int | None, stop: int | None) -> pa.Table:
    import pyarrow.compute as pc

    mask = None
    for cond in (
        pc.equal(t["kind"], kind) if kind is not None else None,
        pc.greater_equal(t["tick"], start) if start is not None else None,
        pc.less_equal(t["tick"], stop) if stop is not None else None,
    ):
        if cond is not None:
            mask = cond if mask is None else pc.and_(mask, cond)
    return t if mask is None else t.filter(mask)


def open_replay(path: str | Path) -> Replay:
    """Open a run directory for reading (``norn.replays.open``)."""
    return Replay(path)
