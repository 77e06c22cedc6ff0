"""Every bridge limit over a real socket, at exactly the bound and one past it."""

from __future__ import annotations

import numpy as np

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns, encode_rows
from norn.bridge.config import BridgeConfig
from norn.bridge.testing import Harness, RawPeer

BASE = {"heartbeat_ms": 50, "peer_timeout_ms": 5000}


def quests(seq: int, n: int, first: int = 1) -> bytes:
    return encode_columns(proto.EVENTS, seq, "quest_done", {
        "char_id": np.full(n, 150000), "quest_id": np.arange(first, first + n)})


class Session:
    """A harness and one raw peer that said hello."""

    def __init__(self, server_id: str = "map01", **cfg) -> None:
        self.h = Harness(BridgeConfig(**{**BASE, **cfg}))
        self.p = RawPeer(self.h.endpoint)
        assert self.p.hello(server_id)["t"] == "welcome"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.p.close()
        self.h.stop()

    def error(self, timeout_s: float = 3.0) -> dict | None:
        return self.p.recv_type("error", timeout_s)


def test_frame_bytes_at_the_bound_and_one_past():
    frame = encode_rows(proto.EVENTS, 1, "quest_done", [[150000, q] for q in range(1, 60)])
    assert len(frame) >= 256
    with Session(frame_bytes_max=len(frame)) as s:
        s.p.send(frame)
        assert s.h.wait_for(lambda: len(s.h.inputs) == 1)
        assert s.p.recv_type("error", 0.2) is None
    with Session(frame_bytes_max=len(frame) - 1) as s:
        s.p.send(frame)
        err = s.error()
        assert err["code"] == proto.ErrorCode.FRAME_TOO_LARGE
        assert str(len(frame)) in err["message"]
        assert s.h.wait_for(lambda: s.h.server.stats()["dead_lettered"] == 1)
        assert len(s.h.inputs) == 0


def test_events_per_batch_at_the_bound_and_one_past():
    with Session(events_per_batch_max=10) as s:
        s.p.send(quests(1, 10))
        s.p.send(quests(2, 11, first=100))
        err = s.error()
        assert err["code"] == proto.ErrorCode.BATCH_TOO_LARGE and err["seq"] == 2
        s.p.send(quests(3, 1, first=200))  # the refused batch consumed its seq: no gap
        assert s.h.wait_for(lambda: len(s.h.inputs) == 3)
        batches = s.h.commit()
        assert [(b.seq, len(b)) for b in batches] == [(1, 10), (2, 0), (3, 1)]
        assert s.p.recv_until(lambda m: m["t"] == "ack" and m["seq"] == 3)


def test_text_bytes_at_the_bound_and_one_past():
    with Session(text_bytes_max=20) as s:
        s.p.send(encode_rows(proto.EVENTS, 1, "npc_talk", [
            [150000, 1, "a" * 20], [150000, 1, "a" * 21], [150000, 1, "é" * 10]]))
        err = s.error()
        assert err["code"] == proto.ErrorCode.INVALID_EVENTS
        assert err["events"] == [[1, "text", "longer than 20 bytes"]]
        assert s.h.wait_for(lambda: len(s.h.inputs) == 1)
        (b,) = s.h.commit()
        assert b.columns["text"].tolist() == [b"a" * 20, "é".encode() * 10]


def test_unacked_batches_at_the_bound_and_one_past():
    with Session(unacked_batches_max=4) as s:
        for seq in range(1, 5):
            s.p.send(quests(seq, 1, first=seq))
        s.p.send(quests(5, 1, first=5))
        err = s.error()
        assert err["code"] == proto.ErrorCode.WINDOW_EXCEEDED
        assert (err["seq"], err["expected_seq"]) == (5, 5)
        assert s.h.wait_for(lambda: len(s.h.inputs) == 4)
        s.h.commit()
        assert s.p.recv_until(lambda m: m["t"] == "ack" and m["seq"] == 4)["credit"] == 4
        s.p.send(quests(5, 1, first=5))  # within the window again
        assert s.h.wait_for(lambda: len(s.h.inputs) == 1)


def test_servers_connected_at_the_bound_and_one_past():
    h = Harness(BridgeConfig(**BASE, servers_max=2))
    peers = [RawPeer(h.endpoint) for _ in range(3)]
    try:
        assert peers[0].hello("map01")["t"] == "welcome"
        assert peers[1].hello("map02")["t"] == "welcome"
        err = peers[2].hello("map03")
        assert err["code"] == proto.ErrorCode.TOO_MANY_SERVERS
        assert h.server.stats()["peers_up"] == 2
        peers[0].send(proto.encode_bye())
        assert h.wait_for(lambda: h.server.stats()["peers_up"] == 1)
        assert peers[2].hello("map03")["t"] == "welcome"
        # a returning server id still needs a free slot
        assert peers[0].hello("map01")["code"] == proto.ErrorCode.TOO_MANY_SERVERS
    finally:
        for p in peers:
            p.close()
        h.stop()


def test_server_records_at_the_bound_and_one_past():
    # Two records may exist. A record with a batch in flight (not journaled) cannot be
    # freed, so with both in flight a third id is refused; once journaled and gone, the
    # oldest record is freed for the new id and its seq remembered for its return.
    h = Harness(BridgeConfig(**BASE, servers_max=2, server_records_max=2))
    p = RawPeer(h.endpoint)
    try:
        for i, sid in enumerate(("map01", "map02")):
            assert p.hello(sid)["t"] == "welcome"
            p.send(quests(1, 1, first=10 + i))
            assert h.wait_for(lambda i=i: len(h.inputs) == i + 1)
            p.send(proto.encode_bye())
        assert h.wait_for(lambda: h.server.stats()["peers_down"] == 2)
        assert p.hello("map03")["code"] == proto.ErrorCode.TOO_MANY_SERVERS  # at the bound
        h.commit()  # journaled: both records now hold nothing in flight
        assert h.wait_for(lambda: sum(a for _, a in h.server.peer_seqs().values()) == 2)
        welcome = p.hello("map03")
        assert welcome["t"] == "welcome" and welcome["acked"] == 0
        assert h.server.stats()["records_freed"] == 1
        assert sorted(h.server.peer_seqs()) == ["map02", "map03"]  # map01 (oldest) freed
        back = p.hello("map01")  # its seq was remembered: it resumes exactly
        assert back["t"] == "welcome" and back["acked"] == 1 and back["next_seq"] == 2
    finally:
        p.close()
        h.stop()


def test_events_per_second_at_the_bound_and_one_past():
    now = [1000.0]
    h = Harness(BridgeConfig(**BASE, events_per_s_max=100, events_per_batch_max=100),
                clock=lambda: now[0])
    p = RawPeer(h.endpoint)
    try:
        assert p.hello()["t"] == "welcome"
        p.send(quests(1, 100))  # exactly one second's budget: admitted at once
        assert h.wait_for(lambda: len(h.inputs) == 1)
        assert h.server.stats()["rate_limited"] == 0
        p.send(quests(2, 1, first=500))  # one past: held, not dropped
        assert h.wait_for(lambda: h.server.stats()["rate_limited"] == 1)
        st = h.server.stats()
        assert st["held_batches"] == 1 and len(h.inputs) == 1
        now[0] += 0.011  # 1.1 events of budget refilled
        assert h.wait_for(lambda: len(h.inputs) == 2)
        assert [b.seq for b in h.commit()] == [1, 2]
    finally:
        p.close()
        h.stop()


def test_hello_maps_at_the_bound_and_one_past():
    h = Harness(BridgeConfig(**BASE, hello_maps_max=2))
    p = RawPeer(h.endpoint)
    try:
        assert p.hello("map01", maps=["prontera", "izlude"])["t"] == "welcome"
        err = p.hello("map02", maps=["prontera", "izlude", "geffen"])
        assert err["code"] == proto.ErrorCode.BAD_FIELD and err["field"] == "maps"
    finally:
        p.close()
        h.stop()


def test_map_dictionary_at_the_bound_and_one_past():
    def frame(seq: int, k: int) -> bytes:
        maps = ["prontera"] * k
        return encode_columns(proto.EVENTS, seq, "player_move", {
            "char_id": np.array([150000]), "map": np.array([0], "<i2"),
            "x": np.array([1]), "y": np.array([1])}, maps)

    with Session(map_dict_max=3) as s:
        s.p.send(frame(1, 3))
        s.p.send(frame(2, 4))
        err = s.error()
        assert err["code"] == proto.ErrorCode.BAD_FIELD and err["field"] == "maps"
        assert err["seq"] == 2
        assert s.h.wait_for(lambda: len(s.h.inputs) == 2)
        assert [len(b) for b in s.h.commit()] == [1, 0]


def test_a_full_input_queue_holds_batches_never_drops_them():
    h = Harness(BridgeConfig(**BASE))
    h.inputs.batches_max = 2  # the tick is slow: the queue is full after two batches
    p = RawPeer(h.endpoint)
    try:
        assert p.hello()["t"] == "welcome"
        for seq in range(1, 6):
            p.send(quests(seq, 1, first=seq))
        assert h.wait_for(lambda: h.server.stats()["held_batches"] == 3)
        assert h.server.stats()["queue_full"] >= 1
        seen = []
        assert h.wait_for(lambda: len(seen) == 5, step=lambda: seen.extend(h.commit()))
        assert [b.seq for b in seen] == [1, 2, 3, 4, 5]
    finally:
        p.close()
        h.stop()


def test_held_bytes_past_the_bound_leave_the_rest_waiting_unprocessed():
    # held_bytes counts what the engine holds until it is journaled (in the bridge or in
    # the input queue). Past the bound the server's further frames wait unprocessed (read
    # from the socket, so its heartbeats still count), and all arrive in order later.
    h = Harness(BridgeConfig(**BASE, held_bytes_max=1 << 16))
    h.inputs.batches_max = 1
    p = RawPeer(h.endpoint)
    try:
        assert p.hello()["t"] == "welcome"
        big = 5000  # 5000 quest events = 40 KB of columns per batch
        for seq in range(1, 6):
            p.send(quests(seq, big, first=seq * big))
        assert h.wait_for(lambda: h.server.stats()["inbound_frames"] > 0
                          and h.server.stats()["frames_in"] == 6)
        st = h.server.stats()
        assert st["held_bytes"] == 2 * big * 8  # one batch queued, one held: then the bound
        assert st["held_batches"] == 1 and st["inbound_frames"] == 3
        assert h.server.peer_held_bytes() == {"map01": st["held_bytes"]}
        seen = []
        assert h.wait_for(lambda: len(seen) == 5, step=lambda: seen.extend(h.commit()))
        assert [b.seq for b in seen] == [1, 2, 3, 4, 5]
        assert h.wait_for(lambda: h.server.stats()["held_bytes"] == 0)
    finally:
        p.close()
        h.stop()
