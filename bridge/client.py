"""The reference bridge client: what an rAthena map server embeds, written in Python.

It is single-threaded on purpose: a map server's main loop calls ``poll`` from its timer,
the way rAthena runs everything from ``do_timer``. ``poll`` flushes batches that are full
or old enough, transmits within the engine's credit, reads acks, actions, heartbeats and
errors, sends heartbeats and reconnects when the engine goes silent.

Reliability on this side: every batch gets the next sequence number and is kept, encoded,
until a cumulative ack covers it. After a reconnect the ``welcome`` says what the engine
has (``acked``, ``next_seq``) and the client retransmits from there; a gap or window error
rewinds to ``expected_seq``; a stall (unacked batches and no ack that *advances* for the
retransmission timeout) rewinds to the first unacked batch. The timeout starts at
``max(retransmit_ms, 2 x the smoothed ack delay)`` (measured on batches sent once), doubles
after each stall up to ``retransmit_max_ms`` and goes back to its start when an ack advances
over a batch sent once (Karn's rule: an ack of resent batches keeps the backed-off timeout
until a clean measurement; PROTOCOL.md section 4). Duplicates are harmless: the engine
discards them.

Actions arrive with idempotent ids: the client remembers the last ``ledger_max`` ids it
delivered and never hands the same action to the game twice; actions that arrive after
their ``expires_tick`` are failed with reason ``expired`` without being executed. Ids a
map server executed in an earlier run (``restore_executed``, from its own durable record)
are not executed either: a repeat of one is answered once more with the recorded outcome,
since that run's answer may have died with it. Actions of a kind this client does not know
are never executed and are answered ``unsupported``: at once, or, in a lockstep session, by
the application in the frame's turn (``ActionsFrame.unsupported``), so the answer lands on
a tick the stream decides. ``on_executed`` is told the ids the game reports done, for the
map server to store with their effects.

``on_actions`` gets each frame whole, as the engine sent it (columns grouped by kind), in
the order frames arrive: the application executes a frame's actions in ``action_id`` order
across kinds (``ActionsFrame.in_order``; PROTOCOL.md section 8), so an NPC that says a line
and is despawned in the same tick speaks before it leaves.

Lockstep (``ClientConfig.lockstep``, PROTOCOL.md section 14): ``set_tick`` stamps what is
queued from then on, ``progress`` declares a tick complete (re-sent after every welcome
and with heartbeats), and ``mark_tick`` is the engine's last per-tick mark: every action
of ticks up to it has arrived.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from norn.bridge import protocol as proto
from norn.bridge.codec import (
    ActionsFrame,
    SyncFrame,
    columns_to_rows,
    decode_actions,
    decode_sync,
    encode_columns,
    encode_rows,
)
from norn.engine import clock
from norn.engine.errors import BoundError

#: Errors that answer a ``hello`` in place of its ``welcome`` (PROTOCOL.md section 3).
HELLO_REFUSALS = frozenset({proto.ErrorCode.VERSION_UNSUPPORTED,
                            proto.ErrorCode.TOO_MANY_SERVERS, proto.ErrorCode.UNKNOWN_MAP,
                            proto.ErrorCode.SUPERSEDED})


@dataclass
class ClientConfig:
    """Client-side batching, timing and buffer bounds."""

    batch_events: int = 4096          # flush a kind's batch at this many events...
    batch_ms: int = 50                # ...or when its oldest event is this old
    columnar: bool = True             # False: send column batches as rows (tests, benchmarks)
    heartbeat_ms: int = 1000
    # A poll reads frames for at most this long, then sends what is due (batches, results,
    # heartbeats) and returns; the rest wait in the socket for the next poll. Without it a
    # poll read on while frames kept coming (a slow game thread, a world emitting faster
    # than it executes) and sent nothing for seconds: the engine marked the server silent
    # (peer_timeout_ms), and each hello brought its unanswered actions again (issue 16).
    recv_ms_max: int = 50
    peer_timeout_ms: int = 5000       # engine silent this long: reconnect
    retransmit_ms: int = 3000         # unacked and no ack advanced this long: rewind...
    retransmit_max_ms: int = 60000    # ...doubling per stall up to this (PROTOCOL.md 4)
    hello_retry_ms: int = 1000        # no welcome this long: new socket, new hello
    frames_max: int = 4096            # encoded batches kept (unacked + unsent)
    pending_events_max: int = 1 << 21  # events waiting in the batcher
    ledger_max: int = 65536           # action ids remembered for idempotency
    lockstep: bool = False            # ask for a lockstep session (per-tick marks)
    sync: bool = True                 # ask for the join sync after each hello (section 16)
    sndhwm: int = 1000
    rcvhwm: int = 1000
    recv_frame_bytes_max: int = 128 << 20
    curve_server_key: bytes | None = None  # engine's public key (Z85): enables CURVE
    curve_public_key: bytes | None = None
    curve_secret_key: bytes | None = None


@dataclass
class _Chunked:
    """Events of one kind waiting to be batched: column chunks or rows."""

    columns: list[dict[str, Any]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    n: int = 0
    since: float = 0.0


@dataclass
class _Frame:
    seq: int
    data: bytes
    n: int
    is_results: bool
    sent: bool = False
    sent_at: float = 0.0   # first transmission (for the ack delay)
    resent: bool = False   # transmitted more than once: its ack says nothing of the delay


class BridgeClient:
    """One map server's connection to the engine (DEALER, connect)."""

    def __init__(
        self,
        endpoint: str,
        server_id: str,
        *,
        maps: Sequence[str] = (),
        hosted_maps: Sequence[str] = (),
        config: ClientConfig | None = None,
        on_actions: Callable[[ActionsFrame], None] | None = None,
        on_executed: Callable[[np.ndarray], None] | None = None,
        on_sync: Callable[[int, list[SyncFrame]], None] | None = None,
        schema: proto.WireSchema = proto.WIRE_V1,
    ) -> None:
        if not proto.SERVER_ID_RE.fullmatch(server_id):
            raise ValueError(f"server_id must match {proto.SERVER_ID_RE.pattern}")
        self.endpoint = endpoint
        self.server_id = server_id
        self.config = config or ClientConfig()
        self.on_actions = on_actions
        self.on_executed = on_executed
        #: The join sync: ``on_sync(tick, frames)`` once all of a sync's frames are in.
        self.on_sync = on_sync
        self.synced_tick = -1  # the tick of the last whole sync (-1: none yet)
        self.synced_npcs = np.empty(0, np.int64)  # the NPCs it showed (sorted handles)
        self._sync_parts: list[SyncFrame] = []
        #: The kinds this map server speaks: protocol v1, or v1 and a world's own kinds.
        self.schema = schema
        self.hosted_maps = list(hosted_maps)
        #: The client's map table: integer map fields given to ``add_columns`` index it.
        self.map_names: list[str] = list(maps)
        self._map_index = {n: i for i, n in enumerate(self.map_names)}
        self.welcome: dict[str, Any] | None = None
        self.engine_tick = 0
        self.mark_tick = 0  # lockstep: actions of every tick <= this have arrived
        self.stamp = 0      # tick stamped on batches queued now (0: none)
        self._progress: tuple[int, int] | None = None
        self._progress_due = False
        self.connected = False
        self.superseded = False
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = None
        self._hello_sent_at: float | None = None
        self._hello_pending = False
        # Hellos sent on this socket not yet answered: a sync, actions or a lockstep mark
        # arriving while one is owed were sent for an earlier hello (ZeroMQ keeps order on
        # a connection), so they are stale; the latest hello's follow its welcome.
        self._welcomes_owed = 0
        self._connecting = False
        self._ever_welcomed = False
        self._batches: dict[tuple[str, str], _Chunked] = {}
        self._pending_events = 0
        self._frames: deque[_Frame] = deque()
        self._next_seq = 1
        self._send_next = 1
        self._acked = 0
        self._credit = 1
        self._limits: dict[str, int] = {
            "frame_bytes_max": 8 << 20, "events_per_batch_max": 65536,
        }
        now = clock.monotonic()
        self._last_recv = now
        self._last_send = now
        self._last_progress = now
        self._ledger = np.full(self.config.ledger_max, -1, dtype=np.int64)
        self._ledger_pos = 0
        self._ledger_top = -1  # the highest id ever remembered: any id above it is new
        # Outcomes of ids executed by an earlier run (``restore_executed``): id -> (status,
        # reason); a repeat is answered once with it, then forgotten.
        self._restored: dict[int, tuple[int, int]] = {}
        self._srtt: float | None = None  # smoothed ack delay (s)
        self._rto = self.config.retransmit_ms / 1000  # the retransmission timeout now
        self.stats: dict[str, int] = dict.fromkeys((
            "events_queued", "events_sent", "events_acked", "batches_sent", "retransmits",
            "results_sent", "results_acked", "actions_received", "actions_duplicate",
            "actions_expired", "results_reported", "errors", "events_rejected",
            "reconnects", "rewinds", "progress_sent", "overloaded", "actions_reanswered",
            "actions_unsupported", "timeouts", "syncs", "sync_rows", "actions_reflected",
            "syncs_stale", "action_frames_stale",
        ), 0)
        self.errors: deque[dict[str, Any]] = deque(maxlen=64)
        # Sending paused by the engine: until an ack advances past this seq (``overloaded``)
        # or until its tick passes this one (``tick_ahead``); the retransmit timer also ends
        # a pause, so a lost ack or hb never wedges the client.
        self._hold_ack: int | None = None
        self._hold_tick: int | None = None

    # -- connection -------------------------------------------------------------------------
    def _new_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        s = self._ctx.socket(zmq.DEALER)
        s.linger = 0
        s.sndhwm = self.config.sndhwm
        s.rcvhwm = self.config.rcvhwm
        s.immediate = True  # never queue frames into a connection that is not up
        s.maxmsgsize = self.config.recv_frame_bytes_max
        if self.config.curve_server_key is not None:
            s.curve_serverkey = self.config.curve_server_key
            s.curve_publickey = self.config.curve_public_key
            s.curve_secretkey = self.config.curve_secret_key
        s.connect(self.endpoint)
        self._sock = s
        self._sync_parts = []  # a sync cut short by the reconnect comes again whole
        self.connected = False
        self._hello_pending = True
        self._hello_sent_at = None
        self._welcomes_owed = 0  # what the old socket was owed never comes on this one

    def connect(self, timeout_s: float = 10.0) -> bool:
        """Open the socket and handshake; True once ``welcome`` arrived within the timeout."""
        if self._sock is None:
            self._new_socket()
        deadline = clock.monotonic() + timeout_s
        self._connecting = True  # poll stops reading at the welcome: a caller may rehello
        try:                     # before anything the first hello brought is taken
            while not self.connected and not self.superseded:
                left = deadline - clock.monotonic()
                if left <= 0:
                    return False
                self.poll(min(50, max(1, int(left * 1000))))
        finally:
            self._connecting = False
        return self.connected

    def close(self, *, bye: bool = True) -> None:
        """Say bye (best effort) and close the socket."""
        if self._sock is not None:
            if bye and self.connected:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.send(proto.encode_bye(), zmq.NOBLOCK)
            self._sock.close(0)
            self._sock = None
        self.connected = False
        self._ctx.term()

    # -- events in ---------------------------------------------------------------------------
    def add_columns(self, kind: str, columns: Mapping[str, Any]) -> None:
        """Queue events of ``kind`` given as wire columns (by wire field name).

        Map fields are integer indexes into ``map_names`` or arrays of names; text fields
        are a fixed-width ``S`` array or a list of str.
        """
        fields = self.schema.events[kind]
        cols: dict[str, Any] = {}
        n = None
        for f in fields:
            v = columns[f.name]
            if f.kind == "text":
                arr = v if isinstance(v, np.ndarray) and v.dtype.kind == "S" else np.array(
                    [s.encode() if isinstance(s, str) else bytes(s) for s in v], dtype=bytes
                )
            elif f.kind == "map":
                arr = self._map_indexes(np.asarray(v))
            else:
                arr = np.asarray(v)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"{kind}: column {f.name} has {len(arr)} values, others {n}")
            cols[f.name] = arr
        self._queue((kind, "columns"), cols, n or 0)

    def add_rows(self, kind: str, rows: list[list[Any]]) -> None:
        """Queue events of ``kind`` as rows (schema order; maps as names, text as str)."""
        if kind not in self.schema.events:
            raise ValueError(f"unknown event kind {kind!r}")
        self._queue((kind, "rows"), rows, len(rows))

    def report_results(self, action_ids: Any, status: Any, reason: Any) -> None:
        """Queue results of executed actions (status 0 done / 1 failed, reason code)."""
        ids = np.asarray(action_ids, dtype=np.int64)
        n = len(ids)
        cols = {
            "action_id": ids,
            "status": np.broadcast_to(np.asarray(status, dtype=np.uint8), (n,)),
            "reason": np.broadcast_to(np.asarray(reason, dtype=np.int16), (n,)),
        }
        self.stats["results_reported"] += n
        if self.on_executed is not None:
            done = ids[cols["status"] == proto.ResultStatus.DONE]
            if len(done):
                self.on_executed(done)  # before the answer leaves: stored with the effect
        self._queue((proto.RESULT_KIND, "columns"), cols, n)

    def restore_executed(self, action_ids: Any, status: Any = 0, reason: Any = 0) -> None:
        """Ids the map server executed in an earlier run (from its durable record).

        They are never handed to the game again; the first repeat of each is answered with
        the recorded outcome (that run's answer may not have reached the engine).
        """
        ids = np.asarray(action_ids, dtype=np.int64)
        st = np.broadcast_to(np.asarray(status, dtype=np.int64), ids.shape)
        rs = np.broadcast_to(np.asarray(reason, dtype=np.int64), ids.shape)
        self._remember(ids)
        for i, a, b in zip(ids.tolist(), st.tolist(), rs.tolist(), strict=True):
            self._restored[i] = (a, b)

    def set_tick(self, tick: int) -> None:
        """Stamp events and results queued from now on with engine tick ``tick``.

        What is queued under the old stamp becomes batches first, so stamps never decrease
        along seqs.
        """
        if tick == self.stamp:
            return
        if tick < self.stamp:
            raise ValueError(f"tick stamps must not decrease: {tick} after {self.stamp}")
        if not 0 < tick <= proto.TICK_MAX:
            raise ValueError(f"tick stamp must be in 1..{proto.TICK_MAX}, got {tick}")
        self._flush_all_or_fail()
        self.stamp = tick

    def progress(self, tick: int) -> None:
        """Declare ``tick`` complete: everything stamped <= it is queued (sent within credit)."""
        self._flush_all_or_fail()
        if self._progress is None or tick > self._progress[0]:
            self._progress = (tick, self._next_seq - 1)
        self._progress_due = True
        self._transmit()  # the batches first: the engine counts progress once it has them
        self._send_progress()

    def _flush_all_or_fail(self) -> None:
        self.flush()
        if any(b.n for b in self._batches.values()):
            raise BoundError("frames_max", self.config.frames_max, len(self._frames),
                             "client frames kept (the engine is not acking)")

    def _send_progress(self) -> None:
        if not (self._progress_due and self.connected and self._progress is not None):
            return
        try:
            self._sock.send(proto.encode_progress(*self._progress), zmq.NOBLOCK)
        except zmq.Again:
            return
        self._progress_due = False
        self.stats["progress_sent"] += 1

    def set_map_table(self, names: Sequence[str]) -> None:
        """Replace the client's map table (integer map fields index it)."""
        self.map_names = list(names)
        self._map_index = {n: i for i, n in enumerate(self.map_names)}

    def _map_indexes(self, v: np.ndarray) -> np.ndarray:
        if v.dtype.kind in "iu":
            return v.astype(np.int64)
        names, inv = np.unique(v.astype(str), return_inverse=True)
        lut = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names.tolist()):
            if name not in self._map_index:
                self._map_index[name] = len(self.map_names)
                self.map_names.append(name)
            lut[i] = self._map_index[name]
        return lut[inv.reshape(-1)]

    def _queue(self, key: tuple[str, str], payload: Any, n: int) -> None:
        if n == 0:
            return
        if self._pending_events + n > self.config.pending_events_max:
            raise BoundError("pending_events_max", self.config.pending_events_max,
                             self._pending_events + n, "client batcher (engine unreachable?)")
        b = self._batches.get(key)
        if b is None:
            b = self._batches[key] = _Chunked(since=clock.monotonic())
        elif b.n == 0:
            b.since = clock.monotonic()
        if key[1] == "rows":
            b.rows.extend(payload)
        else:
            b.columns.append(payload)
        b.n += n
        self._pending_events += n
        if key[0] != proto.RESULT_KIND:
            self.stats["events_queued"] += n
        if b.n >= self.config.batch_events:
            self._flush_key(key)

    def flush(self) -> None:
        """Turn every queued event into numbered batches now (they go out within credit)."""
        for key in list(self._batches):
            self._flush_key(key)

    def _flush_key(self, key: tuple[str, str]) -> None:
        b = self._batches[key]
        if b.n == 0:
            return
        if len(self._frames) >= self.config.frames_max:
            return  # keep batching; the bound on pending events stops the producer
        kind, form = key
        per = min(self.config.batch_events, self._limits["events_per_batch_max"])
        if form == "rows":
            rows, b.rows = b.rows, []
            for start in range(0, len(rows), per):
                self._encode_rows(kind, rows[start : start + per])
        else:
            chunks, b.columns = b.columns, []
            cols = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            total = len(next(iter(cols.values())))
            for start in range(0, total, per):
                self._encode_columns(kind, {k: v[start : start + per] for k, v in cols.items()})
        self._pending_events -= b.n
        b.n = 0

    def _encode_columns(self, kind: str, cols: dict[str, np.ndarray]) -> None:
        is_results = kind == proto.RESULT_KIND
        stamp = self.stamp
        t = proto.RESULTS if is_results else proto.EVENTS
        fields = proto.WIRE_RESULT_SCHEMA if is_results else self.schema.events[kind]
        map_fields = [f.name for f in fields if f.kind == "map"]
        n = len(next(iter(cols.values())))
        maps: list[str] = []
        wire = dict(cols)
        if map_fields:
            uniq = np.unique(np.concatenate([cols[m] for m in map_fields]))
            maps = [self.map_names[i] for i in uniq.tolist()]
            for m in map_fields:
                wire[m] = np.searchsorted(uniq, cols[m]).astype("<i2")
        if not self.config.columnar:
            rows = columns_to_rows(t, None if is_results else kind, wire, maps,
                                   schema=self.schema)
            self._add_frame(lambda seq: encode_rows(t, seq, None if is_results else kind, rows,
                                                    tick=stamp),
                            n, is_results, kind, cols)
            return
        self._add_frame(
            lambda seq: encode_columns(t, seq, None if is_results else kind, wire, maps,
                                       tick=stamp, schema=self.schema),
            n, is_results, kind, cols,
        )

    def _encode_rows(self, kind: str, rows: list[list[Any]]) -> None:
        stamp = self.stamp
        self._add_frame(lambda seq: encode_rows(proto.EVENTS, seq, kind, rows, tick=stamp),
                        len(rows), False, kind, None)

    def _add_frame(self, make: Callable[[int], bytes], n: int, is_results: bool, kind: str,
                   cols: dict[str, np.ndarray] | None) -> None:
        seq = self._next_seq
        data = make(seq)
        if len(data) > self._limits["frame_bytes_max"] and n > 1 and cols is not None:
            half = n // 2  # too many bytes (long texts): split and try again
            self._encode_columns(kind, {k: v[:half] for k, v in cols.items()})
            self._encode_columns(kind, {k: v[half:] for k, v in cols.items()})
            return
        self._frames.append(_Frame(seq, data, n, is_results))
        self._next_seq += 1

    # -- the loop ----------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> None:
        """Do all due work, waiting up to ``timeout_ms`` for frames from the engine."""
        now = clock.monotonic()
        if self._sock is None:
            self._new_socket()
        self._flush_due(now)
        self._handshake(now)
        self._transmit()
        self._send_progress()
        if self._sock.poll(max(0, int(timeout_ms)), zmq.POLLIN):
            until = clock.monotonic() + self.config.recv_ms_max / 1000
            for _ in range(10_000):
                try:
                    data = self._sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if self._on_frame(data) == proto.WELCOME and self._connecting:
                    break  # the rest is read once connect() returned
                if clock.monotonic() >= until:
                    break  # send what is due now; the rest is read by the next poll
            self._flush_due(clock.monotonic())  # the results of what it read, if due
        self._transmit()
        self._timers(clock.monotonic())

    def _flush_due(self, now: float) -> None:
        age = self.config.batch_ms / 1000
        for key, b in list(self._batches.items()):
            if b.n and now - b.since >= age:
                self._flush_key(key)

    def _handshake(self, now: float) -> None:
        if self.connected or self.superseded:
            return
        if self._hello_sent_at is not None and (
            now - self._hello_sent_at > self.config.hello_retry_ms / 1000
        ):
            self.stats["reconnects"] += 1
            self._new_socket()
        if self._hello_pending:
            try:
                self._sock.send(self._hello_frame(), zmq.NOBLOCK)
            except zmq.Again:
                return  # no connection yet (immediate): try again next poll
            self._hello_pending = False
            self._hello_sent_at = now
            self._welcomes_owed += 1

    def _transmit(self) -> None:
        if not self.connected or self._hold_ack is not None or self._hold_tick is not None:
            return
        limit = self._acked + self._credit
        base = self._frames[0].seq if self._frames else self._next_seq
        while self._send_next < self._next_seq and self._send_next <= limit:
            fr = self._frames[self._send_next - base]
            try:
                self._sock.send(fr.data, zmq.NOBLOCK, copy=len(fr.data) < 65536)
            except zmq.Again:
                return
            if self._send_next == self._acked + 1:
                self._last_progress = clock.monotonic()  # nothing was in flight: start the timer
            if fr.sent:
                fr.resent = True
                self.stats["retransmits"] += 1
            else:
                fr.sent = True
                fr.sent_at = clock.monotonic()
                self.stats["batches_sent"] += 1
                self.stats["results_sent" if fr.is_results else "events_sent"] += fr.n
            self._send_next += 1
            self._last_send = clock.monotonic()

    def _timers(self, now: float) -> None:
        if not self.connected:
            return
        if now - self._last_recv > self.config.peer_timeout_ms / 1000:
            self.stats["reconnects"] += 1
            self._new_socket()  # the engine went silent: start a new session
            return
        if now - self._last_send > self.config.heartbeat_ms / 1000:
            try:
                self._sock.send(proto.encode_client_hb(self.engine_tick), zmq.NOBLOCK)
                self._last_send = now
            except zmq.Again:
                pass
            self._progress_due = self._progress is not None  # repairs a lost progress
            self._send_progress()
        if self._frames and self._send_next > self._frames[0].seq and (
            now - self._last_progress > self._rto
        ):
            # No ack advanced for a whole timeout (a repeated ``acked`` in every hb does
            # not count): go back to the first unacked batch, and wait twice as long next
            # time, so a slow journal (long ticks) is not flooded with whole windows.
            self.stats["timeouts"] += 1
            self._rewind(self._frames[0].seq)
            self._last_progress = now
            self._rto = min(2 * self._rto, self.config.retransmit_max_ms / 1000)
            self._hold_ack = self._hold_tick = None

    def _rto_base(self) -> float:
        """The retransmission timeout after an ack advanced: ``retransmit_ms``, or twice the
        smoothed ack delay when acks are slower than that, never above the cap."""
        base = self.config.retransmit_ms / 1000
        if self._srtt is not None:
            base = max(base, 2 * self._srtt)
        return min(base, self.config.retransmit_max_ms / 1000)

    def _rewind(self, seq: int) -> None:
        seq = max(seq, self._acked + 1)
        if seq < self._send_next:
            self._send_next = seq
            self.stats["rewinds"] += 1

    # -- frames from the engine ---------------------------------------------------------------
    def _on_frame(self, data: bytes) -> str | None:
        """Handle one frame from the engine; its type (None: unreadable)."""
        self._last_recv = clock.monotonic()
        try:
            msg = proto.unpack(data, self.config.recv_frame_bytes_max)
        except proto.ProtocolError as exc:
            self.stats["errors"] += 1
            self.errors.append({"local": True, "message": str(exc)})
            return None
        t = msg["t"]
        if t == proto.WELCOME:
            self._on_welcome(msg)
        elif t == proto.ACK:
            self._on_ack(msg.get("seq"), msg.get("credit"))
        elif t == proto.HB:
            tick = msg.get("tick")
            if type(tick) is int:
                self.engine_tick = max(self.engine_tick, tick)
                if self.config.lockstep and not self._welcomes_owed:
                    # (a mark for an earlier hello's actions, dropped: its own comes again)
                    self.mark_tick = max(self.mark_tick, tick)
                if self._hold_tick is not None and self.engine_tick > self._hold_tick:
                    self._hold_tick = None  # the engine moved on: resend what it refused
            self._on_ack(msg.get("acked"), None)
        elif t == proto.ACTIONS:
            self._on_actions(msg)
        elif t == proto.SYNC:
            self._on_sync(msg)
        elif t == proto.ERROR:
            self._on_error(msg)
        return t

    def _on_welcome(self, msg: dict[str, Any]) -> None:
        acked, next_seq = msg.get("acked"), msg.get("next_seq")
        if type(acked) is not int or type(next_seq) is not int:
            return
        self.welcome = msg
        self._welcomes_owed = max(0, self._welcomes_owed - 1)
        self._limits.update(msg.get("limits") or {})
        self._credit = int(msg.get("credit") or 1)
        tick = msg.get("tick")
        if type(tick) is int:
            self.engine_tick = max(self.engine_tick, tick)
        if not self.map_names:
            for name, *_ in msg.get("maps") or []:
                self._map_index.setdefault(name, len(self.map_names))
                if self._map_index[name] == len(self.map_names):
                    self.map_names.append(name)
        first = self._frames[0].seq if self._frames else self._next_seq
        if not self._ever_welcomed and (first <= acked or next_seq > self._next_seq):
            # A client without saved state adopts the engine's numbering for this server id.
            self._rebase(next_seq)
        elif next_seq > self._next_seq:
            self._rebase(next_seq)
        self._ever_welcomed = True
        self.connected = True
        self._acked = max(self._acked, min(acked, self._next_seq - 1))
        self._drop_acked()
        self._send_next = max(self._acked + 1, min(next_seq, self._next_seq))
        self._last_progress = clock.monotonic()
        self._rto = self._rto_base()
        self._hold_ack = self._hold_tick = None
        self._progress_due = self._progress is not None  # the engine may have restarted

    def _rebase(self, start: int) -> None:
        """Renumber every kept batch from ``start`` (re-encoding each; rare)."""
        frames, self._frames = self._frames, deque()
        if self._progress is not None:  # progress names a seq: it moves with the batches
            shift = start - (frames[0].seq if frames else self._next_seq)
            self._progress = (self._progress[0], max(0, self._progress[1] + shift))
        seq = start
        for fr in frames:
            msg = msgpack.unpackb(fr.data, raw=False)
            msg["seq"] = seq
            self._frames.append(_Frame(seq, proto.pack(msg), fr.n, fr.is_results, fr.sent))
            seq += 1
        self._next_seq = seq
        self._acked = start - 1
        self._send_next = start

    def _on_ack(self, seq: Any, credit: Any) -> None:
        if type(credit) is int and credit > 0:
            self._credit = credit
        if type(seq) is int and seq > self._acked:
            now = clock.monotonic()
            self._acked = min(seq, self._next_seq - 1)
            # Karn: only a batch sent exactly once says how long an ack takes
            newest = next((fr for fr in reversed(self._frames) if fr.seq <= self._acked), None)
            if newest is not None and newest.sent and not newest.resent:
                sample = max(0.0, now - newest.sent_at)
                self._srtt = sample if self._srtt is None else self._srtt + (
                    sample - self._srtt) / 8
                self._rto = self._rto_base()
            else:  # no sample (only resent batches acked): keep the backed-off timeout
                self._rto = max(self._rto, self._rto_base())
            self._drop_acked()
            self._last_progress = now
            self._send_next = max(self._send_next, self._acked + 1)
            if self._hold_ack is not None and self._acked > self._hold_ack:
                self._hold_ack = None  # room again: resend what was dropped unread
                self._rewind(self._acked + 1)

    def _drop_acked(self) -> None:
        while self._frames and self._frames[0].seq <= self._acked:
            fr = self._frames.popleft()
            self.stats["results_acked" if fr.is_results else "events_acked"] += fr.n

    def _on_error(self, msg: dict[str, Any]) -> None:
        self.stats["errors"] += 1
        self.errors.append(msg)
        code = msg.get("code")
        if code == proto.ErrorCode.INVALID_EVENTS:
            self.stats["events_rejected"] += int(msg.get("invalid") or 0)
        elif code in (proto.ErrorCode.SEQ_GAP, proto.ErrorCode.WINDOW_EXCEEDED):
            exp = msg.get("expected_seq")
            if type(exp) is int:
                self._rewind(exp)
        elif code == proto.ErrorCode.TICK_AHEAD:
            exp = msg.get("expected_seq")
            if type(exp) is int:
                self._rewind(exp)
                self._hold_tick = self.engine_tick
        elif code == proto.ErrorCode.OVERLOADED:
            self.stats["overloaded"] += 1
            self._hold_ack = self._acked
        elif code == proto.ErrorCode.HELLO_REQUIRED:
            if self.connected:  # the engine restarted under the same connection
                self.connected = False
                self.stats["reconnects"] += 1
                self._hello_pending = True
                self._hello_sent_at = None
        elif code == proto.ErrorCode.SUPERSEDED:
            self.connected = False
            self.superseded = True
        if code in HELLO_REFUSALS:  # this answers a hello in place of its welcome
            self._welcomes_owed = max(0, self._welcomes_owed - 1)

    def _on_sync(self, msg: dict[str, Any]) -> None:
        """A ``sync`` frame: collect the sync's parts; once whole, hand it to the map server
        (which replaces what it mirrors on its maps) and remember its tick."""
        try:
            part = decode_sync(msg, schema=self.schema)
        except proto.ProtocolError as exc:
            self.stats["errors"] += 1
            self.errors.append({"local": True, "message": str(exc)})
            return
        if self._welcomes_owed:
            # It answers a hello sent before our latest (section 16): e.g. the first hello
            # of a server that declares its maps once the welcome named the world's. The
            # sync of the latest hello follows its welcome.
            self._sync_parts = []
            if part.part == 0:
                self.stats["syncs_stale"] += 1
            return
        if part.part == 0 or (self._sync_parts and (self._sync_parts[0].tick != part.tick
                                                    or len(self._sync_parts) != part.part)):
            self._sync_parts = []
        if part.part != len(self._sync_parts):
            return  # a part of a sync whose start we missed: the next hello brings it whole
        self._sync_parts.append(part)
        if len(self._sync_parts) < part.parts:
            return
        parts, self._sync_parts = self._sync_parts, []
        self.synced_tick = part.tick
        self.synced_npcs = np.sort(np.concatenate(
            [np.empty(0, np.int64)] + [p.kinds["spawn_npc"]["npc_id"].astype(np.int64)
                                       for p in parts if "spawn_npc" in p.kinds]))
        self.engine_tick = max(self.engine_tick, part.tick)
        self.stats["syncs"] += 1
        self.stats["sync_rows"] += sum(p.count() for p in parts)
        if self.on_sync is not None:
            self.on_sync(part.tick, parts)

    def _reflected(self, kinds: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
        """Take out of ``kinds`` the actions the last sync already reflects; their ids."""
        if self.synced_tick < 0:
            return np.empty(0, np.int64)
        return proto.take_reflected(kinds, self.synced_tick, self.synced_npcs)

    def _on_actions(self, msg: dict[str, Any]) -> None:
        if self._welcomes_owed:
            # Routed for a hello sent before our latest (other maps, perhaps): neither
            # taken nor remembered. After the latest welcome the engine sends again what is
            # still unanswered and due (section 16: "Only the latest hello's").
            self.stats["action_frames_stale"] += 1
            return
        top = self._ledger_top  # ids above it are new (taken before this frame's own ids)
        unknown = self._unknown_kinds(msg)
        try:
            frame = decode_actions(msg, schema=self.schema)
        except proto.ProtocolError as exc:
            self.stats["errors"] += 1
            self.errors.append({"local": True, "message": str(exc)})
            return
        self.engine_tick = max(self.engine_tick, frame.tick)
        held = np.empty(0, np.int64)
        if unknown is not None and len(unknown):
            # a kind this client does not know (an engine newer than us, a plugin's kind):
            # answered, so the engine never waits for them; in lockstep in the frame's turn
            # (with its other actions), so when the answer lands is a function of the ticks
            fresh = unknown[~np.isin(unknown, self._ledger)]
            self.stats["actions_received"] += len(unknown)
            self.stats["actions_unsupported"] += len(fresh)
            if len(fresh):
                self._remember(fresh)
                if self.config.lockstep and self.on_actions is not None:
                    held = fresh
                else:
                    self.report_results(fresh, proto.ResultStatus.FAILED,
                                        proto.ResultReason.UNSUPPORTED)
        n = frame.count()
        self.stats["actions_received"] += n
        if n == 0:
            if len(held):
                self.on_actions(ActionsFrame(frame.tick, frame.expires_tick, frame.maps, {}, held))
            return
        fresh_kinds: dict[str, dict[str, np.ndarray]] = {}
        fresh_ids = []
        for kind, cols in frame.kinds.items():
            ids = cols["action_id"]
            # ids only grow along the stream: above every id remembered is new, with no
            # search of the whole ledger (a repeat after a reconnect is searched)
            new = (np.ones(len(ids), bool) if not len(ids) or int(ids.min()) > top
                   else ~np.isin(ids, self._ledger))
            self.stats["actions_duplicate"] += int(len(ids) - new.sum())
            if self._restored and not new.all():
                self._reanswer(ids[~new])
            if new.any():
                fresh_kinds[kind] = cols if new.all() else {k: v[new] for k, v in cols.items()}
                fresh_ids.append(ids[new])
        if not fresh_ids:
            if len(held):
                self.on_actions(ActionsFrame(frame.tick, frame.expires_tick, frame.maps, {}, held))
            return
        ids = np.concatenate(fresh_ids)
        self._remember(ids)
        reflected = self._reflected(fresh_kinds)
        if len(reflected):  # the sync showed their effect already: done, not executed again
            self.stats["actions_reflected"] += len(reflected)
            if self.config.lockstep and self.on_actions is not None:
                pass  # answered by the map server in the frame's turn (ActionsFrame.reflected)
            else:
                self.report_results(reflected, proto.ResultStatus.DONE, proto.ResultReason.OK)
                ids = ids[~np.isin(ids, reflected)]
                reflected = np.empty(0, np.int64)
                if not fresh_kinds and not len(held):
                    return
        if frame.expires_tick < self.engine_tick:
            self.stats["actions_expired"] += len(ids)
            self.report_results(ids, proto.ResultStatus.FAILED, proto.ResultReason.EXPIRED)
            if len(held):
                self.report_results(held, proto.ResultStatus.FAILED,
                                    proto.ResultReason.UNSUPPORTED)
            return
        if self.on_actions is None:
            self.report_results(ids, proto.ResultStatus.FAILED, proto.ResultReason.UNSUPPORTED)
            return
        self.on_actions(ActionsFrame(frame.tick, frame.expires_tick, frame.maps, fresh_kinds,
                                     held, reflected))

    def _unknown_kinds(self, msg: dict[str, Any]) -> np.ndarray | None:
        """Take the kinds this client does not know out of ``msg``; their action ids."""
        body = msg.get("kinds")
        if not isinstance(body, dict):
            return None
        out = []
        for kind in [k for k in body if k not in self.schema.actions]:
            wire = body.pop(kind)
            ids = wire.get("action_id") if isinstance(wire, dict) else None
            n = wire.get("n") if isinstance(wire, dict) else None
            if isinstance(ids, bytes) and type(n) is int and len(ids) == 8 * n:
                out.append(np.frombuffer(ids, "<i8"))
            else:
                self.stats["errors"] += 1
                self.errors.append({"local": True,
                                    "message": f"unknown action kind {kind!r} without ids"})
        return np.concatenate(out).astype(np.int64) if out else None

    def _reanswer(self, ids: np.ndarray) -> None:
        """Repeats of ids an earlier run executed: answer each once with its outcome."""
        for i in ids.tolist():
            outcome = self._restored.pop(i, None)
            if outcome is not None:
                self.stats["actions_reanswered"] += 1
                self._queue((proto.RESULT_KIND, "columns"), {
                    "action_id": np.array([i], np.int64),
                    "status": np.array([outcome[0]], np.uint8),
                    "reason": np.array([outcome[1]], np.int16)}, 1)

    def _remember(self, ids: np.ndarray) -> None:
        m = len(self._ledger)
        if len(ids):
            self._ledger_top = max(self._ledger_top, int(ids.max()))
        ids = ids[-m:]
        pos = (self._ledger_pos + np.arange(len(ids))) % m
        self._ledger[pos] = ids
        self._ledger_pos = int((self._ledger_pos + len(ids)) % m)

    # -- state ---------------------------------------------------------------------------------
    @property
    def acked(self) -> int:
        return self._acked

    @property
    def unacked_batches(self) -> int:
        return len(self._frames)

    def idle(self) -> bool:
        """Nothing queued, nothing unacked: every event and result is durable in the engine."""
        return not self._frames and self._pending_events == 0

    def events_durable(self) -> bool:
        """Every game event queued so far is acked (results may still be in flight).

        While the engine keeps emitting actions, results keep coming, so a map server that
        stops waits for this rather than ``idle``.
        """
        if any(b.n for (kind, _), b in self._batches.items() if kind != proto.RESULT_KIND):
            return False
        return not any(not fr.is_results for fr in self._frames)

    def rehello(self, hosted_maps: Sequence[str]) -> None:
        """Declare the hosted maps again (once the welcome told which maps the world has)."""
        self.hosted_maps = list(hosted_maps)
        if self._sock is not None:
            self._sock.send(self._hello_frame())
            self._welcomes_owed += 1

    def _hello_frame(self) -> bytes:
        caps = ("columns", "rows") + ((proto.LOCKSTEP_CAP,) if self.config.lockstep else ()) + (
            (proto.SYNC_CAP,) if self.config.sync else ())
        return proto.encode_hello(self.server_id, caps=caps, maps=self.hosted_maps)
