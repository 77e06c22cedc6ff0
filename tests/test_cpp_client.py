"""The C++ client (``bridge/cpp``), built with the system compiler and run against Norn.

The library, its unit tests, the golden-vector tool and a small map server written against
it (``tests/driver.cpp``) are built once into ``build/cpp`` (gitignored; make's own
dependency tracking keeps reruns fast). Then:

- every golden vector decodes to the JSON in ``bridge/vectors/index.json`` and re-encodes to
  its exact bytes; the kinds table is generated from the engine's declaration;
- a scripted engine (a Python ROUTER) answers with every error code and checks the client's
  reaction to each (resend from ``expected_seq``, hold until the tick or an advancing ack,
  hello again, stop when superseded, hello backoff after a refusal), and sends repeated,
  expired and unknown actions;
- end to end against the real engine (``norn run --serve --clock fast``): two map servers,
  columns and rows, every event kind; the journal holds every event once;
- lockstep against the real engine, SIGKILLed mid-stream and resumed (``norn run --out D
  --resume --serve``): every event applied exactly once;
- a map server killed with an action in flight restarts from its executed-id store and
  never executes that action twice (the engine's own bridge, in-process);
- CURVE: the listed key gets a session, another key none.

Skipped, saying what to install, only when the C++ packages are missing (``.ci/run``
installs them, so CI never skips).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from norn.bridge import golden
from norn.bridge import protocol as proto
from norn.bridge.config import BridgeConfig
from norn.bridge.keys import read_key, write_keypair
from norn.bridge.testing import Harness
from norn.engine.actions import ActionBuffer

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "bridge" / "cpp"
BUILD = ROOT / "build" / "cpp"
PACKAGES = "g++ make pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev"


def _missing() -> str | None:
    """Why the C++ client cannot be built here (None: it can)."""
    cxx = shutil.which("g++")
    if cxx is None or shutil.which("make") is None:
        return f"no C++ compiler or make (apt-get install -y {PACKAGES})"
    probe = subprocess.run([cxx, "-std=c++17", "-E", "-x", "c++", "-"],
                           input="#include <zmq.hpp>\n#include <msgpack.hpp>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"C++ packages missing: apt-get install -y {PACKAGES}"
    return None


@pytest.fixture(scope="module")
def cpp() -> Path:
    why = _missing()
    if why is not None:
        pytest.skip(why)
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:  # one build at a time (parallel test runs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = subprocess.run(["make", "-C", str(CPP), f"BUILD={BUILD}", "-j2"],
                           capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return BUILD


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver(build: Path, endpoint: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(build / "norn_driver"), "--endpoint", endpoint, "--quiet",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _summary(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


# -- no engine ------------------------------------------------------------------------------
def test_the_kinds_table_is_generated_from_the_declaration():
    assert golden.CPP_KINDS.read_text() == golden.cpp_kinds_header(), (
        "bridge/cpp/include/norn/kinds_v1.hpp is stale: python -m norn.bridge.golden --write")


def test_golden_vectors_decode_to_the_index_and_reencode_to_their_bytes(cpp):
    index = json.loads((ROOT / "bridge" / "vectors" / "index.json").read_text())["vectors"]
    files = [str(ROOT / "bridge" / "vectors" / v["file"]) for v in index]
    r = subprocess.run([str(cpp / "norn_golden"), *files], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = {d["file"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert sorted(got) == sorted(v["file"] for v in index)
    for v in index:
        g = got[v["file"]]
        assert g["type"] == v["type"], v["name"]
        assert g["decoded"] == v["decoded"], v["name"]
        assert g["reencoded"] == v["hex"], v["name"]


def test_the_sync_vector_gives_the_rows_python_decodes(cpp):
    """The join sync vector (section 16): the rows the C++ client hands to on_sync are the
    ones the Python client's decode_sync reads, field by field (names, stock, npc_id > 2^32)."""
    from norn.bridge.codec import decode_sync

    path = ROOT / "bridge" / "vectors" / "sync.msgpack"
    r = subprocess.run([str(cpp / "norn_golden"), str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    part = decode_sync(proto.unpack(path.read_bytes(), 1 << 20))
    want = []
    for kind, cols in part.kinds.items():
        for j in range(len(next(iter(cols.values())))):
            row: dict = {"kind": kind}
            for f in proto.sync_fields(proto.WIRE_V1, kind):
                v = cols[f.name][j]
                row[f.name] = (part.maps[int(v)] if f.kind == "map" else bytes(v).decode()
                               if f.kind == "text" else float(v) if f.kind == "float" else int(v))
            want.append(row)
    assert rows == want
    assert {r["kind"] for r in rows} == {"spawn_npc", "set_price", "set_weather", "set_hazard"}
    assert rows[0]["npc_id"] == (3 << 32) | 5 and rows[0]["name"] == "Prontera Knights"


def test_unit(cpp):
    r = subprocess.run([str(cpp / "norn_unit")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


# -- a scripted engine ----------------------------------------------------------------------
class ScriptedEngine:
    """A ROUTER the test drives by hand; it records every frame with its arrival time."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.rid: bytes | None = None
        self.got: list[tuple[float, dict]] = []
        self.t0 = time.monotonic()
        self.later: list[tuple[float, bytes]] = []  # (when, frame) to send

    def now(self) -> float:
        return time.monotonic() - self.t0

    def send(self, msg: dict | bytes, delay: float = 0.0) -> None:
        data = msg if isinstance(msg, bytes) else proto.pack(msg)
        if delay:
            self.later.append((self.now() + delay, data))
        else:
            self.sock.send_multipart([self.rid, data])

    def welcome(self, acked: int, tick: int = 10, **extra) -> dict:
        w = msgpack.unpackb(proto.encode_welcome(
            server_id="map01", acked=acked, next_seq=acked + 1, credit=64, tick=tick,
            heartbeat_ms=1000, peer_timeout_ms=20_000, limits_=BridgeConfig().wire_limits(),
            maps=[("prontera", 312, 392), ("izlude", 260, 260)], reward_zeny_max=1_000_000,
            reward_amount_max=30_000), raw=False)
        w.update(extra)
        return w

    def ack(self, msg: dict, results: dict[int, list[tuple[int, int]]]) -> None:
        """An ``events`` or ``results`` frame: note each result in ``results`` (action id ->
        [(status, reason), ...]) and ack the frame."""
        if msg["t"] == "results":
            cols = msg["cols"]
            for i, st, r in zip(np.frombuffer(cols["action_id"], "<i8").tolist(),
                                np.frombuffer(cols["status"], "u1").tolist(),
                                np.frombuffer(cols["reason"], "<i2").tolist(), strict=True):
                results.setdefault(i, []).append((st, r))
        self.send(proto.encode_ack(msg["seq"], 64))

    def run(self, proc: subprocess.Popen, on_frame, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < end:
            for when, data in [x for x in self.later if x[0] <= self.now()]:
                self.later.remove((when, data))
                self.sock.send_multipart([self.rid, data])
            if self.sock.poll(5):
                rid, data = self.sock.recv_multipart()
                self.rid = rid
                msg = msgpack.unpackb(data, raw=False)
                self.got.append((self.now(), msg))
                on_frame(msg)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _error(code: proto.ErrorCode, seq: int | None, expected: int | None = None, **kw) -> bytes:
    return proto.encode_error(code, f"scripted {code.name.lower()}", seq=seq,
                              expected_seq=expected, **kw)


def test_every_error_code_gets_its_reaction(cpp):
    """The scripted engine plays the real one's sequence rules (a frame out of order is
    discarded, its gap reported once) and refuses each seq below once, in order, with its
    code; consumed codes accept the batch all the same."""
    E = proto.ErrorCode
    consumed = {3: E.BAD_FIELD, 5: E.INVALID_EVENTS, 7: E.UNKNOWN_KIND, 9: E.BATCH_TOO_LARGE,
                11: E.TICK_ORDER}
    refused = {4: E.SEQ_GAP, 6: E.WINDOW_EXCEEDED, 8: E.TICK_AHEAD, 10: E.OVERLOADED,
               12: E.MALFORMED, 13: E.UNKNOWN_TYPE, 14: E.FRAME_TOO_LARGE, 16: E.HELLO_REQUIRED}
    eng = ScriptedEngine()
    state = {"acked": 0, "held": False, "gap": 0, "superseded_at": 1e9}
    scripted: set[int] = set()
    consumed_at: dict[int, float] = {}

    def accept(seq: int) -> None:
        state["acked"] = seq
        if seq == 9:  # hold the ack of 9 until overloaded at 10, then advance it
            state["held"] = True
            return
        eng.send(proto.encode_ack(seq, 64))
        if seq == 18:  # another connection took the server id over
            state["superseded_at"] = eng.now()
            eng.send(_error(E.SUPERSEDED, None))

    def on(msg: dict) -> None:
        t = msg["t"]
        if t == "hello":
            eng.send(eng.welcome(state["acked"]))
            return
        if t != "events":
            return
        seq, expected = msg["seq"], state["acked"] + 1
        if seq < expected:  # a duplicate: discarded, acked again
            return
        if seq > expected:  # out of order: discarded; the gap is reported once
            if state["gap"] != expected:
                state["gap"] = expected
                eng.send(_error(E.SEQ_GAP, seq, expected))
            return
        state["gap"] = 0
        if seq in refused and seq not in scripted:
            scripted.add(seq)
            code = refused[seq]
            eng.send(_error(code, seq, seq if code in (E.SEQ_GAP, E.WINDOW_EXCEEDED,
                                                       E.TICK_AHEAD) else None))
            if code == E.TICK_AHEAD:  # the engine's tick moves on 0.3 s later
                eng.send(proto.encode_server_hb(11, state["acked"]), delay=0.3)
            if code == E.OVERLOADED and state["held"]:
                state["held"] = False
                eng.send(proto.encode_ack(9, 64), delay=0.3)
            return
        if seq in consumed and seq not in scripted:
            scripted.add(seq)
            consumed_at[seq] = eng.now()
            eng.send(_error(consumed[seq], seq, invalid=1 if seq == 5 else 0,
                            events=[[0, "quest_id", "scripted"]] if seq == 5 else None))
        accept(seq)

    proc = _driver(cpp, eng.endpoint, "--mode", "stream", "--duration-s", "4", "--step-ms",
                   "30", "--batch-events", "1", "--batch-ms", "0", "--retransmit-ms", "2000",
                   "--drain-timeout-s", "1")
    try:
        eng.run(proc, on)
        out = _summary(proc)
    finally:
        with contextlib.suppress(Exception):
            proc.kill()
        eng.close()
    st = out["stats"]
    by_code = {int(k): v for k, v in st["errors_by_code"].items()}
    assert by_code.pop(int(E.SEQ_GAP)) >= 1  # scripted once, and the gaps after refusals
    assert by_code == {int(c): 1 for c in [*consumed.values(), *refused.values(), E.SUPERSEDED]
                       if c != E.SEQ_GAP}
    times = {}
    for t, m in eng.got:
        if m["t"] == "events":
            times.setdefault(m["seq"], []).append(t)
    for seq in consumed:  # consumed: never sent again after the error
        assert [t for t in times[seq] if t > consumed_at[seq]] == [], seq
    # (upper bounds well below the 2 s retransmission timer, loose for a loaded machine)
    for seq in (4, 6):  # seq_gap, window_exceeded: resent at once from expected_seq
        assert len(times[seq]) >= 2 and times[seq][1] - times[seq][0] < 1.0, (seq, times[seq])
    # tick_ahead: held until the hb with a later tick (0.3 s), then resent
    assert 0.25 < times[8][1] - times[8][0] < 1.7, times[8]
    # overloaded: held until an ack advanced (0.3 s), then resent
    assert 0.25 < times[10][1] - times[10][0] < 1.7, times[10]
    # malformed, unknown_type, frame_too_large: not consumed, resent (from the gap's
    # expected_seq, or by the retransmission timer)
    for seq in (12, 13, 14):
        assert len(times[seq]) >= 2, seq
    # hello_required: a new hello, then 16 again
    hellos = [t for t, m in eng.got if m["t"] == "hello"]
    assert len(hellos) == 2 and any(t > hellos[1] for t in times[16])
    # superseded after 18: the client stops sending
    assert out["stats"]["superseded"] == 1
    assert [t for t, m in eng.got if t > state["superseded_at"] + 0.2] == []
    assert st["events_rejected"] == 1


def test_a_refused_hello_is_retried_with_backoff(cpp):
    E = proto.ErrorCode
    eng = ScriptedEngine()
    answers = [E.TOO_MANY_SERVERS, E.UNKNOWN_MAP, E.VERSION_UNSUPPORTED]

    def on(msg: dict) -> None:
        if msg["t"] == "hello":
            if answers:
                eng.send(_error(answers.pop(0), None))
            else:
                eng.send(eng.welcome(0))
        elif msg["t"] == "events":
            eng.send(proto.encode_ack(msg["seq"], 64))

    proc = _driver(cpp, eng.endpoint, "--mode", "stream", "--duration-s", "0.3",
                   "--hello-retry-ms", "200", "--batch-ms", "0", "--drain-timeout-s", "2")
    try:
        eng.run(proc, on)
        out = _summary(proc)
    finally:
        eng.close()
    hellos = [t for t, m in eng.got if m["t"] == "hello"]
    assert len(hellos) == 4
    gaps = np.diff(hellos)
    # 0.2, 0.4, 0.8 s: each wait about twice the last (loose: two shared cores, under load)
    assert gaps[0] > 0.15 and gaps[1] > 1.4 * gaps[0] and gaps[2] > 1.4 * gaps[1], gaps
    assert {int(k) for k in out["stats"]["errors_by_code"]} == {5, 12, 14}
    assert out["all_acked"]


def _reward_frame(tick: int, ids: list[int], expires: int | None = None) -> dict:
    n = len(ids)
    frame = msgpack.unpackb(proto.pack({
        "t": "actions", "tick": tick, "expires_tick": expires if expires is not None else tick + 50,
        "maps": [], "kinds": {"give_reward": {
            "n": n, "action_id": np.array(ids, "<i8").tobytes(),
            "char_id": np.full(n, 150000, "<u4").tobytes(),
            "item_id": np.full(n, 501, "<i4").tobytes(),
            "amount": np.full(n, 2, "<i4").tobytes(), "zeny": np.full(n, 100, "<i4").tobytes()}}}),
        raw=False)
    return frame


def test_repeated_expired_and_unknown_actions(cpp):
    eng = ScriptedEngine()
    a, b, c, d = (20 << 24), (20 << 24) + 1, (20 << 24) + 2, (3 << 24)
    results: dict[int, list[tuple[int, int]]] = {}

    def on(msg: dict) -> None:
        if msg["t"] == "hello":
            eng.send(eng.welcome(0, tick=20))
            frame = _reward_frame(20, [a, b])
            frame["kinds"]["teleport_everyone"] = {
                "n": 1, "action_id": np.array([c], "<i8").tobytes(), "radius": b"\x05\x00"}
            frame["future_key"] = [1, 2]
            eng.send(frame, delay=0.1)
            eng.send(frame, delay=0.3)  # a re-send: nothing executed or answered twice
            eng.send(_reward_frame(3, [d], expires=10), delay=0.3)  # expired (tick 20 > 10)
        elif msg["t"] in ("events", "results"):
            eng.ack(msg, results)

    proc = _driver(cpp, eng.endpoint, "--mode", "stream", "--duration-s", "1", "--batch-ms",
                   "0", "--drain-timeout-s", "2")
    try:
        eng.run(proc, on)
        out = _summary(proc)
    finally:
        eng.close()
    R = proto.ResultReason
    assert results == {a: [(0, 0)], b: [(0, 0)], c: [(1, int(R.UNSUPPORTED))],
                       d: [(1, int(R.EXPIRED))]}
    assert out["executed_ids"] == [a, b]
    st = out["stats"]
    assert st["actions_duplicate"] == 3 and st["actions_unsupported"] == 1
    assert st["actions_expired"] == 1 and st["actions_received"] == 7


def test_the_join_sync_in_parts_replaces_the_mirror_and_reflects_older_actions(cpp):
    """A scripted engine that announces ``sync``: the driver's hello asks for it; a sync cut
    short (part 0 of 2 only) is dropped; the next one, in two parts, is applied whole; then
    an NPC it showed moves and talks (done), an NPC it never showed fails ``not_here``, and
    a ``spawn_npc`` of the sync's own tick (a re-sent frame) is answered done unexecuted,
    while a reward of that tick (not a mirrored kind) is executed; so is a line of that
    tick by an NPC the sync shows, while one by an NPC it does not show (gone by then) is
    answered done unexecuted, never ``not_here``."""
    from norn.bridge.codec import encode_actions, encode_sync

    eng = ScriptedEngine()
    names = ["prontera", "izlude"]
    a_npc, b_npc, c_npc, d_npc = (2 << 32) | 1, 5, 6, 9
    npc = lambda ids, m, x, y: {  # noqa: E731
        "npc_id": np.array(ids, np.int64), "map_id": np.array(m, np.int16),
        "x": np.array(x, np.int16), "y": np.array(y, np.int16),
        "sprite": np.full(len(ids), 105, np.int16),
        "name": np.array([b"Prontera Knights"] * len(ids), dtype="S24")}
    cut = encode_sync(19, {"spawn_npc": npc([c_npc, d_npc], [0, 0], [3, 4], [3, 4])}, names,
                      rows_per_frame=1)
    whole = encode_sync(20, {
        "spawn_npc": npc([a_npc, b_npc], [0, 1], [10, 20], [10, 20]),
        "set_weather": {"map_id": np.array([1], np.int16), "weather": np.array([4], np.int16),
                        "on": np.ones(1, np.uint8)}}, names, rows_per_frame=2)
    assert len(cut) == 2 and len(whole) == 2
    t20, t21 = 20 << 24, 21 << 24
    late = encode_actions(21, 70, {
        "move_npc": {"action_id": np.array([t21, t21 + 1], np.int64),
                     "npc_id": np.array([a_npc, c_npc], np.int64),
                     "map_id": np.array([0, 0], np.int16), "x": np.array([11, 12], np.int16),
                     "y": np.array([11, 12], np.int16)},
        "npc_say": {"action_id": np.array([t21 + 2], np.int64),
                    "npc_id": np.array([b_npc], np.int64),
                    "text": np.array([b"Snow again!"], dtype="S255")}}, names)
    resent = encode_actions(20, 70, {
        "spawn_npc": {k: v[:1] for k, v in npc([d_npc], [0], [5], [5]).items()
                      if k != "name"} | {"action_id": np.array([t20], np.int64)},
        "npc_say": {"action_id": np.array([t20 + 2, t20 + 3], np.int64),
                    "npc_id": np.array([c_npc, a_npc], np.int64),
                    "text": np.array([b"Farewell.", b"Welcome!"], dtype="S255")},
        "give_reward": {"action_id": np.array([t20 + 1], np.int64),
                        "char_id": np.array([150000], np.uint32),
                        "item_id": np.array([501], np.int32), "amount": np.array([1], np.int32),
                        "zeny": np.array([10], np.int32)}}, names)
    results: dict[int, list[tuple[int, int]]] = {}

    def on(msg: dict) -> None:
        if msg["t"] == "hello":
            assert proto.SYNC_CAP in msg["caps"]
            w = eng.welcome(0, tick=21)
            w["caps"] = [*w["caps"], proto.SYNC_CAP]
            eng.send(w)
            for frame in (cut[0], *whole, resent, late):  # in order, like the engine's
                eng.send(frame, delay=0.1)
        elif msg["t"] in ("events", "results"):
            eng.ack(msg, results)

    proc = _driver(cpp, eng.endpoint, "--mode", "stream", "--duration-s", "1", "--batch-ms",
                   "0", "--drain-timeout-s", "2")
    try:
        eng.run(proc, on)
        out = _summary(proc)
    finally:
        eng.close()
    R = proto.ResultReason
    assert results == {t21: [(0, 0)], t21 + 1: [(1, int(R.NOT_HERE))], t21 + 2: [(0, 0)],
                       t20: [(0, 0)], t20 + 1: [(0, 0)], t20 + 2: [(0, 0)], t20 + 3: [(0, 0)]}
    assert out["syncs"] == 1 and out["sync_rows"] == 3 and out["sync_invalid"] == {}
    assert out["npcs_known"] == 2  # a and b: c and d came only in the sync cut short
    assert out["failed_by_kind"] == {"move_npc/not_here": 1}
    # the reflected spawn and the line of the NPC gone by the sync's tick are not run
    assert out["executed_ids"] == [t20 + 1, t20 + 3, t21, t21 + 2]
    st = out["stats"]
    assert st["syncs"] == 1 and st["sync_rows"] == 3 and st["syncs_dropped"] == 1
    assert st["actions_reflected"] == 2


def test_a_frame_is_handed_to_the_executor_in_action_id_order_across_kinds(cpp):
    """The wire groups a frame by kind (despawn_npc before npc_say); drain() hands it in
    action_id order, the order the world emitted it (PROTOCOL.md section 8): an NPC that
    says a line (id t) and is despawned (id t + 1) in the same tick speaks, then leaves
    (no ``not_here``); a move after its despawn fails ``not_here``; an NPC spawned and
    despawned in one tick is gone."""
    from norn.bridge.codec import encode_actions

    eng = ScriptedEngine()
    names = ["prontera", "izlude"]
    a_npc, b_npc = 7, 8
    t20, t21 = 20 << 24, 21 << 24
    one = lambda v, dt: np.array(v, dt)  # noqa: E731
    shown = encode_actions(20, 70, {"spawn_npc": {
        "action_id": one([t20], np.int64), "npc_id": one([a_npc], np.int64),
        "map_id": one([0], np.int16), "x": one([10], np.int16), "y": one([10], np.int16),
        "sprite": one([105], np.int16)}}, names)
    same_tick = encode_actions(21, 70, {
        "spawn_npc": {"action_id": one([t21 + 3], np.int64), "npc_id": one([b_npc], np.int64),
                      "map_id": one([1], np.int16), "x": one([5], np.int16),
                      "y": one([5], np.int16), "sprite": one([105], np.int16)},
        "despawn_npc": {"action_id": one([t21 + 1, t21 + 4], np.int64),
                        "npc_id": one([a_npc, b_npc], np.int64)},
        "move_npc": {"action_id": one([t21 + 2], np.int64), "npc_id": one([a_npc], np.int64),
                     "map_id": one([0], np.int16), "x": one([11], np.int16),
                     "y": one([11], np.int16)},
        "npc_say": {"action_id": one([t21], np.int64), "npc_id": one([a_npc], np.int64),
                    "text": np.array([b"Farewell!"], dtype="S255")}}, names)
    kinds = list(msgpack.unpackb(same_tick, raw=False)["kinds"])
    assert kinds.index("despawn_npc") < kinds.index("npc_say")  # the wire's kind order
    results: dict[int, list[tuple[int, int]]] = {}

    def on(msg: dict) -> None:
        if msg["t"] == "hello":
            eng.send(eng.welcome(0, tick=21))
            eng.send(shown, delay=0.1)
            eng.send(same_tick, delay=0.2)
        elif msg["t"] in ("events", "results"):
            eng.ack(msg, results)

    proc = _driver(cpp, eng.endpoint, "--mode", "stream", "--duration-s", "1", "--batch-ms",
                   "0", "--drain-timeout-s", "2", "--no-sync")
    try:
        eng.run(proc, on)
        out = _summary(proc)
    finally:
        eng.close()
    R = proto.ResultReason
    assert results == {t20: [(0, 0)], t21: [(0, 0)], t21 + 1: [(0, 0)],
                       t21 + 2: [(1, int(R.NOT_HERE))], t21 + 3: [(0, 0)], t21 + 4: [(0, 0)]}
    assert out["executed_order"] == [t20, t21, t21 + 1, t21 + 3, t21 + 4]
    assert out["out_of_order"] == 0
    assert out["failed_by_kind"] == {"move_npc/not_here": 1} and out["npcs_known"] == 0


# -- the real engine --------------------------------------------------------------------------
def _norn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "norn.engine.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _input_counts(run_dir: Path, source: str | None = None) -> dict[str, int]:
    from norn.replays.reader import open_run

    counts: dict[str, int] = {}
    for rec in open_run(run_dir).ticks():
        for batch in rec.inputs:
            if source is None or batch.source == source:
                counts[batch.kind] = counts.get(batch.kind, 0) + len(batch)
    return counts


def _last_tick(run_dir: Path) -> int:
    try:
        from norn.replays.reader import open_run

        return open_run(run_dir).last_tick
    except Exception:
        return 0


@pytest.mark.slow
def test_end_to_end_against_the_engine_columns_and_rows(cpp, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    engine = _norn("run", "--serve", ep, "--out", str(tmp_path / "run"), "--ticks", "100000",
                   "--clock", "fast", "--json")
    try:
        # the engine may compile kernels before it binds (a cold cache, a loaded machine)
        wait = ("--connect-timeout-s", "120")
        cols = _driver(cpp, ep, "--server-id", "map01", "--steps", "30", "--players", "40",
                       "--seed", "3", *wait)
        rows = _driver(cpp, ep, "--server-id", "map02", "--rows", "--steps", "30", "--players",
                       "40", "--seed", "4", "--maps", "prontera,izlude", *wait)
        a, b = _summary(cols, 180), _summary(rows, 180)
    finally:
        engine.send_signal(signal.SIGTERM)
        _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err[-3000:]
    for s in (a, b):
        assert s["all_acked"] and s["refused"] == 0
        st = s["stats"]
        assert st["events_rejected"] == 0 and st["errors"] == 0 and st["events_invalid"] == 0
        assert st["actions_received"] > 0 and st["actions_executed"] > 0
        assert set(s["generated_by_kind"]) == set(proto.WIRE_EVENT_SCHEMAS)  # all 13 kinds
    for sid, s in (("map01", a), ("map02", b)):
        counts = _input_counts(tmp_path / "run", sid)
        results = counts.pop("action_result", 0)
        assert counts == s["generated_by_kind"]  # every event applied exactly once
        assert s["stats"]["results_acked"] <= results <= s["stats"]["results_queued"]


@pytest.mark.slow
def test_a_driver_joining_a_running_engine_mirrors_its_npcs(cpp, tmp_path):
    """The join sync end to end (issue 14): the engine has ticked a while (its NPCs exist,
    spawned before any map server came) when the C++ driver joins. Without the sync it fails
    NPC moves not_here (it was never shown those NPCs); with it (the default) it gets the
    roster first and no NPC action fails, while actions the sync already reflects are
    answered done unexecuted."""
    ep = f"tcp://127.0.0.1:{_free_port()}"
    run = tmp_path / "run"
    engine = _norn("run", "--serve", ep, "--clock", "realtime", "--tick-ms", "50", "--ticks",
                   "100000", "--out", str(run), "--json")
    try:
        deadline = time.monotonic() + 240
        while _last_tick(run) < 30:
            assert engine.poll() is None, engine.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the engine never started ticking"
            time.sleep(0.1)
        common = ("--steps", "50", "--step-ms", "50", "--players", "40", "--seed", "7",
                  "--connect-timeout-s", "60")
        blind = _summary(_driver(cpp, ep, "--server-id", "blind", "--no-sync", *common), 120)
        synced = _summary(_driver(cpp, ep, "--server-id", "map01", *common), 120)
    finally:
        engine.send_signal(signal.SIGTERM)
        _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err[-3000:]
    npc_kinds = ("spawn_npc", "move_npc", "despawn_npc", "npc_say")
    assert blind["syncs"] == 0 and blind["stats"]["actions_reflected"] == 0
    assert blind["failed_by_kind"].get("move_npc/not_here", 0) > 0, blind["failed_by_kind"]
    s = synced
    assert s["all_acked"] and s["stats"]["errors"] == 0 and s["stats"]["events_rejected"] == 0
    assert s["syncs"] == 1 and s["sync_rows"] > 100 and s["sync_invalid"] == {}, s
    assert s["npcs_known"] > 0 and s["stats"]["syncs_dropped"] == 0
    npc_failed = {k: n for k, n in s["failed_by_kind"].items() if k.split("/")[0] in npc_kinds}
    assert npc_failed == {}, s["failed_by_kind"]
    assert not [k for k in s["failed_by_kind"] if k.endswith(("unknown_map", "out_of_bounds"))]
    assert s["executed_by_kind"].get("move_npc", 0) > 0, s["executed_by_kind"]
    # the recent ticks a joining server is sent include actions the sync already shows
    assert s["stats"]["actions_reflected"] > 0


def _lockstep_driver(cpp: Path, ep: str, step_ms: int) -> subprocess.Popen:
    return _driver(cpp, ep, "--mode", "lockstep", "--steps", "40", "--players", "40",
                   "--step-ms", str(step_ms), "--seed", "5", "--connect-timeout-s", "60",
                   "--drain-timeout-s", "60")


@pytest.mark.slow
def test_lockstep_with_the_engine_killed_and_resumed(cpp, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    run = tmp_path / "run"
    args = ["run", "--serve", ep, "--lockstep-server", "map01", "--out", str(run), "--ticks",
            "60", "--clock", "fast", "--snapshot-every", "10", "--json"]
    engine = _norn(*args)
    drv = _lockstep_driver(cpp, ep, 20)
    resumed = None
    try:
        deadline = time.monotonic() + 90
        while _last_tick(run) < 12:
            assert time.monotonic() < deadline and drv.poll() is None, "the stream never started"
            time.sleep(0.02)
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        killed_at = _last_tick(run)
        assert killed_at < 40, "killed too late to test anything"
        resumed = _norn("run", "--out", str(run), "--resume", "--serve", ep, "--json")
        s = _summary(drv, 120)
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err[-3000:]
    finally:
        for p in (engine, drv, resumed):
            if p is not None and p.poll() is None:
                p.kill()
    assert s["all_acked"] and not s["timed_out"] and s["stats"]["reconnects"] >= 1
    assert s["first_tick"] == 1 and s["unexecuted"] >= 0
    counts = _input_counts(run)
    results = counts.pop("action_result", 0)
    assert counts == s["generated_by_kind"]  # every event applied once, across the kill
    assert results == s["stats"]["results_acked"]
    assert json.loads(out)["last_tick"] == 60


# -- a map server restarted with an action in flight ------------------------------------------
def _rewards(tick: int, n: int):
    buf = ActionBuffer()
    buf.add("give_reward", char_id=np.full(n, 150000, np.uint32),
            item_id=np.full(n, 501, np.int32), amount=np.full(n, 2, np.int32),
            zeny=np.full(n, 100, np.int32))
    return buf.take(tick)


def test_a_restarted_map_server_never_executes_an_action_twice(cpp, tmp_path):
    store = tmp_path / "executed.log"
    h = Harness(BridgeConfig(heartbeat_ms=100, peer_timeout_ms=3000))
    first = _driver(cpp, h.endpoint, "--mode", "stream", "--duration-s", "20", "--store",
                    str(store), "--crash-after-execute", "2", "--batch-ms", "0")
    try:
        assert h.wait_for(lambda: h.server.stats()["peers_up"] == 1, 20, step=h.commit)
        h.emit(_rewards(5, 3))  # three rewards for the same character, in one frame
        first.wait(20)
        assert first.returncode == -signal.SIGKILL  # killed after storing the 2nd id
        stored = [int(line.split()[0]) for line in store.read_text().splitlines()]
        ids = [(5 << 24) + i for i in range(3)]
        assert stored == ids[:2]
        assert h.server.stats()["results_received"] == 0  # nothing answered: in flight

        second = _driver(cpp, h.endpoint, "--mode", "stream", "--duration-s", "1.5",
                         "--store", str(store), "--batch-ms", "0")
        deadline = time.monotonic() + 30
        while second.poll() is None and time.monotonic() < deadline:
            h.commit()
            time.sleep(0.01)
        s = _summary(second)
        h.wait_for(lambda: h.server.stats()["results_received"] >= 3, 5, step=h.commit)
        h.commit()
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
        h.stop()
    assert s["executed_ids"] == [ids[2]]  # only the one never executed
    assert s["stats"]["actions_reanswered"] == 2  # the two stored ones answered again, once
    assert [int(x.split()[0]) for x in store.read_text().splitlines()] == ids  # no id twice
    results = [b for b in h.journal if b.kind == "action_result"]
    got = {}
    for batch in results:
        for i, st in zip(batch.columns["action_id"].tolist(), batch.columns["status"].tolist(),
                         strict=True):
            got.setdefault(i, []).append(st)
    assert got == {i: [0] for i in ids}


def test_curve_admits_the_listed_key_only(cpp, tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    write_keypair(keys, "engine")
    pub, _ = write_keypair(keys, "map01")
    write_keypair(keys, "intruder")
    (allowed / "map01.public").write_bytes(pub.read_bytes())
    h = Harness(BridgeConfig(curve_secret_key_file=keys / "engine.secret",
                             curve_allowed_keys_dir=allowed, heartbeat_ms=100))

    def driver(name: str, timeout: str) -> subprocess.Popen:
        return _driver(cpp, h.endpoint, "--mode", "stream", "--duration-s", "0.3",
                       "--batch-ms", "0", "--connect-timeout-s", timeout, "--drain-timeout-s",
                       "5", "--curve-server-key", read_key(keys / "engine.public").decode(),
                       "--curve-public-key", read_key(keys / f"{name}.public").decode(),
                       "--curve-secret-key", read_key(keys / f"{name}.secret").decode())

    try:
        ok = driver("map01", "10")
        while ok.poll() is None:
            h.commit()
            time.sleep(0.01)
        s = _summary(ok)
        intruder = driver("intruder", "1.5")
        out, _ = intruder.communicate(timeout=30)
    finally:
        h.stop()
    assert s["all_acked"] and s["stats"]["events_acked"] >= 1
    assert intruder.returncode == 3 and "no welcome" in out
