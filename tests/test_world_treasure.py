"""Treasure and archaeology: dig sites and hidden caches on walkable cells of maps that are
not towns, found through ``dig`` events, bounded by ``sites_max`` and ``sites_per_map_max``."""

from __future__ import annotations

import numpy as np
import pytest

from norn.actors.treasure import CACHE, SITE
from tests.living_world import CHAR, Feed, field_maps, login, small_world, tick

SITES = dict(place_every_ticks=1, places_per_tick_max=2, site_share=1.0, site_digs=3)
CACHES = dict(place_every_ticks=1, places_per_tick_max=2, site_share=0.0)


def buried(w, kind: int) -> np.ndarray:
    t = w.tables["treasure"]
    live = t.live_slots()
    return live[t["kind"][live] == kind]


def test_a_dig_site_is_marked_and_the_dig_that_completes_it_wins_its_loot():
    w = small_world(treasure=dict(SITES, places_per_tick_max=1, sites_max=1))
    feed = Feed(w)
    acts = tick(w, 2)
    mark = acts["mark_dig_site"]
    assert mark["on"].tolist() == [1]
    m, x, y = (int(mark[c][0]) for c in ("map_id", "x", "y"))
    assert not w.resources["geography"].is_town[m]
    (s,) = buried(w, SITE)
    items = w.resources["items"]
    loot = int(items.ids[w.tables["treasure"]["item"][s]])
    amount = int(w.tables["treasure"]["amount"][s])
    chars = [CHAR, CHAR + 1, CHAR + 2, CHAR + 3]
    login(feed, w, chars, m)
    r = w.resources["midgard"].spec.rules.treasure.site_radius_cells
    feed("dig", char_id=chars[:2], map_id=[m, m], x=[x, x + r], y=[y, y])  # 2 of 3 digs
    acts = tick(w)
    assert "give_reward" not in acts and w.tables["treasure"]["digs"][s] == 2
    feed("dig", char_id=chars[1:], map_id=[m] * 3, x=[x + r + 1, x, x], y=[y] * 3)
    acts = tick(w)  # the first is out of reach; the second completes it; the third is late
    gr = acts["give_reward"]
    assert gr["char_id"].tolist() == [chars[2]]
    assert gr["item_id"].tolist() == [loot] and gr["amount"].tolist() == [amount]
    assert gr["zeny"].tolist() == [0]
    assert acts["mark_dig_site"]["on"].tolist() == [0]
    assert w.tables["treasure_stats"]["found"][0, SITE] == 1
    assert w.tables["treasure_stats"]["misses"][0] == 1


def test_a_hidden_cache_lies_near_a_player_and_one_dig_in_reach_finds_it():
    w = small_world(treasure=dict(CACHES, places_per_tick_max=1, sites_max=1,
                                  cache_near_cells=10, place_every_ticks=2))
    feed = Feed(w)
    m = int(field_maps(w)[2])
    login(feed, w, [CHAR], m)
    acts = tick(w, 2)
    assert "mark_dig_site" not in acts  # hidden: never announced
    (s,) = buried(w, CACHE)
    t = w.tables["treasure"]
    pl = w.tables["player"]
    p = pl.live_slots()[0]
    assert t["map"][s] == m
    assert abs(int(t["x"][s]) - int(pl["x"][p])) <= 10
    assert abs(int(t["y"][s]) - int(pl["y"][p])) <= 10
    r = int(t["radius"][s])
    x, y = int(t["x"][s]), int(t["y"][s])
    feed("dig", char_id=[CHAR, CHAR], map_id=[m, m], x=[x, x], y=[y + r + 1, y - r])
    acts = tick(w)
    assert acts["give_reward"]["char_id"].tolist() == [CHAR]
    assert w.tables["treasure_stats"]["found"][0, CACHE] == 1


@pytest.mark.parametrize("sites_max", [3, 4])
def test_sites_max_at_the_bound_and_one_past(sites_max):
    w = small_world(treasure=dict(SITES, places_per_tick_max=8, sites_max=sites_max,
                                  sites_per_map_max=sites_max))
    tick(w, 3)
    assert w.tables["treasure"].count == sites_max


@pytest.mark.parametrize("per_map", [1, 2])
def test_sites_per_map_max_at_the_bound_and_one_past(per_map):
    w = small_world(treasure=dict(SITES, places_per_tick_max=16, sites_max=64,
                                  sites_per_map_max=per_map))
    tick(w, 8)
    t = w.tables["treasure"]
    counts = np.bincount(t["map"][t.live_slots()].astype(np.int64))
    assert counts.max() == per_map
    assert t.count == per_map * len(field_maps(w))  # every field filled to its cap


def test_a_daily_reset_buries_a_batch_and_old_finds_are_lost_to_time():
    w = small_world(treasure=dict(SITES, place_every_ticks=1000, daily_caches=3,
                                  site_ttl_ticks=4))
    feed = Feed(w)
    acts = tick(w, 2)
    assert "mark_dig_site" not in acts and w.tables["treasure"].count == 0
    feed("daily_reset", day=1)
    acts = tick(w)
    assert len(acts["mark_dig_site"]["site_id"]) == 3 == w.tables["treasure"].count
    acts = tick(w, 4)
    assert acts["mark_dig_site"]["on"].tolist() == [0, 0, 0]
    assert w.tables["treasure"].count == 0
    assert w.tables["treasure_stats"]["expired"][0, SITE] == 3


def test_dig_sites_are_announced_on_the_maps_adventurers_roam():
    w = small_world(treasure=dict(SITES, place_every_ticks=2, places_per_tick_max=3))
    feed = Feed(w)
    m = int(field_maps(w)[4])
    login(feed, w, [CHAR], m)
    acts = tick(w, 2)
    assert acts["mark_dig_site"]["map_id"].tolist() == [m, m]  # sites_per_map_max = 2
