"""A deterministic stand-in for rAthena: simulated players' events, tick by tick.

Until a bridge serves real map servers, ``norn run`` offers these batches to the input
queue before each tick, so they are journaled like real events and replays never call
the generator. Every event is a pure function of (seed, tick, player): sessions are
periodic windows with a per-player phase, the map of a session half and the waypoints a
player walks between are draws keyed by their index, never by what happened before. So
``source(t)`` can be asked for any tick in any order and always answers the same.

Players differ: each has a skill (the clumsiest die twice as often as ``death_chance``,
the most skilled never), a vendor's greed (the unit price it asks, up to 0.7 +
``vend_markup_max`` times the item's base price) and ``talk_favourites`` NPCs it keeps
talking to, all drawn once per player; a share ``afk_share`` of session halves is spent
idle (online, doing nothing). Trades and vending purchases pair a player with another.

The living world hears from them too: players off towns dig where they stand
(``dig_chance``) and hunt the boss their map would have (``mvp_chance``; a kill where no
boss stands is a stray one); the day turns over every ``day_ticks`` (``daily_reset``) and
the War of Emperium runs for ``woe_ticks`` from ``woe_at`` in every ``woe_every_ticks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from norn.actors.bosses import MVP_KILL, WAR, boss_mob
from norn.actors.midgard.schema import Scenario
from norn.actors.treasure import DIG
from norn.engine.events import EVENT_SCHEMAS, TEXT_DTYPE
from norn.engine.inputs import InputBatch
from norn.engine.rng import register_stream, uniform, uniform_array, uniform_int_array
from norn.rules.calendar import CALENDAR_KINDS

SOURCE = "gen"
S_SESSION = register_stream("players.session")
S_MAP = register_stream("players.map")
S_WAYPOINT = register_stream("players.waypoint")
S_ACT = register_stream("players.act")
S_TRAIT = register_stream("players.trait")
S_AFK = register_stream("players.afk")

KIND_ORDER = (
    "login",
    "map_change",
    "player_move",
    "mob_kill",
    "npc_talk",
    "npc_shop",
    "quest_done",
    "level_up",
    "player_death",
    "trade",
    "vending_purchase",
    "dig",
    "mvp_kill",
    "daily_reset",
    "woe_start",
    "woe_end",
    "logout",
)
#: Protocol v1's schemas and those of the living world's kinds these players send.
SCHEMAS = {**EVENT_SCHEMAS, **{k.name: k.schema for k in (DIG, MVP_KILL, *CALENDAR_KINDS)}}


@numba.njit(cache=True, nogil=True)
def _keyed_uniform(seed, stream, entities, index, out):
    """uniform(seed, 0, stream, entity, index) with a per-entity index."""
    for i in range(len(entities)):
        out[i] = uniform(seed, 0, stream, entities[i], index[i])


class PlayerEvents:
    """Callable: ``events(tick) -> list[InputBatch]`` for the scenario's simulated players."""

    def __init__(self, sc: Scenario, seed: int) -> None:
        pr = sc.rules.players
        self.pr = pr
        self.seed = int(seed)
        self.n = pr.simulated
        names = [m.name for m in sc.maps]
        self.width = np.array([m.width for m in sc.maps], np.int64)
        self.height = np.array([m.height for m in sc.maps], np.int64)
        self.n_maps = len(names)
        self.towns = np.array(sorted(names.index(t.map) for t in sc.towns), np.int64)
        self.is_town = np.zeros(self.n_maps, bool)
        self.is_town[self.towns] = True
        by_map = {names.index(t.map): [mi.item for mi in t.market] for t in sc.towns}
        self.shop_off = np.zeros(self.n_maps + 1, np.int64)
        self.shop_off[1:] = np.cumsum([len(by_map.get(m, [])) for m in range(self.n_maps)])
        self.shop_items = np.array(
            [i for m in range(self.n_maps) for i in by_map.get(m, [])], np.int64
        )
        self.quests = np.array(sorted(q.id for q in sc.quests), np.int64)
        self.n_npcs = sum(p.count for p in sc.populations)
        self.item_ids = np.array([it.id for it in sc.items], np.int64)
        self.item_price = np.array([it.price_zeny for it in sc.items], np.int64)
        self.mobs = np.array(pr.mob_ids, np.int64)
        self.boss_rules = sc.rules.bosses
        p = np.arange(self.n, dtype=np.int64)
        self.p = p
        s_lo, s_hi = pr.session_ticks.min, pr.session_ticks.max
        o_lo, o_hi = pr.offline_ticks.min, pr.offline_ticks.max
        if self.n:
            self.session = s_lo + uniform_int_array(seed, 0, S_SESSION, p, s_hi - s_lo + 1, 0)
            self.cycle = self.session + o_lo + uniform_int_array(
                seed, 0, S_SESSION, p, o_hi - o_lo + 1, 1
            )
            self.phase = np.floor(
                uniform_array(seed, 0, S_SESSION, p, 2) * self.cycle
            ).astype(np.int64)
            self.skill = uniform_array(seed, 0, S_TRAIT, p, 0)
            self.greed = uniform_array(seed, 0, S_TRAIT, p, 1)
            self.favourites = np.stack(
                [uniform_int_array(seed, 0, S_TRAIT, p, max(self.n_npcs, 1), 10 + j)
                 for j in range(pr.talk_favourites)], axis=1,
            )
        self._seq = {k: i for i, k in enumerate(KIND_ORDER)}

    # -- pure functions of (player, tick) -----------------------------------------------
    def _online(self, tick: int) -> np.ndarray:
        return ((tick + self.phase) % self.cycle) < self.session

    def _half(self, tick: int) -> np.ndarray:
        """A key for each player's current session half."""
        pos = tick + self.phase
        half = ((pos % self.cycle) >= self.session // 2).astype(np.int64)
        return ((pos // self.cycle) * 2 + half) * 3

    def _afk(self, tick: int) -> np.ndarray:
        """Players idling away their current session half."""
        u = np.empty(self.n, np.float64)
        _keyed_uniform(np.uint64(self.seed), S_AFK, self.p, self._half(tick) & 0xFFFFFFFF, u)
        return u < self.pr.afk_share

    def _map(self, tick: int) -> np.ndarray:
        """The map of each player's current session half."""
        key = self._half(tick)
        u = np.empty((3, self.n), np.float64)
        for j in range(3):  # three draws per session half
            _keyed_uniform(np.uint64(self.seed), S_MAP, self.p, (key + j) & 0xFFFFFFFF, u[j])
        town = self.towns[np.floor(u[1] * len(self.towns)).astype(np.int64)]
        any_map = np.floor(u[2] * self.n_maps).astype(np.int64)
        return np.where(u[0] < self.pr.town_bias, town, any_map)

    def _cell(self, tick: int, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position between the current and the next waypoint (a straight walk)."""
        wp = self.pr.waypoint_ticks
        k = tick // wp
        r = tick % wp
        w, h = self.width[maps], self.height[maps]

        def point(j: int) -> tuple[np.ndarray, np.ndarray]:
            u = uniform_array(self.seed, j & 0xFFFFFFFF, S_WAYPOINT, self.p, 0)
            v = uniform_array(self.seed, j & 0xFFFFFFFF, S_WAYPOINT, self.p, 1)
            return np.floor(u * w).astype(np.int64), np.floor(v * h).astype(np.int64)

        ax, ay = point(k)
        bx, by = point(k + 1)
        return ax + (bx - ax) * r // wp, ay + (by - ay) * r // wp

    def _draw(self, tick: int, index: int) -> np.ndarray:
        return uniform_array(self.seed, tick, S_ACT, self.p, index)

    def _trades(self, tick: int, busy: np.ndarray, char: np.ndarray,
                cols: dict[str, dict[str, np.ndarray]]) -> None:
        """Trades (goods for zeny near their base price) and purchases from vendors (at
        the vendor's greedy price) between this player and another one."""
        pr = self.pr
        n_items = len(self.item_ids)
        for kind, index, chance in (("trade", 7, pr.trade_chance),
                                    ("vending_purchase", 8, pr.vend_chance)):
            who = busy & (self._draw(tick, index) < chance)
            if not who.any():
                continue
            ids = self.p[who]
            other = (ids + 1 + uniform_int_array(self.seed, tick, S_ACT, ids, self.n - 1,
                                                 16 + index)) % self.n
            item = uniform_int_array(self.seed, tick, S_ACT, ids, n_items, 18 + index)
            amount = 1 + uniform_int_array(self.seed, tick, S_ACT, ids, pr.shop_qty_max,
                                           20 + index)
            u = uniform_array(self.seed, tick, S_ACT, ids, 22 + index)
            base = self.item_price[item].astype(np.float64)
            if kind == "trade":
                zeny = np.floor(amount * base * (0.8 + 0.4 * u)).astype(np.int64)
                cols[kind] = dict(char_id=char[who], partner_char_id=char[other],
                                  item_id=self.item_ids[item].astype(np.int32),
                                  amount=amount.astype(np.int32),
                                  zeny=np.minimum(zeny, 2**31 - 1).astype(np.int32))
            else:
                unit = np.floor(base * (0.7 + pr.vend_markup_max * self.greed[other] * u))
                cols[kind] = dict(char_id=char[who], seller_char_id=char[other],
                                  item_id=self.item_ids[item].astype(np.int32),
                                  amount=amount.astype(np.int32),
                                  price_zeny=np.minimum(unit, 2**31 - 1).astype(np.int32))

    def _living(self, tick: int, afield: np.ndarray, maps: np.ndarray, char: np.ndarray,
                x16: np.ndarray, y16: np.ndarray, cols: dict[str, dict[str, np.ndarray]]) -> None:
        """Digs where players stand, boss hunts (the surge or war boss of the map, untagged:
        spawn id 0, as a server that does not tag its spawns sends them), the daily reset
        and the War of Emperium's start and end."""
        pr = self.pr
        dig = afield & (self._draw(tick, 30) < pr.dig_chance)
        if dig.any():
            cols["dig"] = dict(char_id=char[dig], map_id=maps[dig].astype(np.int16),
                               x=x16[dig], y=y16[dig])
        hunt = afield & (self._draw(tick, 31) < pr.mvp_chance)
        if hunt.any():
            war = uniform_array(self.seed, tick, S_ACT, self.p[hunt], 32) < 0.5
            mob = boss_mob(self.boss_rules, maps[hunt], np.where(war, WAR, 0))
            cols["mvp_kill"] = dict(char_id=char[hunt], mob_id=mob.astype(np.int32),
                                    spawn_id=np.zeros(int(hunt.sum()), np.int32),
                                    map_id=maps[hunt].astype(np.int16), x=x16[hunt],
                                    y=y16[hunt])
        if tick % pr.day_ticks == 0:
            cols["daily_reset"] = dict(day=np.array([tick // pr.day_ticks], np.int32))
        phase = tick % pr.woe_every_ticks
        if phase == pr.woe_at % pr.woe_every_ticks:
            cols["woe_start"] = dict(edition=np.ones(1, np.uint8))
        if phase == (pr.woe_at + pr.woe_ticks) % pr.woe_every_ticks:
            cols["woe_end"] = dict(edition=np.ones(1, np.uint8))

    # -- the batches of one tick ----------------------------------------------------------
    def __call__(self, tick: int) -> list[InputBatch]:
        if self.n == 0 or tick < 1:
            return []
        pr = self.pr
        on = self._online(tick)
        was = self._online(tick - 1)
        maps = self._map(tick)
        prev_maps = self._map(tick - 1)
        x, y = self._cell(tick, maps)
        char = (pr.char_id_base + self.p).astype(np.uint32)
        acct = (pr.account_id_base + self.p).astype(np.uint32)
        level = (1 + (self.p * 13 + tick // 500) % 99).astype(np.int16)
        m16, x16, y16 = maps.astype(np.int16), x.astype(np.int16), y.astype(np.int16)
        cols: dict[str, dict[str, np.ndarray]] = {}
        li = on & ~was
        if li.any():
            cols["login"] = dict(
                char_id=char[li], account_id=acct[li], map_id=m16[li], x=x16[li], y=y16[li],
                base_level=level[li],
            )
        lo = was & ~on
        if lo.any():
            cols["logout"] = dict(char_id=char[lo], account_id=acct[lo])
        stay = on & was
        busy = stay & ~self._afk(tick)  # online and not idling
        mc = stay & (maps != prev_maps)
        if mc.any():
            cols["map_change"] = dict(
                char_id=char[mc], from_map_id=prev_maps[mc].astype(np.int16),
                to_map_id=m16[mc], x=x16[mc], y=y16[mc],
            )
        mv = busy & ~mc & (self._draw(tick, 0) < pr.move_chance)
        if mv.any():
            cols["player_move"] = dict(char_id=char[mv], map_id=m16[mv], x=x16[mv], y=y16[mv])
        kill = busy & ~self.is_town[maps] & (self._draw(tick, 1) < pr.kill_chance)
        if kill.any():
            n = int(kill.sum())
            pick = uniform_int_array(self.seed, tick, S_ACT, self.p[kill], len(self.mobs), 10)
            mob = self.mobs[pick]
            cols["mob_kill"] = dict(
                char_id=char[kill], mob_id=mob.astype(np.int32),
                instance_id=np.full(n, tick, np.int32), map_id=m16[kill], x=x16[kill],
                y=y16[kill],
            )
        if self.n_npcs:
            talk = busy & (self._draw(tick, 2) < pr.talk_chance)
            if talk.any():
                n = int(talk.sum())
                fav = uniform_int_array(self.seed, tick, S_ACT, self.p[talk], pr.talk_favourites,
                                        11)
                slot = self.favourites[self.p[talk], fav]
                cols["npc_talk"] = dict(
                    char_id=char[talk], npc_id=slot.astype(np.int64),
                    text=np.full(n, b"Hello!", dtype=TEXT_DTYPE),
                )
        n_items = self.shop_off[maps + 1] - self.shop_off[maps]
        shop = busy & (n_items > 0) & (self._draw(tick, 3) < pr.shop_chance)
        if shop.any():
            ids = self.p[shop]
            pick = self.shop_off[maps[shop]] + np.floor(
                uniform_array(self.seed, tick, S_ACT, ids, 12) * n_items[shop]
            ).astype(np.int64)
            amount = 1 + uniform_int_array(self.seed, tick, S_ACT, ids, pr.shop_qty_max, 13)
            sell = uniform_array(self.seed, tick, S_ACT, ids, 14) < pr.shop_sell_share
            cols["npc_shop"] = dict(
                char_id=char[shop], map_id=m16[shop],
                item_id=self.shop_items[pick].astype(np.int32), amount=amount.astype(np.int32),
                is_sell=sell.astype(np.uint8),
            )
        if len(self.quests):
            qd = busy & (self._draw(tick, 4) < pr.quest_chance)
            if qd.any():
                q = uniform_int_array(self.seed, tick, S_ACT, self.p[qd], len(self.quests), 15)
                quest = self.quests[q].astype(np.int32)
                cols["quest_done"] = dict(char_id=char[qd], quest_id=quest)
        lv = busy & (self._draw(tick, 5) < pr.level_chance)
        if lv.any():
            cols["level_up"] = dict(
                char_id=char[lv], base_level=level[lv],
                job_level=np.minimum(level[lv], 50).astype(np.int16),
            )
        clumsy = 2.0 * (1.0 - self.skill)
        dead = busy & ~self.is_town[maps] & (self._draw(tick, 6) < pr.death_chance * clumsy)
        if dead.any():
            cols["player_death"] = dict(char_id=char[dead], map_id=m16[dead], x=x16[dead],
                                        y=y16[dead])
        if self.n > 1:
            self._trades(tick, busy, char, cols)
        self._living(tick, busy & ~self.is_town[maps], maps, char, x16, y16, cols)
        batches = []
        for kind in KIND_ORDER:
            if kind in cols:
                typed = {
                    name: np.ascontiguousarray(cols[kind][name], dtype=dt)
                    for name, dt in SCHEMAS[kind]
                }
                batches.append(
                    InputBatch(SOURCE, tick * len(KIND_ORDER) + self._seq[kind], kind, typed)
                )
        return batches


def make_event_source(data: dict[str, Any], seed: int) -> Callable[[int], list[InputBatch]]:
    """The batches for a tick, deterministic from the scenario, the seed and the tick."""
    from norn.actors.midgard import load

    return PlayerEvents(load(data, "scenario"), seed)
