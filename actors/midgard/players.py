"""Players, mirrored from game events: who is online, where, at what level.

The game server owns players; Norn keeps a table of what it was told (login, logout,
map_change, player_move, level_up) so NPCs can react to players near them and factions
can keep reputations. Character id and account id are distinct, as in rAthena. A row is
created the first time a character shows up; when the table is full, the longest-unseen
offline players are evicted and the overflow waits for its next event.
"""

from __future__ import annotations

import numpy as np

from norn.actors.midgard.static import Static
from norn.actors.midgard.tables import lookup, room
from norn.engine.table import Column
from norn.engine.world import World

STAT_COLUMNS = ("logins", "logouts", "moves", "map_changes", "level_ups", "refused", "invalid")


def _last(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each key, in ascending index order."""
    _, rev = np.unique(keys[::-1], return_index=True)
    return np.sort(len(keys) - 1 - rev, kind="stable")


class PlayersPlugin:
    name = "players"

    def __init__(self, st: Static) -> None:
        self.st = st

    def build(self, world: World) -> None:
        pr = self.st.spec.rules.players
        world.consumes("login", "logout", "map_change", "player_move", "level_up")
        world.add_table(
            "player",
            [
                Column("char_id", np.uint32),
                Column("account_id", np.uint32),
                Column("map", np.int16),
                Column("x", np.int16),
                Column("y", np.int16),
                Column("level", np.int16, (), 1),
                Column("online", np.uint8),
                Column("seen", np.int32),
            ],
            pr.players_max,
        )
        stats = world.add_table("player_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.add_system(
            "players.ingest",
            "ingest",
            self.ingest,
            reads=("events",),
            writes=("player.*", "player_stats.*"),
        )

    def _valid_cell(self, m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        st = self.st
        m = m.astype(np.int64)
        ok = (m >= 0) & (m < st.n_maps)
        mc = np.where(ok, m, 0)
        return ok & (x >= 0) & (y >= 0) & (x < st.width[mc]) & (y < st.height[mc])

    def ingest(self, world: World) -> None:
        ev = world.events
        login, change, move = ev["login"], ev["map_change"], ev["player_move"]
        level, logout = ev["level_up"], ev["logout"]
        if not any(len(e["char_id"]) for e in (login, change, move, level, logout)):
            return
        t = world.tables["player"]
        stats = world.tables["player_stats"]
        tick = world.tick
        ok_login = self._valid_cell(login["map_id"], login["x"], login["y"])
        ok_change = self._valid_cell(change["to_map_id"], change["x"], change["y"])
        ok_move = self._valid_cell(move["map_id"], move["x"], move["y"])
        stats["invalid"][0] += int((~ok_login).sum() + (~ok_change).sum() + (~ok_move).sum())
        placing = np.concatenate(
            [login["char_id"][ok_login], change["char_id"][ok_change], move["char_id"][ok_move]]
        ).astype(np.int64)
        live = t.live_slots()
        live_chars = t["char_id"][live].astype(np.int64)
        known = lookup(live_chars, np.unique(placing)) >= 0
        new_chars = np.unique(placing)[~known]
        if len(new_chars) > room(t):
            offline = live[t["online"][live] == 0]
            offline = offline[~np.isin(t["char_id"][offline].astype(np.int64), placing)]
            order = np.argsort(t["seen"][offline], kind="stable")
            evict = offline[order][: len(new_chars) - room(t)]
            if len(evict):
                t.despawn(t.handles(evict))
        k = min(len(new_chars), room(t))
        stats["refused"][0] += len(new_chars) - k
        if k:
            chars = new_chars[:k].astype(np.uint32)
            handles = t.spawn(k, char_id=chars, online=np.ones(k, np.uint8))
            live = np.concatenate([live, handles & 0xFFFFFFFF])
            live_chars = np.concatenate([live_chars, new_chars[:k]])

        def slots_of(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at = lookup(live_chars, chars.astype(np.int64))
            return at >= 0, live[np.maximum(at, 0)]

        if len(login["char_id"]):
            i = _last(login["char_id"])
            i = i[ok_login[i]]
            found, s = slots_of(login["char_id"][i])
            s, i = s[found], i[found]
            t["account_id"][s] = login["account_id"][i]
            t["map"][s] = login["map_id"][i]
            t["x"][s] = login["x"][i]
            t["y"][s] = login["y"][i]
            t["level"][s] = login["base_level"][i]
            t["online"][s] = 1
            t["seen"][s] = tick
            stats["logins"][0] += len(s)
        if len(change["char_id"]):
            i = _last(change["char_id"])
            i = i[ok_change[i]]
            found, s = slots_of(change["char_id"][i])
            s, i = s[found], i[found]
            t["map"][s] = change["to_map_id"][i]
            t["x"][s] = change["x"][i]
            t["y"][s] = change["y"][i]
            t["online"][s] = 1
            t["seen"][s] = tick
            stats["map_changes"][0] += len(s)
        if len(move["char_id"]):
            i = _last(move["char_id"])
            i = i[ok_move[i]]
            found, s = slots_of(move["char_id"][i])
            s, i = s[found], i[found]
            t["map"][s] = move["map_id"][i]
            t["x"][s] = move["x"][i]
            t["y"][s] = move["y"][i]
            t["online"][s] = 1
            t["seen"][s] = tick
            stats["moves"][0] += len(s)
        if len(level["char_id"]):
            i = _last(level["char_id"])
            found, s = slots_of(level["char_id"][i])
            t["level"][s[found]] = level["base_level"][i[found]]
            t["seen"][s[found]] = tick
            stats["level_ups"][0] += int(found.sum())
        if len(logout["char_id"]):
            i = _last(logout["char_id"])
            found, s = slots_of(logout["char_id"][i])
            t["online"][s[found]] = 0
            t["seen"][s[found]] = tick
            stats["logouts"][0] += int(found.sum())
