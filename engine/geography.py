"""The world's geography, a named resource: maps, their cell grids, warps, routes and towns.

A model builds one from its scenario (the walk grids and routes with ``rules/grid.py``
and ``rules/routing.py``) and provides it as ``world.provide("geography", geo)``; actor
kinds declare they read it. It lives in the engine because the engine checks actions
against it at emit time (map ids known, cells inside the map and walkable). Fixed for a
run: configuration, not state (the scenario text in the journal header rebuilds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geography:
    """Flat arrays by map id (kernels take them as they are).

    ``walk`` holds every map's cells (1 walkable), map ``m`` at ``walk_off[m]`` row by row;
    warps of map ``m`` are ``warp_off[m]:warp_off[m+1]`` (cell, destination map and cell);
    ``adj`` is the warp graph (CSR by ``adj_off``); ``next_local[a, b]`` the local index of
    the warp on ``a`` that leads towards ``b`` (-1 none); ``nearest_town[m]`` the town
    closest by warps (-1 none).
    """

    map_names: tuple[str, ...]
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
    adj_off: np.ndarray
    adj: np.ndarray
    next_local: np.ndarray
    town_maps: np.ndarray
    is_town: np.ndarray
    nearest_town: np.ndarray

    @property
    def n_maps(self) -> int:
        return len(self.map_names)

    def map_id(self, name: str) -> int:
        return self.map_names.index(name)

    def sizes(self) -> tuple[tuple[int, int], ...]:
        """(width, height) per map, as the bridge's ``welcome`` announces them."""
        return tuple((int(w), int(h)) for w, h in zip(self.width, self.height, strict=True))

    def cell_problem(self, m: np.ndarray, x: np.ndarray, y: np.ndarray) -> str | None:
        """The first cell that is not a walkable cell inside its map, in words, or None."""
        m = np.asarray(m).astype(np.int64)
        bad = (m < 0) | (m >= self.n_maps)
        if bad.any():
            return f"map_id {int(m[np.flatnonzero(bad)[0]])} unknown"
        x = np.asarray(x).astype(np.int64)
        y = np.asarray(y).astype(np.int64)
        out = (x < 0) | (y < 0) | (x >= self.width[m]) | (y >= self.height[m])
        if out.any():
            k = int(np.flatnonzero(out)[0])
            return f"cell ({int(x[k])}, {int(y[k])}) outside {self.map_names[int(m[k])]}"
        closed = self.walk[self.walk_off[m] + y * self.width[m] + x] == 0
        if closed.any():
            k = int(np.flatnonzero(closed)[0])
            return (f"cell ({int(x[k])}, {int(y[k])}) on {self.map_names[int(m[k])]} is not "
                    "walkable")
        return None
