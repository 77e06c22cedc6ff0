"""pytest-benchmark suites of the ``norn bench`` scenarios (``make bench``).

Sizes come from the environment so a quick run is one variable away:
``NORN_BENCH_AGENTS`` (Boltzmann, default 1,000,000) and ``NORN_BENCH_NPCS`` (generated
world, default 100,000). Setup (building worlds, warm-up ticks that compile) happens in
fixtures, outside the measured rounds. Results go to bench/results/pytest-benchmark.json.
"""

from __future__ import annotations

import os

import pytest


def _size(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.fixture(scope="session")
def agents() -> int:
    return _size("NORN_BENCH_AGENTS", 1_000_000)


@pytest.fixture(scope="session")
def npcs() -> int:
    return _size("NORN_BENCH_NPCS", 100_000)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add Norn's own machine record (numba threads, git commit, flags) to the JSON."""
    from norn.bench.machine import machine_info as norn_machine

    machine_info["norn"] = norn_machine()
