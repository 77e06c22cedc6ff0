"""Hazard actors: typed hazards and weather on maps, with intensity, spread and decay.

A hazard row is one (map, type) occurrence. It grows to its peak, decays, spreads along
warps while strong, and ends below its type's threshold; its start and end are world
actions: ``set_hazard`` for hazards, ``set_weather`` for weather and for hazards that
show as rAthena weather (a storm brings ``clouds2``). Each tick the live hazards are summed
per map into ``hazard_map`` (danger, harm, mood, supply loss, influence erosion): that
table is how NPCs, markets and factions feel them. Admin commands (``admin_hazard``
events) start, raise or end hazards, and players' mob kills push monster surges back.

Resources read: ``geography`` (maps, warps, towns), ``dialogue`` (``hazard`` lines). The
hazard types, initial hazards and caps are the kind's own configuration, passed by the
model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.actors.hazard.schema import HazardRules
from norn.engine.rng import register_stream
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules import spread as sp
from norn.rules.tables import lookup, room

S_SPREAD = register_stream("hazard.spread")
S_START = register_stream("hazard.start")

MAP_COLUMNS = ("danger", "prev_danger", "hurt", "mood", "supply", "shift")

# Hazard type parameter columns (rows of ``HazardTypes.params``), in this order; the
# kernels in ``rules/spread.py`` index them by its ``HT_*`` constants.
HAZARD_PARAMS = (
    "fear",
    "hurt",
    "mood",
    "supply_loss",
    "influence_shift",
    "start_chance",
    "start_min",
    "start_max",
    "grow_ticks",
    "grow_per_tick",
    "decay_per_tick",
    "end_below",
    "spread_chance",
    "spread_factor",
    "spread_min",
    "conflict_boost",
    "kill_relief",
    "starts_on",  # 0 any, 1 town, 2 field
    "is_weather",
)
H = {name: i for i, name in enumerate(HAZARD_PARAMS)}
STARTS_ON = {"any": 0, "town": 1, "field": 2}


@dataclass(frozen=True)
class HazardTypes:
    """The kinds of hazard a world knows: names, parameters and rAthena weather shown."""

    names: tuple[str, ...]
    params: np.ndarray  # (types, len(HAZARD_PARAMS)) float64
    weather: np.ndarray  # int16 weather code per type, 0 none

    @property
    def n(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class InitialHazards:
    """Hazards active at tick 0 (map id, type index, intensity)."""

    map: np.ndarray
    type: np.ndarray
    intensity: np.ndarray


class HazardPlugin:
    name = "hazard"
    resources = ("geography", "dialogue")

    def __init__(
        self, rules: HazardRules, types: HazardTypes, initial: InitialHazards, *,
        broadcasts_max: int,
    ) -> None:
        self.rules = rules
        self.types = types
        self.initial = initial
        self.broadcasts_max = broadcasts_max
        self.HT = np.ascontiguousarray(types.params)
        self.n_types = types.n

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.lines = world.resource("dialogue")["hazard"]
        hr = self.rules
        T = self.n_types
        world.consumes("mob_kill", "admin_hazard")
        world.emits("set_hazard", "set_weather", "broadcast")
        world.add_table(
            "hazard",
            [
                Column("type", np.int16),
                Column("map", np.int16),
                Column("intensity", np.float32),
                Column("peak", np.float32),
                Column("age", np.int32),
            ],
            hr.hazards_max,
        )
        hm = world.add_table(
            "hazard_map",
            [Column(c, np.float32) for c in MAP_COLUMNS],
            geo.n_maps,
        )
        hm.spawn(geo.n_maps)
        stats = world.add_table(
            "hazard_stats",
            [
                Column("started", np.int64, (T,)),
                Column("ended", np.int64, (T,)),
                Column("spread", np.int64),
                Column("admin", np.int64),
                Column("admin_rejected", np.int64),
                Column("kills", np.int64),
                Column("peak", np.float32, (T,)),
            ],
            1,
        )
        stats.spawn(1)
        init = self.initial
        if len(init.map):
            maps = init.map.astype(np.int64)
            types = init.type.astype(np.int64)
            key = maps * T + types
            _, first = np.unique(key, return_index=True)  # one per (map, type)
            first = np.sort(first, kind="stable")
            inten = init.intensity.astype(np.float32)[first]
            world.tables["hazard"].spawn(
                len(first), type=types[first], map=maps[first], intensity=inten, peak=inten
            )
        world.add_system(
            "hazard.ingest",
            "ingest",
            self.ingest,
            reads=("events",),
            writes=("hazard.intensity", "hazard.peak", "hazard_stats.*", "actions"),
            marks_own_writes=True,  # the hazards events touched, on the ticks they came
        )
        world.add_system(
            "hazard.update",
            "act",
            self.update,
            reads=("territory.conflict",),
            writes=("hazard.intensity", "hazard.age", "hazard_map.*", "hazard_stats.*", "actions"),
        )

    # -- helpers --------------------------------------------------------------------------
    def _start(self, world: World, maps: np.ndarray, types: np.ndarray, inten: np.ndarray) -> int:
        """Spawn new hazards (as many as the table has room for) and announce them."""
        t = world.tables["hazard"]
        k = min(len(maps), room(t))
        if k == 0:
            return 0
        maps, types = maps[:k].astype(np.int64), types[:k].astype(np.int64)
        inten = np.minimum(inten[:k], self.rules.intensity_max).astype(np.float32)
        t.spawn(k, type=types, map=maps, intensity=inten, peak=inten)
        self._announce(world, maps, types, inten, on=1)
        stats = world.tables["hazard_stats"]
        np.add.at(stats["started"][0], types, 1)
        np.maximum.at(stats["peak"][0], types, inten)
        return k

    def _announce(self, world, maps, types, inten, on: int) -> None:
        real = self.HT[types, sp.HT_WEATHER] == 0.0  # plain weather is shown, not a hazard
        n = int(real.sum())
        if n:
            world.emit(
                "set_hazard",
                map_id=maps[real],
                hazard_type=types[real],
                intensity=inten[real] if on else np.zeros(n, np.float32),
                on=np.full(n, on, np.uint8),
            )
        code = self.types.weather[types]
        w = code > 0
        if w.any():
            world.emit(
                "set_weather",
                map_id=maps[w],
                weather=code[w],
                on=np.full(int(w.sum()), on, np.uint8),
            )
        if on:
            # real hazards (not plain weather) are announced on their map, up to the cap
            loud = np.flatnonzero(self.HT[types, sp.HT_WEATHER] == 0.0)
            loud = loud[: self.broadcasts_max]
            if len(loud):
                lines = self.lines
                names = np.array([s.encode() for s in self.types.names], dtype="S32")
                mnames = np.array([s.encode() for s in self.geo.map_names], dtype="S16")
                pick = lines[(maps[loud] + world.tick) % len(lines)]
                text = np.char.add(
                    np.char.add(np.char.add(names[types[loud]], b" on "), mnames[maps[loud]]),
                    np.char.add(b": ", pick),
                )
                world.emit("broadcast", map_id=maps[loud], text=text)

    # -- ingest: admin commands and players' kills -----------------------------------------
    def ingest(self, world: World) -> None:
        n_maps = self.geo.n_maps
        T = self.n_types
        t = world.tables["hazard"]
        stats = world.tables["hazard_stats"]
        kills = world.events["mob_kill"]
        if len(kills["char_id"]):
            km = kills["map_id"].astype(np.int64)
            per_map = np.bincount(km[(km >= 0) & (km < n_maps)], minlength=n_maps)
            stats["kills"][0] += len(kills["char_id"])
            live = t.live_slots()
            relief = self.HT[t["type"][live], sp.HT_KILL_RELIEF]
            hit = relief > 0
            s = live[hit]
            if len(s):
                drop = relief[hit] * per_map[t["map"][s]]
                t["intensity"][s] = np.maximum(t["intensity"][s] - drop, 0).astype(np.float32)
                world.chunk_mask("hazard")[s // world.chunk_rows] = True
            world.mark_rows("hazard_stats", 0, 1)
        adm = world.events["admin_hazard"]
        n = len(adm["map_id"])
        if not n:
            return
        world.mark_rows("hazard_stats", 0, 1)
        m = adm["map_id"].astype(np.int64)
        ty = adm["hazard_type"].astype(np.int64)
        v = adm["intensity"].astype(np.float64)
        ok = (m >= 0) & (m < n_maps) & (ty >= 0) & (ty < T) & np.isfinite(v)
        stats["admin_rejected"][0] += int(n - ok.sum())
        m, ty = m[ok], ty[ok]
        v = np.clip(v[ok], 0.0, self.rules.intensity_max).astype(np.float32)
        if not len(m):
            return
        # the last command per (map, type) wins
        key = m * T + ty
        _, last_rev = np.unique(key[::-1], return_index=True)
        last = np.sort(len(key) - 1 - last_rev, kind="stable")
        m, ty, v, key = m[last], ty[last], v[last], key[last]
        stats["admin"][0] += len(m)
        live = t.live_slots()
        at = lookup(t["map"][live].astype(np.int64) * T + t["type"][live], key)
        found = at >= 0
        slots = live[at[found]]
        t["intensity"][slots] = v[found]
        t["peak"][slots] = v[found]
        world.chunk_mask("hazard")[slots // world.chunk_rows] = True
        new = ~found & (v > 0)
        if new.any():
            self._start(world, m[new], ty[new], v[new])

    # -- act: evolve, end, spread, start, feel ---------------------------------------------
    def update(self, world: World) -> None:
        geo = self.geo
        hr = self.rules
        T = self.n_types
        t = world.tables["hazard"]
        hw = t.hwm
        alive = t.alive[:hw]
        ending = np.zeros(hw, dtype=np.bool_)
        col = {c: t[c][:hw] for c in ("type", "map", "intensity", "peak", "age")}
        n_end = sp.evolve_hazards(
            alive, col["type"], col["intensity"], col["peak"], col["age"], self.HT,
            hr.intensity_max, ending,
        )
        stats = world.tables["hazard_stats"]
        if n_end:
            done = np.flatnonzero(ending)
            types = col["type"][done].astype(np.int64)
            self._announce(world, col["map"][done].astype(np.int64), types, None, on=0)
            np.add.at(stats["ended"][0], types, 1)
            t.despawn(t.handles(done))
        occ = np.empty(geo.n_maps * T, dtype=np.int64)
        sp.occupancy(alive, ending, col["map"], col["type"], T, occ)
        fresh = t.reserved_slots()  # started this tick by an admin command
        if len(fresh):
            occ[t["map"][fresh].astype(np.int64) * T + t["type"][fresh]] = -2
        cap = hr.spread_per_tick_max
        out_m = np.empty(cap, np.int64)
        out_t = np.empty(cap, np.int64)
        out_v = np.empty(cap, np.float64)
        k = sp.spread_hazards(
            world.stream_seed(), world.tick, S_SPREAD, alive, ending, col["map"], col["type"],
            col["intensity"], self.HT, geo.adj_off, geo.adj, occ, T, cap, out_m, out_t, out_v,
        )
        if k:
            stats["spread"][0] += self._start(world, out_m[:k], out_t[:k], out_v[:k])
        cap = hr.starts_per_tick_max
        out_m = np.empty(cap, np.int64)
        out_t = np.empty(cap, np.int64)
        out_v = np.empty(cap, np.float64)
        k = sp.start_hazards(
            world.stream_seed(), world.tick, S_START, geo.n_maps, T, self.HT, geo.is_town,
            world.tables["territory"]["conflict"], occ, cap, out_m, out_t, out_v,
        )
        if k:
            self._start(world, out_m[:k], out_t[:k], out_v[:k])
        hm = {c: a[: geo.n_maps] for c, a in world.tables["hazard_map"].columns.items()}
        hm["prev_danger"][:] = hm["danger"]
        sp.aggregate(
            alive, ending, col["map"], col["type"], col["intensity"], self.HT,
            hm["danger"], hm["hurt"], hm["mood"], hm["supply"], hm["shift"],
        )
