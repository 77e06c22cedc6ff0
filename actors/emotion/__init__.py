"""Player emotion: a score vector per character, inferred every tick from behaviour.

The game never says how a player feels; their behaviour does. Every character seen in an
event gets a row in the ``emotion`` table (at most ``rules.emotion.characters_max``; when
full, the longest-unseen offline character's row goes to the newcomer, else it is refused
and counted). Each tick, for every online character (offline ones are frozen):

**Features.** Seven behaviour rates per hour, each an exponential moving average over
about ``window_ticks`` ticks of the tick's events: with ``a = 1 / window_ticks`` and ``H``
the ticks in an hour (3,600,000 / ``tick_ms``), ``rate <- rate + a * (n * H - rate)``
where ``n`` is the character's events of that kind this tick:

========== ===================================================================
feature    events counted
========== ===================================================================
deaths     ``player_death``
kills      ``mob_kill``
map_changes ``map_change``
trades     ``trade`` (both partners), ``vending_purchase`` (buyer and seller), ``npc_shop``
talks      ``npc_talk``
level_ups  ``level_up``
quests     ``quest_done``
========== ===================================================================

Each is normalised by the designer's reference rate, ``f_x = rate_x / x_per_hour_ref``,
and idle time (ticks since any event but a logout) by ``idle_ref_ticks``, ``f_idle``.

**Scores.** With ``s(z) = z / (1 + z)`` (0 at 0, 1/2 at the reference, toward 1), each in
[0, 1):

- ``engaged    = s(f_kills + f_quests + f_level_ups) * (1 - s(f_idle))``: progressing
- ``frustrated = s(f_deaths) * (1 - s(f_level_ups + f_quests))``: dying without progress
- ``bored      = s(f_idle) * (1 - s(f_kills + f_map_changes + f_trades + f_talks))``
- ``curious    = s(f_map_changes + f_talks) * (1 - s(f_deaths))``: exploring, asking
- ``social     = s(f_trades + f_talks)``

**Difficulty.** ``difficulty = 1 - ease_max * frustrated * max(0, 1 - level /
low_level_ref)``: the share of a problem's normal difficulty to offer this character, so
a frustrated low-level player is offered easier problems (1 = normal).

**Per map** (``emotion_map``, every tick): online characters, their mean scores, how
many feel mostly each emotion (``dominant``: the highest score, or *calm* when none
reaches ``calm_below``; ``len(DIMENSIONS) + 1`` counts, calm last), and ``pace = clip(1
+ mean bored - mean frustrated, 0, 2)``: above 1 the players there want something to
happen sooner, below 1 they need a breather.

Provides ``emotion`` (a ``rules.emotion.Emotion``): NPCs read it to react (a frustrated
player is offered help), quests for difficulty, world events for pacing; the run summary
reports it per map. Resources read: ``geography``.
"""

from __future__ import annotations

import numba
import numpy as np

from norn.actors.emotion.schema import EmotionRules
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.emotion import (
    BORED,
    DIMENSIONS,
    F_DEATH,
    F_KILL,
    F_LEVEL,
    F_MAP,
    F_QUEST,
    F_TALK,
    F_TRADE,
    FEATURES,
    FRUSTRATED,
    Emotion,
    infer,
)
from norn.rules.grouping import last_index, unique_inverse
from norn.rules.keyed import claim

__all__ = ["STAT_COLUMNS", "EmotionPlugin"]

PRESENT, LEFT = -1, -2  # event codes that count no feature: activity, and a logout
STAT_COLUMNS = ("refused", "evicted", "updates")
#: Event kinds that place a character on a map, in the order they are applied.
PLACING = (("login", "map_id"), ("map_change", "to_map_id"), ("player_move", "map_id"),
           ("mob_kill", "map_id"), ("player_death", "map_id"), ("npc_shop", "map_id"))


@numba.njit(cache=True, nogil=True)
def _tally(rows, inv, code, counts, seen, active, online, tick):  # pragma: no cover
    """Per event, in one pass (issue 16): its feature counted for its character's row,
    seen and (unless it is a logout) active and online now; a logout in the tick wins."""
    n = len(inv)
    for i in range(n):
        r = rows[inv[i]]
        if r < 0:
            continue
        if r >= counts.shape[0]:
            raise IndexError("an emotion row past the table's high-water mark")
        c = code[i]
        if c >= 0:
            counts[r, c] += 1
        seen[r] = tick
        if c != LEFT:
            active[r] = tick
            online[r] = 1
    for i in range(n):
        r = rows[inv[i]]
        if r >= 0 and code[i] == LEFT:
            online[r] = 0


def _last(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each key."""
    return last_index(keys)


class EmotionPlugin:
    name = "emotion"
    resources = ("geography",)

    def __init__(self, rules: EmotionRules) -> None:
        self.rules = rules
        r = rules
        self.ref = np.array(
            [r.deaths_per_hour_ref, r.kills_per_hour_ref, r.map_changes_per_hour_ref,
             r.trades_per_hour_ref, r.talks_per_hour_ref, r.level_ups_per_hour_ref,
             r.quests_per_hour_ref], np.float64,
        )

    def build(self, world: World) -> None:
        self.geo = world.resource("geography")
        er = self.rules
        D, F = len(DIMENSIONS), len(FEATURES)
        world.consumes("login", "logout", "map_change", "player_move", "mob_kill",
                       "player_death", "level_up", "npc_talk", "quest_done", "trade",
                       "vending_purchase", "npc_shop")
        world.add_table(
            "emotion",
            [
                Column("char_id", np.uint32),
                Column("online", np.uint8),
                Column("map", np.int16, (), -1),
                Column("level", np.int16, (), 1),
                Column("seen", np.int32),
                Column("active", np.int32),
                Column("rates", np.float32, (F,)),
                Column("score", np.float32, (D,)),
                Column("difficulty", np.float32, (), 1.0),
            ],
            er.characters_max,
        )
        n = self.geo.n_maps
        em = world.add_table(
            "emotion_map",
            [Column("online", np.int32), Column("mean", np.float32, (D,)),
             Column("dominant", np.int32, (D + 1,)), Column("pace", np.float32, (), 1.0)],
            n,
        )
        em.spawn(n)
        stats = world.add_table("emotion_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.provide("emotion", Emotion("emotion", "emotion_map"))
        self.per_hour = 3_600_000.0 / world.tick_ms
        world.add_system(
            "emotion.infer",
            "ingest",
            self.infer,
            reads=("events",),
            writes=("emotion.*", "emotion_map.*", "emotion_stats.*"),
        )

    def _events(self, world: World) -> tuple[np.ndarray, np.ndarray]:
        """(character, feature code) of every event of the tick, kind by kind."""
        ev = world.events
        parts = [
            (ev["login"]["char_id"], PRESENT),
            (ev["map_change"]["char_id"], F_MAP),
            (ev["player_move"]["char_id"], PRESENT),
            (ev["mob_kill"]["char_id"], F_KILL),
            (ev["player_death"]["char_id"], F_DEATH),
            (ev["level_up"]["char_id"], F_LEVEL),
            (ev["npc_talk"]["char_id"], F_TALK),
            (ev["quest_done"]["char_id"], F_QUEST),
            (ev["trade"]["char_id"], F_TRADE),
            (ev["trade"]["partner_char_id"], F_TRADE),
            (ev["vending_purchase"]["char_id"], F_TRADE),
            (ev["vending_purchase"]["seller_char_id"], F_TRADE),
            (ev["npc_shop"]["char_id"], F_TRADE),
            (ev["logout"]["char_id"], LEFT),
        ]
        chars = np.concatenate([np.asarray(c, np.int64) for c, _ in parts])
        code = np.concatenate([np.full(len(c), k, np.int8) for c, k in parts])
        return chars, code

    # -- ingest: features, scores, the per-map picture -----------------------------------
    def infer(self, world: World) -> None:
        er = self.rules
        t = world.tables["emotion"]
        stats = world.tables["emotion_stats"]
        chars, code = self._events(world)
        tick = world.tick
        counts = None
        if len(chars):
            uk, inv = unique_inverse(chars)

            def evictable() -> np.ndarray:  # offline, longest unseen, then slot
                live = t.live_slots()
                off = live[t["online"][live] == 0]
                return off[np.lexsort((off, t["seen"][off]))]

            cl = claim(t, "char_id", uk, evictable)
            stats["refused"][0] += cl.refused
            stats["evicted"][0] += cl.evicted
            counts = np.zeros((t.hwm, len(FEATURES)), np.int32)
            _tally(cl.rows, inv, code, counts, t["seen"], t["active"], t["online"], tick)
            self._place(world, t, cl.rows, uk)
        if not t.hwm:
            return
        if counts is None:
            counts = np.zeros((t.hwm, len(FEATURES)), np.int32)
        live = t.alive[: t.hwm].copy()
        live[t.reserved_slots()] = True  # rows claimed this tick count from now
        infer(t.hwm, live, t["online"], counts, t["active"], t["level"], tick,
              1.0 / er.window_ticks, self.per_hour, self.ref, float(er.idle_ref_ticks),
              er.ease_max, float(er.low_level_ref), t["rates"], t["score"], t["difficulty"])
        stats["updates"][0] += 1
        self._maps(world, t, live)

    def _place(self, world: World, t, rows: np.ndarray, keys: np.ndarray) -> None:
        """Map (last placing event of the tick) and level of each character in events."""
        ev = world.events

        def rows_of(chars: np.ndarray) -> np.ndarray:
            at = np.searchsorted(keys, np.asarray(chars, np.int64))
            return rows[np.minimum(at, len(keys) - 1)]  # every char is among keys

        n_maps = self.geo.n_maps
        for kind, col in PLACING:  # six kinds, in order: the later wins
            e = ev[kind]
            if not len(e["char_id"]):
                continue
            i = _last(e["char_id"])
            r = rows_of(e["char_id"][i])
            m = e[col][i].astype(np.int64)
            ok = (r >= 0) & (m >= 0) & (m < n_maps)
            t["map"][r[ok]] = m[ok]
        for kind in ("login", "level_up"):
            e = ev[kind]
            if len(e["char_id"]):
                i = _last(e["char_id"])
                r = rows_of(e["char_id"][i])
                t["level"][r[r >= 0]] = e["base_level"][i][r >= 0]

    def _maps(self, world: World, t, live: np.ndarray) -> None:
        """Online characters per map, their mean scores, what most of them feel, and the
        map's pace."""
        n = self.geo.n_maps
        D = len(DIMENSIONS)
        em = world.tables["emotion_map"]
        on = np.flatnonzero(live & (t["online"][: t.hwm] == 1) & (t["map"][: t.hwm] >= 0))
        m = t["map"][on].astype(np.int64)
        count = np.bincount(m, minlength=n)[:n]
        mean = np.zeros((n, len(DIMENSIONS)), np.float64)
        for d in range(D):  # five scores
            mean[:, d] = np.bincount(m, weights=t["score"][on, d], minlength=n)[:n]
        mean /= np.maximum(count, 1)[:, None]
        em["online"][:n] = count
        em["mean"][:n] = mean
        score = t["score"][on]
        top = np.argmax(score, axis=1)
        top[score.max(axis=1, initial=0.0) < self.rules.calm_below] = D  # calm
        em["dominant"][:n] = np.bincount(m * (D + 1) + top, minlength=n * (D + 1))[
            : n * (D + 1)].reshape(n, D + 1)
        em["pace"][:n] = np.clip(1.0 + mean[:, BORED] - mean[:, FRUSTRATED], 0.0, 2.0)
