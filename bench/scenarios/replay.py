"""``norn bench replay``: how fast designers' tools read a run (issue 13's goals).

- **verify**: ticks replayed per second by ``norn replay verify`` on a generated world of
  ``npcs`` NPCs (default 100k), as a multiple of realtime at ``tick_ms`` (goal: 10x at
  100 ms). Timed from the first replayed tick to the last (the world's build and the JIT's
  first tick are setup, reported apart), over a run recorded just before (no fsync).
- **seek**: seconds for a fresh ``Replay`` to show the world at a tick of a ``ticks``-tick
  run (default 10,000) with a snapshot every ``snapshot_every`` (default 500) ticks: open
  and index the journal, build the world, restore the nearest snapshot, replay the ticks
  after it. The ticks sought are the worst (a snapshot's tick + ``snapshot_every - 1``)
  and seeded random ones (goal: every seek under 2 s).
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
            tick_ms: int) -> None:
    config = bench_config(seed=seed, ticks=ticks, fsync=False, snapshot_every=snapshot_every,
                          tick_ms=tick_ms)
    world = build_world(scenario, config)
    rec = Recorder.create(out, make_header(scenario, config, world), fsync=False,
                          snapshot_every=snapshot_every)
    hook = event_hook(scenario, seed)
    run(world, config, recorder=rec, ticks=ticks,
        before_tick=None if hook is None else (lambda t: hook(world, t)))
    rec.close(world, "completed")


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
        _record(scenario, tmp / "run", seed=seed, ticks=ticks, snapshot_every=0,
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
                        "setup_and_first_tick_s": summarize(setup)}}


def seek_case(npcs: int, ticks: int, snapshot_every: int, seeks: int, seed: int
              ) -> dict[str, Any]:
    from norn.replays.session import Replay

    try:
        scenario = _world(npcs, seed)
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    tmp = Path(tempfile.mkdtemp(prefix="norn-bench-seek-"))
    try:
        t0 = clock.monotonic()
        _record(scenario, tmp / "run", seed=seed, ticks=ticks, snapshot_every=snapshot_every,
                tick_ms=100)
        record_s = clock.monotonic() - t0
        rng = random.Random(seed)
        worst = [min(ticks, k + snapshot_every - 1)
                 for k in range(0, ticks, snapshot_every)][-3:]
        targets = worst + [rng.randrange(1, ticks + 1) for _ in range(max(0, seeks - 3))]
        times = []
        for t in targets:  # a fresh Replay each time: nothing cached between seeks
            s0 = clock.monotonic()
            with Replay(tmp / "run") as r:
                r.world_at(t)
            times.append(clock.monotonic() - s0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"entities": npcs, "ticks": ticks, "snapshot_every": snapshot_every,
            "sought": targets, "record_s": round(record_s, 2),
            "figures": {"seek_s": summarize(times), "seek_s_max": round(max(times), 4)}}
