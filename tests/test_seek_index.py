"""The seek index (``norn replay index``, ``replays/index.py``): derived snapshots every K
ticks beside a run. A seek through it shows bit-identical state (every tick's state digest
equals the live run's), replays fewer than K ticks, and never uses an entry the journal's
digests do not vouch for: a tampered, stale or foreign index is refused with its reason
(the seek falls back to the run's own snapshots) and ``norn replay index`` rebuilds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import norn.replays.session as session_mod
from norn.engine import snapshot_io
from norn.engine.config import make_config
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import load_scenario
from norn.replays import index
from norn.replays.session import Replay

TICKS = 40
SNAP_EVERY = 20
EVERY = 6


def _record(out, seed):
    scenario = load_scenario("midgard")
    config = make_config(None, seed=seed, ticks=TICKS, snapshot_every=SNAP_EVERY, fsync=False)
    world = build_world(scenario, config)
    rec = Recorder.create(out, make_header(scenario, config, world), fsync=False,
                          snapshot_every=SNAP_EVERY)
    source = scenario.world_model().make_event_source(scenario.data, config.seed)
    digests = {}

    def feed(tick):
        for b in source(tick):
            assert world.inputs.offer(b)

    def on_tick(r):
        digests[r.tick] = world.digest.combine(r.tick, state_only=True)

    run(world, config, rec, before_tick=feed, on_tick=on_tick)
    rec.close(world, "completed")
    return digests


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 40-tick default-world run (snapshots at 20 and 40) and its live state digests."""
    out = tmp_path_factory.mktemp("seek") / "run"
    return out, _record(out, seed=3)


@pytest.fixture
def indexed(recorded, tmp_path):
    """A copy of the run with a fresh seek index every 6 ticks."""
    out = tmp_path / "run"
    shutil.copytree(recorded[0], out)
    with Replay(out, use_index=False) as r:
        index.build(r, EVERY)
    return out, recorded[1]


def _count_steps(monkeypatch):
    steps = []
    real = session_mod.step

    def counted(world, rec):
        steps.append(rec.tick)
        return real(world, rec)

    monkeypatch.setattr(session_mod, "step", counted)
    return steps


def test_the_index_holds_every_kth_tick_but_the_recorded_snapshots(indexed):
    out, _ = indexed
    manifest = json.loads((out / index.INDEX_DIR / index.MANIFEST).read_text())
    assert [e["t"] for e in manifest["entries"]] == [6, 12, 18, 24, 30, 36]  # not 20, 40
    assert (out / "journal.norn").exists() and not (out / "derived").exists()


def test_every_tick_through_the_index_is_bit_identical_to_the_live_run(indexed, monkeypatch):
    out, digests = indexed
    for t in range(1, TICKS + 1):  # a fresh Replay per tick: each seek restores afresh
        with Replay(out) as r:
            w = r.world_at(t)
            assert r.warnings == []
            assert w.tick == t and w.digest.combine(t, state_only=True) == digests[t], t


def test_an_index_entry_restores_the_state_stepping_from_the_recorded_snapshot_reaches(
        indexed):
    out, _ = indexed
    with Replay(out, use_index=False) as plain, Replay(out) as fast:
        for t in (24, 30, 36):
            want = plain.world_at(t)  # snapshot 20, then the journal's ticks
            have = fast.world_at(t)   # the index entry of tick t, no tick replayed
            for region in want.digest.regions:
                assert np.array_equal(region.hashes,
                                      have.digest.region(region.key).hashes), (t, region.key)
            assert have.digest.combine(t) == want.digest.combine(t) == fast.record(t).digest


def test_a_seek_uses_the_index_and_replays_fewer_than_k_ticks(indexed, recorded,
                                                              monkeypatch):
    steps = _count_steps(monkeypatch)
    with Replay(indexed[0]) as r:
        r.world_at(35)
    assert steps == [31, 32, 33, 34, 35]  # from the entry of tick 30
    steps.clear()
    with Replay(recorded[0]) as r:  # no index: from the snapshot of tick 20
        r.world_at(35)
    assert steps == list(range(21, 36))
    steps.clear()
    with Replay(indexed[0]) as r:  # forward from the last seek, back through an entry
        r.world_at(13)
        r.world_at(15)
        r.world_at(8)
    assert steps == [13, 14, 15, 7, 8]


def _refused(out, t, digests, monkeypatch, why):
    steps = _count_steps(monkeypatch)
    with Replay(out) as r:
        w = r.world_at(t)
        assert w.digest.combine(t, state_only=True) == digests[t]  # still the run's state
        assert len(r.warnings) == 1 and why in r.warnings[0], r.warnings
        assert "norn replay index" in r.warnings[0]
    return steps


def test_a_tampered_snapshot_is_refused_and_the_seek_falls_back(indexed, monkeypatch):
    out, digests = indexed
    path = out / index.INDEX_DIR / "tick-000000030.arrow"
    arrays, meta = snapshot_io.read_snapshot(path)
    arrays["table/npc/wallet"][0] += 1  # a valid snapshot file, with other state
    snapshot_io.write_snapshot(path, arrays, meta, compression="zstd")
    steps = _refused(out, 33, digests, monkeypatch, "not the journal's")
    assert steps[0] == 21  # from the recorded snapshot of tick 20
    with Replay(out) as r:  # other entries are never trusted after one was refused
        r.world_at(14)
        assert r.warnings == []  # (the entry of tick 12 is fine)


def test_tampered_output_hashes_in_the_manifest_are_refused(indexed, monkeypatch):
    out, digests = indexed
    path = out / index.INDEX_DIR / index.MANIFEST
    doc = json.loads(path.read_text())
    entry = doc["entries"][1]  # tick 12
    key = next(iter(entry["outputs"]))
    entry["outputs"][key] = "00" * (len(entry["outputs"][key]) // 2)
    path.write_text(json.dumps(doc))
    assert _refused(out, 13, digests, monkeypatch, "not the journal's")[0] == 1


def test_an_entry_whose_digest_is_not_the_journals_is_refused(indexed, monkeypatch):
    out, digests = indexed
    path = out / index.INDEX_DIR / index.MANIFEST
    doc = json.loads(path.read_text())
    doc["entries"][0]["d"] = "%016x" % (int(doc["entries"][0]["d"], 16) ^ 1)
    path.write_text(json.dumps(doc))
    _refused(out, 25, digests, monkeypatch, "the entry of tick 6 does not match")


def test_an_index_of_another_run_is_refused(indexed, tmp_path, monkeypatch):
    out, digests = indexed
    other = tmp_path / "other"
    _record(other, seed=4)
    with Replay(other, use_index=False) as r:
        index.build(r, EVERY)
    shutil.rmtree(out / index.INDEX_DIR)
    shutil.copytree(other / index.INDEX_DIR, out / index.INDEX_DIR)
    _refused(out, 31, digests, monkeypatch, "made from another run")


def test_the_cli_warns_of_a_refused_index_and_rebuilds_it(indexed):
    out, digests = indexed
    (out / index.INDEX_DIR / "tick-000000024.arrow").write_bytes(b"not a snapshot")
    cli = [sys.executable, "-m", "norn.engine.cli", "replay"]
    show = subprocess.run([*cli, "show", str(out), "--tick", "25", "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(show.stdout)["tick"] == 25
    assert "seek index not used" in show.stderr and "tick-000000024.arrow" in show.stderr
    built = subprocess.run([*cli, "index", str(out), "--every", "10", "--json"],
                           capture_output=True, text=True, check=True)
    assert json.loads(built.stdout)["ticks"] == [10, 30]
    checked = subprocess.run([*cli, "verify", str(out), "--index-every", "10", "--json"],
                             capture_output=True, text=True, check=True)
    assert json.loads(checked.stdout)["matched"] is True
    show = subprocess.run([*cli, "show", str(out), "--tick", "25", "--json"],
                          capture_output=True, text=True, check=True)
    assert "warning" not in show.stderr
    with Replay(out) as r:
        assert [e.tick for e in r.index_entries()] == [10, 30]
        assert r.world_at(33).digest.combine(33, state_only=True) == digests[33]


def test_every_must_be_positive(recorded):
    from norn.engine.errors import UserError

    with Replay(recorded[0]) as r, pytest.raises(UserError, match="at least 1"):
        index.build(r, 0)


def test_verify_writes_the_index_in_its_own_pass(recorded, tmp_path):
    from norn.replays.verify import verify

    out = tmp_path / "run"
    shutil.copytree(recorded[0], out)
    assert verify(out, index_every=EVERY).matched
    with Replay(out) as r:
        assert [e.tick for e in r.index_entries()] == [6, 12, 18, 24, 30, 36]
        for t in (13, 37, 7):
            assert r.world_at(t).digest.combine(t, state_only=True) == recorded[1][t]
        assert r.warnings == []


def test_a_verify_that_diverges_keeps_no_index(recorded, tmp_path, monkeypatch):
    import norn.replays.verify as verify_mod

    out = tmp_path / "run"
    shutil.copytree(recorded[0], out)
    real = verify_mod.step

    def wrong_at_15(world, rec):
        got = real(world, rec)
        if got.tick == 15:
            got.digest ^= 1
        return got

    monkeypatch.setattr(verify_mod, "step", wrong_at_15)
    res = verify_mod.verify(out, index_every=EVERY)
    assert not res.matched and res.last_tick == 15
    assert not (out / index.INDEX_DIR).exists()
    assert not (out / (index.INDEX_DIR + ".tmp")).exists()
