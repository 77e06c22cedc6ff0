"""The Midgard scenario format: the default world, clear errors, bounds, the generator."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest

from norn.actors.midgard import bridge_view, load
from norn.actors.midgard.generate import generate
from norn.actors.midgard.static import build_static
from norn.actors.midgard.tomlw import dumps
from norn.engine.errors import ConfigError
from norn.engine.scenario import load_scenario, parse_scenario
from tests.helpers import ROOT, norn


@pytest.fixture(scope="module")
def default_data() -> dict:
    return load_scenario("midgard").data


def _err(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        load(data, "bad.toml")
    return str(exc.value)


def test_default_scenario_is_a_recognisable_rune_midgarts(default_data):
    sc = load(default_data, "midgard.toml")
    names = {m.name for m in sc.maps}
    towns = {t.map for t in sc.towns}
    assert {"prontera", "izlude", "geffen", "payon", "morocc", "alberta", "aldebaran"} <= towns
    assert len(sc.maps) >= 30
    assert all(len(n) <= 11 for n in names)
    assert 2000 <= sum(p.count for p in sc.populations) <= 10000
    kinds = ["fire", "plague", "storm", "monster_surge", "clouds", "fog", "snow", "sakura"]
    kinds += ["leaves", "fireworks"]
    assert {h.name for h in sc.hazard_types} >= set(kinds)
    assert {501, 512, 601} <= {i.id for i in sc.items}
    assert sc.rules.economy.item_stack_max == 30000
    st = build_static(sc, "midgard.toml")
    # every map can be reached from Prontera through warps
    p = st.map_id("prontera")
    assert (st.next_local[p, np.arange(st.n_maps) != p] >= 0).all()


def test_unknown_warp_target_names_its_path(default_data):
    data = copy.deepcopy(default_data)
    data["maps"][3]["warps"][1]["to"] = "prontra"
    assert _err(data) == "bad.toml: maps[3].warps[1].to: unknown map 'prontra'"


def test_pydantic_errors_name_the_path_too(default_data):
    data = copy.deepcopy(default_data)
    data["maps"][2]["warps"][0]["x"] = -4
    assert _err(data).startswith("bad.toml: maps[2].warps[0].x: ")
    data = copy.deepcopy(default_data)
    data["rules"]["npc"]["think_margn"] = 0.1
    assert "rules.npc.think_margn: unknown key" in _err(data)
    data = copy.deepcopy(default_data)
    del data["rules"]["economy"]["sell_ratio"]
    assert "rules.economy.sell_ratio: required key is missing" in _err(data)


def _rename_map(data: dict, old: str, new: str) -> None:
    for m in data["maps"]:
        if m["name"] == old:
            m["name"] = new
        for w in m["warps"]:
            if w["to"] == old:
                w["to"] = new
    for key in ("populations", "towns", "initial_hazards"):
        for row in data.get(key, []):
            if row.get("map") == old:
                row["map"] = new
    for f in data["factions"]:
        if f["home"] == old:
            f["home"] = new


def test_map_name_bound_is_eleven_characters(default_data):
    data = copy.deepcopy(default_data)
    i = [m["name"] for m in data["maps"]].index("prt_fild04")
    _rename_map(data, "prt_fild04", "a" * 11)
    load(data, "ok.toml")
    _rename_map(data, "a" * 11, "a" * 12)
    assert f"maps[{i}].name: 'aaaaaaaaaaaa' is longer than 11 characters" in _err(data)


def test_caps_are_checked_at_the_bound_and_one_past(default_data):
    data = copy.deepcopy(default_data)
    cap = data["rules"]["actions"]["reward_zeny_max"]
    data["quests"][0]["reward_zeny"] = cap
    load(data, "ok.toml")
    data["quests"][0]["reward_zeny"] = cap + 1
    assert "quests[0].reward_zeny: exceeds rules.actions.reward_zeny_max" in _err(data)
    data = copy.deepcopy(default_data)
    data["rules"]["economy"]["item_stack_max"] = 30000
    data["rules"]["economy"]["stock_max"] = 30000
    load(data, "ok.toml")
    data["rules"]["economy"]["item_stack_max"] = 30001
    assert "rules.economy.item_stack_max" in _err(data)
    data = copy.deepcopy(default_data)
    stock_max = data["rules"]["economy"]["stock_max"]
    data["towns"][0]["market"][0]["stock"] = stock_max
    load(data, "ok.toml")
    data["rules"]["economy"]["stock_max"] = stock_max - 1
    data["rules"]["economy"]["item_stack_max"] = stock_max - 1
    assert "towns[0].market[0].stock" in _err(data)


def test_unreachable_warp_is_refused(default_data):
    data = copy.deepcopy(default_data)
    m = data["maps"][0]
    w = m["warps"][0]
    # wall the first warp (and the arrival next to it) in with a ring of blocked cells
    x, y = w["x"], w["y"]
    x0, y0 = max(x - 9, 0), max(y - 9, 0)
    x1, y1 = min(x + 9, m["width"] - 1), min(y + 9, m["height"] - 1)
    m["walk"]["blocks"] = [
        [x0, y0, x1, max(y - 8, 0)],
        [x0, min(y + 8, y1), x1, y1],
        [x0, y0, max(x - 8, 0), y1],
        [min(x + 8, x1), y0, x1, y1],
    ]
    sc = load(data, "bad.toml")
    with pytest.raises(ConfigError, match=r"bad.toml: maps\[0\].warps\[1\]: cell .* not walkable"):
        build_static(sc, "bad.toml")


def test_bad_scenario_exits_2_with_one_clear_line(tmp_path, default_data):
    text = (ROOT / "scenarios" / "midgard.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('to = "prt_fild08"', 'to = "prontra"', 1))
    r = norn("run", "--scenario", str(bad), "--ticks", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "warps[" in lines[0] and "unknown map 'prontra'" in lines[0]


def test_toml_writer_round_trips():
    data = {
        "name": "x",
        "n": 3,
        "f": 0.1,
        "tiny": 1e-05,
        "b": True,
        "s": 'quote " and \\ and ü',
        "lst": [1, 2, 3],
        "t": {"a": 1, "sub": {"c": [0.5, 2.0]}},
        "arr": [{"k": 1, "inline": {"z": "w"}, "rows": [{"q": 1}]}, {"k": 2}],
    }
    assert tomllib.loads(dumps(data)) == data


def test_generator_is_deterministic_small_and_round_trips():
    a = generate(maps=12, npcs=500, markets=30, factions=3, hazards=5, seed=3, players=10)
    b = generate(maps=12, npcs=500, markets=30, factions=3, hazards=5, seed=3, players=10)
    assert a.text == b.text and len(a.text) < 50_000
    again = parse_scenario(a.text, "again")
    assert again.data == a.data
    sc1 = load(a.data, "a")
    sc2 = load(again.data, "b")
    assert sc1 == sc2
    assert sum(p.count for p in sc1.populations) == 500
    assert sum(len(t.market) for t in sc1.towns) == 30
    assert len(sc1.factions) == 3 and len(sc1.initial_hazards) == 5
    other = load(generate(maps=12, npcs=500, markets=30, factions=3, hazards=5, seed=4).data, "c")
    assert [m.width for m in other.maps] != [m.width for m in sc1.maps]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_worlds_validate_and_connect(seed):
    params = dict(maps=40, npcs=2000, markets=100, factions=5, hazards=20, seed=seed)
    sc = load(generate(**params).data, "g")
    st = build_static(sc, "g")
    assert (st.next_local[0, 1:] >= 0).all()
    assert len(st.market_map) == 100


def test_generate_needs_its_parameters(default_data):
    data = tomllib.loads(generate(maps=3, npcs=10, markets=2, factions=1, hazards=0, seed=1).text)
    del data["generate"]["npcs"]
    assert "generate.npcs: required key is missing" in _err(data)


def test_bridge_view_names_maps_sizes_and_caps():
    from tests.test_world_invariants import build

    world, _ = build(generate(maps=4, npcs=20, markets=4, factions=2, hazards=1, seed=5))
    view = bridge_view(world)
    st = world.resources["midgard"]
    assert view["map_names"] == st.map_names
    assert view["map_sizes"][0] == (int(st.width[0]), int(st.height[0]))
    assert view["reward_zeny_max"] == st.spec.rules.actions.reward_zeny_max
    assert view["reward_amount_max"] == st.spec.rules.actions.reward_amount_max


def test_event_source_is_a_pure_function_of_seed_and_tick(default_data):
    from norn.actors.midgard import make_event_source

    a = make_event_source(default_data, 5)
    b = make_event_source(default_data, 5)
    ticks = [1, 700, 50, 3, 2000]
    later = [b(t) for t in reversed(ticks)][::-1]
    seqs = []
    for t, bs in zip(ticks, later, strict=True):
        first = a(t)
        assert [x.kind for x in first] == [x.kind for x in bs]
        for x, y in zip(first, bs, strict=True):
            assert x.source == "gen" and x.seq == y.seq
            assert all(np.array_equal(x.columns[k], y.columns[k]) for k in x.columns)
        seqs.append([x.seq for x in first])
    flat = [s for t in sorted(zip(ticks, seqs, strict=True)) for s in t[1]]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)
    logins = [x for t in range(1, 400) for x in a(t) if x.kind == "login"]
    assert logins and all((x.columns["char_id"] != x.columns["account_id"]).all() for x in logins)


def test_summary_tells_what_happened():
    from norn.actors.midgard import summary
    from tests.test_world_invariants import build, step_with_events

    world, source = build(load_scenario("midgard"), seed=2)
    for _ in range(30):
        step_with_events(world, source)
    out = summary(world)
    assert set(out) == {"npcs", "prices", "trade", "hazards", "factions", "decisions", "zeny",
                        "players", "karma", "memory", "emotion", "player_trade", "quests",
                        "bosses", "treasure", "world_events"}
    # the words carry the world's own numbers
    assert out["npcs"].startswith(f"{world.tables['npc'].count} alive; ")
    assert out["hazards"].split(":")[0].endswith(f", {world.tables['hazard'].count} active")
    d = world.decisions.counters
    assert (f"resolver {d['resolved']}, deadline fallback {d['deadline']}, "
            f"invalid {d['invalid']};") in out["decisions"]
    assert out["players"].startswith(f"{world.tables['player'].count} known, ")
    assert out["zeny"].endswith(" (conserved)")
    assert out["karma"].startswith(f"{world.tables['karma'].count} characters; highest: ")
    online = int(world.tables["emotion_map"]["online"].sum())
    assert out["emotion"].startswith(f"{online} online: ")
    assert out["memory"].startswith("NPCs remember ")
    assert " trades and " in out["player_trade"]
    # the living world says what it found, offered, spawned, buried and staged
    qs = world.tables["quest_stats"]
    assert out["quests"].startswith(f"{int(qs['found'][0].sum())} problems found (")
    assert f"{int(qs['offers'][0])} quests offered" in out["quests"]
    spawned = int(world.tables["boss_stats"]["spawned"][0].sum())
    assert out["bosses"].startswith(f"{spawned} appeared (")
    assert out["treasure"].endswith(" still buried") or "; finds: " in out["treasure"]
    assert " started, " in out["world_events"] and "War of Emperium" in out["world_events"]
