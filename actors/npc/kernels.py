"""The NPC population kernels: one parallel pass over every NPC, one sequential collect.

``npc_step`` runs the whole tier-1 rule set for each NPC independently (needs, harm, mood,
utility-based choice, movement, warps, work): every write goes to the NPC's own row or its
own ``flags`` entry, so ``prange`` splits the population across threads with disjoint
writes and the result does not depend on the thread count. Everything that touches shared
data (orders to markets, decision requests, deaths, actions, counters) is flagged and done
afterwards by ``npc_collect``, sequentially in slot order, so caps cut deterministically.
"""

from __future__ import annotations

import numba
import numpy as np

from norn.engine.rng import _block, register_stream, uniform
from norn.rules.grid import place, step_random, step_toward
from norn.rules.utility import (
    COMFORT,
    COURAGE,
    DILIGENCE,
    FATIGUE,
    FLEE,
    GREED,
    HUNGER,
    IDLE,
    REST,
    SETUP,
    SOCIABILITY,
    SOCIAL,
    STATE_MASK,
    TALK,
    TRADE,
    TRAVEL,
    UW_INERTIA,
    UW_TRADE_FATIGUE,
    WANDER,
    WORK,
    best_two,
    noise8,
    utilities,
)

S_NPC = register_stream("npc.step")
S_THINK = register_stream("npc.think")
S_SPAWN = register_stream("npc.spawn")
S_HARM = register_stream("npc.harm")

# npc.mind bits
PONDER = 1
AWAIT = 2

# flags written by npc_step, one per NPC per tick
F_MOVED = 1
F_WARPED = 2
F_ORDER = 4
F_PONDER = 8
F_DIED = 16
F_FLED = 32
F_PAID = 64
F_GREET = 128

# layout of the float64 parameter vector (built from rules.npc by ``params``)
NP_KEYS = (
    "hunger_per_tick",
    "fatigue_per_tick",
    "work_fatigue_per_tick",
    "rest_recovery_per_tick",
    "social_per_tick",
    "talk_relief_per_tick",
    "comfort_per_tick",
    "hp_max",
    "hurt_hp_per_tick",
    "regen_every_ticks",
    "mood_rate",
    "mood_base",
    "mood_need_weight",
    "mood_danger_weight",
    "mood_conflict_weight",
    "alarm_danger",
    "wander_move_every_ticks",
    "travel_move_every_ticks",
    "flee_cells_per_tick",
    "react_radius_cells",
    "react_scan_max",
    "wage_zeny",
    "produce_value_zeny",
    "wallet_max",
    "think_margin",
    "decision_requests_per_tick_max",
    "decision_deadline_ticks",
    "buy_qty_max",
    "buy_need_min",
    "bid_slack",
    "update_every_ticks",
)
(
    P_HUNGER,
    P_FATIGUE,
    P_WORK_FATIGUE,
    P_REST_RECOVERY,
    P_SOCIAL,
    P_TALK_RELIEF,
    P_COMFORT,
    P_HP_MAX,
    P_HURT_HP,
    P_REGEN_EVERY,
    P_MOOD_RATE,
    P_MOOD_BASE,
    P_MOOD_NEED_W,
    P_MOOD_DANGER_W,
    P_MOOD_CONFLICT_W,
    P_ALARM,
    P_WANDER_EVERY,
    P_TRAVEL_EVERY,
    P_FLEE_CELLS,
    P_REACT_RADIUS,
    P_REACT_SCAN,
    P_WAGE,
    P_PRODUCE_VALUE,
    P_WALLET_MAX,
    P_MARGIN,
    P_REQUESTS_MAX,
    P_DEADLINE,
    P_BUY_QTY_MAX,
    P_BUY_NEED_MIN,
    P_BID_SLACK,
    P_UPDATE_EVERY,
) = range(len(NP_KEYS))

DURATION_KEYS = ("idle", "wander", "travel", "work", "trade", "rest", "flee", "talk")


def params(npc_rules: object) -> tuple[np.ndarray, np.ndarray]:
    """(float64 parameter vector, int64 (8, 2) duration ranges by state) from rules.npc."""
    p = np.array([float(getattr(npc_rules, k)) for k in NP_KEYS], dtype=np.float64)
    d = npc_rules.durations
    dur = np.array([[getattr(d, k).min, getattr(d, k).max] for k in DURATION_KEYS], np.int64)
    return p, dur


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp01(v):
    return min(max(v, np.float32(0.0)), np.float32(1.0))


@numba.njit(cache=True, nogil=True)
def _duration(DUR, s, word):
    lo = DUR[s, 0]
    span = DUR[s, 1] - lo + 1
    return lo + np.int64(word % np.uint32(span))


@numba.njit(cache=True, nogil=True)
def _player_near(m, x, y, p_off, p_x, p_y, radius, scan_max):
    for n, k in enumerate(range(p_off[m], p_off[m + 1])):
        if n >= scan_max:
            break
        if abs(p_x[k] - x) <= radius and abs(p_y[k] - y) <= radius:
            return 1.0
    return 0.0


@numba.njit(cache=True, nogil=True)
def think_utilities(
    seed, tick, i, NP, UW, m, x, y, s, home, needs, traits, hp, wallet, carry_qty,
    is_town, danger, conflict, p_off, p_x, p_y,
):
    """The utilities NPC ``i`` compares this tick (same draws in step and in collect)."""
    w0, w1, w2, w3 = _block(seed, tick, S_THINK, i, 0)
    nz = noise8(w0, w1, w2, w3)
    inv = 1.0 / 255.0
    near = 0.0
    if p_off[m + 1] > p_off[m]:
        near = _player_near(
            m, x, y, p_off, p_x, p_y, np.int64(NP[P_REACT_RADIUS]), np.int64(NP[P_REACT_SCAN])
        )
    return utilities(
        UW,
        np.float64(needs[i, HUNGER]),
        np.float64(needs[i, FATIGUE]),
        np.float64(needs[i, SOCIAL]),
        np.float64(needs[i, COMFORT]),
        traits[i, COURAGE] * inv,
        traits[i, GREED] * inv,
        traits[i, SOCIABILITY] * inv,
        traits[i, DILIGENCE] * inv,
        hp / NP[P_HP_MAX],
        min(wallet / max(NP[P_WALLET_MAX], 1.0), 1.0),
        1.0 if carry_qty > 0 else 0.0,
        1.0 if is_town[m] else 0.0,
        1.0 if m == home else 0.0,
        np.float64(danger[home]),
        np.float64(danger[m]),
        np.float64(conflict[m]),
        near,
        s,
        nz,
    )


@numba.njit(cache=True, nogil=True)
def _enter(
    i, s, seed, tick, DUR, mp, x, y, home, goal, via, timer, next_local, warp_off, warp_x,
    warp_y, warp_to, town_maps, danger,
):
    """Switch NPC ``i`` to state ``s``: its timer, and where it heads. Returns the state set."""
    w0, w1, _w2, _w3 = _block(seed, tick, S_NPC, i, 1)
    m = mp[i]
    via[i] = -1
    if s == TRAVEL:
        g = home[i]
        if m == g:
            nt = len(town_maps)
            g = town_maps[np.int64(w1 % np.uint32(nt))]
        hop = next_local[m, g] if g != m else -1
        if hop < 0:
            s = IDLE
        else:
            goal[i] = g
            via[i] = hop
    elif s == FLEE:  # run for the nearest warp to a safer map (any warp if none is safer)
        nw = warp_off[m + 1] - warp_off[m]
        hop = -1
        best = np.int64(1) << 40
        for j in range(warp_off[m], warp_off[m + 1]):
            if danger[warp_to[j]] < danger[m]:
                d = max(abs(warp_x[j] - x[i]), abs(warp_y[j] - y[i]))
                if d < best:
                    best = d
                    hop = j - warp_off[m]
        if hop < 0 and nw > 0:
            hop = np.int64(w1 % np.uint32(nw))
        if hop < 0:
            s = WANDER
        else:
            via[i] = hop
            goal[i] = warp_to[warp_off[m] + hop]
    timer[i] = _duration(DUR, s, w0)
    return s


@numba.njit(cache=True, nogil=True, parallel=True)
def npc_step(
    seed, tick, hwm, NP, UW, DUR,
    alive, mp, x, y, state, mind, timer, via, goal, home, needs, traits, mood, hp, wallet,
    carry_item, carry_qty,
    width, height, walk_off, walk, warp_off, warp_x, warp_y, warp_to, warp_tx, warp_ty,
    next_local, is_town, town_maps, market_off, market_item, item_price, m_price, stack_max,
    danger, harm, alarm_tick, wmood, conflict,
    p_off, p_x, p_y,
    flags, pond_o, pond_u,
):
    """One update of every NPC whose turn it is (every ``update_every_ticks`` ticks).

    An NPC is updated on the ticks where ``(tick + slot // 64) % K == 0``: a K-th of the
    population each tick, neighbours in memory together, with rates and moves scaled to
    the K ticks since its last update (time slicing, so the per-tick cost falls by K).
    """
    K = np.int64(NP[P_UPDATE_EVERY])
    hunger_r = np.float32(NP[P_HUNGER] * K)
    fatigue_r = np.float32(NP[P_FATIGUE] * K)
    work_f = np.float32(NP[P_WORK_FATIGUE] * K)
    rest_r = np.float32(NP[P_REST_RECOVERY] * K)
    social_r = np.float32(NP[P_SOCIAL] * K)
    talk_r = np.float32(NP[P_TALK_RELIEF] * K)
    comfort_r = np.float32(NP[P_COMFORT] * K)
    hp_max = np.int64(NP[P_HP_MAX])
    regen_every = np.int64(NP[P_REGEN_EVERY])
    mood_rate = np.float32(min(NP[P_MOOD_RATE] * K, 1.0))
    wander_every = np.int64(NP[P_WANDER_EVERY])
    travel_every = np.int64(NP[P_TRAVEL_EVERY])
    flee_cells = np.int64(NP[P_FLEE_CELLS]) * K
    wage = np.int64(NP[P_WAGE])
    wallet_max = np.int64(NP[P_WALLET_MAX])
    produce_value = NP[P_PRODUCE_VALUE]
    margin = NP[P_MARGIN]
    ponder_on = NP[P_REQUESTS_MAX] > 0
    inertia = UW[UW_INERTIA]
    for i in numba.prange(hwm):
        flags[i] = 0
        if not alive[i]:
            continue
        block = i >> 6  # neighbours in memory share a cadence
        now = tick + block
        if now % K != 0:
            continue
        f = 0
        m = np.int64(mp[i])
        st = np.int64(state[i])
        s = st & STATE_MASK
        # -- needs ------------------------------------------------------------------
        h = needs[i, HUNGER] + hunger_r
        fa = needs[i, FATIGUE] + (work_f if s == WORK else fatigue_r)
        if s == REST:
            fa -= rest_r
        so = needs[i, SOCIAL] + social_r
        if s == TALK:
            so -= talk_r
        needs[i, HUNGER] = _clamp01(h)
        needs[i, FATIGUE] = _clamp01(fa)
        needs[i, SOCIAL] = _clamp01(so)
        needs[i, COMFORT] = _clamp01(needs[i, COMFORT] + comfort_r)
        # -- harm -------------------------------------------------------------------
        loss = harm[m]
        if loss > 0:
            left = np.int64(hp[i]) - loss
            if left <= 0:
                hp[i] = 0
                flags[i] = F_DIED
                continue
            hp[i] = left
        elif hp[i] < hp_max:
            regen = now // regen_every - (now - K) // regen_every
            hp[i] = min(np.int64(hp[i]) + regen, hp_max)
        # -- mood -------------------------------------------------------------------
        need_avg = (needs[i, 0] + needs[i, 1] + needs[i, 2] + needs[i, 3]) * np.float32(0.25)
        target = (
            NP[P_MOOD_BASE]
            - NP[P_MOOD_NEED_W] * need_avg
            - NP[P_MOOD_DANGER_W] * danger[m]
            - NP[P_MOOD_CONFLICT_W] * conflict[m]
            + wmood[m]
        )
        mo = mood[i] + mood_rate * (np.float32(target) - mood[i])
        mood[i] = min(max(mo, np.float32(-1.0)), np.float32(1.0))
        # -- finish work ------------------------------------------------------------
        before = np.int64(timer[i])
        t = max(before - K, 0)
        timer[i] = t
        if s == WORK and before > 0 and t == 0:
            if wallet[i] + wage <= wallet_max:
                wallet[i] += wage
                f |= F_PAID
            hm = home[i]
            n_goods = market_off[hm + 1] - market_off[hm]
            if carry_qty[i] == 0 and n_goods > 0:
                # of two goods drawn from the home town's markets, make the one that sells
                # dearer against its base price (supply follows prices); about
                # produce_value zeny of it at base price: many cheap ones or a rare dear one
                w0, w1, w2, _w3 = _block(seed, tick, S_NPC, i, 4)
                k = market_off[hm] + np.int64(w0 % np.uint32(n_goods))
                k2 = market_off[hm] + np.int64(w2 % np.uint32(n_goods))
                if m_price[k2] * item_price[market_item[k]] > m_price[k] * item_price[
                    market_item[k2]
                ]:
                    k = k2
                it = market_item[k]
                v = produce_value / item_price[it]
                q = np.int64(v)
                if (w1 >> np.uint32(8)) * (1.0 / 16777216.0) < v - q:
                    q += 1
                if q > 0:
                    carry_item[i] = it
                    carry_qty[i] = min(q, stack_max)
        # -- choose -----------------------------------------------------------------
        alarm = tick - alarm_tick[m] < K and s != FLEE
        md = mind[i]
        if st & SETUP:
            s = _enter(i, s, seed, tick, DUR, mp, x, y, home, goal, via, timer, next_local,
                       warp_off, warp_x, warp_y, warp_to, town_maps, danger)
            if s == FLEE:
                f |= F_FLED
            elif s == TALK:
                f |= F_GREET
        elif t == 0 or alarm:
            md &= ~PONDER  # a pending decision is settled before its timer runs out
            u = think_utilities(seed, tick, i, NP, UW, m, x[i], y[i], s, home[i], needs,
                                traits, hp[i], wallet[i], carry_qty[i], is_town, danger,
                                conflict, p_off, p_x, p_y)
            b, sec, vb, vs = best_two(u, s, inertia)
            if ponder_on and not alarm and vb - vs < margin:
                md |= PONDER
                timer[i] = np.int64(NP[P_DEADLINE]) + K
                f |= F_PONDER
                pond_o[i, 0] = b
                pond_o[i, 1] = sec
                pond_u[i, 0] = vb
                pond_u[i, 1] = vs
            elif b != s or t == 0:
                ns = _enter(i, b, seed, tick, DUR, mp, x, y, home, goal, via, timer,
                            next_local, warp_off, warp_x, warp_y, warp_to, town_maps,
                            danger)
                if ns == FLEE and s != FLEE:
                    f |= F_FLED
                if ns == TALK and s != TALK:
                    f |= F_GREET
                s = ns
        mind[i] = md
        state[i] = s
        # -- act --------------------------------------------------------------------
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if s == WANDER:
            for j in range(now // wander_every - (now - K) // wander_every):
                w0, _w1, _w2, _w3 = _block(seed, tick, S_NPC, i, 3 + j)
                nx, ny = step_random(walk, walk_off, width, height, m, xi, yi, np.int64(w0))
                if nx != xi or ny != yi:
                    xi = nx
                    yi = ny
                    f |= F_MOVED
            x[i] = xi
            y[i] = yi
        elif (s == TRAVEL or s == FLEE) and via[i] >= 0:  # noqa: SIM109 (numba)
            if s == FLEE:
                steps = flee_cells
            else:
                steps = now // travel_every - (now - K) // travel_every
            if steps > 0:
                k = warp_off[m] + via[i]
                wx = warp_x[k]
                wy = warp_y[k]
                for j in range(steps):
                    nx, ny = step_toward(walk, walk_off, width, height, m, xi, yi, wx, wy)
                    if nx == xi and ny == yi:  # blocked: a random side-step
                        w0, _w1, _w2, _w3 = _block(seed, tick, S_NPC, i, 16 + j)
                        nx, ny = step_random(walk, walk_off, width, height, m, xi, yi,
                                             np.int64(w0))
                    if nx != xi or ny != yi:
                        f |= F_MOVED
                    xi = nx
                    yi = ny
                    if xi == wx and yi == wy:
                        m = warp_to[k]
                        xi = warp_tx[k]
                        yi = warp_ty[k]
                        mp[i] = m
                        f |= F_WARPED
                        if s == TRAVEL and m != goal[i]:
                            via[i] = next_local[m, goal[i]]
                            if via[i] < 0:
                                timer[i] = 0
                        else:
                            via[i] = -1
                            timer[i] = 0
                        break
                x[i] = xi
                y[i] = yi
        elif s == TRADE and is_town[m] and (md & AWAIT) == 0:
            f |= F_ORDER
        flags[i] = f


@numba.njit(cache=True, nogil=True)
def map_signals(seed, tick, danger, prev_danger, hurt, alarm_at, hurt_hp, every, harm,
                alarm_tick):
    """Per map: whole hp lost per NPC update there, and the tick its danger last rose.

    The fraction of a hit point is settled by one draw per map, so every NPC on a map
    takes the same harm; ``alarm_tick`` records the tick danger crossed ``alarm_at``
    upward, so NPCs updated within the next ``every`` ticks all hear the alarm.
    """
    for m in range(len(harm)):
        loss = np.float64(hurt[m]) * hurt_hp * every
        whole = np.int64(loss)
        if loss > whole and uniform(seed, tick, S_HARM, m, 0) < loss - whole:
            whole += 1
        harm[m] = whole
        if danger[m] >= alarm_at and prev_danger[m] < alarm_at:
            alarm_tick[m] = tick


@numba.njit(cache=True, nogil=True, inline="always")
def _find_market(market_key, key):
    """Slot of the market with ``key`` (map * items + item) in the sorted keys, or -1."""
    lo = 0
    hi = len(market_key)
    while lo < hi:
        mid = (lo + hi) >> 1
        if market_key[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(market_key) and market_key[lo] == key else -1


@numba.njit(cache=True, nogil=True)
def cheapest_markets(market_map, market_item, item_use, m_stock, m_price, out):
    """out[map * 3 + use]: the cheapest market with stock for each (town, kind of item)."""
    out[:] = -1
    for k in range(len(market_map)):
        if m_stock[k] <= 0:
            continue
        j = market_map[k] * 3 + item_use[market_item[k]]
        if out[j] < 0 or m_price[k] < m_price[out[j]]:
            out[j] = k


@numba.njit(cache=True, nogil=True)
def npc_collect(
    hwm, NP, UW, flags, mp, home, state, needs, wallet, carry_item, carry_qty, mind, timer,
    generation, map_active,
    market_key, n_items, cheapest, market_item, item_relief, m_price,
    orders_max, o_dst, o_src, o_src_gen, o_side, o_item, o_qty, o_limit, o_escrow,
    ponder_max, ponder_slots, moved_slots, moved_max, greet_slots, greet_max,
    counts,
):
    """Turn flags into orders, request/death/move/greet lists and counters, in slot order.

    ``counts``: [orders, ponder, died, moved, greet, fled, paid, warped, ponder_over].
    NPCs flagged past a cap simply try again on a later tick (orders) or decide alone
    (ponder): the cut is by slot order, never by timing.
    """
    counts[:] = 0
    n_o = 0
    n_p = 0
    n_d = 0
    n_m = 0
    n_g = 0
    buy_max = np.int64(NP[P_BUY_QTY_MAX])
    fatigue_w = np.float32(UW[UW_TRADE_FATIGUE])
    need_min = NP[P_BUY_NEED_MIN]
    slack = NP[P_BID_SLACK]
    for i in range(hwm):
        f = flags[i]
        if f == 0:
            continue
        if f & F_DIED:
            n_d += 1
            continue
        if f & F_FLED:
            counts[5] += 1
        if f & F_PAID:
            counts[6] += 1
        if f & F_WARPED:
            counts[7] += 1
        show = (f & F_WARPED) or ((f & F_MOVED) and map_active[mp[i]])
        if show and n_m < moved_max:
            moved_slots[n_m] = i
            n_m += 1
        if (f & F_GREET) and n_g < greet_max:
            greet_slots[n_g] = i
            n_g += 1
        if f & F_PONDER:
            if n_p < ponder_max:
                ponder_slots[n_p] = i
                n_p += 1
            else:  # past the cap: decide alone on the next tick
                counts[8] += 1
                mind[i] &= ~PONDER
                timer[i] = 0
        if (f & F_ORDER) and n_o < orders_max:
            m = mp[i]
            k = -1
            side = 0
            qty = 0
            limit = 0
            if carry_qty[i] > 0:
                if m == home[i]:
                    k = _find_market(market_key, m * n_items + carry_item[i])
                    side = 1
                    qty = carry_qty[i]
            else:  # buy for the most pressing need, at the cheapest market of that kind here
                need = needs[i, HUNGER]
                use = 0
                if fatigue_w * needs[i, FATIGUE] > need:
                    need = fatigue_w * needs[i, FATIGUE]
                    use = 1
                if needs[i, COMFORT] > need:
                    need = needs[i, COMFORT]
                    use = 2
                if need >= need_min:
                    best = cheapest[m * 3 + use]
                    if best >= 0:
                        limit = m_price[best] + np.int64(m_price[best] * slack)
                        if wallet[i] >= limit:
                            relief = max(np.float64(item_relief[market_item[best]]), 1e-6)
                            want = np.int64(need / relief) + 1
                            qty = min(min(buy_max, wallet[i] // limit), want)
                            k = best
            if k < 0:  # nothing to trade here: stop trading and look around for a while
                state[i] = IDLE | SETUP
                continue
            o_dst[n_o] = k
            o_side[n_o] = side
            o_item[n_o] = market_item[k]
            o_qty[n_o] = qty
            o_limit[n_o] = limit
            o_escrow[n_o] = qty * limit
            o_src[n_o] = i
            o_src_gen[n_o] = generation[i]
            n_o += 1
            wallet[i] -= qty * limit
            if side == 1:
                carry_qty[i] = 0
                carry_item[i] = -1
            mind[i] |= AWAIT
    counts[0] = n_o
    counts[1] = n_p
    counts[2] = n_d
    counts[3] = n_m
    counts[4] = n_g


@numba.njit(cache=True, nogil=True)
def receive_fills(dst, zeny, qty, item, side, wallet, needs, carry_item, carry_qty, mind,
                  state, item_use, item_relief, stack_max):
    """Apply delivered fills in canonical order: zeny back or paid, goods eaten or returned."""
    for k in range(len(dst)):
        i = dst[k]
        wallet[i] += zeny[k]
        mind[i] &= ~AWAIT
        q = qty[k]
        refused = q == 0 if side[k] == 0 else zeny[k] == 0
        if refused and (state[i] & STATE_MASK) == TRADE:
            state[i] = IDLE | SETUP  # the market would not deal: do something else
        if q <= 0:
            continue
        it = item[k]
        if side[k] == 0:
            u = item_use[it]
            need = HUNGER if u == 0 else (FATIGUE if u == 1 else COMFORT)
            v = needs[i, need] - np.float32(item_relief[it] * q)
            needs[i, need] = max(v, np.float32(0.0))
        elif carry_qty[i] == 0:
            carry_item[i] = it
            carry_qty[i] = q
        elif carry_item[i] == it:
            carry_qty[i] = min(np.int64(carry_qty[i]) + q, stack_max)


@numba.njit(cache=True, nogil=True)
def place_population(seed, tick, walk, walk_off, width, height, mp, x0, y0, x1, y1, fx, fy,
                     first, xs, ys):
    """Initial cells: uniform walkable cells of each NPC's spawn rectangle."""
    for k in range(len(mp)):
        px, py = place(walk, walk_off, width, height, mp[k], x0[k], y0[k], x1[k], y1[k],
                       seed, tick, S_SPAWN, first + k, fx[k], fy[k])
        xs[k] = px
        ys[k] = py
