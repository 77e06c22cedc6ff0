"""Hostile and greedy peers (issue 9): one frame or one server must never take the bridge down.

Each test names the finding it guards. Most run the socket-free ``Session`` directly with an
injected clock (no timed waits); a few go through a real ROUTER socket where the socket is
the point (frame size limits, liveness, a dying bridge thread).
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns, encode_rows
from norn.bridge.config import BridgeConfig
from norn.bridge.dead_letter import DeadLetterStore
from norn.bridge.loadgen import demo_view
from norn.bridge.server import BridgeDown
from norn.bridge.session import Sent, Session
from norn.bridge.testing import Harness, RawPeer
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed
from norn.engine.inputs import InputQueue

BASE = {"heartbeat_ms": 50, "peer_timeout_ms": 3000}


def deep(levels: int, leaf: bytes = b"\x01") -> bytes:
    """msgpack bytes of ``levels`` arrays nested in each other around ``leaf``."""
    return b"\x91" * levels + leaf


class Net:
    """A session and the frames it sent, per connection; time is a number the test moves."""

    def __init__(self, **cfg) -> None:
        self.inputs = InputQueue()
        self.config = BridgeConfig(**{**BASE, **cfg})
        self.out: dict[bytes, list[dict]] = {}
        self.now = 0.0
        self.journal: list = []
        self.s = Session(self.inputs, demo_view(), self.config,
                         DeadLetterStore(None, records_max=10**6, raw_bytes_max=1 << 16),
                         self._send)

    def _send(self, rid: bytes, data: bytes) -> Sent:
        self.out.setdefault(rid, []).append(msgpack.unpackb(data, raw=False))
        return Sent.OK

    def frame(self, rid: bytes, data: bytes | dict) -> None:
        self.s.receive(rid, proto.pack(data) if isinstance(data, dict) else data, 1, self.now)

    def work(self, dt: float = 1 / 1024) -> None:
        self.now += dt
        self.s.work(self.now)

    def take(self, rid: bytes) -> list[dict]:
        return self.out.pop(rid, [])

    def last(self, rid: bytes) -> dict:
        return self.take(rid)[-1]

    def hello(self, rid: bytes, sid: str, **kw) -> dict:
        self.frame(rid, proto.encode_hello(sid, **kw))
        self.work()
        return self.last(rid)

    def tick(self) -> list:
        """Play one tick: drain what is due, journal it, tell the session it is durable."""
        t = self.s.tick + 1
        batches = self.inputs.drain(t)
        self.journal.extend(batches)
        highest: dict[str, int] = {}
        for b in batches:
            highest[b.source] = max(highest.get(b.source, 0), b.seq)
        self.s.journaled(highest)
        self.s.committed(t, [], self.now)
        self.work()
        return batches


def quests(seq: int, n: int, first: int = 1, **kw) -> bytes:
    return encode_columns(proto.EVENTS, seq, "quest_done", {
        "char_id": np.full(n, 150000), "quest_id": np.arange(first, first + n)}, **kw)


def talks(seq: int, n: int, text_bytes: int = 250) -> bytes:
    """``n`` npc_talk events of ``text_bytes`` each: the biggest legal batches there are."""
    return encode_columns(proto.EVENTS, seq, "npc_talk", {
        "char_id": np.full(n, 150000), "npc_id": np.arange(n, dtype=np.int64),
        "text": [b"x" * text_bytes] * n})


# -- finding 1: one frame of about 1 KB killed the bridge thread ------------------------------
@pytest.mark.parametrize("field", ["v", "server_id", "caps", "maps"])
def test_a_hello_with_a_field_nested_a_thousand_deep_is_answered_malformed(field):
    net = Net()
    hello = {"t": "hello", "v": 1, "server_id": "map01", "caps": [], "maps": []}
    raw = proto.pack(hello)
    value = proto.pack({field: hello[field]})[1 + len(proto.pack(field)):]
    frame = raw.replace(proto.pack(field) + value, proto.pack(field) + deep(1000), 1)
    assert frame != raw
    net.frame(b"a", frame)
    net.work()
    err = net.last(b"a")
    assert err["t"] == "error" and err["code"] == proto.ErrorCode.MALFORMED
    assert "FRAME_NESTING_MAX" in err["message"]
    assert net.s.counters["internal_errors"] == 0 and net.s.counters["dead_lettered"] == 1
    assert net.hello(b"a", "map01")["t"] == "welcome"  # and the session goes on


def test_an_events_seq_nested_a_thousand_deep_is_malformed_and_the_stream_goes_on():
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"
    good = quests(1, 1)
    bad = good.replace(b"\xa3seq\x01", b"\xa3seq" + deep(1000), 1)
    net.frame(b"a", bad)
    net.frame(b"a", good)
    net.work()
    assert [m["t"] for m in net.take(b"a")] == ["error"]
    assert [b.seq for b in net.tick()] == [1]


def test_frame_nesting_at_the_bound_and_one_past():
    # a row value that is itself an array (4 levels) is one invalid event; 5 is malformed
    four = encode_rows(proto.EVENTS, 1, "quest_done", [[150000, 7], [[1], 7]])
    msg = proto.unpack(four, 1 << 20)
    assert proto.nesting(msg, proto.FRAME_NESTING_MAX) == proto.FRAME_NESTING_MAX
    five = encode_rows(proto.EVENTS, 1, "quest_done", [[150000, 7], [[[1]], 7]])
    with pytest.raises(proto.ProtocolError) as ei:
        proto.unpack(five, 1 << 20)
    assert ei.value.code == proto.ErrorCode.MALFORMED
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"
    net.frame(b"a", four)
    net.work()
    assert net.last(b"a")["code"] == proto.ErrorCode.INVALID_EVENTS
    assert [len(b) for b in net.tick()] == [1]


def test_describe_never_recurses_and_never_runs_long():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    assert proto.describe(nested) == "an array of 1"
    assert proto.describe("x" * 10**6) == repr("x" * 60)
    assert proto.describe(b"\0" * 10**6) == "1000000 bytes"
    assert proto.describe({"a": nested}) == "a map of 1"


def test_an_exception_while_handling_a_frame_is_counted_dead_lettered_and_contained(
        monkeypatch):
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"

    def boom(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(net.s._decoder, "decode", boom)
    net.frame(b"a", quests(1, 1))
    net.work()
    assert net.s.counters["internal_errors"] == 1
    assert net.s.last_internal_error == "ZeroDivisionError: a bug"
    assert net.s.dead.recent[-1]["reason"].startswith("internal error")
    monkeypatch.undo()
    net.frame(b"a", proto.encode_client_hb(0))
    net.work()
    assert net.s.stats()["peers_up"] == 1


def test_a_dead_bridge_thread_stops_the_tick_with_bridge_down(monkeypatch):

    h = Harness(BridgeConfig(**BASE))
    try:
        def boom(self, now):
            raise RuntimeError("the loop itself failed")

        monkeypatch.setattr(Session, "work", boom)
        h.server._wake()
        assert h.wait_for(lambda: h.server.crashed is not None)
        with pytest.raises(BridgeDown, match="bridge thread died"):
            h.server.committed(Committed(1, (), ActionBatch(tick=1)))
        with pytest.raises(BridgeDown):
            h.commit()  # the harness's tick publishes the same notice
        assert h.server.wait_progress(("map01",), 5, 10.0) == ["map01"]  # returns at once
    finally:
        monkeypatch.undo()
        h.stop()


def test_a_run_whose_bridge_thread_dies_exits_4_naming_it(tmp_path, monkeypatch, capsys):
    from norn.engine import cli

    calls = {"n": 0}
    real = Session.work

    def dies_later(self, now):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("injected bridge failure")
        real(self, now)

    monkeypatch.setattr(Session, "work", dies_later)
    code = cli.main(["run", "--ticks", "100000", "--clock", "realtime",
                     "--tick-ms", "10", "--serve", "tcp://127.0.0.1:0", "--out",
                     str(tmp_path / "run"), "--json", "--no-fsync"])
    err = capsys.readouterr().err
    assert code == 4
    assert "bridge thread died (RuntimeError: injected bridge failure)" in err


# -- finding 2: lock-out by throwaway ids ----------------------------------------------------
def test_throwaway_ids_that_said_bye_never_lock_new_ids_out():
    net = Net(servers_max=2, server_records_max=4)
    for i in range(200):
        sid = f"junk{i}"
        assert net.hello(b"x%d" % i, sid)["t"] == "welcome", sid
        net.frame(b"x%d" % i, proto.encode_bye())
        net.work()
    st = net.s.stats()
    assert st["server_records"] == 4 and st["records_freed"] == 196 and st["peers_up"] == 0


def test_a_silent_session_frees_its_slot_at_the_peer_timeout():
    net = Net(servers_max=1, peer_timeout_ms=1000, heartbeat_ms=100)
    assert net.hello(b"a", "map01")["t"] == "welcome"
    assert net.hello(b"b", "map02")["code"] == proto.ErrorCode.TOO_MANY_SERVERS
    net.work(1.0 - 1 / 1024)  # silent for exactly the timeout: still up
    assert net.s.stats()["peers_up"] == 1
    net.work(1 / 1024)
    assert net.s.stats()["peers_up"] == 0 and net.s.counters["peers_timed_out"] == 1
    assert net.hello(b"b", "map02")["t"] == "welcome"


def test_a_known_server_takes_the_slot_of_a_session_that_never_delivered():
    net = Net(servers_max=2)
    assert net.hello(b"k", "known")["t"] == "welcome"
    net.frame(b"k", quests(1, 1))
    net.work()
    net.tick()
    net.frame(b"k", proto.encode_bye())
    net.work()
    # two throwaway sessions now hold both slots (and keep them alive with heartbeats)
    assert net.hello(b"j1", "junk1")["t"] == "welcome"
    assert net.hello(b"j2", "junk2")["t"] == "welcome"
    assert net.hello(b"j3", "junk3")["code"] == proto.ErrorCode.TOO_MANY_SERVERS
    back = net.hello(b"k2", "known")
    assert back["t"] == "welcome" and back["acked"] == 1
    evicted = net.take(b"j1")[-1]  # the longest-silent never-delivering session
    assert evicted["code"] == proto.ErrorCode.TOO_MANY_SERVERS and "known" in evicted["message"]
    assert net.s.counters["sessions_preempted"] == 1


def test_a_known_server_whose_record_was_freed_resumes_its_seqs_exactly():
    net = Net(servers_max=1, server_records_max=1)
    assert net.hello(b"a", "map01")["t"] == "welcome"
    for seq in (1, 2, 3):
        net.frame(b"a", quests(seq, 1, first=seq))
    net.work()
    net.tick()
    net.frame(b"a", proto.encode_bye())
    net.work()
    assert net.hello(b"b", "map02")["t"] == "welcome"  # map01's record is freed for it
    net.frame(b"b", proto.encode_bye())
    net.work()
    w = net.hello(b"c", "map01")
    assert (w["acked"], w["next_seq"]) == (3, 4)
    net.frame(b"c", quests(3, 1, first=99))  # a repeat: discarded, acked again
    net.work()
    assert net.take(b"c")[-1] == {"t": "ack", "seq": 3, "credit": 64}
    assert net.tick() == []


def test_durable_ids_at_the_bound_and_one_past():
    net = Net(servers_max=1, server_records_max=1, durable_ids_max=2)
    for i in range(3):
        assert net.hello(b"r%d" % i, f"s{i}")["t"] == "welcome"
        net.frame(b"r%d" % i, quests(1, 1, first=i + 1))
        net.work()
        net.tick()
        net.frame(b"r%d" % i, proto.encode_bye())
        net.work()
    assert net.s.stats()["durable_ids"] == 2  # s0 and s1 remembered; s2 holds the record
    err = net.hello(b"r9", "s9")  # freeing s2 would need a third remembered id
    assert err["code"] == proto.ErrorCode.TOO_MANY_SERVERS
    assert net.hello(b"r0", "s0")["acked"] == 1  # a known id is never locked out by this


def test_records_with_batches_in_flight_are_never_freed():
    net = Net(servers_max=1, server_records_max=1)
    assert net.hello(b"a", "map01")["t"] == "welcome"
    net.frame(b"a", quests(1, 1))
    net.frame(b"a", proto.encode_bye())
    net.work()
    assert net.hello(b"b", "map02")["code"] == proto.ErrorCode.TOO_MANY_SERVERS
    net.tick()
    assert net.hello(b"b", "map02")["t"] == "welcome"


# -- finding 3: head-of-line stall --------------------------------------------------------------
def test_a_greedy_server_at_full_credit_delays_three_normal_ones_by_at_most_two_ticks():
    # A greedy server sends the biggest legal batches (~7.7 MiB) at the full credit of the
    # latest ack, as a conforming client does (pausing after ``overloaded`` until an ack
    # advances, then resending from it); three normal servers send one small batch per
    # tick. Every normal batch is acked within two ticks of being sent, and every greedy
    # batch is journaled exactly once.
    net = Net()
    big = talks(1, 30_000)
    assert 7 << 20 < len(big) <= net.config.frame_bytes_max
    frames = {seq: big.replace(b"\xa3seq\x01", b"\xa3seq" + msgpack.packb(seq), 1)
              for seq in range(1, 65)}
    normal = [b"n1", b"n2", b"n3"]
    assert net.hello(b"g", "greedy")["t"] == "welcome"
    for i, rid in enumerate(normal):
        assert net.hello(rid, f"normal{i}")["t"] == "welcome"
    g = {"acked": 0, "credit": 64, "next": 1, "hold": False}
    sent_at: dict[tuple[bytes, int], int] = {}
    latency = []
    for t in range(1, 1000):
        if not g["hold"]:
            while g["next"] <= min(len(frames), g["acked"] + g["credit"]):
                net.frame(b"g", frames[g["next"]])
                g["next"] += 1
        if t <= 40:
            for rid in normal:
                net.frame(rid, quests(t, 3, first=t))
                sent_at[(rid, t)] = t
        net.work()
        net.tick()
        for m in net.take(b"g"):
            if m["t"] == "error" and m["code"] == proto.ErrorCode.OVERLOADED:
                g["hold"] = True
            elif m["t"] == "ack" and m["seq"] > g["acked"]:
                g.update(acked=m["seq"], credit=m["credit"])
                if g["hold"]:
                    g.update(hold=False, next=m["seq"] + 1)
        for rid in normal:
            for m in net.take(rid):
                if m["t"] == "ack":
                    for seq in [s for (r, s) in sent_at if r == rid and s <= m["seq"]]:
                        latency.append(t - sent_at.pop((rid, seq)))
        if g["acked"] == len(frames) and not sent_at and t > 40:
            break
    assert len(latency) == 3 * 40 and max(latency) <= 2, sorted(latency)[-5:]
    greedy = [b.seq for b in net.journal if b.source == "greedy"]
    assert greedy == list(range(1, 65))
    assert g["credit"] < 64  # the acks told it to send less at a time
    assert net.s.counters["peers_marked_down"] == 0


def test_liveness_is_judged_at_arrival_not_after_a_backlog():
    net = Net(peer_timeout_ms=1000, heartbeat_ms=100)
    assert net.hello(b"g", "greedy")["t"] == "welcome"
    assert net.hello(b"n", "normal")["t"] == "welcome"
    big = talks(1, 30_000)
    for seq in range(1, 12):
        net.frame(b"g", big.replace(b"\xa3seq\x01", b"\xa3seq" + msgpack.packb(seq), 1))
    for _ in range(30):  # 3 s of simulated time; both servers say hb every 100 ms
        net.frame(b"n", proto.encode_client_hb(0))
        net.frame(b"g", proto.encode_client_hb(0))
        net.work(0.1)
    assert net.s.stats()["inbound_frames"] > 0  # the greedy backlog is still waiting
    assert net.s.counters["peers_timed_out"] == 0 and net.s.stats()["peers_up"] == 2


def test_a_stale_hello_never_takes_the_session_from_a_newer_connection():
    net = Net()
    assert net.hello(b"old", "map01")["t"] == "welcome"
    net.frame(b"old", talks(1, 30_000))  # the old connection's hello waits behind this
    net.frame(b"old", proto.encode_hello("map01"))
    net.frame(b"new", proto.encode_hello("map01"))  # the server reconnected meanwhile
    for _ in range(20):
        net.work()
    assert net.take(b"new")[0]["t"] == "welcome"
    stale = [m for m in net.take(b"old") if m["t"] == "error"]
    assert stale[-1]["code"] == proto.ErrorCode.SUPERSEDED and "stale" in stale[-1]["message"]
    assert net.s._peers["map01"].rid == b"new"


def test_per_connection_inbound_at_the_bound_and_one_past():
    net = Net(peer_inbound_frames_max=3, frame_bytes_max=1 << 16,
              peer_inbound_bytes_max=1 << 16)
    assert net.hello(b"a", "map01")["t"] == "welcome"
    for seq in (1, 2, 3):
        net.frame(b"a", quests(seq, 1, first=seq))
    assert net.s.counters["frames_overloaded"] == 0 and net.take(b"a") == []
    net.frame(b"a", quests(4, 1, first=4))  # one past: dropped unread, answered once
    net.frame(b"a", quests(5, 1, first=5))
    errs = net.take(b"a")
    assert [e["code"] for e in errs] == [proto.ErrorCode.OVERLOADED]
    assert net.s.counters["frames_overloaded"] == 2
    net.work()
    assert [b.seq for b in net.tick()] == [1, 2, 3]  # seq 4 was not consumed: resend it
    net.frame(b"a", quests(4, 1, first=4))
    net.work()
    assert [b.seq for b in net.tick()] == [4]


def test_all_connections_inbound_at_the_bound_stops_reading():
    net = Net(inbound_frames_max=4, peer_inbound_frames_max=4)
    for i in range(3):
        net.frame(b"r%d" % i, proto.encode_client_hb(0))
    assert net.s.reading()
    net.frame(b"r3", proto.encode_client_hb(0))
    assert not net.s.reading()
    net.work()
    assert net.s.reading()


# -- finding 4: held batches were not bounded ---------------------------------------------
def test_a_stamp_far_beyond_the_engine_tick_is_refused_unconsumed():
    net = Net(stamp_ahead_ticks_max=100)
    assert net.hello(b"a", "map01")["t"] == "welcome"
    net.frame(b"a", quests(1, 1, tick=100))  # exactly the bound: held for tick 100
    net.frame(b"a", quests(2, 1, tick=2**62))
    net.frame(b"a", quests(2, 1, tick=2**62))  # reported once per seq
    net.work()
    errs = [m for m in net.take(b"a") if m["t"] == "error"]
    assert [e["code"] for e in errs] == [proto.ErrorCode.TICK_AHEAD]
    assert errs[0]["expected_seq"] == 2 and net.s.counters["tick_ahead"] == 2
    assert net.s.stats()["held_bytes"] == 8  # the one stamped batch, counted truly
    net.frame(b"a", quests(2, 1, tick=101))  # one past the bound at tick 0
    net.work()
    assert net.take(b"a") == [] and net.s.counters["tick_ahead"] == 3  # already reported
    net.tick()  # the engine reaches tick 1: 101 is now within the bound
    net.frame(b"a", quests(2, 1, tick=101))
    net.work()
    assert net.s.peer_seqs()["map01"] == (2, 0)
    assert net.s.stats()["held_bytes"] == 16


def test_held_bytes_count_batches_waiting_in_the_input_queue_until_journaled():
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"
    net.frame(b"a", quests(1, 100, tick=50))
    net.work()
    assert len(net.inputs) == 1 and net.s.stats()["held_batches"] == 0
    assert net.s.stats()["held_bytes"] == 800
    net.inputs.drain(50)
    net.s.journaled({"map01": 1})
    assert net.s.stats()["held_bytes"] == 0


def test_a_greedy_server_gets_only_its_share_of_the_input_queue():
    net = Net()
    net.inputs.events_max = 100_000
    assert net.hello(b"g", "greedy")["t"] == "welcome"
    assert net.hello(b"n", "normal")["t"] == "welcome"
    for seq in range(1, 31):
        net.frame(b"g", quests(seq, 10_000, first=seq, tick=1000))  # waits for tick 1000
    net.frame(b"n", quests(1, 10))
    for _ in range(40):
        net.work()
    queued = {}
    for b in net.inputs._batches:
        queued[b.source] = queued.get(b.source, 0) + len(b)
    assert queued["normal"] == 10
    assert queued["greedy"] == 100_000 // 2  # its share with two sessions up


# -- finding 5: documented behaviour ------------------------------------------------------------
@pytest.mark.parametrize("missing", ["caps", "maps"])
def test_a_hello_missing_caps_or_maps_gets_bad_field(missing):
    net = Net()
    msg = {"t": "hello", "v": 1, "server_id": "map01", "caps": [], "maps": []}
    del msg[missing]
    net.frame(b"a", msg)
    net.work()
    err = net.last(b"a")
    assert (err["code"], err["field"]) == (proto.ErrorCode.BAD_FIELD, missing)


@pytest.mark.parametrize(("v", "code"), [
    (2**64 - 1, proto.ErrorCode.VERSION_UNSUPPORTED), (0, proto.ErrorCode.VERSION_UNSUPPORTED),
    (-1, proto.ErrorCode.VERSION_UNSUPPORTED), ("1", proto.ErrorCode.BAD_FIELD),
    (None, proto.ErrorCode.BAD_FIELD), (True, proto.ErrorCode.BAD_FIELD),
])
def test_hello_versions(v, code):
    net = Net()
    net.frame(b"a", {"t": "hello", "v": v, "server_id": "map01", "caps": [], "maps": []})
    net.work()
    assert net.last(b"a")["code"] == code


@pytest.mark.parametrize("kind", [None, 7, "absent"])
def test_events_without_a_string_kind_get_bad_field_and_consume_the_seq(kind):
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"
    msg = msgpack.unpackb(quests(1, 1), raw=False)
    if kind == "absent":
        del msg["kind"]
    else:
        msg["kind"] = kind
    net.frame(b"a", msg)
    net.work()
    err = net.last(b"a")
    assert (err["code"], err["field"]) == (proto.ErrorCode.BAD_FIELD, "kind")
    assert [len(b) for b in net.tick()] == [0]


@pytest.mark.parametrize("tick", ["absent", "12", None, -1, 2**63])
def test_a_heartbeat_without_an_integer_tick_gets_bad_field(tick):
    net = Net()
    assert net.hello(b"a", "map01")["t"] == "welcome"
    msg = {"t": "hb"} if tick == "absent" else {"t": "hb", "tick": tick}
    net.frame(b"a", msg)
    net.work()
    err = net.last(b"a")
    assert (err["code"], err["field"]) == (proto.ErrorCode.BAD_FIELD, "tick")


def test_frames_up_to_twice_the_limit_are_answered_and_one_byte_more_drops_the_connection():
    limit = 1 << 16
    h = Harness(BridgeConfig(**BASE, frame_bytes_max=limit))
    p = RawPeer(h.endpoint)
    try:
        assert p.hello()["t"] == "welcome"
        p.send(b"\xc4" + b"\x00" * (2 * limit - 1))  # exactly twice the limit
        err = p.recv_type("error")
        assert err["code"] == proto.ErrorCode.FRAME_TOO_LARGE
        assert str(2 * limit) in err["message"]
        p.send(b"\xc4" + b"\x00" * (2 * limit))  # one byte more: ZeroMQ drops the link
        assert p.recv_type("error", 1.0) is None  # never read, so never answered
        assert h.server.stats()["frames_in"] == 2  # hello and the answered frame only
    finally:
        p.close()
        h.stop()


# -- found by the fuzzer: each text is judged on its own bytes ---------------------------------
@pytest.mark.parametrize(("texts", "bad"), [
    ([b"ok", b"\x80stray"], [1]),              # a stray continuation starts the second
    ([b"caf\xc3", b"\xa9!"], [0, 1]),           # one character split across two events
    ([b"\xe2\x82", b"\xac"], [0, 1]),           # a 3-byte character split after 2 bytes
    ([b"\xf0\x9f\x98\x80", b"fine"], []),       # a 4-byte character whole
    ([b"end\xf0\x9f", b"x"], [0]),              # cut short, and the next is whole
])
def test_each_column_text_is_valid_utf8_on_its_own(texts, bad):
    from norn.bridge.codec import EventDecoder

    n = len(texts)
    frame = encode_columns(proto.EVENTS, 1, "npc_talk", {
        "char_id": np.full(n, 150000), "npc_id": np.arange(n, dtype=np.int64),
        "text": texts})
    view = demo_view()
    dec = EventDecoder(view.map_names, view.map_sizes).decode(proto.unpack(frame, 1 << 20))
    assert dec.invalid.tolist() == bad
    assert all(r == "not valid UTF-8" for r in dec.invalid_reasons)
