"""Test helpers for the bridge: a raw DEALER peer and a server harness playing the tick.

Used by ``tests/test_bridge_*.py`` and handy when checking another client implementation
by hand. Everything runs over real TCP sockets on 127.0.0.1 with ephemeral ports, and
every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from norn.bridge import protocol as proto
from norn.bridge.config import BridgeConfig
from norn.bridge.loadgen import demo_view
from norn.bridge.server import BridgeServer
from norn.bridge.view import WorldView
from norn.engine import clock
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed
from norn.engine.inputs import InputBatch, InputQueue

#: Bridge timings for tests: fast heartbeats, a peer timeout long enough for raw peers.
FAST = BridgeConfig(heartbeat_ms=50, peer_timeout_ms=3000)


class RawPeer:
    """A bare DEALER that sends whatever bytes a test wants and reads decoded frames."""

    def __init__(self, endpoint: str, *, curve: tuple[bytes, bytes, bytes] | None = None
                 ) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.rcvtimeo = 5000
        if curve is not None:
            server_key, public, secret = curve
            self.sock.curve_serverkey = server_key
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(endpoint)

    def send(self, data: bytes | dict[str, Any]) -> None:
        self.sock.send(proto.pack(data) if isinstance(data, dict) else data)

    def send_multipart(self, parts: list[bytes]) -> None:
        self.sock.send_multipart(parts)

    def recv(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """The next frame, decoded; None on timeout."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        return msgpack.unpackb(self.sock.recv(), raw=False)

    def recv_until(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
                   ) -> dict[str, Any] | None:
        """The first frame satisfying ``pred`` (others are skipped), or None."""
        deadline = clock.monotonic() + timeout_s
        while (left := deadline - clock.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                return None
            if pred(msg):
                return msg
        return None

    def recv_type(self, t: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
        return self.recv_until(lambda m: m.get("t") == t, timeout_s)

    def hello(self, server_id: str = "map01", **kw: Any) -> dict[str, Any] | None:
        """Say hello; the welcome (or error) that answers it."""
        self.sock.send(proto.encode_hello(server_id, **kw))
        return self.recv_until(lambda m: m.get("t") in (proto.WELCOME, proto.ERROR))

    def drain(self, timeout_s: float = 0.2) -> list[dict[str, Any]]:
        """Every frame arriving within the next ``timeout_s`` seconds."""
        out = []
        deadline = clock.monotonic() + timeout_s
        while (left := deadline - clock.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                break
            out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


class Harness:
    """A started BridgeServer on an ephemeral port, its InputQueue and an in-memory journal.

    It plays the engine through the engine's own handshake: ``commit()`` drains the queue,
    keeps the batches in ``journal`` (durable, as far as the test goes) and publishes the
    ``Committed`` notice the runner publishes after its fsync (acks follow); ``emit(batch)``
    publishes a tick's actions the same way. Without ``commit()`` nothing is acked.
    """

    def __init__(
        self,
        config: BridgeConfig | None = None,
        view: WorldView | None = None,
        *,
        durable_seqs: dict[str, int] | None = None,
        endpoint: str = "tcp://127.0.0.1:0",
        **kw: Any,
    ) -> None:
        self.inputs = InputQueue()
        self.journal: list[InputBatch] = []
        self.tick = 0  # the last tick whose notice was published
        self.server = BridgeServer(endpoint, self.inputs, view or demo_view(),
                                   config or BridgeConfig(), durable_seqs=durable_seqs, **kw)
        self.server.start()
        self.endpoint = self.server.endpoint or ""

    def commit(self) -> list[InputBatch]:
        """Drain, journal and publish ``Committed`` (at the current tick: acks only)."""
        batches = self.inputs.drain()
        self.journal.extend(batches)
        self.server.committed(Committed(self.tick, tuple(batches), ActionBatch(self.tick)))
        return batches

    def emit(self, batch: ActionBatch) -> None:
        """Publish ``Committed`` for ``batch.tick`` with these actions: they may leave."""
        self.tick = max(self.tick, batch.tick)
        self.server.committed(Committed(batch.tick, (), batch))

    def wait_for(self, pred: Callable[[], bool], timeout_s: float = 5.0,
                 step: Callable[[], None] | None = None) -> bool:
        """Poll ``pred`` (running ``step`` between tries) until true or the timeout."""
        deadline = clock.monotonic() + timeout_s
        while clock.monotonic() < deadline:
            if step is not None:
                step()
            if pred():
                return True
            clock.sleep_until(clock.monotonic() + 0.005)
        return pred()

    def durable(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.journal:
            out[b.source] = max(out.get(b.source, 0), b.seq)
        return out

    def stop(self) -> None:
        self.server.stop()
