"""The scenarios of ``norn bench``: which cases each runs, their goals and their checks.

``run_scenario(name, opts)`` returns ``{"cases": [...], "goals": [...], "checks": [...]}``;
every case carries ``figures`` (what ``--compare`` reads). ``opts.tiny`` shrinks every
size so ``make test`` can run each scenario once as a smoke test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from norn.bench.harness import CaseSpec, run_case

SCENARIOS = ("core", "scale", "actors", "journal", "bridge", "boltzmann", "startup")
#: Run only when named, never by ``all``: ``fuzz`` is a robustness soak, not a speed figure;
#: ``replay`` records a 10,000-tick run first.
EXTRA_SCENARIOS = ("fuzz", "llm", "replay")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Options:
    sizes: list[int] | None = None
    repeat: int | None = None
    ticks: int | None = None
    peers: bool = False
    seed: int = 1
    isolate: bool = True
    tiny: bool = False
    triad_gbs: float = 0.0
    quiet_wait_s: float = 0.0
    log: Callable[[str], None] = field(default=_stderr)
    quiet: bool = False  # --json: no progress line on the terminal
    seconds: float | None = None  # bridge: the sustained client's sending time

    def rep(self, default: int, tiny: int = 2) -> int:
        return self.repeat if self.repeat is not None else (tiny if self.tiny else default)

    def n_ticks(self, default: int, tiny: int = 5) -> int:
        return self.ticks if self.ticks is not None else (tiny if self.tiny else default)


def _case(opts: Options, scenario: str, name: str, target: str, **params: Any) -> dict:
    opts.log(f"  {scenario}/{name} ...")
    spec = CaseSpec(scenario, name, f"norn.bench.scenarios.{target}", params)
    result = run_case(spec, isolate=opts.isolate, quiet_wait_s=opts.quiet_wait_s)
    result = {k: v for k, v in result.items() if not k.startswith("_")}
    return {"name": name, **result}


def _goal(name: str, value: float | None, target: float, op: str, unit: str) -> dict:
    met = None
    if value is not None:
        met = bool(value >= target) if op == ">=" else bool(value <= target)
    return {"name": name, "value": value, "target": target, "op": op, "unit": unit, "met": met}


def _median(case: dict, metric: str) -> float | None:
    v = case.get("figures", {}).get(metric)
    if isinstance(v, dict):
        return v.get("median")
    return v


# -- scenarios ----------------------------------------------------------------------------
def core(opts: Options) -> dict:
    rows = 10_000 if opts.tiny else 1_000_000
    ticks = opts.n_ticks(100)
    rep = opts.rep(5)
    cases = [
        _case(opts, "core", "empty", "world:core_case", variant="empty", rows=1000,
              systems=8, ticks=opts.n_ticks(2000, 20), repeat=rep, seed=opts.seed,
              triad_gbs=opts.triad_gbs),
        _case(opts, "core", f"digest/rows={rows}", "world:core_case", variant="digest",
              rows=rows, systems=8, ticks=ticks, repeat=rep, seed=opts.seed,
              triad_gbs=opts.triad_gbs),
        _case(opts, "core", f"journal/rows={rows}", "world:core_case", variant="journal",
              rows=rows, systems=8, ticks=ticks, repeat=rep, seed=opts.seed,
              triad_gbs=opts.triad_gbs),
    ]
    return {"cases": cases, "goals": [], "checks": []}


def scale(opts: Options) -> dict:
    from norn.bench.scenarios.world import (
        GOAL_BYTES_PER_NPC,
        GOAL_WORLD_NPCS,
        GOAL_WORLD_TICKS_PER_S,
    )

    sizes = opts.sizes or ([2000] if opts.tiny else [10_000, 100_000, 1_000_000])
    cases = []
    for n in sizes:
        cases.append(
            _case(opts, "scale", f"npcs={n}", "world:scale_case", npcs=n,
                  ticks=opts.n_ticks(50 if n < GOAL_WORLD_NPCS else 30),
                  warmup=3 if opts.tiny else 5, repeat=opts.rep(3), seed=opts.seed,
                  triad_gbs=opts.triad_gbs)
        )
    goals, notes = [], []
    if cases and cases[0].get("available", True):
        mem_ticks = 5
        base = _case(opts, "scale", "memory/npcs=0", "world:memory_case", npcs=0,
                     ticks=mem_ticks, seed=opts.seed)
        base_mb = _median(base, "peak_rss_mb")
        for c, n in zip(cases, sizes, strict=True):
            mem = _case(opts, "scale", f"memory/npcs={n}", "world:memory_case", npcs=n,
                        ticks=mem_ticks, seed=opts.seed)
            mb = _median(mem, "peak_rss_mb")
            if base_mb is not None and mb is not None and n:
                c["figures"]["bytes_per_npc"] = round((mb - base_mb) * 2**20 / n, 1)
        notes.append(
            f"bytes/NPC = (peak RSS of the world after {mem_ticks} ticks - that of the same "
            f"generator with 0 NPCs, {base_mb} MiB) / NPCs, each in a fresh process"
        )
        big = [c for c, n in zip(cases, sizes, strict=True) if n == GOAL_WORLD_NPCS]
        if big:
            goals.append(_goal("world ticks/s at 1M NPCs", _median(big[0], "ticks_per_s"),
                               GOAL_WORLD_TICKS_PER_S, ">=", "ticks/s"))
            goals.append(_goal("world bytes/NPC above an empty world",
                               big[0]["figures"].get("bytes_per_npc"), GOAL_BYTES_PER_NPC,
                               "<=", "B/NPC"))
    # the world imported from rAthena's data, at the 1M goal's NPCs per map (issue 14)
    from norn.bench.scenarios.world import rathena_data

    if rathena_data() is not None and not opts.sizes:
        per_map = 10 if opts.tiny else GOAL_WORLD_NPCS // 1000
        real = _case(opts, "scale", f"rathena/npcs_per_map={per_map}", "world:rathena_case",
                     npcs_per_map=per_map, ticks=opts.n_ticks(30), warmup=3 if opts.tiny else 5,
                     repeat=opts.rep(3), seed=opts.seed, triad_gbs=opts.triad_gbs)
        cases.append(real)
        if not opts.tiny:
            goals.append(_goal("imported rAthena world ticks/s at 1M NPCs scaled to its maps",
                               _median(real, "ticks_per_s"), GOAL_WORLD_TICKS_PER_S, ">=",
                               "ticks/s"))
        notes.append("rathena/*: norn scenario import of ../shared/rathena-data (or "
                     "NORN_RATHENA_DATA), GOAL_WORLD_NPCS / 1000 NPCs per imported map")
    return {"cases": cases, "goals": goals, "checks": [], "notes": notes, "plot": "scale"}


def actors(opts: Options) -> dict:
    sizes = opts.sizes or ([2000] if opts.tiny else [100_000])
    cases = []
    for n in sizes:
        world = _case(opts, "actors", f"world/npcs={n}", "world:scale_case", npcs=n,
                      ticks=opts.n_ticks(50), warmup=3 if opts.tiny else 5,
                      repeat=opts.rep(3), seed=opts.seed, triad_gbs=opts.triad_gbs)
        if not world.get("available", True):
            cases.append(world)
            continue
        for kind, k in sorted(world.get("kinds", {}).items()):
            figs = {"ms_per_tick": k["ms_per_tick"]}
            if "entity_updates_per_s" in k:
                figs["entity_updates_per_s"] = k["entity_updates_per_s"]
                figs["efficiency"] = k["efficiency"]
            case = {"name": f"{kind}/npcs={n}", "table": k["table"],
                    "entities": k["entities"], "systems": k["systems"], "figures": figs}
            if "bytes_per_update" in k:
                case["bytes_per_update"] = k["bytes_per_update"]
            cases.append(case)
    return {"cases": cases, "goals": [], "checks": []}


def journal(opts: Options) -> dict:
    n = (opts.sizes or [2000 if opts.tiny else 100_000])[0]
    cases = [
        _case(opts, "journal", f"fsync={fsync}/npcs={n}", "world:journal_case", npcs=n,
              ticks=opts.n_ticks(100, 10), repeat=opts.rep(3), seed=opts.seed, fsync=fsync,
              players=20 if opts.tiny else 500)
        for fsync in (True, False)
    ]
    return {"cases": cases, "goals": [], "checks": []}


def bridge(opts: Options) -> dict:
    """Burst, sustained and round trip, each said apart (bench/scenarios/bridge.py).

    The sustained case and the engine round trip run the generated default world (1M NPCs,
    or ``--sizes``), journaled with fsync; ``--ticks`` is the round trip's ticks and
    ``--seconds`` (default 30; ``--tiny`` 3) the sustained client's sending time.
    """
    from norn.bench.scenarios.bridge import GOAL_SUSTAINED_EVENTS_PER_S, GOAL_TICK_RATE_KEPT
    from norn.bench.scenarios.world import GOAL_INGEST_EVENTS_PER_S, GOAL_RTT_SLACK_MS

    events = 20_000 if opts.tiny else 2_000_000
    tick_ms = 20 if opts.tiny else 100
    npcs = (opts.sizes or [2000 if opts.tiny else 1_000_000])[0]
    seconds = opts.seconds if opts.seconds is not None else (3.0 if opts.tiny else 30.0)
    world_tick_ms = 50 if opts.tiny else 100
    burst = _case(opts, "bridge", "ingest/columns", "world:bridge_ingest_case", columnar=True,
                  events=events, batch_events=min(65536, events), repeat=opts.rep(3, 1))
    rows = _case(opts, "bridge", "ingest/rows", "world:bridge_ingest_case", columnar=False,
                 events=events // 10, batch_events=min(65536, events // 10), repeat=1)
    sustained = _case(opts, "bridge", f"sustained/npcs={npcs}/tick_ms={world_tick_ms}",
                      "bridge:sustained_case", npcs=npcs, seconds=seconds,
                      warmup_s=min(5.0, seconds / 5), tick_ms=world_tick_ms, seed=opts.seed,
                      batch_events=min(65536, events), fsync=True, triad_gbs=opts.triad_gbs)
    standin = _case(opts, "bridge", f"rtt-standin/tick_ms={tick_ms}", "world:bridge_rtt_case",
                    ticks=opts.n_ticks(100, 10), tick_ms=tick_ms)
    # the round trip through the real engine: the default world as operators run it (the
    # goal's world: it keeps its tick), and the generated one at ``npcs`` (1M: overloaded
    # on a small machine, said so by its measured tick rate)
    default_tick_ms = 100
    engine = _case(opts, "bridge", f"rtt-engine/world=midgard/tick_ms={default_tick_ms}",
                   "bridge:engine_rtt_case", npcs=0, ticks=opts.n_ticks(100, 10),
                   tick_ms=default_tick_ms, seed=opts.seed, fsync=True,
                   triad_gbs=opts.triad_gbs)
    big = _case(opts, "bridge", f"rtt-engine/npcs={npcs}/tick_ms={world_tick_ms}",
                "bridge:engine_rtt_case", npcs=npcs, ticks=opts.n_ticks(100, 10),
                tick_ms=world_tick_ms, seed=opts.seed, fsync=True, triad_gbs=opts.triad_gbs)
    burst["kind"] = "burst: one burst into the bridge, a bare thread drains it (no world)"
    rows["kind"] = "burst, list-of-maps rows"
    sustained["kind"] = ("sustained: a client process into the generated world for "
                         f"{seconds:g} s, realtime, journal + fsync")
    standin["kind"] = "round trip on the stand-in (MiniEngine: no tables, no journal)"
    engine["kind"] = ("round trip through the real engine (default world "
                      "scenarios/midgard.toml + echo probe, journal + fsync)")
    big["kind"] = ("round trip through the real engine (generated world + echo probe, "
                   "journal + fsync)" + ("; OVERLOADED: the world did not keep its tick "
                                         "rate, no goal" if big.get("overloaded") else ""))
    cases = [burst, rows, sustained, standin, engine, big]
    goals = []
    if burst.get("available", True):
        goals.append(_goal("bridge columnar ingest, burst (no world)",
                           _median(burst, "events_per_s"), GOAL_INGEST_EVENTS_PER_S, ">=",
                           "events/s"))
    if sustained.get("available", True):
        goals.append(_goal(f"sustained ingest into the {npcs}-NPC world",
                           _median(sustained, "events_per_s"), GOAL_SUSTAINED_EVENTS_PER_S,
                           ">=", "events/s"))
        goals.append(_goal("tick rate kept under sustained ingest (achieved / requested)",
                           _median(sustained, "tick_rate_kept"), GOAL_TICK_RATE_KEPT, ">=",
                           "ratio"))
    for c, what in ((standin, "stand-in"),
                    (engine, "real engine, default world, journal + fsync"),
                    (big, f"real engine, {npcs}-NPC world, journal + fsync")):
        if c.get("available", True) and not c.get("overloaded"):
            t = c.get("tick_ms", tick_ms)
            goals.append(_goal(f"bridge RTT p99 (tick {t} ms + 5 ms), {what}",
                               _median(c, "rtt_ms_p99"), t + GOAL_RTT_SLACK_MS, "<=", "ms"))
    return {"cases": cases, "goals": goals, "checks": []}


def vs_fastest_hand_written(engine: dict, group: list[dict]) -> dict:
    """Issue 16's goal line: the engine's rate over the fastest hand-written case's
    (``HAND_WRITTEN``) in the same run; the goal dict names that case in ``against``."""
    from norn.bench.scenarios.boltzmann import GOAL_VS_FASTEST_HAND_WRITTEN, HAND_WRITTEN

    e_rate = _median(engine, "agent_steps_per_s")
    hand = [(_median(c, "agent_steps_per_s"), c["name"]) for c in group
            if c["name"].split("/")[0] in HAND_WRITTEN and c.get("available", True)]
    hand = [(rate, name) for rate, name in hand if rate]
    f_rate, f_name = max(hand) if hand else (None, None)
    value = round(e_rate / f_rate, 3) if e_rate and f_rate else None
    goal = _goal(f"engine >= {GOAL_VS_FASTEST_HAND_WRITTEN}x the fastest hand-written "
                 "implementation in the same run", value, GOAL_VS_FASTEST_HAND_WRITTEN, ">=",
                 "ratio")
    goal["against"] = f_name
    return goal


def boltzmann(opts: Options) -> dict:
    from norn.bench.machine import LoadMeter
    from norn.bench.peers.envs import PeerUnavailable, run_peer
    from norn.bench.scenarios.boltzmann import (
        GOAL_AGENT_STEPS_PER_S,
        GOAL_AGENTS,
        gini_tolerance,
        peer_case,
        sequential_reference_gini,
    )

    sizes = opts.sizes or ([2000] if opts.tiny else [GOAL_AGENTS])
    steps = opts.n_ticks(100, 20)
    rep = opts.rep(5)
    cases, checks, goals, ratios, notes = [], [], [], {}, []
    for n in sizes:
        eng = _case(opts, "boltzmann", f"engine/n={n}", "boltzmann:engine_case", agents=n,
                    steps=steps, repeat=rep, seed=opts.seed, triad_gbs=opts.triad_gbs)
        ceil = _case(opts, "boltzmann", f"ceiling/n={n}", "boltzmann:kernel_case",
                     impl="ceiling", agents=n, steps=steps, repeat=rep, seed=opts.seed)
        nrng = _case(opts, "boltzmann", f"numba-rng/n={n}", "boltzmann:kernel_case",
                     impl="numba-rng", agents=n, steps=steps, repeat=rep, seed=opts.seed)
        nump = _case(opts, "boltzmann", f"numpy/n={n}", "boltzmann:kernel_case",
                     impl="numpy", agents=n, steps=steps, repeat=rep, seed=opts.seed)
        group = [eng, ceil, nrng, nump]
        if opts.peers:
            for peer, prep in (("mesa", 1), ("mesa-frames", min(rep, 3))):
                opts.log(f"  boltzmann/{peer}/n={n} ... (own environment)")
                try:
                    meter = LoadMeter()
                    res = run_peer(peer, n, steps, prep, opts.seed, timeout_s=3600, log=opts.log)
                    group.append({"name": f"{peer}/n={n}", **peer_case(res),
                                  "other_load_cores": meter.other_cores()})
                except PeerUnavailable as exc:
                    group.append({"name": f"{peer}/n={n}", "available": False,
                                  "reason": str(exc), "figures": {}})
        cases.extend(group)
        # -- checks: conservation, engine == ceiling, Gini agreement
        tol = gini_tolerance(n)
        g_eng = eng["figures"]["gini"]
        for c in group:
            if not c.get("available", True):
                continue
            total = c["figures"]["total_wealth"]
            checks.append({"name": f"{c['name']}: total wealth conserved", "ok": total == n,
                           "detail": f"{total} == {n}"})
            impl = c["name"].split("/")[0]
            if impl == "engine":
                continue
            if impl == "mesa":
                ref = round(sequential_reference_gini(n, steps, opts.seed), 5)
                ok = abs(c["figures"]["gini"] - ref) <= tol
                detail = (f"Gini {c['figures']['gini']} vs sequential reference {ref} "
                          f"(|diff| <= {tol}; mesa updates in place, so it settles higher)")
            else:
                ok = abs(c["figures"]["gini"] - g_eng) <= tol
                detail = f"Gini {c['figures']['gini']} vs engine {g_eng} (|diff| <= {tol})"
            checks.append({"name": f"{c['name']}: Gini after {steps} steps", "ok": bool(ok),
                           "detail": detail})
        same = eng.get("wealth_xxh3") == ceil.get("wealth_xxh3")
        checks.append({"name": f"engine/n={n} == ceiling/n={n} bit for bit", "ok": same,
                       "detail": "same Philox draws, so the same final wealth"})
        e_rate = _median(eng, "agent_steps_per_s")
        for c in group[1:]:
            rate = _median(c, "agent_steps_per_s")
            if e_rate and rate:
                ratios[f"engine / {c['name']}"] = round(e_rate / rate, 3)
        if n == GOAL_AGENTS:
            goals.append(_goal("Boltzmann agent-steps/s through the engine at 1M agents",
                               e_rate, GOAL_AGENT_STEPS_PER_S, ">=", "agent-steps/s"))
            for c in (ceil, nrng):
                c_rate = _median(c, "agent_steps_per_s")
                if e_rate and c_rate:
                    goals.append(_goal(f"engine within 2x of {c['name']}",
                                       round(e_rate / c_rate, 3), 0.5, ">=", "ratio"))
            goals.append(vs_fastest_hand_written(eng, group))
    notes.append(
        "update semantics: simultaneous (a gift sent in tick t is received in tick t+1); "
        "mesa activates agents one by one in place, so its Gini is checked against a "
        "sequential reference instead"
    )
    return {"cases": cases, "goals": goals, "checks": checks, "ratios": ratios,
            "notes": notes, "steps": steps, "plot": "boltzmann"}


def startup(opts: Options) -> dict:
    """Cold (empty numba cache) and warm start of ``norn run`` to its first tick.

    ``--tiny`` starts the toy world once each way (its kernels are few); the goals are
    those of the default world.
    """
    from norn.bench.scenarios.startup import GOAL_COLD_S, GOAL_WARM_S

    world = "toy" if opts.tiny else None
    name = "toy" if opts.tiny else "default"
    case = _case(opts, "startup", f"norn-run/{name}", "startup:startup_case",
                 cold=opts.rep(2, 1), warm=opts.rep(3, 1), world=world)
    goals = []
    if not opts.tiny:
        goals.append(_goal("cold start to the first tick (empty numba cache)",
                           _median(case, "cold_s"), GOAL_COLD_S, "<=", "s"))
        goals.append(_goal("warm start to the first tick", _median(case, "warm_s"),
                           GOAL_WARM_S, "<=", "s"))
    notes = ["each start is a fresh `norn run --ticks 1 --clock fast --no-fsync` process, "
             "spawn to exit; cold: an empty NUMBA_CACHE_DIR; warm: the same cache again",
             "a cold start compiles the kernels listed in engine/kernels.json on every usable "
             "core (engine/precompile.py; NORN_COMPILE_JOBS); CPU seconds count every process"]
    return {"cases": [case], "goals": goals, "checks": [], "notes": notes}


def replay(opts: Options) -> dict:
    """Designers' tools: verify's speed as a multiple of realtime, and seek time."""
    from norn.bench.scenarios.replay import GOAL_SEEK_S, GOAL_VERIFY_X_REALTIME

    npcs = (opts.sizes or [2000 if opts.tiny else 100_000])[0]
    tick_ms = 100
    verify = _case(opts, "replay", f"verify/npcs={npcs}", "replay:verify_case", npcs=npcs,
                   ticks=opts.n_ticks(200, 20), repeat=opts.rep(3, 1), seed=opts.seed,
                   tick_ms=tick_ms)
    ticks, every = (200, 50) if opts.tiny else (10_000, 500)
    seek = _case(opts, "replay", f"seek/ticks={ticks}/every={every}", "replay:seek_case",
                 npcs=0, ticks=ticks, snapshot_every=every, seeks=opts.rep(10, 4),
                 seed=opts.seed)
    goals = []
    if verify.get("available", True):
        goals.append(_goal(f"replay verify at {npcs} NPCs, x realtime ({tick_ms} ms ticks)",
                           _median(verify, "x_realtime"), GOAL_VERIFY_X_REALTIME, ">=", "x"))
    if seek.get("available", True):
        goals.append(_goal(f"slowest seek in a {ticks}-tick run, snapshots every {every}",
                           seek["figures"].get("seek_s_max"), GOAL_SEEK_S, "<=", "s"))
    notes = ["verify: replayed ticks/s from the first replayed tick to the last (the build "
             "and first tick apart); seek: a fresh Replay per tick sought, the default world"]
    return {"cases": [verify, seek], "goals": goals, "checks": [], "notes": notes}


def fuzz(opts: Options) -> dict:
    from norn.bench.scenarios.fuzz import run

    return run(opts)


RUNNERS: dict[str, Callable[[Options], dict]] = {
    "core": core,
    "scale": scale,
    "actors": actors,
    "journal": journal,
    "bridge": bridge,
    "boltzmann": boltzmann,
    "startup": startup,
    "fuzz": fuzz,
    "llm": lambda opts: __import__("norn.bench.scenarios.llm", fromlist=["run"]).run(opts),
    "replay": replay,
}


def run_scenario(name: str, opts: Options) -> dict:
    opts.log(f"{name}:")
    return RUNNERS[name](opts)
