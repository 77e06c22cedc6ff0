"""What actor kinds share besides geography: items, markets, factions, quests, dialogue.

Each is a named resource a model builds from its scenario and provides
(``world.provide("items", Items(...))``); kinds declare the ones they read. All are flat
arrays for kernels, fixed for a run (configuration, not state: the scenario text in the
journal header rebuilds them). The geography is ``engine/geography.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Item use codes (``Items.use``).
USE_CODES = {"food": 0, "potion": 1, "luxury": 2}


@dataclass(frozen=True)
class Items:
    """The item catalogue: rAthena ids, names, base prices, use codes, need relief, and
    what an NPC shop pays for each (``sell``: the item database's sell price)."""

    ids: np.ndarray  # int32 rAthena item ids, catalogue order
    names: tuple[str, ...]
    price: np.ndarray  # int64 base price, zeny
    use: np.ndarray  # int64 USE_CODES
    relief: np.ndarray  # float32
    stack_max: int  # items in one stack (rAthena MAX_AMOUNT or less)
    sell: np.ndarray  # int64 sell price, zeny (rAthena's default: price // 2)

    @property
    def n(self) -> int:
        return len(self.ids)

    def index(self, item_ids: np.ndarray) -> np.ndarray:
        """Catalogue index of each rAthena item id, -1 where unknown (vectorized)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order].astype(np.int64)
        pos = np.searchsorted(sorted_ids, ids)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        ok = sorted_ids[pos_c] == ids
        return np.where(ok, order[pos_c], -1).astype(np.int64)


@dataclass(frozen=True)
class Markets:
    """One market per (town map, item), in (map id, item index) order.

    ``off`` is a CSR by map id (markets of map m are ``off[m]:off[m+1]``); ``key`` the
    sorted ``map_id * n_items + item`` with ``key_slot`` its market, for event lookups;
    ``lo``/``hi`` the inclusive price band; ``lo`` is never below ``floor``, the item's
    shop-exploit floor (``rules.pricing.exploit_floor``).
    """

    map: np.ndarray
    item: np.ndarray
    stock0: np.ndarray
    off: np.ndarray
    key: np.ndarray
    key_slot: np.ndarray
    cash0: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_items: int
    floor: np.ndarray

    @property
    def n(self) -> int:
        return len(self.map)

    def slot(self, map_ids: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Market selling item index ``item_idx`` on map ``map_ids``, -1 if none."""
        key = np.asarray(map_ids, np.int64) * self.n_items + np.asarray(item_idx, np.int64)
        if not len(self.key):
            return np.full(len(key), -1, np.int64)
        pos = np.searchsorted(self.key, key)
        pos_c = np.minimum(pos, len(self.key) - 1)
        ok = (self.key[pos_c] == key) & (np.asarray(item_idx) >= 0)
        return np.where(ok, self.key_slot[pos_c], -1).astype(np.int64)


@dataclass(frozen=True)
class Factions:
    """Factions by id: names, home maps, NPC sprites, starting influence, treasury and
    diplomacy (``diplomacy0[a, b]`` in [-1, 1])."""

    names: tuple[str, ...]
    home: np.ndarray
    sprite: np.ndarray
    influence0: np.ndarray
    treasury0: np.ndarray
    diplomacy0: np.ndarray

    @property
    def n(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Quests:
    """Quests sorted by id, each given by a faction; ``by_faction`` grouped by faction
    (CSR ``by_faction_off``)."""

    ids: np.ndarray
    faction: np.ndarray
    zeny: np.ndarray
    item: np.ndarray
    amount: np.ndarray
    by_faction_off: np.ndarray
    by_faction: np.ndarray


@dataclass(frozen=True)
class Dialogue:
    """Lines by purpose (``greet``, ``hazard``, ...) as fixed-width bytes arrays."""

    lines: dict[str, np.ndarray]

    def __getitem__(self, purpose: str) -> np.ndarray:
        return self.lines[purpose]
