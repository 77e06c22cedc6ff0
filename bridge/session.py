"""The engine side of the bridge protocol, without sockets: frames in, frames and batches out.

``Session`` is the whole of ``bridge/PROTOCOL.md`` as the engine speaks it: sessions per
``server_id``, sequence numbers, cumulative acks after the journal, credit, lockstep stamps
and progress, validation with dead letters, the action outbox, heartbeats and liveness.
It never touches a socket, a thread or a clock: the caller hands it frames with the time
they arrived (``receive``), lets it work (``work(now)``), and gives it a ``send`` function
that says whether a frame left. ``bridge/server.py`` runs it under a ZeroMQ ROUTER; the
tests run it against a seeded in-memory network that loses, repeats, reorders and delays.

Hostile and greedy peers cost bounded memory and bounded delay to the others:

- **Fairness.** Frames wait per connection and are processed in rounds (deficit round
  robin): each connection may process ``turn_bytes_max`` bytes of frames per round, so a
  server sending 8 MiB batches delays a small server's hello or batch by one round's work,
  not by its whole backlog.
- **Liveness at arrival.** A frame proves its peer alive when it arrives, not when it is
  processed, so a server is never marked down for waiting behind another's backlog, and a
  hello that waited behind its connection's older frames never takes a session from a
  connection that spoke after it.
- **Memory.** Per connection at most ``peer_inbound_bytes_max`` / ``peer_inbound_frames_max``
  wait unprocessed (past that a frame is dropped unread and answered ``overloaded``; its seq
  is not consumed). Decoded batches not yet journaled count against ``held_bytes_max``, in
  which each holding server gets a fair share, and a server's batches in the input queue
  are limited to its fair share of the queue; stamps may run at most
  ``stamp_ahead_ticks_max`` ticks ahead, so nothing can be held for a tick that never comes.
- **Slots.** At most ``servers_max`` sessions and ``server_records_max`` records. A record
  with nothing outstanding is freed when room is needed (its journaled seq is remembered,
  up to ``durable_ids_max`` ids), and a server the journal knows takes the slot of an idle
  session that never delivered anything, so throwaway ids cannot lock known servers out.
- **Containment.** An unexpected exception while handling one frame is a bug: it is counted
  (``internal_errors``), printed, and the frame dead-lettered; the session goes on.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from norn.bridge import protocol as proto
from norn.bridge.codec import EventDecoder, encode_sync
from norn.bridge.config import BridgeConfig
from norn.bridge.dead_letter import DeadLetterStore
from norn.bridge.outbox import PeerOutbox, RecentActions, frames_for, select_for
from norn.bridge.view import WorldView
from norn.engine.actions import ActionBatch
from norn.engine.events import empty_columns
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.observe import log_event

_log = logging.getLogger("norn.bridge.session")

#: Kind of the empty batch that carries the seq of a batch whose kind was unknown.
PLACEHOLDER_KIND = "map_snapshot"

COUNTERS = (
    "frames_in", "bytes_in", "frames_rejected", "events_accepted", "events_rejected",
    "dead_lettered", "duplicates_discarded", "seq_gaps", "seq_gaps_suppressed",
    "window_exceeded", "batches_offered", "rate_limited", "queue_full", "acks_sent",
    "actions_sent", "actions_expired", "actions_dropped", "actions_unroutable",
    "action_frames_sent", "results_received", "errors_sent", "sends_dropped_hwm",
    "peers_marked_down", "peers_timed_out", "hellos", "stale_hellos", "auth_refused",
    "auth_accepted", "dead_letter_errors", "stamped_batches", "tick_order", "tick_ahead",
    "progress_received", "tick_marks_sent", "frames_overloaded", "records_freed",
    "sessions_preempted", "internal_errors", "stamped_late", "syncs_requested", "syncs_sent",
    "sync_rows_sent", "sync_frames_sent", "syncs_stale",
)

#: How many internal-error tracebacks are printed before only the counter grows.
TRACEBACKS_MAX = 8


class Sent(IntEnum):
    """What became of a frame handed to the transport."""

    OK = 0
    FULL = 1  # the peer's queue is full (high-water mark): try again later
    GONE = 2  # no such peer any more (ROUTER_MANDATORY: host unreachable)


#: ``send(routing_id, frame) -> Sent``: the transport, never blocking.
Send = Callable[[bytes, bytes], Sent]


@dataclass
class Peer:
    """What the engine knows of one map server (``server_id``), connected or not."""

    server_id: str
    received: int                 # highest seq accepted from the wire (held or offered)
    acked: int                    # highest seq journaled (safe to ack)
    tokens: float
    tokens_t: float
    outbox: PeerOutbox
    rid: bytes | None = None
    up: bool = False
    last_seen: float = 0.0        # arrival time of its latest frame
    last_arrival: int = 0         # arrival number of its latest frame (a total order)
    next_hb: float = 0.0
    ack_sent: int = -1
    gap_reported: int = 0
    ahead_reported: int = 0
    limited_seq: int = 0          # seq already counted as rate limited / queue full
    full_seq: int = 0
    offered: int = 0              # highest seq in the input queue (or journaled)
    lockstep: bool = False        # session asked for per-tick hb marks
    last_due: int = 0             # highest tick stamp accepted so far
    progress: tuple[int, int] = (0, 0)  # latest (tick, seq) declared by ``progress``
    frontier: int = 0             # ticks <= this are complete in the input queue
    marked: int = 0               # last tick whose actions are all sent (lockstep hb)
    hosts: np.ndarray | None = None  # bool per map_id; None: hosts every map
    held: deque[InputBatch] = field(default_factory=deque)  # decoded, not yet offered
    unjournaled: deque[tuple[int, int, int]] = field(default_factory=deque)  # (seq, B, n)
    held_bytes: int = 0           # bytes of ``held`` and ``unjournaled`` batches
    queued_events: int = 0        # events offered to the input queue, not yet journaled
    batch_bytes: float = 0.0      # moving average of its batch frames' sizes (for credit)
    sync_gen: int = 0             # the join sync asked for by its latest hello
    sync_wait: bool = False       # a sync is asked for: its actions wait behind it
    sync_frames: deque[bytes] = field(default_factory=deque)  # the sync, not yet sent
    sync_tick: int = -1           # the tick of the last sync it was given

    @property
    def outstanding(self) -> bool:
        """Something of this server is still in flight inside the engine."""
        return bool(self.held or self.unjournaled)


@dataclass
class _Inbound:
    """Frames from one connection, read from the socket but not yet processed."""

    frames: deque[tuple[bytes | memoryview, int]] = field(default_factory=deque)
    nbytes: int = 0
    deficit: int = 0
    overload_reported: bool = False


def in_id_order(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A results batch with its rows in ``action_id`` order (stable: repeats of an id keep
    theirs). Results are a set keyed by id; the order a map server answers them in follows
    how frames happened to arrive (a frame resent after a reconnect, a sync's reflected
    ids), so the journal holds them in one order and a lockstep world's digests never
    depend on that timing (PROTOCOL.md section 7)."""
    ids = cols["action_id"]
    if len(ids) < 2 or bool((ids[1:] >= ids[:-1]).all()):
        return cols
    order = np.argsort(ids, kind="stable")
    return {k: v[order] for k, v in cols.items()}


def _nbytes(batch: InputBatch) -> int:
    return sum(c.nbytes for c in batch.columns.values())


class Session:
    """All map servers' sessions with one engine. Single-threaded: the caller serialises."""

    def __init__(
        self,
        inputs: InputQueue,
        view: WorldView,
        config: BridgeConfig,
        dead: DeadLetterStore,
        send: Send,
        *,
        durable_seqs: dict[str, int] | None = None,
        start_tick: int = 0,
        on_frontier: Callable[[str, int], None] | None = None,
        sync_request: Callable[[str, int, np.ndarray | None], None] | None = None,
    ) -> None:
        self.inputs = inputs
        self.view = view
        self.config = config
        self.dead = dead
        self._send_fn = send
        self._durable = {k: int(v) for k, v in (durable_seqs or {}).items()}
        self._on_frontier = on_frontier
        # The join sync (PROTOCOL.md section 16): asked of the tick thread after a hello;
        # it answers through ``synced``.
        self._sync_request = sync_request
        self._caps = proto.SERVER_CAPS + ((proto.SYNC_CAP,) if sync_request else ())
        self._decoder = EventDecoder(
            view.map_names,
            view.map_sizes,
            events_per_batch_max=config.events_per_batch_max,
            text_bytes_max=config.text_bytes_max,
            map_dict_max=config.map_dict_max,
            schema=view.wire,
        )
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.tick = start_tick            # last committed tick (hb, expiry, stamps)
        self._peers: dict[str, Peer] = {}
        self._by_rid: dict[bytes, Peer] = {}
        self.peers_up = 0
        self._inbound: dict[bytes, _Inbound] = {}
        self._active: deque[bytes] = deque()
        self._inbound_bytes = 0
        self._inbound_frames = 0
        self._arrivals = 0
        self._held_total = 0
        self._held_batches = 0
        self._recent = RecentActions(config.action_ttl_ticks, config.action_queue_ticks_max)
        self.last_internal_error: str | None = None

    # -- what the transport asks -----------------------------------------------------------
    def receive(self, rid: bytes, payload: bytes | memoryview, nparts: int, now: float) -> None:
        """A frame arrived from connection ``rid`` (``nparts`` protocol frames, joined)."""
        cfg = self.config
        n = len(payload)
        self.counters["frames_in"] += 1
        self.counters["bytes_in"] += n
        self._arrivals += 1
        peer = self._by_rid.get(rid)
        if peer is not None:  # any frame is a sign of life, however long it waits here
            peer.last_seen = now
            peer.last_arrival = self._arrivals
        if nparts != 1:
            self._reject_frame(rid, peer, proto.ProtocolError(
                proto.ErrorCode.MALFORMED,
                f"{nparts} frames in one message; the protocol uses exactly one"),
                payload[: cfg.dead_letter_raw_bytes_max])
            return
        if n > cfg.frame_bytes_max:  # answered at once, never queued
            self._reject_frame(rid, peer, proto.ProtocolError(
                proto.ErrorCode.FRAME_TOO_LARGE,
                f"frame of {n} bytes > frame_bytes_max={cfg.frame_bytes_max}"),
                payload[: cfg.dead_letter_raw_bytes_max])
            return
        ib = self._inbound.get(rid)
        if ib is None:
            ib = self._inbound[rid] = _Inbound()
            self._active.append(rid)
        if ib.nbytes + n > cfg.peer_inbound_bytes_max or (
            len(ib.frames) >= cfg.peer_inbound_frames_max
        ):
            self.counters["frames_overloaded"] += 1
            if not ib.overload_reported:
                ib.overload_reported = True
                log_event(_log, "server_overloaded", f"{_who(peer, rid)} sends faster than "
                          f"it is processed: frames dropped unread, answered overloaded",
                          level=logging.WARNING, server=_who(peer, rid),
                          frames=len(ib.frames), bytes=ib.nbytes)
                self._send_error(rid, proto.encode_overloaded(
                    len(ib.frames), ib.nbytes, cfg.peer_inbound_frames_max,
                    cfg.peer_inbound_bytes_max), peer)
            return
        ib.frames.append((payload, self._arrivals))
        ib.nbytes += n
        self._inbound_bytes += n
        self._inbound_frames += 1

    def reading(self) -> bool:
        """Whether the transport should read more frames now (else TCP back-pressure)."""
        return (
            self._inbound_bytes < self.config.inbound_bytes_max
            and self._inbound_frames < self.config.inbound_frames_max
        )

    def busy(self) -> bool:
        """Work is waiting that needs no new frame (poll without sleeping)."""
        return bool(self._active) or self._held_batches > 0

    def next_due(self, now: float) -> float:
        """When the timers next need ``work`` (heartbeats, peer timeouts)."""
        nxt = now + self.config.heartbeat_ms / 1000
        timeout_s = self.config.peer_timeout_ms / 1000
        for p in self._peers.values():
            if p.up:
                nxt = min(nxt, p.next_hb, p.last_seen + timeout_s)
        return nxt

    def unreachable(self, rid: bytes) -> None:
        """The transport found no connection ``rid`` any more."""
        peer = self._by_rid.get(rid)
        if peer is not None and peer.up and peer.rid == rid:
            self._down(peer, "unreachable")

    # -- what the tick thread hands over (through the server's lock) -------------------------
    def journaled(self, highest: dict[str, int]) -> None:
        """Batches up to these seqs are durable: ack them, release what they held."""
        for sid in sorted(highest):
            peer = self._peers.get(sid)
            if peer is None:
                continue  # an admin source, not a map server
            seq = highest[sid]
            while peer.unjournaled and peer.unjournaled[0][0] <= seq:
                _, nb, n = peer.unjournaled.popleft()
                peer.held_bytes -= nb
                peer.queued_events -= n
                self._held_total -= nb
            if seq > peer.acked:
                peer.acked = min(seq, peer.received)
                self._send_ack(peer)

    def committed(self, tick: int, batches: list[ActionBatch], now: float) -> None:
        """``tick`` is durable; ``batches`` are the actions of ticks <= it, to route now."""
        if tick == self.tick and not batches:
            return
        self.tick = max(self.tick, tick)
        for batch in batches:
            for sid in sorted(self._peers):
                self._route(self._peers[sid], batch)
            self._recent.add(batch, routed=bool(self._peers))
        self.counters["actions_unroutable"] += self._recent.expire(self.tick)
        for sid in sorted(self._peers):
            peer = self._peers[sid]
            if peer.up:
                if batches:
                    self._flush_actions(peer)
                self._mark(peer, now)

    # -- the work loop ---------------------------------------------------------------------
    def work(self, now: float) -> None:
        """One scheduling round of frames, then offers, timers and dead letters."""
        self._round(now)
        self._offer_all(now)
        self._timers(now)
        self._flush_dead_letters()

    def _round(self, now: float) -> None:
        quantum = self.config.turn_bytes_max
        for _ in range(len(self._active)):
            rid = self._active.popleft()
            ib = self._inbound[rid]
            peer = self._by_rid.get(rid)
            if peer is not None and self._over_share(peer):
                self._active.append(rid)  # waits until its held batches are journaled
                continue
            ib.deficit += quantum
            while ib.frames and len(ib.frames[0][0]) <= ib.deficit:
                payload, arrival = ib.frames.popleft()
                n = len(payload)
                ib.deficit -= n
                ib.nbytes -= n
                ib.overload_reported = False
                self._inbound_bytes -= n
                self._inbound_frames -= 1
                self._handle(rid, payload, arrival, now)
                peer = self._by_rid.get(rid)
                if peer is not None and self._over_share(peer):
                    break
            if ib.frames:
                self._active.append(rid)
            else:
                del self._inbound[rid]

    def _over_share(self, peer: Peer) -> bool:
        """A server holding its fair share of ``held_bytes_max`` waits for the journal."""
        if not peer.held_bytes:
            return False
        holding = sum(1 for p in self._peers.values() if p.held_bytes)
        return peer.held_bytes >= self.config.held_bytes_max // max(1, holding)

    def _handle(self, rid: bytes, payload: bytes | memoryview, arrival: int, now: float) -> None:
        try:
            self._on_message(rid, payload, arrival, now)
        except Exception as exc:  # a bug: counted, shown, and the frame kept as evidence
            self.counters["internal_errors"] += 1
            self.last_internal_error = f"{type(exc).__name__}: {exc}"[:500]
            if self.counters["internal_errors"] <= TRACEBACKS_MAX:
                print("norn bridge: internal error while handling a frame (a bug; the "
                      "frame is dead-lettered):\n" + traceback.format_exc(), file=sys.stderr)
            log_event(_log, "internal_error", f"internal error while handling a frame: "
                      f"{self.last_internal_error}", level=logging.ERROR, printed=True,
                      server=_who(self._by_rid.get(rid), rid))
            peer = self._by_rid.get(rid)
            self._dead_letter(peer, None, None, -1, 0, None,
                              f"internal error: {self.last_internal_error}",
                              payload[: self.config.dead_letter_raw_bytes_max])

    # -- sending ---------------------------------------------------------------------------
    def _send(self, rid: bytes, data: bytes, peer: Peer | None = None) -> bool:
        r = self._send_fn(rid, data)
        if r == Sent.OK:
            return True
        if r == Sent.FULL:
            self.counters["sends_dropped_hwm"] += 1
        elif peer is not None and peer.up and peer.rid == rid:
            self._down(peer, "unreachable")
        return False

    def _send_error(self, rid: bytes, data: bytes, peer: Peer | None = None) -> None:
        self.counters["errors_sent"] += 1
        self._send(rid, data, peer)

    def _reject_frame(
        self, rid: bytes, peer: Peer | None, exc: proto.ProtocolError, raw: Any,
        kind: str | None = None, *, event: str | None = "frame_rejected",
    ) -> None:
        """A frame-level problem: one error frame, and the frame into the dead letters
        (logged as ``event``; None: the caller logged it)."""
        self.counters["frames_rejected"] += 1
        if event is not None:
            log_event(_log, event, f"frame from {_who(peer, rid)} rejected: {exc.message}",
                      level=logging.WARNING, server=_who(peer, rid), reason=_code(exc.code),
                      seq=exc.seq)
        self._send_error(rid, proto.error_from(exc), peer)
        self._dead_letter(peer, exc.seq, kind, -1, exc.code, exc.field, exc.message, raw)

    def _dead_letter(
        self, peer: Peer | None, seq: int | None, kind: str | None, index: int,
        code: int, field_name: str | None, reason: str, raw: Any,
    ) -> None:
        if self.dead.add(
            tick=self.tick, server_id=peer.server_id if peer else None, seq=seq, kind=kind,
            event_index=index, code=code, field=field_name, reason=reason, raw=bytes(raw),
        ):
            self.counters["dead_lettered"] += 1

    def _flush_dead_letters(self) -> None:
        """A failing store (disk full) must not stop the bridge: count it, say it once."""
        try:
            self.dead.flush()
        except Exception:
            self.counters["dead_letter_errors"] += 1
            if self.counters["dead_letter_errors"] == 1:
                print("norn bridge: dead-letter store failed:\n" + traceback.format_exc(),
                      file=sys.stderr)
                log_event(_log, "dead_letter_store_failed", "the dead-letter store failed; "
                          "rejections are counted, no longer kept", level=logging.ERROR,
                          printed=True, path=str(self.dead.path))

    # -- receiving -------------------------------------------------------------------------
    def _on_message(self, rid: bytes, payload: bytes | memoryview, arrival: int,
                    now: float) -> None:
        peer = self._by_rid.get(rid)
        try:
            msg = proto.unpack(payload, self.config.frame_bytes_max)
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, payload[: self.config.dead_letter_raw_bytes_max])
            return
        t = msg["t"]
        if t == proto.HELLO:
            self._hello(rid, msg, payload, arrival, now)
        elif peer is None:
            if t != proto.BYE:
                seq = msg.get("seq")
                self._send_error(rid, proto.encode_error(
                    proto.ErrorCode.HELLO_REQUIRED, "no session: send hello first",
                    seq=seq if type(seq) is int and 0 <= seq <= proto.SEQ_MAX else None))
        elif t in (proto.EVENTS, proto.RESULTS):
            self._batch(rid, peer, msg, payload, now)
        elif t == proto.HB:
            try:
                proto.get_int(msg, "tick", 0, proto.SEQ_MAX)
            except proto.ProtocolError as exc:
                self._reject_frame(rid, peer, exc, payload)
        elif t == proto.PROGRESS:
            self._progress(rid, peer, msg, payload)
        elif t == proto.BYE:
            self._down(peer, "bye")
        else:
            self._reject_frame(rid, peer, proto.ProtocolError(
                proto.ErrorCode.UNKNOWN_TYPE,
                f"unknown message type {proto.describe(t, 40)}", field="t"), payload)

    def _hello(self, rid: bytes, msg: dict[str, Any], raw: Any, arrival: int,
               now: float) -> None:
        self.counters["hellos"] += 1
        cfg = self.config
        current = self._by_rid.get(rid)
        try:
            v = msg.get("v")
            if type(v) is not int:
                raise proto.ProtocolError(
                    proto.ErrorCode.BAD_FIELD,
                    f"v must be an integer (the protocol version), got {proto.describe(v)}",
                    field="v")
            if v not in proto.SUPPORTED_VERSIONS:
                raise proto.ProtocolError(
                    proto.ErrorCode.VERSION_UNSUPPORTED,
                    f"protocol version {v} not supported; "
                    f"supported: {list(proto.SUPPORTED_VERSIONS)}",
                    field="v")
            sid = msg.get("server_id")
            if not isinstance(sid, str) or not proto.SERVER_ID_RE.fullmatch(sid):
                raise proto.ProtocolError(
                    proto.ErrorCode.BAD_FIELD,
                    f"server_id must match {proto.SERVER_ID_RE.pattern}, "
                    f"got {proto.describe(sid, 80)}",
                    field="server_id")
            caps = proto.get_str_list(msg, "caps", 64, 64, required=True)
            maps = proto.get_str_list(msg, "maps", cfg.hello_maps_max, 64, required=True)
            unknown = [m for m in maps if m not in self._decoder.name_to_id]
            if unknown:
                raise proto.ProtocolError(
                    proto.ErrorCode.UNKNOWN_MAP,
                    f"hello names maps the world does not have: {unknown[:8]}", field="maps")
            target = self._peers.get(sid)
            if (target is not None and target.up and target.rid != rid
                    and target.last_arrival > arrival):
                # This hello waited behind its connection's older frames while the server
                # spoke on a newer connection: the newer one keeps the session.
                self.counters["stale_hellos"] += 1
                log_event(_log, "hello_stale", f"a stale hello as {sid} ignored: a newer "
                          "connection speaks for it", server=sid)
                self._send_error(rid, proto.encode_error(
                    proto.ErrorCode.SUPERSEDED,
                    f"stale hello: a newer connection speaks as {sid}"))
                return
            victim = None
            if not ((target is not None and target.up) or (current is not None and current.up)
                    ) and self.peers_up >= cfg.servers_max:
                victim = self._preemptible() if self._known(sid) else None
                if victim is None:
                    raise proto.ProtocolError(
                        proto.ErrorCode.TOO_MANY_SERVERS,
                        f"servers_max={cfg.servers_max} sessions are up")
            evictee = None
            if target is None and len(self._peers) >= cfg.server_records_max:
                evictee = self._evictable(sid)
                if evictee is None:
                    raise proto.ProtocolError(
                        proto.ErrorCode.TOO_MANY_SERVERS,
                        f"server_records_max={cfg.server_records_max} server ids hold "
                        f"unfinished state (or durable_ids_max={cfg.durable_ids_max} ids are "
                        "remembered)")
        except proto.ProtocolError as exc:
            claimed = msg.get("server_id")
            log_event(_log, "server_refused", f"hello refused: {exc.message}",
                      level=logging.WARNING, reason=_code(exc.code),
                      server=claimed if isinstance(claimed, str) else _who(current, rid))
            self._reject_frame(rid, current, exc, raw, event=None)
            return
        if victim is not None:
            self.counters["sessions_preempted"] += 1
            old_rid = victim.rid
            self._down(victim, f"preempted by {sid}")
            self._send_error(old_rid, proto.encode_error(  # type: ignore[arg-type]
                proto.ErrorCode.TOO_MANY_SERVERS,
                f"servers_max={cfg.servers_max}: this session, which has delivered nothing, "
                f"gave its slot to server {sid}, known to the journal"))
        if evictee is not None:
            self._free(evictee)
        fresh = target is None
        if target is None:
            durable = self._durable.pop(sid, 0)
            target = Peer(sid, received=durable, acked=durable, offered=durable,
                          tokens=float(cfg.events_per_s_max), tokens_t=now,
                          outbox=PeerOutbox(cfg.actions_pending_frames_max))
            self._peers[sid] = target
        target.lockstep = proto.LOCKSTEP_CAP in caps
        if current is not None and current is not target:
            self._down(current, f"its connection now speaks as {sid}")
        if target.up and target.rid != rid:
            old = target.rid
            self._down(target, "superseded by a newer connection")
            self._send_error(old, proto.encode_error(  # type: ignore[arg-type]
                proto.ErrorCode.SUPERSEDED, f"another connection said hello as {sid}"))
        if not target.up:
            self.peers_up += 1
        target.up, target.rid = True, rid
        log_event(_log, "server_connected", f"map server {sid} connected (resumes after seq "
                  f"{target.acked})", server=sid, maps=len(maps) if maps else "all",
                  lockstep=target.lockstep, acked=target.acked, known=not fresh)
        self._by_rid[rid] = target
        target.last_seen = now
        target.last_arrival = max(target.last_arrival, arrival)
        target.next_hb = now + cfg.heartbeat_ms / 1000
        target.gap_reported = target.ahead_reported = 0
        before = target.hosts
        if maps:
            hosts = np.zeros(len(self.view.map_names), dtype=bool)
            hosts[[self._decoder.name_to_id[m] for m in maps]] = True
            target.hosts = hosts
        else:
            target.hosts = None
        moved = not fresh and not (
            (before is None and target.hosts is None)
            or (before is not None and target.hosts is not None
                and bool((before == target.hosts).all())))
        if moved:  # it hosts other maps now: its share of the unexpired actions is chosen
            target.outbox.clear()  # again (answered ids it gets again are dropped by id)
        if fresh or moved:  # a server new to this engine gets the actions not yet expired
            for recent in self._recent.ticks:
                self._route(target, recent.batch)
                recent.routed = True
        target.sync_frames.clear()
        target.sync_wait = self._sync_request is not None and proto.SYNC_CAP in caps
        if target.sync_wait:  # its actions wait until the world's state is read for it
            target.sync_gen += 1
            self.counters["syncs_requested"] += 1
            self._sync_request(sid, target.sync_gen,  # type: ignore[misc]
                               None if target.hosts is None else target.hosts.copy())
        welcome = proto.encode_welcome(
            server_id=sid, acked=target.acked, next_seq=target.received + 1,
            credit=cfg.unacked_batches_max, tick=self.tick,
            heartbeat_ms=cfg.heartbeat_ms, peer_timeout_ms=cfg.peer_timeout_ms,
            limits_=cfg.wire_limits(),
            maps=[(n, w, h) for n, (w, h) in zip(self.view.map_names, self.view.map_sizes,
                                                 strict=True)],
            reward_zeny_max=self.view.reward_zeny_max,
            reward_amount_max=self.view.reward_amount_max, caps=self._caps,
        )
        self._send(rid, welcome, target)
        target.ack_sent = target.acked
        target.outbox.resend_all()  # unresolved actions go again after a reconnect
        target.marked = 0
        self._flush_actions(target)
        self._mark(target, now)

    def _known(self, sid: str) -> bool:
        """The journal holds batches of ``sid``: a server that has really delivered."""
        peer = self._peers.get(sid)
        return self._durable.get(sid, 0) > 0 or (peer is not None and peer.acked > 0)

    def _preemptible(self) -> Peer | None:
        """The longest-silent session that never delivered a journaled batch."""
        idle = [p for p in self._peers.values()
                if p.up and p.acked == 0 and not p.outstanding and not self._known(p.server_id)]
        return min(idle, key=lambda p: (p.last_seen, p.server_id), default=None)

    def _evictable(self, incoming: str) -> Peer | None:
        """A record that may be freed: down, nothing in flight; ids the journal knows last.

        Freeing a known id needs room to remember its seq (``incoming`` leaves that memory
        when it takes its own record back)."""
        room = len(self._durable) - (incoming in self._durable) < self.config.durable_ids_max
        free = [p for p in self._peers.values()
                if not p.up and not p.outstanding and (p.acked == 0 or room)]
        return min(free, key=lambda p: (p.acked > 0, p.last_seen, p.server_id), default=None)

    def _free(self, peer: Peer) -> None:
        """Forget a record; its journaled seq is remembered so it resumes exactly."""
        self.counters["records_freed"] += 1
        self.counters["actions_dropped"] += peer.outbox.clear()
        if peer.acked > 0:
            self._durable[peer.server_id] = peer.acked
        del self._peers[peer.server_id]

    def _batch(self, rid: bytes, peer: Peer, msg: dict[str, Any], raw: Any, now: float
               ) -> None:
        cfg = self.config
        peer.batch_bytes += (len(raw) - peer.batch_bytes) / 8
        try:
            seq = proto.get_int(msg, "seq", 1, proto.SEQ_MAX)
            stamp = proto.get_int(msg, "tick", 1, proto.TICK_MAX, seq=seq) if "tick" in msg else 0
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, raw)
            return
        expected = peer.received + 1
        if seq <= peer.received:
            self.counters["duplicates_discarded"] += 1
            if seq <= peer.acked:
                self._send_ack(peer)
            return
        if seq > peer.acked + cfg.unacked_batches_max:
            self.counters["window_exceeded"] += 1
            self._send_error(rid, proto.encode_error(
                proto.ErrorCode.WINDOW_EXCEEDED,
                f"seq {seq} > acked {peer.acked} + unacked_batches_max "
                f"{cfg.unacked_batches_max}; resend from {expected} within the credit",
                seq=seq, expected_seq=expected), peer)
            return
        if seq != expected:
            if peer.gap_reported == expected:
                self.counters["seq_gaps_suppressed"] += 1
            else:
                self.counters["seq_gaps"] += 1
                peer.gap_reported = expected
                self._send_error(rid, proto.encode_error(
                    proto.ErrorCode.SEQ_GAP, f"got seq {seq}, expected {expected}; resend from it",
                    seq=seq, expected_seq=expected), peer)
            return
        if stamp > self.tick + cfg.stamp_ahead_ticks_max:
            self.counters["tick_ahead"] += 1
            if peer.ahead_reported != seq:
                peer.ahead_reported = seq
                self._send_error(rid, proto.encode_tick_ahead(
                    seq, stamp, self.tick, cfg.stamp_ahead_ticks_max), peer)
            return
        peer.gap_reported = 0
        due = self._due(rid, peer, seq, stamp)
        wire = self.view.wire
        kind = msg.get("kind") if msg["t"] == proto.EVENTS else wire.result_kind
        if not (isinstance(kind, str) and kind in wire.engine):
            kind = None
        try:
            dec = self._decoder.decode(msg, seq=seq)
        except proto.ProtocolError as exc:
            exc.seq = seq
            self._reject_frame(rid, peer, exc, raw, kind)
            ekind = kind or PLACEHOLDER_KIND
            batch = InputBatch(peer.server_id, seq, ekind, empty_columns(ekind, wire.engine),
                               due)
        else:
            if len(dec.invalid):
                self._invalid_events(rid, peer, seq, dec)
            cols = dec.columns
            if dec.kind == wire.result_kind:
                cols = in_id_order(cols)
            batch = InputBatch(peer.server_id, seq, dec.kind, cols, due)
            if dec.kind == wire.result_kind:
                self.counters["results_received"] += dec.accepted
                if dec.accepted:
                    peer.outbox.resolve(dec.columns["action_id"])
            else:
                self.counters["events_accepted"] += dec.accepted
        peer.received = seq
        peer.held.append(batch)
        nb = _nbytes(batch)
        peer.held_bytes += nb
        self._held_total += nb
        self._held_batches += 1
        self._offer(peer, now)

    def _due(self, rid: bytes, peer: Peer, seq: int, stamp: int) -> int:
        """The tick an accepted batch waits for: its stamp, never before an earlier one's.

        A stamp that goes back (below an earlier batch's, or into ticks the server already
        declared complete) breaks lockstep: the batch is still applied, as early as its
        order allows, and the server is told which tick it got.
        """
        if not stamp:
            return 0
        self.counters["stamped_batches"] += 1
        if stamp <= self.tick:  # its tick is already committed: it lands on the next one
            self.counters["stamped_late"] += 1
        due = max(stamp, peer.last_due)
        p_tick, p_seq = peer.progress
        if due != stamp or (seq > p_seq and stamp <= p_tick):
            self.counters["tick_order"] += 1
            self._send_error(rid, proto.encode_error(
                proto.ErrorCode.TICK_ORDER,
                f"seq {seq} stamped tick {stamp}, but earlier batches were stamped up to "
                f"{peer.last_due} and progress declared ticks <= {p_tick} complete (up to "
                f"seq {p_seq}); applied at tick {due}, or the next tick if that has passed",
                seq=seq, field="tick"), peer)
        peer.last_due = due
        return due

    def _progress(self, rid: bytes, peer: Peer, msg: dict[str, Any], raw: Any) -> None:
        """``progress``: every batch this server stamps <= tick has a seq <= seq."""
        try:
            tick = proto.get_int(msg, "tick", 0, proto.SEQ_MAX)
            seq = proto.get_int(msg, "seq", 0, proto.SEQ_MAX)
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, raw)
            return
        self.counters["progress_received"] += 1
        if tick > peer.progress[0]:
            peer.progress = (tick, seq)
            self._advance_frontier(peer)

    def _advance_frontier(self, peer: Peer) -> None:
        tick, seq = peer.progress
        if tick > peer.frontier and peer.offered >= seq:
            peer.frontier = tick
            if self._on_frontier is not None:
                self._on_frontier(peer.server_id, tick)

    def _invalid_events(self, rid: bytes, peer: Peer, seq: int, dec: Any) -> None:
        k = len(dec.invalid)
        self.counters["events_rejected"] += k
        log_event(_log, "events_rejected", f"{k} of {dec.n} {dec.kind} events from "
                  f"{peer.server_id} rejected (first: event {int(dec.invalid[0])} "
                  f"{dec.invalid_fields[0]}: {dec.invalid_reasons[0]}); dead-lettered",
                  level=logging.WARNING, server=peer.server_id, reason="invalid_events",
                  kind=dec.kind, seq=seq, rejected=k, events=dec.n)
        details = [
            [int(dec.invalid[j]), dec.invalid_fields[j], dec.invalid_reasons[j]]
            for j in range(min(k, self.config.error_details_max))
        ]
        self._send_error(rid, proto.encode_error(
            proto.ErrorCode.INVALID_EVENTS,
            f"{k} of {dec.n} {dec.kind} events rejected (first: event {details[0][0]} "
            f"{details[0][1]} {details[0][2]}); the {dec.accepted} valid ones are applied",
            seq=seq, field=details[0][1], invalid=k, events=details), peer)
        for j in range(k):
            i = int(dec.invalid[j])
            self._dead_letter(peer, seq, dec.kind, i, proto.ErrorCode.INVALID_EVENTS,
                              dec.invalid_fields[j], dec.invalid_reasons[j], dec.raw_event(i))

    # -- into the input queue --------------------------------------------------------------
    def _offer_all(self, now: float) -> None:
        if self._held_batches:
            for sid in sorted(self._peers):
                peer = self._peers[sid]
                if peer.held:
                    self._offer(peer, now)

    def _offer(self, peer: Peer, now: float) -> None:
        """Offer held batches in seq order; stop at the rate limit, the queue's bound or
        this server's fair share of the queue."""
        rate = float(self.config.events_per_s_max)
        sharing = max(1, self.peers_up)
        events_share = self.inputs.events_max // sharing
        batches_share = self.inputs.batches_max // sharing
        while peer.held:
            batch = peer.held[0]
            n = len(batch)
            peer.tokens = min(rate, peer.tokens + max(0.0, now - peer.tokens_t) * rate)
            peer.tokens_t = max(peer.tokens_t, now)
            if n > peer.tokens:
                if peer.limited_seq != batch.seq:
                    peer.limited_seq = batch.seq
                    self.counters["rate_limited"] += 1
                return
            over_share = peer.unjournaled and (
                peer.queued_events + n > events_share
                or len(peer.unjournaled) + 1 > batches_share
            )
            if over_share or not self.inputs.offer(batch):
                if peer.full_seq != batch.seq:
                    peer.full_seq = batch.seq
                    self.counters["queue_full"] += 1
                return
            peer.tokens -= n
            peer.held.popleft()
            peer.offered = batch.seq
            peer.unjournaled.append((batch.seq, _nbytes(batch), n))
            peer.queued_events += n
            self._held_batches -= 1
            self.counters["batches_offered"] += 1
        self._advance_frontier(peer)

    # -- acks ------------------------------------------------------------------------------
    def _credit(self, peer: Peer) -> int:
        """Batches the server may send beyond its ack: ``unacked_batches_max``, fewer when its
        batches are so large that a full window would not fit ``peer_inbound_bytes_max``
        (a server that follows the credit of each ack is then never answered overloaded)."""
        cfg = self.config
        fit = int(cfg.peer_inbound_bytes_max // max(1.0, peer.batch_bytes))
        return max(1, min(cfg.unacked_batches_max, fit))

    def _send_ack(self, peer: Peer) -> None:
        if peer.up and peer.rid is not None and self._send(
            peer.rid, proto.encode_ack(peer.acked, self._credit(peer)), peer
        ):
            peer.ack_sent = peer.acked
            self.counters["acks_sent"] += 1

    # -- actions out -----------------------------------------------------------------------
    def _mark(self, peer: Peer, now: float) -> None:
        """Lockstep: tell the server that every action up to the committed tick was sent."""
        if not (peer.lockstep and peer.up and peer.rid is not None) or peer.marked >= self.tick:
            return
        if peer.sync_wait or peer.sync_frames or not peer.outbox.all_sent():
            return  # the hb must follow the sync and the actions it vouches for
        if self._send(peer.rid, proto.encode_server_hb(self.tick, peer.acked), peer):
            peer.marked = self.tick
            peer.next_hb = now + self.config.heartbeat_ms / 1000
            self.counters["tick_marks_sent"] += 1

    def _route(self, peer: Peer, batch: ActionBatch) -> None:
        """Queue the actions of ``batch`` that concern ``peer`` as frames (bounded)."""
        sel = select_for(peer.hosts, batch)
        if not sel:
            return
        expires = batch.tick + self.config.action_ttl_ticks
        for entry in frames_for(batch.tick, expires, sel, self.config.actions_per_frame_max,
                                self.view.map_names, self.view.wire):
            self.counters["actions_dropped"] += peer.outbox.add(entry)

    def synced(self, server_id: str, gen: int, tick: int,
               kinds: dict[str, dict[str, np.ndarray]], now: float) -> None:
        """The join sync asked for by hello ``gen`` of ``server_id``: the world's state at
        ``tick`` on its maps. It leaves before any action frame; a sync for an older hello
        (the server said hello again since) is dropped."""
        peer = self._peers.get(server_id)
        if peer is None or gen != peer.sync_gen or not peer.sync_wait:
            self.counters["syncs_stale"] += 1
            return
        frames = encode_sync(tick, kinds, self.view.map_names, self.view.wire,
                             rows_per_frame=self.config.actions_per_frame_max)
        peer.sync_frames = deque(frames)
        peer.sync_wait = False
        peer.sync_tick = tick
        self.counters["syncs_sent"] += 1
        self.counters["sync_rows_sent"] += sum(len(next(iter(c.values()))) for c in kinds.values()
                                               if c)
        log_event(_log, "server_synced", f"map server {server_id} gets the world's state at "
                  f"tick {tick} ({len(frames)} sync frames)", server=server_id, tick=tick,
                  frames=len(frames))
        if peer.up:
            self._flush_actions(peer)
            self._mark(peer, now)

    def _flush_actions(self, peer: Peer) -> None:
        if peer.sync_wait:
            return  # its actions follow the sync
        while peer.sync_frames:
            if not (peer.up and peer.rid is not None):
                return
            if not self._send(peer.rid, peer.sync_frames[0], peer):
                return
            peer.sync_frames.popleft()
            self.counters["sync_frames_sent"] += 1
        for entry in peer.outbox.unsent():
            if not (peer.up and peer.rid is not None):
                return
            if not self._send(peer.rid, entry.frame, peer):
                return
            entry.sent = True
            self.counters["action_frames_sent"] += 1
            self.counters["actions_sent"] += int(entry.open.sum())

    # -- timers ----------------------------------------------------------------------------
    def _timers(self, now: float) -> None:
        hb_s = self.config.heartbeat_ms / 1000
        timeout_s = self.config.peer_timeout_ms / 1000
        for sid in sorted(self._peers):
            peer = self._peers[sid]
            self.counters["actions_expired"] += peer.outbox.expire(self.tick)
            if not peer.up:
                continue
            if now - peer.last_seen > timeout_s:
                self.counters["peers_timed_out"] += 1
                self._down(peer, "silent")
                continue
            if now >= peer.next_hb:
                peer.next_hb = now + hb_s
                # a lockstep session's hb tick only ever vouches for actions already sent
                hb_tick = peer.marked if peer.lockstep else self.tick
                self._send(peer.rid, proto.encode_server_hb(hb_tick, peer.acked), peer)  # type: ignore[arg-type]
            if peer.ack_sent < peer.acked:
                self._send_ack(peer)
            self._flush_actions(peer)
            self._mark(peer, now)

    def _down(self, peer: Peer, why: str = "gone") -> None:
        """A peer is gone or silent: forget its connection, keep its record; world goes on."""
        if peer.up:
            self.peers_up -= 1
            self.counters["peers_marked_down"] += 1
            if why == "silent":
                log_event(_log, "server_silent", f"map server {peer.server_id} went silent "
                          f"(nothing for peer_timeout_ms={self.config.peer_timeout_ms}): "
                          "marked down", level=logging.WARNING, server=peer.server_id,
                          acked=peer.acked)
            else:
                log_event(_log, "server_disconnected", f"map server {peer.server_id} "
                          f"disconnected ({why})", server=peer.server_id, why=why,
                          acked=peer.acked)
        peer.up = False
        peer.sync_wait = False  # its next hello asks for a new sync
        peer.sync_frames.clear()
        if peer.rid is not None and self._by_rid.get(peer.rid) is peer:
            del self._by_rid[peer.rid]
        peer.rid = None
        peer.outbox.resend_all()

    # -- reports ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters)
        out["peers_up"] = self.peers_up
        out["peers_down"] = len(self._peers) - self.peers_up
        out["server_records"] = len(self._peers)
        out["durable_ids"] = len(self._durable)
        out["held_batches"] = self._held_batches
        out["held_bytes"] = self._held_total
        out["inbound_frames"] = self._inbound_frames
        out["inbound_bytes"] = self._inbound_bytes
        out["dead_letter_dropped"] = self.dead.dropped
        out["tick"] = self.tick
        out["last_internal_error"] = self.last_internal_error
        return out

    def peer_seqs(self) -> dict[str, tuple[int, int]]:
        """server id -> (received, acked)."""
        return {sid: (p.received, p.acked) for sid, p in sorted(self._peers.items())}

    def peer_up(self) -> dict[str, bool]:
        """server id -> whether its session is up."""
        return {sid: p.up for sid, p in sorted(self._peers.items())}

    def peer_held_bytes(self) -> dict[str, int]:
        """server id -> bytes of its batches the engine holds until they are journaled."""
        return {sid: p.held_bytes for sid, p in sorted(self._peers.items())}


def _who(peer: Peer | None, rid: bytes) -> str:
    """A peer's server id for the log, or its connection before any hello."""
    return peer.server_id if peer is not None else f"connection {bytes(rid).hex()[:12]}"


def _code(code: int) -> str:
    """An error code's name (``invalid_events``), or its number if it has none."""
    try:
        return proto.ErrorCode(code).name.lower()
    except ValueError:
        return str(code)
