"""Shared by the peer scripts (copied into nothing: they import it by path)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def gini(wealth: np.ndarray) -> float:
    """Gini coefficient of non-negative integer wealth (the same formula as Norn's)."""
    w = np.sort(np.asarray(wealth, dtype=np.int64))
    n = len(w)
    total = int(w.sum())
    if n == 0 or total == 0:
        return 0.0
    weighted = int((np.arange(1, n + 1, dtype=np.int64) * w).sum())
    return (2.0 * weighted) / (n * total) - (n + 1) / n


def versions(*names: str) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def measure(
    impl: str,
    args: argparse.Namespace,
    build: Callable[[int, int], Any],
    step: Callable[[Any], None],
    wealth: Callable[[Any], np.ndarray],
    packages: tuple[str, ...],
) -> None:
    """Build (untimed), run ``steps`` steps (timed) ``repeat`` times; print one JSON line."""
    runs, setups = [], []
    model = None
    for r in range(args.repeat):
        t0 = time.perf_counter()
        model = build(args.agents, args.seed + r)
        t1 = time.perf_counter()
        for _ in range(args.steps):
            step(model)
        t2 = time.perf_counter()
        setups.append(t1 - t0)
        runs.append(t2 - t1)
    w = np.asarray(wealth(model), dtype=np.int64)
    print(
        json.dumps(
            {
                "impl": impl,
                "agents": args.agents,
                "steps": args.steps,
                "repeat": args.repeat,
                "setup_s": setups,
                "run_s": runs,
                "total_wealth": int(w.sum()),
                "gini": gini(w),
                "versions": versions(*packages),
            }
        ),
        flush=True,
    )
