"""The simulated map server, the CLI, loadgen smoke tests and a SIGKILL of the engine."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.cli import main as bridge_main
from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import ActionsFrame, EventDecoder, encode_columns
from norn.bridge.config import BridgeConfig
from norn.bridge.loadgen import MiniEngine, journal_ticks, measure_ingest, measure_round_trip
from norn.bridge.sim_server import ACCOUNT_ID_BASE, CHAR_ID_BASE, SIM_MAPS, SimWorld
from norn.engine import clock

ROOT = Path(__file__).resolve().parents[1]


def run_steps(world: SimWorld, steps: int) -> list[tuple[str, dict]]:
    out = []
    for s in range(steps):
        out += world.step(s)
    return out + world.logout_all()


# -- the simulated world ---------------------------------------------------------------------------
def test_sim_stream_is_deterministic_from_its_seed():
    a, b, c = SimWorld(300, 7), SimWorld(300, 7), SimWorld(300, 8)
    run_steps(a, 40), run_steps(b, 40), run_steps(c, 40)
    assert a.digest.hexdigest() == b.digest.hexdigest()
    assert a.generated == b.generated
    assert a.digest.hexdigest() != c.digest.hexdigest()
    kinds = set(a.generated)
    assert {"login", "logout", "player_move", "mob_kill", "map_change", "npc_talk", "trade",
            "vending_purchase", "npc_shop", "quest_done", "level_up",
            "map_snapshot"} <= kinds


def test_sim_events_are_all_valid_and_use_rathena_ids():
    world = SimWorld(400, 3)
    dec = EventDecoder([n for n, _, _ in SIM_MAPS], [(w, h) for _, w, h in SIM_MAPS])
    names = [n for n, _, _ in SIM_MAPS]
    for kind, cols in run_steps(world, 30):
        msg = proto.unpack(encode_columns(proto.EVENTS, 1, kind, cols, names), 1 << 24)
        out = dec.decode(msg)
        assert len(out.invalid) == 0, (kind, out.invalid_reasons[:3])
        if "char_id" in out.columns:
            c = out.columns["char_id"]
            assert ((c >= CHAR_ID_BASE) & (c < CHAR_ID_BASE + 400)).all()
        if "account_id" in out.columns:
            a = out.columns["account_id"]
            assert ((a >= ACCOUNT_ID_BASE) & (a < ACCOUNT_ID_BASE + 400)).all()


def frame(kind: str, maps: list[str], **cols) -> ActionsFrame:
    n = len(next(iter(cols.values())))
    cols = {"action_id": np.arange(n, dtype=np.int64), **{k: np.asarray(v) for k, v in
                                                          cols.items()}}
    return ActionsFrame(1, 50, maps, {kind: cols})


def test_sim_executes_actions_with_rathena_validation():
    w = SimWorld(3, 1)
    w.step(0)
    w.online[:] = [True, True, False]
    w.zeny[1] = 2**31 - 10
    R = proto.ResultReason
    _, status, reason = w.execute(frame(
        "give_reward", [], char_id=np.array([150000, 150000, 150001, 150002, 150000, 999]),
        item_id=np.array([501, 501, 0, 501, 501, 501]),
        amount=np.array([30000, 30001, 0, 1, 1, 1]),
        zeny=np.array([10, 0, 100, 0, 2_000_000, 0])))
    assert reason.tolist() == [R.OK, R.REWARD_CAP, R.ZENY_OVERFLOW, R.NOT_HERE, R.REWARD_CAP,
                               R.NOT_HERE]
    assert status.tolist() == [0, 1, 1, 1, 1, 1]
    assert w.zeny[0] == 10 and w.items_received[0] == 30000
    _, _, reason = w.execute(frame(
        "spawn_npc", ["prontera", "atlantis"], npc_id=np.array([1, 2, 3]),
        map=np.array([0, 1, 0], "i2"), x=np.array([311, 1, 312], "i2"),
        y=np.array([391, 1, 0], "i2"), sprite=np.array([1, 1, 1], "i2")))
    assert reason.tolist() == [R.OK, R.UNKNOWN_MAP, R.OUT_OF_BOUNDS]
    _, _, reason = w.execute(frame("despawn_npc", [], npc_id=np.array([1, 1, 2])))
    assert reason.tolist() == [R.OK, R.NOT_HERE, R.NOT_HERE]
    _, _, reason = w.execute(frame("broadcast", ["izlude", "atlantis"],
                                   map=np.array([-1, 0, 1], "i2"),
                                   text=np.array([b"a", b"b", b"c"], "S255")))
    assert reason.tolist() == [R.OK, R.OK, R.UNKNOWN_MAP]


# -- CLI and the reference client against a stand-in engine ----------------------------------------
def test_sim_server_cli_against_a_serving_engine(capsys):
    engine = MiniEngine("tcp://127.0.0.1:0", tick_ms=20, keep_batches=True).start()
    try:
        rc = bridge_main(["sim-server", "--connect", engine.endpoint, "--players", "300",
                          "--seed", "5", "--steps", "30", "--step-ms", "10",
                          "--server-id", "map07", "--json"])
        out = json.loads(capsys.readouterr().out)
    finally:
        engine.stop()
    assert rc == 0
    assert out["all_acked"] and out["events_acked"] == out["events_generated"] > 0
    assert out["events_rejected"] == 0 and out["reconnects"] == 0
    assert out["actions_received"] > 0
    assert out["actions_executed"] + out["actions_failed"] == out["actions_received"]
    assert out["results_acked"] == out["actions_received"]
    # exactly once: what the engine applied equals what the simulator generated
    applied = {k: v for k, v in engine.applied.items() if k != "action_result"}
    assert applied == out["generated_by_kind"]
    assert engine.applied["action_result"] == out["actions_received"]
    # the simulator hosts the maps both sides know, at the smaller of the two sizes
    from norn.bridge.loadgen import TEST_MAPS

    engine_sizes = {n: (w, h) for n, w, h in TEST_MAPS}
    shared = [(n, min(w, engine_sizes[n][0]), min(h, engine_sizes[n][1]))
              for n, w, h in SIM_MAPS if n in engine_sizes]
    again = SimWorld(300, 5, shared)
    run_steps(again, 30)
    assert again.digest.hexdigest() == out["stream_digest"]


def test_sim_server_without_an_engine_fails_cleanly(capsys):
    rc = bridge_main(["sim-server", "--connect", "tcp://127.0.0.1:9", "--steps", "1",
                      "--connect-timeout-s", "0.3"])
    assert rc == 3
    assert "no welcome" in capsys.readouterr().err


def test_keygen_cli_writes_a_keypair(tmp_path, capsys):
    assert bridge_main(["bridge", "keygen", "--out", str(tmp_path), "--name", "map01"]) == 0
    pub, sec = tmp_path / "map01.public", tmp_path / "map01.secret"
    assert len(pub.read_text().strip()) == 40 and len(sec.read_text().strip()) == 40
    assert oct(sec.stat().st_mode & 0o777) == "0o600"
    assert bridge_main(["bridge", "keygen", "--out", str(tmp_path), "--name", "map01"]) == 2


# -- loadgen smoke (tiny sizes; benchmarks run the real ones) --------------------------------------
@pytest.mark.parametrize("columnar", [True, False])
def test_measure_ingest_smoke(columnar):
    r = measure_ingest(columnar, events=20_000, batch_events=4096)
    assert r["events"] == 20_000 == r["events_acked"] == r["server"]["events_accepted"]
    assert r["batches"] == 5  # 4 full batches of 4096 and one of 3616
    assert r["server"]["events_rejected"] == r["server"]["duplicates_discarded"] == 0
    # the rate is the events over the measured seconds (reported rounded to 0.1 ms)
    s = r["seconds"]
    assert s > 0
    assert 20_000 / (s + 5e-5) - 1 <= r["events_per_s"] <= 20_000 / max(s - 5e-5, 1e-9) + 1


def test_measure_round_trip_smoke():
    r = measure_round_trip(ticks=6, tick_ms=50, events_per_tick=2)
    assert r["received"] == r["events"] == 12 and r["lost"] == 0
    assert r["unanswered"] == r["unsent"] == r["pending"] == r["expired"] == 0
    assert r["ticks_per_s"] > 0
    # an action comes back after its event left (a sign or pairing error shows here), and
    # the goal is one tick plus 5 ms, met exactly when the p99 is within it
    assert r["p50_ms"] > 0
    assert r["goal_p99_ms"] == 55
    assert (r["goal_met"] == (r["p99_ms"] <= r["goal_p99_ms"])
            or abs(r["p99_ms"] - r["goal_p99_ms"]) <= 0.0005)  # p99_ms is rounded to 1 us


def test_round_trip_probe_loses_nothing_while_it_answers_a_worlds_actions():
    """Issue 16: through the real world the probe "lost 114 of 150 events". Its client got
    every action of the world and, batching one event a batch, sent each result as a batch
    of its own: thousands a tick against a credit of 64, and the quests waited behind them
    in the client, never reaching the engine. Nothing was lost in the engine; now the
    results go one batch per poll and every quest comes back."""
    engine = MiniEngine("tcp://127.0.0.1:0", tick_ms=50, moves=300,
                        config=BridgeConfig(heartbeat_ms=200, peer_timeout_ms=2000))
    r = measure_round_trip(ticks=8, tick_ms=50, events_per_tick=3, engine=engine)
    assert r["received"] == r["events"] == 24 and r["lost"] == r["unsent"] == 0
    st = engine.server.stats()
    assert st["events_accepted"] == 24 and st["actions_dropped"] == 0
    assert st["results_received"] >= 300  # it did answer the world's moves


def test_round_trip_probe_says_what_became_of_each_unanswered_quest():
    """Issue 16: "lost 401" at 1M NPCs was 337 quests never sent (the probe's client owed
    the world more result batches than its credit lets through, the quests queued behind
    them) and a window of 64 in flight; the engine lost none. A world whose actions the
    client must answer in more batches than its credit (2) lets through shows it: the
    quests left in the client are ``unsent``, nothing is ``lost`` (the old probe counted
    them all lost)."""
    engine = MiniEngine("tcp://127.0.0.1:0", tick_ms=50, moves=40_000,
                        config=BridgeConfig(heartbeat_ms=200, peer_timeout_ms=2000,
                                            unacked_batches_max=2))
    r = measure_round_trip(ticks=12, tick_ms=50, events_per_tick=4, engine=engine)
    assert r["received"] + r["unanswered"] == r["events"] == 48
    assert r["unanswered"] == r["unsent"] + r["pending"] + r["expired"] + r["lost"]
    assert r["unsent"] > 0 and r["lost"] == 0
    # every quest that left the client was accepted, except those still in flight; and a
    # pending one may have been accepted already (in the engine's input queue when it
    # stopped: CI once had 13 accepted against 48 - 35 unsent - 1 pending), an unsent one
    # never
    accepted = r["server"]["events_accepted"]
    assert r["events"] - r["unsent"] - r["pending"] <= accepted <= r["events"] - r["unsent"]


def test_classify_unanswered_quests():
    from norn.bridge.loadgen import classify_unanswered

    applied = {2: 10, 3: 10, 4: 10, 6: 12}
    emitted = {2: 10, 3: 10, 7: 40}
    seq_of = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8}
    got = classify_unanswered([1, 2, 3, 4, 5, 6, 7, 8], {1}, applied, emitted, seq_of,
                              acked=7, ttl=20, engine_tick=31)
    # 1 still in the client; 2, 3 emitted at 10, expired after tick 30; 7 emitted at 40
    # (the ledger may see a later tick than the probe's end) is on its way; 4 and 6 applied
    # with no action, 5 acked and never applied: lost; 8 sent, not acked: pending
    assert got == {"unsent": 1, "expired": 2, "pending": 2, "lost": 3}
    assert classify_unanswered([2], set(), applied, emitted, seq_of, acked=0, ttl=20,
                               engine_tick=30) == {"unsent": 0, "pending": 1, "expired": 0,
                                                   "lost": 0}  # tick 30 <= 10 + 20: not yet


# -- SIGKILL the engine in the middle of a stream --------------------------------------------------
def _start_engine(endpoint: str, run_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "norn.bridge.loadgen", "mini-engine", "--endpoint", endpoint,
         "--out", str(run_dir), "--tick-ms", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.match(r"serving (\S+)", line)
    assert m, f"engine did not start: {line!r}"
    return proc, m.group(1)


def test_sigkill_engine_mid_stream_every_acked_event_applied_exactly_once(tmp_path):
    run_dir = tmp_path / "mini"  # the engine's real journal (engine.journal, one fsync a tick)
    proc, endpoint = _start_engine("tcp://127.0.0.1:0", run_dir)
    cfg = ClientConfig(batch_events=50, batch_ms=5, peer_timeout_ms=600, hello_retry_ms=400,
                       retransmit_ms=800, heartbeat_ms=100)
    client = BridgeClient(endpoint, "map01", config=cfg)
    sent = 0
    killed = False
    try:
        assert client.connect(10)
        deadline = clock.monotonic() + 60
        while sent < 20_000 and clock.monotonic() < deadline:
            client.add_columns("quest_done", {"char_id": np.full(100, 150000),
                                              "quest_id": np.arange(sent + 1, sent + 101)})
            sent += 100
            client.poll(2)
            if not killed and client.stats["events_acked"] >= 6000:
                os.kill(proc.pid, signal.SIGKILL)  # mid-stream: batches in flight and queued
                proc.wait(10)
                killed = True
                acked_at_kill = client.stats["events_acked"]
                proc, _ = _start_engine(endpoint, run_dir)  # same port, from its journal
        assert killed
        end = clock.monotonic() + 30
        while not client.idle() and clock.monotonic() < end:
            client.poll(10)
        assert client.idle(), client.stats
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    ticks = journal_ticks(run_dir)
    assert [r.tick for r in ticks] == list(range(1, len(ticks) + 1))  # went on, no tick twice
    ids = np.concatenate([
        b.columns["quest_id"] for rec in ticks for b in rec.inputs if b.kind == "quest_done"])
    assert len(ids) == sent, f"{len(ids)} applied, {sent} sent"
    assert np.array_equal(np.sort(ids), np.arange(1, sent + 1))  # each exactly once
    assert acked_at_kill <= client.stats["events_acked"] == sent
    assert client.stats["reconnects"] >= 1
