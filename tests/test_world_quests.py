"""Problems and quests: the world finds problems in its state, offers them as quests,
tracks progress from the game's events and pays from the giver's treasury, within caps."""

from __future__ import annotations

import numpy as np
import pytest

from norn.actors.quests import DECISION_OFFER, HUNT, SUPPLY, quest_ids
from norn.engine.errors import ConfigError
from norn.llm.usecases import KIND_QUEST_OFFER
from tests.living_world import CHAR, Feed, field_maps, login, small_world, tick, walkable_cell
from tests.test_world_bosses import poke, surge

FAST = dict(scan_every_ticks=1, offer_every_ticks=1)


def kills(feed: Feed, w, chars: list[int], m: int) -> None:
    x, y = walkable_cell(w, m)
    n = len(chars)
    feed("mob_kill", char_id=chars, mob_id=[1002] * n, instance_id=[0] * n, map_id=[m] * n,
         x=[x] * n, y=[y] * n)


def test_the_decision_kind_is_the_llm_use_case_kind():
    assert DECISION_OFFER == KIND_QUEST_OFFER


def test_a_monster_surge_becomes_a_hunt_offered_to_players_there_and_paid_when_done():
    w = small_world(quests=FAST)
    feed = Feed(w)
    m = int(field_maps(w)[1])
    login(feed, w, [CHAR, CHAR + 1], m)
    surge(w, feed, [m])
    acts = tick(w, 3)
    rules = w.resources["midgard"].spec.rules.quests
    base = int(quest_ids(rules)[HUNT])
    sq = acts["start_quest"]
    assert sorted(sq["char_id"].tolist()) == [CHAR, CHAR + 1]
    assert sq["quest_id"].tolist() == [base, base]
    p = w.tables["problem"]
    (s,) = p.live_slots()
    giver, zeny = int(p["faction"][s]), int(p["reward_zeny"][s])
    assert 0 < zeny <= rules.reward_zeny_max
    geo = w.resources["geography"]
    voiced = [t for t in acts["broadcast"]["text"] if geo.map_names[m].encode() in t]
    assert voiced and any(str(zeny).encode() in t or b"Slay" in t or b"slay" in t
                          for t in voiced)
    treasury = int(w.tables["faction"]["treasury"][giver])
    kills(feed, w, [CHAR] * (rules.hunt.target - 1), m)
    kills(feed, w, [CHAR + 1], int(field_maps(w)[2]))  # elsewhere: no progress
    assert "give_reward" not in tick(w)
    kills(feed, w, [CHAR], m)
    acts = tick(w)
    gr = acts["give_reward"]
    assert gr["char_id"].tolist() == [CHAR] and gr["zeny"].tolist() == [zeny]
    assert gr["amount"].tolist() == [rules.hunt.reward_amount]
    assert int(w.tables["faction"]["treasury"][giver]) == treasury - zeny
    assert int(p["finished"][s]) == 1
    # a bounty may be taken again (up to finishers_per_day_max a day): offered at once
    assert acts["start_quest"]["char_id"].tolist() == [CHAR] and int(p["takers"][s]) == 2
    # a server that tracks the quest itself says it is done
    feed("quest_done", char_id=CHAR + 1, quest_id=base)
    assert tick(w)["give_reward"]["char_id"].tolist() == [CHAR + 1]
    st = w.tables["quest_stats"]
    assert st["finished"][0, HUNT] == 2 and st["paid_zeny"][0] == 2 * zeny
    # the surge ends: the problem is solved
    k = w.resources["midgard"].htype_names.index("monster_surge")
    feed("admin_hazard", map_id=m, hazard_type=k, intensity=0.0)
    tick(w, 3)
    assert p.count == 0 and st["solved"][0, HUNT] == 1


def test_a_short_market_becomes_a_supply_quest_fed_by_sales_and_trades():
    w = small_world(quests=FAST)
    feed = Feed(w)
    mk = w.resources["markets"]
    m = w.tables["market"]
    k = 0
    town, item = int(mk.map[k]), int(w.resources["items"].ids[mk.item[k]])
    m["stock"][k] = 0
    poke(w, "market")
    login(feed, w, [CHAR], town)
    acts = tick(w, 3)
    base = int(quest_ids(w.resources["midgard"].spec.rules.quests)[SUPPLY])
    assert acts["start_quest"]["quest_id"].tolist() == [base]
    target = w.resources["midgard"].spec.rules.quests.supply.target
    feed("npc_shop", char_id=CHAR, map_id=town, item_id=item, amount=target - 4, is_sell=1)
    feed("npc_shop", char_id=CHAR, map_id=town, item_id=item, amount=5, is_sell=0)  # a buy
    assert "give_reward" not in tick(w)
    feed("trade", char_id=CHAR, partner_char_id=CHAR + 9, item_id=item, amount=4, zeny=10)
    assert tick(w)["give_reward"]["char_id"].tolist() == [CHAR]


def test_rewards_never_exceed_their_caps_and_an_empty_treasury_pays_short():
    w = small_world(quests=dict(FAST, reward_zeny_max=700,
                                hunt=dict(target=1, reward_zeny=20000, reward_item=0,
                                          reward_amount=0, texts=["a {map}", "b", "c"])))
    feed = Feed(w)
    m = int(field_maps(w)[1])
    login(feed, w, [CHAR], m)
    surge(w, feed, [m])
    tick(w, 3)
    p = w.tables["problem"]
    (s,) = p.live_slots()
    assert int(p["reward_zeny"][s]) == 700
    fac = w.tables["faction"]
    giver = int(p["faction"][s])
    fac["treasury"][giver] = 500  # less than the reward
    poke(w, "faction")
    w.resources["ledger"].set_initial(w)  # the test took zeny away: the audit starts anew
    poke(w, "ledger")
    kills(feed, w, [CHAR], m)
    acts = tick(w)
    assert acts["give_reward"]["zeny"].tolist() == [500]
    assert int(fac["treasury"][giver]) == 0
    assert w.tables["quest_stats"]["short_paid"][0] == 1


def test_a_reward_cap_above_the_actions_cap_is_refused():
    small_world(quests=dict(reward_zeny_max=50000))
    with pytest.raises(ConfigError, match="reward_zeny_max"):
        small_world(quests=dict(reward_zeny_max=50001))


@pytest.mark.parametrize("problems_max", [2, 3])
def test_problems_max_at_the_bound_and_one_past(problems_max):
    w = small_world(quests=dict(FAST, problems_max=problems_max, problems_per_scan_max=8))
    feed = Feed(w)
    surge(w, feed, field_maps(w)[:4])
    tick(w, 3)
    assert w.tables["problem"].count == problems_max


@pytest.mark.parametrize("takers", [2, 3])
def test_takers_max_at_the_bound_and_one_past_and_the_daily_cap(takers):
    w = small_world(quests=dict(FAST, takers_max=takers, finishers_per_day_max=takers,
                                hunt=dict(target=1, reward_zeny=100, reward_item=0,
                                          reward_amount=0, texts=["a", "b", "c"])))
    feed = Feed(w)
    m = int(field_maps(w)[1])
    chars = list(range(CHAR, CHAR + 5))
    login(feed, w, chars, m)
    surge(w, feed, [m])
    acts = tick(w, 3)
    offered = acts["start_quest"]["char_id"].tolist()
    assert len(offered) == takers and set(offered) <= set(chars)  # a fair draw among them
    kills(feed, w, offered, m)
    acts = tick(w, 2)  # all done today: no seat is left until the day turns over
    assert len(acts["give_reward"]["char_id"]) == takers and "start_quest" not in acts
    feed("daily_reset", day=1)
    acts = tick(w, 2)
    assert len(acts["start_quest"]["char_id"]) == takers


@pytest.mark.parametrize("per_tick", [1, 2])
def test_offers_per_tick_max_at_the_bound_and_one_past(per_tick):
    w = small_world(quests=dict(FAST, offers_per_tick_max=per_tick))
    feed = Feed(w)
    m = int(field_maps(w)[1])
    login(feed, w, list(range(CHAR, CHAR + 4)), m)
    surge(w, feed, [m])
    tick(w, 1)
    counts = [len(tick(w).get("start_quest", {}).get("char_id", [])) for _ in range(3)]
    assert max(counts) == per_tick and np.sum(counts) <= 4


def test_a_frustrated_low_level_player_is_offered_an_easier_problem(monkeypatch):
    w = small_world(quests=dict(FAST, hunt=dict(target=10, reward_zeny=100, reward_item=0,
                                                reward_amount=0, texts=["a", "b", "c"])))
    if "emotion" not in w.resources:
        pytest.skip("this world does not infer players' emotion (actors/emotion)")
    emotion = w.resources["emotion"]
    monkeypatch.setattr(type(emotion), "difficulty",
                        lambda self, world, chars: np.where(np.asarray(chars) == CHAR, 0.25, 1.0))
    feed = Feed(w)
    m = int(field_maps(w)[1])
    login(feed, w, [CHAR, CHAR + 1], m)
    surge(w, feed, [m])
    tick(w, 3)
    q = w.tables["quest"]
    live = q.live_slots()
    targets = dict(zip(q["char_id"][live].tolist(), q["target"][live].tolist(), strict=True))
    assert targets == {CHAR: 3, CHAR + 1: 10}  # ceil(10 * 0.25), and the normal 10
