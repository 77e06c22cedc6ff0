"""Load generation and a minimal engine stand-in, for benchmarks and bridge tests.

- ``MiniEngine``: the engine's real tick path (``World``, ``runner.run``, ``Recorder``, the
  ``Committed`` notice) around a world whose one system echoes a ``start_quest`` for every
  ``quest_done`` (how the round trip is timed), serving a real ``BridgeServer``. With a run
  directory it journals and restarts where it stopped: what the SIGKILL test kills and
  restarts (``python -m norn.bridge.loadgen mini-engine``).
- ``measure_ingest``: events/s from a client process through a real TCP socket into the
  server and the queue, drained by a consumer thread.
- ``measure_round_trip``: event sent to the action it causes received, at a tick length;
  on the MiniEngine stand-in unless given another engine (``norn bench bridge`` also
  measures it through the generated world with its journal and fsync:
  ``bench/scenarios/bridge.py``).

Wall-clock reads here measure the bridge; nothing here is world state.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from norn.bridge.client import BridgeClient, ClientConfig
from norn.bridge.codec import ActionsFrame
from norn.bridge.config import BridgeConfig
from norn.bridge.server import BridgeServer
from norn.bridge.view import WorldView
from norn.engine import clock, journal
from norn.engine.actions import ActionBatch
from norn.engine.commit import Committed
from norn.engine.config import RunConfig
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.recorder import FORMAT, JOURNAL_NAME, Recorder, decode_tick
from norn.engine.runner import run
from norn.engine.runner import start as start_world
from norn.engine.tick import TickRecord
from norn.engine.world import World

#: The test world's maps (rAthena names, sizes in cells); tests build their own views.
TEST_MAPS: tuple[tuple[str, int, int], ...] = (
    ("prontera", 312, 392),
    ("izlude", 260, 260),
    ("geffen", 240, 240),
    ("payon", 240, 240),
    ("morocc", 360, 360),
)


def demo_view(maps: tuple[tuple[str, int, int], ...] = TEST_MAPS) -> WorldView:
    """A WorldView over ``maps`` with rAthena-like reward caps."""
    return WorldView(
        tuple(n for n, _, _ in maps), tuple((w, h) for _, w, h in maps), 1_000_000, 30_000
    )


# -- a minimal engine: a real World, runner, journal and commit notice ----------------------------
ECHO_PLUGIN = "echo"


def _echo_quests(world: World) -> None:
    """act: a ``start_quest`` for every ``quest_done`` (how the round trip is timed)."""
    done = world.events["quest_done"]
    if len(done["quest_id"]):
        world.actions.add("start_quest", char_id=done["char_id"], quest_id=done["quest_id"])


class EchoPlugin:
    """The mini engine's one plugin: ``quest_done`` in, ``start_quest`` out.

    ``moves``: also that many ``move_npc`` a tick (as a world's NPCs make them), so a
    probe's client gets, and answers, a stream of actions besides its echoes.
    """

    name = ECHO_PLUGIN

    def __init__(self, moves: int = 0) -> None:
        self.moves = moves

    def build(self, world: World) -> None:
        world.consumes("quest_done")
        world.emits("start_quest")
        world.add_system("echo.quests", "act", _echo_quests, reads=("events",),
                         writes=("actions",))
        if self.moves:
            k = self.moves
            world.emits("move_npc")
            world.add_system("echo.moves", "act", lambda w: w.actions.add(
                "move_npc", npc_id=np.arange(k, dtype=np.int64), map_id=np.zeros(k, np.int16),
                x=np.ones(k, np.int16), y=np.ones(k, np.int16)), after=("echo.quests",),
                writes=("actions",))


def echo_world(*, tick_ms: int = 100, echo: bool = True, moves: int = 0) -> World:
    """A World with no tables: its only system echoes quests (and makes ``moves`` NPC
    moves a tick). Its state is its tick."""
    world = World(0, tick_ms=tick_ms)
    if echo:
        world.add_plugin(EchoPlugin(moves))
    world.build()
    start_world(world)
    return world


def journal_ticks(run_dir: str | Path) -> list[TickRecord]:
    """The tick records of a run directory's journal (a torn tail is left out)."""
    path = Path(run_dir) / JOURNAL_NAME
    if not path.exists():
        return []
    return [decode_tick(f.payload) for f in journal.JournalReader(path).frames()
            if f.kind == journal.KIND_TICK]


class MiniEngine:
    """The real tick path around a tiny world, serving the bridge.

    A ``World`` (``echo_world``) stepped by ``engine.runner.run`` in realtime mode, its
    journal written by the real ``Recorder`` (one fsync per tick) when ``run_dir`` is given,
    and the ``BridgeServer`` subscribed to the world's ``Committed`` notice, exactly as
    ``norn run --serve`` wires it: so the bridge tests and benchmarks exercise the engine's
    own durability handshake, not a copy of it. With an existing journal it continues where
    it stopped (what the SIGKILL test kills and restarts: ``python -m
    norn.bridge.loadgen mini-engine``), passing the journal's highest seq per source to the
    bridge as ``durable_seqs``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        view: WorldView | None = None,
        config: BridgeConfig | None = None,
        tick_ms: int = 100,
        run_dir: str | Path | None = None,
        fsync: bool = True,
        echo: bool = True,
        keep_batches: bool = False,
        dead_letter_path: str | Path | None = None,
        moves: int = 0,
    ) -> None:
        self.view = view or demo_view()
        self.config = config or BridgeConfig()
        self.run_config = RunConfig(clock="realtime", tick_ms=tick_ms, ticks=10**9,
                                    snapshot_every=0, fsync=fsync)
        self.run_dir = Path(run_dir) if run_dir else None
        self.keep_batches = keep_batches
        self.batches: list[InputBatch] = []
        self.applied: dict[str, int] = {}
        self.world = echo_world(tick_ms=tick_ms, echo=echo, moves=moves)
        self.recorder: Recorder | None = None
        durable: dict[str, int] = {}
        if self.run_dir is not None and (self.run_dir / JOURNAL_NAME).exists():
            for rec in journal_ticks(self.run_dir):
                self._count(rec.inputs)
                durable.update(Committed(rec.tick, rec.inputs, ActionBatch(rec.tick))
                               .durable_seqs())
                self.world.tick = rec.tick
            writer = journal.JournalWriter.open_append(self.run_dir / JOURNAL_NAME, fsync=fsync)
            self.recorder = Recorder(self.run_dir, writer, 0)
        elif self.run_dir is not None:
            self.recorder = Recorder.create(self.run_dir, {"format": FORMAT, "model": "echo",
                                                           "tick_ms": tick_ms},
                                            fsync=fsync, snapshot_every=0)
        self.server = BridgeServer(endpoint, self.world.inputs, self.view, self.config,
                                   durable_seqs=durable, dead_letter_path=dead_letter_path,
                                   start_tick=self.world.tick)
        self.world.subscribe(self._on_committed)
        self.world.subscribe(self.server.committed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint or ""

    @property
    def tick(self) -> int:
        return self.world.tick

    def start(self) -> MiniEngine:
        self.server.start()
        self._thread = threading.Thread(target=self._run, name="mini-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.server.stop()
        if self.recorder is not None:
            self.recorder.close(self.world, "stopped")

    def _run(self) -> None:
        try:
            run(self.world, self.run_config, self.recorder, stop=self._stop)
        except BaseException as exc:  # kept for the caller; the thread must not die silently
            self.error = exc
            print(f"mini-engine: tick loop stopped: {exc!r}", file=sys.stderr, flush=True)

    def _on_committed(self, notice: Committed) -> None:
        self._count(notice.inputs)
        if self.keep_batches:
            self.batches.extend(notice.inputs)

    def _count(self, batches: Sequence[InputBatch]) -> None:
        for b in batches:
            self.applied[b.kind] = self.applied.get(b.kind, 0) + len(b)


# -- ingest throughput --------------------------------------------------------------------------
def _mob_kill_columns(n: int, n_maps: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, n_maps, n)
    return {
        "char_id": (150000 + rng.integers(0, 50000, n)).astype(np.uint32),
        "mob_id": rng.choice(np.array([1002, 1007, 1113], dtype=np.int32), n),
        "instance_id": np.zeros(n, dtype=np.int32),
        "map": m,
        "x": rng.integers(0, 240, n).astype(np.int16),
        "y": rng.integers(0, 240, n).astype(np.int16),
    }


def _ingest_client(endpoint: str, columnar: bool, events: int, batch_events: int,
                   conn: Any) -> None:
    """Child process: send ``events`` mob kills as fast as the credit allows."""
    names = [n for n, _, _ in TEST_MAPS]
    cfg = ClientConfig(batch_events=batch_events, batch_ms=1000, columnar=columnar,
                       frames_max=1 << 16, pending_events_max=1 << 24)
    client = BridgeClient(endpoint, "load01", maps=names, config=cfg)
    try:
        if not client.connect(10):
            conn.send({"error": "no welcome"})
            return
        cols = _mob_kill_columns(batch_events, len(names))
        t0 = clock.monotonic()
        sent = 0
        while sent < events:
            k = min(batch_events, events - sent)
            client.add_columns("mob_kill", cols if k == batch_events
                               else {f: v[:k] for f, v in cols.items()})
            sent += k
            client.poll(0)
            while client.unacked_batches > 2 * client._credit:
                client.poll(1)
        client.flush()
        deadline = clock.monotonic() + 120
        while not client.idle() and clock.monotonic() < deadline:
            client.poll(2)
        conn.send({"t0": t0, "t_acked": clock.monotonic(), "stats": dict(client.stats)})
    finally:
        client.close()


def measure_ingest(
    columnar: bool = True,
    events: int = 2_000_000,
    batch_events: int = 65536,
    *,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """Events/s from a client process through TCP into BridgeServer and a drained queue.

    The clock starts when the client starts sending and stops when the consumer has
    drained the last event (both processes read the same monotonic clock).
    """
    cfg = BridgeConfig(events_per_s_max=10**9, unacked_batches_max=64,
                       frame_bytes_max=32 << 20, held_bytes_max=1 << 30)
    inputs = InputQueue()
    server = BridgeServer("tcp://127.0.0.1:0", inputs, demo_view(), cfg)
    server.start()
    got = {"events": 0, "batches": 0, "t_last": 0.0}
    stop = threading.Event()

    def consume() -> None:  # the "tick": drain, count, publish Committed at once (no journal)
        tick = 0
        while not stop.is_set():
            batches = inputs.drain()
            if not batches:
                time.sleep(0.0002)
                continue
            got["events"] += sum(len(b) for b in batches)
            got["batches"] += len(batches)
            got["t_last"] = clock.monotonic()
            tick += 1
            server.committed(Committed(tick, tuple(batches), ActionBatch(tick)))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_ingest_client,
                       args=(server.endpoint, columnar, events, batch_events, child))
    proc.start()
    try:
        if not parent.poll(timeout_s):
            raise TimeoutError("ingest client did not finish")
        res = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        stop.set()
        consumer.join(5)
        stats = server.stats()
        server.stop()
    if "error" in res:
        raise RuntimeError(res["error"])
    seconds = got["t_last"] - res["t0"]
    return {
        "format": "columns" if columnar else "rows",
        "kind": "mob_kill",
        "events": got["events"],
        "batches": got["batches"],
        "batch_events": batch_events,
        "seconds": round(seconds, 4),
        "events_per_s": round(got["events"] / seconds) if seconds > 0 else None,
        "mb_per_s": round(stats["bytes_in"] / seconds / 1e6, 1) if seconds > 0 else None,
        "events_acked": res["stats"]["events_acked"],
        "server": {k: stats[k] for k in ("frames_in", "events_accepted", "events_rejected",
                                         "duplicates_discarded", "acks_sent", "queue_full")},
    }


# -- event -> action round trip -------------------------------------------------------------------
class _Ledger:
    """What the engine did with the probe's quests, from the world's commit notices
    (tick thread): the tick each ``quest_done`` was applied, the tick each ``start_quest``
    was emitted, and when each tick committed."""

    def __init__(self) -> None:
        self.applied: dict[int, int] = {}
        self.emitted: dict[int, int] = {}
        self.commits: list[tuple[float, int]] = []

    def __call__(self, notice: Committed) -> None:
        self.commits.append((clock.monotonic(), notice.tick))
        for b in notice.inputs:
            if b.kind == "quest_done":
                for q in b.columns["quest_id"].tolist():
                    self.applied.setdefault(int(q), notice.tick)
        sq = notice.actions.kinds.get("start_quest")
        if sq is not None:
            for q in sq["quest_id"].tolist():
                self.emitted.setdefault(int(q), notice.tick)


def _unsent_quests(client: BridgeClient) -> set[int]:
    """Quest ids still in the client: in its batcher or in batches never transmitted."""
    out: set[int] = set()
    chunked = client._batches.get(("quest_done", "columns"))
    if chunked is not None:
        for cols in chunked.columns:
            out.update(int(q) for q in np.asarray(cols["quest_id"]).tolist())
    for fr in client._frames:
        if fr.sent or fr.is_results:
            continue
        msg = msgpack.unpackb(fr.data, raw=False)
        if msg.get("kind") == "quest_done" and isinstance(msg.get("cols"), dict):
            out.update(np.frombuffer(msg["cols"]["quest_id"], "<i4").tolist())
    return out


def classify_unanswered(
    unanswered: Any, unsent: set[int], applied: dict[int, int], emitted: dict[int, int],
    seq_of: dict[int, int], *, acked: int, ttl: int, engine_tick: int,
) -> dict[str, int]:
    """What became of quests never answered (``measure_round_trip``): ``unsent``,
    ``expired``, ``pending`` or ``lost``, from the client's queue (``unsent``), the ticks
    the world applied each quest (``applied``) and emitted its action (``emitted``), each
    quest's batch seq and the client's cumulative ack."""
    out = {"unsent": 0, "pending": 0, "expired": 0, "lost": 0}
    for q in unanswered:
        if q in unsent:
            out["unsent"] += 1
        elif q in emitted:  # executable while the engine's tick <= emitted + ttl
            out["expired" if emitted[q] + ttl < engine_tick else "pending"] += 1
        elif q in applied or (q in seq_of and seq_of[q] <= acked):
            out["lost"] += 1  # applied without its action, or acked and never applied
        else:
            out["pending"] += 1  # sent, not yet acked nor applied
    return out


def measure_round_trip(
    ticks: int = 100,
    tick_ms: int = 100,
    *,
    events_per_tick: int = 5,
    seed: int = 0,
    engine: Any = None,
) -> dict[str, Any]:
    """Milliseconds from a ``quest_done`` sent to its echoed ``start_quest`` received.

    By default a MiniEngine stand-in ticks every ``tick_ms`` (drain, echo, commit without a
    journal: not the real engine's cost); ``engine`` is any other not yet started engine
    with ``start()``, ``stop()``, ``endpoint``, ``world`` and ``server`` whose world echoes
    quests (``EchoPlugin``): ``norn bench bridge`` passes the generated world with its
    journal and fsync. The client sends single-event batches at seeded random instants, so
    events land uniformly within ticks: the expected p99 is about one tick plus the
    bridge's own latency.

    Each quest is its own batch (flushed as it is added); the results the client owes for
    the actions it gets go as one batch per poll. (With ``batch_events=1`` for both, a
    client getting a real world's actions turned every result into a batch of its own,
    thousands a tick against a credit of 64 batches a tick: the quests waited behind them
    in the client and were counted lost, never having reached the engine; issue 16.)

    After the last quest the probe waits for the answers, at least 5 ticks of the world
    and 1 s (at most 30 s). A quest not answered by then is, from the world's commit
    notices and the client's queue (issue 16: "lost 401" at 1M NPCs was 337 quests never
    sent and a window of 64 in flight, none lost):

    - ``unsent``: still in the client (never reached the engine: the probe's backlog);
    - ``expired``: its ``start_quest`` was emitted but its ``expires_tick`` has passed
      (``action_ttl_ticks``) without the client getting it in time: PROTOCOL.md section 8,
      it is never executed (a world slower than its clients, not a loss);
    - ``pending``: reached the engine, not answered yet, not expired (in flight: unacked,
      in the input queue, or its action on its way);
    - ``lost``: the engine acked or applied it and then never emitted its action, or acked
      it and never applied it: a real loss (a bug; 0 is the only right figure).
    """
    standin = engine is None
    if engine is None:
        engine = MiniEngine("tcp://127.0.0.1:0", tick_ms=tick_ms,
                            config=BridgeConfig(heartbeat_ms=200, peer_timeout_ms=2000))
    ledger = _Ledger()
    engine.world.subscribe(ledger)
    ttl = engine.server.config.action_ttl_ticks
    engine.start()
    sent_at: dict[int, float] = {}
    seq_of: dict[int, int] = {}
    rtt_ms: list[float] = []
    n_events = ticks * events_per_tick
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, ticks * tick_ms / 1000, n_events))

    def on_actions(frame: ActionsFrame) -> None:
        now = clock.monotonic()
        cols = frame.kinds.get("start_quest")
        if cols is not None:
            for q in cols["quest_id"].tolist():
                t = sent_at.pop(q, None)
                if t is not None:
                    rtt_ms.append((now - t) * 1000)
        ids = np.concatenate([c["action_id"] for c in frame.kinds.values()])
        client.report_results(ids, 0, 0)

    client = BridgeClient(engine.endpoint, "rtt01",
                          config=ClientConfig(batch_events=4096, batch_ms=0, heartbeat_ms=200),
                          on_actions=on_actions)
    try:
        if not client.connect(10):
            raise RuntimeError("no welcome")
        t0 = clock.monotonic() + 0.05
        for i, off in enumerate(offsets.tolist()):
            due = t0 + off
            while (left := due - clock.monotonic()) > 0:
                client.poll(max(0, int(left * 1000)))
            q = i + 1
            sent_at[q] = clock.monotonic()
            client.add_columns("quest_done", {"char_id": np.array([150000 + i % 1000]),
                                              "quest_id": np.array([q])})
            before = client._next_seq
            client.flush()  # a batch of its own now: it never waits for a batch to fill
            if client._next_seq > before:
                seq_of[q] = client._next_seq - 1
            client.poll(0)
        sending_s = clock.monotonic() - t0
        tick_sent = engine.world.tick
        start = clock.monotonic()
        end = start + 5 * tick_ms / 1000 + 1
        while sent_at and clock.monotonic() - start < 30 and (
                clock.monotonic() < end or engine.world.tick < tick_sent + 5):
            client.poll(5)
        waited_s = clock.monotonic() - start
        unsent_q = _unsent_quests(client)
        acked = client.acked
        engine_tick = max(engine.world.tick, client.engine_tick)
        cstats = dict(client.stats)
    finally:
        client.close()
        engine.stop()
    sstats = engine.server.stats()
    fates = classify_unanswered(sent_at, unsent_q, ledger.applied, ledger.emitted, seq_of,
                                acked=acked, ttl=ttl, engine_tick=engine_tick)
    arr = np.array(rtt_ms) if rtt_ms else np.array([np.nan])
    p99 = float(np.percentile(arr, 99))
    during = [c for c in ledger.commits if c[0] <= t0 + sending_s]
    achieved = ((len(during) - 1) / (during[-1][0] - during[0][0])
                if len(during) > 1 and during[-1][0] > during[0][0] else 0.0)
    return {
        "ticks": ticks,
        "tick_ms": tick_ms,
        "events": n_events,
        "received": len(rtt_ms),
        "unanswered": len(sent_at),
        **fates,
        "sending_s": round(sending_s, 3),
        "waited_s": round(waited_s, 3),
        # ticks/s the world committed while the quests were sent (realtime asks 1000/tick_ms)
        "ticks_per_s": round(achieved, 3),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(float(np.max(arr)), 3),
        "goal_p99_ms": tick_ms + 5,
        "goal_met": bool(p99 <= tick_ms + 5),
        "client": {k: cstats.get(k, 0) for k in (
            "reconnects", "retransmits", "actions_received", "actions_expired",
            "actions_duplicate")},
        "server": {k: sstats.get(k, 0) for k in (
            "events_accepted", "peers_timed_out", "actions_sent", "actions_expired",
            "actions_dropped")},
        "engine": "stand-in (MiniEngine: no tables, no journal)" if standin else "given",
    }


# -- command line (a stand-in engine process for tests, and the measurements) ---------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m norn.bridge.loadgen")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mini-engine", help="serve the bridge with the real tick path, journaled")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--out", required=True, help="run directory (continued if it has a journal)")
    p.add_argument("--tick-ms", type=int, default=20)
    p.add_argument("--no-fsync", action="store_true")
    p = sub.add_parser("ingest")
    p.add_argument("--rows", action="store_true")
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--batch-events", type=int, default=65536)
    p = sub.add_parser("rtt")
    p.add_argument("--ticks", type=int, default=100)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--events-per-tick", type=int, default=5)
    args = parser.parse_args(argv)
    if args.cmd == "ingest":
        print(measure_ingest(not args.rows, args.events, args.batch_events))
        return 0
    if args.cmd == "rtt":
        print(measure_round_trip(args.ticks, args.tick_ms, events_per_tick=args.events_per_tick))
        return 0
    engine = MiniEngine(args.endpoint, tick_ms=args.tick_ms, run_dir=args.out,
                        fsync=not args.no_fsync,
                        config=BridgeConfig(heartbeat_ms=100, peer_timeout_ms=1000))
    engine.start()
    print(f"serving {engine.endpoint} from tick {engine.tick}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    engine.stop()
    print(f"applied {engine.applied}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
