"""``norn sim-server``: a simulated rAthena map server with N players, over a real socket.

It plays the part of rAthena end to end: players log in, walk, change maps, kill mobs, die,
level up, talk to NPCs, finish quests, trade, buy from vendors and NPC shops and log out;
a map snapshot (players per map) goes out every ``SNAPSHOT_EVERY`` steps. It executes the
actions the engine sends, in ``action_id`` order across kinds where their effects meet
(PROTOCOL.md section 8: an NPC's last line before its despawn), validating them as the real
server must (known maps, coordinates inside the map, reward caps, character online, zeny
not overflowing int32), and reports a result for each.

Determinism: the events of step ``s`` are a pure function of (seed, players, maps, s), drawn
from ``np.random.default_rng([seed, s])`` and vectorized over players, so two runs with the
same seed send the same stream (``stream_digest`` in the summary), whatever the timing.
Actions received change rewards (zeny, items, NPCs) but never that stream.

The living world (``event_kinds``: the kinds beyond protocol v1 the engine declares, which
``norn run --sim-players`` passes on): the stream then also has the calendar (a
``daily_reset`` every ``DAY_STEPS`` steps, the War of Emperium from ``WOE_STEPS[0]`` to
``WOE_STEPS[1]``, both pure functions of the step), and the server *reacts* to what the
engine asked of it: players on the map of a boss it spawned (``spawn_monster``) kill it
(``mvp_kill`` with its spawn id), players on the map of a dig site it marked
(``mark_dig_site``) dig there, and players off towns dig where they stand (``dig``). The
reactions depend on when actions arrived, so they are counted apart
(``reactions_by_kind``, ``reaction_digest``; ``generated_by_kind`` counts everything sent);
in lockstep they too are a function of the engine's ticks. The new action kinds
(``spawn_monster``, ``despawn_monster``, ``mark_dig_site``, ``set_mapflag``) are executed
and answered always.

With ``lockstep`` (PROTOCOL.md section 14) the *engine's* inputs become timing-free too:
step ``s`` is stamped tick ``first + s`` (``first`` = the welcome's tick + 1); the actions
of tick ``a`` are executed, in tick order, and answered in the batch stamped ``a + lag``;
and tick ``T`` is declared complete only once the engine's mark says every action of tick
``T - lag`` has arrived. After the last step the simulator declares itself done and stops
executing actions (a real map server would go on).

The engine's ids, learned from its actions: which NPC a talk names and which quest a
player finishes are the engine's (``spawn_npc``, ``move_npc`` and ``despawn_npc`` say which
NPCs stand on this server's maps; ``start_quest`` which quests each player was offered),
as a real map server knows them. ``step`` draws a pick for each (the stream digest covers
the picks), and ``bind`` names the target when the step is sent: an NPC on the player's map
(the one drawn when it is there), the oldest quest the player was offered. Before anything
is learned a pick goes out as drawn: an NPC or quest of the server's own scripts, which
the scenario does not know. In lockstep the learning, too, is a function of the ticks.
Actions that arrive with the welcome (joining an engine already running) are executed once
the simulated world exists.

Ids follow rAthena: character ids from 150000, account ids from 2000000 (distinct
numbers); zeny is int32; an item stack holds at most 30,000; map names have at most 11
characters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from norn.actors.bosses.kinds import DESPAWN_MONSTER, MVP_KILL, SPAWN_MONSTER
from norn.actors.treasure.kinds import DIG, MARK_DIG_SITE
from norn.actors.worldevents.kinds import SET_MAPFLAG
from norn.bridge import protocol as proto
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import ActionsFrame, SyncFrame
from norn.engine import clock, limits
from norn.engine.errors import EnvironmentFailure, UserError
from norn.engine.kinds import Kinds
from norn.engine.observe import log_event
from norn.rules.calendar import DAILY_RESET, WOE_END, WOE_START

_log = logging.getLogger("norn.bridge.sim_server")

CHAR_ID_BASE = 150000
ACCOUNT_ID_BASE = 2000000
SNAPSHOT_EVERY = 10

#: The simulator's own map table (name, width, height): what its "map cache" knows. The
#: sizes match scenarios/midgard.toml, so the demo's actions land inside the maps.
SIM_MAPS: tuple[tuple[str, int, int], ...] = (
    ("prontera", 312, 392),
    ("izlude", 268, 244),
    ("geffen", 238, 238),
    ("payon", 300, 300),
    ("morocc", 300, 300),
    ("prt_fild08", 400, 400),
    ("gef_fild10", 400, 400),
    ("pay_fild01", 400, 400),
    ("moc_fild07", 380, 380),
)
TOWNS = frozenset({"prontera", "izlude", "geffen", "payon", "morocc", "alberta", "aldebaran"})

MOB_IDS = np.array([1002, 1007, 1113, 1031, 1063, 1052, 1014, 1018], dtype=np.int32)
NPC_IDS = np.array([110000001, 110000002, 110000003, 110000004], dtype=np.int64)
ITEM_IDS = np.array([501, 502, 503, 504, 505, 909, 1201, 2301], dtype=np.int32)
QUEST_IDS = np.array([1001, 1002, 1003, 2001, 2002], dtype=np.int32)
PHRASES = np.array(
    [b"Hello!", b"Any quests for me?", b"How much for a Red Potion?", b"Where is Geffen?",
     b"Bye.", b"Is the road to Payon safe?", b"I found a Jellopy.", b"Th\xc3\xa9 prices rose!"],
    dtype="S64",
)

#: Behaviours an online player picks from each step, with their probabilities.
BEHAVIOURS: tuple[tuple[str, float], ...] = (
    ("player_move", 0.55),
    ("mob_kill", 0.08),
    ("map_change", 0.01),
    ("player_death", 0.004),
    ("level_up", 0.006),
    ("npc_talk", 0.01),
    ("quest_done", 0.004),
    ("trade", 0.004),
    ("vending_purchase", 0.004),
    ("npc_shop", 0.008),
    ("logout", 0.004),
)
LOGIN_P = 0.08  # an offline player logs in with this probability each step
#: Quests a player holds at once (offered, not finished): more are kept out of its log,
#: as rAthena bounds its quest log too.
quests_open_max = 32

#: Event kinds beyond protocol v1 the simulator can send when the engine declares them.
WORLD_EVENT_KINDS = {k.name: k for k in (DAILY_RESET, WOE_START, WOE_END, DIG, MVP_KILL)}
#: Action kinds beyond protocol v1 it executes.
WORLD_ACTION_KINDS = (SPAWN_MONSTER, DESPAWN_MONSTER, MARK_DIG_SITE, SET_MAPFLAG)
#: Kinds whose effects meet (one NPC registry; a boss spawned and removed; a site or a
#: flag set and cleared): executed across kinds in ``action_id`` order (PROTOCOL.md 8).
NPC_KINDS = frozenset({"spawn_npc", "despawn_npc", "move_npc", "npc_say"})
ORDERED_KINDS = NPC_KINDS | {k.name for k in WORLD_ACTION_KINDS}
DAY_STEPS = 100  # a daily reset at steps 50, 150, 250, ...
WOE_STEPS = (160, 260)  # the War of Emperium starts and ends (once a run)
KILL_P = 0.05  # a boss with players on its map dies with this probability each step
SITE_DIG_P = 0.2  # a marked dig site with players on its map is dug at
FIELD_DIG_P = 0.004  # an online player off town digs where it stands


def sim_schema(event_kinds: Sequence[str] = ()) -> proto.WireSchema:
    """Protocol v1, the living world's actions, and those of its events in ``event_kinds``."""
    kinds = Kinds.protocol_v1()
    kinds.consume("sim", [WORLD_EVENT_KINDS[k] for k in event_kinds if k in WORLD_EVENT_KINDS])
    kinds.emit_by("sim", WORLD_ACTION_KINDS)
    return proto.WireSchema.of(kinds)


class SimWorld:
    """The simulated server's state: players as arrays, NPCs spawned by the engine."""

    def __init__(
        self,
        players: int,
        seed: int,
        maps: Sequence[tuple[str, int, int]] = SIM_MAPS,
        *,
        reward_zeny_max: int = 1_000_000,
        reward_amount_max: int = limits.item_stack_max,
        event_kinds: Sequence[str] = (),
    ) -> None:
        if players < 1:
            raise UserError("--players must be at least 1")
        if not maps:
            raise UserError("the simulator needs at least one map")
        self.n = players
        self.seed = seed
        self.maps = [(str(n), int(w), int(h)) for n, w, h in maps]
        self.map_index = {n: i for i, (n, _, _) in enumerate(self.maps)}
        self.widths = np.array([w for _, w, _ in self.maps], dtype=np.int64)
        self.heights = np.array([h for _, _, h in self.maps], dtype=np.int64)
        self.reward_zeny_max = reward_zeny_max
        self.reward_amount_max = reward_amount_max
        self.char_id = np.arange(CHAR_ID_BASE, CHAR_ID_BASE + players, dtype=np.uint32)
        self.account_id = np.arange(ACCOUNT_ID_BASE, ACCOUNT_ID_BASE + players, dtype=np.uint32)
        self.online = np.zeros(players, dtype=bool)
        self.map = np.zeros(players, dtype=np.int64)
        self.x = np.zeros(players, dtype=np.int64)
        self.y = np.zeros(players, dtype=np.int64)
        self.base_level = np.ones(players, dtype=np.int64)
        self.job_level = np.ones(players, dtype=np.int64)
        self.zeny = np.zeros(players, dtype=np.int64)
        self.items_received = np.zeros(players, dtype=np.int64)
        self.npcs: dict[int, tuple[int, int, int]] = {}
        self._npc_index: tuple[np.ndarray, np.ndarray] | None = None  # (handles, maps)
        self.quests_open: dict[int, list[int]] = {}  # player -> quests offered, not finished
        self.quests_offered = 0
        self.instance_counter = 0
        self.digest = xxhash.xxh3_64()
        self.generated: dict[str, int] = {}
        # the living world: what it may send, what the engine asked of it
        self.event_kinds = frozenset(k for k in event_kinds if k in WORLD_EVENT_KINDS)
        self.schema = sim_schema(sorted(self.event_kinds))
        self.is_town = np.array([n in TOWNS for n, _, _ in self.maps], dtype=bool)
        self.bosses: dict[int, tuple[int, int, int, int]] = {}  # spawn id: map, mob, x, y
        self.sites: dict[int, tuple[int, int, int]] = {}  # site id: map, x, y
        self.flags: dict[tuple[int, int], int] = {}  # (map, flag): value
        # what the engine showed on our maps besides: weather, hazards, shop prices and stock
        self.weather: set[tuple[int, int]] = set()  # (map, weather code)
        self.hazards: dict[tuple[int, int], float] = {}  # (map, hazard type): intensity
        self.prices: dict[int, tuple[int, int, int, int]] = {}  # market: map, item, price, stock
        self.npc_names: dict[int, bytes] = {}
        self.syncs = 0
        self.sync_rows = 0
        self.sync_invalid: dict[str, int] = {}  # sync rows refused, by reason
        self.executed: dict[str, int] = {}
        self.failed: dict[str, int] = {}  # "kind/reason": actions failed so
        self.reaction_digest = xxhash.xxh3_64()
        self.reactions: dict[str, int] = {}

    # -- the event stream -----------------------------------------------------------------
    def step(self, s: int) -> list[tuple[str, dict[str, np.ndarray]]]:
        """The events of step ``s`` as (kind, wire columns); map fields index ``maps``."""
        rng = np.random.default_rng([self.seed, s])
        n = self.n
        out: list[tuple[str, dict[str, np.ndarray]]] = []
        r = rng.random(n)
        pick = rng.random(n)
        u = rng.random((n, 4))

        logging_in = ~self.online & (r < LOGIN_P)
        names = [b for b, _ in BEHAVIOURS]
        cum = np.cumsum([p for _, p in BEHAVIOURS])
        choice = np.where(self.online, np.searchsorted(cum, r, side="right"), len(names))
        which = {name: np.flatnonzero(choice == i) for i, name in enumerate(names)}
        online_idx = np.flatnonzero(self.online)

        # logins first: place the player on a random map, inside it
        li = np.flatnonzero(logging_in)
        if len(li):
            m = (pick[li] * len(self.maps)).astype(np.int64)
            self.map[li] = m
            self.x[li] = (u[li, 0] * self.widths[m]).astype(np.int64)
            self.y[li] = (u[li, 1] * self.heights[m]).astype(np.int64)
            self.online[li] = True
            out.append(("login", self._cols(
                char_id=self.char_id[li], account_id=self.account_id[li], map=self.map[li],
                x=self.x[li], y=self.y[li], base_level=self.base_level[li])))

        i = which["player_move"]
        if len(i):
            m = self.map[i]
            self.x[i] = np.clip(self.x[i] + (u[i, 0] * 15).astype(np.int64) - 7, 0,
                                self.widths[m] - 1)
            self.y[i] = np.clip(self.y[i] + (u[i, 1] * 15).astype(np.int64) - 7, 0,
                                self.heights[m] - 1)
            out.append(("player_move", self._cols(
                char_id=self.char_id[i], map=m, x=self.x[i], y=self.y[i])))

        i = which["mob_kill"]
        if len(i):
            inst = np.where(u[i, 2] < 0.1, self.instance_counter + np.arange(1, len(i) + 1), 0)
            self.instance_counter += len(i)
            out.append(("mob_kill", self._cols(
                char_id=self.char_id[i], mob_id=MOB_IDS[(pick[i] * len(MOB_IDS)).astype(int)],
                instance_id=inst, map=self.map[i], x=self.x[i], y=self.y[i])))

        i = which["map_change"]
        if len(i):
            src = self.map[i].copy()
            dst = (src + 1 + (pick[i] * max(1, len(self.maps) - 1)).astype(np.int64)) % len(
                self.maps)
            self.map[i] = dst
            self.x[i] = (u[i, 0] * self.widths[dst]).astype(np.int64)
            self.y[i] = (u[i, 1] * self.heights[dst]).astype(np.int64)
            out.append(("map_change", self._cols(
                char_id=self.char_id[i], from_map=src, to_map=dst, x=self.x[i], y=self.y[i])))

        i = which["player_death"]
        if len(i):
            out.append(("player_death", self._cols(
                char_id=self.char_id[i], map=self.map[i], x=self.x[i], y=self.y[i])))

        i = which["level_up"]
        if len(i):
            self.base_level[i] = np.minimum(self.base_level[i] + 1, 99)
            self.job_level[i] = np.minimum(self.job_level[i] + (u[i, 2] < 0.5), 50)
            out.append(("level_up", self._cols(
                char_id=self.char_id[i], base_level=self.base_level[i],
                job_level=self.job_level[i])))

        i = which["npc_talk"]
        if len(i):
            out.append(("npc_talk", self._cols(
                char_id=self.char_id[i], npc_id=NPC_IDS[(pick[i] * len(NPC_IDS)).astype(int)],
                text=PHRASES[(u[i, 2] * len(PHRASES)).astype(int)])))

        i = which["quest_done"]
        if len(i):
            out.append(("quest_done", self._cols(
                char_id=self.char_id[i],
                quest_id=QUEST_IDS[(pick[i] * len(QUEST_IDS)).astype(int)])))

        partners = self.char_id[online_idx] if len(online_idx) else self.char_id[:1]
        i = which["trade"]
        if len(i):
            zeny_only = u[i, 3] < 0.3
            out.append(("trade", self._cols(
                char_id=self.char_id[i],
                partner_char_id=partners[(u[i, 2] * len(partners)).astype(int)],
                item_id=np.where(zeny_only, 0, ITEM_IDS[(pick[i] * len(ITEM_IDS)).astype(int)]),
                amount=np.where(zeny_only, 0, 1 + (u[i, 0] * 20).astype(np.int64)),
                zeny=(u[i, 1] * 50_000).astype(np.int64))))

        i = which["vending_purchase"]
        if len(i):
            out.append(("vending_purchase", self._cols(
                char_id=self.char_id[i],
                seller_char_id=partners[(u[i, 2] * len(partners)).astype(int)],
                item_id=ITEM_IDS[(pick[i] * len(ITEM_IDS)).astype(int)],
                amount=1 + (u[i, 0] * 10).astype(np.int64),
                price_zeny=10 + (u[i, 1] * 100_000).astype(np.int64))))

        i = which["npc_shop"]
        if len(i):
            out.append(("npc_shop", self._cols(
                char_id=self.char_id[i], map=self.map[i],
                item_id=ITEM_IDS[(pick[i] * len(ITEM_IDS)).astype(int)],
                amount=1 + (u[i, 0] * 30).astype(np.int64), is_sell=(u[i, 1] < 0.4))))

        i = which["logout"]
        if len(i):
            self.online[i] = False
            out.append(("logout", self._cols(
                char_id=self.char_id[i], account_id=self.account_id[i])))

        if s % SNAPSHOT_EVERY == 0:
            counts = np.bincount(self.map[self.online], minlength=len(self.maps))
            out.append(("map_snapshot", self._cols(
                map=np.arange(len(self.maps)), players=counts)))
        if "daily_reset" in self.event_kinds and s % DAY_STEPS == DAY_STEPS // 2:
            out.append(("daily_reset", self._cols(day=[s // DAY_STEPS + 1])))
        for at, kind in zip(WOE_STEPS, ("woe_start", "woe_end"), strict=True):
            if kind in self.event_kinds and s == at:
                out.append((kind, self._cols(edition=[1])))
        self._account(out)
        return out

    def react(self, s: int) -> list[tuple[str, dict[str, np.ndarray]]]:
        """What players do about what the engine told this server (after ``step(s)``):
        kill the bosses it spawned, dig at the sites it marked, dig where they stand."""
        rng = np.random.default_rng([self.seed, s, 1])
        out: list[tuple[str, dict[str, np.ndarray]]] = []
        on = np.flatnonzero(self.online)
        here = np.bincount(self.map[on], minlength=len(self.maps))
        if "mvp_kill" in self.event_kinds and self.bosses:
            ids = np.array(sorted(self.bosses), np.int64)
            b = np.array([self.bosses[i] for i in ids.tolist()], np.int64).reshape(-1, 4)
            dies = (here[b[:, 0]] > 0) & (rng.random(len(ids)) < KILL_P)
            if dies.any():
                d = np.flatnonzero(dies)
                killer = self._someone_on(b[d, 0], on, rng)
                out.append(("mvp_kill", self._cols(
                    char_id=self.char_id[killer], mob_id=b[d, 1], spawn_id=ids[d], map=b[d, 0],
                    x=b[d, 2], y=b[d, 3])))
                for i in ids[d].tolist():
                    del self.bosses[i]
        if "dig" in self.event_kinds:
            cols: list[np.ndarray] = []
            if self.sites:
                ids = np.array(sorted(self.sites), np.int64)
                site = np.array([self.sites[i] for i in ids.tolist()], np.int64).reshape(-1, 3)
                dug = np.flatnonzero((here[site[:, 0]] > 0) & (rng.random(len(ids)) < SITE_DIG_P))
                if len(dug):
                    who = self._someone_on(site[dug, 0], on, rng)
                    cols.append(np.stack([who, site[dug, 0], site[dug, 1], site[dug, 2]]))
            field = on[~self.is_town[self.map[on]] & (rng.random(len(on)) < FIELD_DIG_P)]
            if len(field):
                cols.append(np.stack([field, self.map[field], self.x[field], self.y[field]]))
            if cols:
                who, m, x, y = np.concatenate(cols, axis=1)
                out.append(("dig", self._cols(char_id=self.char_id[who], map=m, x=x, y=y)))
        for kind, c in out:
            n = len(next(iter(c.values())))
            self.generated[kind] = self.generated.get(kind, 0) + n
            self.reactions[kind] = self.reactions.get(kind, 0) + n
            self._fold(self.reaction_digest, kind, c)
        return out

    def _someone_on(self, maps: np.ndarray, on: np.ndarray, rng: np.random.Generator
                    ) -> np.ndarray:
        """For each map, an online player standing on it (there is one)."""
        order = np.argsort(self.map[on], kind="stable")
        by_map = on[order]
        start = np.searchsorted(self.map[by_map], maps)
        count = np.searchsorted(self.map[by_map], maps, side="right") - start
        return by_map[start + (rng.random(len(maps)) * count).astype(np.int64)]

    def logout_all(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Everyone still online logs out (the end of a session)."""
        i = np.flatnonzero(self.online)
        self.online[i] = False
        out = [("logout", self._cols(char_id=self.char_id[i], account_id=self.account_id[i]))]
        out = out if len(i) else []
        self._account(out)
        return out

    # -- the engine's NPCs and quests, by the ids it sent -------------------------------------
    def bind(self, out: list[tuple[str, dict[str, np.ndarray]]]
             ) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Name the NPCs talked to and the quests finished in a step's events by the
        engine's ids learned from its actions; the picks ``step`` drew stay the stream."""
        for kind, cols in out:
            if kind == "npc_talk" and self.npcs:
                cols["npc_id"] = self._talk_targets(cols["char_id"], cols["npc_id"])
            elif kind == "quest_done" and self.quests_open:
                cols["quest_id"] = self._finished(cols["char_id"], cols["quest_id"])
        return out

    def _talk_targets(self, chars: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """For each talk, a known NPC: on the player's map (the one drawn, when it is that
        NPC, as the engine numbers it now; else one chosen by the draw); none known there,
        the one drawn or one chosen by the draw, wherever it stands."""
        if self._npc_index is None:
            handles = np.array(sorted(self.npcs), dtype=np.int64)
            maps = np.array([self.npcs[h][0] for h in handles.tolist()], dtype=np.int64)
            self._npc_index = (handles, maps)
        handles, maps = self._npc_index
        slots = handles & 0xFFFFFFFF
        out = np.empty(len(chars), dtype=picks.dtype)
        who = chars.astype(np.int64) - CHAR_ID_BASE
        for j, (p, pick) in enumerate(zip(who.tolist(), picks.astype(np.int64).tolist(),
                                          strict=True)):
            drawn = slots == (pick & 0xFFFFFFFF)
            here = maps == self.map[p]
            for among in (here, np.ones(len(handles), dtype=bool)):
                if (drawn & among).any():  # the newest generation of the slot drawn
                    out[j] = handles[np.flatnonzero(drawn & among)[-1]]
                    break
                if among.any():
                    out[j] = handles[np.flatnonzero(among)[pick % int(among.sum())]]
                    break
        return out

    def _offered(self, cols: dict[str, np.ndarray], reason: np.ndarray) -> None:
        """``start_quest`` executed: the quest is in the player's log until finished."""
        ok = reason == 0
        who = cols["char_id"][ok].astype(np.int64) - CHAR_ID_BASE
        for p, q in zip(who.tolist(), cols["quest_id"][ok].tolist(), strict=True):
            log = self.quests_open.setdefault(p, [])
            if q not in log and len(log) < quests_open_max:
                log.append(int(q))
                self.quests_offered += 1

    def _finished(self, chars: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """For each finished quest, the oldest one the player was offered (if any)."""
        out = picks.copy()
        for j, p in enumerate((chars.astype(np.int64) - CHAR_ID_BASE).tolist()):
            log = self.quests_open.get(p)
            if log:
                out[j] = log.pop(0)
                if not log:
                    del self.quests_open[p]
        return out

    @staticmethod
    def _cols(**cols: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in cols.items()}

    def _account(self, out: list[tuple[str, dict[str, np.ndarray]]]) -> None:
        for kind, cols in out:
            self.generated[kind] = self.generated.get(kind, 0) + len(next(iter(cols.values())))
            self._fold(self.digest, kind, cols)

    def _fold(self, digest: Any, kind: str, cols: dict[str, np.ndarray]) -> None:
        digest.update(kind.encode())
        for f in self.schema.events[kind]:
            v = cols[f.name]
            digest.update(v.tobytes() if v.dtype.kind == "S" else v.astype(np.int64).tobytes())

    # -- the join sync: what the engine says stands on our maps now --------------------------
    def apply_sync(self, tick: int, parts: Sequence[SyncFrame]) -> None:
        """Mirror the world's state at ``tick`` on our maps (PROTOCOL.md section 16): what
        the sync names is there, what it does not name is not. Rows are validated as the
        real server must (our map, a cell inside it, a sprite and a name rAthena can show);
        a refused row is counted and skipped."""
        self._npc_index = None
        self.npcs, self.npc_names, self.bosses, self.sites = {}, {}, {}, {}
        self.flags, self.weather, self.hazards, self.prices = {}, set(), {}, {}
        self.syncs += 1
        for part in parts:
            lut = np.array([self.map_index.get(m, -1) for m in part.maps], dtype=np.int64)
            for kind, cols in part.kinds.items():
                n = len(next(iter(cols.values())))
                self.sync_rows += n
                bad = np.zeros(n, dtype=np.int16)

                def refuse(mask: np.ndarray, why: proto.ResultReason, bad=bad) -> None:
                    bad[(bad == 0) & mask] = why

                m = lut[cols["map"].astype(np.int64)] if "map" in cols else np.zeros(n, np.int64)
                refuse(m < 0, proto.ResultReason.UNKNOWN_MAP)
                if "x" in cols:
                    safe = np.maximum(m, 0)
                    x, y = cols["x"].astype(np.int64), cols["y"].astype(np.int64)
                    refuse((x < 0) | (y < 0) | (x >= self.widths[safe])
                           | (y >= self.heights[safe]), proto.ResultReason.OUT_OF_BOUNDS)
                if kind == "spawn_npc":
                    refuse(np.array([len(v) == 0 or len(v) > proto.NPC_NAME_BYTES_MAX
                                     for v in cols["name"].tolist()], dtype=bool),
                           proto.ResultReason.INVALID)
                for code in np.unique(bad[bad != 0]).tolist():
                    name = proto.ResultReason(code).name.lower()
                    self.sync_invalid[name] = self.sync_invalid.get(name, 0) + int(
                        (bad == code).sum())
                for j in np.flatnonzero(bad == 0).tolist():
                    mj = int(m[j])
                    if kind == "spawn_npc":
                        h = int(cols["npc_id"][j])
                        self.npcs[h] = (mj, int(cols["x"][j]), int(cols["y"][j]))
                        self.npc_names[h] = bytes(cols["name"][j])
                    elif kind == "set_price":
                        self.prices[int(cols["market_id"][j])] = (
                            mj, int(cols["item_id"][j]), int(cols["price_zeny"][j]),
                            int(cols["stock"][j]))
                    elif kind == "set_weather":
                        self.weather.add((mj, int(cols["weather"][j])))
                    elif kind == "set_hazard":
                        self.hazards[(mj, int(cols["hazard_type"][j]))] = float(
                            cols["intensity"][j])
                    elif kind == "spawn_monster":
                        self.bosses[int(cols["spawn_id"][j])] = (
                            mj, int(cols["mob_id"][j]), int(cols["x"][j]), int(cols["y"][j]))
                    elif kind == "mark_dig_site":
                        self.sites[int(cols["site_id"][j])] = (mj, int(cols["x"][j]),
                                                               int(cols["y"][j]))
                    elif kind == "set_mapflag":
                        self.flags[(mj, int(cols["flag"][j]))] = int(cols["value"][j])

    # -- executing the engine's actions -----------------------------------------------------
    def execute(self, frame: ActionsFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate and apply a frame of actions; returns (action ids, status, reason).

        Effects follow the frame's ``action_id`` order across kinds (PROTOCOL.md section 8),
        where it matters: the kinds whose effects meet (``ORDERED_KINDS``: the NPC registry,
        bosses, dig sites, map flags) are applied one action at a time, merged by id; the
        rest (rewards, quests, prices, weather, hazards: each kind its own keys) kind by
        kind, vectorised. Validation that reads no state the frame changes (maps, cells,
        players online) is vectorised for every kind. Answers are grouped by kind."""
        ids_out, reason_out = [], []
        ordered: list[tuple[str, dict[str, np.ndarray], np.ndarray | None, np.ndarray]] = []
        done: list[tuple[str, np.ndarray]] = []
        # frame map index -> our map index (-1 unknown); the last slot is "every map" (-1)
        lut = np.array([self.map_index.get(m, -1) for m in frame.maps] + [-2], dtype=np.int64)
        for kind, cols in frame.kinds.items():
            ids = cols["action_id"]
            reason = np.zeros(len(ids), dtype=np.int16)

            def fail(mask: np.ndarray, why: proto.ResultReason, reason=reason) -> None:
                reason[(reason == 0) & mask] = why

            m = None
            if "map" in cols:
                idx = cols["map"].astype(np.int64)
                m = lut[np.where(idx < 0, len(lut) - 1, idx)]
                if kind != "broadcast":
                    fail(m < 0, proto.ResultReason.UNKNOWN_MAP)
                else:
                    fail(m == -1, proto.ResultReason.UNKNOWN_MAP)
            if "x" in cols:
                safe = np.maximum(m, 0)
                x, y = cols["x"].astype(np.int64), cols["y"].astype(np.int64)
                fail((x < 0) | (y < 0) | (x >= self.widths[safe]) | (y >= self.heights[safe]),
                     proto.ResultReason.OUT_OF_BOUNDS)
            if "char_id" in cols:
                who = cols["char_id"].astype(np.int64) - CHAR_ID_BASE
                known = (who >= 0) & (who < self.n)
                here = known & self.online[np.where(known, who, 0)]
                fail(~here, proto.ResultReason.NOT_HERE)
            if kind == "give_reward":
                amount, zeny = cols["amount"].astype(np.int64), cols["zeny"].astype(np.int64)
                fail((amount < 0) | (amount > self.reward_amount_max) | (zeny < 0)
                     | (zeny > self.reward_zeny_max) | ((amount > 0) & (cols["item_id"] <= 0)),
                     proto.ResultReason.REWARD_CAP)
                w = np.where(reason == 0, who, 0)
                fail(self.zeny[w] + zeny > limits.zeny_max, proto.ResultReason.ZENY_OVERFLOW)
                ok = np.flatnonzero(reason == 0)
                np.add.at(self.zeny, who[ok], zeny[ok])
                np.add.at(self.items_received, who[ok], amount[ok])
            elif kind == "set_price":
                p = cols["price_zeny"].astype(np.int64)
                fail((p <= 0) | (cols["item_id"] <= 0), proto.ResultReason.INVALID)
                for j in np.flatnonzero(reason == 0).tolist():
                    k = int(cols["market_id"][j])
                    stock = self.prices.get(k, (0, 0, 0, -1))[3]
                    self.prices[k] = (int(m[j]), int(cols["item_id"][j]), int(p[j]), stock)
            elif kind == "set_hazard":
                fail(~np.isfinite(cols["intensity"]) | (cols["intensity"] < 0),
                     proto.ResultReason.INVALID)
                for j in np.flatnonzero(reason == 0).tolist():
                    key = (int(m[j]), int(cols["hazard_type"][j]))
                    if cols["on"][j]:
                        self.hazards[key] = float(cols["intensity"][j])
                    else:
                        self.hazards.pop(key, None)
            elif kind == "set_weather":
                for j in np.flatnonzero(reason == 0).tolist():
                    key = (int(m[j]), int(cols["weather"][j]))
                    if cols["on"][j]:
                        self.weather.add(key)
                    else:
                        self.weather.discard(key)
            elif kind == "start_quest":
                fail(cols["quest_id"] <= 0, proto.ResultReason.INVALID)
                self._offered(cols, reason)
            elif kind in ORDERED_KINDS:  # applied below, across kinds in id order
                ordered.append((kind, cols, m, reason))
            done.append((kind, reason))
            ids_out.append(ids)
            reason_out.append(reason)
        self._in_order(ordered)
        for kind, reason in done:
            self.executed[kind] = self.executed.get(kind, 0) + int((reason == 0).sum())
            for code in np.unique(reason[reason != 0]).tolist():
                key = f"{kind}/{proto.ResultReason(code).name.lower()}"
                self.failed[key] = self.failed.get(key, 0) + int((reason == code).sum())
        if len(frame.reflected):  # the sync already showed them: done, in their turn, in
            ids_out.append(frame.reflected)  # the frame's id order like all its answers
            reason_out.append(np.zeros(len(frame.reflected), np.int16))
            ids, why = np.concatenate(ids_out), np.concatenate(reason_out)
            order = np.argsort(ids, kind="stable")
            ids_out, reason_out = [ids[order]], [why[order]]
        if len(frame.unsupported):  # kinds our client does not know, answered in turn
            ids_out.append(frame.unsupported)
            reason_out.append(np.full(len(frame.unsupported), proto.ResultReason.UNSUPPORTED,
                                      np.int16))
        ids = np.concatenate(ids_out) if ids_out else np.zeros(0, np.int64)
        reason = np.concatenate(reason_out) if reason_out else np.zeros(0, np.int16)
        status = (reason != 0).astype(np.uint8)
        return ids, status, reason

    def _in_order(self, ordered: list[tuple[str, dict[str, np.ndarray], np.ndarray | None,
                                            np.ndarray]]) -> None:
        """Apply the ``ORDERED_KINDS`` actions of a frame that passed validation, merged
        across kinds in ``action_id`` order (a few a tick, so a loop is fine): an NPC that
        says a line and is despawned in the same tick speaks first, then leaves."""
        if not ordered:
            return
        which = np.concatenate([np.full(len(r), i, np.int64) for i, (_, _, _, r) in
                                enumerate(ordered)])
        row = np.concatenate([np.arange(len(r)) for _, _, _, r in ordered])
        ids = np.concatenate([c["action_id"] for _, c, _, _ in ordered])
        by_id = np.argsort(ids, kind="stable")
        ok = np.concatenate([r == 0 for _, _, _, r in ordered])[by_id]
        for i, j in zip(which[by_id][ok].tolist(), row[by_id][ok].tolist(), strict=True):
            kind, cols, m, reason = ordered[i]
            if kind in NPC_KINDS:
                self._npc(kind, cols, m, reason, j)
            else:
                self._living(kind, cols, m, reason, j)

    def _npc(self, kind: str, cols: dict[str, np.ndarray], m: np.ndarray | None,
             reason: np.ndarray, j: int) -> None:
        """One NPC registry update (npc_duplicate_npc, npc_unload, npc_movenpc, a line)."""
        self._npc_index = None
        npc = int(cols["npc_id"][j])
        if kind == "spawn_npc":
            self.npcs[npc] = (int(m[j]), int(cols["x"][j]), int(cols["y"][j]))
        elif npc not in self.npcs:
            reason[j] = proto.ResultReason.NOT_HERE
        elif kind == "despawn_npc":
            del self.npcs[npc]
        elif kind == "move_npc":
            self.npcs[npc] = (int(m[j]), int(cols["x"][j]), int(cols["y"][j]))

    def _living(self, kind: str, cols: dict[str, np.ndarray], m: np.ndarray | None,
                reason: np.ndarray, j: int) -> None:
        """One boss, dig site or map flag the engine asked for: mob_once_spawn,
        killmonster, viewpoint, setmapflag."""
        if kind == "spawn_monster":
            self.bosses[int(cols["spawn_id"][j])] = (
                int(m[j]), int(cols["mob_id"][j]), int(cols["x"][j]), int(cols["y"][j]))
        elif kind == "despawn_monster":
            if self.bosses.pop(int(cols["spawn_id"][j]), None) is None:
                reason[j] = proto.ResultReason.NOT_HERE  # killed already
        elif kind == "mark_dig_site":
            if cols["on"][j]:
                self.sites[int(cols["site_id"][j])] = (int(m[j]), int(cols["x"][j]),
                                                       int(cols["y"][j]))
            else:
                self.sites.pop(int(cols["site_id"][j]), None)
        elif cols["on"][j]:
            self.flags[(int(m[j]), int(cols["flag"][j]))] = int(cols["value"][j])
        else:
            self.flags.pop((int(m[j]), int(cols["flag"][j])), None)


@dataclass
class SimSummary:
    """What ``norn sim-server`` prints."""

    server_id: str
    seed: int
    players: int
    steps: int
    maps: list[str]
    events_generated: int = 0
    events_sent: int = 0
    events_acked: int = 0
    events_rejected: int = 0
    batches_sent: int = 0
    retransmits: int = 0
    reconnects: int = 0
    actions_received: int = 0
    actions_executed: int = 0
    actions_failed: int = 0
    actions_duplicate: int = 0
    results_acked: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    lockstep: bool = False
    first_tick: int = 0           # lockstep: the tick stamped on step 0
    last_tick: int = 0            # lockstep: the last tick stamped (the final logouts)
    actions_unexecuted: int = 0   # lockstep: arrived after the simulator was done
    generated_by_kind: dict[str, int] = field(default_factory=dict)
    stream_digest: str = ""
    npcs_known: int = 0  # the engine's NPCs on our maps at the end, learned from its actions
    syncs: int = 0  # join syncs applied (one per hello the engine answered with its state)
    sync_rows: int = 0  # rows they held (NPCs, prices, weather, hazards, bosses, sites, flags)
    sync_invalid: dict[str, int] = field(default_factory=dict)  # sync rows refused, by reason
    actions_reflected: int = 0  # actions the sync already showed: answered done, not executed
    failed_by_kind: dict[str, int] = field(default_factory=dict)  # "kind/reason": count
    quests_offered: int = 0  # quests our players were offered (start_quest executed)
    reactions_by_kind: dict[str, int] = field(default_factory=dict)  # in generated_by_kind
    reaction_digest: str = ""
    world_executed: dict[str, int] = field(default_factory=dict)  # the living world's actions
    all_acked: bool = False  # every generated event acked (durable in the engine)
    wall_s: float = 0.0


def run_sim_server(
    connect: str,
    *,
    players: int = 500,
    seed: int = 1,
    duration_s: float = 30.0,
    steps: int | None = None,
    step_ms: int = 100,
    server_id: str = "map01",
    client_config: ClientConfig | None = None,
    connect_timeout_s: float = 10.0,
    drain_timeout_s: float = 30.0,
    reward_zeny_max: int = 1_000_000,
    lockstep: bool = False,
    result_lag: int = 2,
    lockstep_timeout_s: float = 60.0,
    event_kinds: Sequence[str] = (),
) -> SimSummary:
    """Run the simulated map server against the engine at ``connect`` and summarise."""
    if result_lag < 1:
        raise UserError("--result-lag must be at least 1 (the engine cannot answer in-tick)")
    t0 = clock.monotonic()
    holder: dict[str, Any] = {}
    failed: dict[str, int] = {}
    counts = {"done": 0, "failed": 0}
    waiting: list[ActionsFrame] = []  # lockstep: frames until their tick's turn

    # No frame reaches on_sync or on_actions before our world exists: connect() stops at
    # the welcome, and what the first hello (every map) brought after it arrives before
    # the second welcome, which the client drops (PROTOCOL.md section 16).
    def on_sync(tick: int, parts: list[SyncFrame]) -> None:
        if lockstep and holder["world"].syncs:
            # A certification run keeps its own mirror across the engine's restarts: a
            # second sync would make what it does next depend on when the engine died.
            # (The actions it reflects are still answered done, in their turn.)
            return
        holder["world"].apply_sync(tick, parts)
        for frame in waiting:  # lockstep: frames not yet in their turn that it reflects
            reflect(frame, tick)

    def reflect(frame: ActionsFrame, tick: int) -> None:
        """Take what the sync of ``tick`` reflects out of a frame: done already."""
        taken = proto.take_reflected(frame.kinds, tick, client.synced_npcs)
        frame.reflected = np.concatenate([frame.reflected, taken]).astype(np.int64)

    def on_actions(frame: ActionsFrame) -> None:
        if lockstep:
            waiting.append(frame)  # executed in tick order (settle), after the world exists
        else:
            execute(frame)

    def execute(frame: ActionsFrame) -> None:
        ids, status, reason = holder["world"].execute(frame)
        counts["done"] += int((status == 0).sum())
        counts["failed"] += int((status != 0).sum())
        for code in np.unique(reason[status != 0]).tolist():
            name = proto.ResultReason(code).name.lower()
            failed[name] = failed.get(name, 0) + int((reason == code).sum())
        client.report_results(ids, status, reason)

    cfg = client_config or ClientConfig(batch_events=8192, batch_ms=max(10, step_ms // 2))
    cfg.lockstep = lockstep
    cfg.sync = True  # the engine holds its actions for us until it has sent our maps' state
    client = BridgeClient(connect, server_id, maps=[m for m, _, _ in SIM_MAPS], config=cfg,
                          on_actions=on_actions, on_sync=on_sync,
                          schema=sim_schema(event_kinds))
    try:
        if not client.connect(connect_timeout_s):
            raise EnvironmentFailure(f"no welcome from {connect} within {connect_timeout_s} s "
                            f"(is the engine serving? is this server's key allowed?)")
        welcome = client.welcome or {}
        engine_maps = {m[0]: (m[1], m[2]) for m in welcome.get("maps", [])}
        # Our map cache, cut to what the world also has (and to the smaller size, so every
        # position we send is valid for both); no shared map: adopt the world's first few.
        maps = [(n, min(w, engine_maps[n][0]), min(h, engine_maps[n][1]))
                for n, w, h in SIM_MAPS if n in engine_maps]
        if not maps:
            maps = [(n, w, h) for n, (w, h) in list(engine_maps.items())[:8]]
        # Host exactly these maps: actions for other maps go to other servers; and ask for
        # the world's state on them (the join sync, PROTOCOL.md section 16).
        client.rehello([n for n, _, _ in maps])
        log_event(_log, "sim_connected", f"{server_id} connected to {connect} at engine tick "
                  f"{welcome.get('tick', 0)}, hosting {len(maps)} maps", server=server_id,
                  endpoint=connect, tick=welcome.get("tick", 0), maps=len(maps),
                  players=players, lockstep=lockstep)
        world = SimWorld(players, seed, maps, reward_zeny_max=reward_zeny_max,
                         event_kinds=event_kinds)
        holder["world"] = world
        # our map indexes must match the client's table
        client.set_map_table([n for n, _, _ in maps])
        n_steps = steps if steps is not None else max(1, int(duration_s * 1000 / step_ms))
        first = int(welcome.get("tick", 0)) + 1

        def settle(tick: int) -> None:
            """Lockstep: answer, stamped ``tick``, every action of ticks <= tick - lag."""
            upto = tick - result_lag
            end = clock.monotonic() + lockstep_timeout_s
            while client.mark_tick < upto:
                if clock.monotonic() > end:
                    raise EnvironmentFailure(
                        f"lockstep: no mark for engine tick {upto} within {lockstep_timeout_s} s "
                        f"(last mark {client.mark_tick}); is the engine running?")
                client.poll(5)
            client.set_tick(tick)
            due = sorted((f for f in waiting if f.tick <= upto), key=lambda f: f.tick)
            waiting[:] = [f for f in waiting if f.tick > upto]
            for frame in due:
                execute(frame)

        start = clock.monotonic()
        for s in range(n_steps):
            if lockstep:
                settle(first + s)
            for kind, cols in world.bind(world.step(s)):
                client.add_columns(kind, cols)
            for kind, cols in world.react(s):
                client.add_columns(kind, cols)
            if lockstep:
                client.progress(first + s)
            deadline = start + (s + 1) * step_ms / 1000
            while True:
                left = deadline - clock.monotonic()
                client.poll(max(0, int(left * 1000)) if left > 0 else 0)
                # Keep pace, but let a slow engine drain a backlog first (bounded wait).
                if left <= 0 and (client.unacked_batches < cfg.frames_max // 2
                                  or left < -drain_timeout_s):
                    break
        if lockstep:
            settle(first + n_steps)
        for kind, cols in world.logout_all():
            client.add_columns(kind, cols)
        if lockstep:  # done: nothing more will be stamped, so nothing waits for us
            client.progress(proto.SEQ_MAX)
        client.flush()
        end = clock.monotonic() + drain_timeout_s
        while not client.events_durable() and clock.monotonic() < end:
            client.poll(20)
        # answer the actions already under way, then stop (the engine keeps emitting);
        # in lockstep they stay unexecuted: an answer now could only land on a timing tick
        grace = clock.monotonic() + 2 * cfg.batch_ms / 1000 + 1.0
        while not client.idle() and clock.monotonic() < min(grace, end):
            client.poll(10)
        summary = SimSummary(
            server_id=server_id, seed=seed, players=players, steps=n_steps,
            maps=[n for n, _, _ in maps],
        )
        if lockstep:
            summary.lockstep = True
            summary.first_tick, summary.last_tick = first, first + n_steps
            summary.actions_unexecuted = sum(f.count() for f in waiting)
        summary.generated_by_kind = dict(sorted(world.generated.items()))
        summary.events_generated = sum(world.generated.values())
        summary.stream_digest = world.digest.hexdigest()
        summary.npcs_known = len(world.npcs)
        summary.syncs, summary.sync_rows = world.syncs, world.sync_rows
        summary.sync_invalid = dict(sorted(world.sync_invalid.items()))
        summary.failed_by_kind = dict(sorted(world.failed.items()))
        summary.quests_offered = world.quests_offered
        summary.reactions_by_kind = dict(sorted(world.reactions.items()))
        summary.reaction_digest = world.reaction_digest.hexdigest()
        summary.world_executed = {k: v for k, v in sorted(world.executed.items())
                                  if k in {a.name for a in WORLD_ACTION_KINDS}}
        summary.all_acked = client.events_durable()
    finally:
        client.close()
    st = client.stats
    summary.events_sent = st["events_sent"]
    summary.events_acked = st["events_acked"]
    summary.events_rejected = st["events_rejected"]
    summary.batches_sent = st["batches_sent"]
    summary.retransmits = st["retransmits"]
    summary.reconnects = st["reconnects"]
    summary.actions_received = st["actions_received"]
    summary.actions_duplicate = st["actions_duplicate"]
    summary.actions_reflected = st.get("actions_reflected", 0)
    summary.actions_executed = counts["done"]
    summary.actions_failed = counts["failed"]
    summary.results_acked = st["results_acked"]
    summary.failed_by_reason = dict(sorted(failed.items()))
    summary.wall_s = round(clock.monotonic() - t0, 3)
    log_event(_log, "sim_finished", f"{server_id} done: {summary.events_acked} of "
              f"{summary.events_sent} events acked, {summary.events_rejected} rejected, "
              f"{summary.reconnects} reconnects", server=server_id,
              events_sent=summary.events_sent, events_acked=summary.events_acked,
              events_rejected=summary.events_rejected, reconnects=summary.reconnects,
              all_acked=summary.all_acked)
    return summary
