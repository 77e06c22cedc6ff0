"""Karma of characters: a resource the karma kind provides (``actors/karma``).

The karma kind keeps one row per character that did something, in its ``karma`` table
(``char_id``, ``value`` in [-value_max, value_max], ``price_pct``: the shop price change the
game server has been told). Kinds that weigh a character's karma (NPCs answering a player,
markets pricing a player's purchase, quest offers) read that table through this resource
and declare the table read (``karma.*``), never by importing the karma kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.rules.keyed import find


@dataclass(frozen=True)
class Karma:
    """Where karma lives (``table``, keyed by ``char_id``) and its bound ``value_max``."""

    table: str
    value_max: float

    def rows(self, world, chars: np.ndarray) -> np.ndarray:
        """Row of each character, -1 where it has none yet."""
        return find(world.tables[self.table], "char_id", np.asarray(chars, np.int64))

    def of(self, world, chars: np.ndarray) -> np.ndarray:
        """Karma of each character (float64); 0 where it has none."""
        r = self.rows(world, chars)
        v = world.tables[self.table]["value"][np.maximum(r, 0)].astype(np.float64)
        return np.where(r >= 0, v, 0.0)

    def norm(self, world, chars: np.ndarray) -> np.ndarray:
        """Karma divided by its bound: in [-1, 1], 0 where a character has none."""
        return self.of(world, chars) / float(self.value_max)

    def price_pct(self, world, chars: np.ndarray) -> np.ndarray:
        """The shop price change (percent, + dearer) the game server applies to each
        character (the last one announced with ``set_karma``); 0 where none was."""
        r = self.rows(world, chars)
        p = world.tables[self.table]["price_pct"][np.maximum(r, 0)].astype(np.int64)
        return np.where(r >= 0, p, 0)
