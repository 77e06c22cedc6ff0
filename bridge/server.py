"""The engine side of the bridge: a ZeroMQ ROUTER on its own thread beside the tick loop.

Why a thread of its own: the tick must never wait on a socket. The tick thread touches the
bridge in two places only, both non-blocking: ``emit`` (an ``ActionSink``: queue this
tick's actions, bounded, and return) and the input queue's journaled listener (note the
highest durable seq per source). Everything else (sockets, decoding, validation,
acks, heartbeats, retransmission) happens on the bridge thread, which is woken through a
pipe so actions leave within microseconds of ``emit``.

Reliability is the protocol's job (ZeroMQ drops silently at full or unknown peers):

- each map server numbers its batches 1, 2, 3...; the server accepts them strictly in
  order, discards duplicates (at or below what it already has, including what the journal
  recovered after a restart: ``durable_seqs``) and reports a gap once per expected seq;
- every accepted seq becomes exactly one ``InputBatch`` (empty when all its events were
  rejected), so the journal carries every seq and a restart knows where to resume;
- a cumulative ``ack`` is sent only after the input queue reports the batch journaled;
- ``ROUTER_MANDATORY`` is set, so a send to a vanished peer raises instead of vanishing,
  and high-water marks are explicit but only a safety net.

Validation is at the edge (``bridge.codec``): invalid events get an error frame naming the
field and reason and go to the dead-letter store; valid events of the same batch go on.

Actions leave only once their tick is durable (``committed``): an action from a tick a
crash could undo never reaches a map server. The last ``action_ttl_ticks`` ticks of actions
are kept, so a server that connects late (or reconnects to a restarted engine, which
re-emits them from its journal) still gets what has not expired; ids make repeats harmless.

Lockstep (PROTOCOL.md section 14): batches stamped with a tick wait for it in the input
queue; ``progress`` says which ticks a server has finished; ``wait_progress`` is the tick
thread's barrier on it; and a lockstep session gets an ``hb`` after each tick's actions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from zmq.utils import z85 as zmq_z85

from bridge import protocol as proto
from bridge.codec import EventDecoder, encode_actions
from bridge.config import BridgeConfig
from bridge.dead_letter import DeadLetterStore
from bridge.keys import read_allowed, read_key
from engine import clock as engine_clock
from engine import limits
from engine.actions import ACTION_KINDS, ActionBatch
from engine.errors import ConfigError
from engine.events import EVENT_SCHEMAS, empty_columns
from engine.inputs import InputBatch, InputQueue

#: Kind of the empty batch that carries the seq of a batch whose kind was unknown.
PLACEHOLDER_KIND = "map_snapshot"

COUNTERS = (
    "frames_in", "bytes_in", "frames_rejected", "events_accepted", "events_rejected",
    "dead_lettered", "duplicates_discarded", "seq_gaps", "seq_gaps_suppressed",
    "window_exceeded", "batches_offered", "rate_limited", "queue_full", "acks_sent",
    "actions_sent", "actions_expired", "actions_dropped", "actions_unroutable",
    "action_frames_sent", "results_received", "errors_sent", "sends_dropped_hwm",
    "peers_marked_down", "hellos", "auth_refused", "auth_accepted", "dead_letter_errors",
    "stamped_batches", "tick_order", "progress_received", "tick_marks_sent",
)


@dataclass(frozen=True)
class WorldView:
    """What the edge must know about the world: maps (index = map_id) and reward caps."""

    map_names: tuple[str, ...]
    map_sizes: tuple[tuple[int, int], ...]  # (width, height) in cells
    reward_zeny_max: int
    reward_amount_max: int

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.map_names)
        sizes = tuple((int(w), int(h)) for w, h in self.map_sizes)
        object.__setattr__(self, "map_names", names)
        object.__setattr__(self, "map_sizes", sizes)
        if len(names) != len(sizes):
            raise ConfigError(f"WorldView: {len(names)} map names but {len(sizes)} map sizes")
        if len(names) > proto.INT16_MAX:
            raise ConfigError(f"WorldView: {len(names)} maps > {proto.INT16_MAX}")
        if len(set(names)) != len(names):
            raise ConfigError("WorldView: map names are not unique")
        for n, (w, h) in zip(names, sizes, strict=True):
            if not 0 < len(n.encode()) <= limits.map_name_bytes_max:
                raise ConfigError(
                    f"WorldView: map name {n!r} must be 1..{limits.map_name_bytes_max} bytes"
                )
            if not (0 < w <= proto.INT16_MAX and 0 < h <= proto.INT16_MAX):
                raise ConfigError(f"WorldView: map {n!r} size {w}x{h} out of 1..{proto.INT16_MAX}")
        if not 0 <= self.reward_zeny_max <= limits.zeny_max:
            raise ConfigError(f"WorldView: reward_zeny_max must be in [0, {limits.zeny_max}]")
        if not 0 <= self.reward_amount_max <= limits.item_stack_max:
            raise ConfigError(
                f"WorldView: reward_amount_max must be in [0, {limits.item_stack_max}]"
            )


@dataclass
class _PendingActions:
    """One actions frame sent (or to send) to one peer, until resolved or expired."""

    expires_tick: int
    ids: np.ndarray
    open: np.ndarray
    frame: bytes
    sent: bool = False


@dataclass
class _Recent:
    """A committed tick's actions, kept ``action_ttl_ticks`` for servers that come late."""

    batch: ActionBatch
    routed: bool  # some server record took them (else they count as unroutable)


@dataclass
class _Peer:
    server_id: str
    received: int                 # highest seq accepted from the wire (held or offered)
    acked: int                    # highest seq journaled (safe to ack)
    tokens: float
    tokens_t: float
    rid: bytes | None = None
    up: bool = False
    last_seen: float = 0.0
    next_hb: float = 0.0
    ack_sent: int = -1
    gap_reported: int = 0
    limited_seq: int = 0          # seq already counted as rate limited / queue full
    full_seq: int = 0
    offered: int = 0              # highest seq in the input queue (or journaled)
    lockstep: bool = False        # session asked for per-tick hb marks
    last_due: int = 0             # highest tick stamp accepted so far
    progress: tuple[int, int] = (0, 0)  # latest (tick, seq) declared by ``progress``
    frontier: int = 0             # ticks <= this are complete in the input queue
    marked: int = 0               # last tick whose actions are all sent (lockstep hb)
    hosts: np.ndarray | None = None  # bool per map_id; None: hosts every map
    held: deque[InputBatch] = field(default_factory=deque)
    pending: deque[_PendingActions] = field(default_factory=deque)


def _nbytes(batch: InputBatch) -> int:
    return sum(c.nbytes for c in batch.columns.values())


class BridgeServer:
    """Serves the bridge on ``endpoint`` (ROUTER, bind) and feeds ``inputs``. An ActionSink."""

    def __init__(
        self,
        endpoint: str,
        inputs: InputQueue,
        view: WorldView,
        config: BridgeConfig,
        *,
        durable_seqs: dict[str, int] | None = None,
        dead_letter_path: str | Path | None = None,
        clock: Callable[[], float] = engine_clock.monotonic,
        start_tick: int = 0,
    ) -> None:
        self.requested_endpoint = endpoint
        self.endpoint: str | None = None
        self.inputs = inputs
        self.view = view
        self.config = config
        self._durable = dict(durable_seqs or {})
        self._dead_letter_path = dead_letter_path
        self._clock = clock
        self._decoder = EventDecoder(
            view.map_names,
            view.map_sizes,
            events_per_batch_max=config.events_per_batch_max,
            text_bytes_max=config.text_bytes_max,
            map_dict_max=config.map_dict_max,
        )
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        self._journaled: dict[str, int] = {}
        self._action_q: deque[ActionBatch] = deque()
        self._recent: deque[_Recent] = deque()
        self._emit_dropped = 0
        self._tick = start_tick           # last committed tick (what hb and expiry use)
        self._committed = start_tick
        self._progress_cv = threading.Condition()
        self._frontiers: dict[str, int] = {}
        self._peers: dict[str, _Peer] = {}
        self._by_rid: dict[bytes, _Peer] = {}
        self._peers_up = 0
        self._held_bytes = 0
        self._held_batches = 0
        self._stopping = False
        self._crash: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._dead: DeadLetterStore | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._secret: bytes | None = None
        self._allowed: set[bytes] = set()
        if config.curve_enabled:
            if not zmq.has("curve"):
                raise ConfigError("CURVE requested but libzmq has no CURVE support")
            self._secret = read_key(config.curve_secret_key_file)  # type: ignore[arg-type]
            self._allowed = read_allowed(config.curve_allowed_keys_dir,
                                         config.curve_allowed_keys)
        inputs.add_journaled_listener(self._on_journaled)

    # -- the tick thread's side (non-blocking) -------------------------------------------
    def emit(self, batch: ActionBatch) -> None:
        """Queue this tick's actions (bounded) and return; they leave once it is committed."""
        if batch.count():
            with self._lock:
                if len(self._action_q) >= self.config.action_queue_ticks_max:
                    self._emit_dropped += batch.count()
                else:
                    self._action_q.append(batch)

    def committed(self, tick: int) -> None:
        """``tick`` is durable: its actions (and every earlier tick's) may leave."""
        with self._lock:
            self._committed = max(self._committed, tick)
        self._wake()

    def wait_progress(self, servers: tuple[str, ...], tick: int, timeout_s: float) -> list[str]:
        """Block until every server in ``servers`` has declared ``tick`` complete.

        The lockstep barrier (called by the tick thread before ``tick``): it returns the
        servers still behind when ``timeout_s`` runs out (empty: all ready).
        """
        deadline = engine_clock.monotonic() + timeout_s
        with self._progress_cv:
            while True:
                behind = [s for s in servers if self._frontiers.get(s, 0) < tick]
                left = deadline - engine_clock.monotonic()
                if not behind or left <= 0 or self._stopping:
                    return behind
                self._progress_cv.wait(left)

    def frontiers(self) -> dict[str, int]:
        """server id -> the last tick it declared complete (and is in the input queue)."""
        with self._progress_cv:
            return dict(self._frontiers)

    def _on_journaled(self, source: str, seq: int) -> None:
        with self._lock:
            if seq > self._journaled.get(source, -1):
                self._journaled[source] = seq
        self._wake()

    def _wake(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one means we stopped.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        """Bind and start the bridge thread; raises if the endpoint cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("BridgeServer already started")
        self._thread = threading.Thread(target=self._run, name="norn-bridge", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("bridge thread did not start")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread, close the socket and flush the dead-letter store."""
        self._stopping = True
        with self._progress_cv:
            self._progress_cv.notify_all()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # before closing: a late emit must not hit a reused fd
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def stats(self) -> dict[str, Any]:
        """Counters (thread-safe snapshot) for reports and tests."""
        out: dict[str, Any] = dict(self._counters)
        out["actions_dropped"] += self._emit_dropped
        known = len(self._peers)
        out["peers_up"] = self._peers_up
        out["peers_down"] = known - self._peers_up
        out["held_batches"] = self._held_batches
        out["held_bytes"] = self._held_bytes
        dead = self._dead
        out["dead_letter_dropped"] = dead.dropped if dead is not None else 0
        out["tick"] = self._tick
        out["endpoint"] = self.endpoint
        out["crashed"] = repr(self._crash) if self._crash is not None else None
        return out

    def peer_seqs(self) -> dict[str, tuple[int, int]]:
        """server id -> (received, acked): for tests and reports."""
        return {sid: (p.received, p.acked) for sid, p in sorted(self._peers.items())}

    def dead_letters(self) -> list[dict[str, Any]]:
        """The most recent dead letters kept in memory."""
        return list(self._dead.recent) if self._dead is not None else []

    # -- the bridge thread ----------------------------------------------------------------
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = zap = None
        try:
            self._dead = DeadLetterStore(
                self._dead_letter_path,
                records_max=self.config.dead_letter_records_max,
                raw_bytes_max=self.config.dead_letter_raw_bytes_max,
                memory_max=self.config.dead_letter_memory_max,
            )
            if self._secret is not None:
                zap = ctx.socket(zmq.REP)
                zap.linger = 0
                zap.bind("inproc://zeromq.zap.01")
            sock = ctx.socket(zmq.ROUTER)
            sock.linger = 0
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.sndhwm = self.config.sndhwm
            sock.rcvhwm = self.config.rcvhwm
            # Transport safety net only: frames up to twice the limit still get an error frame.
            sock.maxmsgsize = 2 * self.config.frame_bytes_max + 1024
            if self._secret is not None:
                sock.curve_server = True
                sock.curve_secretkey = self._secret
                sock.zap_domain = b"norn"
            ep = self.requested_endpoint
            if ep.startswith("tcp://") and ep.endswith(":0"):
                ep = ep[:-2] + ":*"
            sock.bind(ep)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException as exc:
            self._start_error = exc
            for s in (sock, zap):
                if s is not None:
                    s.close(0)
            if self._dead is not None:
                self._dead.close()
            ctx.term()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(sock, zap)
        except BaseException as exc:  # a bug: loud, but the world keeps running
            self._crash = exc
            print("norn bridge thread crashed:\n" + traceback.format_exc(), file=sys.stderr)
        finally:
            sock.close(0)
            if zap is not None:
                zap.close(0)
            ctx.term()
            self._dead.close()

    def _loop(self, sock: zmq.Socket, zap: zmq.Socket | None) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        self._sock = sock
        reading = True
        while not self._stopping:
            want = self._held_bytes <= self.config.held_bytes_max
            if want != reading:  # back-pressure: stop reading while too much is held
                poller.modify(sock, zmq.POLLIN if want else 0)
                reading = want
            ready = dict(poller.poll(self._timeout_ms()))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if zap is not None and zap in ready:
                self._zap(zap)
            if reading and sock in ready:
                for _ in range(self.config.recv_per_wake_max):
                    if self._held_bytes > self.config.held_bytes_max:
                        break  # back-pressure: leave the rest in the socket
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._on_message(parts)
            self._apply_journaled()
            self._drain_actions()
            self._offer_all()
            self._timers()
            self._flush_dead_letters()

    def _flush_dead_letters(self) -> None:
        """A failing store (disk full) must not stop the bridge: count it, say it once."""
        try:
            self._dead.flush()
        except Exception:
            self._counters["dead_letter_errors"] += 1
            if self._counters["dead_letter_errors"] == 1:
                print("norn bridge: dead-letter store failed:\n" + traceback.format_exc(),
                      file=sys.stderr)

    def _timeout_ms(self) -> int:
        if self._held_batches:
            return 1  # retry offers to the input queue / rate limiter soon
        now = self._clock()
        nxt = now + self.config.heartbeat_ms / 1000
        for p in self._peers.values():
            if p.up:
                nxt = min(nxt, p.next_hb, p.last_seen + self.config.peer_timeout_ms / 1000)
        return max(0, min(self.config.heartbeat_ms, int((nxt - now) * 1000) + 1))

    # -- sending ----------------------------------------------------------------------------
    def _send(self, rid: bytes, data: bytes, peer: _Peer | None = None) -> bool:
        try:
            self._sock.send_multipart([rid, data], zmq.NOBLOCK)
            return True
        except zmq.Again:
            self._counters["sends_dropped_hwm"] += 1
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                if peer is not None and peer.up and peer.rid == rid:
                    self._down(peer)
                return False
            raise

    def _send_error(self, rid: bytes, data: bytes, peer: _Peer | None = None) -> None:
        self._counters["errors_sent"] += 1
        self._send(rid, data, peer)

    def _reject_frame(
        self, rid: bytes, peer: _Peer | None, exc: proto.ProtocolError, raw: Any,
        kind: str | None = None,
    ) -> None:
        """A frame-level problem: one error frame, and the frame into the dead letters."""
        self._counters["frames_rejected"] += 1
        self._send_error(rid, proto.error_from(exc), peer)
        self._dead_letter(peer, exc.seq, kind, -1, exc.code, exc.field, exc.message, raw)

    def _dead_letter(
        self, peer: _Peer | None, seq: int | None, kind: str | None, index: int,
        code: int, field_name: str | None, reason: str, raw: Any,
    ) -> None:
        if self._dead.add(
            tick=self._tick, server_id=peer.server_id if peer else None, seq=seq, kind=kind,
            event_index=index, code=code, field=field_name, reason=reason, raw=bytes(raw),
        ):
            self._counters["dead_lettered"] += 1

    # -- receiving --------------------------------------------------------------------------
    def _on_message(self, parts: list[zmq.Frame]) -> None:
        rid = parts[0].bytes
        peer = self._by_rid.get(rid)
        self._counters["frames_in"] += 1
        payload = b"".join(p.buffer for p in parts[1:]) if len(parts) != 2 else parts[1].buffer
        self._counters["bytes_in"] += len(payload)
        if peer is not None:
            peer.last_seen = self._clock()
        if len(parts) != 2:
            exc = proto.ProtocolError(proto.ErrorCode.MALFORMED, f"{len(parts) - 1} frames in one "
                                  "message; the protocol uses exactly one")
            self._reject_frame(rid, peer, exc, payload[: self.config.dead_letter_raw_bytes_max])
            return
        try:
            msg = proto.unpack(payload, self.config.frame_bytes_max)
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, payload[: self.config.dead_letter_raw_bytes_max])
            return
        t = msg["t"]
        if t == proto.HELLO:
            self._hello(rid, msg, payload)
        elif peer is None:
            if t != proto.BYE:
                self._send_error(rid, proto.encode_error(
                    proto.ErrorCode.HELLO_REQUIRED, "no session: send hello first",
                    seq=msg.get("seq") if type(msg.get("seq")) is int else None))
        elif t in (proto.EVENTS, proto.RESULTS):
            self._batch(rid, peer, msg, payload)
        elif t == proto.HB:
            pass  # liveness was noted above
        elif t == proto.PROGRESS:
            self._progress(rid, peer, msg, payload)
        elif t == proto.BYE:
            self._down(peer)
        else:
            exc = proto.ProtocolError(
                proto.ErrorCode.UNKNOWN_TYPE, f"unknown message type {t!r:.40}", field="t"
            )
            self._reject_frame(rid, peer, exc, payload)

    def _hello(self, rid: bytes, msg: dict[str, Any], raw: Any) -> None:
        self._counters["hellos"] += 1
        peer = self._by_rid.get(rid)
        try:
            v = proto.get_int(msg, "v", 0, 2**31 - 1)
            if v not in proto.SUPPORTED_VERSIONS:
                raise proto.ProtocolError(
                    proto.ErrorCode.VERSION_UNSUPPORTED,
                    f"protocol version {v} not supported; "
                    f"supported: {list(proto.SUPPORTED_VERSIONS)}",
                    field="v",
                )
            sid = msg.get("server_id")
            if not isinstance(sid, str) or not proto.SERVER_ID_RE.match(sid):
                raise proto.ProtocolError(
                    proto.ErrorCode.BAD_FIELD,
                    f"server_id must match {proto.SERVER_ID_RE.pattern}, got {sid!r:.80}",
                    field="server_id",
                )
            caps = proto.get_str_list(msg, "caps", 64, 64)
            maps = proto.get_str_list(msg, "maps", self.config.hello_maps_max, 64)
            unknown = [m for m in maps if m not in self._decoder.name_to_id]
            if unknown:
                raise proto.ProtocolError(
                    proto.ErrorCode.UNKNOWN_MAP,
                    f"hello names maps the world does not have: {unknown[:8]}", field="maps",
                )
            target = self._peers.get(sid)
            up_after = self._peers_up + (0 if (target is not None and target.up)
                                         or (peer is not None and peer.up) else 1)
            if up_after > self.config.servers_max or (
                target is None and len(self._peers) >= self.config.server_records_max
            ):
                raise proto.ProtocolError(
                    proto.ErrorCode.TOO_MANY_SERVERS,
                    f"servers_max={self.config.servers_max} servers connected "
                    f"(server_records_max={self.config.server_records_max})",
                )
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, raw)
            return
        now = self._clock()
        fresh = target is None
        if target is None:
            durable = int(self._durable.get(sid, 0))
            target = _Peer(sid, received=durable, acked=durable, offered=durable,
                           tokens=float(self.config.events_per_s_max), tokens_t=now)
            self._peers[sid] = target
        target.lockstep = proto.LOCKSTEP_CAP in caps
        if peer is not None and peer is not target:
            self._down(peer)  # this connection now speaks for another server id
        if target.up and target.rid != rid:
            old = target.rid
            self._down(target)
            self._send_error(old, proto.encode_error(  # type: ignore[arg-type]
                proto.ErrorCode.SUPERSEDED, f"another connection said hello as {sid!r}"))
        if not target.up:
            self._peers_up += 1
        target.up, target.rid = True, rid
        self._by_rid[rid] = target
        target.last_seen = now
        target.next_hb = now + self.config.heartbeat_ms / 1000
        target.gap_reported = 0
        if maps:
            hosts = np.zeros(len(self.view.map_names), dtype=bool)
            hosts[[self._decoder.name_to_id[m] for m in maps]] = True
            target.hosts = hosts
        else:
            target.hosts = None
        if fresh:  # a server new to this engine gets the actions that have not expired
            for recent in self._recent:
                self._route(target, recent.batch)
                recent.routed = True
        welcome = proto.encode_welcome(
            server_id=sid, acked=target.acked, next_seq=target.received + 1,
            credit=self.config.unacked_batches_max, tick=self._tick,
            heartbeat_ms=self.config.heartbeat_ms, peer_timeout_ms=self.config.peer_timeout_ms,
            limits_=self.config.wire_limits(),
            maps=[(n, w, h) for n, (w, h) in zip(self.view.map_names, self.view.map_sizes,
                                                 strict=True)],
            reward_zeny_max=self.view.reward_zeny_max,
            reward_amount_max=self.view.reward_amount_max,
        )
        self._send(rid, welcome, target)
        target.ack_sent = target.acked
        for entry in target.pending:  # resend unresolved actions after a reconnect
            entry.sent = False
        target.marked = 0
        self._flush_actions(target)
        self._mark(target)

    def _batch(self, rid: bytes, peer: _Peer, msg: dict[str, Any], raw: Any) -> None:
        cfg = self.config
        try:
            seq = proto.get_int(msg, "seq", 1, proto.SEQ_MAX)
            stamp = proto.get_int(msg, "tick", 1, proto.TICK_MAX) if "tick" in msg else 0
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, raw)
            return
        expected = peer.received + 1
        if seq <= peer.received:
            self._counters["duplicates_discarded"] += 1
            if seq <= peer.acked:
                self._send_ack(peer)
            return
        if seq > peer.acked + cfg.unacked_batches_max:
            self._counters["window_exceeded"] += 1
            self._send_error(rid, proto.encode_error(
                proto.ErrorCode.WINDOW_EXCEEDED,
                f"seq {seq} > acked {peer.acked} + unacked_batches_max "
                f"{cfg.unacked_batches_max}; resend from {expected} within the credit",
                seq=seq, expected_seq=expected), peer)
            return
        if seq != expected:
            if peer.gap_reported == expected:
                self._counters["seq_gaps_suppressed"] += 1
            else:
                self._counters["seq_gaps"] += 1
                peer.gap_reported = expected
                self._send_error(rid, proto.encode_error(
                    proto.ErrorCode.SEQ_GAP, f"got seq {seq}, expected {expected}; resend from it",
                    seq=seq, expected_seq=expected), peer)
            return
        peer.gap_reported = 0
        due = self._due(rid, peer, seq, stamp)
        kind = msg.get("kind") if msg["t"] == proto.EVENTS else proto.RESULT_KIND
        if not (isinstance(kind, str) and kind in EVENT_SCHEMAS):
            kind = None
        try:
            dec = self._decoder.decode(msg, seq=seq)
        except proto.ProtocolError as exc:
            exc.seq = seq
            self._reject_frame(rid, peer, exc, raw, kind)
            ekind = kind or PLACEHOLDER_KIND
            batch = InputBatch(peer.server_id, seq, ekind, empty_columns(ekind), due)
        else:
            if len(dec.invalid):
                self._invalid_events(rid, peer, seq, dec)
            batch = InputBatch(peer.server_id, seq, dec.kind, dec.columns, due)
            if dec.kind == proto.RESULT_KIND:
                self._counters["results_received"] += dec.accepted
                if dec.accepted:
                    self._resolve(peer, dec.columns["action_id"])
            else:
                self._counters["events_accepted"] += dec.accepted
        peer.received = seq
        peer.held.append(batch)
        self._held_batches += 1
        self._held_bytes += _nbytes(batch)
        self._offer(peer)

    def _due(self, rid: bytes, peer: _Peer, seq: int, stamp: int) -> int:
        """The tick an accepted batch waits for: its stamp, never before an earlier one's.

        A stamp that goes back (below an earlier batch's, or into ticks the server already
        declared complete) breaks lockstep: the batch is still applied, as early as its
        order allows, and the server is told which tick it got.
        """
        if not stamp:
            return 0
        self._counters["stamped_batches"] += 1
        due = max(stamp, peer.last_due)
        p_tick, p_seq = peer.progress
        if due != stamp or (seq > p_seq and stamp <= p_tick):
            self._counters["tick_order"] += 1
            self._send_error(rid, proto.encode_error(
                proto.ErrorCode.TICK_ORDER,
                f"seq {seq} stamped tick {stamp}, but earlier batches were stamped up to "
                f"{peer.last_due} and progress declared ticks <= {p_tick} complete (up to "
                f"seq {p_seq}); applied at tick {due}, or the next tick if that has passed",
                seq=seq, field="tick"), peer)
        peer.last_due = due
        return due

    def _progress(self, rid: bytes, peer: _Peer, msg: dict[str, Any], raw: Any) -> None:
        """``progress``: every batch this server stamps <= tick has a seq <= seq."""
        try:
            tick = proto.get_int(msg, "tick", 0, proto.SEQ_MAX)
            seq = proto.get_int(msg, "seq", 0, proto.SEQ_MAX)
        except proto.ProtocolError as exc:
            self._reject_frame(rid, peer, exc, raw)
            return
        self._counters["progress_received"] += 1
        if tick > peer.progress[0]:
            peer.progress = (tick, seq)
            self._advance_frontier(peer)

    def _advance_frontier(self, peer: _Peer) -> None:
        tick, seq = peer.progress
        if tick > peer.frontier and peer.offered >= seq:
            peer.frontier = tick
            with self._progress_cv:
                self._frontiers[peer.server_id] = tick
                self._progress_cv.notify_all()

    def _invalid_events(self, rid: bytes, peer: _Peer, seq: int, dec: Any) -> None:
        k = len(dec.invalid)
        self._counters["events_rejected"] += k
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

    # -- into the input queue -------------------------------------------------------------
    def _offer_all(self) -> None:
        if self._held_batches:
            for sid in sorted(self._peers):
                peer = self._peers[sid]
                if peer.held:
                    self._offer(peer)

    def _offer(self, peer: _Peer) -> None:
        """Offer held batches in seq order; stop at the rate limit or a full queue."""
        rate = float(self.config.events_per_s_max)
        while peer.held:
            batch = peer.held[0]
            n = len(batch)
            now = self._clock()
            peer.tokens = min(rate, peer.tokens + (now - peer.tokens_t) * rate)
            peer.tokens_t = now
            if n > peer.tokens:
                if peer.limited_seq != batch.seq:
                    peer.limited_seq = batch.seq
                    self._counters["rate_limited"] += 1
                return
            if not self.inputs.offer(batch):
                if peer.full_seq != batch.seq:
                    peer.full_seq = batch.seq
                    self._counters["queue_full"] += 1
                return
            peer.tokens -= n
            peer.held.popleft()
            peer.offered = batch.seq
            self._held_batches -= 1
            self._held_bytes -= _nbytes(batch)
            self._counters["batches_offered"] += 1
        self._advance_frontier(peer)

    # -- acks -----------------------------------------------------------------------------
    def _apply_journaled(self) -> None:
        with self._lock:
            if not self._journaled:
                return
            journaled, self._journaled = self._journaled, {}
        for sid in sorted(journaled):
            peer = self._peers.get(sid)
            if peer is None:
                continue  # an admin source, not a map server
            seq = journaled[sid]
            if seq > peer.acked:
                peer.acked = min(seq, peer.received)
                self._send_ack(peer)

    def _send_ack(self, peer: _Peer) -> None:
        if peer.up and peer.rid is not None and self._send(
            peer.rid, proto.encode_ack(peer.acked, self.config.unacked_batches_max), peer
        ):
            peer.ack_sent = peer.acked
            self._counters["acks_sent"] += 1

    # -- actions out ----------------------------------------------------------------------
    def _drain_actions(self) -> None:
        """Route the actions of committed ticks; keep them for late servers while fresh."""
        with self._lock:
            committed = self._committed
            batches = []
            while self._action_q and self._action_q[0].tick <= committed:
                batches.append(self._action_q.popleft())
        if committed == self._tick and not batches:
            return
        self._tick = committed
        for batch in batches:
            for sid in sorted(self._peers):
                self._route(self._peers[sid], batch)
            self._recent.append(_Recent(batch, routed=bool(self._peers)))
        horizon = committed - self.config.action_ttl_ticks
        while self._recent and (
            self._recent[0].batch.tick < horizon
            or len(self._recent) > self.config.action_queue_ticks_max
        ):
            old = self._recent.popleft()
            if not old.routed:  # expired before any server was there to take it
                self._counters["actions_unroutable"] += old.batch.count()
        for sid in sorted(self._peers):
            peer = self._peers[sid]
            if peer.up:
                if batches:
                    self._flush_actions(peer)
                self._mark(peer)

    def _mark(self, peer: _Peer) -> None:
        """Lockstep: tell the server that every action up to the committed tick was sent."""
        if not (peer.lockstep and peer.up and peer.rid is not None) or peer.marked >= self._tick:
            return
        if any(not entry.sent for entry in peer.pending):
            return  # the hb must follow the actions it vouches for
        if self._send(peer.rid, proto.encode_server_hb(self._tick, peer.acked), peer):
            peer.marked = self._tick
            peer.next_hb = self._clock() + self.config.heartbeat_ms / 1000
            self._counters["tick_marks_sent"] += 1

    def _route(self, peer: _Peer, batch: ActionBatch) -> None:
        """Queue the actions of ``batch`` that concern ``peer`` as frames (bounded)."""
        sel: dict[str, dict[str, np.ndarray]] = {}
        for kind in ACTION_KINDS:
            cols = batch.kinds.get(kind)
            if cols is None or not len(cols["action_id"]):
                continue
            if peer.hosts is None or "map_id" not in cols:
                sel[kind] = cols
                continue
            mid = cols["map_id"].astype(np.int64)
            inside = (mid >= 0) & (mid < len(peer.hosts))
            m = (mid < 0) | (inside & peer.hosts[np.where(inside, mid, 0)])
            if m.all():
                sel[kind] = cols
            elif m.any():
                sel[kind] = {k: v[m] for k, v in cols.items()}
        if not sel:
            return
        expires = batch.tick + self.config.action_ttl_ticks
        per = self.config.actions_per_frame_max
        for part in _split_actions(sel, per):
            ids = np.concatenate([c["action_id"] for c in part.values()])
            frame = encode_actions(batch.tick, expires, part, self.view.map_names)
            if len(peer.pending) >= self.config.actions_pending_frames_max:
                old = peer.pending.popleft()
                self._counters["actions_dropped"] += int(old.open.sum())
            peer.pending.append(_PendingActions(expires, ids, np.ones(len(ids), bool), frame))

    def _flush_actions(self, peer: _Peer) -> None:
        for entry in peer.pending:
            if entry.sent:
                continue
            if not (peer.up and peer.rid is not None):
                return
            if not self._send(peer.rid, entry.frame, peer):
                return
            entry.sent = True
            self._counters["action_frames_sent"] += 1
            self._counters["actions_sent"] += int(entry.open.sum())

    def _resolve(self, peer: _Peer, action_ids: np.ndarray) -> None:
        if not peer.pending:
            return
        keep: deque[_PendingActions] = deque()
        for entry in peer.pending:
            entry.open &= ~np.isin(entry.ids, action_ids)
            if entry.open.any():
                keep.append(entry)
        peer.pending = keep

    # -- timers ---------------------------------------------------------------------------
    def _timers(self) -> None:
        now = self._clock()
        tick = self._tick
        hb_s = self.config.heartbeat_ms / 1000
        timeout_s = self.config.peer_timeout_ms / 1000
        for sid in sorted(self._peers):
            peer = self._peers[sid]
            while peer.pending and peer.pending[0].expires_tick < tick:
                self._counters["actions_expired"] += int(peer.pending.popleft().open.sum())
            if not peer.up:
                continue
            if now - peer.last_seen > timeout_s:
                self._down(peer)
                continue
            if now >= peer.next_hb:
                peer.next_hb = now + hb_s
                # a lockstep session's hb tick only ever vouches for actions already sent
                hb_tick = peer.marked if peer.lockstep else tick
                self._send(peer.rid, proto.encode_server_hb(hb_tick, peer.acked), peer)  # type: ignore[arg-type]
            if peer.ack_sent < peer.acked:
                self._send_ack(peer)
            self._flush_actions(peer)
            self._mark(peer)

    def _down(self, peer: _Peer) -> None:
        """A peer is gone or silent: forget its connection, keep its record; world goes on."""
        if peer.up:
            self._peers_up -= 1
            self._counters["peers_marked_down"] += 1
        peer.up = False
        if peer.rid is not None and self._by_rid.get(peer.rid) is peer:
            del self._by_rid[peer.rid]
        peer.rid = None
        for entry in peer.pending:
            entry.sent = False

    # -- CurveZMQ authentication (ZAP, RFC 27) ------------------------------------------------
    def _zap(self, zap: zmq.Socket) -> None:
        while True:
            try:
                req = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            version, request_id = req[0], req[1]
            mechanism = req[5] if len(req) > 5 else b""
            key = req[6] if len(req) > 6 else b""
            z85 = zmq_z85.encode(key) if len(key) == 32 else b""
            ok = mechanism == b"CURVE" and z85 in self._allowed
            self._counters["auth_accepted" if ok else "auth_refused"] += 1
            zap.send_multipart([
                version, request_id, b"200" if ok else b"400",
                b"OK" if ok else b"public key not in the allowlist", z85 if ok else b"", b"",
            ])


def _split_actions(
    sel: dict[str, dict[str, np.ndarray]], per: int
) -> list[dict[str, dict[str, np.ndarray]]]:
    """Cut one tick's actions into frames of at most ``per`` actions, kind order kept."""
    frames: list[dict[str, dict[str, np.ndarray]]] = []
    cur: dict[str, dict[str, np.ndarray]] = {}
    room = per
    for kind, cols in sel.items():
        n = len(cols["action_id"])
        start = 0
        while start < n:
            take = min(room, n - start)
            cur[kind] = {k: v[start : start + take] for k, v in cols.items()}
            start += take
            room -= take
            if room == 0:
                frames.append(cur)
                cur, room = {}, per
    if cur:
        frames.append(cur)
    return frames
