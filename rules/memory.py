"""NPC memory of characters: a resource the memory kind provides (``actors/memory``).

The memory kind keeps a sparse ``affinity`` table, one row per (NPC, character) pair that
met (``npc`` handle, ``char_id``, ``value`` in [-1, 1], counts of talks, trades and quests),
and a bounded ring of remembered events per NPC in its ``memory`` table (``npc``,
``char_id``, ``kind``: ``MEMORY_KINDS``, ``tick``, ``delta``). Both are keyed by ``key =
npc slot << 32 | char_id``; a row whose NPC is gone is forgotten at the kind's next tick.
Kinds that let an NPC's past with a character colour what it says and does (dialogue,
behaviour, quest offers) read them through ``Memory`` and declare the table reads
(``affinity.*``, ``memory.*``), never by importing the kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.rules.keyed import find
from norn.rules.tables import lookup

#: What an NPC remembers of a meeting (the ``memory.kind`` codes, in this order).
MEMORY_KINDS = ("talk", "trade", "quest")
TALK, TRADE, QUEST = range(len(MEMORY_KINDS))


def pair_keys(npcs: np.ndarray, chars: np.ndarray) -> np.ndarray:
    """``npc slot << 32 | char_id`` of each (NPC handle, character) pair."""
    return ((np.asarray(npcs, np.int64) & 0xFFFFFFFF) << 32) | np.asarray(chars, np.int64)


@dataclass(frozen=True)
class Memory:
    """Where NPC memory lives: ``affinity_table`` and ``memory_table`` (the ring)."""

    affinity_table: str
    memory_table: str

    def rows(self, world, npcs: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """Affinity row of each (NPC handle, character), -1 where they never met (or the
        row belongs to an earlier NPC in that slot)."""
        t = world.tables[self.affinity_table]
        npcs = np.asarray(npcs, np.int64)
        r = find(t, "key", pair_keys(npcs, chars))
        same = t["npc"][np.maximum(r, 0)] == npcs
        return np.where((r >= 0) & same, r, -1)

    def affinity(self, world, npcs: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """How each NPC feels about each character, in [-1, 1] (float64); 0 if never met."""
        r = self.rows(world, npcs, chars)
        v = world.tables[self.affinity_table]["value"][np.maximum(r, 0)].astype(np.float64)
        return np.where(r >= 0, v, 0.0)

    def recalled(self, world, npcs: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """How many remembered events each NPC holds about each character (int64)."""
        t = world.tables[self.memory_table]
        npcs = np.asarray(npcs, np.int64)
        live = t.live_slots()
        live = live[t["key"][live] >= 0]
        if not len(live) or not len(npcs):
            return np.zeros(len(npcs), np.int64)
        keys, count = np.unique(t["key"][live], return_counts=True)
        at = lookup(keys, pair_keys(npcs, chars))
        return np.where(at >= 0, count[np.maximum(at, 0)], 0).astype(np.int64)
