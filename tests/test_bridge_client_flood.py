"""The reference client under a flood of actions (issue 16).

Through the 1M-NPC world the round-trip probe's ``BridgeClient`` got every action of the
world and executed them slower than they came: one ``poll`` read frames for up to 28 s and
sent nothing meanwhile (no heartbeat, no result, no batch), the engine marked the server
silent after ``peer_timeout_ms``, and each new hello brought the unanswered actions again,
so the next poll read longer still. A poll now reads for at most ``recv_ms_max`` and then
sends what is due; what it left is read by the next poll, nothing is skipped. An engine
played by a bare ROUTER here, so the flood is exact.
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from norn.bridge import protocol as proto
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import encode_actions
from norn.bridge.config import BridgeConfig
from norn.bridge.loadgen import TEST_MAPS
from norn.engine import clock


class Engine:
    """A ROUTER that welcomes one client and sends it whatever frames a test makes."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 100_000
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.rid: bytes | None = None
        self.got: list[dict] = []

    def serve_hello(self, client: BridgeClient) -> None:
        deadline = clock.monotonic() + 10
        while self.rid is None and clock.monotonic() < deadline:
            client.poll(5)
            self.read()
        assert self.rid is not None, "no hello"
        cfg = BridgeConfig()
        self.send(proto.encode_welcome(
            server_id=client.server_id, acked=0, next_seq=1, credit=64, tick=1,
            heartbeat_ms=cfg.heartbeat_ms, peer_timeout_ms=cfg.peer_timeout_ms,
            limits_=cfg.wire_limits(), maps=list(TEST_MAPS), reward_zeny_max=1_000_000,
            reward_amount_max=30_000, caps=proto.SERVER_CAPS))
        while not client.connected and clock.monotonic() < deadline:
            client.poll(5)
        assert client.connected

    def read(self) -> None:
        while True:
            try:
                rid, data = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = proto.unpack(data, 1 << 24)
            if msg["t"] == proto.HELLO:
                self.rid = rid
            self.got.append(msg)

    def send(self, data: bytes) -> None:
        self.sock.send_multipart([self.rid, data])

    def quests(self, tick: int, ids: list[int]) -> bytes:
        n = len(ids)
        return encode_actions(tick, tick + 50, {"start_quest": {
            "action_id": np.array(ids, np.int64), "char_id": np.full(n, 150000, np.uint32),
            "quest_id": np.arange(1, n + 1, dtype=np.int32)}}, [m for m, _, _ in TEST_MAPS])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _action_id(tick: int, pos: int) -> int:
    return (tick << 24) | pos


def test_a_poll_under_a_flood_of_actions_returns_and_sends_what_is_due():
    """200 frames wait; executing one takes 5 ms. The old poll read all of them (1 s and
    more) before sending anything; now it stops after recv_ms_max, the results of what it
    read leave, and the next polls read the rest, each frame once."""
    eng = Engine()
    seen: list[int] = []

    def on_actions(frame):
        ids = frame.kinds["start_quest"]["action_id"]
        seen.extend(ids.tolist())
        time.sleep(0.005)  # a game thread that executes slower than the frames come
        client.report_results(ids, 0, 0)

    client = BridgeClient(eng.endpoint, "flood01", on_actions=on_actions,
                          config=ClientConfig(batch_ms=0, heartbeat_ms=100))  # recv_ms_max 50
    try:
        eng.serve_hello(client)
        frames = 200
        for t in range(frames):
            eng.send(eng.quests(2 + t, [_action_id(2 + t, 0)]))
        deadline = clock.monotonic() + 5
        while client._sock.poll(0, zmq.POLLIN) == 0 and clock.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.2)  # every frame is in the client's socket now
        client.poll(0)
        first = len(seen)
        assert 1 <= first < frames // 2, first  # it returned long before reading them all
        results: list[dict] = []
        while not results and clock.monotonic() < deadline:
            eng.read()
            results = [m for m in eng.got if m["t"] == proto.RESULTS]
        assert results, "the results of what the poll read did not leave with it"
        assert len(seen) == first  # (no poll since: they left with the first one)
        while len(seen) < frames and clock.monotonic() < deadline + 10:
            client.poll(1)
        assert seen == [_action_id(2 + t, 0) for t in range(frames)]  # all, in order, once
    finally:
        client.close(bye=False)
        eng.close()


def test_the_ledger_still_refuses_repeats_and_takes_new_ids_below_its_highest():
    """The ledger check skips its search for ids above every id remembered; a repeat after
    a reconnect (ids below) is still searched: repeats are dropped, a new lower id is not."""
    eng = Engine()
    seen: list[list[int]] = []

    def on_actions(frame):
        ids = frame.kinds["start_quest"]["action_id"]
        seen.append(ids.tolist())
        client.report_results(ids, 0, 0)

    client = BridgeClient(eng.endpoint, "ledger01", on_actions=on_actions,
                          config=ClientConfig(batch_ms=0))
    try:
        eng.serve_hello(client)
        a, b, c = _action_id(5, 0), _action_id(5, 1), _action_id(6, 0)
        eng.send(eng.quests(5, [a, b]))
        eng.send(eng.quests(6, [c]))
        eng.send(eng.quests(5, [a, b]))               # a resend: both repeats
        eng.send(eng.quests(5, [b, _action_id(5, 2)]))  # one repeat, one new id below c
        deadline = clock.monotonic() + 5
        while len(seen) < 3 and clock.monotonic() < deadline:
            client.poll(5)
        client.poll(20)
        assert seen == [[a, b], [c], [_action_id(5, 2)]]
        assert client.stats["actions_duplicate"] == 3
    finally:
        client.close(bye=False)
        eng.close()
