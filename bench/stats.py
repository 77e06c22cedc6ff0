"""Summaries of repeated measurements, and comparison against a saved baseline.

A figure is never a single timing: it is the median of several repetitions with their
min and max, and the relative spread ``(max - min) / median`` is the noise a comparison
must exceed before it is flagged. (Mesa compares benchmark runs with confidence
intervals for the same reason; with the handful of repetitions a benchmark can afford,
the observed range is the honest interval.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: a change smaller than this is never flagged, however quiet both runs were
NOISE_FLOOR = 0.03

#: figures where a larger value is better; for all others (times, bytes) smaller is better
HIGHER_IS_BETTER = (
    "per_s",
    "gb_per_s",
    "efficiency",
    "ticks_per_s",
    "updates_per_s",
    "events_per_s",
    "mb_per_s",
)


def summarize(samples: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and relative spread of repeated measurements of one figure."""
    xs = np.asarray([float(x) for x in samples], dtype=np.float64)
    if xs.size == 0:
        return {"median": None, "min": None, "max": None, "n": 0, "spread": None}
    med = float(np.median(xs))
    lo = float(xs.min())
    hi = float(xs.max())
    spread = (hi - lo) / abs(med) if med else 0.0
    return {
        "median": _round(med),
        "min": _round(lo),
        "max": _round(hi),
        "n": int(xs.size),
        "spread": round(spread, 4),
    }


def percentile_ms(seconds: Iterable[float], q: float) -> float:
    xs = np.asarray(list(seconds), dtype=np.float64)
    return round(float(np.percentile(xs, q)) * 1e3, 4) if xs.size else 0.0


def _round(x: float) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    digits = max(0, 5 - math.floor(math.log10(abs(x))))
    return round(x, digits)


# -- flattening result files into comparable figures -------------------------------------
@dataclass(frozen=True)
class Figure:
    key: str  # "scenario/case/metric"
    median: float
    lo: float
    hi: float
    spread: float


def figures(result: dict[str, Any]) -> Iterator[Figure]:
    """Every comparable figure of a result file (summaries and plain numbers)."""
    for scen_name, scen in sorted(result.get("scenarios", {}).items()):
        for case in scen.get("cases", []):
            prefix = f"{scen_name}/{case['name']}"
            for metric, value in sorted(case.get("figures", {}).items()):
                fig = _as_figure(f"{prefix}/{metric}", value)
                if fig is not None:
                    yield fig


def _as_figure(key: str, value: Any) -> Figure | None:
    if isinstance(value, dict) and value.get("median") is not None:
        med = float(value["median"])
        return Figure(
            key,
            med,
            float(value.get("min", med)),
            float(value.get("max", med)),
            float(value.get("spread") or 0.0),
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Figure(key, float(value), float(value), float(value), 0.0)
    return None


def higher_is_better(key: str) -> bool:
    metric = key.rsplit("/", 1)[-1]
    return any(metric.endswith(s) for s in HIGHER_IS_BETTER)


@dataclass(frozen=True)
class Comparison:
    key: str
    base: float
    new: float
    ratio: float | None
    noise: float
    flag: str  # "" | "better" | "worse"


def compare(new: dict[str, Any], base: dict[str, Any]) -> list[Comparison]:
    """Ratio new/base for every figure present in both; flags changes beyond the noise.

    Noise is the larger relative spread of the two runs (or ``NOISE_FLOOR``); a change is
    flagged only when ``|ratio - 1|`` exceeds it, and then as better or worse according
    to whether the figure is a rate (higher is better) or a cost (lower is better).
    """
    base_figs = {f.key: f for f in figures(base)}
    out = []
    for f in figures(new):
        b = base_figs.get(f.key)
        if b is None:
            continue
        ratio = f.median / b.median if b.median else None
        noise = max(f.spread, b.spread, NOISE_FLOOR)
        flag = ""
        if ratio is not None and abs(ratio - 1.0) > noise:
            up = ratio > 1.0
            flag = "better" if up == higher_is_better(f.key) else "worse"
        out.append(Comparison(f.key, b.median, f.median, ratio, noise, flag))
    return out
