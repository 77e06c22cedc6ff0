"""The hello's server id at exactly its bound (64 bytes) and one past, over a real socket.

A server id becomes the input source name of everything that server sends, and sources
are bounded by ``limits.source_name_bytes_max``: an id the hello accepts must be usable all
the way to an ack, and one past the bound must be refused at the hello, naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns
from norn.engine import limits

MAX = limits.source_name_bytes_max  # 64: the wire's server_id bound is the same


def _quest(seq: int) -> bytes:
    return encode_columns(proto.EVENTS, seq, "quest_done", {
        "char_id": np.array([150000]), "quest_id": np.array([seq])})


@pytest.mark.parametrize("sid", ["a" * MAX, "m" * (MAX - 2) + "-9", "x"])
def test_server_id_at_the_bound_is_welcomed_and_its_batches_acked(harness, peer, sid):
    assert len(sid.encode()) <= MAX
    w = peer.hello(sid)
    assert w["t"] == "welcome" and w["server_id"] == sid
    peer.send(_quest(1))
    assert harness.wait_for(lambda: len(harness.inputs) == 1)
    (batch,) = harness.commit()
    assert (batch.source, batch.seq) == (sid, 1)
    assert peer.recv_type("ack")["seq"] == 1
    assert harness.server.stats()["crashed"] is None


@pytest.mark.parametrize("sid", ["a" * (MAX + 1), "m" * (MAX - 1) + "-9", ""])
def test_server_id_one_past_the_bound_is_refused_naming_the_field(harness, peer, sid):
    assert len(sid.encode()) in (MAX + 1, 0)
    err = peer.hello(sid)
    assert err["t"] == "error"
    assert (err["code"], err["field"]) == (proto.ErrorCode.BAD_FIELD, "server_id")
    assert harness.server.stats()["peers_up"] == 0


def test_server_id_of_64_characters_and_a_newline_is_refused(harness, peer):
    # 65 bytes that a regex ending in '$' (it matches before a final newline) let through:
    # welcomed, then its batches broke source_name_bytes_max inside the bridge
    sid = "x" * MAX + "\n"
    err = peer.hello(sid)
    assert err["t"] == "error" and err["field"] == "server_id"
