"""GM commands to a live world (real processes: ``norn run --gm`` and ``norn replay gm``)
and sweeps on a real local Ray with two workers."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from norn.engine.errors import UserError
from norn.replays import gm, sweep
from norn.replays.session import Replay
from norn.replays.verify import verify
from tests.helpers import ROOT, norn


def test_gm_commands_reach_a_running_world_as_journaled_inputs(tmp_path):
    out = tmp_path / "live"
    world = subprocess.Popen(
        [sys.executable, "-m", "norn.engine.cli", "run", "--scenario", "toy", "--gm",
         "--ticks", "100000", "--clock", "realtime", "--tick-ms", "20", "--out", str(out),
         "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / gm.INBOX).is_dir():
            assert world.poll() is None and time.monotonic() < deadline, "world did not start"
            time.sleep(0.05)
        good = norn("replay", "gm", str(out),
                    "login char_id=5 account_id=7 map=0 x=1 y=1 base_level=3")
        bad = norn("replay", "gm", str(out), "login char_id=5")
        assert good.returncode == 0 and bad.returncode == 0, good.stderr + bad.stderr
        inbox = out / gm.INBOX
        while len(list(inbox.glob("*.done"))) + len(list(inbox.glob("*.rejected"))) < 2:
            assert time.monotonic() < deadline, sorted(p.name for p in inbox.iterdir())
            time.sleep(0.05)
    finally:
        world.terminate()
        world.communicate(timeout=60)
    (rejected,) = inbox.glob("*.rejected")
    assert "missing" in rejected.read_text()
    with Replay(out) as r:
        gm_batches = [(rec.tick, b) for rec in r.records() for b in r.record(rec.tick).inputs
                      if b.source == gm.SOURCE]
    assert len(gm_batches) == 1 and gm_batches[0][1].kind == "login"
    assert int(gm_batches[0][1].columns["char_id"][0]) == 5
    assert verify(out).matched


def test_sending_to_a_world_without_gm_is_refused(tmp_path):
    (tmp_path / "journal.norn").write_bytes(b"")
    with pytest.raises(UserError, match="norn run --gm"):
        gm.send(tmp_path, "login")


def test_gm_takes_at_most_commands_per_tick_max_a_tick(tmp_path):
    """At the bound every queued command lands in one tick; one past, the last waits."""
    from norn.engine.commands import RunContext
    from tests.helpers import toy_world

    world, _, config = toy_world()
    ctx = RunContext(None, world, config, "toy", tmp_path)  # type: ignore[arg-type]
    inbox = gm.GmInbox(ctx)
    (tmp_path / "journal.norn").write_bytes(b"")
    cmd = "login char_id=5 account_id=7 map=0 x=1 y=1 base_level=3"
    for _ in range(gm.COMMANDS_PER_TICK_MAX + 1):
        gm.send(tmp_path, cmd)
    inbox.before_tick(1)
    assert len(world.inputs.drain(1)) == gm.COMMANDS_PER_TICK_MAX
    inbox.before_tick(2)
    assert len(world.inputs.drain(2)) == 1


@pytest.mark.parametrize("seeds", [f"1..{sweep.SWEEP_RUNS_MAX}",
                                   f"1..{sweep.SWEEP_RUNS_MAX + 1}"])
def test_a_sweep_plans_at_most_sweep_runs_max_runs(seeds, tmp_path):
    if seeds.endswith(str(sweep.SWEEP_RUNS_MAX)):
        assert len(sweep.plan("toy", [], seeds, tmp_path)) == sweep.SWEEP_RUNS_MAX
    else:
        with pytest.raises(UserError, match="sweep_runs_max"):
            sweep.plan("toy", [], seeds, tmp_path)


def test_sweep_on_a_local_ray_with_two_workers(tmp_path):
    pytest.importorskip("ray", reason="ray is the sweep extra (CI installs it: .ci/run)")
    out = tmp_path / "sweep"
    proc = norn("sweep", "toy", "--param", "toy.walkers=100,200", "--seeds", "1..2",
                "--ticks", "15", "--out", str(out), "--workers", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    con = duckdb.connect(str(out / "sweep.duckdb"), read_only=True)
    rows = con.execute("SELECT run, seed, walkers, ticks, last_digest, rows_walker "
                       "FROM runs ORDER BY walkers, seed").fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [(1, 100, 15), (2, 100, 15), (1, 200, 15),
                                                  (2, 200, 15)]
    assert len({r[4] for r in rows}) == 4
    # each is a normal journaled run, the same run a direct call makes
    spec = sweep.plan("toy", ["toy.walkers=100"], "2", tmp_path / "again")[0]
    direct = sweep.run_one(spec, 15)
    assert direct["last_digest"] == rows[1][4]
    for r in rows:
        assert verify(out / r[0]).matched


def test_long_commands_show_progress_on_a_terminal_and_stay_quiet_under_json(tmp_path):
    """Ticks done, rate and time left on a terminal's stderr; nothing on stderr with --json."""
    import os
    import pty

    out = tmp_path / "toy"
    assert norn("run", "--scenario", "toy", "--ticks", "40", "--out", str(out),
                "--json").returncode == 0
    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "norn.engine.cli", "replay", "timeline",
                           str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=slave,
                          timeout=300, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "replay (actions)" in text and "40" in text, text[-500:]
    quiet = norn("replay", "export", str(out), "--every", "10", "--json")
    assert quiet.returncode == 0 and quiet.stderr == ""
