"""World actions: what the engine asks the game server to do, as typed column batches.

Each action carries an ``action_id`` that is a pure function of (tick, position in the
tick's canonical action order), so a retransmitted action is recognisably the same one and
the game server can execute it idempotently. Systems append actions through
``ActionBuffer.add``; the emit phase numbers them and hands one ``ActionBatch`` per tick to
the sinks. Bounds (prices in band, rewards under cap, coordinates in map) are checked by the
world's validators before an action is accepted into the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from norn.engine import limits
from norn.engine.errors import BoundError
from norn.engine.events import TEXT_DTYPE

_NPC = ("npc_id", np.int64)
_MAP = ("map_id", np.int16)

#: kind -> ordered (field, dtype) pairs, excluding ``action_id`` which every kind has.
ACTION_SCHEMAS: dict[str, tuple[tuple[str, np.dtype], ...]] = {
    "spawn_npc": (_NPC, _MAP, ("x", np.int16), ("y", np.int16), ("sprite", np.int16)),
    "despawn_npc": (_NPC,),
    "move_npc": (_NPC, _MAP, ("x", np.int16), ("y", np.int16)),
    "npc_say": (_NPC, ("text", TEXT_DTYPE)),
    # map_id -1 broadcasts to every map.
    "broadcast": (_MAP, ("text", TEXT_DTYPE)),
    "set_price": (("market_id", np.int32), _MAP, ("item_id", np.int32), ("price_zeny", np.int32)),
    "set_weather": (_MAP, ("weather", np.int16), ("on", np.uint8)),
    "set_hazard": (_MAP, ("hazard_type", np.int16), ("intensity", np.float32), ("on", np.uint8)),
    "start_quest": (("char_id", np.uint32), ("quest_id", np.int32)),
    "give_reward": (
        ("char_id", np.uint32),
        ("item_id", np.int32),
        ("amount", np.int32),
        ("zeny", np.int32),
    ),
}
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


class ActionSink(Protocol):
    """Receives each tick's actions. Must not block the tick (queue and return).

    A sink that talks to the outside world also has ``committed(tick)``, called once the
    tick's journal frame is durable, and sends nothing of a tick before that: an action
    from a tick that a crash could undo (and a resumed run might redo differently) never
    leaves the engine.
    """

    def emit(self, batch: ActionBatch) -> None: ...


class ActionBuffer:
    """Per-tick, bounded accumulation of actions from systems, in system order."""

    def __init__(self, actions_max: int = limits.actions_per_tick_max) -> None:
        self.actions_max = actions_max
        self._parts: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in ACTION_KINDS}
        self._count = 0

    def add(self, kind: str, **columns: np.ndarray) -> None:
        """Append a batch of actions of one kind (columns of equal length, schema dtypes)."""
        schema = ACTION_SCHEMAS[kind]
        missing = {n for n, _ in schema} - set(columns)
        extra = set(columns) - {n for n, _ in schema}
        if missing or extra:
            raise ValueError(f"action {kind}: missing {sorted(missing)}, unknown {sorted(extra)}")
        n = {len(np.atleast_1d(v)) for v in columns.values()}
        if len(n) != 1:
            raise ValueError(f"action {kind}: columns have different lengths {sorted(n)}")
        count = n.pop()
        if count == 0:
            return
        if self._count + count > self.actions_max:
            raise BoundError("actions_per_tick_max", self.actions_max, self._count + count, kind)
        self._parts[kind].append(
            {
                name: np.ascontiguousarray(np.atleast_1d(columns[name]), dtype=dt)
                for name, dt in schema
            }
        )
        self._count += count

    def __len__(self) -> int:
        return self._count

    def take(self, tick: int) -> ActionBatch:
        """Number this tick's actions in canonical order (kind order, then insertion) and reset."""
        batch = ActionBatch(tick=tick)
        seq = 0
        for kind in ACTION_KINDS:
            parts = self._parts[kind]
            if not parts:
                continue
            cols = {
                name: np.concatenate([p[name] for p in parts]) for name, _ in ACTION_SCHEMAS[kind]
            }
            n = len(next(iter(cols.values())))
            cols["action_id"] = action_id(tick, np.arange(seq, seq + n, dtype=np.int64))
            seq += n
            batch.kinds[kind] = cols
            parts.clear()
        self._count = 0
        return batch
