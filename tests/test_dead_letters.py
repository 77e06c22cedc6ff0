"""``norn bridge dead-letters list|show|replay``: inspecting a run's dead letters and
re-offering fixed ones through an admin session, validated and journaled like any input.

In process against a real ``BridgeServer`` (``bridge/testing.py``'s harness plays the
journal); the served run (a live ``norn run --serve``, its store read while the engine holds
it) is in ``tests/test_operate_e2e.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import msgpack
import pytest

from norn.bridge import protocol as proto
from norn.bridge.admin import (
    AdminSession,
    check_admin_id,
    frames_from_fix,
    frames_from_records,
    to_json,
)
from norn.bridge.cli import main as bridge_main
from norn.bridge.dead_letter import DeadLetterStore, query_dead_letters
from norn.bridge.testing import FAST, Harness, RawPeer
from norn.engine.errors import EXIT_OK, EXIT_USER_ERROR, UserError
from tests.helpers import ROOT


def _login(char_id: int, map_name: str, level: int) -> list:
    return [char_id, 1000 + char_id, map_name, 10, 12, level]


@pytest.fixture
def served(tmp_path):
    """A bridge with its dead letters in tmp/run/dead_letters.duckdb; map02 sent two bad
    logins (base_level 0) among good ones, and a malformed results frame."""
    run = tmp_path / "run"
    run.mkdir()
    h = Harness(FAST, dead_letter_path=run / "dead_letters.duckdb")
    peer = RawPeer(h.endpoint)
    try:
        welcome = peer.hello("map02", caps=["rows"])
        assert welcome["t"] == proto.WELCOME
        m = welcome["maps"][0][0]
        peer.send(proto.pack({"t": proto.EVENTS, "seq": 1, "kind": "login", "rows": [
            _login(1, m, 10), _login(2, m, 0), _login(3, m, 0), _login(4, m, 20)]}))
        assert peer.recv_type(proto.ERROR)["name"] == "invalid_events"
        peer.send(proto.pack({"t": proto.RESULTS, "seq": 2, "rows": "not rows"}))
        assert peer.recv_type(proto.ERROR) is not None
        assert h.wait_for(lambda: h.server.stats()["dead_lettered"] == 3, step=h.commit)
        yield h, run, m
    finally:
        peer.close()
        h.stop()


def test_every_rejection_is_counted_per_server_and_code(served):
    h, _, _ = served
    counts = h.server.rejections()
    assert counts[("map02", int(proto.ErrorCode.INVALID_EVENTS))] == 2
    assert sum(counts.values()) == 3


def test_list_and_show_after_the_run(served, capsys, tmp_path):
    h, run, m = served
    h.stop()  # the store is closed: read directly
    assert bridge_main(["bridge", "dead-letters", "list", str(run), "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 3 and doc["matching"] == 3
    bad = [r for r in doc["records"] if r["code_name"] == "invalid_events"]
    assert [r["event_index"] for r in bad] == [1, 2]
    assert all(r["server_id"] == "map02" and r["kind"] == "login" for r in bad)
    assert bridge_main(["bridge", "dead-letters", "list", str(run), "--server", "nobody",
                        "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["matching"] == 0
    for code in ("invalid_events", "9"):  # by name or number
        assert bridge_main(["bridge", "dead-letters", "list", str(run), "--code", code,
                            "--json"]) == EXIT_OK
        assert json.loads(capsys.readouterr().out)["matching"] == 2
    assert bridge_main(["bridge", "dead-letters", "list", str(run), "--start", "1", "--limit",
                        "1", "--json"]) == EXIT_OK
    page = json.loads(capsys.readouterr().out)
    assert page["matching"] == 2 and [r["n"] for r in page["records"]] == [1]
    assert bridge_main(["bridge", "dead-letters", "list", str(run), "--code", "nope"]
                       ) == EXIT_USER_ERROR
    # the plain table names the code and the reason
    assert bridge_main(["bridge", "dead-letters", "list", str(run)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "invalid_events" in out and "base_level" in out

    fix = tmp_path / "fix.json"
    n = bad[0]["n"]
    assert bridge_main(["bridge", "dead-letters", "show", str(run), str(n), "--export",
                        str(fix), "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["raw_decoded"] == _login(2, m, 0) and shown["raw_complete"] is True
    assert json.loads(fix.read_text()) == {"t": "events", "kind": "login",
                                           "rows": [_login(2, m, 0)]}
    # a number the store does not hold is bad input
    assert bridge_main(["bridge", "dead-letters", "show", str(run), "999"]) == EXIT_USER_ERROR


def test_frames_from_records_and_fix_files():
    recs = [
        {"n": 0, "event_index": 1, "kind": "login", "raw": msgpack.packb([1, 2, "m", 3, 4, 0]),
         "raw_bytes": 9},
        {"n": 1, "event_index": 3, "kind": "login", "raw": msgpack.packb([5, 6, "m", 3, 4, 0]),
         "raw_bytes": 9},
        {"n": 2, "event_index": 0, "kind": "npc_talk",
         "raw": msgpack.packb([7, 8, b"hello"], use_bin_type=True), "raw_bytes": 9},
        {"n": 3, "event_index": -1, "kind": None, "raw": proto.pack(
            {"t": "events", "seq": 9, "tick": 4, "kind": "login", "rows": []}), "raw_bytes": 0},
    ]
    recs[3]["raw_bytes"] = len(recs[3]["raw"])
    frames = frames_from_records(recs)
    assert frames == [
        {"t": "events", "kind": "login", "rows": [[1, 2, "m", 3, 4, 0], [5, 6, "m", 3, 4, 0]]},
        {"t": "events", "kind": "npc_talk", "rows": [[7, 8, "hello"]]},  # text as str again
        {"t": "events", "kind": "login", "rows": []},  # seq and stamp dropped
    ]
    truncated = dict(recs[3], raw_bytes=10_000)
    with pytest.raises(UserError, match="only"):
        frames_from_records([truncated])
    # fix files: bytes survive the JSON round trip; what is not a batch is refused
    frame = {"t": "events", "kind": "login", "n": 1, "cols": {"x": b"\x00\x01"}}
    assert frames_from_fix(json.loads(json.dumps(to_json(frame))), "f") == [frame]
    with pytest.raises(UserError, match="not an events or results frame"):
        frames_from_fix({"t": "hello"}, "f")
    check_admin_id("admin-ops")
    with pytest.raises(UserError, match="starts with 'admin'"):
        check_admin_id("map01")


def test_replay_goes_through_validation_and_the_journal(served):
    h, _, m = served
    stop = threading.Event()

    def journal_loop() -> None:  # the engine's side: journal what is queued, ack it
        while not stop.is_set():
            h.commit()
            stop.wait(0.005)

    t = threading.Thread(target=journal_loop, daemon=True)
    t.start()
    try:
        session = AdminSession(h.endpoint, timeout_s=20)
        # as stored: the two bad logins are refused again (and dead-lettered again, as admin)
        again = session.offer([{"t": "events", "kind": "login",
                                "rows": [_login(2, m, 0), _login(3, m, 0)]}])
        assert again.journaled and again.events_rejected == 2  # the seq is journaled, empty
        fixed = session.offer([{"t": "events", "kind": "login",
                                "rows": [_login(2, m, 12), _login(3, m, 13)]}])
        assert fixed.journaled and fixed.events_rejected == 0 and fixed.errors == []
        assert fixed.seqs == [again.seqs[-1] + 1]  # the admin source's seqs go on
    finally:
        stop.set()
        t.join(5)
    admin = [b for b in h.journal if b.source == "admin" and len(b)]
    assert len(admin) == 1 and admin[0].kind == "login"
    assert admin[0].columns["base_level"].tolist() == [12, 13]
    assert h.server.rejections()[("admin", int(proto.ErrorCode.INVALID_EVENTS))] == 2


def test_a_live_store_is_read_from_a_copy(tmp_path):
    """DuckDB lets one process hold the file for writing: the reader copies it."""
    store = DeadLetterStore(tmp_path / "dead_letters.duckdb", records_max=10, raw_bytes_max=64)
    try:
        store.add(tick=3, server_id="map01", seq=1, kind="login", event_index=0,
                  code=int(proto.ErrorCode.INVALID_EVENTS), field="x", reason="bad x",
                  raw=msgpack.packb([1]))
        store.flush()
        r = subprocess.run([sys.executable, "-m", "norn.bridge.cli", "bridge", "dead-letters",
                            "list", str(tmp_path), "--json"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["total"] == 1 and doc["records"][0]["reason"] == "bad x"
    finally:
        store.close()


def test_replay_needs_something_and_refuses_repeats(served, tmp_path, capsys):
    h, run, _ = served
    with pytest.raises(SystemExit):
        bridge_main(["bridge", "dead-letters", "replay", str(run)])  # --connect is required
    assert bridge_main(["bridge", "dead-letters", "replay", str(run), "--connect",
                        h.endpoint]) == EXIT_USER_ERROR
    (run / "dead_letters.replayed.jsonl").write_text(json.dumps({"records": [0]}) + "\n")
    h.stop()
    assert bridge_main(["bridge", "dead-letters", "replay", str(run), "0", "--connect",
                        h.endpoint]) == EXIT_USER_ERROR
    assert "--again" in capsys.readouterr().err


def test_the_file_backend_is_queried_the_same_way(tmp_path):
    store = DeadLetterStore(tmp_path / "dl.bin", records_max=10, raw_bytes_max=16)
    for i, sid in enumerate(("map01", "map02", "map01")):
        store.add(tick=i, server_id=sid, seq=i, kind="login", event_index=0, code=9,
                  field="x", reason="r", raw=b"abc")
    store.close()
    total, matching, recs = query_dead_letters(tmp_path / "dl.bin", server="map01", raw=False)
    assert (total, matching, [r["n"] for r in recs]) == (3, 2, [0, 2])
    assert all(r["raw"] is None for r in recs)
    assert query_dead_letters(tmp_path / "dl.bin", numbers=[1])[2][0]["raw"] == b"abc"


def test_the_store_counts_past_its_bound(tmp_path):
    store = DeadLetterStore(None, records_max=1, raw_bytes_max=16)
    for i in range(3):
        store.add(tick=0, server_id=None if i else "map01", seq=None, kind=None,
                  event_index=-1, code=1, field=None, reason="r", raw=b"x")
    assert store.dropped == 2  # kept one, counted the rest
    assert store.counts() == {("map01", 1): 1, ("-", 1): 2}
