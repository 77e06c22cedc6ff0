"""A seeded in-memory network around the socket-free ``Session``: the protocol under faults.

One seed decides everything (TigerBeetle's simulator habit): how many map servers, how
many batches each sends, and every fault of the run: frames lost, repeated, delayed and
so reordered, connections that break (a new routing id, frames in flight lost), and
engine crashes (a new ``Session`` that knows only what the journal holds). Time is a
number that moves in fixed steps; nothing reads a clock or sleeps.

``SimClient`` is a deliberately small map server written from ``bridge/PROTOCOL.md``: it
numbers batches, keeps them until acked, sends within the credit, rewinds on ``seq_gap``,
``window_exceeded`` and after a silence, says hello again after ``hello_required`` or a
timeout, and pauses after ``overloaded`` / ``tick_ahead``. Each batch carries one event
whose ``quest_id`` names it, so the journal can be checked for exactly-once delivery:

- every batch a server was told is acked is in the journal exactly once, and
- once the faults stop, every batch every server made is journaled, exactly once, in order.

``run(seed)`` returns a ``SimReport``; ``tests/test_bridge_session_sim.py`` runs thousands
of seeds, and a failing seed is reproduced with ``python -m norn.bridge.simnet SEED``.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from dataclasses import dataclass, field

import msgpack
import numpy as np

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns
from norn.bridge.config import BridgeConfig
from norn.bridge.dead_letter import DeadLetterStore
from norn.bridge.loadgen import demo_view
from norn.bridge.session import Sent, Session
from norn.engine.inputs import InputBatch, InputQueue

STEP_S = 0.01  # simulated seconds per step
TICK_STEPS = 5  # the engine ticks every 5 steps (50 ms)


@dataclass
class Faults:
    """Probabilities per frame (loss, repeat) and per step (disconnect, crash)."""

    loss: float
    repeat: float
    delay_steps_max: int
    disconnect: float
    crash: float

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        return cls(
            loss=rng.choice([0.0, 0.01, 0.05, 0.2]),
            repeat=rng.choice([0.0, 0.02, 0.1]),
            delay_steps_max=rng.choice([0, 1, 3, 10]),
            disconnect=rng.choice([0.0, 0.002, 0.01]),
            crash=rng.choice([0.0, 0.0, 0.002, 0.005]),
        )


@dataclass
class SimClient:
    """A map server under test: one server id, ``total`` one-event batches to deliver."""

    server_id: str
    first_quest: int
    total: int
    rid: bytes = b""
    conn: int = 0
    made: int = 0                     # batches created so far (seq = index + 1)
    frames: dict[int, bytes] = field(default_factory=dict)  # seq -> frame, until acked
    acked: int = 0
    told_acked: set[int] = field(default_factory=set)  # quest ids the engine acked to us
    send_next: int = 1
    credit: int = 1
    connected: bool = False
    hello_at: float = -1.0
    last_recv: float = 0.0
    last_progress: float = 0.0
    hold: bool = False

    def quest(self, seq: int) -> int:
        return self.first_quest + seq - 1

    def make(self, seq: int) -> bytes:
        return encode_columns(proto.EVENTS, seq, "quest_done", {
            "char_id": np.array([150000], "<u4"),
            "quest_id": np.array([self.quest(seq)], "<i4")})

    def step(self, now: float, out: list[bytes]) -> None:
        """What the server does this step: make a batch, say hello, (re)send, time out."""
        if self.made < self.total and len(self.frames) < 128:
            self.made += 1
            self.frames[self.made] = self.make(self.made)
        if not self.connected:
            if self.hello_at < 0 or now - self.hello_at > 0.5:
                self.hello_at = now
                out.append(proto.encode_hello(self.server_id))
            return
        if now - self.last_recv > 3.0:  # the engine went silent: a new session
            self.connected, self.hello_at = False, -1.0
            return
        if self.frames and now - self.last_progress > 0.3:  # no ack moved: resend
            self.send_next, self.hold = self.acked + 1, False
            self.last_progress = now
        if self.hold:
            return
        limit = min(self.made, self.acked + self.credit)
        while self.send_next <= limit:
            out.append(self.frames[self.send_next])
            self.send_next += 1
        if now - self.last_recv > 0.2:
            out.append(proto.encode_client_hb(0))

    def on_frame(self, data: bytes, now: float) -> None:
        msg = msgpack.unpackb(data, raw=False)
        self.last_recv = now
        t = msg["t"]
        if t == "welcome":
            self.connected, self.hold = True, False
            self.credit = msg["credit"]
            self._ack(msg["acked"], now)
            self.send_next = max(self.acked + 1, msg["next_seq"])
            self.last_progress = now
        elif t in ("ack", "hb"):
            self._ack(msg["seq"] if t == "ack" else msg["acked"], now)
            if t == "ack":
                self.credit = msg["credit"]
        elif t == "error":
            code = msg["code"]
            if code in (proto.ErrorCode.SEQ_GAP, proto.ErrorCode.WINDOW_EXCEEDED,
                        proto.ErrorCode.TICK_AHEAD):
                self.send_next = max(self.acked + 1, min(self.send_next, msg["expected_seq"]))
            elif code == proto.ErrorCode.OVERLOADED:
                self.hold = True
            elif code in (proto.ErrorCode.HELLO_REQUIRED, proto.ErrorCode.SUPERSEDED,
                          proto.ErrorCode.TOO_MANY_SERVERS):
                self.connected, self.hello_at = False, -1.0

    def _ack(self, seq: int, now: float) -> None:
        if seq > self.acked:
            for s in range(self.acked + 1, seq + 1):
                self.told_acked.add(self.quest(s))
                self.frames.pop(s, None)
            self.acked = seq
            self.last_progress = now
            self.hold = False
            self.send_next = max(self.send_next, seq + 1)

    @property
    def done(self) -> bool:
        return self.acked == self.total


@dataclass
class SimReport:
    seed: int
    steps: int
    journaled: int
    crashes: int
    disconnects: int
    frames: int
    lost: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def run(seed: int, *, steps_max: int = 20_000, fault_steps: int = 600) -> SimReport:
    """Run one seeded simulation; faults stop after ``fault_steps``, then all must land."""
    rng = random.Random(seed)
    faults = Faults.draw(rng)
    config = BridgeConfig(heartbeat_ms=100, peer_timeout_ms=1000,
                          unacked_batches_max=rng.choice([1, 4, 16, 64]),
                          servers_max=rng.choice([2, 8]), server_records_max=8)
    clients = [SimClient(f"map{i:02d}", 1000 * (i + 1), rng.randint(1, 60))
               for i in range(rng.randint(1, 3))]
    journal: list[InputBatch] = []
    durable: dict[str, int] = {}
    wire: list[tuple[float, int, bytes, bytes, bool]] = []  # (due, n, rid, frame, to_engine)
    counter = [0]
    stats = {"crashes": 0, "disconnects": 0, "frames": 0, "lost": 0}
    problems: list[str] = []
    rid_owner: dict[bytes, SimClient] = {}
    now = 0.0
    inputs = InputQueue()

    def new_rid(c: SimClient) -> None:
        c.conn += 1
        c.rid = f"{c.server_id}/{c.conn}".encode()
        rid_owner[c.rid] = c

    def put(rid: bytes, frame: bytes, to_engine: bool, faulty: bool) -> None:
        stats["frames"] += 1
        copies = 1
        if faulty:
            if rng.random() < faults.loss:
                stats["lost"] += 1
                return
            if rng.random() < faults.repeat:
                copies = 2
        for _ in range(copies):
            delay = rng.randint(0, faults.delay_steps_max) if faulty else 0
            counter[0] += 1
            heapq.heappush(wire, (now + (delay + 1) * STEP_S, counter[0], rid, frame, to_engine))

    def make_session() -> Session:
        return Session(inputs, demo_view(), config,
                       DeadLetterStore(None, records_max=100_000, raw_bytes_max=256),
                       engine_send, durable_seqs=dict(durable), start_tick=tick[0])

    def engine_send(rid: bytes, data: bytes) -> Sent:
        owner = rid_owner.get(rid)
        if owner is None or owner.rid != rid:
            return Sent.GONE  # that connection is gone (ROUTER_MANDATORY)
        put(rid, data, False, faulty[0])
        return Sent.OK

    for c in clients:
        new_rid(c)
    tick = [0]
    faulty = [True]
    session = make_session()
    step = 0
    for step in range(1, steps_max + 1):
        now = step * STEP_S
        faulty[0] = step <= fault_steps
        while wire and wire[0][0] <= now:
            _, _, rid, frame, to_engine = heapq.heappop(wire)
            if to_engine:
                session.receive(rid, frame, 1, now)
            else:
                owner = rid_owner[rid]
                if owner.rid == rid:  # frames for a broken connection are lost
                    owner.on_frame(frame, now)
        session.work(now)
        if step % TICK_STEPS == 0:
            tick[0] += 1
            batches = inputs.drain(tick[0])
            journal.extend(batches)
            for b in batches:
                durable[b.source] = max(durable.get(b.source, 0), b.seq)
            session.journaled({b.source: durable[b.source] for b in batches})
            session.committed(tick[0], [], now)
        for c in clients:
            if faulty[0] and rng.random() < faults.disconnect:
                stats["disconnects"] += 1
                new_rid(c)
                c.connected, c.hello_at = False, -1.0
            out: list[bytes] = []
            c.step(now, out)
            for frame in out:
                put(c.rid, frame, True, faulty[0])
        if faulty[0] and rng.random() < faults.crash:
            stats["crashes"] += 1  # the engine dies: what it had not journaled is gone
            inputs.drain()
            wire = [w for w in wire if not w[4]]
            heapq.heapify(wire)
            session = make_session()
        if not faulty[0] and all(c.done for c in clients):
            break
    problems += _check(clients, journal)
    if not all(c.done for c in clients):
        problems.append(
            f"not every batch was acked after the faults stopped: "
            f"{[(c.server_id, c.acked, c.total) for c in clients]}")
    return SimReport(seed, step, len(journal), stats["crashes"], stats["disconnects"],
                     stats["frames"], stats["lost"], problems)


def _check(clients: list[SimClient], journal: list[InputBatch]) -> list[str]:
    problems = []
    by_source: dict[str, list[int]] = {}
    seen: dict[int, int] = {}
    for b in journal:
        by_source.setdefault(b.source, []).append(b.seq)
        for q in b.columns["quest_id"].tolist() if b.kind == "quest_done" else []:
            seen[q] = seen.get(q, 0) + 1
    for source, seqs in by_source.items():
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{source}: journaled seqs are not 1..n in order: {seqs[:20]}")
    doubled = sorted(q for q, n in seen.items() if n > 1)
    if doubled:
        problems.append(f"events journaled twice: {doubled[:10]}")
    for c in clients:
        lost = sorted(q for q in c.told_acked if q not in seen)
        if lost:
            problems.append(f"{c.server_id}: acked but not journaled: {lost[:10]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="replay one seed of the bridge network simulation")
    p.add_argument("seed", type=int)
    args = p.parse_args(argv)
    r = run(args.seed)
    print(r)
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
