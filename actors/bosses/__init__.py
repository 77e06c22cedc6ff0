"""Dynamic bosses and MVPs: a boss appears where the world calls for it, and its death
changes the world.

Every ``check_every_ticks`` the world looks for maps that call for a boss: a monster surge
that grew (a hazard players' kills relieve, at least ``surge_intensity_min`` strong and
``surge_age_min_ticks`` old) calls a *surge boss*; a contested map whose conflict reached
``war_conflict_min`` (any contested map while the War of Emperium runs) calls a *war
boss*. A map holds one boss; bosses appear on a walkable cell drawn with the counter-based
RNG, as ``spawn_monster`` actions carrying a real mob id and Norn's ``spawn_id``, and
are announced on their map.

A boss dies when a map server sends ``mvp_kill`` with its ``spawn_id`` (or, for a server
that does not tag its spawns, with spawn_id 0, the boss's mob id and map). Its death ends
the surge it came with, adds ``kill_deeds`` to the map's defender (the faction holding the
map, else its nearest town, when it spawned), drops ``drop_qty`` of the first of
``drop_items`` the nearest town's market sells into it, and pays the killer a bounty from
the defender's treasury (the ledger's ``quest_reward`` sink). A boss nobody kills leaves
after ``boss_ttl_ticks``; war bosses also leave when the War of Emperium ends
(``woe_end``); both as ``despawn_monster``. A spawn a game server failed (the action log)
is forgotten.

Tables: ``boss`` (one row per live boss: spawn id, mob, map and cell, cause, the surge's
hazard handle, defender, birth and expiry ticks), ``boss_stats`` (counts, the next spawn
id, whether WoE runs) and ``boss_log`` (the last happenings, for the summary).
Invariant: every live boss stands on a walkable cell of a known map.

Resources read: ``geography``, ``items``, ``markets``, ``ledger``. The model says which
hazard types are monster surges (``monster_hazards``); the hazard, territory, faction and
market tables are read and written as declared.
"""

from __future__ import annotations

import numpy as np

from norn.actors.bosses.kinds import DESPAWN_MONSTER, MVP_KILL, SPAWN_MONSTER
from norn.actors.bosses.schema import BossRules
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.calendar import WOE_END, WOE_START
from norn.rules.history import History
from norn.rules.places import pay_from, random_cells
from norn.rules.tables import lookup, room
from norn.rules.texts import fill

__all__ = ["CAUSES", "DESPAWN_MONSTER", "MVP_KILL", "SPAWN_MONSTER", "SURGE", "WAR", "BossPlugin",
           "boss_mob"]

S_PLACE = register_stream("bosses.place")
SURGE, WAR = 0, 1
CAUSES = ("surge", "war")
#: What ``boss_log`` records.
SPAWNED, SLAIN, LEFT, FAILED = 0, 1, 2, 3
LOG_WHAT = ("appeared", "slain", "left", "failed")
LOG_ROWS = 16

STAT_COLUMNS = ("failed", "bounty_zeny", "bounties", "dropped", "stray_kills", "surges_ended",
                "woe_starts", "woe_ends")


def boss_mob(rules: BossRules, maps: np.ndarray, cause: np.ndarray) -> np.ndarray:
    """The mob of a boss of ``cause`` on each map: each map has its own (map id modulo the
    list), so a map server that does not tag its spawns can still name it."""
    maps = np.asarray(maps, np.int64)
    surge = np.array([m.id for m in rules.surge_mobs], np.int64)
    war = np.array([m.id for m in rules.war_mobs], np.int64)
    return np.where(np.asarray(cause) == WAR, war[maps % len(war)], surge[maps % len(surge)])


class BossPlugin:
    name = "bosses"
    resources = ("geography", "items", "markets", "ledger")

    def __init__(self, rules: BossRules, *, monster_hazards: np.ndarray, reward_zeny_max: int,
                 stock_max: int, broadcasts_max: int) -> None:
        self.rules = rules
        self.monster = np.asarray(monster_hazards, np.bool_)
        self.reward_zeny_max = reward_zeny_max
        self.stock_max = stock_max
        self.broadcasts_max = broadcasts_max
        self.log = History("boss_log", ("mob", "map", "what", "cause"), LOG_ROWS)
        mobs = [*rules.surge_mobs, *rules.war_mobs]
        self.mob_ids = np.array([m.id for m in mobs], np.int64)
        self.mob_names = np.array([m.name.encode() for m in mobs], "S32")

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.items = world.resource("items")
        self.markets = world.resource("markets")
        self.ledger = world.resource("ledger")
        br = self.rules
        drop = self.items.index(np.array(br.drop_items, np.int64))
        if (drop < 0).any():
            bad = br.drop_items[int(np.flatnonzero(drop < 0)[0])]
            raise ConfigError(f"rules.bosses.drop_items: unknown item id {bad}")
        self.drop_index = drop
        self.map_names = np.array([n.encode() for n in geo.map_names], "S16")
        world.consumes(MVP_KILL, WOE_START, WOE_END)
        world.emits(SPAWN_MONSTER, DESPAWN_MONSTER, "give_reward", "broadcast")
        world.add_table(
            "boss",
            [
                Column("spawn_id", np.int32),
                Column("mob", np.int32),
                Column("map", np.int16, (), -1),
                Column("x", np.int16),
                Column("y", np.int16),
                Column("cause", np.uint8),
                Column("hazard", np.int64, (), -1),
                Column("faction", np.int16, (), -1),
                Column("born", np.int32),
                Column("expires", np.int32),
                Column("gone", np.uint8),  # 1: leaves at this tick's sync point
            ],
            br.bosses_max,
        )
        stats = world.add_table(
            "boss_stats",
            [Column("next_id", np.int32, (), 1), Column("woe", np.uint8),
             Column("spawned", np.int64, (len(CAUSES),)), Column("slain", np.int64, (len(CAUSES),)),
             Column("left", np.int64, (len(CAUSES),)),
             *(Column(c, np.int64) for c in STAT_COLUMNS)],
            1,
        )
        stats.spawn(1)
        self.log.build(world)
        self.ledger.uses(sinks=("quest_reward",))
        reads: tuple[str, ...] = ("events", "boss.*", "hazard.*", "territory.owner")
        after: tuple[str, ...] = ()
        log = world.action_log
        if log is not None:
            log.track(SPAWN_MONSTER.name)
            world.consumes("action_result")
            reads += ("action_log.*",)
            after = ("action_log.match",)
        world.add_system(
            "bosses.ingest", "ingest", self.ingest, reads=reads,
            writes=("boss.*", "boss_stats.*", "boss_log.*", "hazard.intensity", "hazard.peak",
                    "territory.deeds", "market.stock", "faction.treasury", "ledger.sinks",
                    "actions"),
            after=after,
        )
        world.add_system(
            "bosses.spawn", "act", self.spawn,
            reads=("boss.*", "hazard.*", "territory.*"),
            writes=("boss.*", "boss_stats.*", "boss_log.*", "actions"),
        )

    # -- helpers ----------------------------------------------------------------------------
    def _names(self, mob: np.ndarray) -> np.ndarray:
        at = lookup(self.mob_ids, np.asarray(mob, np.int64))
        return np.where(at >= 0, self.mob_names[np.maximum(at, 0)], b"A boss")

    def _say(self, world: World, template: str, slots: np.ndarray) -> None:
        """Announce bosses on their maps (at most ``broadcasts_per_tick_max``)."""
        s = slots[: self.broadcasts_max]
        if not len(s):
            return
        t = world.tables["boss"]
        maps = t["map"][s].astype(np.int64)
        text = fill(template.encode(), len(s), boss=self._names(t["mob"][s]),
                    map=self.map_names[maps])
        world.emit("broadcast", map_id=maps, text=text)

    def _record(self, world: World, slots: np.ndarray, what: int) -> None:
        t = world.tables["boss"]
        self.log.record(world, mob=t["mob"][slots], map=t["map"][slots],
                        what=np.full(len(slots), what), cause=t["cause"][slots])

    def _leave(self, world: World, slots: np.ndarray) -> None:
        """Bosses nobody killed go: the game removes them, the world forgets them."""
        if not len(slots):
            return
        t = world.tables["boss"]
        world.emit("despawn_monster", spawn_id=t["spawn_id"][slots], map_id=t["map"][slots])
        self._say(world, self.rules.leave_text, slots)
        np.add.at(world.tables["boss_stats"]["left"][0], t["cause"][slots].astype(np.int64), 1)
        self._record(world, slots, LEFT)
        self._gone(t, slots)

    @staticmethod
    def _gone(t, slots: np.ndarray) -> None:
        t["gone"][slots] = 1
        t.despawn(t.handles(slots))

    @staticmethod
    def _here(t) -> np.ndarray:
        """Live bosses not already leaving this tick."""
        live = t.live_slots()
        return live[t["gone"][live] == 0]

    # -- ingest: kills, failed spawns, the War of Emperium ---------------------------------
    def ingest(self, world: World) -> None:
        stats = world.tables["boss_stats"]
        t = world.tables["boss"]
        ev = world.events
        if len(ev["woe_start"]["edition"]):
            stats["woe"][0] = 1
            stats["woe_starts"][0] += len(ev["woe_start"]["edition"])
        if len(ev["woe_end"]["edition"]):  # both in one tick: the siege is over
            stats["woe"][0] = 0
            stats["woe_ends"][0] += len(ev["woe_end"]["edition"])
            live = self._here(t)
            self._leave(world, live[t["cause"][live] == WAR])
        if world.action_log is not None:
            failed = world.action_log.failed(world, (SPAWN_MONSTER.name,))
            if len(failed.key):
                live = self._here(t)
                at = lookup(t["spawn_id"][live].astype(np.int64), failed.key)
                gone = np.unique(live[at[at >= 0]])
                if len(gone):
                    stats["failed"][0] += len(gone)
                    self._record(world, gone, FAILED)
                    self._gone(t, gone)
        self._kills(world)

    def _kills(self, world: World) -> None:
        kills = world.events["mvp_kill"]
        n = len(kills["char_id"])
        if not n:
            return
        t = world.tables["boss"]
        stats = world.tables["boss_stats"]
        live = self._here(t)
        kmap = kills["map_id"].astype(np.int64)
        sid = kills["spawn_id"].astype(np.int64)
        slot = np.full(n, -1, np.int64)
        if len(live):
            at = lookup(t["spawn_id"][live].astype(np.int64), sid)
            tagged = (sid > 0) & (at >= 0)
            slot[tagged] = live[at[tagged]]
            key = t["map"][live].astype(np.int64) << 32 | t["mob"][live].astype(np.int64)
            bare = sid == 0
            at = lookup(key, kmap[bare] << 32 | kills["mob_id"][bare].astype(np.int64))
            slot[np.flatnonzero(bare)[at >= 0]] = live[at[at >= 0]]
            # a kill names its boss's map and mob, or it is not that boss
            ok = slot >= 0
            s = slot[ok]
            same = (t["map"][s] == kmap[ok]) & (t["mob"][s] == kills["mob_id"][ok])
            slot[np.flatnonzero(ok)[~same]] = -1
        hit = np.flatnonzero(slot >= 0)
        _, first = np.unique(slot[hit], return_index=True)  # the first kill of each boss
        e = hit[np.sort(first, kind="stable")]
        stats["stray_kills"][0] += n - len(e)
        if not len(e):
            return
        b = slot[e]
        maps = t["map"][b].astype(np.int64)
        br = self.rules
        # the surge it came with ends (its hazard falls to nothing; hazard.update ends it)
        hz = world.tables["hazard"]
        h = t["hazard"][b]
        cur = (h >= 0) & hz.is_current(h)
        hs = (h[cur] & 0xFFFFFFFF).astype(np.int64)
        hz["intensity"][hs] = 0.0
        hz["peak"][hs] = 0.0
        stats["surges_ended"][0] += len(hs)
        # the defender's standing grows where the boss fell
        fac = t["faction"][b].astype(np.int64)
        has = fac >= 0
        if br.kill_deeds > 0 and has.any():
            np.add.at(world.tables["territory"]["deeds"], (maps[has], fac[has]),
                      np.float32(br.kill_deeds))
        # the nearest town's market gets the drop: the first of drop_items it sells
        if br.drop_qty:
            town = self.geo.nearest_town[maps]
            ms = np.full(len(b), -1, np.int64)
            for item in self.drop_index:  # a few configured items, not actors
                at = self.markets.slot(np.maximum(town, 0), np.full(len(b), item))
                ms = np.where((ms < 0) & (town >= 0), at, ms)
            ms = ms[ms >= 0]
            if len(ms):
                stock = world.tables["market"]["stock"]
                np.add.at(stock, ms, br.drop_qty)
                stock[ms] = np.minimum(stock[ms], self.stock_max)
                stats["dropped"][0] += len(ms) * br.drop_qty
        # the killer's bounty, from the defender's treasury
        bounty = min(br.bounty_zeny, self.reward_zeny_max)
        if bounty:
            paid = np.zeros(len(b), np.int64)
            total = pay_from(fac, np.full(len(b), bounty, np.int64),
                             world.tables["faction"]["treasury"], paid)
            self.ledger.book(world, sink="quest_reward", amount=int(total))
            give = paid > 0
            if give.any():
                k = int(give.sum())
                world.emit("give_reward", char_id=kills["char_id"][e][give],
                           item_id=np.zeros(k, np.int32), amount=np.zeros(k, np.int32),
                           zeny=paid[give])
            stats["bounty_zeny"][0] += int(total)
            stats["bounties"][0] += int(give.sum())
        np.add.at(stats["slain"][0], t["cause"][b].astype(np.int64), 1)
        self._say(world, br.slain_text, b)
        self._record(world, b, SLAIN)
        self._gone(t, b)

    # -- act: bosses leave, bosses appear ----------------------------------------------------
    def spawn(self, world: World) -> None:
        br = self.rules
        t = world.tables["boss"]
        old = self._here(t)
        self._leave(world, old[t["expires"][old] <= world.tick])
        live = t.live_slots()
        if world.tick % br.check_every_ticks:
            return
        geo = self.geo
        n_maps = geo.n_maps
        hz = world.tables["hazard"]
        hl = hz.live_slots()
        typ = hz["type"][hl].astype(np.int64)
        strong = (self.monster[typ] & (hz["intensity"][hl] >= br.surge_intensity_min)
                  & (hz["age"][hl] >= br.surge_age_min_ticks))
        surge = hl[strong]
        terr = world.tables["territory"]
        woe = world.tables["boss_stats"]["woe"][0] == 1
        contested = terr["contested"][:n_maps] == 1
        war = np.flatnonzero(contested & (woe | (terr["conflict"][:n_maps]
                                                 >= br.war_conflict_min)))
        maps = np.concatenate([hz["map"][surge].astype(np.int64), war])
        cause = np.concatenate([np.full(len(surge), SURGE), np.full(len(war), WAR)])
        hazard = np.concatenate([hz.handles(surge), np.full(len(war), -1, np.int64)])
        taken = np.zeros(n_maps, np.bool_)
        held = np.concatenate([live, t.reserved_slots()])
        taken[t["map"][held].astype(np.int64)] = True
        free = ~taken[maps]
        maps, cause, hazard = maps[free], cause[free], hazard[free]
        _, first = np.unique(maps, return_index=True)  # one per map, a surge first
        first = np.sort(first, kind="stable")
        k = min(len(first), br.spawns_per_tick_max, room(t))
        pick = first[:k]
        if not k:
            return
        maps, cause, hazard = maps[pick], cause[pick], hazard[pick]
        stats = world.tables["boss_stats"]
        nxt = int(stats["next_id"][0])
        ids = 1 + (nxt - 1 + np.arange(k, dtype=np.int64)) % (2**31 - 1)
        x = np.empty(k, np.int64)
        y = np.empty(k, np.int64)
        random_cells(geo.walk, geo.walk_off, geo.width, geo.height, maps, world.stream_seed(),
                     world.tick, S_PLACE, ids, x, y)
        ok = x >= 0
        maps, cause, hazard, ids, x, y = (a[ok] for a in (maps, cause, hazard, ids, x, y))
        k = len(maps)
        stats["next_id"][0] = 1 + (nxt - 1 + len(ok)) % (2**31 - 1)
        if not k:
            return
        owner = terr["owner"][:n_maps].astype(np.int64)
        town = geo.nearest_town[maps]
        defender = np.where(owner[maps] >= 0, owner[maps],
                            np.where(town >= 0, owner[np.maximum(town, 0)], -1))
        mob = boss_mob(br, maps, cause)
        handles = t.spawn(k, spawn_id=ids, mob=mob, map=maps, x=x, y=y, cause=cause,
                          hazard=hazard, faction=defender, born=np.full(k, world.tick),
                          expires=np.full(k, world.tick + br.boss_ttl_ticks))
        world.emit("spawn_monster", spawn_id=ids, mob_id=mob, map_id=maps, x=x, y=y,
                   amount=np.ones(k, np.int16))
        slots = handles & 0xFFFFFFFF
        self._say(world, br.appear_text, slots)
        np.add.at(stats["spawned"][0], cause, 1)
        self._record(world, slots, SPAWNED)

    # -- for the model's summary and tests ------------------------------------------------------
    def history(self, world: World) -> dict[str, np.ndarray]:
        return self.log.recent(world)


def describe(world: World, rules: BossRules) -> str:
    """What bosses did in the run, in words: for the model's summary."""
    st = world.tables["boss_stats"]
    geo = world.resources["geography"]
    spawned, slain, left = (st[c][0] for c in ("spawned", "slain", "left"))
    mobs = {m.id: m.name for m in (*rules.surge_mobs, *rules.war_mobs)}
    log = History("boss_log", ("mob", "map", "what", "cause"), LOG_ROWS).recent(world)
    story = [f"{mobs.get(int(mob), 'a boss')} {LOG_WHAT[int(w)]} on {geo.map_names[int(m)]}"
             f"{' (war)' if c == WAR else ''} at tick {int(t)}"
             for t, mob, m, w, c in zip(log["tick"], log["mob"], log["map"], log["what"],
                                        log["cause"], strict=True)][-6:]
    t = world.tables["boss"]
    live = t.live_slots()
    alive = ", ".join(f"{mobs.get(int(t['mob'][s]), 'a boss')} on {geo.map_names[int(t['map'][s])]}"
                      for s in live[:4])
    return (f"{int(spawned.sum())} appeared ({int(spawned[SURGE])} called by monster surges, "
            f"{int(spawned[WAR])} by faction wars), {int(slain.sum())} slain "
            f"({int(st['surges_ended'][0])} surges ended, {int(st['dropped'][0])} items dropped "
            f"into town markets, {int(st['bounty_zeny'][0])} zeny of bounties), "
            f"{int(left.sum())} left unbeaten, {int(st['failed'][0])} refused by the game; "
            f"{len(live)} alive now{': ' + alive if alive else ''}"
            + (f"; lately: {'; '.join(story)}" if story else ""))
