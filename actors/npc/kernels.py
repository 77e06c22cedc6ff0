"""The NPC population kernels: one parallel pass over every NPC, one sequential collect.

``npc_step`` runs the whole tier-1 rule set for each NPC independently (needs, harm, mood,
utility-based choice, movement, warps, work): every write goes to the NPC's own row or its
own ``flags`` entry, so the population is split across threads by whole digest chunks
with disjoint writes and the result does not depend on the thread count. Everything that
touches shared data (orders to markets, decision requests, deaths, actions, counters) is
flagged and done afterwards by ``npc_collect``, sequentially in slot order, so caps cut
deterministically.

Arguments travel in a few named tuples (numba types them field by field, so a kernel
reads ``cols.x[i]`` as cheaply as a bare array): the rule numbers (``NpcParams``), the
table's columns (``NpcColumns``), the fixed geography (``Geography``), items and markets
(``Goods``), this tick's per-map signals (``MapSignals``), the step's per-NPC scratch
(``StepScratch``), the order rows and slot lists collect fills (``OrderRows``,
``SlotLists``); collect names what it counted (``Collected``).

Digest: a kernel that writes NPC rows sets the flag of each digest chunk it wrote in the
world's chunk mask (``World.chunk_mask``), so commit rehashes those chunks only.
"""

from __future__ import annotations

from typing import NamedTuple

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

#: NPCs sharing an update cadence: rows [b * 64, (b + 1) * 64) are updated on the ticks
#: where ``(tick + b) % update_every_ticks == 0``. A digest chunk (1024 rows by default)
#: holds 16 such blocks, so with ``update_every_ticks`` = 2 every chunk is written every
#: tick; a block of a whole chunk would halve the NPC rehash, but moves which NPC acts on
#: which tick, so every recorded world's digests (see docs/benchmarks.md).
UPDATE_BLOCK_ROWS = 64


class NpcParams(NamedTuple):
    """The rules.npc numbers the kernels read, each with its type (``params`` builds it)."""

    hunger_per_tick: float
    fatigue_per_tick: float
    work_fatigue_per_tick: float
    rest_recovery_per_tick: float
    social_per_tick: float
    talk_relief_per_tick: float
    comfort_per_tick: float
    hp_max: int
    regen_every_ticks: int
    mood_rate: float
    mood_base: float
    mood_need_weight: float
    mood_danger_weight: float
    mood_conflict_weight: float
    wander_move_every_ticks: int
    travel_move_every_ticks: int
    flee_cells_per_tick: int
    react_radius_cells: int
    react_scan_max: int
    wage_zeny: int
    produce_value_zeny: int
    wallet_max: int
    think_margin: float
    decision_requests_per_tick_max: int
    decision_deadline_ticks: int
    buy_qty_max: int
    buy_need_min: float
    bid_slack: float
    update_every_ticks: int
    update_block_rows: int
    utility: np.ndarray  # float64 (UW_*), rules/utility.py
    durations: np.ndarray  # int64 (8, 2): [min, max] ticks of each state


class NpcColumns(NamedTuple):
    """The npc table's columns (``npc_columns`` picks them from the table)."""

    alive: np.ndarray
    map: np.ndarray
    x: np.ndarray
    y: np.ndarray
    state: np.ndarray
    mind: np.ndarray
    timer: np.ndarray
    via: np.ndarray
    goal: np.ndarray
    home: np.ndarray
    needs: np.ndarray
    traits: np.ndarray
    mood: np.ndarray
    hp: np.ndarray
    wallet: np.ndarray
    carry_item: np.ndarray
    carry_qty: np.ndarray
    generation: np.ndarray


class Geography(NamedTuple):
    """Maps, walkable cells, warps and routes (fixed for the run)."""

    width: np.ndarray
    height: np.ndarray
    walk_off: np.ndarray
    walk: np.ndarray
    warp_off: np.ndarray
    warp_x: np.ndarray
    warp_y: np.ndarray
    warp_to: np.ndarray
    warp_tx: np.ndarray
    warp_ty: np.ndarray
    next_local: np.ndarray
    is_town: np.ndarray
    town_maps: np.ndarray


class Goods(NamedTuple):
    """The item catalogue and the markets; ``market_price`` is the market table's column."""

    market_off: np.ndarray  # per map: its markets are [off[m], off[m + 1])
    market_item: np.ndarray
    market_key: np.ndarray  # sorted map * n_items + item
    market_price: np.ndarray
    item_price: np.ndarray
    item_use: np.ndarray
    item_relief: np.ndarray
    n_items: int
    stack_max: int


class MapSignals(NamedTuple):
    """Per map, this tick: what NPCs there feel, and the online players there."""

    danger: np.ndarray
    harm: np.ndarray  # whole hp lost per NPC update (``map_signals``)
    alarm_tick: np.ndarray
    mood: np.ndarray
    conflict: np.ndarray
    players_off: np.ndarray  # players on map m are [off[m], off[m + 1]) of players_x/_y
    players_x: np.ndarray
    players_y: np.ndarray
    active: np.ndarray  # uint8: a player is online there (moves are worth announcing)


class StepScratch(NamedTuple):
    """What ``npc_step`` leaves for ``npc_collect``, one entry per NPC (never state)."""

    flags: np.ndarray  # uint16 F_* bits
    ponder_options: np.ndarray  # int8 (n, 2): the two best behaviours of a near-tie
    ponder_utilities: np.ndarray  # float32 (n, 2): their utilities


class OrderRows(NamedTuple):
    """Rows reserved in the order channel's outbox, filled in slot order."""

    dst: np.ndarray
    src: np.ndarray
    src_gen: np.ndarray
    side: np.ndarray
    item: np.ndarray
    qty: np.ndarray
    limit_zeny: np.ndarray
    escrow_zeny: np.ndarray


class SlotLists(NamedTuple):
    """Slots collect lists, each capped by its array's length."""

    ponder: np.ndarray  # near-ties to escalate as decision requests
    moved: np.ndarray  # moves to announce
    greet: np.ndarray  # greetings to say


class Collected(NamedTuple):
    """What ``npc_collect`` did this tick (counts)."""

    orders: int
    ponder: int
    died: int
    moved: int
    greet: int
    fled: int
    paid: int
    warped: int
    ponder_over: int  # near-ties past the request cap, decided alone


DURATION_KEYS = ("idle", "wander", "travel", "work", "trade", "rest", "flee", "talk")
_INT_PARAMS = frozenset(
    k for k, t in NpcParams.__annotations__.items() if t == "int"
)


def params(
    npc_rules: object, utility: np.ndarray, block_rows: int = UPDATE_BLOCK_ROWS
) -> NpcParams:
    """The kernels' parameters from rules.npc (``utility``: its weights as a vector)."""
    d = npc_rules.durations
    dur = np.array([[getattr(d, k).min, getattr(d, k).max] for k in DURATION_KEYS], np.int64)
    values = {
        k: (int(getattr(npc_rules, k)) if k in _INT_PARAMS else float(getattr(npc_rules, k)))
        for k in NpcParams._fields[:-3]
    }
    return NpcParams(**values, update_block_rows=int(block_rows),
                     utility=np.ascontiguousarray(utility, np.float64), durations=dur)


def npc_columns(columns: dict[str, np.ndarray]) -> NpcColumns:
    """The kernels' view of the npc table's columns."""
    return NpcColumns(*(columns[f] for f in NpcColumns._fields))


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
    seed, tick, i, P, m, x, y, s, home, needs, traits, hp, wallet, carry_qty, is_town, danger,
    conflict, p_off, p_x, p_y,
):
    """The utilities NPC ``i`` on map ``m`` in state ``s`` compares this tick."""
    w0, w1, w2, w3 = _block(seed, tick, S_THINK, i, 0)
    nz = noise8(w0, w1, w2, w3)
    inv = 1.0 / 255.0
    near = 0.0
    if p_off[m + 1] > p_off[m]:
        near = _player_near(
            m, x, y, p_off, p_x, p_y, np.int64(P.react_radius_cells), np.int64(P.react_scan_max)
        )
    return utilities(
        P.utility,
        np.float64(needs[i, HUNGER]),
        np.float64(needs[i, FATIGUE]),
        np.float64(needs[i, SOCIAL]),
        np.float64(needs[i, COMFORT]),
        traits[i, COURAGE] * inv,
        traits[i, GREED] * inv,
        traits[i, SOCIABILITY] * inv,
        traits[i, DILIGENCE] * inv,
        hp / np.float64(P.hp_max),
        min(wallet / max(np.float64(P.wallet_max), 1.0), 1.0),
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


#: only explicit prange loops become parallel (nothing else here is an array operation):
#: the other conversions only add compile time
_PRANGE_ONLY = {"comprehension": False, "prange": True, "numpy": False, "reduction": False,
                "setitem": False, "stencil": False, "fusion": False, "inplace_binop": False}


@numba.njit(cache=True, nogil=True, parallel=_PRANGE_ONLY)
def npc_step(seed, tick, hwm, P, cols, geo, goods, sig, out, chunk_rows, written):
    """One update of every NPC whose turn it is (every ``update_every_ticks`` ticks).

    An NPC is updated on the ticks where ``(tick + slot // update_block_rows) % K == 0``:
    a K-th of the population each tick, neighbours in memory together, with rates and moves
    scaled to the K ticks since its last update (time slicing, so the per-tick cost falls
    by K). The parallel loop runs over digest chunks (``chunk_rows`` rows): an iteration
    updates its chunk's rows and sets ``written[c]`` when it updated any, so no two threads
    share a row or a flag and the result is the same for any thread count.

    The rules are written inside the parallel loop, not in a function it calls: numba
    compiles a prange body into code 20-40 % faster than the same body called from it or
    run in a thread pool (measured at 1M NPCs), for a longer first compile (cached after).
    """
    K = np.int64(P.update_every_ticks)
    block_rows = np.int64(P.update_block_rows)
    hunger_r = np.float32(P.hunger_per_tick * K)
    fatigue_r = np.float32(P.fatigue_per_tick * K)
    work_f = np.float32(P.work_fatigue_per_tick * K)
    rest_r = np.float32(P.rest_recovery_per_tick * K)
    social_r = np.float32(P.social_per_tick * K)
    talk_r = np.float32(P.talk_relief_per_tick * K)
    comfort_r = np.float32(P.comfort_per_tick * K)
    hp_max = np.int64(P.hp_max)
    regen_every = np.int64(P.regen_every_ticks)
    mood_rate = np.float32(min(P.mood_rate * K, 1.0))
    wander_every = np.int64(P.wander_move_every_ticks)
    travel_every = np.int64(P.travel_move_every_ticks)
    flee_cells = np.int64(P.flee_cells_per_tick) * K
    wage = np.int64(P.wage_zeny)
    wallet_max = np.int64(P.wallet_max)
    produce_value = np.float64(P.produce_value_zeny)
    margin = P.think_margin
    ponder_on = P.decision_requests_per_tick_max > 0
    inertia = P.utility[UW_INERTIA]
    mood_base = P.mood_base
    mood_need_w = P.mood_need_weight
    mood_danger_w = P.mood_danger_weight
    mood_conflict_w = P.mood_conflict_weight
    deadline = np.int64(P.decision_deadline_ticks)
    flags = out.flags
    ponder_options = out.ponder_options
    ponder_utilities = out.ponder_utilities
    alive = cols.alive
    mp = cols.map
    x = cols.x
    y = cols.y
    state = cols.state
    mind = cols.mind
    timer = cols.timer
    via = cols.via
    needs = cols.needs
    hp = cols.hp
    wallet = cols.wallet
    carry_qty = cols.carry_qty
    walk = geo.walk
    walk_off = geo.walk_off
    width = geo.width
    height = geo.height
    mood = cols.mood
    home = cols.home
    goal = cols.goal
    carry_item = cols.carry_item
    danger = sig.danger
    harm = sig.harm
    conflict = sig.conflict
    map_mood = sig.mood
    alarm_tick = sig.alarm_tick
    is_town = geo.is_town
    warp_off = geo.warp_off
    warp_x = geo.warp_x
    warp_y = geo.warp_y
    warp_to = geo.warp_to
    warp_tx = geo.warp_tx
    warp_ty = geo.warp_ty
    next_local = geo.next_local
    town_maps = geo.town_maps
    traits = cols.traits
    durations = P.durations
    players_off = sig.players_off
    players_x = sig.players_x
    players_y = sig.players_y
    market_off = goods.market_off
    market_item = goods.market_item
    m_price = goods.market_price
    item_price = goods.item_price
    stack_max = goods.stack_max
    # every array and number the loop reads is bound here, once, not read from its tuple
    # in the loop
    for c in numba.prange((hwm + chunk_rows - 1) // chunk_rows):
        lo = c * chunk_rows
        hi = min(lo + chunk_rows, hwm)
        block_end = lo  # the cadence of the rows before it is known (one division a block)
        due = False
        now = 0
        wrote = False
        for i in range(lo, hi):
            flags[i] = 0
            if i >= block_end:  # neighbours in memory share a cadence: a new update block
                block = i // block_rows
                block_end = (block + 1) * block_rows
                now = tick + block
                due = now % K == 0
            if not due or not alive[i]:
                continue
            wrote = True
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
                mood_base
                - mood_need_w * need_avg
                - mood_danger_w * danger[m]
                - mood_conflict_w * conflict[m]
                + map_mood[m]
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
                s = _enter(i, s, seed, tick, durations, mp, x, y, home, goal, via, timer,
                           next_local, warp_off, warp_x, warp_y, warp_to, town_maps, danger)
                if s == FLEE:
                    f |= F_FLED
                elif s == TALK:
                    f |= F_GREET
            elif t == 0 or alarm:
                md &= ~PONDER  # a pending decision is settled before its timer runs out
                u = think_utilities(seed, tick, i, P, m, x[i], y[i], s, home[i], needs, traits,
                                    hp[i], wallet[i], carry_qty[i], is_town, danger, conflict,
                                    players_off, players_x, players_y)
                b, sec, vb, vs = best_two(u, s, inertia)
                if ponder_on and not alarm and vb - vs < margin:
                    md |= PONDER
                    timer[i] = deadline + K
                    f |= F_PONDER
                    ponder_options[i, 0] = b
                    ponder_options[i, 1] = sec
                    ponder_utilities[i, 0] = vb
                    ponder_utilities[i, 1] = vs
                elif b != s or t == 0:
                    ns = _enter(i, b, seed, tick, durations, mp, x, y, home, goal, via, timer,
                                next_local, warp_off, warp_x, warp_y, warp_to, town_maps, danger)
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
                            g = goal[i]
                            if s == TRAVEL and m != g:
                                via[i] = next_local[m, g]
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
        if wrote:
            written[c] = True


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
def npc_collect(hwm, P, scratch, cols, goods, cheapest, active, orders, lists):
    """Turn flags into orders, request/death/move/greet lists and counters, in slot order.

    Fills ``orders`` (as many rows as it has) and ``lists`` (each up to its length);
    returns ``Collected``. NPCs flagged past a cap simply try again on a later tick
    (orders) or decide alone (ponder): the cut is by slot order, never by timing.
    """
    n_o = 0
    n_p = 0
    n_d = 0
    n_m = 0
    n_g = 0
    n_fled = 0
    n_paid = 0
    n_warped = 0
    n_over = 0
    orders_max = len(orders.dst)
    ponder_max = len(lists.ponder)
    moved_max = len(lists.moved)
    greet_max = len(lists.greet)
    buy_max = np.int64(P.buy_qty_max)
    fatigue_w = np.float32(P.utility[UW_TRADE_FATIGUE])
    need_min = P.buy_need_min
    slack = P.bid_slack
    flags = scratch.flags
    mp = cols.map
    needs = cols.needs
    wallet = cols.wallet
    carry_qty = cols.carry_qty
    m_price = goods.market_price
    for i in range(hwm):
        f = flags[i]
        if f == 0:
            continue
        if f & F_DIED:
            n_d += 1
            continue
        if f & F_FLED:
            n_fled += 1
        if f & F_PAID:
            n_paid += 1
        if f & F_WARPED:
            n_warped += 1
        show = (f & F_WARPED) or ((f & F_MOVED) and active[mp[i]])
        if show and n_m < moved_max:
            lists.moved[n_m] = i
            n_m += 1
        if (f & F_GREET) and n_g < greet_max:
            lists.greet[n_g] = i
            n_g += 1
        if f & F_PONDER:
            if n_p < ponder_max:
                lists.ponder[n_p] = i
                n_p += 1
            else:  # past the cap: decide alone on the next tick
                n_over += 1
                cols.mind[i] &= ~PONDER
                cols.timer[i] = 0
        if (f & F_ORDER) and n_o < orders_max:
            m = mp[i]
            k = -1
            side = 0
            qty = 0
            limit = 0
            if carry_qty[i] > 0:
                if m == cols.home[i]:
                    k = _find_market(goods.market_key, m * goods.n_items + cols.carry_item[i])
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
                            relief = max(
                                np.float64(goods.item_relief[goods.market_item[best]]), 1e-6
                            )
                            want = np.int64(need / relief) + 1
                            qty = min(min(buy_max, wallet[i] // limit), want)
                            k = best
            if k < 0:  # nothing to trade here: stop trading and look around for a while
                cols.state[i] = IDLE | SETUP
                continue
            orders.dst[n_o] = k
            orders.side[n_o] = side
            orders.item[n_o] = goods.market_item[k]
            orders.qty[n_o] = qty
            orders.limit_zeny[n_o] = limit
            orders.escrow_zeny[n_o] = qty * limit
            orders.src[n_o] = i
            orders.src_gen[n_o] = cols.generation[i]
            n_o += 1
            wallet[i] -= qty * limit
            if side == 1:
                carry_qty[i] = 0
                cols.carry_item[i] = -1
            cols.mind[i] |= AWAIT
    return Collected(n_o, n_p, n_d, n_m, n_g, n_fled, n_paid, n_warped, n_over)


@numba.njit(cache=True, nogil=True)
def receive_fills(dst, zeny, qty, item, side, cols, goods, chunk_rows, written):
    """Apply delivered fills in canonical order: zeny back or paid, goods eaten or returned.

    Sets ``written[c]`` for the digest chunk of every NPC row it wrote.
    """
    needs = cols.needs
    for k in range(len(dst)):
        i = dst[k]
        written[i // chunk_rows] = True
        cols.wallet[i] += zeny[k]
        cols.mind[i] &= ~AWAIT
        q = qty[k]
        refused = q == 0 if side[k] == 0 else zeny[k] == 0
        if refused and (cols.state[i] & STATE_MASK) == TRADE:
            cols.state[i] = IDLE | SETUP  # the market would not deal: do something else
        if q <= 0:
            continue
        it = item[k]
        if side[k] == 0:
            u = goods.item_use[it]
            need = HUNGER if u == 0 else (FATIGUE if u == 1 else COMFORT)
            v = needs[i, need] - np.float32(goods.item_relief[it] * q)
            needs[i, need] = max(v, np.float32(0.0))
        elif cols.carry_qty[i] == 0:
            cols.carry_item[i] = it
            cols.carry_qty[i] = q
        elif cols.carry_item[i] == it:
            cols.carry_qty[i] = min(np.int64(cols.carry_qty[i]) + q, goods.stack_max)


@numba.njit(cache=True, nogil=True)
def place_population(seed, tick, geo, mp, x0, y0, x1, y1, fx, fy, first, xs, ys):
    """Initial cells: uniform walkable cells of each NPC's spawn rectangle."""
    for k in range(len(mp)):
        px, py = place(geo.walk, geo.walk_off, geo.width, geo.height, mp[k], x0[k], y0[k],
                       x1[k], y1[k], seed, tick, S_SPAWN, first + k, fx[k], fy[k])
        xs[k] = px
        ys[k] = py
