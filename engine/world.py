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
from norn.engine.actions import ActionBuffer, ActionSink
from norn.engine.decisions import DecisionBook, DeterministicResolver, Resolver
from norn.engine.digest import Digest, Region
from norn.engine.events import EVENT_KINDS, empty_columns
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.messages import Channel
from norn.engine.schedule import Schedule, System
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
        self.last_actions = None
        self.decisions = DecisionBook()
        self.resolver: Resolver = resolver or DeterministicResolver()
        self.sinks: list[ActionSink] = []
        self.plugins: list[str] = []
        self.resources: dict[str, Any] = {}  # configuration shared between plugins; not state
        self.clock: Callable[[], float] = _zero_clock  # injected by the runner, for metrics only
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
    ) -> None:
        self.schedule.add(
            System(name, phase, fn, reads, writes, after, plugin or name.split(".")[0])
        )

    def build(self) -> None:
        """Validate the schedule; after this the world can step."""
        self._known |= {"events", "actions", "decisions"}
        self.schedule.build(self._known)
        self._built = True

    # -- digest bookkeeping -----------------------------------------------------------
    def committed(self, tick: int) -> None:
        """Tell the sinks that ``tick`` is durable: its actions may now leave the engine."""
        for sink in self.sinks:
            done = getattr(sink, "committed", None)
            if done is not None:
                done(tick)

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
