"""Grouping a tick's events by key without a sort: ``np.unique`` and ``np.add.at``, exactly.

Ingest systems group a tick's events by character (or (faction, character)): the sorted
distinct keys and each event's index among them (``np.unique(keys, return_inverse=True)``),
the last event of each key, sums per key (``np.add.at``). With millions of events a tick
the sort inside ``np.unique`` and the buffered ``ufunc.at`` were most of the ingest phase
(issue 16). Character ids are dense in practice (rAthena numbers them from 150000 up), so
when the keys' span is small against their count the distinct keys are found by marking
a table of the span, in O(events + span), in a numba kernel that releases the GIL.

Every function here returns exactly what the numpy call it replaces returns (same values,
same order, same dtypes), so no state changes: ``add_at`` adds in index order, as
``np.add.at`` does, so even float sums round identically. Sparse keys (a span far larger
than the count) fall back to ``np.unique``. ``tests/test_grouping.py`` compares both.
"""

from __future__ import annotations

import numba
import numpy as np

#: below this many keys numpy's sort is as fast as anything here
DENSE_MIN = 4096
#: the dense path is taken when the keys' span is at most this many times their count
#: (plus a fixed allowance): the marking table then costs at most a few bytes per event
SPAN_PER_KEY = 4
SPAN_EXTRA = 1 << 16


@numba.njit(cache=True, nogil=True)
def _dense_unique(keys, lo, span):  # pragma: no cover - compiled
    rank = np.zeros(span, np.int64)
    n = len(keys)
    for i in range(n):
        rank[keys[i] - lo] = 1
    k = 0
    for j in range(span):
        if rank[j]:
            rank[j] = k
            k += 1
        else:
            rank[j] = -1
    uk = np.empty(k, np.int64)
    for j in range(span):
        if rank[j] >= 0:
            uk[rank[j]] = lo + j
    inv = np.empty(n, np.int64)
    for i in range(n):
        inv[i] = rank[keys[i] - lo]
    return uk, inv


@numba.njit(cache=True, nogil=True)
def _dense_last(keys, lo, span):  # pragma: no cover - compiled
    last = np.full(span, -1, np.int64)
    for i in range(len(keys)):
        last[keys[i] - lo] = i
    k = 0
    for j in range(span):
        if last[j] >= 0:
            k += 1
    out = np.empty(k, np.int64)
    k = 0
    for j in range(span):
        if last[j] >= 0:
            out[k] = last[j]
            k += 1
    return out


def _dense_code(keys: np.ndarray) -> tuple[np.ndarray, int | None, int] | None:
    """Keys as offsets ``code`` into a small span (order kept), their lowest key (None for
    pairs) and the span; None when too sparse.

    Either the keys themselves (``code = keys - lo``), or for keys made of two 32-bit
    halves (``hi << 32 | lo``, e.g. faction and character) the pair's offsets in the
    product of the two halves' spans; both keep the keys' order.
    """
    n = len(keys)
    limit = SPAN_PER_KEY * n + SPAN_EXTRA
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo + 1 <= limit:
        return keys - lo if lo else keys, lo, hi - lo + 1
    top = keys >> 32
    low = keys & 0xFFFFFFFF
    tlo, thi = int(top.min()), int(top.max())
    llo, lhi = int(low.min()), int(low.max())
    lspan = lhi - llo + 1
    if (thi - tlo + 1) * lspan > limit:
        return None
    return (top - tlo) * lspan + (low - llo), None, (thi - tlo + 1) * lspan


def unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for 1-D integer keys (as int64)."""
    keys = np.asarray(keys, np.int64)
    if len(keys) < DENSE_MIN:
        return np.unique(keys, return_inverse=True)
    dense = _dense_code(keys)
    if dense is None:
        return np.unique(keys, return_inverse=True)
    code, lo, span = dense
    uk, inv = _dense_unique(code, 0, span)
    if lo is None:  # two halves: the distinct keys are those of the first of each code
        first = np.empty(len(uk), np.int64)
        first[inv[::-1]] = np.arange(len(keys) - 1, -1, -1)  # any occurrence will do
        return keys[first], inv
    return uk + lo if lo else uk, inv


def last_index(keys: np.ndarray) -> np.ndarray:
    """Index of the last occurrence of each distinct key, in the keys' sorted order
    (``len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]``)."""
    keys = np.asarray(keys, np.int64)
    if len(keys) < DENSE_MIN or (dense := _dense_code(keys)) is None:
        _, rev = np.unique(keys[::-1], return_index=True)
        return len(keys) - 1 - rev
    code, _, span = dense
    return _dense_last(code, 0, span)


@numba.njit(cache=True, nogil=True)
def _add_at_1d(a, i, v):  # pragma: no cover - compiled
    for k in range(len(i)):
        a[i[k]] += v[k]


@numba.njit(cache=True, nogil=True)
def _add_at_2d(a, i, j, v):  # pragma: no cover - compiled
    for k in range(len(i)):
        a[i[k], j[k]] += v[k]


def add_at(a: np.ndarray, index: np.ndarray | tuple[np.ndarray, ...], value) -> None:
    """``np.add.at(a, index, value)`` for a 1-D or 2-D ``a`` indexed by integer arrays, in
    index order, as numpy does it. ``value`` (a scalar or one per index) of another dtype
    than ``a``'s goes to numpy itself, so its casting rules are never second-guessed."""
    idx = index if isinstance(index, tuple) else (index,)
    n = len(idx[0])
    value = np.asarray(value)
    if (n < DENSE_MIN or a.ndim not in (1, 2) or len(idx) != a.ndim
            or value.dtype != a.dtype or value.ndim > 1 or not a.flags.writeable):
        np.add.at(a, index, value)
        return
    v = np.broadcast_to(value, (n,))
    ii = []
    for x, size in zip(idx, a.shape, strict=True):  # numpy's checks, negatives too
        x = np.asarray(x)
        if x.dtype.kind not in "iu" or x.shape != (n,):
            np.add.at(a, index, value)
            return
        x = x.astype(np.int64, copy=False)
        lo, hi = int(x.min()), int(x.max())
        if lo < -size or hi >= size:
            raise IndexError(f"index {lo if lo < -size else hi} is out of bounds for axis "
                             f"with size {size}")
        ii.append(np.where(x < 0, x + size, x) if lo < 0 else x)
    if a.ndim == 1:
        _add_at_1d(a, ii[0], v)
    else:
        _add_at_2d(a, ii[0], ii[1], v)
