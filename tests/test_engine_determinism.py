"""Determinism of whole runs: across processes, thread counts, hash seeds, snapshot/restore."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from norn.engine.tick import step
from tests.helpers import ROOT, journal_digests, norn, toy_world


def test_two_processes_with_different_hash_seeds_and_thread_counts_agree_every_tick(tmp_path):
    runs = []
    for i, (hashseed, threads) in enumerate([("0", "1"), ("12345", "2")]):
        out = tmp_path / f"run{i}"
        r = norn(
            "run",
            "--scenario",
            "toy",
            "--ticks",
            "120",
            "--seed",
            "11",
            "--out",
            str(out),
            "--json",
            "--no-fsync",
            env={"PYTHONHASHSEED": hashseed, "NUMBA_NUM_THREADS": threads},
        )
        assert r.returncode == 0, r.stderr
        runs.append(journal_digests(out))
    assert len(runs[0]) == 120
    assert runs[0] == runs[1]


def test_different_seeds_give_different_worlds(tmp_path):
    a, _, _ = toy_world(seed=1)
    b, _, _ = toy_world(seed=2)
    da = [step(a).digest for _ in range(5)]
    db = [step(b).digest for _ in range(5)]
    assert da != db


RESTORE_SCRIPT = """
import sys
from pathlib import Path
from norn.engine import snapshot_io, state
from norn.engine.tick import step
from norn.replays.reader import open_run
run = open_run(sys.argv[1])
world = run.build_world()
arrays, meta = snapshot_io.read_snapshot(Path(sys.argv[1]) / "snapshots" / "tick-000000040.arrow")
state.restore(world, arrays, meta)
from toy_inputs import feed
for _ in range(int(sys.argv[2])):
    feed(world)
    print(world.tick + 1, step(world).digest)
"""


def test_snapshot_restored_in_a_fresh_process_continues_bit_identically(tmp_path):
    out = tmp_path / "run"
    r = norn(
        "run",
        "--scenario",
        "toy",
        "--ticks",
        "100",
        "--seed",
        "5",
        "--out",
        str(out),
        "--snapshot-every",
        "40",
        "--json",
        "--no-fsync",
    )
    assert r.returncode == 0, r.stderr
    uninterrupted = journal_digests(out)
    (tmp_path / "toy_inputs.py").write_text(
        "from norn.actors.toy import login_batches\n"
        "def feed(world):\n"
        "    for b in login_batches(world.seed, world.tick + 1):\n"
        "        assert world.inputs.offer(b)\n"
    )
    script = tmp_path / "restore.py"
    script.write_text(RESTORE_SCRIPT)
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}"}
    import os

    p = subprocess.run(
        [sys.executable, str(script), str(out), "60"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    continued = {int(t): int(d) for t, d in (line.split() for line in p.stdout.split("\n") if line)}
    assert sorted(continued) == list(range(41, 101))
    assert all(continued[t] == uninterrupted[t] for t in continued)


def test_synctest_passes_on_the_toy_world():
    world, _, config = toy_world(seed=9, synctest=True)
    from norn.engine.runner import run

    summary = run(world, config, ticks=40)
    assert summary.ticks == 40


def test_synctest_catches_a_system_that_writes_undeclared_state():
    import numpy as np

    from norn.engine.errors import NornBug
    from norn.engine.runner import build_world, run
    from norn.engine.table import Column

    _, scenario, config = toy_world(seed=9, synctest=True)

    class Sneak:
        name = "sneak"

        def build(self, world):
            t = world.add_table("ledger", [Column("v", np.int64)], 8)
            t.spawn(1)

            def write_without_declaring(w):
                w.tables["ledger"]["v"][0] += 1

            world.add_system("sneak.write", "act", write_without_declaring)

    from norn.engine.world import World

    original_build = World.build

    def build_with_sneak(self):
        self.add_plugin(Sneak())
        original_build(self)

    World.build = build_with_sneak
    try:
        world = build_world(scenario, config)
    finally:
        World.build = original_build
    with pytest.raises(NornBug, match=r"undeclared writes.*ledger\.v"):
        run(world, config, ticks=3)


class HiddenState:
    """Canary: a system that keeps state outside the tables, in a Python attribute.

    It declares what it writes, so the undeclared-write check has nothing to say; but a
    snapshot cannot capture ``self.calls``, so from tick ``FROM`` on, the restored world
    stepped again writes something else than the first step did. Only the synctest's
    restore-then-step comparison can see that.
    """

    name = "hidden"
    FROM = 5

    def __init__(self) -> None:
        self.calls = 0

    def build(self, world):
        from norn.engine.table import Column

        world.add_table("ledger", [Column("v", np.int64)], 8).spawn(1)

        def remember(w):
            self.calls += 1  # state the snapshot forgets
            if w.tick >= self.FROM:
                w.tables["ledger"]["v"][0] = self.calls

        world.add_system("hidden.remember", "act", remember, writes=("ledger.v",))


def _world_with(monkeypatch, plugin, **cfg):
    from norn.engine.runner import build_world
    from norn.engine.world import World

    _, scenario, config = toy_world(seed=9, **cfg)
    original_build = World.build

    def build_with_plugin(self):
        self.add_plugin(plugin)
        original_build(self)

    monkeypatch.setattr(World, "build", build_with_plugin)
    world = build_world(scenario, config)
    monkeypatch.setattr(World, "build", original_build)
    return world, config


def test_synctest_catches_state_kept_outside_the_tables_naming_tick_and_column(monkeypatch):
    from norn.engine.errors import NornBug
    from norn.engine.runner import run

    world, config = _world_with(monkeypatch, HiddenState(), synctest=True)
    with pytest.raises(NornBug) as info:
        run(world, config, ticks=20)
    err = info.value
    assert (err.tick, err.system, err.seed) == (HiddenState.FROM, "synctest", 9)
    assert "restore+step differs in ['ledger.v']" in str(err)
    assert world.tick == HiddenState.FROM  # it stopped at the first tick that showed it


def test_hidden_state_canary_goes_unnoticed_without_the_synctest(monkeypatch):
    """The canary is not caught by anything else: a plain run of it completes."""
    from norn.engine.runner import run

    world, config = _world_with(monkeypatch, HiddenState(), synctest=False)
    summary = run(world, config, ticks=HiddenState.FROM + 3)
    assert summary.ticks == HiddenState.FROM + 3
    assert world.tables["ledger"]["v"][0] == HiddenState.FROM + 3
