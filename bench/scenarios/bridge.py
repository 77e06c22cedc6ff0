"""Bridge cases through the real engine: sustained ingest and the event-to-action round trip.

``norn bench bridge`` has three kinds of figure, said apart in every report:

- **burst** (``ingest/columns``, ``ingest/rows``; ``world.bridge_ingest_case``): one burst
  of events from a client process into a ``BridgeServer`` whose queue a bare thread drains;
  no world, no journal. What the bridge alone can take.
- **sustained** (``sustained/...``, ``sustained_case`` here): columnar ``mob_kill`` batches
  from a separate process for ``seconds`` into the generated default world (every actor kind
  of the default scenario; 1M NPCs unless told), ticking in realtime at ``tick_ms`` with its
  journal written and fsynced every tick, served exactly as ``norn run --serve`` serves it.
  Reported: events/s the world applied and the tick rate it kept (achieved / requested),
  over the window after a warm-up.
- **round trip**: ``rtt-standin/...`` is ``bridge.loadgen.measure_round_trip`` on its
  ``MiniEngine`` stand-in (a world with no tables, no journal); ``rtt-engine/...``
  (``engine_rtt_case`` here) the same client against a real world plus one probe system
  (``bridge.loadgen.EchoPlugin``: a ``start_quest`` for every ``quest_done``, in the act
  phase), journaled with fsync: the durable tick and all. ``rtt-engine/world=midgard/...``
  is the default scenario (``scenarios/midgard.toml``, a few thousand NPCs) as operators
  run it, the world the round-trip goal is for; ``rtt-engine/npcs=N/...`` the generated
  world of N NPCs, reported ``overloaded`` when it keeps less than
  ``GOAL_TICK_RATE_KEPT`` of its tick rate, where the round trip measures queues that grow,
  not the bridge (issue 16: at 1M NPCs on a 2-core machine 8.6 of 10 ticks/s while the
  probe's client searched its whole ledger for every action; 9.6 since it does not).

Wall-clock reads here measure the engine; nothing here is world state.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from norn.bench.harness import efficiency, world_bytes_per_update
from norn.bench.machine import LoadMeter, peak_rss_bytes
from norn.bench.scenarios.world import NotAvailable, generated, messages_per_tick, not_available
from norn.bench.stats import percentile_ms
from norn.engine import clock

#: the sustained goal: events/s into the full default world, the tick keeping its rate
GOAL_SUSTAINED_EVENTS_PER_S = 5_000_000
#: "keeping its rate": at least this share of the requested ticks/s over the window
GOAL_TICK_RATE_KEPT = 0.95


def default_world() -> Any:
    """The default scenario (``scenarios/midgard.toml``, a few thousand NPCs), as operators
    run it: ``norn run --serve`` with no simulated players (the bridge feeds its inputs)."""
    from norn.engine.scenario import load_scenario

    return load_scenario("midgard")


def world_npcs(world: Any) -> int:
    """NPC rows of a built world (its ``npc`` table's high-water mark)."""
    t = world.tables.get("npc")
    return int(t.hwm) if t is not None else 0


class RealEngine:
    """The generated world (``npcs`` 0: the default scenario) served as ``norn run --serve``
    serves it, in a thread.

    ``engine.runner.run`` in realtime at ``tick_ms``, its journal written by the real
    ``Recorder`` (fsync per tick unless ``fsync`` is False) into a temporary run directory,
    the ``BridgeServer`` subscribed to the world's ``Committed`` notice. With ``echo`` the
    world also carries the round-trip probe (``EchoPlugin``). Every commit is noted (time,
    tick, events applied) for the sustained figures.
    """

    def __init__(self, npcs: int, seed: int, *, tick_ms: int, fsync: bool = True,
                 echo: bool = False, bridge: dict[str, Any] | None = None) -> None:
        from norn.bridge.config import BridgeConfig
        from norn.bridge.loadgen import EchoPlugin
        from norn.bridge.server import BridgeServer
        from norn.bridge.view import WorldView
        from norn.engine.commands import model_hook
        from norn.engine.config import RunConfig
        from norn.engine.recorder import Recorder
        from norn.engine.runner import build_world, make_header

        scenario = default_world() if npcs == 0 else generated(npcs, seed)
        self.scenario = scenario
        self.config = RunConfig(clock="realtime", tick_ms=tick_ms, ticks=10**9, seed=seed,
                                snapshot_every=0, fsync=fsync)
        probed = _Probed(scenario, EchoPlugin) if echo else scenario
        self.world = build_world(probed, self.config)  # type: ignore[arg-type]
        view_fn = model_hook(scenario.model, "bridge_view")
        if view_fn is None:
            raise NotAvailable(f"model {scenario.model!r} has no bridge_view")
        self.view_kw = view_fn(self.world)
        self.tmp = Path(tempfile.mkdtemp(prefix="norn-bench-bridge-"))
        self.recorder = Recorder.create(self.tmp / "run",
                                        make_header(scenario, self.config, self.world),
                                        fsync=fsync, snapshot_every=0)
        self.server = BridgeServer("tcp://127.0.0.1:0", self.world.inputs,
                                   WorldView(**self.view_kw), BridgeConfig(**(bridge or {})),
                                   start_tick=self.world.tick)
        self.commits: list[tuple[float, int, int]] = []  # (monotonic, tick, events applied)
        self.world.subscribe(self._note)
        self.world.subscribe(self.server.committed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summary: Any = None
        self.error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint or ""

    def map_names_sizes(self) -> tuple[list[str], list[tuple[int, int]]]:
        return list(self.view_kw["map_names"]), list(self.view_kw["map_sizes"])

    def _note(self, notice: Any) -> None:
        self.commits.append((clock.monotonic(), notice.tick,
                             sum(len(b) for b in notice.inputs)))

    def start(self, warm_ticks: int = 3) -> RealEngine:
        from norn.engine.runner import run

        self.server.start()

        def loop() -> None:
            try:
                self.summary = run(self.world, self.config, self.recorder, stop=self._stop)
            except BaseException as exc:  # kept for the caller; the thread must not die silently
                self.error = exc

        self._thread = threading.Thread(target=loop, name="bench-engine", daemon=True)
        self._thread.start()
        deadline = clock.monotonic() + 600
        while len(self.commits) < warm_ticks and self.error is None:
            if clock.monotonic() > deadline:
                raise TimeoutError("the engine did not tick")
            threading.Event().wait(0.01)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        self.server.stop()
        try:
            self.recorder.close(self.world, "stopped")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.error is not None:
            raise self.error


class _Probed:
    """A scenario whose builder adds one more plugin (the round-trip probe) to the world."""

    def __init__(self, scenario: Any, plugin: type) -> None:
        self.scenario, self.plugin = scenario, plugin

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scenario, name)

    def builder(self) -> Any:
        inner = self.scenario.builder()

        def build(world: Any, _scenario: Any) -> None:
            inner(world, self.scenario)
            before = {s.name for s in world.schedule.systems}
            world.add_plugin(self.plugin())
            for probe in [s for s in world.schedule.systems if s.name not in before]:
                for s in world.schedule.systems:  # the probe acts last: it changes no one's
                    if s.name in before and s.phase == probe.phase and \
                            "actions" in s.writes:
                        world.order(s.name, probe.name)

        return build


# -- sustained ingest ----------------------------------------------------------------------
def _mob_kills(n: int, sizes: list[tuple[int, int]], seed: int) -> dict[str, np.ndarray]:
    """``n`` mob kills by 10,000 characters on every map, each inside its map."""
    rng = np.random.default_rng(seed)
    w = np.array([s[0] for s in sizes], np.int64)
    h = np.array([s[1] for s in sizes], np.int64)
    m = rng.integers(0, len(sizes), n)
    return {
        "char_id": (150000 + rng.integers(0, 10_000, n)).astype(np.uint32),
        "mob_id": rng.choice(np.array([1002, 1007, 1113], dtype=np.int32), n),
        "instance_id": np.zeros(n, dtype=np.int32),
        "map": m,
        "x": (rng.random(n) * w[m]).astype(np.int16),
        "y": (rng.random(n) * h[m]).astype(np.int16),
    }


def _sustained_client(endpoint: str, names: list[str], sizes: list[tuple[int, int]],
                      seconds: float, batch_events: int, conn: Any) -> None:
    """Child process: columnar mob-kill batches as fast as the credit allows, ``seconds``."""
    from norn.bridge.client import BridgeClient, ClientConfig

    cfg = ClientConfig(batch_events=batch_events, batch_ms=1000, columnar=True,
                       frames_max=1 << 16, pending_events_max=1 << 24)
    client = BridgeClient(endpoint, "load01", maps=names, config=cfg)
    try:
        if not client.connect(30):
            conn.send({"error": "no welcome"})
            return
        batches = [_mob_kills(batch_events, sizes, seed) for seed in range(4)]
        t0 = clock.monotonic()
        conn.send({"t0": t0})
        sent, i = 0, 0
        while clock.monotonic() - t0 < seconds:
            client.add_columns("mob_kill", batches[i % len(batches)])
            sent += batch_events
            i += 1
            client.poll(0)
            while client.unacked_batches > 2 * client._credit:
                client.poll(1)
        t_end = clock.monotonic()
        client.flush()
        deadline = clock.monotonic() + 60
        while not client.idle() and clock.monotonic() < deadline:
            client.poll(2)
        conn.send({"t_end": t_end, "sent": sent, "stats": dict(client.stats)})
    finally:
        client.close()


def sustained_case(npcs: int, seconds: float, warmup_s: float, tick_ms: int, seed: int,
                   batch_events: int, fsync: bool, triad_gbs: float) -> dict[str, Any]:
    """Events/s into the generated world from a client process, the tick at its rate.

    The window is from ``warmup_s`` after the client's first batch to its last; what the
    world applied is the events of the ticks committed in the window (the commit notice
    the bridge acks on), over the window's length. Ticks/s achieved is the window's
    commits over its length; requested, 1000 / ``tick_ms``.
    """
    try:
        engine = RealEngine(npcs, seed, tick_ms=tick_ms, fsync=fsync, bridge={
            "events_per_s_max": 10**9, "unacked_batches_max": 64,
            "frame_bytes_max": 32 << 20, "held_bytes_max": 1 << 30})
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    engine.start()
    names, sizes = engine.map_names_sizes()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_sustained_client,
                       args=(engine.endpoint, names, sizes, seconds, batch_events, child))
    meter = LoadMeter()
    proc.start()
    try:
        if not parent.poll(120):
            raise TimeoutError("the ingest client did not start")
        first = parent.recv()
        if "error" in first:
            raise RuntimeError(first["error"])
        if not parent.poll(seconds + 180):
            raise TimeoutError("the ingest client did not finish")
        last = parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
        server_stats = engine.server.stats()
        engine.stop()
    other = meter.other_cores()
    lo, hi = first["t0"] + warmup_s, last["t_end"]
    window = [c for c in engine.commits if lo <= c[0] <= hi]
    span = hi - lo
    applied = sum(c[2] for c in window)
    tick_s = engine.summary.tick_s if engine.summary is not None else []
    requested = 1000.0 / tick_ms
    achieved = len(window) / span if span > 0 else 0.0
    world = engine.world
    bpu = world_bytes_per_update(world, messages_per_tick(world), max(npcs, 1))
    figs: dict[str, Any] = {
        "events_per_s": round(applied / span) if span > 0 else None,
        "ticks_per_s": round(achieved, 3),
        "ticks_per_s_requested": round(requested, 3),
        "tick_rate_kept": round(achieved / requested, 4),
        "events_per_tick": round(applied / max(len(window), 1)),
        "tick_ms_p50": percentile_ms(tick_s, 50),
        "tick_ms_p99": percentile_ms(tick_s, 99),
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
        # the share of the triad while a tick computes (ticks are paced, so not of the wall)
        "efficiency": efficiency(bpu, max(npcs, 1) * len(tick_s) / (sum(tick_s) or 1),
                                 triad_gbs),
    }
    return {
        "entities": npcs,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "window_s": round(span, 3),
        "tick_ms": tick_ms,
        "batch_events": batch_events,
        "fsync": fsync,
        "journal": True,
        "events_sent": last["sent"],
        "events_acked": last["stats"].get("events_acked"),
        "events_applied_total": sum(c[2] for c in engine.commits),
        "bytes_per_update": round(bpu, 2),
        "server": {k: server_stats.get(k) for k in (
            "frames_in", "events_accepted", "events_rejected", "queue_full", "bytes_in")},
        "phase_ms": {k: round(v / max(len(tick_s), 1) * 1e3, 4)
                     for k, v in (engine.summary.phase_s.items() if engine.summary else ())},
        "system_ms": {k: round(v / max(len(tick_s), 1) * 1e3, 4) for k, v in sorted(
            engine.summary.system_s.items() if engine.summary else ())},
        "other_load_cores": other,
        "figures": figs,
    }


# -- the round trip through the real engine -----------------------------------------------------
def engine_rtt_case(npcs: int, ticks: int, tick_ms: int, seed: int, fsync: bool,
                    triad_gbs: float) -> dict[str, Any]:
    """``quest_done`` sent to its ``start_quest`` received, through the world with the echo
    probe, journaled (fsync per tick unless ``fsync`` is False): ``npcs`` 0 is the default
    scenario (``scenarios/midgard.toml``), else the generated world of that many NPCs.

    The round-trip goal (p99 <= one tick + 5 ms) means something only for a world that
    keeps its tick rate: the case reports the ticks/s achieved beside the requested and
    says ``overloaded`` when the world kept less than ``GOAL_TICK_RATE_KEPT`` of it (its
    queues then grow, and the round trip measures the backlog, not the bridge). The probe's
    client runs in the engine's process (one GIL) and answers every action of the world.
    """
    from norn.bridge.loadgen import measure_round_trip

    try:
        engine = RealEngine(npcs, seed, tick_ms=tick_ms, fsync=fsync, echo=True,
                            bridge={"heartbeat_ms": 200, "peer_timeout_ms": 2000})
    except NotAvailable as exc:
        return not_available("the world generator", exc)
    meter = LoadMeter()
    r = measure_round_trip(ticks, tick_ms, engine=engine)
    world = engine.world
    n = world_npcs(world) if npcs == 0 else npcs
    tick_s = engine.summary.tick_s if engine.summary is not None else []
    bpu = world_bytes_per_update(world, messages_per_tick(world), max(n, 1))
    rate = len(tick_s) / (sum(tick_s) or 1)
    times = [c[0] for c in engine.commits]
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    requested = 1000.0 / tick_ms
    kept = round(achieved / requested, 4)  # the figure recorded; the label follows it
    overloaded = kept < GOAL_TICK_RATE_KEPT
    label = ("default world (scenarios/midgard.toml)" if npcs == 0
             else "generated default world")
    return {
        "entities": n,
        "world": "midgard" if npcs == 0 else "generated",
        "ticks": ticks,
        "tick_ms": tick_ms,
        "fsync": fsync,
        "journal": True,
        "overloaded": overloaded,
        "engine": f"{label} + echo probe, realtime, journal"
                  + (" + fsync" if fsync else " (no fsync)")
                  + (f"; OVERLOADED: {achieved:.3g} of {requested:.3g} ticks/s kept, the "
                     "round trip measures its backlog" if overloaded else ""),
        "run": r,
        "bytes_per_update": round(bpu, 2),
        "other_load_cores": meter.other_cores(),
        "figures": {
            "rtt_ms_p50": r["p50_ms"],
            "rtt_ms_p99": r["p99_ms"],
            "rtt_ms_max": r["max_ms"],
            "lost": r["lost"],
            "unsent": r["unsent"],
            "pending": r["pending"],
            "expired": r["expired"],
            "ticks_per_s": round(achieved, 3),
            "ticks_per_s_requested": round(requested, 3),
            "tick_rate_kept": kept,
            "tick_ms_p50": percentile_ms(tick_s, 50),
            "tick_ms_p99": percentile_ms(tick_s, 99),
            # the share of the triad while a tick computes (ticks are paced)
            "efficiency": efficiency(bpu, max(n, 1) * rate, triad_gbs),
        },
    }
