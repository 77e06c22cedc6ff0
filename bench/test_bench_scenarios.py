"""The ``norn bench`` scenarios as pytest-benchmark suites: one tick (or one unit of work)
per round, setup in fixtures. ``norn bench`` is the reference for the goals; these give
pytest-benchmark's statistics and history (``--benchmark-compare``)."""

from __future__ import annotations

import pytest

from norn.engine.runner import build_world, run
from norn.engine.tick import step

pytestmark = pytest.mark.benchmark(min_rounds=10, warmup=True)


@pytest.fixture(scope="module")
def boltzmann_world(agents):
    from norn.actors.boltzmann import scenario_text
    from norn.bench.harness import bench_config
    from norn.engine.scenario import parse_scenario

    config = bench_config()
    world = build_world(parse_scenario(scenario_text(agents), "boltzmann.toml"), config)
    run(world, config, ticks=5)  # compile and settle outside the measurement
    return world


@pytest.fixture(scope="module")
def midgard_world(npcs):
    from norn.bench.harness import bench_config
    from norn.bench.scenarios.world import NotAvailable, generated

    try:
        scenario = generated(npcs, seed=1)
    except NotAvailable as exc:
        pytest.skip(str(exc))
    config = bench_config()
    world = build_world(scenario, config)
    run(world, config, ticks=5)
    return world


def test_boltzmann_tick(benchmark, boltzmann_world, agents):
    benchmark.extra_info["agents"] = agents
    benchmark.pedantic(step, args=(boltzmann_world,), rounds=30, warmup_rounds=2)


def test_boltzmann_ceiling_step(benchmark, agents):
    import numpy as np

    from norn.actors.boltzmann import BLOCK_ROWS
    from norn.bench.scenarios.boltzmann import _ceiling_give, _ceiling_receive

    wealth = np.ones(agents, dtype=np.int64)
    starts = np.zeros(-(-agents // BLOCK_ROWS) + 1, dtype=np.int64)
    recv = np.zeros(agents, dtype=np.int64)
    ticks = iter(range(1, 10**9))

    def one_step() -> None:
        n = _ceiling_give(np.uint64(1), next(ticks), wealth, starts, recv)
        _ceiling_receive(wealth, recv, n)

    benchmark.extra_info["agents"] = agents
    benchmark.pedantic(one_step, rounds=30, warmup_rounds=2)


def test_core_empty_tick(benchmark):
    from norn.bench.scenarios.world import core_world

    world = core_world(1000, 8, False, 1)()
    benchmark.pedantic(step, args=(world,), rounds=500, warmup_rounds=10)


def test_core_digest_tick_1m_rows(benchmark):
    from norn.bench.scenarios.world import core_world

    world = core_world(1_000_000, 8, True, 1)()
    benchmark.pedantic(step, args=(world,), rounds=30, warmup_rounds=2)


def test_scale_world_tick(benchmark, midgard_world, npcs):
    benchmark.extra_info["npcs"] = npcs
    benchmark.pedantic(step, args=(midgard_world,), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("kind", ["npc", "economy", "faction", "hazard"])
def test_actor_kind_systems(benchmark, midgard_world, kind):
    """Each actor kind's systems alone, on the generated world's state."""
    systems = [s for s in midgard_world.schedule.systems if s.plugin == kind]
    if not systems:
        pytest.skip(f"no {kind} systems in this world")

    def run_kind() -> None:
        for s in systems:
            s.fn(midgard_world)

    benchmark.pedantic(run_kind, rounds=20, warmup_rounds=2)


def test_journal_write_and_verify(benchmark, tmp_path_factory):
    from norn.bench.scenarios.world import journal_case

    result = benchmark.pedantic(
        journal_case,
        kwargs={"npcs": 20_000, "ticks": 50, "repeat": 1, "seed": 1, "fsync": False,
                "players": 200},
        rounds=3,
    )
    benchmark.extra_info.update(
        {k: v["median"] if isinstance(v, dict) else v for k, v in result["figures"].items()}
    )


def test_bridge_columnar_ingest(benchmark):
    from norn.bench.scenarios.world import bridge_ingest_case

    result = benchmark.pedantic(
        bridge_ingest_case, kwargs={"columnar": True, "events": 1_000_000,
                                    "batch_events": 65536, "repeat": 1}, rounds=3
    )
    if not result.get("available", True):
        pytest.skip(result["reason"])
    benchmark.extra_info["events_per_s"] = result["figures"]["events_per_s"]["median"]
