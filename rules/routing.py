"""Routes along warps: the next warp to take from any map towards any goal map.

Breadth-first search per goal over the reversed warp graph gives hop distances; the next
hop from map m is the first of m's warps (in scenario order) whose destination is one
hop closer. Stored as a maps x maps int8 matrix of local warp indices (-1: none), so a
travelling NPC needs one lookup per map it crosses.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def next_hops(n_maps, warp_off, warp_to, rev_off, rev_src, out):
    """Fill ``out[m, g]`` with the local warp index to take from m towards g, or -1."""
    dist = np.empty(n_maps, dtype=np.int64)
    queue = np.empty(n_maps, dtype=np.int64)
    for g in range(n_maps):
        dist[:] = -1
        dist[g] = 0
        head = 0
        tail = 1
        queue[0] = g
        while head < tail:
            v = queue[head]
            head += 1
            for k in range(rev_off[v], rev_off[v + 1]):
                u = rev_src[k]
                if dist[u] < 0:
                    dist[u] = dist[v] + 1
                    queue[tail] = u
                    tail += 1
        for m in range(n_maps):
            out[m, g] = -1
            if m == g or dist[m] < 0:
                continue
            for j in range(warp_off[m], warp_off[m + 1]):
                d = dist[warp_to[j]]
                if d >= 0 and d == dist[m] - 1:
                    out[m, g] = j - warp_off[m]
                    break


@numba.njit(cache=True, nogil=True)
def nearest_source(n_maps, rev_off, rev_src, sources):
    """For each map, the nearest source map reachable from it by warps (-1 if none)."""
    near = np.full(n_maps, -1, dtype=np.int64)
    queue = np.empty(n_maps, dtype=np.int64)
    tail = 0
    for s in sources:
        if near[s] < 0:
            near[s] = s
            queue[tail] = s
            tail += 1
    head = 0
    while head < tail:
        v = queue[head]
        head += 1
        for k in range(rev_off[v], rev_off[v + 1]):
            u = rev_src[k]
            if near[u] < 0:
                near[u] = near[v]
                queue[tail] = u
                tail += 1
    return near


def reverse_csr(n_maps: int, warp_map: np.ndarray, warp_to: np.ndarray) -> tuple:
    """CSR of warp sources grouped by destination map, in stable warp order."""
    order = np.argsort(warp_to, kind="stable")
    rev_src = warp_map[order].astype(np.int64)
    rev_off = np.zeros(n_maps + 1, dtype=np.int64)
    np.cumsum(np.bincount(warp_to, minlength=n_maps), out=rev_off[1:])
    return rev_off, rev_src
