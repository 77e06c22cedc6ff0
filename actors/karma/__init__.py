"""Karma: a per-character standing earned by deeds, fading over time, read by the world.

Every character that does something gets a row in the ``karma`` table (at most
``rules.karma.characters_max``; a full table gives the row of an offline character whose
karma is closest to 0, then the longest unseen, to the newcomer; with none offline the
newcomer is refused and counted). In the ingest phase, the tick's events move karma,
summed per character in event order:

==================== ===============================================================
event                karma change
==================== ===============================================================
``mob_kill``         ``kill_karma * (1 + kill_danger_bonus * danger)``, ``danger`` the
                     kill's map's hazard danger now (``hazard_map.danger``): clearing a
                     map in trouble counts more
``player_death``     ``death_karma`` (a designer sets it below 0: recklessness)
``quest_done``       ``quest_karma``
``trade``            ``trade_karma`` to both partners
``vending_purchase`` buyer ``vend_karma``; seller ``vend_karma`` when the unit price
                     (``price_zeny``, rAthena's vending price is per item) is at most
                     ``fair_price_ratio`` times the item's base price (or the item is not
                     in the catalogue), else ``gouge_karma`` (a designer sets it below 0)
==================== ===============================================================

then karma is clamped to ``[-karma_max, karma_max]``; every ``decay_every_ticks`` ticks it
is multiplied by ``1 - decay_per_tick * decay_every_ticks`` (so it fades toward 0 at about
``decay_per_tick`` a tick).

Karma sets a character's NPC shop prices: ``price_pct = -karma / karma_max *
price_pct_max`` percent, rounded to a multiple of ``price_pct_step`` (good karma buys
cheaper and sells dearer, bad karma the reverse). The game server learns karma and price
change through the ``set_karma`` action (declared here; rAthena: ``pc_setglobalreg`` of
``NORN_KARMA`` and ``NORN_PRICE_PCT``, read by scripts and by the shop price hook
``pc_modifybuyvalue`` / ``pc_modifysellvalue``), sent to online characters when the price
change differs from the one the server has or karma moved by ``announce_step``, at most
``announce_per_tick_max`` a tick, least recently announced first. The markets charge what
the server was told (``price_pct`` column), so the world's books match the game's.

Provides ``karma`` (a ``rules.karma.Karma`` over the table) for NPCs (greetings, refusals,
quest offers), markets (prices), NPC memory (affinity) and quests. Resources read:
``items`` (base prices for fair vending).
"""

from __future__ import annotations

import numba
import numpy as np

from norn.actors.karma.schema import KarmaRules, karma_bound_max, price_pct_bound_max
from norn.engine.kinds import ActionKind, int_field
from norn.engine.rathena import CHAR
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.grouping import unique_inverse
from norn.rules.karma import Karma
from norn.rules.keyed import claim

__all__ = ["SET_KARMA", "STAT_COLUMNS", "KarmaPlugin", "price_pct_of"]

SET_KARMA = ActionKind(
    "set_karma",
    (
        CHAR,
        int_field("karma", np.int32, -karma_bound_max, karma_bound_max,
                  doc="the character's karma, rounded"),
        int_field("price_pct", np.int16, -price_pct_bound_max, price_pct_bound_max,
                  doc="NPC shop price change for this character in percent: + buys dearer "
                      "and sells cheaper, - the reverse"),
    ),
    "a character's karma and its NPC shop price change (rAthena: pc_setglobalreg(sd, "
    "add_str(\"NORN_KARMA\"), karma) and NORN_PRICE_PCT likewise, read by scripts; the shop "
    "hook in pc_modifybuyvalue / pc_modifysellvalue applies the percent)",
)

# deed codes (the order of the lifetime count columns)
KILL, DEATH, QUEST, TRADE, VEND, GOUGE, PRESENT, LEFT = range(8)
COUNT_COLUMNS = ("kills", "deaths", "quests", "trades", "vends", "gouges")
STAT_COLUMNS = (*COUNT_COLUMNS, "refused", "evicted", "announced", "decays")
INT32_MAX = 2**31 - 1


@numba.njit(cache=True, nogil=True)
def _tally(inv, delta, code, n_keys, n_counted):  # pragma: no cover
    """Per character, in one pass over the deeds (issue 16): the karma change (summed in
    deed order, as ``np.bincount`` sums), the deeds of each counted code, whether it did
    anything but leave, and whether it left."""
    total = np.zeros(n_keys, np.float64)
    per_code = np.zeros((n_counted, n_keys), np.int64)
    active = np.zeros(n_keys, np.bool_)
    left = np.zeros(n_keys, np.bool_)
    for i in range(len(inv)):
        k = inv[i]
        total[k] += delta[i]
        c = code[i]
        if c == LEFT:
            left[k] = True
        else:
            active[k] = True
            if c < n_counted:
                per_code[c, k] += 1
    return total, per_code, active, left


def price_pct_of(value: np.ndarray, karma_max: float, pct_max: int, step: int) -> np.ndarray:
    """The shop price change (percent, int64) of karma ``value``: ``-value / karma_max *
    pct_max`` rounded to a multiple of ``step`` (half to even), within +-``pct_max``."""
    raw = -np.asarray(value, np.float64) / karma_max * pct_max
    top = (pct_max // step) * step
    return np.clip(np.rint(raw / step).astype(np.int64) * step, -top, top)


class KarmaPlugin:
    name = "karma"
    resources = ("items",)

    def __init__(self, rules: KarmaRules) -> None:
        self.rules = rules

    def build(self, world: World) -> None:
        self.items = world.resource("items")
        kr = self.rules
        world.consumes("login", "logout", "mob_kill", "player_death", "quest_done", "trade",
                       "vending_purchase")
        world.emits(SET_KARMA)
        world.add_table(
            "karma",
            [
                Column("char_id", np.uint32),
                Column("value", np.float32),
                Column("online", np.uint8),
                Column("seen", np.int32),
                *(Column(c, np.int32) for c in COUNT_COLUMNS),
                Column("price_pct", np.int16),  # what the game server was told
                Column("sent", np.float32),  # the karma it was told
                Column("announced", np.int32, (), -1),  # tick of that announcement
            ],
            kr.characters_max,
        )
        stats = world.add_table("karma_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.provide("karma", Karma("karma", kr.karma_max))
        world.add_system(
            "karma.deeds",
            "ingest",
            self.deeds,
            reads=("events", "hazard_map.danger"),
            writes=("karma.*", "karma_stats.*", "actions"),
        )

    # -- ingest: deeds, decay, announcements ------------------------------------------------
    def deeds(self, world: World) -> None:
        kr = self.rules
        t = world.tables["karma"]
        stats = world.tables["karma_stats"]
        chars, delta, code = self._deeds(world)
        if len(chars):
            uk, inv = unique_inverse(chars)

            def evictable() -> np.ndarray:  # offline, karma nearest 0, longest unseen, slot
                live = t.live_slots()
                off = live[t["online"][live] == 0]
                return off[np.lexsort((off, t["seen"][off], np.abs(t["value"][off])))]

            cl = claim(t, "char_id", uk, evictable)
            stats["refused"][0] += cl.refused
            stats["evicted"][0] += cl.evicted
            ok = cl.rows >= 0
            rows = cl.rows[ok]
            total, per_code, active, left = _tally(inv, delta, code, len(uk),
                                                   len(COUNT_COLUMNS))
            total = total[ok]
            v = t["value"][rows].astype(np.float64) + total
            t["value"][rows] = np.clip(v, -kr.karma_max, kr.karma_max).astype(np.float32)
            for j, col in enumerate(COUNT_COLUMNS):  # six lifetime counters
                n = per_code[j][ok]
                stats[col][0] += int(n.sum())
                t[col][rows] = np.minimum(t[col][rows].astype(np.int64) + n, INT32_MAX)
            t["seen"][rows] = world.tick
            active, left = active[ok], left[ok]
            t["online"][rows[active]] = 1
            t["online"][rows[left]] = 0  # a logout in the tick wins
        if world.tick % kr.decay_every_ticks == 0 and t.hwm:
            factor = np.float32(1.0 - kr.decay_per_tick * kr.decay_every_ticks)
            t["value"][: t.hwm] *= max(factor, np.float32(0.0))
            stats["decays"][0] += 1
        self._announce(world)

    def _deeds(self, world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (character, karma change, deed code) of the tick, in event order by kind."""
        kr = self.rules
        ev = world.events
        chars: list[np.ndarray] = []
        delta: list[np.ndarray] = []
        code: list[np.ndarray] = []

        def add(c: np.ndarray, d: np.ndarray | float, k: int) -> None:
            c = np.asarray(c, np.int64)
            chars.append(c)
            delta.append(np.broadcast_to(np.asarray(d, np.float64), c.shape))
            code.append(np.full(len(c), k, np.int8))

        kill = ev["mob_kill"]
        if len(kill["char_id"]):
            danger_map = world.tables["hazard_map"]["danger"]
            m = kill["map_id"].astype(np.int64)
            ok = (m >= 0) & (m < len(danger_map))
            danger = np.where(ok, danger_map[np.where(ok, m, 0)], 0.0).astype(np.float64)
            add(kill["char_id"], kr.kill_karma * (1.0 + kr.kill_danger_bonus * danger), KILL)
        add(ev["player_death"]["char_id"], kr.death_karma, DEATH)
        add(ev["quest_done"]["char_id"], kr.quest_karma, QUEST)
        tr = ev["trade"]
        add(tr["char_id"], kr.trade_karma, TRADE)
        add(tr["partner_char_id"], kr.trade_karma, TRADE)
        vp = ev["vending_purchase"]
        add(vp["char_id"], kr.vend_karma, VEND)
        if len(vp["char_id"]):
            idx = self.items.index(vp["item_id"])
            base = self.items.price[np.maximum(idx, 0)].astype(np.float64)
            fair = (idx < 0) | (vp["price_zeny"].astype(np.float64) <= kr.fair_price_ratio * base)
            sellers = vp["seller_char_id"]
            add(sellers[fair], kr.vend_karma, VEND)
            add(sellers[~fair], kr.gouge_karma, GOUGE)
        add(ev["login"]["char_id"], 0.0, PRESENT)
        add(ev["logout"]["char_id"], 0.0, LEFT)
        return np.concatenate(chars), np.concatenate(delta), np.concatenate(code)

    def _announce(self, world: World) -> None:
        """``set_karma`` to online characters whose price change or karma moved."""
        kr = self.rules
        cap = kr.announce_per_tick_max
        t = world.tables["karma"]
        if not cap or not t.hwm:
            return
        live = t.live_slots()
        v = t["value"][live]
        pct = price_pct_of(v, kr.karma_max, kr.price_pct_max, kr.price_pct_step)
        need = (t["online"][live] == 1) & (
            (pct != t["price_pct"][live])
            | (np.abs(v.astype(np.float64) - t["sent"][live]) >= kr.announce_step)
        )
        if not need.any():
            return
        cand, pct = live[need], pct[need]
        order = np.lexsort((cand, t["announced"][cand]))[:cap]  # least recently told first
        s, pct = cand[order], pct[order]
        world.emit(
            "set_karma",
            char_id=t["char_id"][s],
            karma=np.rint(t["value"][s]).astype(np.int64),
            price_pct=pct,
        )
        t["price_pct"][s] = pct
        t["sent"][s] = t["value"][s]
        t["announced"][s] = world.tick
        world.tables["karma_stats"]["announced"][0] += len(s)
