"""Acks and actions leave only after the tick is durable: the real journal, the one notice.

The bridge learns that a batch may be acknowledged, and that a tick's actions may leave,
only from the world's one ``Committed`` notice (``World.subscribe``), which the runner
publishes after ``Recorder.record`` returned (its fsync done). Here the journal is
``engine.journal`` on a real file, and ``os.fsync`` on the journal's descriptor is held (or
made to fail) in-process, so the order is checked directly rather than by the luck of a
SIGKILL's timing:

- while the tick's fsync has not returned, no notice is published;
- when it is, the tick's frame holding its batches is already in the file, and the notice
  carries exactly those batches and the tick's actions;
- a failed fsync is fatal (EnvironmentFailure): nothing is acked or committed, ever.

The last test puts a real BridgeServer on the same queue and a raw map-server peer on the
wire: the peer sees no ``ack`` while the fsync is held, and sees it once it returns.
"""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from norn.bridge import protocol as proto
from norn.bridge.codec import encode_columns
from norn.bridge.loadgen import demo_view
from norn.bridge.server import BridgeServer
from norn.bridge.testing import FAST, RawPeer
from norn.engine import journal
from norn.engine.commit import Committed
from norn.engine.errors import EnvironmentFailure
from norn.engine.inputs import InputBatch
from norn.engine.recorder import JOURNAL_NAME, Recorder, decode_tick
from norn.engine.runner import make_header, run
from tests.helpers import toy_world

WAIT_S = 30.0  # an upper bound on waits for the tick thread; never a timing assertion


def _quests(source: str, seq: int, ids: list[int]) -> InputBatch:
    return InputBatch(source, seq, "quest_done", {
        "char_id": np.full(len(ids), 150000, np.uint32),
        "quest_id": np.array(ids, np.int32),
    })


def _journaled_inputs(run_dir) -> dict[int, list[tuple[str, int]]]:
    """tick -> [(source, seq)] of the tick frames now in the journal file on disk."""
    out = {}
    for frame in journal.JournalReader(run_dir / JOURNAL_NAME).frames():
        if frame.kind == journal.KIND_TICK:
            rec = decode_tick(frame.payload)
            out[rec.tick] = [(b.source, b.seq) for b in rec.inputs]
    return out


class _HeldFsync:
    """os.fsync replacement: the journal's fsync waits for ``release`` (or raises)."""

    def __init__(self, journal_fd: int, *, fail: bool = False) -> None:
        self.journal_fd = journal_fd
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.calls = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if fd != self.journal_fd:
            return self._real(fd)
        self.calls += 1
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise AssertionError("the test never released the held fsync")
        if self.fail:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._real(fd)
        self.returned.set()
        return None


class _CommitLog:
    """A subscriber recording each notice's tick and actions (what lets actions leave)."""

    def __init__(self) -> None:
        self.ticks: list[int] = []
        self.actions: list = []

    def __call__(self, notice: Committed) -> None:
        self.ticks.append(notice.tick)
        self.actions.append(notice.actions)


def _setup(tmp_path, monkeypatch, *, fail: bool = False):
    world, scenario, config = toy_world(walkers=50)
    run_dir = tmp_path / "run"
    recorder = Recorder.create(run_dir, make_header(scenario, config, world), fsync=True,
                               snapshot_every=0)
    held = _HeldFsync(recorder.writer._fd, fail=fail)
    monkeypatch.setattr(os, "fsync", held)
    acks: list[tuple[str, int, dict]] = []

    def listener(notice: Committed) -> None:
        # what is in the file at the moment the bridge would send its acks
        on_disk = _journaled_inputs(run_dir)
        for source, seq in notice.durable_seqs().items():
            acks.append((source, seq, on_disk))

    world.subscribe(listener)
    sink = _CommitLog()
    world.subscribe(sink)
    return world, config, recorder, run_dir, held, acks, sink


def _run_in_thread(world, config, recorder, ticks: int):
    box: dict = {}

    def body() -> None:
        try:
            box["summary"] = run(world, config, recorder, ticks=ticks)
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=body, name="tick-thread", daemon=True)
    t.start()
    return t, box


def test_no_ack_and_no_commit_while_the_fsync_has_not_returned(tmp_path, monkeypatch):
    world, config, recorder, _, held, acks, sink = _setup(tmp_path, monkeypatch)
    assert world.inputs.offer(_quests("map01", 1, [1, 2]))
    assert world.inputs.offer(_quests("map02", 7, [3]))
    thread, box = _run_in_thread(world, config, recorder, ticks=1)
    try:
        assert held.entered.wait(WAIT_S), "tick 1 never reached the journal's fsync"
        # The tick thread is inside fsync now: nothing may have been acked or committed.
        assert acks == []
        assert sink.ticks == []
        assert not held.returned.is_set()
    finally:
        held.release.set()
        thread.join(WAIT_S)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    assert held.calls == 1  # one fsync for the tick (group commit)
    # After it returned: one call per source with its highest seq, and at that moment the
    # tick frame holding exactly those batches was already in the file.
    assert [(s, q) for s, q, _ in acks] == [("map01", 1), ("map02", 7)]
    for _, _, on_disk in acks:
        assert on_disk == {1: [("map01", 1), ("map02", 7)]}
    assert sink.ticks == [1]


def test_each_tick_acks_only_its_own_batches_after_its_own_fsync(tmp_path, monkeypatch):
    world, config, recorder, _, held, acks, sink = _setup(tmp_path, monkeypatch)
    held.release.set()  # fsync not held: check the per-tick pairing over several ticks
    seen: list[tuple[int, list]] = []
    world.subscribe(lambda n: seen.extend((n.tick, [b.source, b.seq]) for b in n.inputs))
    for tick in range(1, 4):
        assert world.inputs.offer(_quests("map01", tick, [tick]))
        run(world, config, recorder, ticks=1)
        assert held.calls == tick
        assert sink.ticks == list(range(1, tick + 1))
    assert seen == [(1, ["map01", 1]), (2, ["map01", 2]), (3, ["map01", 3])]
    # each notice carries its own tick's action batch: the one the world numbered
    assert [a.tick for a in sink.actions] == [1, 2, 3]
    assert sink.actions[-1] is world.last_actions
    for source, seq, on_disk in acks:
        assert (source, seq) in on_disk[seq]  # tick t holds seq t, already in the file


def test_a_failed_fsync_is_fatal_and_nothing_is_acked_or_committed(tmp_path, monkeypatch):
    world, config, recorder, run_dir, held, acks, sink = _setup(tmp_path, monkeypatch, fail=True)
    assert world.inputs.offer(_quests("map01", 1, [1]))
    thread, box = _run_in_thread(world, config, recorder, ticks=3)
    try:
        assert held.entered.wait(WAIT_S)
        assert acks == [] and sink.ticks == []
    finally:
        held.release.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), EnvironmentFailure), box
    assert "fsync failed" in str(box["error"]) and str(run_dir / JOURNAL_NAME) in str(box["error"])
    assert acks == [] and sink.ticks == []
    assert held.calls == 1  # never retried
    # and the writer refuses any later use: no path can ack this batch afterwards
    with pytest.raises(EnvironmentFailure, match="not retried"):
        recorder.writer.commit()
    assert acks == [] and sink.ticks == []


def test_bridge_peer_gets_no_ack_before_the_tick_is_durable(tmp_path, monkeypatch):
    world, config, recorder, run_dir, held, acks, _ = _setup(tmp_path, monkeypatch)
    server = BridgeServer("tcp://127.0.0.1:0", world.inputs, demo_view(), FAST)
    world.subscribe(server.committed)
    server.start()
    peer = RawPeer(server.endpoint or "")
    thread, box = None, {}
    try:
        assert peer.hello("map01")["t"] == "welcome"
        peer.send(encode_columns(proto.EVENTS, 1, "quest_done", {
            "char_id": np.array([150000]), "quest_id": np.array([5])}))
        deadline_ok = _wait(lambda: len(world.inputs) == 1)
        assert deadline_ok, "the bridge never offered the batch to the input queue"
        thread, box = _run_in_thread(world, config, recorder, ticks=1)
        assert held.entered.wait(WAIT_S)
        # fsync held: the bridge has been told nothing, so no ack can be on the wire
        assert acks == []
        assert [m for m in peer.drain(0.3) if m["t"] == "ack"] == []
        assert server.peer_seqs() == {"map01": (1, 0)}
        held.release.set()
        ack = peer.recv_type("ack", WAIT_S)
        assert ack is not None and ack["seq"] == 1
        assert _journaled_inputs(run_dir) == {1: [("map01", 1)]}
    finally:
        held.release.set()
        if thread is not None:
            thread.join(WAIT_S)
        peer.close()
        server.stop()
    assert "error" not in box, box.get("error")


def _wait(pred, timeout_s: float = WAIT_S) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.005)):
        if pred():
            return True
        done.wait(0.005)
    return pred()
