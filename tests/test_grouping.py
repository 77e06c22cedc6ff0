"""rules/grouping.py returns exactly what the numpy calls it replaces return (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest

from norn.rules.grouping import add_at, last_index, unique_inverse


def _cases():
    rng = np.random.default_rng(7)
    yield np.array([], np.int64)
    yield np.array([5, 5, 5], np.int64)
    yield 150000 + rng.integers(0, 10_000, 200_000)  # dense: character ids
    yield rng.integers(-50, 50, 10_000)  # dense, negatives
    yield rng.integers(-1, 5000, 10_000)  # lowest key -1
    yield rng.integers(0, 2**40, 50_000)  # sparse: numpy's path
    fac = rng.integers(0, 64, 100_000)
    yield (fac << 32) | (150000 + rng.integers(0, 5000, 100_000))  # (faction, char) pairs
    yield (rng.integers(-3, 3, 20_000) << 32) | rng.integers(0, 2**32 - 1, 20_000)  # sparse low
    yield np.array([np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max] * 3000, np.int64)


@pytest.mark.parametrize("keys", list(_cases()), ids=lambda k: f"n{len(k)}")
def test_unique_and_last_match_numpy(keys):
    uk, inv = unique_inverse(keys)
    ref_uk, ref_inv = np.unique(keys, return_inverse=True)
    assert uk.dtype == ref_uk.dtype and np.array_equal(uk, ref_uk)
    assert np.array_equal(inv, ref_inv) and inv.shape == ref_inv.shape
    _, rev = np.unique(keys[::-1], return_index=True)
    assert np.array_equal(last_index(keys), len(keys) - 1 - rev)


def test_add_at_matches_numpy_bit_for_bit():
    rng = np.random.default_rng(3)
    n = 100_000
    a = (rng.random((50, 8)) * 1e3).astype(np.float32)  # non-integer: rounding order shows
    i, j = rng.integers(-50, 50, n), rng.integers(0, 8, n)
    ref = a.copy()
    np.add.at(ref, (i, j), np.float32(1.0))
    add_at(a, (i, j), np.float32(1.0))
    assert a.tobytes() == ref.tobytes()
    t = np.zeros(300, np.int64)
    k, d = rng.integers(0, 300, n), rng.integers(-9, 9, n)
    rt = t.copy()
    np.add.at(rt, k, d)
    add_at(t, k, d)
    assert np.array_equal(t, rt)
    c = np.zeros((10, 3), np.int32)
    add_at(c, (rng.integers(0, 10, n), rng.integers(0, 3, n)), 1)  # int64 value: numpy's
    assert c.sum() == n
    with pytest.raises(IndexError):
        add_at(np.zeros(5, np.int64), np.full(n, 5), np.int64(1))
