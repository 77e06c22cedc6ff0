"""Player emotion: the score vector a character's behaviour implies, and a resource to read it.

The emotion kind (``actors/emotion``, whose docstring gives the formulas) keeps one row per
character in its ``emotion`` table: ``score`` (``len(DIMENSIONS)`` float32 in [0, 1), in
``DIMENSIONS`` order), ``difficulty`` (the share of a problem's normal difficulty to offer
the character, in [1 - ease_max, 1]: a frustrated low-level player gets easier ones) and
the map it is on; and one row per map in ``emotion_map``: ``online`` characters, their
``mean`` scores, ``dominant`` (how many feel mostly each emotion, calm last: ``MOODS``)
and ``pace`` (1 + mean bored - mean frustrated, in [0, 2]: above 1 the players there want
something to happen sooner, below 1 later). Kinds that adapt to players (NPC reactions,
quest difficulty, event pacing) read them through ``Emotion`` and declare the reads
(``emotion.*``, ``emotion_map.*``), never by importing the kind.

``infer`` is the kind's per-tick kernel (formulas in ``actors/emotion``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from norn.rules.keyed import find

#: The emotions scored, in the order of ``score`` and ``mean`` columns.
DIMENSIONS = ("engaged", "frustrated", "bored", "curious", "social")
#: The ``dominant`` counts per map: each emotion, then characters feeling none (calm).
MOODS = (*DIMENSIONS, "calm")
ENGAGED, FRUSTRATED, BORED, CURIOUS, SOCIAL = range(len(DIMENSIONS))
#: Behaviour features, each kept as a rate per hour (``rates`` column, this order).
FEATURES = ("deaths", "kills", "map_changes", "trades", "talks", "level_ups", "quests")
F_DEATH, F_KILL, F_MAP, F_TRADE, F_TALK, F_LEVEL, F_QUEST = range(len(FEATURES))


@dataclass(frozen=True)
class Emotion:
    """Where emotion lives: ``table`` (per character, keyed by ``char_id``) and
    ``map_table`` (per map id)."""

    table: str
    map_table: str

    def rows(self, world, chars: np.ndarray) -> np.ndarray:
        """Row of each character, -1 where it has none yet."""
        return find(world.tables[self.table], "char_id", np.asarray(chars, np.int64))

    def of(self, world, chars: np.ndarray) -> np.ndarray:
        """Scores (n, len(DIMENSIONS)) float32 in ``DIMENSIONS`` order; 0 where unknown."""
        r = self.rows(world, chars)
        s = world.tables[self.table]["score"][np.maximum(r, 0)].copy()
        s[r < 0] = 0.0
        return s

    def difficulty(self, world, chars: np.ndarray) -> np.ndarray:
        """Share of a problem's normal difficulty to offer each character; 1 if unknown."""
        r = self.rows(world, chars)
        d = world.tables[self.table]["difficulty"][np.maximum(r, 0)]
        return np.where(r >= 0, d, np.float32(1.0)).astype(np.float32)

    def pace(self, world, maps: np.ndarray) -> np.ndarray:
        """Event pacing per map (1 neutral, above 1 sooner, below later)."""
        return world.tables[self.map_table]["pace"][np.asarray(maps, np.int64)]


@numba.njit(cache=True, nogil=True)
def _sat(z):
    """z / (1 + z): 0 at 0, 1/2 at 1, toward 1 as z grows (no transcendental)."""
    return z / (1.0 + z)


@numba.njit(cache=True, nogil=True)
def infer(hwm, live, online, counts, active, level, tick, alpha, per_hour, ref, idle_ref,
          ease_max, low_level_ref, rates, score, difficulty):
    """One tick of every online character's rates, scores and difficulty (rows < hwm).

    ``counts`` (hwm, len(FEATURES)): the tick's events per row. Offline rows are frozen.
    Each row is independent, so the result is the same in any order or thread count.
    """
    for r in range(hwm):
        if not live[r] or not online[r]:
            continue
        f = np.empty(len(FEATURES), np.float64)
        for j in range(len(FEATURES)):
            x = np.float64(rates[r, j])
            x += alpha * (counts[r, j] * per_hour - x)
            rates[r, j] = x
            f[j] = x / ref[j]
        idle = _sat(max(tick - active[r], 0) / idle_ref)
        score[r, ENGAGED] = _sat(f[F_KILL] + f[F_QUEST] + f[F_LEVEL]) * (1.0 - idle)
        score[r, FRUSTRATED] = _sat(f[F_DEATH]) * (1.0 - _sat(f[F_LEVEL] + f[F_QUEST]))
        score[r, BORED] = idle * (1.0 - _sat(f[F_KILL] + f[F_MAP] + f[F_TRADE] + f[F_TALK]))
        score[r, CURIOUS] = _sat(f[F_MAP] + f[F_TALK]) * (1.0 - _sat(f[F_DEATH]))
        score[r, SOCIAL] = _sat(f[F_TRADE] + f[F_TALK])
        low = max(1.0 - level[r] / low_level_ref, 0.0)
        difficulty[r] = 1.0 - ease_max * score[r, FRUSTRATED] * low
