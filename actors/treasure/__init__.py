"""Treasure and archaeology: dig sites and hidden caches buried on real maps, found by
digging.

The world buries finds on walkable cells (the ``geography`` resource) of maps that are
not towns, drawn with the counter-based RNG: a few every ``place_every_ticks`` and a batch
at each daily reset (``daily_reset``), never more than ``sites_max`` alive or
``sites_per_map_max`` on one map. A share of them are *dig sites*: ruins announced on their
map (``mark_dig_site`` shows the spot, a broadcast tells the players) that take
``site_digs`` digs within ``site_radius_cells``; the rest are *hidden caches*, never
announced, found by one dig within ``cache_radius_cells``. Finds follow adventurers: they
are buried on the map of a player seen off town, when there is one (a cache within
``cache_near_cells`` of that player, a site anywhere on the map). Finds are found through the
game's ``dig`` events, in event order: the dig that completes a site or hits a cache wins
its loot (``give_reward``: items from ``loot``, no zeny, so no treasury pays); a find nobody
makes is gone after ``site_ttl_ticks`` (its mark removed). A site a game server failed to
mark (the action log) is given up.

Tables: ``treasure`` (one row per buried find: kind, map, cell, loot, digs so far and
needed, radius, id, expiry), ``treasure_stats`` (counts, the next id, daily caches still
to bury) and ``treasure_log`` (the last finds, for the summary). Invariant: every live find
lies on a walkable cell of a map that is not a town, and no map holds more than
``sites_per_map_max``.

Resources read: ``geography``, ``items``.
"""

from __future__ import annotations

import numpy as np

from norn.actors.treasure.kinds import DIG, MARK_DIG_SITE
from norn.actors.treasure.schema import TreasureRules
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream, uniform_array, uniform_int_array
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.calendar import DAILY_RESET
from norn.rules.history import History
from norn.rules.places import near_sites, random_cells, random_cells_near
from norn.rules.tables import lookup, room
from norn.rules.texts import fill

__all__ = ["DIG", "KINDS", "MARK_DIG_SITE", "TreasurePlugin"]

S_PLACE = register_stream("treasure.place")
S_LOOT = register_stream("treasure.loot")
SITE, CACHE = 0, 1
KINDS = ("dig site", "hidden cache")
LOG_ROWS = 16
STAT_COLUMNS = ("digs", "misses", "failed", "daily_due", "daily_resets", "next_id")


class TreasurePlugin:
    name = "treasure"
    resources = ("geography", "items")

    def __init__(self, rules: TreasureRules, *, reward_amount_max: int, broadcasts_max: int
                 ) -> None:
        self.rules = rules
        self.reward_amount_max = reward_amount_max
        self.broadcasts_max = broadcasts_max
        self.log = History("treasure_log", ("map", "item", "amount", "kind"), LOG_ROWS)

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.items = items = world.resource("items")
        tr = self.rules
        idx = items.index(np.array([lo.item for lo in tr.loot], np.int64))
        if (idx < 0).any():
            bad = tr.loot[int(np.flatnonzero(idx < 0)[0])].item
            raise ConfigError(f"rules.treasure.loot: unknown item id {bad}")
        self.loot_item = idx
        self.loot_lo = np.array([lo.amount_min for lo in tr.loot], np.int64)
        self.loot_hi = np.minimum(np.array([lo.amount_max for lo in tr.loot], np.int64),
                                  self.reward_amount_max)
        self.loot_lo = np.minimum(self.loot_lo, self.loot_hi)
        self.fields = np.flatnonzero(~geo.is_town)  # where treasure may lie
        self.map_names = np.array([n.encode() for n in geo.map_names], "S16")
        self.item_names = np.array([n.encode() for n in items.names], "S64")
        world.consumes(DIG, DAILY_RESET)
        world.emits(MARK_DIG_SITE, "give_reward", "broadcast")
        world.add_table(
            "treasure",
            [
                Column("kind", np.uint8),
                Column("map", np.int16, (), -1),
                Column("x", np.int16),
                Column("y", np.int16),
                Column("item", np.int16),  # catalogue index
                Column("amount", np.int32),
                Column("digs", np.int32),
                Column("needed", np.int32),
                Column("radius", np.int16),
                Column("site_id", np.int32),
                Column("expires", np.int32),
                Column("gone", np.uint8),  # 1: leaves at this tick's sync point
            ],
            tr.sites_max,
        )
        stats = world.add_table(
            "treasure_stats",
            [Column("buried", np.int64, (2,)), Column("found", np.int64, (2,)),
             Column("expired", np.int64, (2,)), *(Column(c, np.int64) for c in STAT_COLUMNS)],
            1,
        )
        stats.spawn(1)
        stats["next_id"][0] = 1
        self.log.build(world)
        reads: tuple[str, ...] = ("events", "treasure.*")
        after: tuple[str, ...] = ()
        if world.action_log is not None:
            world.action_log.track(MARK_DIG_SITE.name)
            world.consumes("action_result")
            reads += ("action_log.*",)
            after = ("action_log.match",)
        world.add_system("treasure.dig", "ingest", self.dig, reads=reads,
                         writes=("treasure.*", "treasure_stats.*", "treasure_log.*", "actions"),
                         after=after)
        world.add_system("treasure.bury", "act", self.bury, reads=("treasure.*", "player.*"),
                         writes=("treasure.*", "treasure_stats.*", "actions"))

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _here(t) -> np.ndarray:
        live = t.live_slots()
        return live[t["gone"][live] == 0]

    def _go(self, world: World, slots: np.ndarray, unmark: bool) -> None:
        t = world.tables["treasure"]
        if unmark:
            s = slots[t["kind"][slots] == SITE]
            if len(s):
                world.emit("mark_dig_site", site_id=t["site_id"][s], map_id=t["map"][s],
                           x=t["x"][s], y=t["y"][s], on=np.zeros(len(s), np.uint8))
        t["gone"][slots] = 1
        t.despawn(t.handles(slots))

    # -- ingest: digs, failed marks, the new day -----------------------------------------------
    def dig(self, world: World) -> None:
        tr = self.rules
        t = world.tables["treasure"]
        stats = world.tables["treasure_stats"]
        if len(world.events["daily_reset"]["day"]):
            stats["daily_resets"][0] += 1
            stats["daily_due"][0] = tr.daily_caches
        if world.action_log is not None:
            failed = world.action_log.failed(world, (MARK_DIG_SITE.name,))
            if len(failed.key):
                here = self._here(t)
                at = lookup(t["site_id"][here].astype(np.int64), failed.key)
                gone = np.unique(here[at[at >= 0]])
                stats["failed"][0] += len(gone)
                self._go(world, gone, unmark=False)
        ev = world.events["dig"]
        n = len(ev["char_id"])
        if not n:
            return
        stats["digs"][0] += n
        here = self._here(t)
        n_maps = self.geo.n_maps
        order = np.argsort(t["map"][here], kind="stable")
        slots = here[order]  # by map, then slot
        off = np.zeros(n_maps + 1, np.int64)
        np.cumsum(np.bincount(t["map"][slots].astype(np.int64), minlength=n_maps), out=off[1:])
        hit = np.empty(n, np.int64)
        near_sites(ev["map_id"].astype(np.int64), ev["x"].astype(np.int64),
                   ev["y"].astype(np.int64), off, slots, t["x"], t["y"],
                   t["radius"].astype(np.int64), hit)
        ok = np.flatnonzero(hit >= 0)
        stats["misses"][0] += n - len(ok)
        if not len(ok):
            return
        site = hit[ok]
        by = np.argsort(site, kind="stable")  # digs grouped by find, in event order
        s_sorted = site[by]
        start = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
        rank = np.arange(len(s_sorted)) - np.repeat(start, np.diff(np.r_[start, len(s_sorted)]))
        done = t["digs"][s_sorted] + rank + 1 == t["needed"][s_sorted]
        count = np.bincount(np.searchsorted(np.unique(s_sorted), s_sorted))
        uniq = np.unique(s_sorted)
        t["digs"][uniq] = np.minimum(t["digs"][uniq] + count, t["needed"][uniq])
        win_ev = ok[by[done]]  # the dig that completes each find
        found = s_sorted[done]
        order = np.argsort(win_ev, kind="stable")
        win_ev, found = win_ev[order], found[order]
        if not len(found):
            return
        k = len(found)
        item = t["item"][found].astype(np.int64)
        amount = t["amount"][found]
        world.emit("give_reward", char_id=ev["char_id"][win_ev], item_id=self.items.ids[item],
                   amount=amount, zeny=np.zeros(k, np.int32))
        kinds = t["kind"][found].astype(np.int64)
        np.add.at(stats["found"][0], kinds, 1)
        loud = found[: self.broadcasts_max]
        if len(loud):
            maps = t["map"][loud].astype(np.int64)
            text = fill(tr.found_text.encode(), len(loud), map=self.map_names[maps],
                        item=self.item_names[t["item"][loud]], amount=t["amount"][loud],
                        x=t["x"][loud], y=t["y"][loud])
            world.emit("broadcast", map_id=maps, text=text)
        self.log.record(world, map=t["map"][found], item=self.items.ids[item], amount=amount,
                        kind=kinds)
        self._go(world, found, unmark=True)

    # -- act: finds nobody made go, new ones are buried ----------------------------------------
    def bury(self, world: World) -> None:
        tr = self.rules
        t = world.tables["treasure"]
        stats = world.tables["treasure_stats"]
        here = self._here(t)
        old = here[t["expires"][here] <= world.tick]
        if len(old):
            np.add.at(stats["expired"][0], t["kind"][old].astype(np.int64), 1)
            self._go(world, old, unmark=True)
        regular = 0 if world.tick % tr.place_every_ticks else tr.places_per_tick_max
        k = min(int(stats["daily_due"][0]) + regular, room(t))
        stats["daily_due"][0] = 0  # what does not fit today is not buried (bounded)
        if k <= 0 or not len(self.fields):
            return
        nxt = int(stats["next_id"][0])
        ids = 1 + (nxt - 1 + np.arange(k, dtype=np.int64)) % (2**31 - 1)
        stats["next_id"][0] = 1 + (nxt - 1 + k) % (2**31 - 1)
        seed, tick = world.stream_seed(), world.tick
        kind = np.where(uniform_array(seed, tick, S_LOOT, ids, 0) < tr.site_share, SITE, CACHE)
        maps = self.fields[uniform_int_array(seed, tick, S_PLACE, ids, len(self.fields), 0)]
        x = np.empty(k, np.int64)
        y = np.empty(k, np.int64)
        # finds follow adventurers: on the map of a player seen off town, when there is one
        # (a cache near that player, a site anywhere on the map)
        pl = world.tables["player"]
        seen = pl.live_slots()
        seen = seen[(pl["online"][seen] == 1) & ~self.geo.is_town[pl["map"][seen]]]
        if len(seen):
            met = seen[uniform_int_array(seed, tick, S_PLACE, ids, len(seen), 1)]
            maps = pl["map"][met].astype(np.int64)
        near = (kind == CACHE) & (len(seen) > 0)
        if near.any():
            who = met[near]
            nx, ny = np.empty(len(who), np.int64), np.empty(len(who), np.int64)
            random_cells_near(self.geo.walk, self.geo.walk_off, self.geo.width,
                              self.geo.height, maps[near], pl["x"][who].astype(np.int64),
                              pl["y"][who].astype(np.int64), tr.cache_near_cells, seed, tick,
                              S_PLACE, ids[near], nx, ny)
            x[near], y[near] = nx, ny
        far = ~near
        if far.any():
            fx, fy = np.empty(int(far.sum()), np.int64), np.empty(int(far.sum()), np.int64)
            random_cells(self.geo.walk, self.geo.walk_off, self.geo.width, self.geo.height,
                         maps[far], seed, tick, S_PLACE, ids[far], fx, fy)
            x[far], y[far] = fx, fy
        # no map past its cap: rank the new ones after those already there
        live = np.concatenate([self._here(t), t.reserved_slots()])
        have = np.bincount(t["map"][live].astype(np.int64), minlength=self.geo.n_maps)
        order = np.argsort(maps, kind="stable")
        ms = maps[order]
        start = np.r_[0, np.flatnonzero(np.diff(ms)) + 1]
        rank = np.empty(len(ms), np.int64)
        rank[order] = np.arange(len(ms)) - np.repeat(start, np.diff(np.r_[start, len(ms)]))
        fits = have[maps] + rank < tr.sites_per_map_max
        ok = fits & (x >= 0)
        if not ok.any():
            return
        ids, maps, x, y, kind = ids[ok], maps[ok], x[ok], y[ok], kind[ok]
        n = len(ids)
        pick = uniform_int_array(seed, tick, S_LOOT, ids, len(self.loot_item), 1)
        span = self.loot_hi[pick] - self.loot_lo[pick] + 1
        amount = self.loot_lo[pick] + np.floor(
            uniform_array(seed, tick, S_LOOT, ids, 2) * span).astype(np.int64)
        site = kind == SITE
        t.spawn(n, kind=kind, map=maps, x=x, y=y, item=self.loot_item[pick], amount=amount,
                digs=np.zeros(n), needed=np.where(site, tr.site_digs, 1),
                radius=np.where(site, tr.site_radius_cells, tr.cache_radius_cells),
                site_id=ids, expires=np.full(n, tick + tr.site_ttl_ticks))
        np.add.at(stats["buried"][0], kind, 1)
        if site.any():
            world.emit("mark_dig_site", site_id=ids[site], map_id=maps[site], x=x[site],
                       y=y[site], on=np.ones(int(site.sum()), np.uint8))
            loud = np.flatnonzero(site)[: self.broadcasts_max]
            text = fill(tr.site_text.encode(), len(loud), map=self.map_names[maps[loud]],
                        x=x[loud], y=y[loud], item=self.item_names[self.loot_item[pick[loud]]],
                        amount=amount[loud])
            world.emit("broadcast", map_id=maps[loud], text=text)

    def history(self, world: World) -> dict[str, np.ndarray]:
        return self.log.recent(world)


def describe(world: World) -> str:
    """What was buried and found in the run, in words: for the model's summary."""
    st = world.tables["treasure_stats"]
    geo = world.resources["geography"]
    items = world.resources["items"]
    buried, found, expired = (st[c][0] for c in ("buried", "found", "expired"))
    log = History("treasure_log", ("map", "item", "amount", "kind"), LOG_ROWS).recent(world)
    at = items.index(log["item"])
    story = [f"{int(a)} x {items.names[int(i)] if i >= 0 else '?'} from a {KINDS[int(k)]} on "
             f"{geo.map_names[int(m)]}"
             for m, i, a, k in zip(log["map"], at, log["amount"], log["kind"], strict=True)][-5:]
    t = world.tables["treasure"]
    return (f"{int(buried[SITE])} dig sites announced and {int(buried[CACHE])} caches hidden; "
            f"{int(found[SITE])} sites excavated and {int(found[CACHE])} caches found from "
            f"{int(st['digs'][0])} digs ({int(st['misses'][0])} found nothing), "
            f"{int(expired.sum())} lost to time; {t.count} still buried"
            + (f"; finds: {'; '.join(story)}" if story else ""))
