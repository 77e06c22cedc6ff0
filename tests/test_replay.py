"""Replays: verify matches honest runs, names divergence, survives torn tails, refuses
corruption."""

from __future__ import annotations

import numpy as np
import pytest

from norn.engine import journal
from norn.engine.config import make_config
from norn.engine.errors import JournalCorruptError
from norn.engine.recorder import JOURNAL_NAME, Recorder, decode_tick, encode_tick
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import parse_scenario, register_model
from norn.replays.verify import verify
from tests.helpers import norn


def _record_toy(tmp_path, ticks=30, seed=4, inputs=True, subscriber=None, close=True):
    """A recorded toy run; ``close=False`` leaves it as a crash would (no end frame)."""
    from norn.actors.toy import login_batches

    text = 'name = "toy-replay"\nmodel = "toy"\n[toy]\nwalkers = 200\ncapacity = 250\n'
    scenario = parse_scenario(text, "toy-replay.toml")
    config = make_config(None, seed=seed, ticks=ticks, snapshot_every=10, fsync=False)
    world = build_world(scenario, config)
    if subscriber is not None:
        world.subscribe(subscriber)
    rec = Recorder.create(
        tmp_path / "run", make_header(scenario, config, world), fsync=False, snapshot_every=10
    )

    def feed(tick):
        if inputs:
            for b in login_batches(seed, tick):
                assert world.inputs.offer(b)

    run(world, config, rec, before_tick=feed)
    if close:
        rec.close(world, "completed")
    return tmp_path / "run"


def _crash_after(path, tick):
    """Cut a journal after ``tick``'s frame, leaving a torn half-frame (a crash mid-write)."""
    frames = list(journal.JournalReader(path).frames())
    cut = next(
        f for f in frames if f.kind == journal.KIND_TICK and decode_tick(f.payload).tick == tick + 1
    )
    path.write_bytes(path.read_bytes()[: cut.offset + 9])


def test_verify_matches_an_honest_run(tmp_path):
    result = verify(_record_toy(tmp_path))
    assert result.matched and result.ticks == 30


def test_canary_divergence_is_named_by_tick_table_and_column(tmp_path, request):
    from tests.canary_model import CANARY_TICK, MODEL

    request.addfinalizer(register_model(MODEL))  # a model known to this process only

    scenario = parse_scenario('name = "canary"\nmodel = "canary"\n', "canary.toml")
    config = make_config(None, seed=1, ticks=12, fsync=False, snapshot_every=0)
    world = build_world(scenario, config)
    rec = Recorder.create(
        tmp_path / "run", make_header(scenario, config, world), fsync=False, snapshot_every=0
    )
    run(world, config, rec)
    rec.close(world, "completed")
    result = verify(tmp_path / "run")
    assert not result.matched
    d = result.divergence
    assert (d.tick, d.table, d.column) == (CANARY_TICK, "walker", "mood")
    assert d.entity_ids and "walker" in d.describe() and "mood" in d.describe()


def test_altered_input_is_reported_as_divergence_at_its_tick(tmp_path):
    run_dir = _record_toy(tmp_path)
    src = run_dir / JOURNAL_NAME
    altered_tick = 12  # login batches arrive every third tick

    def transform(frame):
        if frame.kind != journal.KIND_TICK:
            return frame.payload
        rec = decode_tick(frame.payload)
        if rec.tick != altered_tick:
            return frame.payload
        assert rec.inputs, "the test needs an input at this tick"
        cols = dict(rec.inputs[0].columns)
        cols["base_level"] = cols["base_level"] + np.int16(1)
        from norn.engine.inputs import InputBatch

        rec.inputs[0] = InputBatch(
            rec.inputs[0].source, rec.inputs[0].seq, rec.inputs[0].kind, cols
        )
        return encode_tick(rec)

    dst = tmp_path / "altered"
    dst.mkdir()
    journal.rewrite(src, dst / JOURNAL_NAME, transform)
    (dst / "snapshots").symlink_to(run_dir / "snapshots")
    result = verify(dst)
    assert not result.matched
    assert result.divergence.tick == altered_tick
    # the first thing that differs is the tick's inputs themselves (hashed into the digest,
    # written first, by the drain); the state they changed follows
    assert (result.divergence.table, result.divergence.column) == ("inputs", "hash")
    assert "bank.levels" in result.divergence.also
    r = norn("replay", "verify", str(dst))
    assert r.returncode == 1 and f"tick {altered_tick}" in r.stdout
    assert "the tick's inputs differ from those recorded" in r.stdout


def test_an_altered_input_that_no_state_reads_is_detected(tmp_path):
    """The toy reads logins only: a player_move batch changes no state, yet its inputs are
    in the tick's digest, so altering it in the journal is a divergence at its tick."""
    from norn.engine.inputs import InputBatch

    def moves(tick):
        n = 3
        return InputBatch("map01", 1000 + tick, "player_move", {
            "char_id": np.arange(150000, 150000 + n, dtype=np.uint32),
            "map_id": np.zeros(n, dtype=np.int16),
            "x": np.full(n, tick % 50, dtype=np.int16),
            "y": np.full(n, 7, dtype=np.int16)})

    scenario = parse_scenario('name = "toy-moves"\nmodel = "toy"\n[toy]\nwalkers = 50\n'
                              'capacity = 60\n', "toy-moves.toml")
    config = make_config(None, seed=2, ticks=20, snapshot_every=10, fsync=False)
    world = build_world(scenario, config)
    rec = Recorder.create(tmp_path / "run", make_header(scenario, config, world), fsync=False,
                          snapshot_every=10)
    run(world, config, rec, before_tick=lambda t: world.inputs.offer(moves(t)))
    rec.close(world, "completed")
    assert verify(tmp_path / "run").matched
    altered_tick = 13

    def transform(frame):
        if frame.kind != journal.KIND_TICK:
            return frame.payload
        r = decode_tick(frame.payload)
        if r.tick != altered_tick:
            return frame.payload
        (batch,) = r.inputs
        assert batch.kind == "player_move"
        cols = dict(batch.columns, x=batch.columns["x"] + np.int16(1))
        r.inputs[0] = InputBatch(batch.source, batch.seq, batch.kind, cols)
        return encode_tick(r)

    dst = tmp_path / "altered"
    dst.mkdir()
    journal.rewrite(tmp_path / "run" / JOURNAL_NAME, dst / JOURNAL_NAME, transform)
    (dst / "snapshots").symlink_to(tmp_path / "run" / "snapshots")
    result = verify(dst)
    assert not result.matched and result.divergence.tick == altered_tick
    assert result.divergence.region == "inputs.hash" and result.divergence.also == []


@pytest.mark.parametrize("from_tick", [5, 10, 20, 25])
def test_a_tampered_decision_is_named_by_the_column_it_changed(tmp_path, from_tick):
    """Not by a region whose length varies tick to tick (the emitted actions): the journal
    records changed chunks, not lengths, so those are followed, not compared by length."""
    run_dir = _record_toy(tmp_path)
    altered: list[int] = []

    def transform(frame):
        if frame.kind != journal.KIND_TICK or altered:
            return frame.payload
        rec = decode_tick(frame.payload)
        if rec.tick < from_tick or not len(rec.decisions):
            return frame.payload
        flipped = rec.decisions.copy()
        flipped["choice"] = 1 - flipped["choice"]  # rest <-> go
        rec.decisions = flipped
        altered.append(rec.tick)
        return encode_tick(rec)

    dst = tmp_path / "altered"
    dst.mkdir()
    journal.rewrite(run_dir / JOURNAL_NAME, dst / JOURNAL_NAME, transform)
    (dst / "snapshots").symlink_to(run_dir / "snapshots")
    d = verify(dst).divergence
    assert d is not None and d.tick == altered[0]
    assert (d.table, d.column) == ("walker", "resting"), d.describe()
    assert not [k for k in d.also if k.startswith("actions.")], d.describe()


def test_recorded_lengths_follow_what_a_length_change_records():
    from norn.replays.verify import recorded_lengths

    chunks = lambda *c: np.array(c, dtype=np.uint32)  # noqa: E731
    assert recorded_lengths(3, chunks()) == {3}  # nothing recorded: unchanged
    assert recorded_lengths(3, chunks(0, 1, 2, 3, 4)) == {5}  # grew: all recorded
    assert recorded_lengths(5, chunks(0, 1)) == {2, 5}  # shrunk to 2, or 2 chunks changed
    assert recorded_lengths(5, chunks(1, 3)) == {5}  # a gap: the length stayed
    assert recorded_lengths(2, chunks(0, 1)) == {2}


def test_torn_tail_is_ignored_and_verify_matches_up_to_the_last_whole_frame(tmp_path):
    run_dir = _record_toy(tmp_path)
    path = run_dir / JOURNAL_NAME
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # tear the END frame
    result = verify(run_dir)
    assert result.matched and result.ticks == 30
    assert any("torn tail" in w for w in result.warnings)


def test_a_flipped_byte_in_the_middle_is_refused_with_its_offset(tmp_path):
    run_dir = _record_toy(tmp_path)
    path = run_dir / JOURNAL_NAME
    data = bytearray(path.read_bytes())
    frames = list(journal.JournalReader(path).frames())
    middle = frames[len(frames) // 2]
    data[middle.offset + 20] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as exc:
        verify(run_dir)
    assert exc.value.offset == middle.offset
    r = norn("replay", "verify", str(run_dir))
    assert r.returncode == 2 and str(middle.offset) in r.stderr and "Traceback" not in r.stderr


def test_resume_after_a_crash_continues_the_same_world(tmp_path):
    from norn.engine.resume import resume

    run_dir = _record_toy(tmp_path, ticks=25, inputs=False)
    path = run_dir / JOURNAL_NAME
    full = journal_digests_of(path)
    _crash_after(path, 17)
    resumed = resume(run_dir)
    world, recorder = resumed.world, resumed.recorder
    assert world.tick == 17
    config = make_config(None, seed=4, ticks=8, fsync=False)
    run(world, config, recorder)
    recorder.close(world, "completed")
    assert journal_digests_of(path) == full
    assert verify(run_dir).matched


def journal_digests_of(path):
    return {
        decode_tick(f.payload).tick: decode_tick(f.payload).digest
        for f in journal.JournalReader(path).frames()
        if f.kind == journal.KIND_TICK
    }


def test_resume_rebuilds_the_actions_of_the_last_ticks_for_resending(tmp_path):
    """Actions are not journaled: a resumed run rebuilds recent ones from the journal, equal
    to what the live run emitted, so a crash before they left loses none."""
    from norn.engine.resume import resume

    emitted = {}

    def released(notice):  # what the live run let leave, tick by tick
        emitted[notice.tick] = notice.actions

    run_dir = _record_toy(tmp_path, ticks=30, subscriber=released, close=False)  # no end frame
    resumed = resume(run_dir, resend_ticks=12)  # older than the last snapshot (30)
    assert resumed.world.tick == 30
    want = [emitted[t] for t in range(19, 31) if emitted[t].count()]
    assert want, "the toy world emits actions every few ticks"
    assert [b.tick for b in resumed.resend] == [b.tick for b in want]
    for got, live in zip(resumed.resend, want, strict=True):
        assert sorted(got.kinds) == sorted(live.kinds)
        for kind, cols in live.kinds.items():
            for name, col in cols.items():
                np.testing.assert_array_equal(got.kinds[kind][name], col)
    assert resume(run_dir).resend == []


def test_a_crashed_unbridged_run_resumed_from_the_cli_equals_the_uninterrupted_one(tmp_path):
    """The scenario's own event source goes on after --resume (it is a function of the tick)."""
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        r = norn("run", "--scenario", "toy", "--ticks", "30", "--snapshot-every", "10",
                 "--no-fsync", "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
    want = json.loads(r.stdout)["last_digest"]
    path = b / JOURNAL_NAME
    _crash_after(path, 17)
    r = norn("run", "--out", str(b), "--resume", "--json")  # on to the recorded 30 ticks
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["first_tick"], report["last_tick"]) == (18, 30)
    assert report["last_digest"] == want
    assert journal_digests_of(path) == journal_digests_of(a / JOURNAL_NAME)


def test_source_hash_follows_the_state_code_and_verify_names_a_change(tmp_path, monkeypatch):
    from norn.engine import fingerprint as fp
    from norn.replays import verify as verify_mod

    for pkg in fp.STATE_PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "rules.py").write_text("X = 1\n")
    (tmp_path / "docs.md").write_text("not code")
    before = fp.source_hash(tmp_path)
    (tmp_path / "docs.md").write_text("still not code")
    assert fp.source_hash.__wrapped__(tmp_path) == before
    (tmp_path / "rules" / "rules.py").write_text("X = 2\n")
    assert fp.source_hash.__wrapped__(tmp_path) != before

    run_dir = _record_toy(tmp_path / "rec", ticks=5)
    assert not any("state code" in w for w in verify(run_dir).warnings)
    changed = {**fp.fingerprint(), "source": "0" * 16}
    monkeypatch.setattr(verify_mod, "fingerprint", lambda: changed)
    result = verify(run_dir)
    assert result.matched and any("state code" in w for w in result.warnings)
