"""Actions on their way out: per-server frames until answered or expired, and recent ticks.

The engine sends a tick's actions only once the tick is durable; from then on each map
server's share of them waits here as encoded ``actions`` frames until every action in a
frame has a result, the frame expires (``expires_tick`` passed) or the bound on frames per
server pushes the oldest out (counted). After a reconnect the unanswered frames are sent
again; action ids make repeats harmless. The last ``action_ttl_ticks`` ticks are kept
whole, so a server that arrives late (or comes back to a restarted engine) still gets
what has not expired.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from norn.bridge.codec import encode_actions
from norn.bridge.protocol import WIRE_V1, WireSchema
from norn.engine.actions import ActionBatch


@dataclass
class PendingFrame:
    """One ``actions`` frame for one server: its ids, which are still open, whether sent."""

    expires_tick: int
    ids: np.ndarray
    open: np.ndarray
    frame: bytes
    sent: bool = False


@dataclass
class PeerOutbox:
    """A map server's unanswered action frames, oldest first, at most ``frames_max``."""

    frames_max: int
    pending: deque[PendingFrame] = field(default_factory=deque)

    def add(self, entry: PendingFrame) -> int:
        """Queue a frame; returns how many open actions the bound pushed out."""
        dropped = 0
        if len(self.pending) >= self.frames_max:
            dropped = int(self.pending.popleft().open.sum())
        self.pending.append(entry)
        return dropped

    def resolve(self, action_ids: np.ndarray) -> None:
        """Results arrived for ``action_ids``: close them; drop frames with nothing open."""
        if not self.pending:
            return
        keep: deque[PendingFrame] = deque()
        for entry in self.pending:
            entry.open &= ~np.isin(entry.ids, action_ids)
            if entry.open.any():
                keep.append(entry)
        self.pending = keep

    def expire(self, tick: int) -> int:
        """Drop frames whose ``expires_tick`` is before ``tick``; returns open actions lost."""
        expired = 0
        while self.pending and self.pending[0].expires_tick < tick:
            expired += int(self.pending.popleft().open.sum())
        return expired

    def unsent(self) -> Iterator[PendingFrame]:
        return (e for e in self.pending if not e.sent)

    def all_sent(self) -> bool:
        return all(e.sent for e in self.pending)

    def resend_all(self) -> None:
        """After a reconnect every unanswered frame goes out again."""
        for entry in self.pending:
            entry.sent = False

    def open_actions(self) -> int:
        return sum(int(e.open.sum()) for e in self.pending)

    def clear(self) -> int:
        n = self.open_actions()
        self.pending.clear()
        return n


def select_for(hosts: np.ndarray | None, batch: ActionBatch) -> dict[str, dict[str, np.ndarray]]:
    """The actions of ``batch`` a server hosting ``hosts`` (bool per map id; None: all) gets.

    Actions with a map go to the servers hosting it (map -1: every server); actions
    without a map field (by char or NPC id) go to every server.
    """
    sel: dict[str, dict[str, np.ndarray]] = {}
    for kind, cols in batch.kinds.items():  # the world's kind order
        if not len(cols["action_id"]):
            continue
        if hosts is None or "map_id" not in cols:
            sel[kind] = cols
            continue
        mid = cols["map_id"].astype(np.int64)
        inside = (mid >= 0) & (mid < len(hosts))
        m = (mid < 0) | (inside & hosts[np.where(inside, mid, 0)])
        if m.all():
            sel[kind] = cols
        elif m.any():
            sel[kind] = {k: v[m] for k, v in cols.items()}
    return sel


def frames_for(
    tick: int,
    expires_tick: int,
    sel: dict[str, dict[str, np.ndarray]],
    per: int,
    map_names: Sequence[str],
    schema: WireSchema = WIRE_V1,
) -> list[PendingFrame]:
    """Encode selected actions as frames of at most ``per`` actions, in id order."""
    out = []
    for part in split_actions(sel, per):
        ids = np.concatenate([c["action_id"] for c in part.values()])
        frame = encode_actions(tick, expires_tick, part, map_names, schema)
        out.append(PendingFrame(expires_tick, ids, np.ones(len(ids), bool), frame))
    return out


def split_actions(
    sel: dict[str, dict[str, np.ndarray]], per: int
) -> list[dict[str, dict[str, np.ndarray]]]:
    """Cut one tick's actions into frames of at most ``per`` actions, in ``action_id``
    order: every id of a frame is below every id of the next (a map server that executes
    each frame in id order, frame after frame, executes the tick in id order; PROTOCOL.md
    section 8). Within a frame, kinds keep their order and each kind's rows their id order."""
    n = sum(len(c["action_id"]) for c in sel.values())
    if n <= per:
        return [{k: c for k, c in sel.items() if len(c["action_id"])}] if n else []
    ids = np.concatenate([c["action_id"] for c in sel.values()])
    cut = np.sort(ids)[per::per]  # the first id of each frame after the first
    frames: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in range(len(cut) + 1)]
    for kind, cols in sel.items():
        # each kind's ids ascend (the engine numbers in emission order, kind by kind)
        which = np.searchsorted(cut, cols["action_id"], side="right")
        bounds = np.searchsorted(which, np.arange(len(frames) + 1))
        for f in range(len(frames)):
            lo, hi = int(bounds[f]), int(bounds[f + 1])
            if hi > lo:
                frames[f][kind] = {k: v[lo:hi] for k, v in cols.items()}
    return frames


@dataclass
class RecentTick:
    """A committed tick's actions, kept ``action_ttl_ticks`` for servers that come late."""

    batch: ActionBatch
    routed: bool  # some server record took them (else they count as unroutable)


@dataclass
class RecentActions:
    """The last ``ttl_ticks`` committed ticks of actions, at most ``ticks_max`` of them."""

    ttl_ticks: int
    ticks_max: int
    ticks: deque[RecentTick] = field(default_factory=deque)

    def add(self, batch: ActionBatch, routed: bool) -> None:
        self.ticks.append(RecentTick(batch, routed))

    def expire(self, committed: int) -> int:
        """Forget ticks past their ttl; returns actions no server was there to take."""
        unroutable = 0
        horizon = committed - self.ttl_ticks
        while self.ticks and (
            self.ticks[0].batch.tick < horizon or len(self.ticks) > self.ticks_max
        ):
            old = self.ticks.popleft()
            if not old.routed:
                unroutable += old.batch.count()
        return unroutable
