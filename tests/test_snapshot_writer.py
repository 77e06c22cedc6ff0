"""Periodic snapshots are written off the tick thread (issue 11: 0 overruns in ``make run``).

Writing the default world's snapshot (Arrow, hashes, fsync) took about 100 ms on the tick
thread, so the paced demo's tick 100 was late every run. The recorder now captures the
state on the tick thread, writes it on another, and names it in the journal only once the
file is durable; at most ``snapshots_in_flight_max`` are being written, and a failed write
fails the run on the tick thread.
"""

from __future__ import annotations

import threading

import pytest

from norn.engine import limits, snapshot_io
from norn.engine.config import make_config
from norn.engine.reader import open_run
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header
from norn.engine.scenario import load_scenario
from norn.engine.tick import step


def _world_and_recorder(tmp_path, every: int):
    config = make_config(None, seed=3, fsync=True, snapshot_every=every)
    scenario = load_scenario("toy")
    world = build_world(scenario, config)
    recorder = Recorder.create(tmp_path / "run", make_header(scenario, config, world),
                               fsync=True, snapshot_every=every)
    return world, recorder


def test_a_snapshot_is_written_off_the_tick_thread_and_named_once_durable(tmp_path,
                                                                         monkeypatch):
    gate, writers = threading.Event(), []
    real = snapshot_io.write_snapshot

    def slow_write(path, arrays, meta, **kw):
        writers.append(threading.current_thread().name)
        assert gate.wait(30), "the test never opened the gate"
        real(path, arrays, meta, **kw)

    monkeypatch.setattr(snapshot_io, "write_snapshot", slow_write)
    world, rec = _world_and_recorder(tmp_path, every=2)
    digests = {}
    for _ in range(3):  # tick 2's write starts and blocks; ticks 2 and 3 commit anyway
        rec.record(world, step(world))
        digests[world.tick] = world.digest.combine(world.tick, state_only=True)
    assert rec.snapshots == [] and len(writers) == 1
    assert writers[0].startswith("norn-snapshot")  # not the tick thread
    assert open_run(tmp_path / "run").snapshots == []  # durable ticks, no snapshot named
    gate.set()
    rec.record(world, step(world))  # tick 4: waits for tick 2's (one in flight), starts its own
    rec.close(world, "done")  # names tick 4's
    run = open_run(tmp_path / "run")
    assert [(t, d) for t, _, d in run.snapshots] == [(2, digests[2]), (4, run.snapshots[1][2])]
    assert limits.snapshots_in_flight_max == 1
    fresh = run.build_world()
    assert run.restore_latest(fresh, 3) == 2  # its digest is checked on restore


def test_a_failed_snapshot_write_fails_the_run_on_the_tick_thread(tmp_path, monkeypatch):
    def failing(path, arrays, meta, **kw):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(snapshot_io, "write_snapshot", failing)
    world, rec = _world_and_recorder(tmp_path, every=1)
    rec.record(world, step(world))  # the write fails on the writer thread
    with pytest.raises(OSError, match="No space left on device"):
        for _ in range(5):  # surfaces at a later commit, at the latest at close
            rec.record(world, step(world))
        rec.close(world, "done")
    assert open_run(tmp_path / "run").snapshots == []
