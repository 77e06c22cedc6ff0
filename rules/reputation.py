"""Reputation of players with factions: a resource the faction kind provides.

The faction kind keeps sparse (faction, char_id) rows in its ``reputation`` table; kinds
that weigh reputation (NPCs answering a player) read that table through this resource
(and declare the table read), never by importing the faction kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.rules.tables import lookup


@dataclass(frozen=True)
class Reputation:
    """Where reputations live and their bound: ``table`` (faction, char_id, value)."""

    table: str
    value_max: int

    def of(self, world, factions: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """Reputation of each (faction, char_id) pair; 0 where the pair has none yet."""
        t = world.tables[self.table]
        live = t.live_slots()
        keys = (t["faction"][live].astype(np.int64) << 32) | t["char_id"][live].astype(np.int64)
        q = (np.asarray(factions, np.int64) << 32) | np.asarray(chars, np.int64)
        at = lookup(keys, q)
        out = np.zeros(len(q), dtype=np.int64)
        out[at >= 0] = t["value"][live[at[at >= 0]]]
        return out
