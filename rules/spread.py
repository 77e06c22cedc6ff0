"""Things that spread along warps and decay: hazards and faction influence.

All loops are sequential in a fixed order (hazard slot, map id, faction id), so float sums
are always added in the same order and the result is bit-identical everywhere. Spread and
start draws come from the counter-based RNG keyed by the hazard's slot or the (map, type)
pair, never by the order in which candidates are met.
"""

from __future__ import annotations

import numba
import numpy as np

from norn.engine.rng import uniform

# hazard type parameter columns (keep in step with actors.midgard.static.HAZARD_PARAMS)
(
    HT_FEAR,
    HT_HURT,
    HT_MOOD,
    HT_SUPPLY,
    HT_SHIFT,
    HT_START,
    HT_START_MIN,
    HT_START_MAX,
    HT_GROW_TICKS,
    HT_GROW,
    HT_DECAY,
    HT_END,
    HT_SPREAD,
    HT_SPREAD_FACTOR,
    HT_SPREAD_MIN,
    HT_CONFLICT,
    HT_KILL_RELIEF,
    HT_STARTS_ON,
    HT_WEATHER,
) = range(19)


@numba.njit(cache=True, nogil=True)
def evolve_hazards(alive, htype, intensity, peak, age, HT, intensity_max, ending):
    """Grow toward the peak for ``grow_ticks``, then decay; mark those that fell below end."""
    n_end = 0
    for h in range(len(alive)):
        ending[h] = False
        if not alive[h]:
            continue
        t = htype[h]
        a = age[h] + 1
        age[h] = a
        v = np.float64(intensity[h])
        if a <= HT[t, HT_GROW_TICKS]:
            v = min(v + HT[t, HT_GROW], np.float64(peak[h]))
        else:
            v = v * (1.0 - HT[t, HT_DECAY])
        v = min(max(v, 0.0), intensity_max)
        intensity[h] = v
        if v < HT[t, HT_END]:
            ending[h] = True
            n_end += 1
    return n_end


@numba.njit(cache=True, nogil=True)
def occupancy(alive, ending, hmap, htype, n_types, occ):
    """occ[map * n_types + type] = the hazard slot there, -1 where none."""
    occ[:] = -1
    for h in range(len(alive)):
        if alive[h] and not ending[h]:
            occ[np.int64(hmap[h]) * n_types + htype[h]] = h


@numba.njit(cache=True, nogil=True)
def spread_hazards(seed, tick, stream, alive, ending, hmap, htype, intensity, HT, adj_off, adj,
                   occ, n_types, cap, out_map, out_type, out_int):
    """Hazards above ``spread_min`` may start a weaker one on each neighbouring map."""
    n = 0
    for h in range(len(alive)):
        if not alive[h] or ending[h]:
            continue
        t = htype[h]
        v = np.float64(intensity[h])
        if v < HT[t, HT_SPREAD_MIN] or HT[t, HT_SPREAD] <= 0.0:
            continue
        m = hmap[h]
        for k in range(adj_off[m], adj_off[m + 1]):
            if n >= cap:
                return n
            nb = adj[k]
            key = nb * n_types + t
            if occ[key] != -1:
                continue
            if uniform(seed, tick, stream, h, k - adj_off[m]) < HT[t, HT_SPREAD] * v:
                occ[key] = -2  # claimed this tick
                out_map[n] = nb
                out_type[n] = t
                out_int[n] = v * HT[t, HT_SPREAD_FACTOR]
                n += 1
    return n


@numba.njit(cache=True, nogil=True)
def start_hazards(seed, tick, stream, n_maps, n_types, HT, is_town, conflict, occ, cap,
                  out_map, out_type, out_int):
    """Each free (map, type) starts a hazard with its chance, raised by conflict there."""
    n = 0
    for m in range(n_maps):
        for t in range(n_types):
            if n >= cap:
                return n
            p = HT[t, HT_START]
            if p <= 0.0 or occ[m * n_types + t] != -1:
                continue
            where = HT[t, HT_STARTS_ON]
            if (where == 1.0 and not is_town[m]) or (where == 2.0 and is_town[m]):
                continue
            p = p * (1.0 + HT[t, HT_CONFLICT] * conflict[m])
            if uniform(seed, tick, stream, m, t) < p:
                lo = HT[t, HT_START_MIN]
                hi = HT[t, HT_START_MAX]
                occ[m * n_types + t] = -2
                out_map[n] = m
                out_type[n] = t
                out_int[n] = lo + (hi - lo) * uniform(seed, tick, stream, m, n_types + t)
                n += 1
    return n


@numba.njit(cache=True, nogil=True)
def aggregate(alive, ending, hmap, htype, intensity, HT, danger, hurt, mood, supply, shift):
    """Per-map effects of the live hazards, summed in slot order."""
    danger[:] = 0.0
    hurt[:] = 0.0
    mood[:] = 0.0
    supply[:] = 0.0
    shift[:] = 0.0
    for h in range(len(alive)):
        if not alive[h] or ending[h]:
            continue
        t = htype[h]
        m = hmap[h]
        v = np.float64(intensity[h])
        danger[m] += v * HT[t, HT_FEAR]
        hurt[m] += v * HT[t, HT_HURT]
        mood[m] += v * HT[t, HT_MOOD]
        supply[m] = min(np.float64(supply[m]) + v * HT[t, HT_SUPPLY], 1.0)
        shift[m] = min(np.float64(shift[m]) + v * HT[t, HT_SHIFT], 1.0)


@numba.njit(cache=True, nogil=True)
def presence(hwm, alive, mp, faction, n_factions, out):
    """NPC head count per (map, faction)."""
    out[:] = 0
    for i in range(hwm):
        if alive[i]:
            out[mp[i], faction[i]] += 1


@numba.njit(cache=True, nogil=True)
def influence_step(infl, deeds, heads, adj_off, adj, shift, dt, growth, decay, spread, deed_gain,
                   imax, scratch):
    """One faction update over ``dt`` ticks: grow with presence and deeds, decay, spread.

    Growth closes a share of the gap to ``imax`` proportional to the faction's share of
    the map's NPCs; decay takes a share away everywhere, so influence without presence
    fades; spread moves each map toward the mean of its warp neighbours; hazards erode it.
    """
    n_maps, n_f = infl.shape
    for m in range(n_maps):
        total = 0
        for f in range(n_f):
            total += heads[m, f]
        for f in range(n_f):
            v = np.float64(infl[m, f])
            share = heads[m, f] / total if total > 0 else 0.0
            v += dt * growth * share * (imax - v)
            v -= dt * decay * v
            v += deed_gain * deeds[m, f]
            scratch[m, f] = min(max(v, 0.0), imax)
    k = min(dt * spread, 0.5)
    for m in range(n_maps):
        deg = adj_off[m + 1] - adj_off[m]
        erode = 1.0 - min(dt * np.float64(shift[m]), 1.0)
        for f in range(n_f):
            v = scratch[m, f]
            if deg > 0:
                acc = 0.0
                for j in range(adj_off[m], adj_off[m + 1]):
                    acc += scratch[adj[j], f]
                v = v + k * (acc / deg - v)
            v *= erode
            infl[m, f] = min(max(v, 0.0), imax)
            deeds[m, f] = 0.0


@numba.njit(cache=True, nogil=True)
def contest(infl, diplomacy, own_min, contest_min, margin, hostile_below, owner, contested,
            conflict, conflict_start, out_new, out_a, out_b, out_takeover):
    """Owners and contested maps. Returns (newly contested count, takeovers count)."""
    n_maps, n_f = infl.shape
    n_new = 0
    n_take = 0
    for m in range(n_maps):
        b = -1
        s = -1
        vb = -1.0
        vs = -1.0
        for f in range(n_f):
            v = np.float64(infl[m, f])
            if v > vb:
                s, vs = b, vb
                b, vb = f, v
            elif v > vs:
                s, vs = f, v
        new_owner = b if vb >= own_min else -1
        if new_owner != owner[m]:
            if new_owner >= 0 and owner[m] >= 0:
                out_takeover[n_take] = m
                n_take += 1
            owner[m] = new_owner
        hot = (
            s >= 0
            and vs >= contest_min
            and vb - vs <= margin * vb
            and diplomacy[b, s] < hostile_below
        )
        if hot and contested[m] == 0:
            out_new[n_new] = m
            out_a[n_new] = b
            out_b[n_new] = s
            n_new += 1
            conflict[m] = max(np.float64(conflict[m]), conflict_start)
        contested[m] = 1 if hot else 0
    return n_new, n_take
