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
"""

from __future__ import annotations

import numba
import numpy as np

from engine import limits
from engine.errors import BoundError

HEADER = (("dst", np.int32), ("dst_gen", np.uint32), ("src", np.int32), ("seq", np.int32))


@numba.njit(cache=True, nogil=True)
def _is_strictly_increasing(src: np.ndarray, seq: np.ndarray) -> bool:
    for i in range(1, len(src)):
        if src[i] < src[i - 1] or (src[i] == src[i - 1] and seq[i] <= seq[i - 1]):
            return False
    return True


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
def _segment_sum(values: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    # Sequential within a segment: the float sum order is the canonical inbox order.
    for d in range(len(offsets) - 1):
        acc = values[0] * 0
        for k in range(offsets[d], offsets[d + 1]):
            acc += values[k]
        out[d] = acc


class Inbox:
    """Delivered messages of one channel, grouped by destination slot.

    ``stale`` holds, in canonical order, the messages whose destination was despawned
    (or its slot reused) after they were sent: the receiving plugin decides what becomes
    of them (refund, sink), so nothing is delivered to the wrong entity or silently lost.
    """

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        offsets: np.ndarray,
        stale: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.columns = columns
        self.offsets = offsets  # int64[n_dst + 1]
        self.stale = stale if stale is not None else {f: v[:0] for f, v in columns.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sum(self, name: str) -> np.ndarray:
        """Per-destination sum of a field, in canonical order (deterministic for floats too)."""
        values = self.columns[name]
        out = np.zeros(len(self.offsets) - 1, dtype=values.dtype)
        if len(values):
            _segment_sum(values, self.offsets, out)
        return out


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
        self.out = {f: np.zeros(capacity, dtype=dt) for f, dt in self.fields}
        self.count = 0
        self.inbox = self._empty_inbox()
        self._offsets = np.zeros(n_dst + 1, dtype=np.int64)

    def _empty_inbox(self) -> Inbox:
        cols = {f: np.empty(0, dtype=dt) for f, dt in self.fields}
        return Inbox(cols, np.zeros(self.n_dst + 1, dtype=np.int64))

    # -- emitting ---------------------------------------------------------------------
    def reserve(self, n: int) -> dict[str, np.ndarray]:
        """Views of the next ``n`` outbox rows for a kernel to fill in place."""
        if self.count + n > self.capacity:
            raise BoundError(f"{self.name}.capacity", self.capacity, self.count + n, "messages")
        lo = self.count
        self.count += n
        return {f: a[lo : lo + n] for f, a in self.out.items()}

    def emit(self, dst: np.ndarray, src: np.ndarray, seq: np.ndarray | int = 0, **payload) -> None:
        """Append a batch of messages (vectorized). ``dst`` are entity handles."""
        n = len(dst)
        if n == 0:
            return
        rows = self.reserve(n)
        dst = np.asarray(dst, dtype=np.int64)
        rows["dst"][:] = dst & 0xFFFFFFFF
        rows["dst_gen"][:] = dst >> 32
        rows["src"][:] = src
        rows["seq"][:] = seq
        for f, _ in self.fields[len(HEADER) :]:
            rows[f][:] = payload[f]
        unknown = set(payload) - {f for f, _ in self.fields}
        if unknown:
            raise ValueError(f"channel {self.name}: unknown payload fields {sorted(unknown)}")

    def pending(self) -> dict[str, np.ndarray]:
        """Messages emitted this tick, not yet delivered (part of the world's state)."""
        return {f: a[: self.count] for f, a in self.out.items()}

    # -- delivering -------------------------------------------------------------------
    def deliver(self) -> Inbox:
        """Turn the outbox into the inbox in canonical order; the outbox becomes empty."""
        n = self.count
        cols = {f: a[:n] for f, a in self.out.items()}
        if n and not _is_strictly_increasing(cols["src"], cols["seq"]):
            key = cols["src"].astype(np.int64) << 32 | (cols["seq"].astype(np.int64) & 0xFFFFFFFF)
            order = np.argsort(key, kind="stable")
            cols = {f: a[order] for f, a in cols.items()}
            if not _is_strictly_increasing(cols["src"], cols["seq"]):
                k = key[order]
                dup = int(np.flatnonzero(k[1:] == k[:-1])[0])
                raise ValueError(
                    f"channel {self.name}: duplicate (src, seq) = "
                    f"({int(cols['src'][dup])}, {int(cols['seq'][dup])}); "
                    "each source must number its messages"
                )
        perm = np.empty(n, dtype=np.int64)
        offsets = np.zeros(self.n_dst + 1, dtype=np.int64)
        bad = _counting_sort(cols["dst"], self.n_dst, offsets, perm)
        if bad >= 0:
            raise ValueError(
                f"channel {self.name}: destination {int(cols['dst'][bad])} outside "
                f"[0, {self.n_dst}) of table {self.dst_table}"
            )
        delivered = {f: a[perm] for f, a in cols.items()}
        stale = None
        if self._dst_alive is not None and n:
            d = delivered["dst"]
            ok = self._dst_alive[d] & (self._dst_generation[d] == delivered["dst_gen"])
            if not ok.all():
                stale = {f: a[~ok] for f, a in delivered.items()}
                delivered = {f: a[ok] for f, a in delivered.items()}
                offsets = np.zeros(self.n_dst + 1, dtype=np.int64)
                np.cumsum(np.bincount(delivered["dst"], minlength=self.n_dst), out=offsets[1:])
        self.inbox = Inbox(delivered, offsets, stale)
        self.count = 0
        return self.inbox

    def restore_pending(self, pending: dict[str, np.ndarray]) -> None:
        n = len(pending["dst"])
        self.count = 0
        rows = self.reserve(n)
        for f, a in pending.items():
            rows[f][:] = a
        self.inbox = self._empty_inbox()
