"""The engine side of the bridge: a ZeroMQ ROUTER on its own thread beside the tick loop.

Why a thread of its own: the tick must never wait on a socket. The tick thread touches the
bridge only through non-blocking calls: ``committed`` (a subscriber to the world's one
``Committed`` notice: the tick is durable, so its inputs may be acked and its actions,
queued bounded, may leave) and, in lockstep, ``wait_progress`` (the barrier on the
servers' declared progress). Nothing reaches the bridge before durability, so nothing
leaves before it either. Everything the protocol promises lives in
``norn.bridge.session.Session``, a socket-free state machine; this module is the thin loop that
reads frames off the ROUTER into it, hands it what the tick thread queued, and sends what
it says, woken through a pipe so actions leave within microseconds of ``committed``.

ZeroMQ drops silently at full or unknown peers, so ``ROUTER_MANDATORY`` is set (a send to
a vanished peer raises instead of vanishing) and high-water marks are explicit but only a
safety net; ``MAXMSGSIZE`` is twice ``frame_bytes_max`` (PROTOCOL.md section 1).

If the bridge thread ever dies, the next ``committed`` raises ``BridgeDown``:
the run stops (exit 4) instead of ticking on deaf to its map servers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85 as zmq_z85

from norn.bridge.config import BridgeConfig
from norn.bridge.dead_letter import DeadLetterStore
from norn.bridge.keys import read_allowed, read_key
from norn.bridge.session import Sent, Session
from norn.bridge.view import WorldView
from norn.engine import clock as engine_clock
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed
from norn.engine.errors import EXIT_BUG, ConfigError, NornError
from norn.engine.inputs import InputQueue
from norn.engine.observe import log_event

_log = logging.getLogger("norn.bridge.server")


class BridgeDown(NornError):
    """The bridge thread died: the world must not tick on without its map servers."""

    exit_code = EXIT_BUG


#: ``sync_source(hosts) -> (tick, rows)``: the world's state at its last committed tick that
#: a server hosting ``hosts`` (bool per map id; None: every map) must mirror, as rows of
#: action kinds (a model's ``bridge_sync``). Called on the tick thread only.
SyncSource = Callable[[Any], tuple[int, dict[str, dict[str, Any]]]]


class BridgeServer:
    """Serves the bridge on ``endpoint`` (ROUTER, bind) and feeds ``inputs``.

    Subscribe ``committed`` to the world (``World.subscribe``): acks and actions follow it.
    """

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
        sync_source: SyncSource | None = None,
    ) -> None:
        self.requested_endpoint = endpoint
        self.endpoint: str | None = None
        self.inputs = inputs
        self.view = view
        self.config = config
        self._durable = dict(durable_seqs or {})
        self._dead_letter_path = dead_letter_path
        self._clock = clock
        self._start_tick = start_tick
        self._lock = threading.Lock()      # what the tick thread hands over
        self._state = threading.Lock()     # the session, between the loop and readers
        self._journaled: dict[str, int] = {}
        self._action_q: deque[ActionBatch] = deque()
        self._emit_dropped = 0
        self._committed = start_tick
        # The join sync: hellos ask (bridge thread), the tick thread reads the world between
        # ticks (``committed``, ``wait_progress``) and hands the rows back under ``_lock``.
        self._sync_source = sync_source
        self._sync_wanted: dict[str, tuple[int, Any]] = {}  # under _progress_cv
        self._sync_done: list[tuple[str, int, int, Any]] = []  # under _lock
        self._progress_cv = threading.Condition()
        self._frontiers: dict[str, int] = {}
        self._session: Session | None = None
        self._stopping = False
        self._crash: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._sock: zmq.Socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._secret: bytes | None = None
        self._allowed: set[bytes] = set()
        self._auth = {"auth_accepted": 0, "auth_refused": 0}
        if config.curve_enabled:
            if not zmq.has("curve"):
                raise ConfigError("CURVE requested but libzmq has no CURVE support")
            self._secret = read_key(config.curve_secret_key_file)  # type: ignore[arg-type]
            self._allowed = read_allowed(config.curve_allowed_keys_dir,
                                         config.curve_allowed_keys)

    # -- the tick thread's side (non-blocking) -------------------------------------------
    def check(self) -> None:
        """Raise ``BridgeDown`` if the bridge thread has died."""
        if self._crash is not None:
            raise BridgeDown(
                f"the bridge thread died ({type(self._crash).__name__}: {self._crash}); "
                "no map server is heard any more, so the run stops here (the journal is "
                "intact: continue with --resume)"
            )

    def committed(self, notice: Committed) -> None:
        """The tick is durable: ack its inputs, let its actions leave (queued, bounded).

        Never blocks: the actions of at most ``action_queue_ticks_max`` ticks wait for the
        bridge thread; past that they are dropped and counted (a resumed run or the
        action TTL resends, and map servers drop repeats by action id).
        """
        self.check()
        done = self._read_syncs()
        highest = notice.durable_seqs()
        n = notice.actions.count()
        with self._lock:
            self._sync_done.extend(done)  # before this tick's actions: the sync is of it
            for source, seq in highest.items():
                if seq > self._journaled.get(source, -1):
                    self._journaled[source] = seq
            if n:
                if len(self._action_q) >= self.config.action_queue_ticks_max:
                    self._emit_dropped += n
                else:
                    self._action_q.append(notice.actions)
            self._committed = max(self._committed, notice.tick)
        self._wake()

    def wait_progress(self, servers: tuple[str, ...], tick: int, timeout_s: float) -> list[str]:
        """Block until every server in ``servers`` has declared ``tick`` complete.

        The lockstep barrier (called by the tick thread before ``tick``): it returns the
        servers still behind when ``timeout_s`` runs out (empty: all ready).
        """
        deadline = engine_clock.monotonic() + timeout_s
        with self._progress_cv:
            while True:
                if self._sync_wanted:  # the world is between ticks: read what joiners need
                    self._progress_cv.release()
                    try:
                        done = self._read_syncs()
                    finally:
                        self._progress_cv.acquire()
                    with self._lock:
                        self._sync_done.extend(done)
                    self._wake()
                behind = [s for s in servers if self._frontiers.get(s, 0) < tick]
                left = deadline - engine_clock.monotonic()
                if not behind or left <= 0 or self._stopping or self._crash is not None:
                    return behind
                self._progress_cv.wait(left)

    def _want_sync(self, server_id: str, gen: int, hosts: Any) -> None:
        """Bridge thread: a hello asks for the join sync (the latest hello of a server wins)."""
        with self._progress_cv:
            self._sync_wanted[server_id] = (gen, hosts)
            self._progress_cv.notify_all()

    def _read_syncs(self) -> list[tuple[str, int, int, Any]]:
        """Tick thread, between ticks: the state each waiting server must mirror."""
        with self._progress_cv:
            wanted, self._sync_wanted = self._sync_wanted, {}
        out = []
        for sid in sorted(wanted):
            gen, hosts = wanted[sid]
            tick, kinds = self._sync_source(hosts)  # type: ignore[misc]
            out.append((sid, gen, tick, kinds))
        return out

    def frontiers(self) -> dict[str, int]:
        """server id -> the last tick it declared complete (and is in the input queue)."""
        with self._progress_cv:
            return dict(self._frontiers)

    def _on_frontier(self, server_id: str, tick: int) -> None:
        with self._progress_cv:
            self._frontiers[server_id] = tick
            self._progress_cv.notify_all()

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

    @property
    def crashed(self) -> BaseException | None:
        return self._crash

    @property
    def serving(self) -> bool:
        """Bound, and its thread alive and not crashed (``/readyz``)."""
        t = self._thread
        return (self.endpoint is not None and t is not None and t.is_alive()
                and self._crash is None and not self._stopping)

    def rejections(self) -> dict[tuple[str, int], int]:
        """(server id, error code) -> events and frames rejected (metrics; any thread)."""
        s = self._session
        return s.dead.counts() if s is not None else {}

    def stats(self) -> dict[str, Any]:
        """Counters (a consistent snapshot) for reports and tests."""
        with self._state:
            out: dict[str, Any] = (
                self._session.stats() if self._session is not None else {}
            )
        out.update(self._auth)
        out["actions_dropped"] = out.get("actions_dropped", 0) + self._emit_dropped
        out["endpoint"] = self.endpoint
        out["crashed"] = repr(self._crash) if self._crash is not None else None
        return out

    def peer_seqs(self) -> dict[str, tuple[int, int]]:
        """server id -> (received, acked): for tests and reports."""
        with self._state:
            return self._session.peer_seqs() if self._session is not None else {}

    def peer_up(self) -> dict[str, bool]:
        """server id -> whether its session is up (metrics)."""
        with self._state:
            return self._session.peer_up() if self._session is not None else {}

    def peer_held_bytes(self) -> dict[str, int]:
        """server id -> bytes held until journaled: for tests and reports."""
        with self._state:
            return self._session.peer_held_bytes() if self._session is not None else {}

    def dead_letters(self) -> list[dict[str, Any]]:
        """The most recent dead letters kept in memory."""
        with self._state:
            s = self._session
            return list(s.dead.recent) if s is not None else []

    # -- the bridge thread ----------------------------------------------------------------
    def _run(self) -> None:
        ctx = zmq.Context()
        sock = zap = None
        dead = None
        try:
            dead = DeadLetterStore(
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
            # Transport safety net: frames up to twice the limit are read and answered
            # frame_too_large; a larger one makes ZeroMQ drop the connection.
            sock.maxmsgsize = 2 * self.config.frame_bytes_max
            if self._secret is not None:
                sock.curve_server = True
                sock.curve_secretkey = self._secret
                sock.zap_domain = b"norn"
            ep = self.requested_endpoint
            if ep.startswith("tcp://") and ep.endswith(":0"):
                ep = ep[:-2] + ":*"
            sock.bind(ep)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            log_event(_log, "bridge_listening", f"bridge listening on {self.endpoint}",
                      endpoint=self.endpoint, curve=self._secret is not None)
            self._sock = sock
            self._session = Session(
                self.inputs, self.view, self.config, dead, self._transport_send,
                durable_seqs=self._durable, start_tick=self._start_tick,
                on_frontier=self._on_frontier,
                sync_request=self._want_sync if self._sync_source is not None else None,
            )
        except BaseException as exc:
            self._start_error = exc
            for s in (sock, zap):
                if s is not None:
                    s.close(0)
            if dead is not None:
                dead.close()
            ctx.term()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(sock, zap, self._session)
        except BaseException as exc:  # a bug: loud, and the tick thread stops at its next call
            self._crash = exc
            print("norn bridge thread crashed:\n" + traceback.format_exc(), file=sys.stderr)
            log_event(_log, "bridge_crashed", f"the bridge thread crashed: {exc!r}",
                      level=logging.ERROR, printed=True, error=type(exc).__name__)
            with self._progress_cv:
                self._progress_cv.notify_all()
        finally:
            sock.close(0)
            if zap is not None:
                zap.close(0)
            ctx.term()
            with contextlib.suppress(Exception):
                dead.close()

    def _loop(self, sock: zmq.Socket, zap: zmq.Socket | None, session: Session) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        reading = True
        while not self._stopping:
            want = session.reading()
            if want != reading:  # back-pressure: stop reading while too much waits
                poller.modify(sock, zmq.POLLIN if want else 0)
                reading = want
            now = self._clock()
            timeout_ms = 0 if session.busy() else max(
                0, min(self.config.heartbeat_ms, int((session.next_due(now) - now) * 1000) + 1)
            )
            ready = dict(poller.poll(timeout_ms))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if zap is not None and zap in ready:
                self._zap(zap)
            with self._state:
                now = self._clock()
                for _ in range(self.config.recv_per_wake_max):
                    if not session.reading():
                        break
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    payload = (parts[1].buffer if len(parts) == 2
                               else b"".join(p.buffer for p in parts[1:]))
                    session.receive(parts[0].bytes, payload, len(parts) - 1, now)
                with self._lock:
                    journaled, self._journaled = self._journaled, {}
                    committed = self._committed
                    batches = []
                    while self._action_q and self._action_q[0].tick <= committed:
                        batches.append(self._action_q.popleft())
                    synced, self._sync_done = self._sync_done, []
                for sid, gen, tick, kinds in synced:
                    session.synced(sid, gen, tick, kinds, now)
                if journaled:
                    session.journaled(journaled)
                session.committed(committed, batches, now)
                session.work(now)

    def _transport_send(self, rid: bytes, data: bytes) -> Sent:
        try:
            self._sock.send_multipart([rid, data], zmq.NOBLOCK)  # type: ignore[union-attr]
            return Sent.OK
        except zmq.Again:
            return Sent.FULL
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return Sent.GONE
            raise

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
            self._auth["auth_accepted" if ok else "auth_refused"] += 1
            if not ok:
                log_event(_log, "auth_refused", "a connection's CURVE key is not in the "
                          "allowlist", level=logging.WARNING, reason="key_not_allowed",
                          key=z85.decode() if z85 else None)
            zap.send_multipart([
                version, request_id, b"200" if ok else b"400",
                b"OK" if ok else b"public key not in the allowlist", z85 if ok else b"", b"",
            ])
