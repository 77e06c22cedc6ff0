"""Designers' tools over a real recorded Midgard run: seek, frames, derive, fork, diff,
timeline, SQL (DuckDB over the derived Parquet files) and the HTML report in a real
headless browser (the runs are recorded once a session, so these share them)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import norn.replays
from norn.engine.config import make_config
from norn.engine.errors import ConfigError, Diverged, UserError
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import load_scenario
from norn.replays import derive, diff, fork, query, report, timeline
from norn.replays.session import Replay
from norn.replays.verify import verify
from tests.test_replay_report import check_report, needs_chromium

TICKS = 60
FORK_AT = 30
PLAGUE = "admin_hazard map=payon type=plague intensity=0.8"


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """The default world, 60 ticks, a snapshot every 20; every tick's state digest kept
    (a seek to a snapshot tick restores it, so it has the state, not that tick's actions)."""
    out = tmp_path_factory.mktemp("replay") / "base"
    scenario = load_scenario("midgard")
    config = make_config(None, seed=5, ticks=TICKS, snapshot_every=20, fsync=False)
    world = build_world(scenario, config)
    rec = Recorder.create(out, make_header(scenario, config, world), fsync=False,
                          snapshot_every=20)
    source = scenario.world_model().make_event_source(scenario.data, config.seed)
    digests, actions = {}, {}

    def feed(tick):
        for b in source(tick):
            assert world.inputs.offer(b)

    def on_tick(r):
        digests[r.tick] = world.digest.combine(r.tick, state_only=True)
        actions[r.tick] = r.emitted.count()

    run(world, config, rec, before_tick=feed, on_tick=on_tick)
    rec.close(world, "completed")
    return out, digests, actions


@pytest.fixture(scope="session")
def plague(base):
    out = base[0].parent / "plague"
    res = fork.fork(base[0], at=FORK_AT, out=out, injects=[PLAGUE])
    assert res.injected == 1 and res.last_tick == TICKS
    return out


def test_seek_is_the_recorded_state_forward_backward_and_across_snapshots(base):
    out, digests, _ = base
    with Replay(out) as r:
        assert (r.first_tick, r.last_tick) == (0, TICKS)
        for t in (45, 50, 19, 20, 21, 60, 3):  # forward, back past a snapshot, the ends
            w = r.world_at(t)
            assert w.tick == t and w.digest.combine(t, state_only=True) == digests[t]


def test_frames_have_names_for_ids_and_raw_ids_on_request(base):
    with norn.replays.open(base[0]) as r:
        at = r.at(40)
        npc = at.table("npc")
        assert npc.num_rows == at.world.tables["npc"].count
        maps = set(at.world.resources["geography"].map_names)
        assert set(npc["map"].to_pylist()) <= maps
        assert set(npc["state"].to_pylist()) <= {"idle", "wander", "travel", "work", "trade",
                                                  "rest", "flee", "talk"}
        assert "needs.hunger" in npc.column_names and "faction" in npc.column_names
        raw = at.table("npc", raw=True)
        assert raw["map"].type == pa.int16()
        terr = at.table("territory")
        assert terr["map"].to_pylist()[0] == at.world.resources["geography"].map_names[0]
        assert "influence.Prontera Knights" in terr.column_names
        df = at.to_pandas("market")
        assert {"town", "item", "price"} <= set(df.columns) and len(df) == 81
        with pytest.raises(UserError, match="no table 'nope'"):
            at.table("nope")


def test_a_tick_outside_the_run_is_bad_input(base):
    with Replay(base[0]) as r:
        for t in (-1, TICKS + 1):
            with pytest.raises(UserError, match=f"tick {t} is not in this run"):
                r.world_at(t)


def test_a_seek_through_an_altered_journal_is_a_divergence(base, tmp_path):
    import shutil

    from norn.engine import journal
    from norn.engine.recorder import JOURNAL_NAME, decode_tick, encode_tick, event_table

    src = base[0]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    (bad / JOURNAL_NAME).unlink()
    header = Replay(src).header
    kinds = event_table(header)

    def alter(frame):
        if frame.kind != journal.KIND_TICK:
            return None
        rec = decode_tick(frame.payload, kinds)
        if rec.tick == 25 and rec.inputs:
            rec.inputs = rec.inputs[1:]  # a batch the run had is gone
            return encode_tick(rec, kinds)
        return None

    journal.rewrite(src / JOURNAL_NAME, bad / JOURNAL_NAME, alter)
    with Replay(bad) as r, pytest.raises(Diverged) as exc:
        r.world_at(35)
    assert exc.value.context.get("tick") == 25 or "tick=25" in str(exc.value)


def test_derived_actions_and_decisions_are_the_runs(base):
    out, _, actions = base
    with Replay(out) as r:
        a = r.actions()
        per_tick = {t: n for t, n in zip(*np.unique(a["tick"].to_numpy(), return_counts=True),
                                         strict=True)}
        assert {t: n for t, n in actions.items() if n} == per_tick
        ids = a["action_id"].to_numpy()
        assert (ids >> 24 == a["tick"].to_numpy()).all()
        d = r.decisions()
        n_journal = sum(len(rec.decisions) for rec in r.records())
        assert d.num_rows == n_journal > 0
        assert set(d["tier"].to_pylist()) <= {"rules", "cache", "batch", "single", "fallback"}
        assert set(d["source"].to_pylist()) <= {"resolver", "deadline", "invalid"}
        ev = r.events(start=1, stop=10)
        assert ev.num_rows == sum(len(b) for rec in r.records(0, 10) for b in rec.inputs)
        manifest = json.loads((out / "derived" / "manifest.json").read_text())
        assert manifest["last_tick"] == TICKS


def test_fork_with_an_injected_plague_verifies_and_names_its_parent(base, plague):
    assert verify(plague).matched
    with Replay(plague) as f:
        assert f.first_tick == FORK_AT and f.last_tick == TICKS
        assert f.fork["tick"] == FORK_AT and f.fork["inject"] == [PLAGUE]
        assert f.fork["parent"] == str(base[0].resolve())
        ev = f.events("admin_hazard")
        assert ev.to_pylist()[0].items() >= {"tick": FORK_AT + 1, "source": "fork",
                                             "map": "payon", "hazard_type": "plague"}.items()
        hz = f.at(FORK_AT + 2).table("hazard")
        assert ("plague", "payon") in set(zip(hz["type"].to_pylist(), hz["map"].to_pylist(),
                                              strict=True))


def test_a_fork_that_changes_nothing_is_its_parent(base, tmp_path):
    out = tmp_path / "same"
    fork.fork(base[0], at=FORK_AT, out=out)
    res = diff.diff(base[0], out)
    assert res.identical and res.first_digest_tick is None
    with Replay(out) as f, Replay(base[0]) as p:
        assert all(rec.digest == p.record(rec.tick).digest for rec in f.records())


def test_fork_changes_seed_set_and_drop(base, tmp_path):
    out = tmp_path / "seeded"
    res = fork.fork(base[0], at=FORK_AT, out=out, seed=99, ticks=10,
                    drops=["kind=player_move ticks=31..35"],
                    sets=["rules.economy.price_band_min=0.8"])
    assert res.dropped_batches >= 1 and res.last_tick == FORK_AT + 10
    assert verify(out).matched
    with Replay(out) as f:
        assert f.header["seed"] == 99
        assert not [b for rec in f.records(30, 35) for b in rec.inputs if b.kind == "player_move"]
        assert "price_band_min = 0.8" in f.header["scenario"]["text"]
    with pytest.raises(ConfigError, match="price_band_mni"):
        fork.fork(base[0], at=FORK_AT, out=tmp_path / "typo",
                  sets=["rules.economy.price_band_mni=0.8"])
    with pytest.raises(UserError, match="neither a number nor a known name"):
        fork.fork(base[0], at=FORK_AT, out=tmp_path / "bad",
                  injects=["admin_hazard map=atlantis type=plague intensity=1"])


def test_diff_names_the_first_divergence_and_the_drift(base, plague):
    res = diff.diff(base[0], plague)
    d = res.divergence
    assert res.first_digest_tick == FORK_AT + 1
    assert (d.tick, d.table) == (FORK_AT + 1, "hazard") and d.entity_ids
    assert len(d.entity_ids) <= diff.ENTITIES_MAX
    assert res.rows["hazard"][-1] >= 1 and res.ticks == list(range(FORK_AT, TICKS + 1))
    assert res.prices and len(res.prices) <= 8 and res.ground
    text = diff.format_diff(res)
    assert "first divergence: tick 31, table 'hazard'" in text


@pytest.mark.parametrize("changed", [diff.ENTITIES_MAX, diff.ENTITIES_MAX + 1])
def test_diff_names_at_most_entities_max_entities(base, changed):
    """At the bound every changed NPC is named; one past it, the first ENTITIES_MAX."""
    with Replay(base[0]) as ra, Replay(base[0]) as rb:
        wa, wb = ra.world_at(40), rb.world_at(40)
        slots = wb.tables["npc"].live_slots()[: changed]
        wb.tables["npc"]["mood"][slots] += 0.5
        d = diff._first(wa, wb, 40, 0, 1)
    assert (d.table, d.column) == ("npc", "mood")
    assert d.entity_ids == [int(h) for h in wa.tables["npc"].handles(slots)][: diff.ENTITIES_MAX]
    assert d.slots == (int(slots[0]), int(slots[-1]) + 1)


def test_timeline_lists_the_plague_and_caps_examples(plague):
    with Replay(plague) as f:
        rows = timeline.timeline(f)
        hz = [r for r in rows if r["category"] == "hazard" and "plague on payon 0.80"
              in r["examples"]]
        assert hz and hz[0]["tick"] == FORK_AT + 1
        assert any(r["kind"] == "admin_hazard" and r["tick"] == FORK_AT + 1 for r in rows)
        assert all(len(r["examples"]) <= timeline.EXAMPLES_MAX for r in rows)
        assert any(r["count"] > timeline.EXAMPLES_MAX == len(r["examples"]) for r in rows)
        only = timeline.timeline(f, kinds=["hazard"], start=FORK_AT + 1, stop=FORK_AT + 1)
        assert only and {r["category"] for r in only} == {"hazard"}
        assert {r["category"] for r in rows} >= {"input", "action", "decision", "hazard"}


@pytest.mark.parametrize("name", sorted(query.EXAMPLES))
def test_every_documented_example_query_runs_over_both_runs(base, plague, name):
    rs = [Replay(base[0]), Replay(plague)]
    try:
        t = query.query(rs, query.EXAMPLES[name])
    finally:
        for r in rs:
            r.close()
    assert t is not None and t.num_columns >= 2
    if "results" not in name:  # the simulated players send no action results
        assert t.num_rows > 0


def test_query_over_two_runs_compares_them(base, plague):
    rs = [Replay(base[0]), Replay(plague)]
    t = query.query(rs, "SELECT run, count(*) AS n FROM hazards WHERE map = 'payon' "
                        "AND hazard_type = 'plague' GROUP BY run ORDER BY run")
    assert t.to_pylist() == [{"run": "plague", "n": TICKS - FORK_AT}]
    with pytest.raises(UserError, match="views:"):
        query.query(rs, "SELECT * FROM nowhere")


def test_export_writes_parquet_with_real_column_names_and_every_k(base, tmp_path):
    import pyarrow.parquet as pq

    with Replay(base[0]) as r:
        out = query.export(r, tmp_path / "x", every=25)
        npc = pq.read_table(out / "tables" / "npc.parquet")
        assert sorted(set(npc["tick"].to_pylist())) == [0, 20, 25, 40, 50, 60]
        assert {"map", "state", "faction", "wallet"} <= set(npc.column_names)
        ev = pq.read_table(out / "events.parquet")
        assert {"tick", "source", "seq", "kind", "char_id", "map"} <= set(ev.column_names)
        manifest = derive.derived_dir(r) / "manifest.json"
        assert json.loads(manifest.read_text())["every"] == 25
        made = manifest.stat().st_mtime_ns
        query.query([r], "SELECT count(*) FROM npc")  # a query takes what export made
        assert manifest.stat().st_mtime_ns == made


# -- the HTML report ---------------------------------------------------------------------
@needs_chromium
def test_the_report_renders_in_a_real_browser_with_no_console_errors(plague, tmp_path):
    from norn.replays.session import Replay

    page = tmp_path / "report.html"
    with Replay(plague) as r:
        report.report(r, page)
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html  # self-contained: offline
    dom = check_report(page, tmp_path)
    assert "A what-if fork of" in dom and "plague" in dom


@pytest.mark.parametrize("points_max", [TICKS + 1, TICKS])
def test_series_keep_at_most_points_max_points(base, points_max, monkeypatch):
    """A run of TICKS + 1 ticks (0..TICKS) plots every tick at that bound; one point
    fewer allowed and it is thinned, keeping its first and last tick."""
    from norn.replays.session import Replay

    monkeypatch.setattr(report, "POINTS_MAX", points_max)
    with Replay(base[0]) as r:
        data = report.collect(r)
    for plot in ("population", "prices", "zeny", "ground"):
        xs = data["plots"][plot]["x"]
        assert len(xs) <= points_max and xs[0] == 0 and xs[-1] == TICKS
        assert (len(xs) == TICKS + 1) == (points_max == TICKS + 1)
