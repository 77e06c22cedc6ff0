"""World events as state machines: each stage's next depends on what players did in it;
broadcasts, map flags and weather as actions; one per town; bounded by ``events_max``."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest

from norn.actors.midgard.generate import BASE_SCENARIO
from norn.actors.worldevents import FAMINE, FESTIVAL, INVASION
from norn.actors.worldevents.kinds import MAPFLAG_CODES
from norn.engine.errors import ConfigError
from norn.engine.rathena import WEATHER_CODES
from tests.living_world import CHAR, Feed, login, small_world, tick, walkable_cell
from tests.test_world_bosses import poke, surge

BASE = tomllib.loads(BASE_SCENARIO.read_text())["rules"]["worldevents"]


def quick(**types) -> dict:
    """The default event rules checked every tick, every stage 3 ticks long; ``types``
    override parts of an event type (``festival={"chance_per_day": 0.0}``)."""
    rules = copy.deepcopy(BASE)
    rules["check_every_ticks"] = 1
    for t in ("festival", "invasion", "famine"):
        for s in rules[t]["stages"]:
            s["ticks"] = 3
        rules[t].update(types.get(t, {}))
    return rules


def richest_safe_town(w) -> int:
    mk = w.resources["markets"]
    cash = np.bincount(mk.map, weights=w.tables["market"]["cash"][: mk.n],
                       minlength=w.resources["geography"].n_maps)
    towns = np.flatnonzero(w.resources["geography"].is_town)
    return int(towns[np.argmax(cash[towns])])


def test_a_festival_that_players_trade_at_ends_in_a_celebration_with_double_exp():
    w = small_world(worldevents=quick())
    feed = Feed(w)
    tick(w, 1)
    town = richest_safe_town(w)
    feed("daily_reset", day=1)
    acts = tick(w, 1)
    assert w.tables["worldevent"]["type"][w.tables["worldevent"].live_slots()].tolist() == [
        FESTIVAL]
    on = acts["set_weather"]
    assert on["map_id"].tolist() == [town] and on["weather"].tolist() == [
        WEATHER_CODES["fireworks"]]
    assert any(b"festival begins" in t for t in acts["broadcast"]["text"])
    tick(w, 3)  # announce -> fair
    mk = w.resources["markets"]
    item = int(w.resources["items"].ids[mk.item[mk.map == town][0]])
    login(feed, w, [CHAR], town)
    goal = BASE["festival"]["stages"][1]["goal"]
    feed("npc_shop", char_id=[CHAR] * goal, map_id=[town] * goal, item_id=[item] * goal,
         amount=[1] * goal, is_sell=[0] * goal)
    acts = tick(w, 3)  # fair met -> celebration
    flag = acts["set_mapflag"]
    assert flag["flag"].tolist() == [MAPFLAG_CODES["bexp"]] and flag["on"].tolist() == [1]
    assert flag["value"].tolist() == [200] and flag["map_id"].tolist() == [town]
    assert any(b"celebrates" in t and str(goal).encode() in t for t in acts["broadcast"]["text"])
    acts = tick(w, 3)  # celebration -> end: the flags come down
    assert acts["set_mapflag"]["on"].tolist() == [0]
    assert acts["set_weather"]["on"].tolist() == [0]
    st = w.tables["worldevent_stats"]
    assert w.tables["worldevent"].count == 0 and st["ended"][0, FESTIVAL] == 1
    assert st["met"][0, FESTIVAL, 1] == 1


def test_a_festival_nobody_comes_to_fizzles_out():
    w = small_world(worldevents=quick())
    feed = Feed(w)
    feed("daily_reset", day=1)
    tick(w, 1)
    acts = tick(w, 6)  # announce -> fair (no deals) -> fizzle
    assert any(b"fizzles out" in t for t in acts["broadcast"]["text"])
    assert w.tables["worldevent_stats"]["missed"][0, FESTIVAL, 1] == 1


def test_a_surge_next_to_a_town_brings_an_invasion_the_players_repel():
    w = small_world(worldevents=quick(festival={"chance_per_day": 0.0}))
    feed = Feed(w)
    geo = w.resources["geography"]
    town = int(np.flatnonzero(geo.is_town)[0])
    nxt = int(geo.adj[geo.adj_off[town]])  # a map the town's warps lead to
    assert not geo.is_town[nxt]
    surge(w, feed, [nxt])
    acts = tick(w, 2)
    ev = w.tables["worldevent"]
    live = ev.live_slots()
    assert (ev["type"][live] == INVASION).any() and town in ev["town"][live].tolist()
    assert any(b"gather at the gates" in t for t in acts["broadcast"]["text"])
    acts = tick(w, 3)  # warning -> siege: no teleporting out of the town
    assert MAPFLAG_CODES["noteleport"] in acts["set_mapflag"]["flag"].tolist()
    goal = BASE["invasion"]["stages"][1]["goal"]
    x, y = walkable_cell(w, nxt)
    login(feed, w, [CHAR], nxt)
    feed("mob_kill", char_id=[CHAR] * goal, mob_id=[1002] * goal, instance_id=[0] * goal,
         map_id=[nxt] * goal, x=[x] * goal, y=[y] * goal)  # the kills next door count
    acts = tick(w, 3)
    assert any(b"holds" in t for t in acts["broadcast"]["text"])
    assert w.tables["worldevent_stats"]["met"][0, INVASION, 1] == 1


def test_the_war_of_emperium_is_announced_everywhere_and_keeps_festivals_away():
    w = small_world(worldevents=quick())
    feed = Feed(w)
    feed("woe_start", edition=1)
    acts = tick(w, 1)
    assert acts["broadcast"]["map_id"].tolist() == [-1]
    feed("daily_reset", day=1)
    assert "set_weather" not in tick(w, 2)
    assert w.tables["worldevent"].count == 0
    feed("woe_end", edition=1)
    acts = tick(w, 1)
    assert acts["broadcast"]["map_id"].tolist() == [-1]
    assert w.tables["worldevent_stats"]["woe"][0] == 0


@pytest.mark.parametrize("events_max", [1, 2])
def test_events_max_at_the_bound_and_one_past_one_per_town(events_max):
    rules = quick(festival={"chance_per_day": 0.0}, famine={"food_share_max": 1.0})
    rules["events_max"] = events_max
    rules["starts_per_tick_max"] = 8
    w = small_world(markets=150, worldevents=rules)  # three towns
    m = w.tables["market"]
    m["stock"][:] = 0  # every town hungry
    poke(w, "market")
    tick(w, 2)
    ev = w.tables["worldevent"]
    live = ev.live_slots()
    assert ev.count == events_max and len(set(ev["town"][live].tolist())) == events_max
    assert (ev["type"][live] == FAMINE).all()


def test_a_stage_leading_nowhere_is_refused_by_the_scenario():
    rules = quick()
    rules["famine"]["stages"][0]["next_met"] = "feast"
    with pytest.raises(ConfigError, match="feast"):
        small_world(worldevents=rules)


def test_bored_towns_get_the_next_stage_sooner(monkeypatch):
    rules = quick()
    for s in rules["festival"]["stages"]:
        s["ticks"] = 8
    w = small_world(worldevents=rules)
    if "emotion" not in w.resources:
        pytest.skip("this world does not infer players' emotion (actors/emotion)")
    emotion = w.resources["emotion"]
    monkeypatch.setattr(type(emotion), "pace",
                        lambda self, world, maps: np.full(len(maps), 2.0, np.float32))
    feed = Feed(w)
    feed("daily_reset", day=1)
    tick(w, 1)  # announce: 8 ticks at pace 1, 4 at pace 2
    acts = tick(w, 4)
    assert any(b"fair opens" in t for t in acts["broadcast"]["text"])
