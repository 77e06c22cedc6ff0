"""Sparse tables keyed by an integer (a character id, an (NPC, character) pair): find a
key's row, or claim one for it, overwriting the most evictable row when the table is full.

Kinds that keep a row per thing that *did* something (karma per character, emotion per
character, affinity per NPC and character) share this shape: rows exist only for keys
seen, the table's capacity is the kind's ``*_max``, and a full table makes room by a
deterministic eviction order the kind chooses (least recently seen, weakest, ...). An
evicted row is overwritten in place (its columns reset to their fill values and given
the new key) rather than despawned and spawned again: a despawned slot is free only after
the tick's sync point, so a full table could otherwise take no new key in the tick that
evicts. Nothing holds handles to these rows, so reusing a slot in place is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from norn.engine.table import Table
from norn.rules.tables import lookup, room


def find(table: Table, key_col: str, keys: np.ndarray) -> np.ndarray:
    """Slot of each key among the live rows, -1 where it has none (vectorized)."""
    live = table.live_slots()
    if not len(live):
        return np.full(len(keys), -1, np.int64)
    at = lookup(table[key_col][live].astype(np.int64), np.asarray(keys, np.int64))
    return np.where(at >= 0, live[np.maximum(at, 0)], -1).astype(np.int64)


@dataclass(frozen=True)
class Claimed:
    """What ``claim`` did: ``rows`` per key (-1 refused), which rows are ``fresh`` (new or
    overwritten: reset to fill values with the key set), how many were ``evicted`` and how
    many keys ``refused`` (no free slot and nothing evictable)."""

    rows: np.ndarray
    fresh: np.ndarray
    evicted: int
    refused: int


def claim(table: Table, key_col: str, keys: np.ndarray,
          evict_rank: Callable[[], np.ndarray] | None) -> Claimed:
    """A row for each of ``keys`` (unique int64, in the caller's order).

    Existing rows are found; missing keys take free slots (``spawn``: alive from the sync
    point, written now) while the table has room (its declared capacity is the kind's
    ``*_max``), then overwrite live rows in the order ``evict_rank()`` returns: live
    slots, most evictable first, which the caller builds (and may leave short, e.g. only
    offline characters; it is called only when the table is full). Rows whose key is
    among ``keys`` are never evicted. Keys left over are refused (row -1), counted, and
    simply not recorded this tick.
    """
    keys = np.asarray(keys, np.int64)
    rows = find(table, key_col, keys)
    fresh = np.zeros(len(keys), bool)
    missing = np.flatnonzero(rows < 0)
    if not len(missing):
        return Claimed(rows, fresh, 0, 0)
    free = min(len(missing), room(table))
    if free:
        take = missing[:free]
        handles = table.spawn(free, **{key_col: keys[take]})
        rows[take] = handles & 0xFFFFFFFF
        fresh[take] = True
    left = missing[free:]
    evicted = 0
    rank = np.asarray(evict_rank() if len(left) and evict_rank is not None else (), np.int64)
    if len(rank):
        in_use = np.isin(table[key_col][rank].astype(np.int64), keys)
        rank = rank[~in_use][: len(left)]
        evicted = len(rank)
        if evicted:
            take = left[:evicted]
            for name, spec in table.specs.items():
                if name not in Table.RESERVED:
                    table[name][rank] = spec.fill
            table[key_col][rank] = keys[take]
            rows[take] = rank
            fresh[take] = True
    refused = len(left) - evicted
    return Claimed(rows, fresh, evicted, refused)
