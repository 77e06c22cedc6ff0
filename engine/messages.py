"""Typed messages between actors: one ``Channel`` per message type.

A channel carries messages from one source table to one destination table, so DESIGN §1's
canonical order (destination kind, destination id, source kind, source id, emission
sequence) becomes (dst, src, seq) inside a channel. ``seq`` is the source's own index for
the message (its k-th message this tick), supplied by the emitter; (src, seq) must be unique
in a tick. Messages are therefore totally ordered by their own fields, and where a kernel
happened to write them into the buffer never leaks into what a destination reads.

Messages emitted in tick t are delivered in tick t+1 (simultaneous update). Delivery is a
stable counting sort by destination: O(messages + capacity), no Python per message. Each
destination's inbox is then the contiguous slice ``inbox[offsets[d]:offsets[d+1]]``.

Why delivery is shaped as it is (measured with 1M agents sending 0.6M messages a tick,
``norn bench boltzmann``):
- Only the per-destination counts (``offsets``) and the stale check are computed at
  delivery. Putting the fields into canonical order is deferred until a field is first
  read, because many receivers need only ``counts()``: the permutation and the gathers were
  four fifths of the delivery time and are skipped for them. A field, once read, holds
  exactly what an eager sort would have produced.
- Deferring needs the emitted rows intact until then, so a channel keeps two outbox buffer
  sets and alternates: tick t+1's inbox reads the set tick t filled, while tick t+1's
  systems fill the other. When a set is about to be reused and some code still holds the
  inbox that reads it, that inbox is materialized first, so an ``Inbox`` stays valid for as
  long as it is referenced, as before.
- Random reads per message dominate at this size (a few ns from cache, ~10 ns from memory).
  A streaming pre-check proves the common case where no message can be stale (every
  destination named is alive and was never reused, and every message names generation 0);
  then the count is one random increment per message into an int32 array, on the calling
  thread. Otherwise the count reads liveness and generation per message, and only when a
  stale message exists does delivery take the eager path that splits them off.
- In that common case the offsets are computed from the counts only when first read
  (``Inbox.offsets``; a field read needs them), and ``Inbox.counts()`` hands out the int32
  counts themselves: a receiver that only adds counts (the Boltzmann model) never pays
  for the 8-byte prefix. Measured at 1M destinations, 585k messages, on a shared 2-core
  AMD EPYC (issue 16): counting with the prefix fused in, split over the threads, took
  2.8-15 ms (the fork-join waits for a core another process holds); the serial count
  alone 0.6-0.9 ms, and the prefix, when needed, 0.3 ms.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numba
import numpy as np

from norn.engine import limits
from norn.engine.errors import BoundError, NornBug
from norn.engine.table import _all_alive_first_generation

if TYPE_CHECKING:
    from norn.engine.table import Table

HEADER = (("dst", np.int32), ("dst_gen", np.uint32), ("src", np.int32), ("seq", np.int32))

@numba.njit(cache=True, nogil=True)
def _is_strictly_increasing(src: np.ndarray, seq: np.ndarray) -> bool:
    bad = False
    for i in range(1, len(src)):  # branch-free: the common answer reads the whole array
        bad |= (src[i] < src[i - 1]) | ((src[i] == src[i - 1]) & (seq[i] <= seq[i - 1]))
    return not bad


@numba.njit(cache=True, nogil=True)
def _counting_sort(dst: np.ndarray, n_dst: int, offsets: np.ndarray, perm: np.ndarray) -> int:
    """Stable counting sort of message indices by destination; returns -1 or a bad index."""
    offsets[:] = 0
    for i in range(len(dst)):
        d = dst[i]
        if d < 0 or d >= n_dst:
            return i
        offsets[d + 1] += 1
    for d in range(n_dst):
        offsets[d + 1] += offsets[d]
    cursor = offsets[:-1].copy()
    for i in range(len(dst)):
        d = dst[i]
        perm[cursor[d]] = i
        cursor[d] += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _count_destinations(
    dst: np.ndarray,
    dst_gen: np.ndarray,
    n_dst: int,
    check_stale: bool,
    alive: np.ndarray,
    generation: np.ndarray,
    offsets: np.ndarray,
) -> int:
    """offsets = exclusive prefix of messages per destination; returns the stale count.

    The general path: three random reads per message. Integer counts only, so the result
    is exact. (Destinations were range-checked by ``_scan``.)
    """
    offsets[:] = 0
    stale = 0
    for i in range(len(dst)):
        d = dst[i]
        if check_stale:
            stale += (not alive[d]) | (generation[d] != dst_gen[i])
        offsets[d + 1] += 1
    for d in range(n_dst):
        offsets[d + 1] += offsets[d]
    return stale


@numba.njit(cache=True, nogil=True)
def _scan(dst: np.ndarray, dst_gen: np.ndarray, n_dst: int) -> tuple[int, int, bool]:
    """(first message with a destination outside [0, n_dst) or -1, largest destination,
    whether any message names a generation other than 0): one branch-free streaming pass
    (it vectorizes); the offending index is searched for only when there is one."""
    low = np.int64(n_dst)
    top = np.int64(-1)
    gen_or = np.uint32(0)
    for i in range(len(dst)):
        d = np.int64(dst[i])
        low = min(low, d)
        top = max(top, d)
        gen_or |= dst_gen[i]
    if len(dst) and (low < 0 or top >= n_dst):
        for i in range(len(dst)):
            if dst[i] < 0 or dst[i] >= n_dst:
                return i, top, True
    return -1, top, gen_or != 0


@numba.njit(cache=True, nogil=True)
def _histogram(dst: np.ndarray, counts: np.ndarray) -> None:
    """counts[d] = messages to destination d (destinations in range), on this thread.

    Integer increments: the result does not depend on the message order. Serial on
    purpose: it is one random increment per message, and a fork-join costs more than it
    saves whenever another process holds a core (see the module docstring).
    """
    counts[:] = 0
    for i in range(len(dst)):
        counts[dst[i]] += 1


@numba.njit(cache=True, nogil=True)
def _prefix(counts: np.ndarray, offsets: np.ndarray) -> None:
    """offsets = exclusive prefix sum of ``counts`` (one more element)."""
    acc = np.int64(0)
    offsets[0] = 0
    for d in range(len(counts)):
        acc += counts[d]
        offsets[d + 1] = acc


@numba.njit(cache=True, nogil=True)
def _stable_perm(dst: np.ndarray, offsets: np.ndarray, perm: np.ndarray) -> None:
    """perm[k] = index of the k-th message in canonical order (offsets already counted)."""
    cursor = offsets[:-1].copy()
    for i in range(len(dst)):
        d = dst[i]
        perm[cursor[d]] = i
        cursor[d] += 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _gather(values: np.ndarray, perm: np.ndarray, out: np.ndarray) -> None:
    for k in numba.prange(len(perm)):  # each k writes only out[k]
        out[k] = values[perm[k]]


@numba.njit(cache=True, nogil=True, parallel=True)
def _expand_destinations(offsets: np.ndarray, out: np.ndarray) -> None:
    """The sorted ``dst`` column straight from the counts, without a gather."""
    for d in numba.prange(len(offsets) - 1):  # destination d writes only its own segment
        for k in range(offsets[d], offsets[d + 1]):
            out[k] = d


@numba.njit(cache=True, nogil=True)
def _segment_sum(values: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    # Sequential within a segment: the float sum order is the canonical inbox order.
    for d in range(len(offsets) - 1):
        acc = values[0] * 0
        for k in range(offsets[d], offsets[d + 1]):
            acc += values[k]
        out[d] = acc


class _Offsets:
    """An inbox's offsets (int64[n_dst + 1]), or the int32 counts they are summed from
    when first asked for (``buf`` is then filled by ``_prefix``). Shared by the inbox
    and its lazy fields; it refers to neither, so no reference cycle keeps an inbox
    alive (``Channel._replace_inbox`` relies on that)."""

    __slots__ = ("buf", "counts", "ready")

    def __init__(self, buf: np.ndarray, counts: np.ndarray | None = None) -> None:
        self.buf = buf
        self.counts = counts
        self.ready = counts is None

    def get(self) -> np.ndarray:
        if not self.ready:
            _prefix(self.counts, self.buf)
            self.ready = True
        return self.buf

    def copy(self) -> _Offsets:
        out = _Offsets(self.get().copy())
        if self.counts is not None:
            out.counts = self.counts.copy()
        return out


class _DeliveredColumns(Mapping):
    """An inbox's fields, put into canonical order when first read (see the module doc).

    ``source`` holds the fields in emission order (already ordered by (src, seq)) and
    ``offsets`` the counted destinations; the stable permutation is built once, on the
    first read of a field other than ``dst``.
    """

    def __init__(self, source: dict[str, np.ndarray], offsets: _Offsets) -> None:
        self._source = source
        self._offsets = offsets
        self._done: dict[str, np.ndarray] = {}
        self._perm: np.ndarray | None = None
        self._names = tuple(source)
        self._dtypes = {f: a.dtype for f, a in source.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._done.get(name)
        if arr is None:
            values = self._source[name]  # KeyError for an unknown field, as a dict would
            arr = np.empty(len(values), dtype=values.dtype)
            if name == "dst":
                _expand_destinations(self._offsets.get(), arr)
            elif len(values):
                if self._perm is None:
                    self._perm = np.empty(len(values), dtype=np.int64)
                    _stable_perm(self._source["dst"], self._offsets.get(), self._perm)
                _gather(values, self._perm, arr)
            self._done[name] = arr
        return arr

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def dtype_of(self, name: str) -> np.dtype:
        return self._dtypes[name]

    def detach(self) -> dict[str, np.ndarray]:
        """Materialize every field; afterwards nothing refers to the channel's buffers."""
        out = {f: self[f] for f in self._names}
        self._source = {}
        self._perm = None
        return out


class Inbox:
    """Delivered messages of one channel, grouped by destination slot.

    ``stale`` holds, in canonical order, the messages whose destination was despawned
    (or its slot reused) after they were sent: the receiving plugin decides what becomes
    of them (refund, sink), so nothing is delivered to the wrong entity or silently lost.
    """

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        offsets: np.ndarray | _Offsets,
        stale: dict[str, np.ndarray] | None = None,
        n: int | None = None,
    ) -> None:
        self.columns = columns
        self._off = offsets if isinstance(offsets, _Offsets) else _Offsets(offsets)
        self._n = int(self._off.get()[-1]) if n is None else n
        if stale is None:
            if isinstance(columns, _DeliveredColumns):
                stale = {f: np.empty(0, dtype=columns.dtype_of(f)) for f in columns}
            else:
                stale = {f: v[:0] for f, v in columns.items()}
        self.stale = stale

    @property
    def offsets(self) -> np.ndarray:
        """int64[n_dst + 1]: destination d's messages are rows offsets[d]:offsets[d+1]."""
        return self._off.get()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return self._n

    def counts(self) -> np.ndarray:
        """Messages per destination (read-only; int32 when delivery counted them, as it
        does when no message can be stale, else int64)."""
        c = self._off.counts
        if c is None:
            return np.diff(self._off.get())
        view = c.view()
        view.flags.writeable = False
        return view

    def sum(self, name: str) -> np.ndarray:
        """Per-destination sum of a field, in canonical order (deterministic for floats too)."""
        values = self.columns[name]
        offsets = self.offsets
        out = np.zeros(len(offsets) - 1, dtype=values.dtype)
        if len(values):
            _segment_sum(values, offsets, out)
        return out

    def _detach(self) -> None:
        """Stop referring to the channel's reusable buffers (called before they are reused)."""
        if isinstance(self.columns, _DeliveredColumns):
            self.columns = self.columns.detach()
            self._off = self._off.copy()


class Channel:
    """A bounded outbox of one message type, and the inbox delivered from the last tick."""

    def __init__(
        self,
        name: str,
        src_table: str,
        dst_table: str,
        payload: tuple[tuple[str, np.dtype | type], ...],
        capacity: int,
        n_dst: int,
        dst_alive: np.ndarray | None = None,
        dst_generation: np.ndarray | None = None,
        dst_rows: Table | None = None,
    ) -> None:
        if capacity < 1 or capacity > limits.messages_per_channel_max:
            raise BoundError(
                "messages_per_channel_max", limits.messages_per_channel_max, capacity, name
            )
        self.name = name
        self.src_table = src_table
        self.dst_table = dst_table
        self.fields = (*HEADER, *payload)
        self.capacity = capacity
        self.n_dst = n_dst
        self._dst_alive = dst_alive
        self._dst_generation = dst_generation
        # the destination table (whose alive and generation these are), to ask its
        # remembered ``all_fresh`` instead of reading both columns every delivery
        self._dst_rows = dst_rows
        # Two buffer sets (outbox fields + destination offsets), used alternately; the
        # second is allocated on first use. np.zeros maps untouched pages lazily, so rows
        # never written cost address space, not memory.
        self._outs: list[dict[str, np.ndarray] | None] = [self._new_outbox(), None]
        self._offsets: list[np.ndarray | None] = [None, None]
        self._counts: list[np.ndarray | None] = [None, None]  # int32, per buffer set
        self._cur = 0
        self.count = 0
        self.inbox = self._empty_inbox()

    def _new_outbox(self) -> dict[str, np.ndarray]:
        return {f: np.zeros(self.capacity, dtype=dt) for f, dt in self.fields}

    @property
    def out(self) -> dict[str, np.ndarray]:
        """The outbox buffers that emitters fill this tick."""
        return self._outs[self._cur]

    def _empty_inbox(self) -> Inbox:
        cols = {f: np.empty(0, dtype=dt) for f, dt in self.fields}
        return Inbox(cols, np.zeros(self.n_dst + 1, dtype=np.int64))

    def _replace_inbox(self, new: Inbox) -> None:
        """Install ``new``; an old inbox still referenced elsewhere is detached first."""
        ref = weakref.ref(self.inbox)
        self.inbox = new
        old = ref()  # alive only if some other code still holds it
        if old is not None:
            old._detach()

    # -- emitting ---------------------------------------------------------------------
    def reserve(self, n: int) -> dict[str, np.ndarray]:
        """Views of the next ``n`` outbox rows for a kernel to fill in place."""
        if self.count + n > self.capacity:
            raise BoundError(f"{self.name}.capacity", self.capacity, self.count + n, "messages")
        lo = self.count
        self.count += n
        return {f: a[lo : lo + n] for f, a in self.out.items()}

    def release(self, n: int) -> None:
        """Give back the last ``n`` reserved rows a kernel did not fill."""
        if not 0 <= n <= self.count:
            raise ValueError(f"channel {self.name}: cannot release {n} of {self.count} rows")
        self.count -= n

    def emit(self, dst: np.ndarray, src: np.ndarray, seq: np.ndarray | int = 0, **payload) -> None:
        """Append a batch of messages (vectorized). ``dst`` are entity handles."""
        n = len(dst)
        if n == 0:
            return
        unknown = set(payload) - {f for f, _ in self.fields}
        if unknown:
            raise ValueError(f"channel {self.name}: unknown payload fields {sorted(unknown)}")
        rows = self.reserve(n)
        dst = np.asarray(dst, dtype=np.int64)
        rows["dst"][:] = dst & 0xFFFFFFFF
        rows["dst_gen"][:] = dst >> 32
        rows["src"][:] = src
        rows["seq"][:] = seq
        for f, _ in self.fields[len(HEADER) :]:
            rows[f][:] = payload[f]

    def pending(self) -> dict[str, np.ndarray]:
        """Messages emitted this tick, not yet delivered (part of the world's state)."""
        return {f: a[: self.count] for f, a in self.out.items()}

    # -- delivering -------------------------------------------------------------------
    def deliver(self) -> Inbox:
        """Turn the outbox into the inbox in canonical order; the outbox becomes empty."""
        n = self.count
        cur = self._cur
        cols = {f: a[:n] for f, a in self.out.items()}
        if n and not _is_strictly_increasing(cols["src"], cols["seq"]):
            key = cols["src"].astype(np.int64) << 32 | (cols["seq"].astype(np.int64) & 0xFFFFFFFF)
            order = np.argsort(key, kind="stable")
            cols = {f: a[order] for f, a in cols.items()}
            if not _is_strictly_increasing(cols["src"], cols["seq"]):
                k = key[order]
                dup = int(np.flatnonzero(k[1:] == k[:-1])[0])
                raise NornBug(
                    f"channel {self.name}: duplicate (src, seq) = "
                    f"({int(cols['src'][dup])}, {int(cols['seq'][dup])}); "
                    "each source must number its messages"
                )
        offsets = self._offsets[cur]
        if offsets is None:
            offsets = self._offsets[cur] = np.zeros(self.n_dst + 1, dtype=np.int64)
        bad, top, any_gen = _scan(cols["dst"], cols["dst_gen"], self.n_dst)
        if bad >= 0:
            raise NornBug(
                f"channel {self.name}: destination {int(cols['dst'][bad])} outside "
                f"[0, {self.n_dst}) of table {self.dst_table}"
            )
        check = self._dst_alive is not None
        if check and (any_gen or not self._all_fresh(top + 1)):
            stale = _count_destinations(
                cols["dst"],
                cols["dst_gen"],
                self.n_dst,
                True,
                self._dst_alive,
                self._dst_generation,
                offsets,
            )
            if stale:
                inbox = self._deliver_with_stale(cols)
            else:
                off = _Offsets(offsets)
                inbox = Inbox(_DeliveredColumns(cols, off), off, n=n)
        else:  # no message can be stale: every destination named is alive, generation 0
            counts = self._counts[cur]
            if counts is None:
                counts = self._counts[cur] = np.zeros(self.n_dst, dtype=np.int32)
            _histogram(cols["dst"], counts)
            lazy = _Offsets(offsets, counts)  # the prefix is summed when first read
            inbox = Inbox(_DeliveredColumns(cols, lazy), lazy, n=n)
        # the other buffer set becomes the outbox: detach any inbox still reading it
        nxt = 1 - cur
        self._replace_inbox(inbox)
        if self._outs[nxt] is None:
            self._outs[nxt] = self._new_outbox()
        self._cur = nxt
        self.count = 0
        return self.inbox

    def _all_fresh(self, stop: int) -> bool:
        """Destinations [0, stop) are all alive and none was ever reused."""
        if self._dst_rows is not None:
            return self._dst_rows.all_fresh(stop)
        return bool(_all_alive_first_generation(self._dst_alive, self._dst_generation, stop))

    def _deliver_with_stale(self, cols: dict[str, np.ndarray]) -> Inbox:
        """Eager path, taken only when some destination went stale: split those off."""
        n = len(cols["dst"])
        perm = np.empty(n, dtype=np.int64)
        offsets = np.zeros(self.n_dst + 1, dtype=np.int64)
        _counting_sort(cols["dst"], self.n_dst, offsets, perm)
        delivered = {f: a[perm] for f, a in cols.items()}
        d = delivered["dst"]
        ok = self._dst_alive[d] & (self._dst_generation[d] == delivered["dst_gen"])
        stale = {f: a[~ok] for f, a in delivered.items()}
        delivered = {f: a[ok] for f, a in delivered.items()}
        np.cumsum(np.bincount(delivered["dst"], minlength=self.n_dst), out=offsets[1:])
        offsets[0] = 0
        return Inbox(delivered, offsets, stale)

    def restore_pending(self, pending: dict[str, np.ndarray]) -> None:
        n = len(pending["dst"])
        self.count = 0
        rows = self.reserve(n)
        for f, a in pending.items():
            rows[f][:] = a
        self._replace_inbox(self._empty_inbox())
