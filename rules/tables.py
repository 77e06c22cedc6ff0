"""Small vectorized helpers over engine tables that several actor kinds use."""

from __future__ import annotations

import numpy as np

from norn.engine.table import Table


def room(table: Table) -> int:
    """Rows that can still be spawned this tick without passing the table's capacity."""
    return max(table.declared_capacity - table.count - len(table.reserved_slots()), 0)


def lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index into ``keys`` of each query, -1 where absent (``keys`` need not be sorted)."""
    keys = np.asarray(keys)
    queries = np.asarray(queries)
    if not len(keys) or not len(queries):
        return np.full(len(queries), -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    pos = np.searchsorted(sk, queries)
    pos_c = np.minimum(pos, len(sk) - 1)
    found = sk[pos_c] == queries
    return np.where(found, order[pos_c], -1).astype(np.int64)
