"""The two-level state digest (DESIGN §3).

Level 1: one 64-bit hash per (region, chunk), where a region is a table column (or a
pending-message / pending-decision field) and a chunk is ``chunk_rows`` consecutive rows.
Only chunks written in the tick are rehashed. Level 2: the tick digest, xxh3-64 over the
tick number and every region's chunk hashes in sorted region order. The tick's inputs are
a region too (``inputs.hash``, ``inputs_hash``), so the digest covers what went in, not
only what it changed.

Keeping level 1 lets ``verify`` name the first divergent table, column and row range
straight from the hashes, and keeps the per-tick cost proportional to what changed.

The chunk hash is a 4-lane multiply-rotate hash over the chunk's bytes viewed as uint64
words, finished with an avalanche mix. It is for divergence detection, not adversaries.
Chunks are independent, so a large rehash runs them in parallel with disjoint outputs; the
result does not depend on the thread count (small ones run on the calling thread, see
``PARALLEL_HASH_MIN_BYTES``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numba
import numba.extending
import numpy as np
import xxhash

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@numba.njit(cache=True, nogil=True)
def _hash_words(words: np.ndarray, lo: int, hi: int, seed: np.uint64) -> np.uint64:
    a = seed + P1
    b = seed + P2
    c = seed ^ P3
    d = seed - P4
    i = lo
    while i + 4 <= hi:
        a = _rotl(a ^ (words[i] * P2), 31) * P1
        b = _rotl(b ^ (words[i + 1] * P2), 31) * P1
        c = _rotl(c ^ (words[i + 2] * P2), 31) * P1
        d = _rotl(d ^ (words[i + 3] * P2), 31) * P1
        i += 4
    h = _rotl(a, 1) + _rotl(b, 7) + _rotl(c, 12) + _rotl(d, 18)
    while i < hi:
        h = _rotl(h ^ (words[i] * P2), 27) * P1 + P4
        i += 1
    h ^= np.uint64(hi - lo)
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


@numba.njit(cache=True, nogil=True, parallel=True)
def hash_chunks(
    words: np.ndarray, words_per_chunk: int, chunks: np.ndarray, out: np.ndarray
) -> None:
    """out[chunks[k]] = hash of chunk chunks[k]; each k writes only its own slot."""
    for k in numba.prange(len(chunks)):
        c = chunks[k]
        lo = c * words_per_chunk
        hi = min(lo + words_per_chunk, len(words))
        out[c] = _hash_words(words, lo, hi, np.uint64(c) * P4 + P3)


@numba.njit(cache=True, nogil=True)
def hash_chunks_serial(
    words: np.ndarray, words_per_chunk: int, chunks: np.ndarray, out: np.ndarray
) -> None:
    """``hash_chunks`` on the calling thread: identical hashes, no fork-join."""
    for k in range(len(chunks)):
        c = chunks[k]
        lo = c * words_per_chunk
        hi = min(lo + words_per_chunk, len(words))
        out[c] = _hash_words(words, lo, hi, np.uint64(c) * P4 + P3)


@numba.extending.intrinsic
def _u64_at(typingctx, addr):  # type: ignore[no-untyped-def]
    """The uint64 pointer at address ``addr`` (an int64 from ``ndarray.ctypes.data``)."""
    if not isinstance(addr, numba.types.Integer):
        return None
    ptr = numba.types.CPointer(numba.types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(addr), codegen


@numba.njit(cache=True, nogil=True)
def _dirty_tasks(flags, flag_off, n_chunks):  # type: ignore[no-untyped-def]
    """(region slot, chunk) of every set flag, slot by slot and chunks ascending; clears them."""
    total = 0
    for j in range(len(flag_off)):
        for c in range(n_chunks[j]):
            total += flags[flag_off[j] + c]
    slot = np.empty(total, np.int64)
    chunk = np.empty(total, np.int64)
    t = 0
    for j in range(len(flag_off)):
        o = flag_off[j]
        for c in range(n_chunks[j]):
            if flags[o + c]:
                flags[o + c] = False
                slot[t] = j
                chunk[t] = c
                t += 1
    return slot, chunk


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_task(t, slot, chunk, words_at, n_words, wpc, new):  # type: ignore[no-untyped-def]
    j = slot[t]
    c = chunk[t]
    words = numba.carray(_u64_at(words_at[j]), n_words[j])
    lo = c * wpc[j]
    hi = min(lo + wpc[j], n_words[j])
    new[t] = _hash_words(words, lo, hi, np.uint64(c) * P4 + P3)


@numba.njit(cache=True, nogil=True, parallel=True)
def hash_tasks(slot, chunk, words_at, n_words, wpc, new):  # type: ignore[no-untyped-def]
    """Every (region, chunk) task of a commit in one parallel launch: ``new[t]`` = the hash
    of chunk ``chunk[t]`` of region slot ``slot[t]`` (its words at address ``words_at``).
    Each task writes only its own entry: thread-count independent. (Only reads go through
    the addresses here: numba's parfor passes drop stores into an array made from a
    pointer inside the loop; ``_store_hashes`` writes them back on the calling thread.)"""
    for t in numba.prange(len(slot)):
        _hash_task(t, slot, chunk, words_at, n_words, wpc, new)


@numba.njit(cache=True, nogil=True)
def hash_tasks_serial(slot, chunk, words_at, n_words, wpc, new):  # type: ignore[no-untyped-def]
    """``hash_tasks`` on the calling thread: identical hashes, no fork-join."""
    for t in range(len(slot)):
        _hash_task(t, slot, chunk, words_at, n_words, wpc, new)


@numba.njit(cache=True, nogil=True)
def _store_hashes(slot, chunk, hashes_at, n_chunks, new, changed):  # type: ignore[no-untyped-def]
    """Each task's hash into its region's hash array; ``changed[t]``: it differs from before."""
    for t in range(len(slot)):
        j = slot[t]
        c = chunk[t]
        hashes = numba.carray(_u64_at(hashes_at[j]), n_chunks[j])
        changed[t] = hashes[c] != new[t]
        hashes[c] = new[t]


#: a rehash this large (bytes) is split over numba's threads. Smaller ones stay on the
#: calling thread: one thread hashes ~10 GB/s, while a fork-join costs microseconds on an
#: idle machine and milliseconds when another process holds a core (measured on a shared
#: 2-core VM: 7 small parallel rehashes a tick turned a 10 ms tick into 50 ms).
#: Read at each rehash, so a test can lower it to 0 to send every rehash through the
#: parallel kernel (tests/test_digest_parallel.py); hashes are the same either way.
PARALLEL_HASH_MIN_BYTES = 32 << 20

#: ``np.int64(n).tobytes()`` for the region lengths (in chunks) the tick digest hashes.
_LEN_BYTES = [np.int64(n).tobytes() for n in range(1 << 12)]


def as_words(arr: np.ndarray) -> np.ndarray:
    """The array's bytes as uint64 words (zero-padded copy only if the size is not whole)."""
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    if flat.size % 8:
        pad = np.zeros(flat.size + (8 - flat.size % 8), dtype=np.uint8)
        pad[: flat.size] = flat
        flat = pad
    return flat.view(np.uint64)


def _split_words(arr: np.ndarray, wpc: int, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """(the whole words of a C-contiguous array whose size is not whole words, as a view;
    the last chunk's words, zero-padded, as a small copy). Hashing every chunk but the
    last from the view and the last from the copy gives ``as_words``' hashes without
    copying the array: a pending-message field of 4-byte rows has an odd size every
    other tick (measured: 4 copies of 2.3 MB a tick, 0.7 ms of CPU, at 1M Boltzmann
    agents; issue 16)."""
    flat = arr.reshape(-1).view(np.uint8)
    whole = flat.size - flat.size % 8
    start = (n_chunks - 1) * wpc * 8  # the last chunk's first byte (chunks are whole words)
    tail = np.zeros(-(-(flat.size - start) // 8) * 8, dtype=np.uint8)
    tail[: flat.size - start] = flat[start:]
    return flat[:whole].view(np.uint64), tail.view(np.uint64)


@dataclass
class Region:
    """A hashed array: table column, or a field of pending messages/decisions."""

    group: str
    name: str
    get: Callable[[], np.ndarray]
    chunk_rows: int
    persistent: bool  # tables: rehash only dirty chunks; pending buffers: rehash whole
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    dirty: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    # (array, chunks, its words, words per chunk) of the last rehash, while ``get`` returns
    # that same array (a table's column): its words are a view, valid as long as it lives.
    geometry: tuple[np.ndarray, int, np.ndarray, int] | None = field(
        default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.group}.{self.name}"

    @cached_property
    def key_bytes(self) -> bytes:
        return self.key.encode()


class Digest:
    """Level-1 chunk hashes for every region, and the tick digest built from them."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._by_key: dict[str, Region] = {}
        # The dirty flags of every persistent region, as views into one array (built at
        # the first commit, again when a region is added or changes length), so a commit
        # finds the few regions written this tick with one scan instead of one per region.
        self._dirty_layout: tuple[np.ndarray, np.ndarray] | None = None
        self._flag_off = np.zeros(0, np.int64)

    def add(self, region: Region) -> None:
        if region.key in self._by_key:
            raise ValueError(f"duplicate digest region {region.key}")
        self.regions.append(region)
        self._by_key[region.key] = region
        self.regions.sort(key=lambda r: (r.group, r.name))
        self._dirty_layout = None
        self._rehash(region, full=True)

    def region(self, key: str) -> Region:
        return self._by_key[key]

    def mark(self, key: str, row_lo: int = 0, row_hi: int | None = None) -> None:
        """Rows [row_lo, row_hi) of region ``key`` were written this tick."""
        r = self._by_key[key]
        if row_hi is None:
            row_hi = len(r.get())
        if row_hi <= row_lo:
            return
        r.dirty[row_lo // r.chunk_rows : -(-row_hi // r.chunk_rows)] = True

    def _rehash(self, r: Region, full: bool) -> np.ndarray:
        arr = r.get()
        geo = r.geometry
        if geo is not None and geo[0] is arr:
            n_chunks = geo[1]
        else:
            geo = None
            rows = arr.shape[0] if arr.ndim else 1
            n_chunks = max(1, -(-rows // r.chunk_rows))
        if len(r.hashes) != n_chunks:
            r.hashes = np.zeros(n_chunks, dtype=np.uint64)
            r.dirty = np.ones(n_chunks, dtype=np.bool_)
            if r.persistent:  # per-tick regions change length most ticks; not in the layout
                self._dirty_layout = None
            full = True
        chunks = np.arange(n_chunks, dtype=np.int64) if full else r.dirty.nonzero()[0]
        if len(chunks):
            tail = None
            if geo is None:
                row_bytes = arr.itemsize * (math.prod(arr.shape[1:]) if arr.ndim > 1 else 1)
                wpc = max(1, -(-(r.chunk_rows * row_bytes) // 8))
                if arr.nbytes % 8 and arr.flags.c_contiguous:
                    words, tail = _split_words(arr, wpc, n_chunks)
                else:
                    words = as_words(arr)
                    if r.persistent and arr.flags.c_contiguous and arr.nbytes % 8 == 0:
                        r.geometry = (arr, n_chunks, words, wpc)  # words: a view, no copy
            else:
                words, wpc = geo[2], geo[3]
            before = r.hashes[chunks]
            body = chunks
            if tail is not None and chunks[-1] == n_chunks - 1:
                body = chunks[:-1]  # the last chunk ends in a part word: hashed from ``tail``
                seed = ((n_chunks - 1) * int(P4) + int(P3)) & 0xFFFFFFFFFFFFFFFF  # as uint64
                r.hashes[n_chunks - 1] = _hash_words(tail, 0, len(tail), np.uint64(seed))
            if len(body) * wpc * 8 >= PARALLEL_HASH_MIN_BYTES:
                hash_chunks(words, wpc, body, r.hashes)
            else:
                hash_chunks_serial(words, wpc, body, r.hashes)
            changed = chunks[r.hashes[chunks] != before]
        else:
            changed = chunks
        r.dirty[:] = False
        return changed

    def commit(self, tick: int) -> tuple[int, np.ndarray]:
        """Rehash dirty chunks; return (tick digest, changed chunk records).

        The dirty chunks of every written region whose column is the array its geometry
        was taken from (the common case: a table column) are hashed in one launch,
        ``hash_tasks`` (issue 16: one fork-join a tick instead of a Python round and a
        kernel call per region; ~300 regions a tick in the 1M-NPC world); the others
        (pending buffers, a column that changed length or ends in a part word) one by one
        in ``_rehash``. The hashes and the records are the same either way: records by
        region index, chunks ascending.
        """
        flags, owner = self._layout()
        hot_idx = np.unique(owner[np.flatnonzero(flags)]).tolist()
        batch: list[int] = []
        for idx in hot_idx:
            r = self.regions[idx]
            geo = r.geometry
            if geo is not None and geo[0] is r.get() and len(r.hashes) == geo[1]:
                batch.append(idx)
        regions: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        if batch:
            rs = [self.regions[i] for i in batch]
            n_chunks = np.array([len(r.hashes) for r in rs], np.int64)
            slot, chunk = _dirty_tasks(flags, self._flag_off[batch], n_chunks)
            wpc = np.array([r.geometry[3] for r in rs], np.int64)
            n_words = np.array([len(r.geometry[2]) for r in rs], np.int64)
            words_at = np.array([r.geometry[2].ctypes.data for r in rs], np.int64)
            hashes_at = np.array([r.hashes.ctypes.data for r in rs], np.int64)
            new = np.empty(len(slot), np.uint64)
            changed = np.empty(len(slot), np.bool_)
            nbytes = int(np.dot(np.bincount(slot, minlength=len(rs)), wpc)) * 8
            kernel = hash_tasks if nbytes >= PARALLEL_HASH_MIN_BYTES else hash_tasks_serial
            kernel(slot, chunk, words_at, n_words, wpc, new)
            _store_hashes(slot, chunk, hashes_at, n_chunks, new, changed)
            regions.append(np.asarray(batch, np.uint32)[slot[changed]])
            chunks.append(chunk[changed])
            hashes.append(new[changed])
        hot = set(hot_idx)
        done = set(batch)
        for idx, r in enumerate(self.regions):
            if idx in done:
                continue
            if r.persistent and idx not in hot:
                # Nothing marked: unchanged, unless its array changed length (rehashed whole).
                arr = r.get()
                rows = arr.shape[0] if arr.ndim else 1
                if len(r.hashes) == max(1, -(-rows // r.chunk_rows)):
                    continue
            changed_chunks = self._rehash(r, full=not r.persistent)
            if len(changed_chunks):
                regions.append(np.full(len(changed_chunks), idx, np.uint32))
                chunks.append(changed_chunks)
                hashes.append(r.hashes[changed_chunks])
        n = sum(len(c) for c in chunks)
        out = np.empty(n, dtype=CHUNK_RECORD)
        if n:
            region = np.concatenate(regions)
            order = np.argsort(region, kind="stable")  # region by region, chunks ascending
            out["region"] = region[order]
            out["chunk"] = np.concatenate(chunks)[order]
            out["hash"] = np.concatenate(hashes)[order]
        return self.combine(tick), out

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(every persistent region's dirty flags, the region index owning each flag); also
        ``_flag_off``: where each region's flags start (by region index; -1: not persistent)."""
        if self._dirty_layout is None:
            pers = [i for i, r in enumerate(self.regions) if r.persistent]
            sizes = [len(self.regions[i].dirty) for i in pers]
            flags = np.zeros(sum(sizes), dtype=np.bool_)
            flag_off = np.full(len(self.regions), -1, np.int64)
            pos = 0
            for i, n in zip(pers, sizes, strict=True):
                r = self.regions[i]
                flags[pos:pos + n] = r.dirty
                r.dirty = flags[pos:pos + n]  # a view: marks land in ``flags``
                flag_off[i] = pos
                pos += n
            owner = np.repeat(np.asarray(pers, dtype=np.int64), sizes)
            self._dirty_layout = (flags, owner)
            self._flag_off = flag_off
        return self._dirty_layout

    def combine(self, tick: int, *, state_only: bool = False) -> int:
        """The tick digest; ``state_only`` leaves out per-tick outputs (emitted actions)."""
        # One xxh3 over the concatenation: the same digest as updating part by part.
        parts = [np.int64(tick).tobytes()]
        for r in self.regions:
            if state_only and r.group in OUTPUT_GROUPS:
                continue
            parts += (r.key_bytes, _LEN_BYTES[len(r.hashes)] if len(r.hashes) < len(
                _LEN_BYTES) else np.int64(len(r.hashes)).tobytes(), r.hashes.tobytes())
        return xxhash.xxh3_64_intdigest(b"".join(parts))

    def full_check(self) -> list[str]:
        """Rehash everything from scratch; name regions whose incremental hash was stale.

        A non-empty answer means a system wrote a column it did not declare.
        """
        stale = []
        for r in self.regions:
            saved = r.hashes.copy()
            self._rehash(r, full=True)
            if not np.array_equal(saved, r.hashes):
                stale.append(r.key)
        return stale

    def keys(self) -> list[str]:
        return [r.key for r in self.regions]


def inputs_hash(batches: Iterable[Any]) -> np.ndarray:
    """The ``inputs.hash`` region: one xxh3-64 over a tick's input batches, in drain order.

    Source, seq, kind and every column (by name, with its dtype and bytes), each length-
    prefixed. In the tick digest, an input no state reads still cannot be altered unseen.
    """
    h = xxhash.xxh3_64()

    def put(b: bytes) -> None:
        h.update(np.int64(len(b)).tobytes())
        h.update(b)

    for batch in batches:
        put(batch.source.encode())
        h.update(np.int64(batch.seq).tobytes())
        put(batch.kind.encode())
        for name in sorted(batch.columns):
            col = np.ascontiguousarray(batch.columns[name])
            put(name.encode())
            put(col.dtype.str.encode())
            put(col.tobytes())
    return np.array([h.intdigest()], dtype=np.uint64)


#: Region groups that are a tick's outputs or inputs rather than state carried to the next
#: tick (left out of snapshot digests: a restored world has not drained or emitted yet).
OUTPUT_GROUPS = frozenset({"actions", "inputs"})

CHUNK_RECORD = np.dtype([("region", "<u4"), ("chunk", "<u4"), ("hash", "<u8")])
