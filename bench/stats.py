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
    unjudged: str = ""  # why the change is not judged (another machine, size or mode)


#: Machine fields that change what a figure means: a figure measured where any of them
#: differs is shown beside the baseline's, never judged better or worse.
MACHINE_KEYS = ("cpu", "machine", "logical_cores", "usable_cores", "memory_gib")
#: Options that change what is measured (the world size, the ticks, smoke sizes, one
#: process or one per case, the world's seed, the peers run beside).
OPTION_KEYS = ("sizes", "ticks", "tiny", "isolated", "seed", "peers", "seconds")


def differences(new: dict[str, Any], base: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What separates two result files: (what makes their figures measure different things,
    what changed in the software measured).

    The first list (machine, numba threads and their environment, CPU flags, options) means
    a ratio is not a verdict; the second (Python, libraries, commit) is what a comparison is
    usually for, so it is said and the figures are still judged.
    """
    nm, bm = new.get("machine", {}), base.get("machine", {})
    apart = [f"machine {k}: baseline {bm.get(k)!r}, now {nm.get(k)!r}"
             for k in MACHINE_KEYS if nm.get(k) != bm.get(k)]
    nt, bt = nm.get("numba", {}), bm.get("numba", {})
    if (nt.get("layer"), nt.get("threads")) != (bt.get("layer"), bt.get("threads")):
        apart.append(f"numba threads: baseline {bt.get('layer')} x{bt.get('threads')}, "
                     f"now {nt.get('layer')} x{nt.get('threads')}")
    if nm.get("thread_env", {}) != bm.get("thread_env", {}):
        apart.append(f"machine thread_env: baseline {bm.get('thread_env', {})}, "
                     f"now {nm.get('thread_env', {})}")
    nf, bf = set(nm.get("cpu_flags") or ()), set(bm.get("cpu_flags") or ())
    if nf != bf:
        apart.append(f"CPU flags: baseline only {sorted(bf - nf)[:8]}, now only "
                     f"{sorted(nf - bf)[:8]}")
    no, bo = new.get("options", {}), base.get("options", {})
    apart += [f"option {k}: baseline {bo.get(k)!r}, now {no.get(k)!r}"
              for k in OPTION_KEYS if no.get(k) != bo.get(k)]
    changed = []
    if nm.get("python") != bm.get("python"):
        changed.append(f"python: baseline {bm.get('python')}, now {nm.get('python')}")
    nl, bl = nm.get("libraries", {}), bm.get("libraries", {})
    changed += [f"{lib}: baseline {bl.get(lib)}, now {nl.get(lib)}"
                for lib in sorted(set(nl) | set(bl)) if nl.get(lib) != bl.get(lib)]
    ng, bg = nm.get("git", {}).get("commit"), bm.get("git", {}).get("commit")
    nh, bh = nm.get("git", {}).get("source_hash"), bm.get("git", {}).get("source_hash")
    same = " (the same sources: only what cannot change a figure differs)" \
        if nh and nh == bh else ""
    if ng != bg:
        changed.append(f"commit: baseline {str(bg)[:10]}, now {str(ng)[:10]}{same}")
    if nh != bh and not (ng != bg and (nh is None or bh is None)):
        changed.append(f"sources: baseline {str(bh)[:19]}, now {str(nh)[:19]}")
    for label, doc in (("baseline", bm), ("now", nm)):
        if doc.get("git", {}).get("dirty"):
            changed.append(f"{label}: measured on a dirty tree (local changes)")
    return apart, changed


def _entities(result: dict[str, Any]) -> dict[str, Any]:
    """scenario/case -> the world size it measured (when the case says)."""
    return {f"{s}/{c['name']}": c.get("entities")
            for s, scen in result.get("scenarios", {}).items() for c in scen.get("cases", [])}


def compare(new: dict[str, Any], base: dict[str, Any]) -> list[Comparison]:
    """Ratio new/base for every figure present in both; flags changes beyond the noise.

    Noise is the larger relative spread of the two runs (or ``NOISE_FLOOR``); a change is
    flagged only when ``|ratio - 1|`` exceeds it, and then as better or worse according
    to whether the figure is a rate (higher is better) or a cost (lower is better). Never
    when the two runs measured different things (``differences``: another machine, size,
    or mode; or a case of another world size): the ratio is shown, ``unjudged`` says why.
    """
    apart, _ = differences(new, base)
    new_sizes, base_sizes = _entities(new), _entities(base)
    base_figs = {f.key: f for f in figures(base)}
    out = []
    for f in figures(new):
        b = base_figs.get(f.key)
        if b is None:
            continue
        ratio = f.median / b.median if b.median else None
        noise = max(f.spread, b.spread, NOISE_FLOOR)
        case = f.key.rsplit("/", 1)[0]
        unjudged = "; ".join(apart)
        if not unjudged and new_sizes.get(case) != base_sizes.get(case):
            unjudged = (f"world size: baseline {base_sizes.get(case)}, "
                        f"now {new_sizes.get(case)}")
        flag = ""
        if not unjudged and ratio is not None and abs(ratio - 1.0) > noise:
            up = ratio > 1.0
            flag = "better" if up == higher_is_better(f.key) else "worse"
        out.append(Comparison(f.key, b.median, f.median, ratio, noise, flag, unjudged))
    return out
