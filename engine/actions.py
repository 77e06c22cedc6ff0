"""World actions: what the engine asks the game server to do, as typed column batches.

Each action carries an ``action_id`` that is a pure function of (tick, position in the
tick's emission order: the order systems emitted them, across kinds), so a retransmitted
action is recognisably the same one and the game server can execute it idempotently, and in
the order the world meant (PROTOCOL.md section 8). Systems append actions through
``World.emit`` (checked against the kind's declaration and the model's own checks, then
``ActionBuffer.add``); the emit phase numbers them into one ``ActionBatch`` per tick, which
leaves the engine with the tick's ``Committed`` notice (``engine/commit.py``).

The ``ActionLog`` keeps what recent action ids were about, as state, so the game server's
``action_result`` events can have consequences (``World.keep_actions``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np

from norn.engine import limits, rathena
from norn.engine.errors import BoundError, DefinitionError
from norn.engine.kinds import Kinds, Schema

#: kind -> ordered (field, dtype) pairs of protocol v1, excluding ``action_id`` which every
#: kind has. Derived from ``engine/rathena.py``; a world's own registry is ``World.kinds``.
ACTION_SCHEMAS: dict[str, Schema] = {k.name: k.schema for k in rathena.ACTION_KINDS}
ACTION_KINDS: tuple[str, ...] = tuple(ACTION_SCHEMAS)
ACTION_KIND_IDS: dict[str, int] = {k: i for i, k in enumerate(ACTION_KINDS)}

#: Bits of an action id below the tick: position in the tick's action order.
ACTION_SEQ_BITS = 24


def action_id(tick: int, seq: np.ndarray | int) -> np.ndarray | int:
    """Deterministic, idempotent id: the tick in the high bits, the order within it below."""
    return (np.int64(tick) << ACTION_SEQ_BITS) | np.asarray(seq, dtype=np.int64)


@dataclass
class ActionBatch:
    """One tick's world actions: kind -> columns (each kind's columns include action_id)."""

    tick: int
    kinds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(cols["action_id"]) for cols in self.kinds.values())


class ActionBuffer:
    """Per-tick, bounded accumulation of actions from systems, in system order.

    A world's buffer (``kinds`` given) accepts only kinds some plugin declared it emits
    (``World.emits``); a bare buffer (load generators, tests) accepts protocol v1.
    ``on_take`` sees each numbered batch with the ``log_prior`` values its systems gave
    (the action log keeps them); it runs inside ``take``, so replays see it too.
    """

    def __init__(
        self, actions_max: int = limits.actions_per_tick_max, kinds: Kinds | None = None
    ) -> None:
        self.actions_max = actions_max
        self.kinds = kinds if kinds is not None else Kinds.protocol_v1()
        self.strict = kinds is not None
        self._parts: dict[str, list[dict[str, np.ndarray]]] = {}
        self._priors: dict[str, list[np.ndarray | None]] = {}
        self._starts: dict[str, list[int]] = {}  # each part's position in emission order
        self._count = 0
        self.on_take: Callable[[ActionBatch, dict[str, np.ndarray]], None] | None = None

    def add(self, kind: str, /, log_prior: np.ndarray | None = None, **columns: np.ndarray) -> None:
        """Append a batch of actions of one kind (columns of equal length, schema dtypes).

        ``log_prior``: per action, what its target had before (e.g. the price a
        ``set_price`` replaces), kept by the action log so a refused action can be undone.
        """
        schema = self.kinds.action_schemas.get(kind)
        if schema is None:
            raise DefinitionError(
                f"unknown action kind {kind!r}; known: {sorted(self.kinds.actions)}"
            )
        if self.strict and kind not in self.kinds.emitters:
            raise DefinitionError(
                f"action kind {kind!r}: no plugin declared that it emits it (world.emits)"
            )
        missing = {n for n, _ in schema} - set(columns)
        extra = set(columns) - {n for n, _ in schema}
        if missing or extra:
            raise ValueError(f"action {kind}: missing {sorted(missing)}, unknown {sorted(extra)}")
        n = {len(np.atleast_1d(v)) for v in columns.values()}
        if log_prior is not None:
            n.add(len(np.atleast_1d(log_prior)))
        if len(n) != 1:
            raise ValueError(f"action {kind}: columns have different lengths {sorted(n)}")
        count = n.pop()
        if count == 0:
            return
        if self._count + count > self.actions_max:
            raise BoundError("actions_per_tick_max", self.actions_max, self._count + count, kind)
        self._parts.setdefault(kind, []).append(
            {
                name: np.ascontiguousarray(np.atleast_1d(columns[name]), dtype=dt)
                for name, dt in schema
            }
        )
        self._priors.setdefault(kind, []).append(
            None if log_prior is None else np.atleast_1d(np.asarray(log_prior, np.int64))
        )
        self._starts.setdefault(kind, []).append(self._count)
        self._count += count

    def __len__(self) -> int:
        return self._count

    def take(self, tick: int) -> ActionBatch:
        """Number this tick's actions in emission order (the order systems emitted them,
        across kinds) and reset. A map server executes them in that order (PROTOCOL.md
        section 8), so an NPC that says a line and then dies in one tick is still there
        when it speaks. The batch holds them by kind (the world's kind order), each kind's
        rows in emission order, so each kind's ids ascend."""
        batch = ActionBatch(tick=tick)
        priors: dict[str, np.ndarray] = {}
        for kind, schema in self.kinds.action_schemas.items():
            parts = self._parts.get(kind)
            if not parts:
                continue
            cols = {name: np.concatenate([p[name] for p in parts]) for name, _ in schema}
            seq = np.concatenate([
                np.arange(at, at + len(p[schema[0][0]]), dtype=np.int64)
                for p, at in zip(parts, self._starts[kind], strict=True)
            ])
            cols["action_id"] = action_id(tick, seq)
            batch.kinds[kind] = cols
            priors[kind] = np.concatenate([
                np.full(len(p[schema[0][0]]), -1, np.int64) if q is None else q
                for p, q in zip(parts, self._priors[kind], strict=True)
            ])
            parts.clear()
            self._priors[kind].clear()
            self._starts[kind].clear()
        self._count = 0
        if self.on_take is not None:
            self.on_take(batch, priors)
        return batch


# -- the action log: what an action id was about, as state ----------------------------------
#: Row status in the action log.
SENT, DONE, FAILED = 0, 1, 2
#: An empty row's action id: above every real id, so a block stays sorted.
EMPTY_ID = np.int64(2**63 - 1)
LOG_COLUMNS = ("action_id", "kind", "key", "value", "prior", "status")
LOG_STATS = ("tracked", "untracked", "results_done", "results_failed", "results_unknown")


@numba.njit(cache=True, nogil=True)
def _find_rows(ids_col, per, ticks, ids, out):
    """Row of each action id in its tick's block (binary search), -1 where not kept."""
    for i in range(len(ids)):
        a = ids[i]
        b = (a >> ACTION_SEQ_BITS) % ticks
        lo = b * per
        hi = lo + per
        while lo < hi:
            mid = (lo + hi) >> 1
            if ids_col[mid] < a:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo if lo < b * per + per and ids_col[lo] == a else -1


@dataclass(frozen=True)
class FailedActions:
    """Tracked actions that failed in this tick's results: one row per action."""

    action_id: np.ndarray
    kind: np.ndarray  # int16: the world's action kind id (``Kinds.action_id``)
    key: np.ndarray
    value: np.ndarray
    prior: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.action_id)


class ActionLog:
    """The last ``ticks`` ticks of tracked actions, kept as a table so replays and snapshots
    know what an ``action_result`` was about.

    A ring of ``ticks`` blocks of ``per_tick_max`` rows; tick ``t`` owns block ``t % ticks``
    and rewrites it whole when it numbers its actions (more tracked actions than a block
    holds are counted in ``untracked`` and have no consequences). Each row keeps the
    action's id, kind, the kind's ``log`` fields (key, value) and the ``log_prior`` its
    system gave. The ``action_log.match`` system (ingest) marks rows done or failed from
    the tick's results; a DONE from any server wins over failures (an action routed to
    several map servers is failed ``not_here`` by those it does not concern).
    """

    TABLE = "action_log"
    STATS = "action_log_stats"

    def __init__(self, ticks: int, per_tick_max: int) -> None:
        if not 1 <= ticks <= limits.action_log_ticks_max:
            raise BoundError("action_log_ticks_max", limits.action_log_ticks_max, ticks,
                             "action log ticks")
        if per_tick_max < 1 or ticks * per_tick_max > limits.action_log_rows_max:
            raise BoundError("action_log_rows_max", limits.action_log_rows_max,
                             ticks * per_tick_max, f"{ticks} ticks x {per_tick_max} per tick")
        self.ticks = ticks
        self.per_tick_max = per_tick_max
        self.tracked: list[str] = []
        self._kind_ids: dict[str, int] = {}
        self._world = None

    def track(self, *kinds: str) -> None:
        """Keep these action kinds (each needs declared ``log`` fields)."""
        if self._world is not None:
            raise DefinitionError("action log: track kinds before the world is built")
        for k in kinds:
            if k not in self.tracked:
                self.tracked.append(k)

    # -- build ------------------------------------------------------------------------------
    def install(self, world) -> None:
        """Add the tables and the match system (``World.build`` calls this)."""
        from norn.engine.table import Column

        kinds = world.kinds
        for k in self.tracked:
            if k not in kinds.actions or not kinds.actions[k].log:
                raise DefinitionError(
                    f"action log: kind {k!r} is unknown or declares no log fields"
                )
        self._kind_ids = {k: kinds.action_id(k) for k in self.tracked}
        n = self.ticks * self.per_tick_max
        t = world.add_table(
            self.TABLE,
            [Column("action_id", np.int64, (), int(EMPTY_ID)), Column("kind", np.int16, (), -1),
             Column("key", np.int64), Column("value", np.int64),
             Column("prior", np.int64, (), -1), Column("status", np.uint8)],
            n,
        )
        t.spawn(n, action_id=np.full(n, EMPTY_ID, np.int64), kind=np.full(n, -1, np.int16),
                prior=np.full(n, -1, np.int64))
        world.add_table(self.STATS, [Column(c, np.int64) for c in LOG_STATS], 1).spawn(1)
        world.add_system(
            "action_log.match", "ingest", self.match, reads=("events",),
            writes=(f"{self.TABLE}.status", f"{self.STATS}.*"), plugin="action_log",
        )
        world.actions.on_take = self.record
        self._world = world

    # -- emit: keep what was numbered -----------------------------------------------------
    def record(self, batch: ActionBatch, priors: dict[str, np.ndarray]) -> None:
        """Rewrite this tick's block with its tracked actions (lowest ids first)."""
        world = self._world
        parts = [(k, batch.kinds[k], priors[k]) for k in self.tracked if k in batch.kinds]
        kinds = world.kinds.actions
        ids = [c["action_id"] for _, c, _ in parts]
        order_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        order = np.argsort(order_ids, kind="stable")  # kinds interleave in emission order
        n = len(order_ids)
        m = min(n, self.per_tick_max)

        def logged(i: int) -> np.ndarray:
            cols = [c[kinds[k].log[i]].astype(np.int64) if len(kinds[k].log) > i
                    else np.zeros(len(c["action_id"]), np.int64) for k, c, _ in parts]
            return np.concatenate(cols)[order][:m] if cols else np.empty(0, np.int64)

        t = world.tables[self.TABLE]
        lo = (batch.tick % self.ticks) * self.per_tick_max
        hi = lo + self.per_tick_max
        kind_col = np.concatenate([np.full(len(c["action_id"]), self._kind_ids[k], np.int16)
                                   for k, c, _ in parts]) if parts else np.empty(0, np.int16)
        prior = np.concatenate([p for _, _, p in parts]) if parts else np.empty(0, np.int64)
        blk = {name: t[name][lo:hi] for name in LOG_COLUMNS}
        blk["action_id"][:] = EMPTY_ID
        blk["kind"][:] = -1
        blk["key"][:] = 0
        blk["value"][:] = 0
        blk["prior"][:] = -1
        blk["status"][:] = SENT
        blk["action_id"][:m] = order_ids[order][:m]
        blk["kind"][:m] = kind_col[order][:m]
        blk["key"][:m] = logged(0)
        blk["value"][:m] = logged(1)
        blk["prior"][:m] = prior[order][:m]
        stats = world.tables[self.STATS]
        stats["tracked"][0] += m
        stats["untracked"][0] += n - m
        for name in LOG_COLUMNS:
            world.digest.mark(f"{self.TABLE}.{name}", lo, hi)
        for name in ("tracked", "untracked"):
            world.digest.mark(f"{self.STATS}.{name}", 0, 1)

    # -- ingest: results ------------------------------------------------------------------
    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Log row of each action id, -1 where the log does not hold it."""
        out = np.empty(len(ids), np.int64)
        _find_rows(self._world.tables[self.TABLE]["action_id"], self.per_tick_max, self.ticks,
                   np.ascontiguousarray(ids, np.int64), out)
        return out

    def match(self, world) -> None:
        res = world.events["action_result"]
        ids = res["action_id"]
        if not len(ids):
            return
        rows = self.rows(ids)
        known = rows >= 0
        t = world.tables[self.TABLE]
        stats = world.tables[self.STATS]
        done = known & (res["status"] == 0)
        failed = known & (res["status"] != 0)
        stats["results_done"][0] += int(done.sum())
        stats["results_failed"][0] += int(failed.sum())
        stats["results_unknown"][0] += int((~known).sum())
        status = t["status"]
        status[rows[failed]] = np.where(status[rows[failed]] == DONE, DONE, FAILED)
        status[rows[done]] = DONE

    def failed(self, world, kinds: tuple[str, ...], reasons: tuple[int, ...] | None = None
               ) -> FailedActions:
        """This tick's results that failed an action of ``kinds`` (for ``reasons``; None: any).

        One row per action (the first such result), none for an action some server has
        done.
        """
        res = world.events["action_result"]
        empty = np.empty(0, np.int64)
        if not len(res["action_id"]):
            return FailedActions(empty, empty.astype(np.int16), empty, empty, empty,
                                 empty.astype(np.int16))
        rows = self.rows(res["action_id"])
        t = world.tables[self.TABLE]
        ids = [self._kind_ids[k] for k in kinds if k in self._kind_ids]
        sel = (rows >= 0) & (res["status"] != 0)
        if reasons is not None:
            sel &= np.isin(res["reason"], reasons)
        r = rows[sel]
        mine = np.isin(t["kind"][r], ids) & (t["status"][r] == FAILED)
        uniq, first = np.unique(r[mine], return_index=True)
        reason = res["reason"][sel][mine]
        return FailedActions(
            t["action_id"][uniq].copy(), t["kind"][uniq].copy(), t["key"][uniq].copy(),
            t["value"][uniq].copy(), t["prior"][uniq].copy(), reason[first].copy(),
        )
