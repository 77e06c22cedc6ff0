"""BridgeServer end to end over TCP on 127.0.0.1: sessions, acks, actions, results, restarts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from norn.bridge import protocol as proto
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import ActionsFrame, encode_columns, encode_rows
from norn.bridge.config import BridgeConfig
from norn.bridge.dead_letter import read_dead_letters
from norn.bridge.keys import read_key, write_keypair
from norn.bridge.testing import FAST, Harness, RawPeer
from norn.engine import clock
from norn.engine.actions import ActionBatch, ActionBuffer
from norn.engine.commit import Committed

SHORT = BridgeConfig(heartbeat_ms=50, peer_timeout_ms=300)  # raw peers do not heartbeat


def quests(seq: int, ids: list[int], char: int = 150000) -> bytes:
    return encode_columns(proto.EVENTS, seq, "quest_done", {
        "char_id": np.full(len(ids), char), "quest_id": np.array(ids)})


def actions_batch(tick: int, **kinds) -> ActionBatch:
    buf = ActionBuffer()
    for kind, cols in kinds.items():
        buf.add(kind, **cols)
    return buf.take(tick)


def test_hello_welcome_carries_world_limits_and_resume_point(harness, peer):
    w = peer.hello("map01", maps=["prontera"])
    assert w["t"] == "welcome" and w["v"] == 1 and w["server_id"] == "map01"
    assert (w["acked"], w["next_seq"], w["credit"]) == (0, 1, FAST.unacked_batches_max)
    assert w["maps"][0] == ["prontera", 312, 392]
    assert w["limits"] == FAST.wire_limits()
    assert w["reward"] == {"zeny_max": 1_000_000, "amount_max": 30_000}


def test_events_are_acked_only_after_they_are_journaled(harness, peer):
    peer.hello()
    peer.send(quests(1, [1, 2, 3]))
    assert harness.wait_for(lambda: len(harness.inputs) == 1)
    assert [m for m in peer.drain(0.2) if m["t"] == "ack"] == []  # queued, not durable yet
    batches = harness.commit()
    assert [(b.source, b.seq, b.kind, len(b)) for b in batches] == [("map01", 1, "quest_done", 3)]
    ack = peer.recv_type("ack")
    assert ack == {"t": "ack", "seq": 1, "credit": FAST.unacked_batches_max}
    np.testing.assert_array_equal(batches[0].columns["quest_id"], [1, 2, 3])


def test_end_to_end_events_in_actions_out_results_back(harness):
    got: list[ActionsFrame] = []

    def on_actions(frame: ActionsFrame) -> None:
        got.append(frame)
        ids = np.concatenate([c["action_id"] for c in frame.kinds.values()])
        client.report_results(ids, proto.ResultStatus.DONE, proto.ResultReason.OK)

    client = BridgeClient(harness.endpoint, "map01", maps=["prontera", "izlude"],
                          config=ClientConfig(batch_ms=0), on_actions=on_actions)
    try:
        assert client.connect(5)
        client.add_columns("mob_kill", {
            "char_id": [150000, 150001], "mob_id": [1002, 1113], "instance_id": [0, 3],
            "map": [0, 1], "x": [100, 50], "y": [100, 60]})
        client.add_rows("npc_talk", [[150000, 110000001, "hello"]])
        client.flush()
        harness.wait_for(lambda: len(harness.inputs) == 2, step=lambda: client.poll(5))
        batches = harness.commit()
        assert sorted(b.kind for b in batches) == ["mob_kill", "npc_talk"]
        mob = next(b for b in batches if b.kind == "mob_kill")
        np.testing.assert_array_equal(mob.columns["map_id"], [0, 1])
        harness.emit(actions_batch(
            5,
            start_quest={"char_id": np.array([150000], np.uint32),
                         "quest_id": np.array([7], np.int32)},
            broadcast={"map_id": np.array([-1], np.int16),
                       "text": np.array([b"hi"], dtype="S255")}))
        harness.wait_for(lambda: len(harness.inputs) == 1, step=lambda: client.poll(5))
        results = harness.commit()
        assert [b.kind for b in results] == ["action_result"]
        assert len(got) == 1 and got[0].count() == 2
        sent_ids = sorted(np.concatenate([c["action_id"] for c in got[0].kinds.values()]))
        assert sorted(results[0].columns["action_id"].tolist()) == sent_ids
        assert sent_ids == [5 << 24, (5 << 24) + 1]
        harness.wait_for(lambda: client.idle(), step=lambda: client.poll(5))
        st = harness.server.stats()
        assert st["events_accepted"] == 3 and st["actions_sent"] == 2
        assert st["results_received"] == 2 and st["actions_expired"] == 0
    finally:
        client.close()


def test_duplicates_after_reconnect_are_discarded(harness, peer):
    peer.hello("map01")
    peer.send(quests(1, [1]))
    peer.send(quests(2, [2]))
    harness.wait_for(lambda: len(harness.inputs) == 2)
    harness.commit()
    assert peer.recv_until(lambda m: m["t"] == "ack" and m["seq"] == 2)
    other = RawPeer(harness.endpoint)  # the map server reconnects on a new connection
    try:
        w = other.hello("map01")
        assert (w["acked"], w["next_seq"]) == (2, 3)
        assert peer.recv_type("error")["code"] == proto.ErrorCode.SUPERSEDED
        other.send(quests(2, [2]))  # a retransmission of something already applied
        other.send(quests(3, [3]))
        harness.wait_for(lambda: len(harness.inputs) == 1)
        harness.commit()
        assert [b.seq for b in harness.journal] == [1, 2, 3]
        assert harness.server.stats()["duplicates_discarded"] == 1
    finally:
        other.close()


def test_seq_gap_reported_once_then_resent_in_order(harness, peer):
    peer.hello()
    peer.send(quests(1, [1]))
    peer.send(quests(3, [3]))
    peer.send(quests(4, [4]))
    err = peer.recv_type("error")
    assert err["code"] == proto.ErrorCode.SEQ_GAP and err["expected_seq"] == 2
    assert [m for m in peer.drain(0.2) if m["t"] == "error"] == []  # the second is suppressed
    for s in (2, 3, 4):
        peer.send(quests(s, [s]))
    harness.wait_for(lambda: len(harness.inputs) == 4)
    assert [b.seq for b in harness.commit()] == [1, 2, 3, 4]
    st = harness.server.stats()
    assert st["seq_gaps"] == 1 and st["seq_gaps_suppressed"] == 1


def test_data_before_hello_gets_hello_required(harness, peer):
    peer.send(quests(1, [1]))
    err = peer.recv_type("error")
    assert err["code"] == proto.ErrorCode.HELLO_REQUIRED
    assert len(harness.inputs) == 0


@pytest.mark.parametrize("hello,code,field", [
    ({"v": 2}, proto.ErrorCode.VERSION_UNSUPPORTED, "v"),
    ({"server_id": "map 01!"}, proto.ErrorCode.BAD_FIELD, "server_id"),
    ({"server_id": "x" * 65}, proto.ErrorCode.BAD_FIELD, "server_id"),
    ({"maps": ["atlantis"]}, proto.ErrorCode.UNKNOWN_MAP, "maps"),
    ({"maps": "prontera"}, proto.ErrorCode.BAD_FIELD, "maps"),
])
def test_bad_hello_is_refused_with_the_field(harness, peer, hello, code, field):
    peer.send({"t": "hello", "v": 1, "server_id": "map01", "caps": [], "maps": [], **hello})
    err = peer.recv_type("error")
    assert err["code"] == code and err["field"] == field
    assert harness.server.stats()["peers_up"] == 0


def test_silent_peer_is_marked_down_and_the_world_keeps_running():
    harness = Harness(SHORT)
    peer = RawPeer(harness.endpoint)
    try:
        _silent_peer(harness, peer)
    finally:
        peer.close()
        harness.stop()


def _silent_peer(harness, peer):
    peer.hello("map01")
    for tick in range(1, 4):
        harness.emit(ActionBatch(tick=tick))
    assert peer.recv_until(lambda m: m["t"] == "hb" and m["tick"] == 3)
    # stop answering: the peer sends nothing for longer than peer_timeout_ms
    assert harness.wait_for(lambda: harness.server.stats()["peers_up"] == 0, timeout_s=3)
    st = harness.server.stats()
    assert st["peers_down"] == 1 and st["peers_marked_down"] == 1
    # actions for a down peer are kept and delivered after it says hello again
    harness.emit(actions_batch(4, start_quest={
        "char_id": np.array([150000], np.uint32), "quest_id": np.array([1], np.int32)}))
    peer.drain(0.1)
    w = peer.hello("map01")
    assert w["t"] == "welcome" and w["tick"] == 4
    frame = peer.recv_type("actions")
    assert frame["tick"] == 4 and "start_quest" in frame["kinds"]


def test_unresolved_actions_expire():
    cfg = BridgeConfig(heartbeat_ms=50, peer_timeout_ms=300, action_ttl_ticks=5)
    h = Harness(cfg)
    p = RawPeer(h.endpoint)
    try:
        p.hello("map01")
        p.send(proto.encode_bye())
        assert h.wait_for(lambda: h.server.stats()["peers_up"] == 0)
        h.emit(actions_batch(1, start_quest={
            "char_id": np.array([150000, 150001], np.uint32),
            "quest_id": np.array([1, 2], np.int32)}))
        for t in range(2, 8):
            h.emit(ActionBatch(tick=t))
        assert h.wait_for(lambda: h.server.stats()["actions_expired"] == 2)
        assert p.hello("map01")["t"] == "welcome"
        assert p.recv_type("actions", 0.3) is None
    finally:
        p.close()
        h.stop()


def test_actions_are_routed_to_the_servers_hosting_their_maps(harness):
    a, b = RawPeer(harness.endpoint), RawPeer(harness.endpoint)
    try:
        assert a.hello("map01", maps=["prontera"])["t"] == "welcome"
        assert b.hello("map02", maps=["izlude"])["t"] == "welcome"
        harness.emit(actions_batch(
            9,
            set_weather={"map_id": np.array([0, 1], np.int16),
                         "weather": np.array([1, 2], np.int16), "on": np.array([1, 1], np.uint8)},
            broadcast={"map_id": np.array([-1], np.int16),
                       "text": np.array([b"all"], dtype="S255")},
            give_reward={"char_id": np.array([150000], np.uint32),
                         "item_id": np.array([501], np.int32),
                         "amount": np.array([1], np.int32), "zeny": np.array([0], np.int32)}))
        fa, fb = a.recv_type("actions"), b.recv_type("actions")
        assert set(fa["kinds"]) == set(fb["kinds"]) == {"set_weather", "broadcast", "give_reward"}
        assert fa["kinds"]["set_weather"]["n"] == fb["kinds"]["set_weather"]["n"] == 1
        assert fa["maps"] == ["prontera"] and fb["maps"] == ["izlude"]
    finally:
        a.close()
        b.close()


def test_invalid_events_error_names_field_and_valid_ones_are_applied(tmp_path):
    for name in ("dead.bin", "dead.duckdb"):
        h = Harness(FAST, dead_letter_path=tmp_path / name)
        p = RawPeer(h.endpoint)
        try:
            p.hello()
            p.send(encode_rows(proto.EVENTS, 1, "player_move", [
                [150000, "prontera", 10, 10], [150001, "atlantis", 1, 1],
                [0, "izlude", 5, 5], [150003, "izlude", 5, 5]]))
            err = p.recv_type("error")
            assert err["code"] == proto.ErrorCode.INVALID_EVENTS and err["invalid"] == 2
            assert err["events"] == [[1, "map", "unknown map"],
                                     [2, "char_id", "must be an integer in [1, 2147483647]"]]
            h.wait_for(lambda h=h: len(h.inputs) == 1)
            (batch,) = h.commit()
            np.testing.assert_array_equal(batch.columns["char_id"], [150000, 150003])
            assert p.recv_type("ack")["seq"] == 1
        finally:
            p.close()
            h.stop()
        rows = read_dead_letters(tmp_path / name)
        assert [(r["server_id"], r["seq"], r["event_index"], r["field"]) for r in rows] == [
            ("map01", 1, 1, "map"), ("map01", 1, 2, "char_id")]
        assert b"atlantis" in rows[0]["raw"]


def test_engine_restart_from_journal_applies_every_event_exactly_once():
    """Crash between drain and journal: those batches come back by retransmission."""
    h1 = Harness(SHORT)
    endpoint = h1.endpoint
    cfg = ClientConfig(batch_events=10, batch_ms=0, peer_timeout_ms=400, hello_retry_ms=300,
                       retransmit_ms=500)
    client = BridgeClient(endpoint, "map01", config=cfg)
    sent = 0
    h2 = None
    try:
        assert client.connect(5)

        def send(k: int) -> None:
            nonlocal sent
            client.add_columns("quest_done", {"char_id": np.full(k, 150000),
                                              "quest_id": np.arange(sent + 1, sent + k + 1)})
            sent += k

        for _ in range(5):
            send(10)
            client.poll(5)
        h1.wait_for(lambda: len(h1.inputs) == 5, step=lambda: client.poll(5))
        h1.commit()  # seqs 1..5 durable
        for _ in range(3):
            send(10)
        h1.wait_for(lambda: len(h1.inputs) == 3, step=lambda: client.poll(5))
        h1.inputs.drain()  # seqs 6..8 drained but the engine dies before journaling them
        journal, durable = list(h1.journal), h1.durable()
        h1.stop()
        for _ in range(2):
            send(10)  # produced while the engine is down
            client.poll(5)
        h2 = Harness(SHORT, durable_seqs=durable, endpoint=endpoint)
        h2.journal = journal
        assert h2.wait_for(lambda: client.idle(),
                           step=lambda: (client.poll(5), h2.commit()), timeout_s=15)
        ids = np.concatenate([b.columns["quest_id"] for b in h2.journal])
        assert sorted(ids.tolist()) == list(range(1, sent + 1))  # each exactly once
        assert [b.seq for b in h2.journal] == list(range(1, 11))
        assert client.stats["events_acked"] == sent
    finally:
        client.close()
        if h2 is not None:
            h2.stop()


def test_the_commit_notice_is_bounded_and_never_blocks(monkeypatch):
    h = Harness(BridgeConfig(action_queue_ticks_max=2))
    h.server.stop()  # nobody drains the queue any more: a waiting notice would wait forever
    one = actions_batch(1, start_quest={"char_id": np.array([150000], np.uint32),
                                        "quest_id": np.array([1], np.int32)})

    def waited(*args, **kw):
        raise AssertionError("committed waited (for room, the bridge thread or the socket)")

    # No timing: every way to wait for room is made to fail instead. Waiting on a condition
    # or event (queue.Queue.put too), sleeping, or sending on a socket raise here.
    with monkeypatch.context() as m:
        for target, name in ((threading.Condition, "wait"), (threading.Condition, "wait_for"),
                             (threading.Event, "wait"), (time, "sleep"), (clock, "sleep_until"),
                             (zmq.Socket, "send"), (zmq.Socket, "send_multipart")):
            m.setattr(target, name, waited)
        for tick in range(1, 6):
            h.server.committed(Committed(tick, (), ActionBatch(tick=tick, kinds=one.kinds)))
    # bounded: the first action_queue_ticks_max ticks are queued, the rest dropped and counted
    assert h.server.stats()["actions_dropped"] == 3


def test_curve_admits_listed_keys_and_refuses_others(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    write_keypair(keys, "engine")
    pub, _ = write_keypair(keys, "map01")
    write_keypair(keys, "intruder")
    (allowed / "map01.public").write_bytes(pub.read_bytes())
    cfg = BridgeConfig(curve_secret_key_file=keys / "engine.secret",
                       curve_allowed_keys_dir=allowed, heartbeat_ms=50, peer_timeout_ms=300)
    h = Harness(cfg)
    try:
        def client(name: str, timeout: float) -> bool:
            c = BridgeClient(h.endpoint, name, config=ClientConfig(
                curve_server_key=read_key(keys / "engine.public"),
                curve_public_key=read_key(keys / f"{name}.public"),
                curve_secret_key=read_key(keys / f"{name}.secret")))
            try:
                return c.connect(timeout)
            finally:
                c.close()

        assert client("map01", 5)
        assert not client("intruder", 1.0)
        st = h.server.stats()
        assert st["auth_refused"] >= 1 and st["auth_accepted"] >= 1
        # a plain (non-CURVE) peer gets nothing either
        plain = RawPeer(h.endpoint)
        try:
            plain.send(proto.encode_hello("map02"))
            assert plain.recv(0.5) is None
        finally:
            plain.close()
    finally:
        h.stop()


def test_router_mandatory_and_hwm_are_set(harness):
    # white-box: the socket options that make ZeroMQ loud instead of silent
    sock = harness.server._sock
    assert sock.getsockopt(zmq.SNDHWM) == FAST.sndhwm
    assert sock.getsockopt(zmq.RCVHWM) == FAST.rcvhwm
    assert sock.getsockopt(zmq.MAXMSGSIZE) == 2 * FAST.frame_bytes_max
    # ROUTER_MANDATORY is write-only: check its effect. A peer whose connection is gone is
    # marked down by the next send to it (EHOSTUNREACH), not by the peer timeout, which here
    # is 10 minutes: without the option the send would vanish and the peer stay up.
    h = Harness(BridgeConfig(heartbeat_ms=50, peer_timeout_ms=600_000))
    gone = RawPeer(h.endpoint)
    try:
        assert gone.hello("map01")["t"] == "welcome"
        assert h.server.stats()["peers_up"] == 1
        gone.close()  # the TCP connection closes; the server's next heartbeat finds it gone
        assert h.wait_for(lambda: h.server.stats()["peers_up"] == 0, timeout_s=30)
        st = h.server.stats()
        assert (st["peers_marked_down"], st["peers_down"], st["sends_dropped_hwm"]) == (1, 1, 0)
    finally:
        h.stop()
