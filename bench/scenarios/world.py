"""Cases of the ``core``, ``scale``, ``actors``, ``journal`` and ``bridge`` scenarios.

Every case is a plain function returning a dict with ``figures`` (what ``--compare``
reads), so the harness can run it in a fresh process. The generated Rune-Midgarts world
comes from ``norn.actors.midgard.generate`` and the bridge figures from ``norn.bridge.loadgen``;
when either is missing the case says so ("not available yet") instead of failing.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from norn.bench.harness import (
    bench_config,
    efficiency,
    measure_world,
    world_bytes_per_update,
)
from norn.bench.machine import peak_rss_bytes
from norn.bench.stats import summarize
from norn.engine import clock
from norn.engine.config import RunConfig
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import Scenario, parse_scenario
from norn.engine.table import Column
from norn.engine.world import World

# Goals of the world and bridge scenarios (issue #5 and DESIGN): checked here, never by tests.
GOAL_WORLD_TICKS_PER_S = 30.0
GOAL_WORLD_NPCS = 1_000_000
GOAL_BYTES_PER_NPC = 200.0
GOAL_INGEST_EVENTS_PER_S = 5_000_000
GOAL_RTT_SLACK_MS = 5.0

#: actor kind (plugin) -> the table whose rows count as its entities
KIND_TABLES = {
    "npc": "npc",
    "economy": "market",
    "faction": "territory",
    "hazard": "hazard_map",
    "players": "player",
}


class NotAvailable(RuntimeError):
    """A dependency of the scenario is not in this tree yet."""


def not_available(what: str, exc: BaseException) -> dict[str, Any]:
    return {"available": False, "reason": f"{what} not available yet ({exc})", "figures": {}}


# -- the generated world -------------------------------------------------------------------
def world_params(npcs: int) -> dict[str, int]:
    """Generator parameters scaled from the 1M goal world (1000 maps, 10k markets ...)."""
    k = max(npcs, 1) / GOAL_WORLD_NPCS
    return {
        "maps": max(4, round(1000 * k)),
        "npcs": npcs,
        "markets": max(64, round(10_000 * k)),
        "factions": 64 if npcs >= 100_000 else 16,
        "hazards": max(4, round(1000 * k)),
    }


def generated(npcs: int, seed: int, players: int = 0) -> Scenario:
    try:
        gen = importlib.import_module("norn.actors.midgard.generate")
    except ImportError as exc:
        raise NotAvailable(f"norn.actors.midgard.generate: {exc}") from exc
    return gen.generate(**world_params(npcs), seed=seed, players=players)


def event_hook(scenario: Scenario, seed: int) -> Callable[[World, int], None] | None:
    """The model's simulated input source, as ``norn run`` feeds it without a bridge."""
    make_source = scenario.world_model().make_event_source
    if make_source is None:
        return None
    source = make_source(scenario.data, seed)

    def feed(world: World, tick: int) -> None:
        for batch in source(tick):
            world.inputs.offer(batch)

    return feed


def messages_per_tick(world: World) -> float:
    return float(sum(ch.count for ch in world.channels.values()))


def scale_case(
    npcs: int, ticks: int, warmup: int, repeat: int, seed: int, triad_gbs: float
) -> dict[str, Any]:
    """The generated world at ``npcs`` NPCs: ticks/s, NPC-updates/s, phases, peak RSS."""
    try:
        scenario = generated(npcs, seed)
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    result, world = _measure_npc_world(scenario, npcs, ticks, warmup, repeat, seed, triad_gbs)
    result["params"] = world_params(npcs)
    result["tables"] = {name: t.count for name, t in world.tables.items()}
    result["kinds"] = kind_times(world, result["system_ms"], triad_gbs)
    return result


def _measure_npc_world(scenario: Any, npcs: int, ticks: int, warmup: int, repeat: int,
                       seed: int, triad_gbs: float) -> tuple[dict[str, Any], Any]:
    """A Midgard world's ticks with its own event source: the measured figures as
    NPC-updates/s, bytes per NPC-update and its triad share; and the world measured."""
    config = bench_config(seed=seed)
    result = measure_world(lambda: build_world(scenario, config), config,
                           entities=max(npcs, 1), ticks=ticks, warmup=warmup, repeat=repeat,
                           before_tick=event_hook(scenario, seed))
    world = result.pop("_world")
    figs = result["figures"]
    figs["npc_updates_per_s"] = figs.pop("entity_updates_per_s")
    bpu = world_bytes_per_update(world, messages_per_tick(world), max(npcs, 1))
    result["bytes_per_update"] = round(bpu, 2)
    figs["efficiency"] = efficiency(bpu, figs["npc_updates_per_s"]["median"], triad_gbs)
    return result, world


def rathena_data() -> Path | None:
    """The rAthena checkout the imported-world case reads (``NORN_RATHENA_DATA``, else
    ``../shared/rathena-data`` beside the repository); None when absent."""
    import os

    root = Path(os.environ.get("NORN_RATHENA_DATA",
                               Path(__file__).resolve().parents[3] / "shared" / "rathena-data"))
    return root if (root / "db" / "map_index.txt").is_file() else None


def rathena_case(npcs_per_map: int, ticks: int, warmup: int, repeat: int, seed: int,
                 triad_gbs: float) -> dict[str, Any]:
    """The world ``norn scenario import`` builds from rAthena's data (every map its scripts
    touch), with the 1M-NPC goal scaled to its map count: ``npcs_per_map`` NPCs a map
    (the goal world has GOAL_WORLD_NPCS over 1000 maps)."""
    root = rathena_data()
    if root is None:
        return not_available("rAthena data", FileNotFoundError("set NORN_RATHENA_DATA"))
    try:
        from norn.actors.midgard.importer import import_scenario
    except ImportError as exc:
        return not_available("norn.actors.midgard.importer", exc)
    _, counted = import_scenario(root, npcs=0, seed=seed)
    npcs = npcs_per_map * counted["maps"]
    text, summary = import_scenario(root, npcs=npcs, seed=seed)
    scenario = parse_scenario(text, f"rathena:{root}")
    result, _ = _measure_npc_world(scenario, npcs, ticks, warmup, repeat, seed, triad_gbs)
    result["params"] = {**summary, "npcs_per_map": npcs_per_map}
    return result


def memory_case(npcs: int, ticks: int, seed: int) -> dict[str, Any]:
    """Peak RSS after building the world and running ``ticks`` ticks (for bytes/NPC)."""
    try:
        scenario = generated(npcs, seed)
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    config = bench_config(seed=seed)
    world = build_world(scenario, config)
    run(world, config, ticks=ticks)
    return {"entities": npcs, "figures": {"peak_rss_mb": round(peak_rss_bytes() / 2**20, 2)}}


def kind_times(world: World, system_ms: dict[str, float], triad_gbs: float = 0.0
               ) -> dict[str, Any]:
    """Each actor kind's own systems (timed one by one by the engine), per its entities.

    A kind's bytes per entity-update are its table's row read and written once (the
    yardstick of ``world_bytes_per_update`` for one table, its messages not counted)."""
    plugin_of = {s.name: s.plugin for s in world.schedule.systems}
    kinds: dict[str, dict[str, Any]] = {}
    for name, ms in system_ms.items():
        kind = plugin_of.get(name, name.split(".")[0])
        k = kinds.setdefault(kind, {"ms_per_tick": 0.0, "systems": {}})
        k["ms_per_tick"] += ms
        k["systems"][name] = ms
    for kind, k in kinds.items():
        table = world.tables.get(KIND_TABLES.get(kind, kind))
        k["ms_per_tick"] = round(k["ms_per_tick"], 4)
        k["table"] = table.name if table is not None else None
        k["entities"] = table.count if table is not None else None
        if table is not None and table.count and k["ms_per_tick"] > 0:
            k["entity_updates_per_s"] = round(table.count / (k["ms_per_tick"] / 1e3))
            row = sum(c.itemsize * int(np.prod(c.shape[1:])) for c in table.columns.values())
            k["bytes_per_update"] = float(2 * row)
            k["efficiency"] = efficiency(2 * row, k["entity_updates_per_s"], triad_gbs)
    return kinds


# -- core: the engine's own overhead ------------------------------------------------------
class _CorePlugin:
    """A table of ``rows`` rows and ``systems`` systems that do nothing, one per phase in
    turn; with ``dirty`` one more system declares it wrote every column, so every chunk is
    rehashed every tick (the digest's worst case)."""

    name = "core"

    def __init__(self, rows: int, systems: int, dirty: bool) -> None:
        self.rows, self.systems, self.dirty = rows, systems, dirty

    def build(self, world: World) -> None:
        from norn.engine.schedule import PHASES

        cols = [Column("a", np.int64), Column("b", np.float32), Column("c", np.int32)]
        table = world.add_table("thing", cols, self.rows)
        table.spawn(self.rows, a=np.arange(self.rows, dtype=np.int64))
        for i in range(self.systems):
            world.add_system(f"core.noop{i:02d}", PHASES[i % len(PHASES)], _noop)
        if self.dirty:
            world.add_system("core.touch", "act", _touch, writes=("thing.*",))


def _noop(world: World) -> None:
    return None


def _touch(world: World) -> None:
    t = world.tables["thing"]
    t["a"][: t.hwm] += 1  # a real write, so the rehash is of changed chunks


def core_world(rows: int, systems: int, dirty: bool, seed: int) -> Callable[[], World]:
    def make() -> World:
        from norn.engine.runner import start

        world = World(seed)
        world.add_plugin(_CorePlugin(rows, systems, dirty))
        world.build()
        start(world)
        return world

    return make


def core_case(
    variant: str, rows: int, systems: int, ticks: int, repeat: int, seed: int,
    triad_gbs: float = 0.0,
) -> dict[str, Any]:
    """``empty``: no-op systems only; ``digest``: every chunk rehashed; ``journal``: +journal."""
    dirty = variant in ("digest", "journal")
    config = bench_config(seed=seed)
    make = core_world(rows, systems, dirty, seed)
    if variant != "journal":
        result = measure_world(
            make, config, entities=rows, ticks=ticks, warmup=5, repeat=repeat
        )
        world = result.pop("_world")
    else:
        result, world = _journal_core(make, config, rows, ticks, repeat)
    figs = result["figures"]
    figs["tick_us_overhead"] = round(1e6 / figs["ticks_per_s"]["median"], 2)
    bpu = world_bytes_per_update(world, messages_per_tick(world), rows)
    result["bytes_per_update"] = round(bpu, 2)
    figs["efficiency"] = efficiency(bpu, rows * figs["ticks_per_s"]["median"], triad_gbs)
    if dirty:
        hashed = sum(
            r.get().nbytes for r in world.digest.regions if r.group == "thing"
        )
        commit_ms = result["phase_ms"].get("commit", 0.0)
        result["digest_bytes_per_tick"] = hashed
        if commit_ms > 0:
            figs["digest_mb_per_s"] = round(hashed / (commit_ms / 1e3) / 1e6, 1)
    return result


def _journal_core(
    make: Callable[[], World], config: RunConfig, rows: int, ticks: int, repeat: int
) -> tuple[dict[str, Any], World]:
    from norn.engine.recorder import Recorder

    tmp = Path(tempfile.mkdtemp(prefix="norn-bench-core-"))
    try:
        scenario = parse_scenario('name = "core"\nmodel = "toy"\n', "core.toml")
        rates, ticks_s, record_s, journal_bytes = [], [], [], []
        world = make()
        run(world, config, ticks=5)
        world.phase_seconds.clear()
        for r in range(repeat):
            rec = Recorder.create(
                tmp / f"run{r}", make_header(scenario, config, world), fsync=False,
                snapshot_every=0,
            )
            timed = _TimedRecorder(rec)
            s = run(world, config, recorder=timed, ticks=ticks)  # type: ignore[arg-type]
            rec.close(world, "completed")
            rates.append(ticks / sum(s.tick_s))
            ticks_s.extend(s.tick_s)
            record_s.append(timed.seconds / ticks * 1e3)
            journal_bytes.append((tmp / f"run{r}" / "journal.norn").stat().st_size / ticks)
        from norn.bench.stats import percentile_ms

        result = {
            "entities": rows,
            "ticks": ticks,
            "repeat": repeat,
            "figures": {
                "ticks_per_s": summarize(rates),
                "tick_ms_p50": percentile_ms(ticks_s, 50),
                "tick_ms_p99": percentile_ms(ticks_s, 99),
                "journal_ms_per_tick": summarize(record_s),
                "journal_bytes_per_tick": round(float(np.median(journal_bytes)), 1),
                "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
            },
            "phase_ms": {k: round(v / (ticks * repeat) * 1e3, 4) for k, v in
                         world.phase_seconds.items()},
        }
        return result, world
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _TimedRecorder:
    """Wraps a Recorder to time its per-tick work (encode, write, fsync)."""

    def __init__(self, rec: Any) -> None:
        self.rec = rec
        self.seconds = 0.0

    def record(self, world: World, tick_record: Any) -> None:
        t0 = clock.monotonic()
        self.rec.record(world, tick_record)
        self.seconds += clock.monotonic() - t0


# -- journal: write MB/s and verify ticks/s -----------------------------------------------
def journal_case(
    npcs: int, ticks: int, repeat: int, seed: int, fsync: bool, players: int
) -> dict[str, Any]:
    """Record ``ticks`` ticks of a world with its inputs, then verify the journal."""
    from norn.engine.recorder import JOURNAL_NAME, Recorder
    from norn.replays.verify import verify

    try:
        scenario = generated(npcs, seed, players=players)
        model = "midgard"
    except NotAvailable:
        scenario = parse_scenario(
            f'name = "toy"\nmodel = "toy"\n[toy]\nwalkers = {npcs}\ncapacity = {npcs + 64}\n',
            "toy-bench.toml",
        )
        model = "toy"
    config = bench_config(seed=seed, fsync=fsync, ticks=ticks)
    hook = event_hook(scenario, seed)
    write_mb_s, write_ms, verify_tps, sizes = [], [], [], []
    tmp = Path(tempfile.mkdtemp(prefix="norn-bench-journal-"))
    try:
        for r in range(repeat):
            out = tmp / f"run{r}"
            world = build_world(scenario, config)
            rec = Recorder.create(
                out, make_header(scenario, config, world), fsync=fsync, snapshot_every=0
            )
            timed = _TimedRecorder(rec)
            before = None if hook is None else (lambda t, w=world: hook(w, t))
            run(world, config, recorder=timed, ticks=ticks, before_tick=before)  # type: ignore[arg-type]
            rec.close(world, "completed")
            size = (out / JOURNAL_NAME).stat().st_size
            sizes.append(size)
            write_mb_s.append(size / timed.seconds / 1e6)
            write_ms.append(timed.seconds / ticks * 1e3)
            t0 = clock.monotonic()
            res = verify(out)
            dt = clock.monotonic() - t0
            if not res.matched:
                raise AssertionError(f"verify diverged: {res.as_dict()}")
            verify_tps.append(res.ticks / dt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "entities": npcs,
        "ticks": ticks,
        "repeat": repeat,
        "model": model,
        "fsync": fsync,
        "figures": {
            "write_mb_per_s": summarize(write_mb_s),
            "write_ms_per_tick": summarize(write_ms),
            "verify_ticks_per_s": summarize(verify_tps),
            "journal_bytes_per_tick": round(float(np.median(sizes)) / ticks, 1),
        },
    }


# -- bridge --------------------------------------------------------------------------------
def bridge_ingest_case(columnar: bool, events: int, batch_events: int, repeat: int) -> dict:
    try:
        loadgen = importlib.import_module("norn.bridge.loadgen")
        fn = loadgen.measure_ingest
    except (ImportError, AttributeError) as exc:
        return not_available("norn.bridge.loadgen.measure_ingest", exc)
    runs = [fn(columnar, events, batch_events) for _ in range(repeat)]
    return {
        "events": events,
        "batch_events": batch_events,
        "repeat": repeat,
        "runs": runs,
        "figures": {
            "events_per_s": summarize([r["events_per_s"] for r in runs]),
            "mb_per_s": summarize([r["mb_per_s"] for r in runs]),
        },
    }


def bridge_rtt_case(ticks: int, tick_ms: int) -> dict:
    try:
        loadgen = importlib.import_module("norn.bridge.loadgen")
        fn = loadgen.measure_round_trip
    except (ImportError, AttributeError) as exc:
        return not_available("norn.bridge.loadgen.measure_round_trip", exc)
    r = fn(ticks, tick_ms)
    return {
        "ticks": ticks,
        "tick_ms": tick_ms,
        "engine": r.get("engine", "stand-in (MiniEngine: no tables, no journal)"),
        "run": r,
        "figures": {
            "rtt_ms_p50": r["p50_ms"],
            "rtt_ms_p99": r["p99_ms"],
            "rtt_ms_max": r["max_ms"],
            "lost": r["lost"],
        },
    }
