"""Malformed input never crashes the bridge: every frame gets an error or a dead letter.

Two layers: hypothesis drives the decoder in-process with arbitrary msgpack values (it may
only ever raise ``ProtocolError``), and a seeded stream of hostile frames goes through a
real socket (random bytes, truncated frames, wrong types, huge declared lengths, unknown
kinds and types, out-of-range ids, multi-frame messages), checking that each one is
answered and that the server's memory stays bounded.
"""

from __future__ import annotations

import os

import msgpack
import numpy as np
import psutil
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import protocol as proto
from bridge.codec import EventDecoder, encode_columns, encode_rows
from bridge.config import BridgeConfig
from bridge.loadgen import demo_view
from bridge.testing import Harness, RawPeer

VIEW = demo_view()
DECODER = EventDecoder(VIEW.map_names, VIEW.map_sizes, events_per_batch_max=1000)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=20), st.binary(max_size=40),
    st.sampled_from([*list(proto.WIRE_EVENT_SCHEMAS), "events", "results", "cols", "rows"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)),
    max_leaves=30)
kinds = st.sampled_from([*list(proto.WIRE_EVENT_SCHEMAS), "nope", 3, None])


def _decode(msg) -> None:
    try:
        out = DECODER.decode(msg, seq=1)
    except proto.ProtocolError:
        return
    assert out.accepted + len(out.invalid) == out.n
    for name, col in out.columns.items():
        assert len(col) == out.accepted, name


@settings(max_examples=120, deadline=None)
@given(kind=kinds, rows=st.lists(st.lists(values, max_size=7), max_size=8))
def test_decoder_survives_arbitrary_rows(kind, rows):
    _decode({"t": "events", "seq": 1, "kind": kind, "rows": rows})


@settings(max_examples=120, deadline=None)
@given(kind=kinds, n=st.integers(-2, 2000), maps=st.lists(values, max_size=4),
       cols=st.dictionaries(st.sampled_from(["char_id", "map", "x", "y", "mob_id", "text",
                                             "text_len", "npc_id", "instance_id", "quest_id"]),
                            st.one_of(st.binary(max_size=64), values), max_size=8))
def test_decoder_survives_arbitrary_columns(kind, n, maps, cols):
    _decode({"t": "events", "seq": 1, "kind": kind, "n": n, "maps": maps, "cols": cols})


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_unpack_survives_arbitrary_bytes(data):
    try:
        msg = proto.unpack(data, 1 << 16)
    except proto.ProtocolError:
        return
    assert isinstance(msg, dict) and isinstance(msg["t"], str)


def hostile_frames(rng: np.random.Generator, count: int, seq: int):
    """(bytes or parts, seq consumed?) tuples; each must be answered by one error frame."""
    good = encode_columns(proto.EVENTS, 1, "mob_kill", {
        "char_id": np.array([150000, 150001]), "mob_id": np.array([1002, 1002]),
        "instance_id": np.array([0, 0]), "map": np.array([0, 0], "<i2"),
        "x": np.array([5, 6]), "y": np.array([5, 6])}, ["prontera"])
    for i in range(count):
        k = i % 10
        if k == 0:  # random bytes (never a map with a string 't' in practice)
            yield b"\x00" + rng.bytes(int(rng.integers(0, 300))), False
        elif k == 1:  # a valid frame cut short
            yield good[: int(rng.integers(1, len(good) - 1))], False
        elif k == 2:  # huge declared lengths: bin32, str32, array32, map32
            head = [b"\xc6", b"\xdb", b"\xdd", b"\xdf"][int(rng.integers(0, 4))]
            yield head + b"\xff\xff\xff\xf0" + rng.bytes(8), False
        elif k == 3:  # wrong types in the envelope of the next batch (consumes the seq)
            msg = msgpack.unpackb(good, raw=False)
            msg["seq"] = seq
            field = ["n", "cols", "maps"][int(rng.integers(0, 3))]
            msg[field] = "oops"
            yield proto.pack(msg), True
            seq += 1
        elif k == 4:  # unknown event kind (consumes the seq)
            yield proto.pack({"t": "events", "seq": seq, "kind": f"warp{i}", "rows": []}), True
            seq += 1
        elif k == 5:  # out-of-range ids: every event invalid, error lists them
            yield encode_rows(proto.EVENTS, seq, "mob_kill", [
                [0, 1002, 0, "prontera", 1, 1], [2**32 - 1, -5, -1, "nowhere", -1, 99999]]), True
            seq += 1
        elif k == 6:  # unknown message type
            yield proto.pack({"t": f"teleport{i}", "x": 1}), False
        elif k == 7:  # not a map / no type
            yield proto.pack([1, 2, 3]) if i % 20 == 7 else proto.pack({"x": 1}), False
        elif k == 8:  # a message of several frames
            yield [good, b"\x01"], False
        else:  # bad seq values
            yield proto.pack({"t": "events", "seq": [0, -3, "7", 2**64 - 1][i % 4],
                              "kind": "mob_kill", "rows": []}), False


def test_hostile_frames_over_a_socket_are_each_answered_and_memory_stays_bounded(tmp_path):
    h = Harness(BridgeConfig(heartbeat_ms=1000, peer_timeout_ms=10_000,
                             dead_letter_memory_max=64, unacked_batches_max=4096),
                dead_letter_path=tmp_path / "dead.bin")
    p = RawPeer(h.endpoint)
    proc = psutil.Process(os.getpid())
    try:
        assert p.hello("fuzz01")["t"] == "welcome"
        rng = np.random.default_rng(20240)
        rss0 = None
        total, consumed = 0, 0
        for round_ in range(4):
            sent = 0
            for frame, uses_seq in hostile_frames(rng, 300, consumed + 1):
                if isinstance(frame, list):
                    p.send_multipart(frame)
                else:
                    p.send(frame)
                sent += 1
                consumed += uses_seq
            errors = []
            while len(errors) < sent and (m := p.recv(5.0)) is not None:
                errors += [m] if m["t"] == "error" else []
            errors += [m for m in p.drain(0.1) if m["t"] == "error"]  # no extra answers
            assert len(errors) == sent, f"round {round_}: {sent} frames, {len(errors)} errors"
            total += sent
            # the stream is still usable: the next seq is accepted and applied
            h.commit()
            if rss0 is None:
                rss0 = proc.memory_info().rss
        st = h.server.stats()
        assert st["crashed"] is None
        assert st["frames_in"] == total + 1
        assert st["dead_lettered"] >= total - total // 10  # all but some hello-less noise
        assert len(h.server.dead_letters()) <= 64  # in-memory copy is bounded
        assert p.hello("fuzz01")["next_seq"] == consumed + 1
        growth = proc.memory_info().rss - rss0
        assert growth < 64 << 20, f"RSS grew by {growth >> 20} MiB over 900 hostile frames"
    finally:
        p.close()
        h.stop()
