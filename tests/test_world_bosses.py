"""Dynamic bosses: a surge that grew or a faction war calls one (a real mob id on a walkable
cell), its death has consequences, it leaves unbeaten, bounded by ``bosses_max``."""

from __future__ import annotations

import numpy as np
import pytest

from norn.actors.bosses import SURGE, WAR, boss_mob
from norn.engine.errors import ConfigError
from tests.living_world import CHAR, Feed, field_maps, login, small_world, tick, walkable_cell

FAST = dict(surge_age_min_ticks=2, check_every_ticks=1)


def surge(world, feed: Feed, maps, intensity: float = 0.9) -> None:
    st = world.resources["midgard"]
    k = st.htype_names.index("monster_surge")
    feed("admin_hazard", map_id=list(maps), hazard_type=[k] * len(maps),
         intensity=[intensity] * len(maps))


def poke(world, table: str) -> None:
    """A test wrote the table directly: mark it for the digest (synctest checks)."""
    t = world.tables[table]
    t.dirty_rows.append((0, max(t.hwm, 1)))


def test_a_surge_calls_a_boss_and_its_death_ends_the_surge_and_pays():
    w = small_world(bosses=FAST)
    feed = Feed(w)
    m = int(field_maps(w)[0])
    surge(w, feed, [m])
    acts = tick(w, 4)
    sp = acts["spawn_monster"]
    assert sp["map_id"].tolist() == [m] and sp["amount"].tolist() == [1]
    rules = w.resources["midgard"].spec.rules.bosses
    assert sp["mob_id"].tolist() == boss_mob(rules, np.array([m]), np.array([SURGE])).tolist()
    assert any(b"appears on" in t for t in acts["broadcast"]["text"])
    b = w.tables["boss"]
    (slot,) = b.live_slots()
    defender = int(b["faction"][slot])
    assert defender >= 0
    treasury = int(w.tables["faction"]["treasury"][defender])
    deeds = float(w.tables["territory"]["deeds"][m, defender])
    stock = w.tables["market"]["stock"].copy()
    login(feed, w, [CHAR], m)
    x, y = walkable_cell(w, m)
    feed("mvp_kill", char_id=CHAR, mob_id=sp["mob_id"], spawn_id=sp["spawn_id"], map_id=m, x=x,
         y=y)
    acts = tick(w)
    paid = min(rules.bounty_zeny, treasury)
    assert acts["give_reward"]["char_id"].tolist() == [CHAR]
    assert acts["give_reward"]["zeny"].tolist() == [paid]
    assert int(w.tables["faction"]["treasury"][defender]) == treasury - paid  # ledger: audited
    assert float(w.tables["territory"]["deeds"][m, defender]) >= deeds + rules.kill_deeds - 1e-3
    grew = w.tables["market"]["stock"] - stock
    assert grew.max() == rules.drop_qty and (grew > 0).sum() == 1  # one town market
    assert any(b"slain on" in t for t in acts["broadcast"]["text"])
    assert b.count == 0
    hz = w.tables["hazard"]
    assert not (hz["map"][hz.live_slots()] == m).any() or tick(w)["set_hazard"]["on"].min() == 0
    stats = w.tables["boss_stats"]
    assert stats["slain"][0, SURGE] == 1 and stats["surges_ended"][0] == 1


def test_an_untagged_kill_names_its_boss_by_map_and_mob_else_it_is_stray():
    w = small_world(bosses=FAST)
    feed = Feed(w)
    m, other = (int(v) for v in field_maps(w)[:2])
    surge(w, feed, [m])
    sp = tick(w, 4)["spawn_monster"]
    login(feed, w, [CHAR], m)
    x, y = walkable_cell(w, m)
    wrong = int(sp["mob_id"][0]) + 1
    ox, oy = walkable_cell(w, other)
    feed("mvp_kill", char_id=[CHAR, CHAR], mob_id=[wrong, int(sp["mob_id"][0])],
         spawn_id=[0, 0], map_id=[m, other], x=[x, ox], y=[y, oy])
    tick(w)
    assert w.tables["boss"].count == 1 and w.tables["boss_stats"]["stray_kills"][0] == 2
    feed("mvp_kill", char_id=CHAR, mob_id=sp["mob_id"], spawn_id=0, map_id=m, x=x, y=y)
    tick(w)
    assert w.tables["boss"].count == 0 and w.tables["boss_stats"]["slain"][0].sum() == 1


def test_a_boss_nobody_kills_leaves_and_a_failed_spawn_is_forgotten():
    w = small_world(bosses=dict(FAST, boss_ttl_ticks=3))
    feed = Feed(w)
    m, n = (int(v) for v in field_maps(w)[:2])
    surge(w, feed, [m])
    sp = tick(w, 4)["spawn_monster"]
    acts = tick(w, 3)
    assert acts["despawn_monster"]["spawn_id"].tolist() == sp["spawn_id"].tolist()
    assert acts["despawn_monster"]["map_id"].tolist() == [m]
    assert w.tables["boss_stats"]["left"][0, SURGE] == 1
    # a game server refusing a spawn: the boss is forgotten, no despawn action for it
    surge(w, feed, [n])
    acts = tick(w, 4)
    ids = acts["spawn_monster"]["action_id"][acts["spawn_monster"]["map_id"] == n]
    feed("action_result", action_id=ids, status=[1], reason=[1])
    acts = tick(w)
    assert "despawn_monster" not in acts
    live = w.tables["boss"].live_slots()
    assert not (w.tables["boss"]["map"][live] == n).any()
    assert w.tables["boss_stats"]["failed"][0] == 1


def test_the_war_of_emperium_calls_war_bosses_to_contested_maps_and_sends_them_home():
    w = small_world(bosses=dict(check_every_ticks=1, war_conflict_min=1.0))
    feed = Feed(w)
    tick(w, 1)
    m = int(field_maps(w)[3])
    terr = w.tables["territory"]
    terr["contested"][m] = 1
    terr["conflict"][m] = 0.1  # below war_conflict_min: no war boss in peace
    poke(w, "territory")
    assert "spawn_monster" not in tick(w, 1)
    feed("woe_start", edition=1)
    acts = tick(w, 1)
    assert acts["spawn_monster"]["map_id"].tolist() == [m]
    rules = w.resources["midgard"].spec.rules.bosses
    assert acts["spawn_monster"]["mob_id"].tolist() == boss_mob(
        rules, np.array([m]), np.array([WAR])).tolist()
    feed("woe_end", edition=1)
    acts = tick(w, 1)
    assert acts["despawn_monster"]["map_id"].tolist() == [m]
    assert w.tables["boss_stats"]["left"][0, WAR] == 1


@pytest.mark.parametrize("bosses_max", [2, 3])
def test_bosses_max_at_the_bound_and_one_past(bosses_max):
    w = small_world(bosses=dict(FAST, bosses_max=bosses_max, spawns_per_tick_max=8))
    feed = Feed(w)
    surge(w, feed, field_maps(w)[:4])
    acts = tick(w, 5)
    assert len(acts["spawn_monster"]["spawn_id"]) == bosses_max == w.tables["boss"].count
    assert len(np.unique(acts["spawn_monster"]["map_id"])) == bosses_max  # one per map


def test_a_bounty_above_the_reward_cap_is_refused_by_the_scenario():
    cap = 50000  # rules.actions.reward_zeny_max of the default rules
    small_world(bosses=dict(bounty_zeny=cap))
    with pytest.raises(ConfigError, match="bounty_zeny"):
        small_world(bosses=dict(bounty_zeny=cap + 1))
