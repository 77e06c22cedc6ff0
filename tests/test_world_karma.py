"""Karma (actors/karma): each deed's worth as the package docstring states it, decay, the
table's bound at exactly ``characters_max`` and one past, announcements at
``announce_per_tick_max`` and one past, the shop prices karma sets (and the ledger that
still balances), every tick under the invariants, synctest included."""

from __future__ import annotations

import numpy as np
import pytest

from norn.actors.karma import SET_KARMA, price_pct_of
from norn.actors.midgard import audit
from tests.player_world import CHAR, actions, field, small_world, tick, town


def karma_of(world, char: int) -> float:
    return float(world.resources["karma"].of(world, np.array([char]))[0])


def test_each_deed_moves_karma_as_documented():
    world, feed = small_world()
    kr = world.resources["midgard"].spec.rules.karma
    st = world.resources["midgard"]
    a, b, c = CHAR, CHAR + 1, CHAR + 2
    feed.login([a, b, c], town(world))
    tick(world, synctest=True)
    f = field(world)
    danger = float(world.tables["hazard_map"]["danger"][f])
    feed("mob_kill", char_id=[a, a], mob_id=1002, instance_id=0, map_id=f, x=5, y=5)
    feed("player_death", char_id=[b], map_id=f, x=5, y=5)
    feed("quest_done", char_id=[c], quest_id=7001)
    feed("trade", char_id=[a], partner_char_id=[b], item_id=501, amount=2, zeny=100)
    base = int(st.item_price[0])
    item = int(st.item_ids[0])
    fair, gouge = int(base * kr.fair_price_ratio), int(base * kr.fair_price_ratio) + 1
    feed("vending_purchase", char_id=[a, a], seller_char_id=[b, c], item_id=item, amount=1,
         price_zeny=[fair, gouge])
    tick(world, synctest=True)
    kill = kr.kill_karma * (1 + kr.kill_danger_bonus * danger)
    assert karma_of(world, a) == pytest.approx(2 * kill + kr.trade_karma + 2 * kr.vend_karma,
                                               rel=1e-6)
    assert karma_of(world, b) == pytest.approx(kr.death_karma + kr.trade_karma + kr.vend_karma)
    assert karma_of(world, c) == pytest.approx(kr.quest_karma + kr.gouge_karma)
    t = world.tables["karma"]
    row = world.resources["karma"].rows(world, np.array([c]))[0]
    assert (t["quests"][row], t["gouges"][row], t["vends"][row]) == (1, 1, 0)
    assert karma_of(world, CHAR + 99) == 0.0  # a character never seen


def test_karma_is_bounded_and_fades():
    world, feed = small_world(karma={"quest_karma": 150.0, "decay_every_ticks": 4,
                                     "decay_per_tick": 0.01})
    kr = world.resources["midgard"].spec.rules.karma
    feed.login([CHAR], town(world))
    feed("quest_done", char_id=[CHAR, CHAR], quest_id=7001)
    tick(world)  # tick 1
    assert karma_of(world, CHAR) == kr.karma_max  # 300 clamped
    while world.tick % 4:
        tick(world)
    assert karma_of(world, CHAR) == pytest.approx(kr.karma_max * (1 - 0.01 * 4), rel=1e-6)


@pytest.mark.parametrize("extra", [0, 1])
def test_characters_max_at_the_bound_and_one_past(extra):
    world, feed = small_world(karma={"characters_max": 3})
    chars = CHAR + np.arange(3 + extra)
    feed.login(chars, town(world))
    tick(world)
    stats = world.tables["karma_stats"]
    assert world.tables["karma"].count == 3
    assert int(stats["refused"][0]) == extra  # all online: nobody to evict
    if extra:  # one logs out: its row (karma nearest 0) goes to the newcomer
        feed("logout", char_id=[CHAR], account_id=[CHAR + 1_000_000])
        feed("quest_done", char_id=[CHAR + 1], quest_id=7001)
        tick(world)
        feed("player_death", char_id=[CHAR + 3], map_id=field(world), x=5, y=5)
        tick(world)
        assert int(stats["evicted"][0]) == 1
        have = set(world.tables["karma"]["char_id"][world.tables["karma"].live_slots()].tolist())
        assert have == {CHAR + 1, CHAR + 2, CHAR + 3}


@pytest.mark.parametrize("extra", [0, 1])
def test_announcements_at_the_bound_and_one_past(extra):
    world, feed = small_world(karma={"announce_per_tick_max": 4})
    chars = CHAR + np.arange(4 + extra)
    feed.login(chars, town(world))
    feed("quest_done", char_id=chars, quest_id=7001)  # +20: past announce_step
    tick(world)  # rows become alive at this tick's sync point
    tick(world)
    sent = actions(world, "set_karma")
    assert len(sent["char_id"]) == 4
    assert set(sent["char_id"].tolist()) == set(chars[:4].tolist())
    tick(world)
    assert len(actions(world, "set_karma")["char_id"]) == extra  # the one left, next tick
    assert int(world.tables["karma_stats"]["announced"][0]) == 4 + extra


def test_price_change_rounds_to_steps_and_is_bounded():
    assert price_pct_of(np.array([200.0, -200.0, 0.0, 30.0, 50.0]), 200.0, 10, 1).tolist() == [
        -10, 10, 0, -2, -2]  # -1.5 and -2.5 round half to even
    assert price_pct_of(np.array([200.0, 90.0]), 200.0, 9, 2).tolist() == [-8, -4]
    f = {f.name: f for f in SET_KARMA.fields}
    assert f["price_pct"].lo == -50 and f["price_pct"].hi == 50
    assert "pc_setglobalreg" in SET_KARMA.doc and "pc_modifybuyvalue" in SET_KARMA.doc


def test_shops_charge_the_price_change_the_server_was_told_and_zeny_balances():
    world, feed = small_world(karma={"quest_karma": 100.0})
    st = world.resources["midgard"]
    m = 0
    home, item = int(st.market_map[m]), int(st.item_ids[st.market_item[m]])
    feed.login([CHAR, CHAR + 1], home)
    feed("quest_done", char_id=[CHAR], quest_id=7001)  # karma 100: -5% in shops
    tick(world)
    tick(world)  # announced
    assert actions(world, "set_karma")["price_pct"].tolist() == [-5]
    market = world.tables["market"]
    market["stock"][m] = 100
    price = int(market["price"][m])
    ledger = world.resource("ledger")
    before = ledger.accounts(world)[0]["player_purchase"]
    feed("npc_shop", char_id=[CHAR, CHAR + 1], map_id=home, item_id=item, amount=3, is_sell=0)
    tick(world)
    paid = 3 * price * 95 // 100 + 3 * price  # the good-karma buyer pays 5% less
    assert ledger.accounts(world)[0]["player_purchase"] - before == paid
    assert int(world.tables["market_stats"]["karma_priced"][0]) == 1
    assert audit(world)["difference"] == 0
