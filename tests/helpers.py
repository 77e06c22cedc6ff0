"""Shared helpers for the tests: building worlds, running CLIs in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from norn.engine import journal
from norn.engine.config import make_config
from norn.engine.recorder import JOURNAL_NAME, decode_tick, event_table, unpack
from norn.engine.runner import build_world
from norn.engine.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]


def toy_world(seed: int = 3, walkers: int = 300, **cfg):
    text = (
        f'name = "toy-test"\nmodel = "toy"\n[toy]\nwalkers = {walkers}\ncapacity = {walkers + 50}\n'
    )
    scenario = parse_scenario(text, "toy-test.toml")
    config = make_config(None, seed=seed, **cfg)
    return build_world(scenario, config), scenario, config


def default_toy():
    return load_scenario(ROOT / "scenarios" / "toy.toml")


def norn(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "norn.engine.cli", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def journal_digests(run_dir: Path) -> dict[int, int]:
    out = {}
    kinds = None  # the journal's event kinds (a world's own come after protocol v1's)
    for frame in journal.JournalReader(Path(run_dir) / JOURNAL_NAME).frames():
        if frame.kind == journal.KIND_HEADER:
            kinds = event_table(unpack(frame.payload))
        elif frame.kind == journal.KIND_TICK:
            rec = decode_tick(frame.payload, kinds)
            out[rec.tick] = rec.digest
    return out


def column_state(world) -> dict[str, np.ndarray]:
    return {
        f"{t.name}.{c}": a[: t.hwm].copy()
        for t in world.tables.values()
        for c, a in t.columns.items()
    }
