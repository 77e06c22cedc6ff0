"""The parallel chunk hash (rehashes of ``PARALLEL_HASH_MIN_BYTES`` or more) is exercised here.

Real runs only reach it with 32 MiB rehashes, so the thread-count determinism tests would
otherwise only cover the serial kernel. The threshold is a module constant: these tests
lower it to 0 (every rehash goes parallel), prove by counting kernel calls that the
parallel kernel ran, and check that it gives the same chunk hashes and tick digests as the
serial one, in-process and in fresh processes with NUMBA_NUM_THREADS 1 and 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from norn.engine import digest
from norn.engine.tick import step
from tests.helpers import ROOT, toy_world

#: world sizes (walkers) x chunk_rows: one chunk, a few, many, with partial last chunks
WORLDS = [(20, 64), (700, 64), (5000, 256), (30000, 1024)]
TICKS = 12


class _CountingPair:
    """Counts the calls of a region kernel and of its one-launch-a-commit sibling
    (``hash_chunks`` and ``hash_tasks``, or their serial versions) together."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, fn):
        def counted(*args) -> None:
            self.calls += 1
            fn(*args)
        return counted


def _count_kernels(monkeypatch, threshold: int) -> tuple[_CountingPair, _CountingPair]:
    par, ser = _CountingPair(), _CountingPair()
    for name, counter in (("hash_chunks", par), ("hash_tasks", par),
                          ("hash_chunks_serial", ser), ("hash_tasks_serial", ser)):
        monkeypatch.setattr(digest, name, counter.wrap(getattr(digest, name)))
    monkeypatch.setattr(digest, "PARALLEL_HASH_MIN_BYTES", threshold)
    return par, ser


def _trace(walkers: int, chunk_rows: int, ticks: int = TICKS) -> list[tuple[int, dict]]:
    """Per tick: the tick digest and every region's chunk hashes (as lists)."""
    world, _, _ = toy_world(seed=17, walkers=walkers, chunk_rows=chunk_rows)
    out = [(world.digest.combine(0), {r.key: r.hashes.tolist() for r in world.digest.regions})]
    for _ in range(ticks):
        d = step(world).digest
        out.append((d, {r.key: r.hashes.tolist() for r in world.digest.regions}))
    assert world.digest.full_check() == []
    return out


@pytest.mark.parametrize("n_words,words_per_chunk", [
    (1, 1), (7, 2), (8, 4), (1000, 8), (1001, 8), (4096, 512), (70_001, 1024), (300_000, 37),
])
def test_parallel_and_serial_kernels_agree_on_any_chunk_subset(n_words, words_per_chunk):
    rng = np.random.default_rng(n_words)
    words = rng.integers(0, 2**63, n_words, dtype=np.uint64)
    n_chunks = -(-n_words // words_per_chunk)
    for chunks in (np.arange(n_chunks), np.flatnonzero(rng.random(n_chunks) < 0.3),
                   np.array([n_chunks - 1])):
        chunks = chunks.astype(np.int64)
        a = np.zeros(n_chunks, np.uint64)
        b = np.zeros(n_chunks, np.uint64)
        digest.hash_chunks(words, words_per_chunk, chunks, a)
        digest.hash_chunks_serial(words, words_per_chunk, chunks, b)
        assert a.tobytes() == b.tobytes()
        untouched = np.setdiff1d(np.arange(n_chunks), chunks)
        assert (a[untouched] == 0).all()
        assert (a[chunks] != 0).all()  # a zero hash would hide an unwritten slot


def test_default_threshold_keeps_small_rehashes_serial(monkeypatch):
    par, ser = _count_kernels(monkeypatch, digest.PARALLEL_HASH_MIN_BYTES)
    _trace(700, 64, ticks=3)
    assert par.calls == 0 and ser.calls > 0


@pytest.mark.parametrize("walkers,chunk_rows", WORLDS)
def test_forced_parallel_path_runs_and_matches_the_serial_path(monkeypatch, walkers, chunk_rows):
    par, ser = _count_kernels(monkeypatch, 1 << 62)  # nothing reaches it: all serial
    serial = _trace(walkers, chunk_rows)
    assert par.calls == 0 and ser.calls > 0
    serial_calls = ser.calls
    par, ser = _count_kernels(monkeypatch, 0)  # every rehash goes parallel
    parallel = _trace(walkers, chunk_rows)
    assert ser.calls == 0 and par.calls == serial_calls  # the same rehashes, other kernel
    assert len(parallel) == len(serial) == TICKS + 1
    for t, ((dp, hp), (ds, hs)) in enumerate(zip(parallel, serial, strict=True)):
        assert hp == hs, f"chunk hashes differ at tick {t}"
        assert dp == ds, f"tick digest differs at tick {t}"


SCRIPT = """
import json, sys
import numba
import xxhash
from norn.engine import digest
from norn.engine.tick import step
from tests.helpers import toy_world

mode, worlds, ticks = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
digest.PARALLEL_HASH_MIN_BYTES = 0 if mode == "parallel" else 1 << 62
calls = {"parallel": 0, "serial": 0}
for name in ("hash_chunks", "hash_chunks_serial", "hash_tasks", "hash_tasks_serial"):
    kernel = getattr(digest, name)
    def counted(*a, _k=kernel, _n="serial" if name.endswith("serial") else "parallel"):
        calls[_n] += 1
        _k(*a)
    setattr(digest, name, counted)
out = {"threads": numba.get_num_threads(), "worlds": []}
for walkers, chunk_rows in worlds:
    world, _, _ = toy_world(seed=17, walkers=walkers, chunk_rows=chunk_rows)
    ticks_out = []
    for _ in range(ticks):
        d = step(world).digest
        h = xxhash.xxh3_64()
        for r in world.digest.regions:
            h.update(r.key.encode())
            h.update(r.hashes.tobytes())
        ticks_out.append([d, h.hexdigest()])
    out["worlds"].append(ticks_out)
out["calls"] = calls
print(json.dumps(out))
"""


def _fresh_process(mode: str, threads: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", SCRIPT, mode, json.dumps(WORLDS), str(TICKS)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_parallel_path_is_bit_identical_under_one_and_two_numba_threads():
    one = _fresh_process("parallel", 1)
    two = _fresh_process("parallel", 2)
    serial = _fresh_process("serial", 2)
    assert (one["threads"], two["threads"], serial["threads"]) == (1, 2, 2)
    assert one["calls"]["serial"] == two["calls"]["serial"] == 0
    assert one["calls"]["parallel"] == two["calls"]["parallel"] == serial["calls"]["serial"] > 0
    assert serial["calls"]["parallel"] == 0
    assert len(one["worlds"]) == len(WORLDS) and all(len(w) == TICKS for w in one["worlds"])
    assert one["worlds"] == two["worlds"] == serial["worlds"]


@pytest.mark.parametrize("rows", [1, 7, 1023, 1025, 3001, 4096 + 3])
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int16])
def test_a_region_of_part_words_hashes_as_its_padded_copy(rows, dtype):
    """Sizes that are not whole words hash the last chunk from a padded copy of it alone:
    the hashes are those of the whole padded array, for every chunk subset."""
    arr = np.random.default_rng(rows).integers(0, 100, rows).astype(dtype)
    chunk_rows = 512
    wpc = -(-(chunk_rows * arr.itemsize) // 8)
    n_chunks = -(-rows // chunk_rows)
    want = np.zeros(n_chunks, dtype=np.uint64)
    digest.hash_chunks_serial(digest.as_words(arr), wpc, np.arange(n_chunks), want)
    for persistent in (False, True):
        d = digest.Digest()
        region = digest.Region("t", "c", lambda: arr, chunk_rows, persistent)
        d.add(region)
        np.testing.assert_array_equal(region.hashes, want)
        if persistent and n_chunks > 1:  # only the first and the last chunk dirty
            region.hashes[:] = 0
            region.dirty[[0, n_chunks - 1]] = True
            d._rehash(region, full=False)
            np.testing.assert_array_equal(region.hashes[[0, n_chunks - 1]],
                                          want[[0, n_chunks - 1]])
