"""The ``fuzz`` scenario: a long structure-aware fuzz run against a real bridge.

``norn bench fuzz`` sends ``--ticks`` frames (default 1,000,000; ``--tiny`` 20,000) of the
stream of ``--seed`` from ``norn.bridge.fuzz`` to a BridgeServer in a fresh process (with
``--in-process``: a thread of this one) over loopback TCP, checking every answer, the
server's counters, the journal and the queue as it goes (see ``bridge/fuzz.py``). It
reports frames, replies, dead letters, the server's RSS at the start, peak and end,
crashes and frames per second. A crash is isolated to one frame, printed with the seed
and index that reproduce it, and the run goes on against a new engine (with the next
seed), so one run counts every crash. The checks (no crash, every answer as documented,
RSS bounded) make the command exit 1 when they fail: this is a robustness soak, not a
speed goal, so it is not part of ``all``.
"""

from __future__ import annotations

import sys
from typing import Any

from norn.bridge import fuzz

#: RSS growth of the engine process (start of the run to its end) still called bounded.
RSS_GROWTH_MAX = 256 << 20
#: After this many crashes the run stops (each costs a new engine and an isolation).
CRASHES_MAX = 40


def _progress(enabled: bool):
    if not enabled:
        return None

    def show(done: int, total: int, rep: fuzz.FuzzReport) -> None:
        sys.stderr.write(
            f"\r    {done:,}/{total:,} frames ({100 * done / total:.1f}%), "
            f"{rep.frames_per_s:,.0f}/s since the start of this engine, "
            f"engine RSS {rep.rss_end / 2**20:.0f} MiB, failed checks {rep.failures_total}  "
        )
        sys.stderr.flush()

    return show


def run(opts: Any) -> dict[str, Any]:
    """The scenario for ``bench.suite``: one case, its checks and notes."""
    frames = opts.ticks if opts.ticks is not None else (20_000 if opts.tiny else 1_000_000)
    opts.log(f"  fuzz/frames={frames} ... (seed {opts.seed}, engine in "
             f"{'this process' if not opts.isolate else 'a fresh process'})")
    show = _progress(sys.stderr.isatty() and not getattr(opts, "quiet", False))
    done, seed = 0, opts.seed
    totals: dict[str, Any] = {"replies": 0, "dead_letters": 0, "failures": 0, "seconds": 0.0,
                              "identities": 0, "server_ids": 0, "welcomes": 0}
    errors: dict[str, int] = {}
    shapes: dict[str, int] = {}
    crashes: list[dict[str, Any]] = []
    failures: list[str] = []
    rss_start = rss_peak = rss_end = 0
    settings = []
    exclude: list[str] = []
    notes: list[str] = []
    while done < frames:
        target, harness = _engine(opts.isolate)
        try:
            rep = fuzz.run_fuzz(target, seed, frames - done, progress=show, exclude=exclude,
                                rss_growth_max=RSS_GROWTH_MAX, log=lambda _m: None)
        finally:
            target.close()
            if harness is not None:
                harness.stop()
        if show is not None:
            sys.stderr.write("\n")
        settings.append(rep.settings)
        done += max(rep.frames, 1)
        totals["seconds"] += rep.seconds
        for k in ("replies", "dead_letters", "identities", "server_ids", "welcomes"):
            totals[k] += getattr(rep, k)
        totals["failures"] += rep.failures_total
        failures += rep.failures[: max(0, 20 - len(failures))]
        for code, n in rep.errors_by_code.items():
            errors[str(code)] = errors.get(str(code), 0) + n
        for k, n in rep.shapes.items():
            shapes[k] = shapes.get(k, 0) + n
        rss_start = rss_start or rep.rss_start
        rss_peak = max(rss_peak, rep.rss_peak)
        rss_end = rep.rss_end
        for c in rep.crashes:
            crashes.append(c)
            opts.log(f"    CRASH {c['where']}")
            for line in c.get("trace_tail", [])[-3:]:
                opts.log(f"      {line}")
            sig = c.get("signature")
            if sig and sig not in exclude:
                exclude.append(sig)
        if not rep.crashes:
            break
        if len(crashes) >= CRASHES_MAX:
            notes.append(f"stopped after {len(crashes)} crashes, {done:,} of {frames:,} frames")
            break
        # a new engine and the next seed's stream, without the shapes that crashed so far
        seed += 1
    mib = 2**20
    case = {
        "name": f"fuzz/frames={frames}",
        "seeds": list(range(opts.seed, seed + 1)),
        "settings": settings,
        "figures": {
            "frames": done,
            "frames_per_s": round(done / totals["seconds"], 1) if totals["seconds"] else 0.0,
            "replies": totals["replies"],
            "dead_letters": totals["dead_letters"],
            "crashes": len(crashes),
            "failed_checks": totals["failures"],
            "rss_start_mb": round(rss_start / mib, 1),
            "rss_peak_mb": round(rss_peak / mib, 1),
            "rss_end_mb": round(rss_end / mib, 1),
        },
        "routing_ids": totals["identities"],
        "server_ids": totals["server_ids"],
        "errors_by_code": dict(sorted(errors.items(), key=lambda kv: int(kv[0]))),
        "shapes": dict(sorted(shapes.items())),
        "crashes": crashes,
        "excluded_after_crash": exclude,
        "failures": failures,
    }
    growth = rss_end - rss_start
    checks = [
        {"name": "fuzz: no crash (bridge thread died, or an internal error it contained)",
         "ok": not crashes,
         "detail": "; ".join(c["where"] for c in crashes[:5]) or "0 crashes"},
        {"name": "fuzz: every frame answered as PROTOCOL.md says, counters and journal exact",
         "ok": totals["failures"] == 0,
         "detail": failures[0][:300] if failures else "no failed check"},
        {"name": "fuzz: engine RSS bounded", "ok": growth <= RSS_GROWTH_MAX,
         "detail": f"{growth / mib:+.1f} MiB from start to end (bound "
                   f"{RSS_GROWTH_MAX // mib} MiB)"},
    ]
    if crashes:
        notes.append("reproduce a crash: python -m norn.bridge.fuzz replay SEED INDEX")
    notes += [f"engine {n}: {s}" for n, s in enumerate(settings[:5])]
    return {"cases": [case], "goals": [], "checks": checks, "notes": notes}


def _engine(isolate: bool) -> tuple[Any, Any]:
    """(target, harness to stop or None): a fresh engine with the fuzzing config."""
    if isolate:
        return fuzz.ProcessTarget(fuzz.fuzz_config()), None
    from norn.bridge.loadgen import demo_view
    from norn.bridge.testing import Harness

    h = Harness(fuzz.fuzz_config(), demo_view())
    return fuzz.HarnessTarget(h, keep_journal=False), h
