"""The ``llm`` scenario (``norn bench llm``): the LLM tier's goals, measured, never asserted.

Cases (``--tiny`` shrinks ticks and sizes so ``make test`` could smoke it):

- ``steady``: the default world (``scenarios/midgard.toml`` with its own event source) with
  the LLM tier on the embedded offline provider: model calls per 1,000 decisions (decisions
  = NPC behaviour updates settled by the rules + escalated requests), and per tier
  (cache, batched, single, fallback). Goal: at most 1 call per 1,000 decisions.
- ``slow-provider``: the same world, its escalations sent to the fake server over loopback
  with 2 s latency and 5 % of calls failing (500), against a rules-only run (the built-in
  resolver) of the same ticks: tick p99 of both and their ratio. Goal: within 5 %. The
  server runs in its own process (a remote provider's CPU is not the engine's), and the
  two kinds of run alternate, three of each (``--tiny``: one), compared by median p99.
- ``cache``: the cost of a cache lookup per request with the cache full (64k entries).
- ``labelled``: the cache's labelled set, hits and false hits on the held-out half.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

GOAL_CALLS_PER_1000 = 1.0
GOAL_P99_RATIO = 1.05


def _world(seed: int, ticks: int):
    from norn.bench.scenarios.world import event_hook
    from norn.engine.config import make_config
    from norn.engine.runner import build_world
    from norn.engine.scenario import load_scenario

    scenario = load_scenario()
    config = make_config(None, seed=seed, ticks=ticks, fsync=False)
    world = build_world(scenario, config)
    hook = event_hook(scenario, seed)
    return world, config, scenario, (lambda t: hook(world, t)) if hook else None


def _npc_updates(world, scenario, ticks: int) -> int:
    every = scenario.data.get("rules", {}).get("npc", {}).get("update_every_ticks", 1) \
        if isinstance(getattr(scenario, "data", None), dict) else 1
    return int(world.tables["npc"].count * ticks / max(int(every), 1))


def _p99(xs: list[float]) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, 99)) if xs else 0.0


def steady_case(seed: int, ticks: int) -> dict[str, Any]:
    from norn.engine.runner import run
    from norn.llm.resolver import LlmResolver

    world, config, scenario, feed = _world(seed, ticks)
    res = LlmResolver(seed=seed, tick_ms=config.tick_ms)
    world.resolver = res
    world.lockstep, world.lockstep_timeout_s = False, 10.0
    summary = run(world, config, before_tick=feed)
    res.wait(world.tick + 1, 10.0)
    s = res.summary()
    res.close()
    escalated = int(summary.decisions.get("requested", 0))
    decisions = _npc_updates(world, scenario, ticks) + escalated
    per = 1000.0 * s["calls"] / max(decisions, 1)
    figs: dict[str, Any] = {"calls_per_1000_decisions": round(per, 4), "calls": s["calls"],
                            "decisions": decisions, "escalated": escalated,
                            "calls_saved": s["calls_saved"],
                            "fallbacks": sum(s["fallbacks"].values())}
    for k, v in s["by_tier"].items():  # decisions each tier settled, per 1,000 decisions
        figs[f"tier_{k}_per_1000"] = round(1000.0 * v / max(decisions, 1), 4)
    return {"figures": figs, "fallback_reasons": s["fallbacks"], "ticks": ticks}


@contextmanager
def _provider_process(plan: list[dict[str, Any]]) -> Iterator[str]:
    """The fake model server in its own process, as a remote provider is: its work (HTTP,
    JSON, sleeping out the latency) must not share the engine's interpreter, or the figure
    would charge the provider's CPU to the tick. Yields the server's base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "norn.engine.cli", "llm", "serve-fake", "--port", str(port),
         "--faults", json.dumps(plan)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "fake model server on" not in line:
            raise RuntimeError(f"the fake provider did not start: {line!r} "
                               f"{proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def slow_case(seed: int, ticks: int, latency_s: float, reps: int = 3) -> dict[str, Any]:
    """Rules-only and LLM runs of the same ticks, interleaved ``reps`` times each (so drift
    of the machine hits both alike); the ratio of the medians of their tick p99s."""
    from norn.engine.runner import run
    from norn.llm.resolver import LlmResolver
    from norn.llm.settings import LlmSettings, ProviderSpec, UseCaseSettings, Variant

    plan = [{"fault": "server_error", "permille": 50},
            {"fault": "latency", "latency_s": latency_s}]
    p_base: list[float] = []
    p_llm: list[float] = []
    calls = fallbacks = 0
    reasons: dict[str, int] = {}
    with _provider_process(plan) as url:
        uc = UseCaseSettings(variants={"fake": Variant(provider="fake")},
                             aliases={"champion": "fake"})
        settings = LlmSettings(
            providers={"fake": ProviderSpec(kind="openai", base_url=url + "/v1",
                                            structured="json_schema",
                                            timeout_s=latency_s + 2)},
            default=uc, retries=0, call_timeout_s=latency_s + 2)
        for _ in range(reps):
            world, config, _, feed = _world(seed, ticks)
            p_base.append(_p99(run(world, config, before_tick=feed).tick_s))
            world, config, _, feed = _world(seed, ticks)
            res = LlmResolver(settings, seed=seed, tick_ms=config.tick_ms)
            world.resolver = res
            p_llm.append(_p99(run(world, config, before_tick=feed).tick_s))
            s = res.summary()
            res.close(timeout_s=latency_s + 3)
            calls += s["calls"]
            fallbacks += sum(s["fallbacks"].values())
            for k, v in s["fallbacks"].items():
                reasons[k] = reasons.get(k, 0) + v
    b, m = float(np.median(p_base)), float(np.median(p_llm))
    return {"figures": {"tick_p99_ms_rules_only": round(b, 3),
                        "tick_p99_ms_llm": round(m, 3),
                        "p99_ratio": round(m / b, 4) if b else None,
                        "p99_ms_rules_only_runs": [round(x, 3) for x in p_base],
                        "p99_ms_llm_runs": [round(x, 3) for x in p_llm],
                        "provider_latency_s": latency_s, "provider": "own process",
                        "runs_each": reps, "calls": calls, "fallbacks": fallbacks},
            "fallback_reasons": reasons, "ticks": ticks}


def cache_case(entries: int, lookups: int) -> dict[str, Any]:
    from norn.engine.decisions import REQUEST
    from norn.llm.cache import DecisionCache, calibrated_use_cases

    uc = next(u for u in calibrated_use_cases() if u.name == "npc_behaviour")
    gen = np.random.default_rng(1)

    def batch(n: int) -> np.ndarray:
        r = np.zeros(n, REQUEST)
        r["kind"], r["n_options"] = uc.kind, 2
        r["options"][:, :2] = gen.integers(0, 8, (n, 2))
        r["context"][:, :11] = gen.random((n, 11))
        r["context"][:, 11] = r["options"][:, 0]
        return r

    cache = DecisionCache(entries_max=entries)
    rows = batch(entries)
    b, e, f = uc.keys(rows)
    cache.insert(b, e, f, np.zeros(entries, np.int16))
    q = batch(lookups)
    t0 = time.perf_counter()
    qb, qe, qf = uc.keys(q)
    t1 = time.perf_counter()
    for lo in range(0, lookups, 32):
        cache.lookup(uc, qb[lo : lo + 32], qe[lo : lo + 32], qf[lo : lo + 32])
    t2 = time.perf_counter()
    return {"figures": {"keys_us_per_request": round((t1 - t0) / lookups * 1e6, 3),
                        "lookup_us_per_request": round((t2 - t1) / lookups * 1e6, 3),
                        "entries": entries, "hit_rate": cache.stats.as_dict()["hit_rate"]}}


def labelled_case() -> dict[str, Any]:
    from norn.llm.cache import evaluate

    rep = evaluate()
    figs: dict[str, Any] = {}
    for k, v in rep.items():
        figs[f"{k}_hits"] = f"{v['hits']}/{v['should_hit']}"
        figs[f"{k}_false_hits"] = f"{v['false_hits']}/{v['should_miss']}"
    return {"figures": figs, "report": rep}


def run(opts: Any) -> dict[str, Any]:
    from norn.bench.suite import _goal

    ticks = opts.ticks if opts.ticks is not None else (40 if opts.tiny else 600)
    cases = []
    opts.log(f"  llm/steady (default world, offline provider, {ticks} ticks) ...")
    cases.append({"name": "steady", **steady_case(opts.seed, ticks)})
    latency = 2.0
    opts.log(f"  llm/slow-provider ({latency:g} s, 5% failing; and rules only) ...")
    cases.append({"name": "slow-provider",
                  **slow_case(opts.seed, ticks, latency, reps=1 if opts.tiny else 3)})
    n = 4096 if opts.tiny else 65536
    opts.log(f"  llm/cache (full at {n} entries) ...")
    cases.append({"name": f"cache/entries={n}", **cache_case(n, 4096)})
    cases.append({"name": "labelled", **labelled_case()})
    f0, f1 = cases[0]["figures"], cases[1]["figures"]
    goals = [
        _goal("model calls per 1,000 decisions", f0["calls_per_1000_decisions"],
              GOAL_CALLS_PER_1000, "<=", "calls"),
        _goal("tick p99 with a 2 s, 5%-failing provider / rules only", f1["p99_ratio"],
              GOAL_P99_RATIO, "<=", "ratio"),
    ]
    checks = [{"name": f"labelled set: no false hit ({k})", "ok": v["false_hits"] == 0,
               "detail": f"{v['false_hits']}/{v['should_miss']}"}
              for k, v in cases[3]["report"].items()]
    return {"cases": cases, "goals": goals, "checks": checks}
