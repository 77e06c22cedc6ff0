"""Kernels the living-world kinds share: cells drawn on real maps, finds near a cell, and
rewards paid from treasuries in order.

- ``random_cells``: a walkable cell of each map, drawn with the counter-based RNG keyed by
  (seed, tick, stream, entity), so a boss or a buried cache lands where the same world
  always puts it; ``x = -1`` where eight draws found no walkable cell.
  ``random_cells_near`` draws inside a square around a given cell.
- ``near_sites``: for each dig, the first live site of its map within the site's radius
  (Chebyshev distance, as rAthena measures areas), in event order, over a CSR of sites by
  map: the work is digs x sites of one map, never digs x all sites.
- ``pay_from``: amounts paid in order from each payer's treasury, capped by what it holds.
"""

from __future__ import annotations

import numba
import numpy as np

from norn.rules.grid import place


@numba.njit(cache=True, nogil=True)
def random_cells(walk, walk_off, width, height, maps, seed, tick, stream, entities, out_x,
                 out_y):
    """A walkable cell of ``maps[i]`` for each entity (x = -1: none found)."""
    for i in range(len(maps)):
        m = maps[i]
        x, y = place(walk, walk_off, width, height, m, 0, 0, width[m] - 1, height[m] - 1,
                     seed, tick, stream, entities[i], -1, -1)
        out_x[i] = x
        out_y[i] = y


@numba.njit(cache=True, nogil=True)
def random_cells_near(walk, walk_off, width, height, maps, cx, cy, r, seed, tick, stream,
                      entities, out_x, out_y):
    """A walkable cell of ``maps[i]`` within ``r`` cells of (cx[i], cy[i]) (x = -1: none)."""
    for i in range(len(maps)):
        m = maps[i]
        x0 = max(cx[i] - r, 0)
        y0 = max(cy[i] - r, 0)
        x1 = min(cx[i] + r, width[m] - 1)
        y1 = min(cy[i] + r, height[m] - 1)
        x, y = place(walk, walk_off, width, height, m, x0, y0, x1, y1, seed, tick, stream,
                     entities[i], -1, -1)
        out_x[i] = x
        out_y[i] = y


@numba.njit(cache=True, nogil=True)
def near_sites(dig_map, dig_x, dig_y, site_off, site_slot, site_x, site_y, site_radius,
               out_site):
    """``out_site[i]``: the first site (CSR order) of dig i's map within its radius, else -1.

    ``site_off`` is a CSR by map over ``site_slot`` (slots in ascending order).
    """
    n_maps = len(site_off) - 1
    for i in range(len(dig_map)):
        out_site[i] = -1
        m = dig_map[i]
        if m < 0 or m >= n_maps:
            continue
        for k in range(site_off[m], site_off[m + 1]):
            s = site_slot[k]
            if (abs(np.int64(site_x[s]) - dig_x[i]) <= site_radius[s]
                    and abs(np.int64(site_y[s]) - dig_y[i]) <= site_radius[s]):
                out_site[i] = s
                break


@numba.njit(cache=True, nogil=True)
def pay_from(payer, amount, treasury, out):
    """Pay ``amount[i]`` from ``treasury[payer[i]]`` in order, at most what it holds
    (payer -1 pays nothing); returns the total paid."""
    total = 0
    for i in range(len(payer)):
        p = payer[i]
        z = np.int64(0)
        if p >= 0:
            z = min(max(np.int64(amount[i]), np.int64(0)), treasury[p])
            treasury[p] -= z
        out[i] = z
        total += z
    return total
