"""Market rules: deterministic clearing of orders, and bounded price adjustment.

Clearing walks each market's orders in the canonical inbox order (players' shop events
first, in event order, then NPC orders by source slot): integer stock and zeny only, so
the outcome is exact. Prices follow excess demand, smoothed by an exponential moving
average, plus a pull toward the market's stock target; one tick's move is capped at
``price_step_max`` and the price never leaves its band around the base price.

The band's bottom is never below the item's shop-exploit floor (``exploit_floor``):
rAthena's own rule (``npc_parse_shop``) that a player buying from an NPC with Discount
(up to 24% off, taken as 25%) and selling back with Overcharge (up to 24% more) cannot
profit, ``price x 0.75 >= sell x 1.24``, ``sell`` being the item database's sell price
(rAthena's default: buy / 2).
"""

from __future__ import annotations

import numba
import numpy as np

from norn.engine.rng import uniform

#: rAthena's shop-exploit rule in integers: price x DISCOUNT_KEEP_PCT >= sell x
#: OVERCHARGE_PCT (npc.cpp: ``value * 0.75 < value_sell * 1.24`` is refused).
DISCOUNT_KEEP_PCT = 75
OVERCHARGE_PCT = 124

# counters written by the kernels (indices into a stats vector)
C_NPC_BOUGHT, C_NPC_SOLD, C_REFUSED, C_PLAYER_BOUGHT, C_PLAYER_SOLD, C_UNKNOWN = range(6)


def default_sell(buy: np.ndarray) -> np.ndarray:
    """rAthena's sell price of an item whose database entry gives none: buy / 2."""
    return np.asarray(buy, np.int64) // 2


def exploit_floor(sell: np.ndarray) -> np.ndarray:
    """The lowest shop price at which Discount and Overcharge give no profit, per item:
    ``ceil(sell x 124 / 75)`` (exact integers), at least 1."""
    s = np.asarray(sell, np.int64)
    return np.maximum((s * OVERCHARGE_PCT + DISCOUNT_KEEP_PCT - 1) // DISCOUNT_KEEP_PCT, 1)


@numba.njit(cache=True, nogil=True)
def sell_unit(price, sell_ratio):
    """What a market pays per unit it buys: its price times ``sell_ratio``, at least 1."""
    return max(np.int64(price * sell_ratio), 1)


@numba.njit(cache=True, nogil=True)
def clear_players(market, is_sell, amount, pct, stock, price, cash, demand, supply, stock_max,
                  sell_ratio, stats):
    """Players' shop events, in event order. Returns (zeny paid in, zeny paid out).

    ``pct`` is each buyer's or seller's price change in percent (their karma, as the game
    server applies it): a purchase costs ``take * price * (100 + pct) // 100``, a sale
    pays ``sell_unit * (100 - pct) // 100`` a unit (at least 1).
    """
    paid_in = 0
    paid_out = 0
    for e in range(len(market)):
        m = market[e]
        a = np.int64(amount[e])
        if m < 0 or a <= 0:
            stats[C_UNKNOWN] += 1
            continue
        if is_sell[e] == 0:
            demand[m] += a
            take = min(a, np.int64(stock[m]))
            cost = take * np.int64(price[m]) * (100 + np.int64(pct[e])) // 100
            stock[m] -= take
            cash[m] += cost
            paid_in += cost
            stats[C_PLAYER_BOUGHT] += take
        else:
            supply[m] += a
            unit = max(sell_unit(price[m], sell_ratio) * (100 - np.int64(pct[e])) // 100, 1)
            take = min(min(a, stock_max - np.int64(stock[m])), cash[m] // unit)
            take = max(take, 0)
            cost = take * unit
            stock[m] += take
            cash[m] -= cost
            paid_out += cost
            stats[C_PLAYER_SOLD] += take
    return paid_in, paid_out


@numba.njit(cache=True, nogil=True)
def player_pressure(market, units, unit_price, price, demand, supply, left, net):
    """Trades between players as market pressure, in event order (``market`` -1: none).

    A trade at or above the market's price is demand, one below it (a gift: price 0) is
    supply, as an NPC order priced there would be; a market takes at most ``left[m]``
    units this tick (``left`` is decremented). ``net`` accumulates demand - supply.
    Returns the units taken.
    """
    taken = 0
    for e in range(len(market)):
        m = market[e]
        if m < 0:
            continue
        u = min(np.int64(units[e]), np.int64(left[m]))
        if u <= 0:
            continue
        left[m] -= u
        if unit_price[e] >= price[m]:
            demand[m] += u
            net[m] += u
        else:
            supply[m] += u
            net[m] -= u
        taken += u
    return taken


@numba.njit(cache=True, nogil=True)
def clear_orders(offsets, o_src, o_src_gen, o_side, o_item, o_qty, o_limit, o_escrow,
                 stock, price, cash, demand, supply, stock_max, sell_ratio,
                 f_dst, f_dst_gen, f_src, f_seq, f_zeny, f_qty, f_item, f_side, stats):
    """NPC orders by market, in canonical order; one fill back per order. Returns fills."""
    n = 0
    for m in range(len(offsets) - 1):
        for seq, k in enumerate(range(offsets[m], offsets[m + 1])):
            q = np.int64(o_qty[k])
            if o_side[k] == 0:  # buy at the market price if within the order's limit
                demand[m] += q
                p = np.int64(price[m])
                take = min(q, np.int64(stock[m])) if p <= o_limit[k] else 0
                cost = take * p
                stock[m] -= take
                cash[m] += cost
                f_zeny[n] = o_escrow[k] - cost
                f_qty[n] = take
                stats[C_NPC_BOUGHT] += take
            else:  # sell: the market pays its buying price for what it has room and cash for
                supply[m] += q
                unit = sell_unit(price[m], sell_ratio)
                take = max(min(min(q, stock_max - np.int64(stock[m])), cash[m] // unit), 0)
                cost = take * unit
                stock[m] += take
                cash[m] -= cost
                f_zeny[n] = cost
                f_qty[n] = q - take  # unsold goods go back
                stats[C_NPC_SOLD] += take
            if take == 0:
                stats[C_REFUSED] += 1
            f_dst[n] = o_src[k]
            f_dst_gen[n] = o_src_gen[k]
            f_src[n] = m
            f_seq[n] = seq
            f_item[n] = o_item[k]
            f_side[n] = o_side[k]
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def adjust_prices(stock, target, price, price_x, lo, hi, demand, supply, d_ema, s_ema,
                  ema_rate, elasticity, step_max, pressure_floor, stock_weight):
    """Move each price by its bounded excess-demand step; returns (rises, falls).

    ``lo`` includes the item's shop-exploit floor (``exploit_floor``); a price is never
    written below it, whatever ``price_x`` says."""
    rises = 0
    falls = 0
    a = np.float32(ema_rate)
    for m in range(len(price)):
        de = d_ema[m] + a * (np.float32(demand[m]) - d_ema[m])
        se = s_ema[m] + a * (np.float32(supply[m]) - s_ema[m])
        d_ema[m] = de
        s_ema[m] = se
        pressure = (np.float64(de) - np.float64(se)) / max(np.float64(de) + se, pressure_floor)
        tgt = max(np.float64(target[m]), 1.0)
        st = stock_weight * (tgt - np.float64(stock[m])) / tgt
        st = min(max(st, -1.0), 1.0)
        x = elasticity * (pressure + st)
        x = min(max(x, -step_max), step_max)
        px = price_x[m] * (1.0 + x)
        px = min(max(px, np.float64(lo[m])), np.float64(hi[m]))
        price_x[m] = px
        p = np.int64(px + 0.5)
        p = min(max(p, np.int64(lo[m])), np.int64(hi[m]))
        if p > price[m]:
            rises += 1
        elif p < price[m]:
            falls += 1
        price[m] = p
        demand[m] = 0
        supply[m] = 0
    return rises, falls


@numba.njit(cache=True, nogil=True)
def shocks_and_restock(seed, tick, stream, market_map, stock, target, supply_loss, restock,
                       stock_max, stats_lost):
    """Hazards on a town destroy a share of its stock (rounded by a draw); then restock."""
    lost = 0
    for m in range(len(stock)):
        loss_rate = supply_loss[market_map[m]]
        s = np.int64(stock[m])
        if loss_rate > 0 and s > 0:
            v = s * np.float64(loss_rate)
            k = np.int64(v)
            if uniform(seed, tick, stream, m, 0) < v - k:
                k += 1
            k = min(k, s)
            s -= k
            lost += k
        if restock > 0 and s < target[m]:
            s = min(min(s + restock, np.int64(target[m])), stock_max)
        stock[m] = s
    stats_lost[0] += lost
