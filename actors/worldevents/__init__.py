"""World events and event chains: festivals, invasions and famines as state machines.

An event belongs to a town and runs through the stages its type declares
(``[rules.worldevents.<type>]``). Each stage lasts its ``ticks``; meanwhile the players'
deeds there add to the event's score, and when the stage is over the score decides what
comes next: ``next_met`` if it reached the stage's ``goal``, else ``next_missed`` (or the
end). So each stage starts because of what players did in the last one. Entering a stage
broadcasts its line on the town and sets its map flag (``set_mapflag``, e.g. ``bexp`` for a
celebration) and weather (``set_weather``, e.g. fireworks); leaving it clears them.

What starts an event, and what counts as the players' deeds:

- **festival**: at a daily reset (``daily_reset``), the richest town (market cash) with no
  danger and no event holds one with probability ``chance_per_day`` (never while the War of
  Emperium runs); score: shop deals (``npc_shop``) in the town.
- **invasion**: a town next to a map whose monster surge is ``surge_min`` strong; score:
  monsters killed (``mob_kill``) in the town and on its neighbouring maps.
- **famine**: a town whose food markets hold less than ``food_share_max`` of their target;
  score: units of food sold to its shops.

The War of Emperium (``woe_start``, ``woe_end``) is announced on every map. In a world that
infers players' emotion (the ``emotion`` resource, when the model passes ``emotion=True``)
a stage lasts its ``ticks`` divided by the town's pace (bored players want the next stage
sooner, frustrated ones a breather; at most twice as long). The machine is
vectorised: each stage's numbers live in (type, stage) arrays, so advancing every due
event is a handful of array operations. Tables: ``worldevent`` (type, town, stage, when it
began, score), ``worldevent_stats`` (starts and ends by type, stage entries, met and
missed goals by (type, stage), the War of Emperium) and ``worldevent_log`` (the last stage
changes, for the summary). Invariants: one event per town; every stage within its type.

Resources read: ``geography``, ``items``, ``markets``. The model says which hazard types
are monster surges.
"""

from __future__ import annotations

import numpy as np

from norn.actors.worldevents.kinds import MAPFLAG_CODES, SET_MAPFLAG
from norn.actors.worldevents.schema import END, EventType, WorldEventRules, stages_max
from norn.engine.kinds import TEXT_DTYPE
from norn.engine.rathena import WEATHER_CODES
from norn.engine.rng import register_stream, uniform_array
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.calendar import DAILY_RESET, WOE_END, WOE_START
from norn.rules.catalogue import USE_CODES
from norn.rules.history import History
from norn.rules.tables import room
from norn.rules.texts import fill

__all__ = ["SET_MAPFLAG", "TYPES", "WorldEventPlugin"]

S_FESTIVAL = register_stream("worldevents.festival")
FESTIVAL, INVASION, FAMINE = range(3)
TYPES = ("festival", "invasion", "famine")
FOOD = USE_CODES["food"]
LOG_ROWS = 32
PACE_MIN = 0.5  # a stage lasts at most twice its ticks, however slow the town's pace
STAT_COLUMNS = ("woe", "woe_starts", "woe_ends", "new_day", "days")


class Machine:
    """The stage tables of every event type, as (type, stage) arrays; -1 = the end."""

    def __init__(self, types: tuple[EventType, ...]) -> None:
        T, S = len(types), stages_max
        self.n_stages = np.array([len(t.stages) for t in types], np.int64)
        self.names = [[s.name for s in t.stages] for t in types]
        self.ticks = np.zeros((T, S), np.int64)
        self.goal = np.zeros((T, S), np.int64)
        self.next_met = np.full((T, S), -1, np.int64)
        self.next_missed = np.full((T, S), -1, np.int64)
        self.flag = np.zeros((T, S), np.int64)
        self.flag_value = np.zeros((T, S), np.int64)
        self.weather = np.zeros((T, S), np.int64)
        self.text = np.zeros((T, S), TEXT_DTYPE)
        for i, t in enumerate(types):  # build time: a few types of a few stages
            ix = {s.name: j for j, s in enumerate(t.stages)}
            for j, s in enumerate(t.stages):
                self.ticks[i, j] = s.ticks
                self.goal[i, j] = s.goal
                self.next_met[i, j] = -1 if s.next_met == END else ix[s.next_met]
                self.next_missed[i, j] = -1 if s.next_missed == END else ix[s.next_missed]
                self.flag[i, j] = MAPFLAG_CODES.get(s.mapflag, 0)
                self.flag_value[i, j] = s.mapflag_value
                self.weather[i, j] = WEATHER_CODES.get(s.weather, 0)
                self.text[i, j] = s.text.encode()


class WorldEventPlugin:
    name = "worldevents"
    resources = ("geography", "items", "markets")

    def __init__(self, rules: WorldEventRules, *, monster_hazards: np.ndarray,
                 broadcasts_max: int, emotion: bool = False) -> None:
        self.rules = rules
        if emotion:  # the world infers players' emotion: stages follow the town's pace
            self.resources = (*self.resources, "emotion")
        self.monster = np.asarray(monster_hazards, np.bool_)
        self.broadcasts_max = broadcasts_max
        self.types = (rules.festival, rules.invasion, rules.famine)
        self.m = Machine(self.types)
        self.log = History("worldevent_log", ("type", "town", "stage", "score", "met"),
                           LOG_ROWS)

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.items = world.resource("items")
        self.markets = mk = world.resource("markets")
        self.emotion = world.resource("emotion") if "emotion" in self.resources else None
        n = geo.n_maps
        self.towns = np.flatnonzero(geo.is_town)
        self.map_names = np.array([s.encode() for s in geo.map_names], "S16")
        # warp edges (a, b): a town's neighbourhood is itself and the maps it leads to
        self.edge_src = np.repeat(np.arange(n), np.diff(geo.adj_off))
        self.food_market = self.items.use[mk.item] == FOOD
        world.consumes("mob_kill", "npc_shop", DAILY_RESET, WOE_START, WOE_END)
        world.emits(SET_MAPFLAG, "set_weather", "broadcast")
        T = len(TYPES)
        world.add_table(
            "worldevent",
            [
                Column("type", np.uint8),
                Column("town", np.int16, (), -1),
                Column("stage", np.int16),
                Column("stage_start", np.int32),
                Column("score", np.int32),
                Column("began", np.int32),
                Column("gone", np.uint8),
            ],
            self.rules.events_max,
        )
        stats = world.add_table(
            "worldevent_stats",
            [Column("started", np.int64, (T,)), Column("ended", np.int64, (T,)),
             Column("entered", np.int64, (T, stages_max)), Column("met", np.int64, (T, stages_max)),
             Column("missed", np.int64, (T, stages_max)),
             *(Column(c, np.int64) for c in STAT_COLUMNS)],
            1,
        )
        stats.spawn(1)
        self.log.build(world)
        world.add_system(
            "worldevents.ingest", "ingest", self.ingest, reads=("events", "worldevent.*"),
            writes=("worldevent.score", "worldevent_stats.*", "actions"),
        )
        felt = (f"{self.emotion.map_table}.pace",) if self.emotion is not None else ()
        world.add_system(
            "worldevents.advance", "act", self.advance,
            reads=("worldevent.*", "hazard.*", "hazard_map.danger", "market.stock",
                   "market.target", "market.cash", *felt),
            writes=("worldevent.*", "worldevent_stats.*", "worldevent_log.*", "actions"),
        )

    # -- ingest: the calendar and what players did -----------------------------------------
    def ingest(self, world: World) -> None:
        ev = world.events
        st = world.tables["worldevent_stats"]
        wr = self.rules
        every = np.full(1, -1, np.int16)
        if len(ev["woe_start"]["edition"]):
            st["woe"][0] = 1
            st["woe_starts"][0] += 1
            world.emit("broadcast", map_id=every, text=fill(wr.woe_start_text.encode(), 1))
        if len(ev["woe_end"]["edition"]):  # both in one tick: the siege is over
            st["woe"][0] = 0
            st["woe_ends"][0] += 1
            world.emit("broadcast", map_id=every, text=fill(wr.woe_end_text.encode(), 1))
        if len(ev["daily_reset"]["day"]):
            st["new_day"][0] = 1
            st["days"][0] += 1
        t = world.tables["worldevent"]
        here = t.live_slots()
        here = here[t["gone"][here] == 0]
        if not len(here):
            return
        n = self.geo.n_maps
        kills = self._per_map(ev["mob_kill"]["map_id"], None)
        shop = ev["npc_shop"]
        deals = self._per_map(shop["map_id"], None)
        food = np.zeros(n, np.int64)
        if len(shop["char_id"]):
            idx = self.items.index(shop["item_id"])
            sold = (shop["is_sell"] == 1) & (idx >= 0)
            sold &= self.items.use[np.maximum(idx, 0)] == FOOD
            food = self._per_map(shop["map_id"][sold], shop["amount"][sold])
        # a town's neighbourhood: its kills and those of the maps its warps lead to
        near = kills.copy()
        np.add.at(near, self.edge_src, kills[self.geo.adj])
        typ = t["type"][here]
        town = t["town"][here].astype(np.int64)
        gain = np.where(typ == FESTIVAL, deals[town],
                        np.where(typ == INVASION, near[town], food[town]))
        t["score"][here] = np.minimum(t["score"][here].astype(np.int64) + gain, 2**31 - 1)

    def _per_map(self, maps: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        n = self.geo.n_maps
        m = maps.astype(np.int64)
        ok = (m >= 0) & (m < n)
        w = None if weights is None else weights[ok].astype(np.int64)
        return np.bincount(m[ok], weights=w, minlength=n).astype(np.int64)

    # -- act: stages end and begin, events start -----------------------------------------
    def advance(self, world: World) -> None:
        t = world.tables["worldevent"]
        here = t.live_slots()
        here = here[t["gone"][here] == 0]
        M = self.m
        if len(here):
            typ = t["type"][here].astype(np.int64)
            stage = t["stage"][here].astype(np.int64)
            length = M.ticks[typ, stage].astype(np.float64)
            if self.emotion is not None:  # bored players want it sooner, frustrated later
                pace = self.emotion.pace(world, t["town"][here]).astype(np.float64)
                length = np.ceil(length / np.clip(pace, PACE_MIN, None))
            due = world.tick - t["stage_start"][here] >= length
            s = here[due]
            if len(s):
                self._next(world, s, typ[due], stage[due])
        if world.tick % self.rules.check_every_ticks == 0:
            self._start(world)

    def _next(self, world: World, s: np.ndarray, typ: np.ndarray, stage: np.ndarray) -> None:
        """Due stages end: the score decides the next stage (or the end)."""
        M = self.m
        t = world.tables["worldevent"]
        st = world.tables["worldevent_stats"]
        score = t["score"][s].astype(np.int64)
        goal = M.goal[typ, stage]
        met = score >= goal
        np.add.at(st["met"][0], (typ[met], stage[met]), 1)
        np.add.at(st["missed"][0], (typ[~met], stage[~met]), 1)
        nxt = np.where(met, M.next_met[typ, stage], M.next_missed[typ, stage])
        self._leave(world, s, typ, stage)
        self.log.record(world, type=typ, town=t["town"][s], stage=nxt, score=score,
                        met=met.astype(np.int64))
        end = nxt < 0
        if end.any():
            e = s[end]
            np.add.at(st["ended"][0], typ[end], 1)
            t["gone"][e] = 1
            t.despawn(t.handles(e))
        go = ~end
        if go.any():
            self._enter(world, s[go], typ[go], nxt[go], score[go], goal[go])

    def _leave(self, world: World, s: np.ndarray, typ: np.ndarray, stage: np.ndarray) -> None:
        M = self.m
        town = world.tables["worldevent"]["town"][s]
        f = M.flag[typ, stage]
        k = f > 0
        if k.any():
            world.emit("set_mapflag", map_id=town[k], flag=f[k], value=np.zeros(int(k.sum())),
                       on=np.zeros(int(k.sum()), np.uint8))
        w = M.weather[typ, stage]
        k = w > 0
        if k.any():
            world.emit("set_weather", map_id=town[k], weather=w[k],
                       on=np.zeros(int(k.sum()), np.uint8))

    def _enter(self, world: World, s: np.ndarray, typ: np.ndarray, stage: np.ndarray,
               score: np.ndarray, goal: np.ndarray) -> None:
        M = self.m
        t = world.tables["worldevent"]
        st = world.tables["worldevent_stats"]
        t["stage"][s] = stage
        t["stage_start"][s] = world.tick
        t["score"][s] = 0
        np.add.at(st["entered"][0], (typ, stage), 1)
        town = t["town"][s].astype(np.int64)
        f = M.flag[typ, stage]
        k = f > 0
        if k.any():
            world.emit("set_mapflag", map_id=town[k], flag=f[k], value=M.flag_value[typ, stage][k],
                       on=np.ones(int(k.sum()), np.uint8))
        w = M.weather[typ, stage]
        k = w > 0
        if k.any():
            world.emit("set_weather", map_id=town[k], weather=w[k],
                       on=np.ones(int(k.sum()), np.uint8))
        text = M.text[typ, stage]
        loud = np.flatnonzero(text != b"")[: self.broadcasts_max]
        if len(loud):
            world.emit("broadcast", map_id=town[loud],
                       text=fill(text[loud], len(loud), town=self.map_names[town[loud]],
                                 score=score[loud], goal=goal[loud]))

    def _start(self, world: World) -> None:
        """Towns that call for an event get one (one per town)."""
        wr = self.rules
        geo = self.geo
        n = geo.n_maps
        t = world.tables["worldevent"]
        st = world.tables["worldevent_stats"]
        busy = np.zeros(n, np.bool_)
        busy[t["town"][np.concatenate([t.live_slots(), t.reserved_slots()])].astype(
            np.int64)] = True
        towns = self.towns[~busy[self.towns]]
        # invasion: a monster surge next door
        hz = world.tables["hazard"]
        hl = hz.live_slots()
        surge = np.zeros(n, np.float64)
        mon = self.monster[hz["type"][hl].astype(np.int64)]
        np.maximum.at(surge, hz["map"][hl][mon].astype(np.int64),
                      hz["intensity"][hl][mon].astype(np.float64))
        nearby = np.zeros(n, np.float64)
        np.maximum.at(nearby, self.edge_src, surge[geo.adj])
        invaded = towns[nearby[towns] >= wr.invasion.surge_min]
        # famine: the town's food markets hold too little
        mk = self.markets
        m = world.tables["market"]
        food = self.food_market
        stock = np.bincount(mk.map[food], weights=m["stock"][: mk.n][food], minlength=n)
        target = np.bincount(mk.map[food], weights=m["target"][: mk.n][food], minlength=n)
        hungry = towns[(target[towns] > 0)
                       & (stock[towns] < wr.famine.food_share_max * target[towns])]
        # festival: a new day, the richest safe town, by chance
        fest = np.empty(0, np.int64)
        if st["new_day"][0] and not st["woe"][0]:
            st["new_day"][0] = 0
            danger = world.tables["hazard_map"]["danger"][:n]
            cash = np.bincount(mk.map, weights=m["cash"][: mk.n], minlength=n)
            safe = towns[danger[towns] <= 0]
            if len(safe):
                best = safe[np.argmax(cash[safe])]
                u = uniform_array(world.stream_seed(), world.tick, S_FESTIVAL,
                                  np.array([best]), 0)
                if u[0] < wr.festival.chance_per_day:
                    fest = np.array([best])
        st["new_day"][0] = 0
        town = np.concatenate([invaded, hungry, fest]).astype(np.int64)
        typ = np.concatenate([np.full(len(invaded), INVASION), np.full(len(hungry), FAMINE),
                              np.full(len(fest), FESTIVAL)]).astype(np.int64)
        _, first = np.unique(town, return_index=True)  # one per town: invasion first
        first = np.sort(first, kind="stable")[: min(wr.starts_per_tick_max, room(t))]
        if not len(first):
            return
        town, typ = town[first], typ[first]
        k = len(town)
        handles = t.spawn(k, type=typ, town=town, began=np.full(k, world.tick))
        np.add.at(st["started"][0], typ, 1)
        zero = np.zeros(k, np.int64)
        self.log.record(world, type=typ, town=town, stage=zero, score=zero, met=zero + 1)
        self._enter(world, handles & 0xFFFFFFFF, typ, zero, zero, zero)

    def history(self, world: World) -> dict[str, np.ndarray]:
        return self.log.recent(world)


def describe(world: World, rules: WorldEventRules) -> str:
    """World events of the run, stage by stage, in words: for the model's summary."""
    st = world.tables["worldevent_stats"]
    geo = world.resources["geography"]
    names = [[s.name for s in t.stages] for t in (rules.festival, rules.invasion, rules.famine)]
    log = History("worldevent_log", ("type", "town", "stage", "score", "met"),
                  LOG_ROWS).recent(world)
    chains: dict[tuple[int, int], list[str]] = {}
    for typ, town, stage, score, met, tick in zip(log["type"], log["town"], log["stage"],
                                                  log["score"], log["met"], log["tick"],
                                                  strict=True):
        key = (int(typ), int(town))
        step = names[key[0]][int(stage)] if stage >= 0 else "end"
        if key in chains and chains[key][-1] != "end":
            chains[key][-1] += f" ({int(score)}, {'met' if met else 'missed'})"
            chains[key].append(step)
        else:
            chains[key] = [f"t{int(tick)} {step}"]
    story = [f"{TYPES[t]} in {geo.map_names[m]}: {' -> '.join(c)}" for (t, m), c in
             chains.items()]
    started, ended = st["started"][0], st["ended"][0]
    return (", ".join(f"{int(started[k])} {TYPES[k]}s" for k in range(len(TYPES)))
            + f" started, {int(ended.sum())} over; War of Emperium: "
            f"{int(st['woe_starts'][0])} started, {int(st['woe_ends'][0])} ended"
            f"{' (running now)' if st['woe'][0] else ''}; {int(st['days'][0])} daily resets"
            + (f"; {'; '.join(story[-4:])}" if story else ""))
