"""The default world gives the same digest at every tick under any threading layer and
thread count (engine/threads.py chooses one on purpose; an operator may choose another).

Each run is a separate process (numba fixes its layer and threads once per process), with
every parallel path on (the NPC step's prange over digest chunks always is; the digest's
parallel rehash, which a world this small would otherwise skip, is forced), and reports
the layer that really ran, so the comparison is between the configurations it names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

TICKS = 60

CHILD = f"""
import json, numba
from norn.engine import digest
from norn.engine.config import make_config
from norn.engine.runner import build_world
from norn.engine.scenario import load_model, load_scenario
from norn.engine.tick import step

digest.PARALLEL_HASH_MIN_BYTES = 0  # every rehash through the parallel kernel
sc = load_scenario(None)
config = make_config(None, clock="fast", fsync=False)
world = build_world(sc, config)
source = load_model(sc.model).make_event_source(sc.data, config.seed)
digests = []
for _ in range({TICKS}):
    for batch in source(world.tick + 1):
        assert world.inputs.offer(batch)
    digests.append(step(world).digest)
print(json.dumps({{"layer": numba.threading_layer(), "threads": numba.get_num_threads(),
                  "digests": digests}}))
"""


def _run(layer: str, threads: int) -> dict:
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": str(threads)}
    p = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_digests_agree_across_threading_layers_and_thread_counts():
    omp = _run("omp", 2)
    workqueue = _run("workqueue", 1)
    assert (omp["layer"], omp["threads"]) == ("omp", 2)
    assert (workqueue["layer"], workqueue["threads"]) == ("workqueue", 1)
    assert len(omp["digests"]) == TICKS
    for tick, (a, b) in enumerate(zip(omp["digests"], workqueue["digests"], strict=True), 1):
        assert a == b, f"tick {tick}: omp/2 threads {a:016x} != workqueue/1 thread {b:016x}"


def test_digests_agree_under_tbb_when_it_is_installed():
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (needs libtbb)
    except ImportError as exc:
        pytest.skip(f"TBB is not installed ({exc}); pip install tbb to run this")
    tbb = _run("tbb", 2)
    assert tbb["layer"] == "tbb"
    assert tbb["digests"] == _run("omp", 1)["digests"]


def test_a_run_ticks_with_a_short_gil_switch_interval_and_gives_the_old_one_back():
    """The tick thread must not wait CPython's default 5 ms for the GIL each time it returns
    from a kernel while the bridge or the LLM tier runs Python (threads.tick_priority)."""
    import sys

    from norn.engine import threads
    from norn.engine.config import make_config
    from norn.engine.runner import build_world, run
    from norn.engine.scenario import load_scenario

    world = build_world(load_scenario("toy"), make_config(None, seed=1, ticks=3, fsync=False))
    seen: list[float] = []
    before = sys.getswitchinterval()
    run(world, make_config(None, seed=1, ticks=3, fsync=False),
        on_tick=lambda rec: seen.append(sys.getswitchinterval()))
    assert seen and all(s <= threads.SWITCH_INTERVAL_S for s in seen)
    assert sys.getswitchinterval() == before
