"""Players' economy (actors/economy): trades and vending between players are pressure on
the buyer's town market as NPC orders are, bounded by ``player_pressure_per_tick_max``
(at the bound and one past), and move its price; the vending tax is collected by that
market as the ledger's ``vending_tax`` source, and zeny balances every tick."""

from __future__ import annotations

import numpy as np
import pytest

from norn.actors.midgard import audit
from tests.player_world import CHAR, small_world, tick


def market_of(world, m: int = 0) -> tuple[int, int]:
    """(town map, rAthena item id) of market ``m``."""
    st = world.resources["midgard"]
    return int(st.market_map[m]), int(st.item_ids[st.market_item[m]])


def test_vending_and_trades_press_on_the_buyers_town_market_and_pay_its_tax():
    world, feed = small_world()
    eco = world.resources["midgard"].spec.rules.economy
    home, item = market_of(world)
    feed.login([CHAR, CHAR + 1], home)
    tick(world, synctest=True)
    m = world.tables["market"]
    price = int(m["price"][0])
    sources = world.resource("ledger").accounts(world)[0]
    # dear (demand 3), cheap (supply 2), a gift (supply 4), zeny only (no goods: no
    # pressure), and a buyer nobody knows the map of (unlocated)
    feed("vending_purchase", char_id=[CHAR, CHAR, CHAR + 5], seller_char_id=CHAR + 1,
         item_id=item, amount=[3, 2, 1], price_zeny=[price + 10, max(price - 1, 0), price])
    feed("trade", char_id=[CHAR, CHAR], partner_char_id=CHAR + 1, item_id=[item, 0],
         amount=[4, 0], zeny=[0, 500])
    tick(world, synctest=True)
    assert int(m["p2p_net"][0]) == 3 - 2 - 4
    assert int(m["p2p_units"][0]) == 9
    s = world.tables["market_stats"]
    assert int(s["unlocated"][0]) == 1 and int(s["player_vends"][0]) == 3
    bp = eco.vending_tax_bp
    tax = (price + 10) * 3 * bp // 10000 + max(price - 1, 0) * 2 * bp // 10000
    sources2 = world.resource("ledger").accounts(world)[0]
    assert sources2["vending_tax"] - sources["vending_tax"] == tax == int(s["vending_tax"][0])
    assert audit(world)["difference"] == 0


@pytest.mark.parametrize("extra", [0, 1])
def test_player_pressure_per_tick_max_at_the_bound_and_one_past(extra):
    world, feed = small_world(economy={"player_pressure_per_tick_max": 5})
    home, item = market_of(world)
    feed.login([CHAR, CHAR + 1], home)
    tick(world)
    price = int(world.tables["market"]["price"][0])
    feed("vending_purchase", char_id=CHAR, seller_char_id=CHAR + 1, item_id=item,
         amount=[3, 2 + extra], price_zeny=price + 1)
    tick(world)
    assert int(world.tables["market"]["p2p_net"][0]) == 5
    assert int(world.tables["market_stats"]["pressure_capped"][0]) == extra


def test_player_demand_raises_the_price_against_a_world_without_it():
    prices = []
    for busy in (False, True):
        world, feed = small_world(seed=8)
        st = world.resources["midgard"]
        k = int(np.argmax(st.item_price[st.market_item]))  # the dearest: moves show in zeny
        home, item = market_of(world, k)
        feed.login([CHAR, CHAR + 1], home)
        tick(world)
        for _ in range(15):
            if busy:  # players keep buying it from each other above the shop's price
                p = int(world.tables["market"]["price"][k])
                feed("vending_purchase", char_id=CHAR, seller_char_id=CHAR + 1, item_id=item,
                     amount=200, price_zeny=2 * p)
            tick(world)
        prices.append(int(world.tables["market"]["price"][k]))
        assert audit(world)["difference"] == 0
    assert prices[1] > prices[0], prices


def test_pressure_kernel_is_what_an_order_would_be():
    from norn.rules.pricing import player_pressure

    market = np.array([0, 0, 1, -1, 0])
    units = np.array([4, 3, 2, 9, 5])
    unit_price = np.array([10, 9, 0, 50, 10])
    price = np.array([10, 10], np.int32)
    demand, supply = np.zeros(2, np.int32), np.zeros(2, np.int32)
    left = np.array([10, 10], np.int64)
    net = np.zeros(2, np.int64)
    taken = player_pressure(market, units, unit_price, price, demand, supply, left, net)
    assert taken == 4 + 3 + 2 + 3  # the last is cut at the market's 10 a tick
    assert demand.tolist() == [7, 0] and supply.tolist() == [3, 2] and net.tolist() == [4, -2]
