"""All of a world's state in one object, and the plugin interface that fills it.

State is: the tables, the messages pending delivery, the pending decision requests, the
seed and the tick. Everything else on a ``World`` is configuration, this tick's scratch
(events, inboxes, actions) or metrics, and is rebuilt, not snapshotted. ``synctest``
exists to catch a plugin that keeps state anywhere else.

An actor kind is a plugin: an object with a ``name`` and a ``build(world)`` that adds its
tables, channels and systems (STYLE habit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from norn.engine import limits
from norn.engine.actions import ActionBatch, ActionBuffer
from norn.engine.commit import CommitListener, Committed
from norn.engine.decisions import DecisionBook, DeterministicResolver, Resolver
from norn.engine.digest import Digest, Region
from norn.engine.events import EVENT_KINDS, empty_columns
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.messages import Channel
from norn.engine.schedule import Schedule, System
from norn.engine.systems import engine_systems
from norn.engine.table import Column, Table


class Plugin(Protocol):
    name: str

    def build(self, world: World) -> None: ...


def _zero_clock() -> float:
    return 0.0


class World:
    def __init__(
        self,
        seed: int,
        *,
        chunk_rows: int = 1024,
        tick_ms: int = 100,
        resolver: Resolver | None = None,
        actions_max: int = limits.actions_per_tick_max,
        input_batches_max: int = limits.input_batches_max,
        input_events_max: int = limits.input_events_max,
    ) -> None:
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        self.seed = seed
        self.tick = 0
        self.tick_ms = tick_ms
        self.chunk_rows = chunk_rows
        self.tables: dict[str, Table] = {}
        self.channels: dict[str, Channel] = {}
        self.schedule = Schedule()
        self.digest = Digest()
        self.inputs = InputQueue(input_batches_max, input_events_max)
        self.events: dict[str, dict[str, np.ndarray]] = {k: empty_columns(k) for k in EVENT_KINDS}
        self.ingested: list[InputBatch] = []
        self.actions = ActionBuffer(actions_max)
        self.last_actions: ActionBatch | None = None
        self.decisions = DecisionBook()
        self.resolver: Resolver = resolver or DeterministicResolver()
        self.subscribers: list[CommitListener] = []  # told once a tick is durable
        self.plugins: list[str] = []
        self.resources: dict[str, Any] = {}  # configuration shared between plugins; not state
        self.clock: Callable[[], float] = _zero_clock  # injected by the runner, for metrics only
        self.lockstep = False  # set by the runner: apply waits for due decision results
        self.lockstep_timeout_s = 0.0
        self.step_context = None  # the tick being stepped (engine.tick.StepContext)
        self._chunk_masks: dict[str, np.ndarray] = {}
        self.phase_seconds: dict[str, float] = {}
        self.system_seconds: dict[str, float] = {}
        self._known: set[str] = set()
        self._built = False
        self.digest.add(
            Region("decisions", "pending", lambda: self.decisions.pending, chunk_rows, False)
        )
        self.digest.add(Region("actions", "emitted", self._actions_bytes, chunk_rows, False))

    # -- building ---------------------------------------------------------------------
    def add_plugin(self, plugin: Plugin) -> None:
        if self._built:
            raise RuntimeError("plugins must be added before build()")
        plugin.build(self)
        self.plugins.append(plugin.name)

    def add_table(self, name: str, columns: list[Column], capacity: int) -> Table:
        if name in self.tables:
            raise ValueError(f"table {name!r} defined twice")
        table = Table(name, columns, capacity, self.chunk_rows)
        self.tables[name] = table
        for col in table.columns:
            self.digest.add(
                Region(name, col, (lambda t=table, c=col: t.columns[c]), self.chunk_rows, True)
            )
            self._known.add(f"{name}.{col}")
        return table

    def add_channel(
        self,
        name: str,
        src_table: str,
        dst_table: str,
        payload: tuple[tuple[str, Any], ...],
        capacity: int,
    ) -> Channel:
        if name in self.channels:
            raise ValueError(f"channel {name!r} defined twice")
        for t in (src_table, dst_table):
            if t not in self.tables:
                raise ValueError(f"channel {name!r}: unknown table {t!r}")
        dst = self.tables[dst_table]
        ch = Channel(
            name,
            src_table,
            dst_table,
            payload,
            capacity,
            dst.capacity,
            dst.columns["alive"],
            dst.columns["generation"],
        )
        self.channels[name] = ch
        for f, _ in ch.fields:
            self.digest.add(
                Region(
                    f"msg:{name}",
                    f,
                    (lambda c=ch, f=f: c.out[f][: c.count]),
                    self.chunk_rows,
                    False,
                )
            )
        self._known |= {f"out:{name}", f"in:{name}"}
        return ch

    def declare(self, *names: str) -> None:
        """Declare non-table state names a system may read or write (e.g. ``actions``)."""
        self._known |= set(names)

    def add_system(
        self,
        name: str,
        phase: str,
        fn: Callable[[World], None],
        *,
        reads: tuple[str, ...] = (),
        writes: tuple[str, ...] = (),
        after: tuple[str, ...] = (),
        plugin: str = "",
        marks_own_writes: bool = False,
    ) -> None:
        """Register a system; ``marks_own_writes``: it marks its rows (``mark_rows``,
        ``chunk_mask``), so its declared columns are not marked whole for the digest."""
        self.schedule.add(
            System(name, phase, fn, reads, writes, after, plugin or name.split(".")[0],
                   marks_own_writes=marks_own_writes)
        )

    def order(self, first: str, then: str) -> None:
        """Run system ``then`` after ``first`` (same phase): a model ordering its plugins."""
        self.schedule.order(first, then)

    def build(self) -> None:
        """Add the engine's own systems and validate the schedule; then the world can step."""
        self._known |= {"events", "actions", "decisions"}
        for system in engine_systems(self):
            self.schedule.add(system)
        self.schedule.build(self._known)
        self._built = True

    # -- the commit notice ------------------------------------------------------------
    def subscribe(self, listener: CommitListener) -> None:
        """Call ``listener(Committed)`` after every durable tick (acks, action release)."""
        self.subscribers.append(listener)

    def committed(self, notice: Committed) -> None:
        """Publish ``notice``: the runner calls this once the tick's frame is durable."""
        for listener in self.subscribers:
            listener(notice)

    # -- digest bookkeeping -----------------------------------------------------------
    def after_system(self, system: System) -> None:
        """Mark what ``system`` wrote: its declared columns whole, or the rows it marked."""
        if system.marks_own_writes:
            self._apply_chunk_masks(system.writes)
        else:
            self.mark_written(system.writes)
            for mask in self._chunk_masks.values():  # filled needlessly: whole columns marked
                mask[:] = False

    def mark_rows(
        self, table: str, lo: int, hi: int, columns: tuple[str, ...] | None = None
    ) -> None:
        """Rows [lo, hi) of ``table`` were written this tick (a system marking its own).

        ``columns`` None: the running system's declared writes of ``table`` (applied after
        it returns); else exactly these columns, at once.
        """
        t = self.tables[table]
        if not 0 <= lo <= hi <= t.capacity:
            raise ValueError(f"mark_rows({table!r}, {lo}, {hi}): outside [0, {t.capacity}]")
        if columns is None:
            mask = self.chunk_mask(table)
            mask[lo // self.chunk_rows : -(-hi // self.chunk_rows)] = True
            return
        for c in columns:
            if c not in t.columns:
                raise ValueError(f"mark_rows: table {table!r} has no column {c!r}")
            self.digest.mark(f"{table}.{c}", lo, hi)

    def chunk_mask(self, table: str) -> np.ndarray:
        """One bool per digest chunk of ``table`` (``chunk_rows`` rows each) for a kernel to
        set where it wrote (``mask[row // chunk_rows] = True``); after the system returns,
        the set chunks of every column it declared as written are rehashed at commit."""
        mask = self._chunk_masks.get(table)
        if mask is None:
            t = self.tables[table]
            mask = np.zeros(-(-t.capacity // self.chunk_rows), dtype=np.bool_)
            self._chunk_masks[table] = mask
        return mask

    def _apply_chunk_masks(self, writes: tuple[str, ...]) -> None:
        for w in writes:
            table, _, col = w.partition(".")
            mask = self._chunk_masks.get(table)
            if mask is None or table not in self.tables:
                continue
            cols = self.tables[table].columns if col == "*" else (col,)
            for c in cols:
                region = self.digest.region(f"{table}.{c}")
                region.dirty[: len(mask)] |= mask
        for mask in self._chunk_masks.values():
            mask[:] = False

    def mark_written(self, writes: tuple[str, ...]) -> None:
        for w in writes:
            table, _, col = w.partition(".")
            t = self.tables.get(table)
            if t is None:
                continue
            cols = t.columns if col == "*" else (col,)
            for c in cols:
                self.digest.mark(f"{table}.{c}", 0, t.hwm)

    def mark_spawn_rows(self) -> None:
        for t in self.tables.values():
            for lo, hi in t.dirty_rows:
                for c in t.columns:
                    self.digest.mark(f"{t.name}.{c}", lo, hi)
            t.dirty_rows.clear()

    def _actions_bytes(self) -> np.ndarray:
        b = self.last_actions
        if b is None or not b.kinds:
            return np.zeros(0, dtype=np.uint8)
        parts = [
            np.ascontiguousarray(c).view(np.uint8).reshape(-1)
            for k in sorted(b.kinds)
            for c in b.kinds[k].values()
        ]
        return np.concatenate(parts)

    # -- convenience for systems -------------------------------------------------------
    def stream_seed(self) -> np.uint64:
        return np.uint64(self.seed)

    def state_summary(self) -> dict[str, int]:
        return {name: t.count for name, t in self.tables.items()}
