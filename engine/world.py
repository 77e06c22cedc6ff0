"""All of a world's state in one object, and the plugin interface that fills it.

State is: the tables, the messages pending delivery, the pending decision requests, the
seed and the tick. Everything else on a ``World`` is configuration, this tick's scratch
(events, inboxes, actions) or metrics, and is rebuilt, not snapshotted. ``synctest``
exists to catch a plugin that keeps state anywhere else.

An actor kind is a plugin: an object with a ``name`` and a ``build(world)`` that adds its
tables, channels and systems (STYLE habit 2), declares the event kinds it consumes and the
action kinds it emits (``consumes``, ``emits``; a new kind is declared in the plugin's own
package), and reads what kinds share (geography, catalogues, the ledger) as named
resources: the model ``provide``s them and a plugin lists the ones it reads in its
``resources`` attribute (checked: a missing one names plugin and resource).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from norn.engine import limits
from norn.engine.actions import ActionBatch, ActionBuffer, ActionLog
from norn.engine.commit import CommitListener, Committed
from norn.engine.decisions import DEPLOY, DecisionBook, DeterministicResolver, Resolver
from norn.engine.digest import Digest, Region, inputs_hash
from norn.engine.errors import DefinitionError
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.kinds import (
    ActionKind,
    EventKind,
    InvalidAction,
    Kinds,
    check_action,
    typed_columns,
)
from norn.engine.messages import Channel
from norn.engine.schedule import Schedule, System
from norn.engine.systems import engine_systems
from norn.engine.table import Column, Table


class Plugin(Protocol):
    """An actor kind (or any part of a world). It may also have ``resources``: the names
    of the shared resources it reads (``World.resource``), a tuple of str."""

    name: str

    def build(self, world: World) -> None: ...


#: ``check(cols) -> problem or None``: a model's own check of an action kind's batches.
ActionCheck = Callable[[dict[str, np.ndarray]], "str | None"]


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
        self.kinds = Kinds.protocol_v1()  # rAthena's vocabulary first; plugins append theirs
        self.kinds.add_event(DEPLOY, by="engine")  # the decision tier's flips (journaled)
        self.inputs = InputQueue(
            input_batches_max, input_events_max, schemas=self.kinds.event_schemas
        )
        self.events: dict[str, dict[str, np.ndarray]] = self.kinds.empty_events()
        self.ingested: list[InputBatch] = []
        self.actions = ActionBuffer(actions_max, self.kinds)
        self.action_log: ActionLog | None = None  # kept when the model asks (keep_actions)
        self._action_checks: dict[str, list[tuple[str, ActionCheck]]] = {}
        self.last_actions: ActionBatch | None = None
        self.decisions = DecisionBook()
        self.resolver: Resolver = resolver or DeterministicResolver()
        self.subscribers: list[CommitListener] = []  # told once a tick is durable
        self.plugins: list[str] = []
        self.resources: dict[str, Any] = {}  # configuration shared between plugins; not state
        self.building: str | None = None  # the plugin whose build() runs now
        self._reads: dict[str, tuple[str, ...]] = {}  # plugin -> resources it declared
        self.clock: Callable[[], float] = _zero_clock  # injected by the runner, for metrics only
        self.lockstep = False  # set by the runner: apply waits for due decision results
        self.lockstep_timeout_s = 0.0
        self.step_context = None  # the tick being stepped (engine.tick.StepContext)
        self._chunk_masks: dict[str, np.ndarray] = {}
        self._liveness_writers: dict[str, tuple] = {}  # system name -> tables it may churn
        self.phase_seconds: dict[str, float] = {}
        self.system_seconds: dict[str, float] = {}
        self._known: set[str] = set()
        self._built = False
        self.digest.add(
            Region("decisions", "pending", lambda: self.decisions.pending, chunk_rows, False)
        )
        self.digest.add(Region("actions", "emitted", self._actions_bytes, chunk_rows, False))
        self.digest.add(Region("inputs", "hash", lambda: inputs_hash(self.ingested), chunk_rows,
                               False))

    # -- building ---------------------------------------------------------------------
    def add_plugin(self, plugin: Plugin) -> None:
        if self._built:
            raise DefinitionError("plugins must be added before build()")
        reads = tuple(getattr(plugin, "resources", ()))
        self._reads[plugin.name] = reads
        self.building = plugin.name
        try:
            plugin.build(self)
        finally:
            self.building = None
        self.plugins.append(plugin.name)

    # -- resources: what kinds share, provided by the model, read by declaration -----------
    def provide(self, name: str, obj: Any) -> None:
        """Offer ``obj`` (fixed configuration, never state) to plugins as resource ``name``."""
        if name in self.resources:
            raise DefinitionError(f"resource {name!r} provided twice")
        self.resources[name] = obj

    def resource(self, name: str) -> Any:
        """Resource ``name``; during a plugin's build only one it declared in ``resources``."""
        who = self.building
        if who is not None and name not in self._reads.get(who, ()):
            raise DefinitionError(
                f"plugin {who!r} reads resource {name!r} without declaring it "
                f"(resources = {self._reads.get(who, ())})"
            )
        if name not in self.resources:
            raise DefinitionError(
                f"plugin {who or '?'!r} needs resource {name!r}, which nothing provides "
                f"(provided: {sorted(self.resources)}; a provider must be added first)"
            )
        return self.resources[name]

    # -- kinds: declared once, by the plugins that consume or emit them ---------------------
    def consumes(self, *kinds: str | EventKind) -> None:
        """The building plugin reads these event kinds; an ``EventKind`` declares a new one."""
        self.kinds.consume(self.building or "model", kinds)

    def emits(self, *kinds: str | ActionKind) -> None:
        """The building plugin emits these action kinds; an ``ActionKind`` declares one."""
        self.kinds.emit_by(self.building or "model", kinds)

    def add_action_check(self, kind: str, check: ActionCheck, name: str = "") -> None:
        """A model's own check of ``kind``'s batches, run at emit after the generic ones."""
        if kind not in self.kinds.actions:
            raise DefinitionError(f"check for unknown action kind {kind!r}")
        self._action_checks.setdefault(kind, []).append((name or self.building or "model",
                                                         check))

    def action_problem(self, kind: str, cols: dict[str, np.ndarray]) -> str | None:
        """The first way a typed batch of ``kind`` breaks its bounds or the model's checks.

        Map fields are checked against the resource ``geography``; a world without one
        cannot emit kinds with map fields through ``emit`` (``actions.add`` is unchecked).
        """
        spec = self.kinds.actions[kind]
        geo = self.resources.get("geography")
        if geo is None and any(f.kind == "map" for f in spec.fields):
            raise DefinitionError(
                f"action kind {kind!r} has map fields but the world provides no 'geography' "
                "to check them against"
            )
        problem = check_action(spec, cols, geo)
        if problem is not None:
            return problem
        for _, check in self._action_checks.get(kind, ()):
            problem = check(cols)
            if problem is not None:
                return problem
        return None

    def emit(self, kind: str, /, log_prior: np.ndarray | None = None, **cols: Any) -> None:
        """Check a batch of ``kind`` actions (its declared bounds, the map, the model's own
        checks), then queue it for this tick. A failed check is a bug in the rules."""
        if kind not in self.kinds.actions:
            raise InvalidAction(f"unknown action kind {kind!r}")
        typed = typed_columns(self.kinds.actions[kind], cols)
        if not len(next(iter(typed.values()), ())):
            return
        problem = self.action_problem(kind, typed)
        if problem is not None:
            raise InvalidAction(f"{kind}: {problem}")
        self.actions.add(kind, log_prior=log_prior, **typed)

    def check_actions(self, batch: ActionBatch) -> list[str]:
        """Every rule violation in an emitted batch: the emit checks run again on the far
        side of the boundary (tests), plus ids from this tick only."""
        problems = []
        for kind, cols in batch.kinds.items():
            p = self.action_problem(kind, {k: v for k, v in cols.items() if k != "action_id"})
            if p is not None:
                problems.append(f"tick {batch.tick} {kind}: {p}")
            ids = cols["action_id"]
            if len(ids) and (ids >> 24 != batch.tick).any():
                problems.append(f"tick {batch.tick} {kind}: action id from another tick")
        return problems

    def keep_actions(self, ticks: int, per_tick_max: int) -> ActionLog:
        """Remember ``ticks`` ticks of tracked actions (at most ``per_tick_max`` a tick) as
        state, so ``action_result`` events can be traced to what they were about. Plugins
        pick the kinds (``world.action_log.track``); the tables exist from ``build``."""
        if self.action_log is not None:
            raise DefinitionError("keep_actions called twice")
        self.action_log = ActionLog(ticks, per_tick_max)
        return self.action_log

    def add_table(self, name: str, columns: list[Column], capacity: int) -> Table:
        if name in self.tables:
            raise DefinitionError(f"table {name!r} defined twice")
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
            raise DefinitionError(f"channel {name!r} defined twice")
        for t in (src_table, dst_table):
            if t not in self.tables:
                raise DefinitionError(f"channel {name!r}: unknown table {t!r}")
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
            dst,
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
        self._build_kinds()
        self._known |= {"events", "actions", "decisions"}
        for system in engine_systems(self):
            self.schedule.add(system)
        self.schedule.build(self._known)
        self._built = True

    def _build_kinds(self) -> None:
        """Fix the kinds, check resources and action checks, add the action log."""
        for plugin, names in self._reads.items():
            for name in names:
                if name not in self.resources:
                    raise DefinitionError(
                        f"plugin {plugin!r} declares resource {name!r}, which nothing provides"
                    )
        self.kinds.freeze()
        self.events = self.kinds.empty_events()
        if self.action_log is not None:
            self.action_log.install(self)

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
        """Mark what ``system`` wrote: its declared columns whole, or the rows it marked.

        A system declaring writes to a table's alive or generation column bumps its
        ``churn`` (``Table.all_fresh`` is asked again); the engine's sync bumps it itself
        when it changes them.
        """
        tables = self._liveness_writers.get(system.name)
        if tables is None:
            tables = self._liveness_writers[system.name] = self._liveness_tables(system)
        for t in tables:
            t.churn += 1
        if system.marks_own_writes:
            self._apply_chunk_masks(system.writes)
        else:
            self.mark_written(system.writes)
            for mask in self._chunk_masks.values():  # filled needlessly: whole columns marked
                mask[:] = False

    def _liveness_tables(self, system: System) -> tuple:
        if system.name == "engine.sync_spawns":  # Table.sync bumps churn when it changes them
            return ()
        out = []
        for w in system.writes:
            table, _, col = w.partition(".")
            t = self.tables.get(table)
            if t is not None and col in ("*", "alive", "generation") and t not in out:
                out.append(t)
        return tuple(out)

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
