"""The join sync of the Midgard model: what a map server must mirror of the world now.

A map server that joins a running world (or comes back to it) knows nothing of what the
world showed before: the NPCs standing on its maps, the prices and stock of its shops, the
weather and hazards over its maps, the bosses spawned, the dig sites marked and the map
flags set. ``bridge_sync(world, hosts)`` reads that from the world's tables, as rows of the
action kinds that show each thing (``spawn_npc``, ``set_price``, ``set_weather`` with
``on`` = 1, ...), restricted to the maps the server hosts. The bridge sends it in ``sync``
frames right after the ``welcome`` (``bridge/PROTOCOL.md`` section 16); the actions of
later ticks are the deltas.

It only reads state, between ticks, so it changes nothing a digest covers; what it returns
is a function of the state at the tick it is read (the sync's ``tick``), so a replay of the
journal can rebuild any sync a server was sent.

Two columns go beyond the action kinds' fields: ``spawn_npc`` rows carry the NPC's
``name`` (its faction's, as rAthena shows above its head; protocol v1's ``spawn_npc`` has no
name) and ``set_price`` rows its shop's ``stock``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from norn.actors.hazard import H
from norn.engine.world import World

#: rAthena's NAME_LENGTH is 24 with the NUL: a name has at most 23 bytes.
NAME_BYTES_MAX = 23
SITE = 0  # treasure kind of a marked dig site (actors/treasure: SITE, CACHE = 0, 1)


def _on(hosts: np.ndarray | None, maps: np.ndarray) -> np.ndarray:
    """Which of ``maps`` (map ids) the server hosts."""
    maps = np.asarray(maps, np.int64)
    if hosts is None:
        return np.ones(len(maps), bool)
    ok = (maps >= 0) & (maps < len(hosts))
    return ok & hosts[np.where(ok, maps, 0)]


class Mirror:
    """Reads the mirrored state of a built Midgard world (the model keeps one per world)."""

    def __init__(self, worldevent_machine: Any) -> None:
        self.m = worldevent_machine  # flag, flag_value and weather per (event type, stage)

    def rows(self, world: World, hosts: np.ndarray | None) -> dict[str, dict[str, np.ndarray]]:
        """kind -> engine columns (no ``action_id``), kinds in the world's action order."""
        out: dict[str, dict[str, np.ndarray]] = {}
        parts = (self._npcs(world, hosts), self._prices(world, hosts),
                 self._weather(world, hosts), self._hazards(world, hosts),
                 self._bosses(world, hosts), self._sites(world, hosts),
                 self._mapflags(world, hosts))
        found: dict[str, dict[str, np.ndarray]] = {}
        for part in parts:
            for kind, cols in part.items():
                found[kind] = cols
        for kind in world.kinds.actions:  # the world's kind order, as in actions frames
            if kind in found and len(next(iter(found[kind].values()))):
                out[kind] = found[kind]
        return out

    # -- NPCs: where each stands now ------------------------------------------------------
    def _npcs(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        t = world.tables["npc"]
        live = t.live_slots()
        live = live[_on(hosts, t["map"][live])]
        fac = t["faction"][live].astype(np.int64)
        factions = world.resources["factions"]
        names = np.array([n.encode()[:NAME_BYTES_MAX] for n in factions.names], dtype="S24")
        return {"spawn_npc": {
            "npc_id": t.handles(live), "map_id": t["map"][live].astype(np.int16),
            "x": t["x"][live].astype(np.int16), "y": t["y"][live].astype(np.int16),
            "sprite": factions.sprite[fac].astype(np.int16),
            "name": names[fac] if len(fac) else np.zeros(0, "S24")}}

    # -- shops: the price the game server was told (later set_price actions follow) --------
    def _prices(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        mk = world.resources["markets"]
        items = world.resources["items"]
        m = world.tables["market"]
        k = np.flatnonzero(_on(hosts, mk.map))
        return {"set_price": {
            "market_id": k.astype(np.int32), "map_id": mk.map[k].astype(np.int16),
            "item_id": items.ids[mk.item[k]].astype(np.int32),
            "price_zeny": m["announced"][k].astype(np.int32),
            "stock": np.clip(m["stock"][k], 0, 2**31 - 1).astype(np.int32)}}

    # -- weather: hazards shown as weather, and world events' weather ----------------------
    def _weather(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        hz = world.tables["hazard"]
        live = hz.live_slots()
        code = world.resources["hazard_types"].weather[hz["type"][live].astype(np.int64)]
        maps = [hz["map"][live][code > 0].astype(np.int64)]
        codes = [code[code > 0].astype(np.int64)]
        we = world.tables["worldevent"]
        ev = we.live_slots()
        ev = ev[we["gone"][ev] == 0]
        w = self.m.weather[we["type"][ev].astype(np.int64), we["stage"][ev].astype(np.int64)]
        maps.append(we["town"][ev][w > 0].astype(np.int64))
        codes.append(w[w > 0].astype(np.int64))
        pairs = np.unique(np.stack([np.concatenate(maps), np.concatenate(codes)]), axis=1)
        pairs = pairs[:, _on(hosts, pairs[0])]
        n = pairs.shape[1]
        return {"set_weather": {"map_id": pairs[0].astype(np.int16),
                                "weather": pairs[1].astype(np.int16),
                                "on": np.ones(n, np.uint8)}}

    # -- hazards that are not plain weather, at their intensity now --------------------------
    def _hazards(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        hz = world.tables["hazard"]
        live = hz.live_slots()
        types = world.resources["hazard_types"]
        real = types.params[hz["type"][live].astype(np.int64), H["is_weather"]] == 0
        s = live[real]
        s = s[_on(hosts, hz["map"][s])]
        return {"set_hazard": {"map_id": hz["map"][s].astype(np.int16),
                               "hazard_type": hz["type"][s].astype(np.int16),
                               "intensity": hz["intensity"][s].astype(np.float32),
                               "on": np.ones(len(s), np.uint8)}}

    # -- the living world: bosses standing, dig sites marked, map flags set ----------------
    def _bosses(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        t = world.tables["boss"]
        s = t.live_slots()
        s = s[(t["gone"][s] == 0) & _on(hosts, t["map"][s])]
        return {"spawn_monster": {"spawn_id": t["spawn_id"][s], "mob_id": t["mob"][s],
                                  "map_id": t["map"][s], "x": t["x"][s], "y": t["y"][s],
                                  "amount": np.ones(len(s), np.int16)}}

    def _sites(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        t = world.tables["treasure"]
        s = t.live_slots()
        s = s[(t["gone"][s] == 0) & (t["kind"][s] == SITE) & _on(hosts, t["map"][s])]
        return {"mark_dig_site": {"site_id": t["site_id"][s], "map_id": t["map"][s],
                                  "x": t["x"][s], "y": t["y"][s], "on": np.ones(len(s), np.uint8)}}

    def _mapflags(self, world: World, hosts: np.ndarray | None) -> dict[str, Any]:
        we = world.tables["worldevent"]
        ev = we.live_slots()
        ev = ev[(we["gone"][ev] == 0) & _on(hosts, we["town"][ev])]
        typ, stage = we["type"][ev].astype(np.int64), we["stage"][ev].astype(np.int64)
        f = self.m.flag[typ, stage]
        k = f > 0
        return {"set_mapflag": {"map_id": we["town"][ev][k], "flag": f[k],
                                "value": self.m.flag_value[typ, stage][k],
                                "on": np.ones(int(k.sum()), np.uint8)}}


def bridge_sync(world: World, hosts: np.ndarray | None) -> dict[str, dict[str, np.ndarray]]:
    """What a server hosting ``hosts`` (bool per map id; None: every map) must mirror now."""
    return world.resources["mirror"].rows(world, hosts)
