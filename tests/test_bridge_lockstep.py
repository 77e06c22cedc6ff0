"""Lockstep and durable-first actions at the bridge (PROTOCOL.md sections 8 and 14).

Real sockets: a ``BridgeServer`` on 127.0.0.1 with a fake journal (``Harness``), spoken to
by a raw DEALER or the reference client.

- A batch stamped for tick T waits in the input queue until T; a stamp that goes back is
  still applied and answered with ``tick_order``.
- ``progress`` counts only once the engine holds the batches it covers; the barrier
  (``wait_progress``) names the servers still behind when it gives up.
- Actions leave only after their tick is committed; a lockstep session gets an ``hb``
  after each tick, never ahead of that tick's actions.
- A server new to the engine gets the actions of recent ticks that have not expired.
"""

from __future__ import annotations

import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import encode_columns
from norn.bridge.config import BridgeConfig
from norn.bridge.testing import FAST, Harness, RawPeer
from norn.engine.actions import ActionBatch, ActionBuffer
from norn.engine.commit import Committed

LOCKSTEP_CAPS = ("columns", "rows", proto.LOCKSTEP_CAP)


def quests(seq: int, tick: int, n: int = 1) -> bytes:
    return encode_columns(proto.EVENTS, seq, "quest_done", {
        "char_id": np.full(n, 150000), "quest_id": np.arange(1, n + 1)}, tick=tick)


def start_quest(tick: int, n: int = 1) -> ActionBatch:
    buf = ActionBuffer()
    buf.add("start_quest", char_id=np.full(n, 150000, np.uint32),
            quest_id=np.arange(1, n + 1, dtype=np.int32))
    return buf.take(tick)


def test_a_stamped_batch_waits_for_its_tick(harness, peer):
    assert peer.hello("map01")["t"] == "welcome"
    peer.send(quests(1, tick=3))
    peer.send(quests(2, tick=0))  # unstamped, but behind seq 1 of the same server
    assert harness.wait_for(lambda: len(harness.inputs) == 2)
    assert harness.inputs.drain(2) == []
    batches = harness.inputs.drain(3)
    assert [(b.seq, b.tick) for b in batches] == [(1, 3), (2, 0)]
    assert harness.server.stats()["stamped_batches"] == 1


def test_a_stamp_that_goes_back_is_applied_and_answered_with_tick_order(harness, peer):
    peer.hello("map01")
    peer.send(quests(1, tick=5))
    peer.send(quests(2, tick=4))
    err = peer.recv_type("error")
    assert err["code"] == proto.ErrorCode.TICK_ORDER and err["seq"] == 2
    assert err["field"] == "tick" and "applied at tick 5" in err["message"]
    assert harness.wait_for(lambda: len(harness.inputs) == 2)
    assert [(b.seq, b.tick) for b in harness.inputs.drain(5)] == [(1, 5), (2, 5)]
    # within ticks that progress already declared complete: also tick_order
    peer.send(proto.encode_progress(7, 2))
    peer.send(quests(3, tick=7))
    err = peer.recv_type("error")
    assert err["code"] == proto.ErrorCode.TICK_ORDER and err["seq"] == 3
    assert harness.server.stats()["tick_order"] == 2


def test_progress_counts_once_the_engine_holds_its_batches(harness, peer):
    server = harness.server
    peer.hello("map01")
    peer.send(proto.encode_progress(5, 2))  # ahead of the batches it covers
    peer.send(quests(1, tick=4))
    assert harness.wait_for(lambda: len(harness.inputs) == 1)
    assert server.wait_progress(("map01",), 1, timeout_s=0.2) == ["map01"]
    peer.send(quests(2, tick=5))
    assert server.wait_progress(("map01",), 5, timeout_s=5) == []
    assert server.frontiers() == {"map01": 5}
    # the barrier names every server still behind
    assert server.wait_progress(("map01", "map02"), 6, timeout_s=0.1) == ["map01", "map02"]
    # a server done stamping (progress 2^63-1) never holds the world again
    peer.send(proto.encode_progress(proto.SEQ_MAX, 2))
    assert server.wait_progress(("map01",), 10**9, timeout_s=5) == []


def test_progress_after_an_engine_restart_counts_against_the_journal():
    """A restarted engine holds the journaled batches: a repeated progress counts at once."""
    h = Harness(FAST, durable_seqs={"map01": 4})
    p = RawPeer(h.endpoint)
    try:
        assert p.hello("map01")["next_seq"] == 5
        p.send(proto.encode_progress(9, 4))
        assert h.server.wait_progress(("map01",), 9, timeout_s=5) == []
    finally:
        p.close()
        h.stop()


def test_actions_leave_only_after_commit_and_marks_follow_them(harness, peer):
    server = harness.server
    w = peer.hello("map01", caps=LOCKSTEP_CAPS)
    assert proto.LOCKSTEP_CAP in w["caps"]
    assert peer.recv_type("actions", 0.3) is None  # nothing is committed yet
    server.committed(Committed(1, (), start_quest(1)))  # tick 1 durable: its actions leave
    frames = [peer.recv_until(lambda m: m["t"] in ("actions", "hb")) for _ in range(2)]
    assert [(m["t"], m["tick"]) for m in frames] == [("actions", 1), ("hb", 1)]
    server.committed(Committed(2, (), ActionBatch(2)))  # no actions: still gets its mark
    hb = peer.recv_type("hb")
    assert hb["tick"] == 2
    # every later hb vouches only for what was sent: never beyond the committed tick
    assert all(m["tick"] <= 2 for m in peer.drain(0.2) if m["t"] == "hb")
    assert server.stats()["tick_marks_sent"] == 2


def test_a_server_new_to_the_engine_gets_recent_unexpired_actions():
    h = Harness(BridgeConfig(heartbeat_ms=50, peer_timeout_ms=3000, action_ttl_ticks=5))
    p = RawPeer(h.endpoint)
    try:
        h.emit(start_quest(1))  # nobody connected yet
        h.emit(start_quest(3, n=2))
        for t in (4, 5, 6, 7):
            h.emit(ActionBatch(tick=t))
        assert h.wait_for(lambda: h.server.stats()["tick"] == 7)
        assert p.hello("map01")["t"] == "welcome"
        got = p.recv_type("actions")
        assert got["tick"] == 3 and got["kinds"]["start_quest"]["n"] == 2  # tick 1 expired
        assert p.recv_type("actions", 0.2) is None
        assert h.server.stats()["actions_unroutable"] == 1  # tick 1: expired unseen
    finally:
        p.close()
        h.stop()


def test_the_reference_client_stamps_declares_progress_and_follows_marks(harness):
    server = harness.server
    client = BridgeClient(harness.endpoint, "map01",
                          config=ClientConfig(lockstep=True, batch_ms=10, heartbeat_ms=50))
    try:
        assert client.connect(5)
        client.set_tick(2)
        client.add_columns("quest_done", {"char_id": [150000], "quest_id": [7]})
        client.progress(2)
        assert server.wait_progress(("map01",), 2, timeout_s=5) == [], client.errors
        assert [(b.seq, b.tick) for b in harness.inputs.drain(2)] == [(1, 2)]
        with pytest.raises(ValueError, match="must not decrease"):
            client.set_tick(1)
        server.committed(Committed(2, (), start_quest(2)))
        assert harness.wait_for(lambda: client.mark_tick == 2, step=lambda: client.poll(5))
        assert client.stats["actions_received"] == 1
    finally:
        client.close()


def test_a_results_batch_is_journaled_in_action_id_order_whatever_order_it_came_in(harness,
                                                                                     peer):
    """Results are a set keyed by id; a server's answering order follows how its frames
    arrived (a frame resent after a reconnect came in another split), and the journal's
    bytes are part of the digest: a lockstep world killed and resumed differed from the
    uninterrupted one at the tick whose results came in another order (CI, issue 16)."""
    peer.hello("map01", caps=LOCKSTEP_CAPS)
    ids = np.array([(20 << 24) | 77, (20 << 24) | 76, (20 << 24) | 3, (20 << 24) | 76],
                   np.int64)
    peer.send(encode_columns(proto.RESULTS, 1, None, {
        "action_id": ids, "status": np.array([0, 1, 0, 0], np.uint8),
        "reason": np.array([0, 4, 0, 0], np.int16)}, tick=2))
    assert harness.wait_for(lambda: len(harness.inputs) == 1)
    (batch,) = harness.inputs.drain(2)
    assert batch.kind == "action_result"
    assert (batch.columns["action_id"] & 0xFFFFFF).tolist() == [3, 76, 76, 77]
    # stable: the two answers for 76 keep their order (the first one, failed, first)
    assert batch.columns["status"].tolist() == [0, 1, 0, 0]
    assert batch.columns["reason"].tolist() == [0, 4, 0, 0]
