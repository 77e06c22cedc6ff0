"""``norn bench replay``: how fast designers' tools read a run (issue 13's goals).

- **verify**: ticks replayed per second by ``norn replay verify`` on a generated world of
  ``npcs`` NPCs (default 100k), as a multiple of realtime at ``tick_ms`` (goal: 10x at
  100 ms). Timed from the first replayed tick to the last (the world's build and the JIT's
  first tick are setup, reported apart), over a run recorded just before (no fsync).
  Beside it, ``live_ticks_per_s``: the same world stepped while it was recorded (the
  journal written, no fsync), from its second tick to its last: verify replays the world's
  own systems, so it cannot go faster than the world steps.
- **seek**: seconds for a fresh ``Replay`` to show the world at a tick of a ``ticks``-tick
  run (default 10,000) with a snapshot every ``snapshot_every`` (default 500) ticks: open
  the journal, build the world, restore the nearest snapshot, replay the ticks after it.
  Measured with the run's seek index (``norn replay index --every index_every``, default
  a tenth of ``snapshot_every``, built
  once and timed apart as ``index_build_s``): the ticks sought are the worst (an index
  entry's tick + ``index_every - 1``) and seeded random ones (goal: every seek under 2 s).
  ``seek_s_max_without_index``: the worst three without it (a recorded snapshot's tick +
  ``snapshot_every - 1``), as a run has before ``norn replay index``.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from norn.bench.harness import bench_config
from norn.bench.scenarios.world import NotAvailable, event_hook, generated, not_available
from norn.bench.stats import summarize
from norn.engine import clock
from norn.engine.recorder import Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import Scenario, load_scenario

GOAL_VERIFY_X_REALTIME = 10.0
GOAL_SEEK_S = 2.0


def _record(scenario: Scenario, out: Path, *, seed: int, ticks: int, snapshot_every: int,
            tick_ms: int) -> float:
    """Record the run; returns the ticks/s it stepped at (its first tick left out)."""
    config = bench_config(seed=seed, ticks=ticks, fsync=False, snapshot_every=snapshot_every,
                          tick_ms=tick_ms)
    world = build_world(scenario, config)
    rec = Recorder.create(out, make_header(scenario, config, world), fsync=False,
                          snapshot_every=snapshot_every)
    hook = event_hook(scenario, seed)
    marks: list[float] = []
    run(world, config, recorder=rec, ticks=ticks,
        before_tick=None if hook is None else (lambda t: hook(world, t)),
        on_tick=lambda _r: marks.append(clock.monotonic()))
    rec.close(world, "completed")
    return (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 else 0.0


def _world(npcs: int, seed: int) -> Scenario:
    """The default world for ``npcs`` 0, else a generated one of that many NPCs."""
    return load_scenario("midgard") if npcs == 0 else generated(npcs, seed)


def verify_case(npcs: int, ticks: int, repeat: int, seed: int, tick_ms: int) -> dict[str, Any]:
    from norn.replays.verify import verify

    try:
        scenario = _world(npcs, seed)
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    tmp = Path(tempfile.mkdtemp(prefix="norn-bench-replay-"))
    rates, setup = [], []
    try:
        live = _record(scenario, tmp / "run", seed=seed, ticks=ticks, snapshot_every=0,
                       tick_ms=tick_ms)
        for _ in range(repeat):
            marks: list[float] = []
            t0 = clock.monotonic()
            res = verify(tmp / "run", lambda n, _t, m=marks: m.append(clock.monotonic()))
            if not res.matched:
                raise AssertionError(f"verify diverged: {res.as_dict()}")
            setup.append(marks[0] - t0)
            rates.append((len(marks) - 1) / (marks[-1] - marks[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    x = [r * tick_ms / 1000 for r in rates]
    return {"entities": npcs, "ticks": ticks, "repeat": repeat, "tick_ms": tick_ms,
            "figures": {"verify_ticks_per_s": summarize(rates), "x_realtime": summarize(x),
                        "live_ticks_per_s": round(live, 2),
                        "verify_over_live": round(sorted(rates)[len(rates) // 2] / live, 3)
                        if live else None,
                        "setup_and_first_tick_s": summarize(setup)}}


def _seek(run_dir: Path, tick: int, *, use_index: bool) -> float:
    """Seconds for a fresh Replay to show the world at ``tick``."""
    from norn.replays.session import Replay

    s0 = clock.monotonic()
    with Replay(run_dir, use_index=use_index) as r:
        r.world_at(tick)
        if r.warnings:
            raise AssertionError(f"seek index refused: {r.warnings}")
    return clock.monotonic() - s0


def seek_case(npcs: int, ticks: int, snapshot_every: int, seeks: int, seed: int,
              index_every: int | None = None) -> dict[str, Any]:
    """``index_every`` None: a tenth of ``snapshot_every`` (50 for the goal's 500)."""
    from norn.replays import index
    from norn.replays.session import Replay

    try:
        scenario = _world(npcs, seed)
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    index_every = index_every or max(1, snapshot_every // 10)
    tmp = Path(tempfile.mkdtemp(prefix="norn-bench-seek-"))
    run_dir = tmp / "run"
    try:
        t0 = clock.monotonic()
        _record(scenario, run_dir, seed=seed, ticks=ticks, snapshot_every=snapshot_every,
                tick_ms=100)
        record_s = clock.monotonic() - t0
        rng = random.Random(seed)
        worst_plain = [min(ticks, k + snapshot_every - 1)
                       for k in range(0, ticks, snapshot_every)][-3:]
        plain = [_seek(run_dir, t, use_index=False) for t in worst_plain]
        t0 = clock.monotonic()
        with Replay(run_dir, use_index=False) as r:
            index.build(r, index_every)
        build_s = clock.monotonic() - t0
        worst = [min(ticks, k + index_every - 1) for k in range(0, ticks, index_every)][-3:]
        targets = worst + [rng.randrange(1, ticks + 1) for _ in range(max(0, seeks - 3))]
        times = [_seek(run_dir, t, use_index=True) for t in targets]
        index_mb = sum(p.stat().st_size for p in (run_dir / index.INDEX_DIR).iterdir()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"entities": npcs, "ticks": ticks, "snapshot_every": snapshot_every,
            "index_every": index_every, "sought": targets, "sought_without_index": worst_plain,
            "record_s": round(record_s, 2),
            "figures": {"seek_s": summarize(times), "seek_s_max": round(max(times), 4),
                        "seek_s_max_without_index": round(max(plain), 4),
                        "index_build_s": round(build_s, 2), "index_mb": round(index_mb, 1)}}
