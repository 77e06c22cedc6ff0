"""The protocol points issue 14 settled (PROTOCOL.md sections 2, 4, 8, 9, 14), each as the
engine and the Python reference client now behave.

- unknown keys are ignored (hello, batches, welcome/ack on the client side); a `cols` map
  is closed (an extra column is `bad_field`, and the seq is consumed);
- `window_exceeded` says `expected_seq = received + 1`, every time, and is not consumed;
- a bad `tick` is `bad_field` and not consumed;
- the retransmission timer restarts only on an ack that advances and backs off;
- repeated action ids: never executed twice; answered again only for ids restored from a
  durable record; unknown action kinds answered `unsupported`;
- a batch stamped for a committed tick lands on the next one (`stamped_late`);
- a frame's actions are executed in `action_id` order across kinds, and a tick cut into
  several frames is cut in id order.
"""

from __future__ import annotations

import msgpack
import numpy as np
import zmq

from norn.bridge import protocol as proto
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import ActionsFrame, encode_actions
from norn.bridge.config import BridgeConfig
from norn.bridge.outbox import split_actions
from norn.bridge.testing import Harness, RawPeer
from norn.engine import clock
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed


def quest(seq: int, qid: int, **extra) -> dict:
    msg = {"t": "events", "seq": seq, "kind": "quest_done", "n": 1,
           "cols": {"char_id": np.array([150000], "<u4").tobytes(),
                    "quest_id": np.array([qid], "<i4").tobytes()}}
    msg.update(extra)
    return msg


# -- engine side -------------------------------------------------------------------------
def test_unknown_keys_are_ignored_but_cols_are_closed(harness, peer):
    hello = msgpack.unpackb(proto.encode_hello("map01"), raw=False)
    hello["future_key"] = {"anything": [1, 2]}
    peer.send(hello)
    assert peer.recv_type("welcome")["next_seq"] == 1
    peer.send(quest(1, 1, future_key="ignored"))          # unknown top-level key: fine
    bad = quest(2, 2)
    bad["cols"]["extra"] = b"\x00\x00\x00\x00"            # an extra column: bad_field
    peer.send(bad)
    peer.send(quest(3, 3))                                # seq 2 was consumed: 3 is next
    err = peer.recv_type("error")
    assert err["code"] == proto.ErrorCode.BAD_FIELD and err["seq"] == 2
    harness.wait_for(lambda: len(harness.inputs) == 3)
    batches = harness.commit()
    assert [(b.seq, len(b)) for b in batches] == [(1, 1), (2, 0), (3, 1)]
    assert peer.recv_until(lambda m: m["t"] == "ack" and m["seq"] == 3)
    assert [m for m in peer.drain(0.2) if m["t"] == "error"] == []


def test_window_exceeded_names_received_plus_one_every_time_and_is_not_consumed():
    h = Harness(BridgeConfig(heartbeat_ms=50, peer_timeout_ms=3000, unacked_batches_max=4))
    peer = RawPeer(h.endpoint)
    try:
        peer.hello("map01")
        for s in (1, 2, 3):
            peer.send(quest(s, s))
        h.wait_for(lambda: len(h.inputs) == 3)
        peer.send(quest(6, 6))  # acked 0 + credit 4 < 6
        peer.send(quest(7, 7))
        errs = [peer.recv_type("error") for _ in range(2)]
        assert [(e["code"], e["seq"], e["expected_seq"]) for e in errs] == [
            (proto.ErrorCode.WINDOW_EXCEEDED, 6, 4), (proto.ErrorCode.WINDOW_EXCEEDED, 7, 4)]
        peer.send(quest(4, 4))  # not consumed: 4 and then 5 go through
        h.wait_for(lambda: len(h.inputs) == 4)
        h.commit()
        peer.send(quest(5, 5))
        h.wait_for(lambda: len(h.inputs) == 1)
        assert [b.seq for b in h.commit()] == [5]
        assert [b.seq for b in h.journal] == [1, 2, 3, 4, 5]
    finally:
        peer.close()
        h.stop()


def test_a_bad_tick_is_bad_field_and_not_consumed(harness, peer):
    peer.hello("map01")
    peer.send(quest(1, 1, tick=-5))
    err = peer.recv_type("error")
    assert (err["code"], err["field"]) == (proto.ErrorCode.BAD_FIELD, "tick")
    peer.send(quest(1, 1))  # the same seq again: still expected
    harness.wait_for(lambda: len(harness.inputs) == 1)
    assert [b.seq for b in harness.commit()] == [1]


def test_a_batch_stamped_for_a_committed_tick_lands_on_the_next_and_is_counted(harness, peer):
    harness.server.committed(Committed(50, (), ActionBatch(50)))
    harness.wait_for(lambda: harness.server.stats()["tick"] == 50)
    peer.hello("map01")
    peer.send(quest(1, 1, tick=10))
    harness.wait_for(lambda: len(harness.inputs) == 1)
    [batch] = harness.commit()
    assert batch.tick == 10  # a floor: due at once, so the next tick drains it
    assert harness.inputs.drain(51) == []
    assert harness.server.stats()["stamped_late"] == 1
    assert [m for m in peer.drain(0.2) if m["t"] == "error"] == []


# -- client side: a scripted engine ---------------------------------------------------------
class FakeEngine:
    """A ROUTER the test scripts by hand: it welcomes, and otherwise says what it is told."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.rid: bytes | None = None
        self.got: list[tuple[float, dict]] = []

    def pump(self, client: BridgeClient, seconds: float, **welcome) -> None:
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            client.poll(2)
            while self.sock.poll(0):
                rid, data = self.sock.recv_multipart()
                self.rid = rid
                msg = msgpack.unpackb(data, raw=False)
                self.got.append((clock.monotonic(), msg))
                if msg["t"] == "hello":
                    w = msgpack.unpackb(proto.encode_welcome(
                        server_id=msg["server_id"], acked=0, next_seq=1, credit=64, tick=10,
                        heartbeat_ms=1000, peer_timeout_ms=60_000,
                        limits_=BridgeConfig().wire_limits(), maps=[("prontera", 312, 392)],
                        reward_zeny_max=1_000_000, reward_amount_max=30_000), raw=False)
                    w["future_key"] = 1
                    w["limits"]["future_limit"] = 5
                    w.update(welcome)
                    self.send(w)

    def send(self, msg: dict | bytes) -> None:
        data = msg if isinstance(msg, bytes) else proto.pack(msg)
        self.sock.send_multipart([self.rid, data])

    def batches(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.got if m["t"] in ("events", "results")]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def test_the_retransmit_timer_restarts_only_on_an_advancing_ack_and_backs_off():
    eng = FakeEngine()
    cfg = ClientConfig(batch_ms=0, retransmit_ms=150, retransmit_max_ms=600)
    client = BridgeClient(eng.endpoint, "map01", config=cfg)
    try:
        client.add_rows("quest_done", [[150000, 1]])
        client.flush()
        end = clock.monotonic() + 2.2
        while clock.monotonic() < end:  # hbs repeating acked=0 must not count as progress
            eng.pump(client, 0.05)
            if eng.rid is not None:
                eng.send(proto.encode_server_hb(10, 0))
        times = [t for t, m in eng.batches() if m["seq"] == 1]
        gaps = np.diff(times)
        # first send, then resends after ~0.15, 0.3, 0.6, 0.6 s (the cap)
        assert 4 <= len(times) <= 6, gaps
        assert 0.1 < gaps[0] < 0.3 and 0.25 < gaps[1] < 0.5 and 0.5 < gaps[2] < 0.8, gaps
        assert client.stats["timeouts"] == len(times) - 1
        # an advance over a resent batch measures nothing (Karn): the timeout stays 0.6 s
        eng.send(proto.encode_ack(1, 64))
        eng.pump(client, 0.05)
        assert abs(client._rto - 0.6) < 1e-9
        client.add_rows("quest_done", [[150000, 2]])
        client.flush()
        eng.pump(client, 0.05)
        eng.send(proto.encode_ack(2, 64))  # sent once: a clean sample, back to the base
        eng.pump(client, 0.05)
        client.add_rows("quest_done", [[150000, 3]])
        client.flush()
        eng.pump(client, 0.35)
        times3 = [t for t, m in eng.batches() if m["seq"] == 3]
        assert len(times3) == 2 and 0.1 < times3[1] - times3[0] < 0.3, np.diff(times3)
    finally:
        client.close()
        eng.close()


def test_slow_acks_raise_the_base_timeout():
    eng = FakeEngine()
    cfg = ClientConfig(batch_ms=0, retransmit_ms=100, retransmit_max_ms=5000)
    client = BridgeClient(eng.endpoint, "map01", config=cfg)
    try:
        for seq in (1, 2, 3):  # each acked 0.3 s after it left: srtt ~ 0.3, base ~ 0.6
            client.add_rows("quest_done", [[150000, seq]])
            client.flush()
            eng.pump(client, 0.3)
            eng.send(proto.encode_ack(seq, 64))
            eng.pump(client, 0.02)
        # the first batch timed out (0.1 s floor) and its ack measured nothing (Karn); the
        # backed-off timeout carried on until clean samples set it to ~2 x 0.3 s
        assert 0.45 < client._rto < 0.9, client._rto
        assert 1 <= client.stats["timeouts"] <= 3
    finally:
        client.close()
        eng.close()


def _actions(tick: int, **kinds) -> bytes:
    return encode_actions(tick, tick + 50, kinds, ["prontera"])


def test_repeats_restored_ids_and_unknown_kinds():
    eng = FakeEngine()
    executed: list[int] = []
    stored: list[int] = []

    def on_actions(frame: ActionsFrame) -> None:
        ids = np.concatenate([c["action_id"] for c in frame.kinds.values()])
        executed.extend(ids.tolist())
        client.report_results(ids, proto.ResultStatus.DONE, proto.ResultReason.OK)

    client = BridgeClient(eng.endpoint, "map01", config=ClientConfig(batch_ms=0),
                          on_actions=on_actions, on_executed=lambda ids: stored.extend(ids))
    a, b, c = (20 << 24), (20 << 24) + 1, (20 << 24) + 2
    client.restore_executed([a], 0, 0)  # executed by an earlier run of this map server
    reward = {"action_id": np.array([a, b], "<i8"), "char_id": np.array([150000] * 2, "<u4"),
              "item_id": np.array([501] * 2, "<i4"), "amount": np.array([1] * 2, "<i4"),
              "zeny": np.array([10] * 2, "<i4")}
    try:
        eng.pump(client, 0.2)
        frame = msgpack.unpackb(_actions(20, give_reward=reward), raw=False)
        frame["kinds"]["teleport_everyone"] = {"n": 1, "action_id": np.array([c], "<i8")
                                               .tobytes(), "x": b"\x01\x00"}
        frame["future_key"] = True
        for _ in range(2):  # the same frame twice (a re-send after a reconnect)
            eng.send(frame)
            eng.pump(client, 0.2)
        assert executed == [b] and stored == [b]  # a: restored, never executed again
        results = {}
        for _, m in eng.batches():
            cols = m["cols"]
            for i, st, rs in zip(np.frombuffer(cols["action_id"], "<i8").tolist(),
                                 np.frombuffer(cols["status"], "u1").tolist(),
                                 np.frombuffer(cols["reason"], "<i2").tolist(), strict=True):
                results.setdefault(i, []).append((st, rs))
        # a answered once more (its earlier answer may be lost), b once, c unsupported once
        assert results == {a: [(0, 0)], b: [(0, 0)],
                           c: [(1, int(proto.ResultReason.UNSUPPORTED))]}
        assert client.stats["actions_reanswered"] == 1
        assert client.stats["actions_unsupported"] == 1
        assert client.welcome["limits"]["future_limit"] == 5  # unknown keys: harmless
    finally:
        client.close()
        eng.close()


def test_a_tick_is_cut_into_frames_in_action_id_order():
    """Ids number the tick's emission order across kinds; frames of one tick carry
    consecutive id ranges, so executing frame after frame, each in id order
    (``ActionsFrame.in_order``), executes the tick in id order (PROTOCOL.md section 8)."""
    t = 9 << 24
    sel = {"despawn_npc": {"action_id": np.array([t + 2, t + 5]), "npc_id": np.array([1, 2])},
           "npc_say": {"action_id": np.array([t + 0, t + 1, t + 4]),
                       "npc_id": np.array([1, 1, 2]), "text": np.array([b"a", b"b", b"c"])},
           "give_reward": {"action_id": np.array([t + 3]), "char_id": np.array([150000])}}
    frames = split_actions(sel, 2)
    got = [{k: (c["action_id"] - t).tolist() for k, c in f.items()} for f in frames]
    assert got == [{"npc_say": [0, 1]}, {"despawn_npc": [2], "give_reward": [3]},
                   {"despawn_npc": [5], "npc_say": [4]}]
    assert frames[2]["npc_say"]["text"].tolist() == [b"c"]
    assert split_actions(sel, 6) == [sel] and split_actions({}, 6) == []
    order = []
    for f in frames:
        order += [int(f[k]["action_id"][j]) - t for k, j in ActionsFrame(9, 9, [], f).in_order()]
    assert order == list(range(6))
