"""The bridge protocol under faults: thousands of seeded runs of ``norn.bridge.simnet``.

Each seed draws its map servers and its faults (frames lost, repeated, delayed and so
reordered, broken connections, engine crashes that keep only the journal); every run must
deliver every acked batch exactly once, and every batch once the faults stop. Two canaries
prove the checks bite: a session that acks before the journal, and one that keeps
duplicates, must each be caught.
"""

from __future__ import annotations

import pytest

from norn.bridge import simnet
from norn.bridge.session import Session

SEEDS = 2000


def test_every_acked_batch_is_journaled_exactly_once_under_faults_over_many_seeds():
    failed = []
    totals = {"crashes": 0, "disconnects": 0, "lost": 0, "journaled": 0}
    for seed in range(SEEDS):
        r = simnet.run(seed)
        if not r.ok:
            failed.append((seed, r.problems[:2]))
        totals["crashes"] += r.crashes
        totals["disconnects"] += r.disconnects
        totals["lost"] += r.lost
        totals["journaled"] += r.journaled
    assert not failed, f"{len(failed)} seeds failed; first: {failed[:3]}"
    # the faults really happened, many times over
    assert totals["crashes"] > 200 and totals["disconnects"] > 500, totals
    assert totals["lost"] > 10_000, totals


def _caught(seeds: range) -> int | None:
    """The first seed whose run finds a problem."""
    return next((seed for seed in seeds if not simnet.run(seed).ok), None)


def test_canary_a_session_that_acks_before_the_journal_is_caught(monkeypatch):
    real = Session._offer

    def ack_early(self, peer, now):
        real(self, peer, now)
        if peer.offered > peer.acked:  # the bug: ack what is merely queued
            peer.acked = peer.offered
            self._send_ack(peer)

    monkeypatch.setattr(Session, "_offer", ack_early)
    assert _caught(range(200)) is not None, "the simulation missed acks ahead of the journal"


def test_canary_a_session_that_keeps_duplicates_is_caught(monkeypatch):
    real = Session._batch

    def keep_repeats(self, rid, peer, msg, raw, now):
        if isinstance(msg.get("seq"), int) and msg["seq"] <= peer.received:
            peer.received = msg["seq"] - 1  # the bug: forget what was already accepted
        real(self, rid, peer, msg, raw, now)

    monkeypatch.setattr(Session, "_batch", keep_repeats)
    assert _caught(range(200)) is not None, "the simulation missed events journaled twice"


@pytest.mark.parametrize("seed", [0, 7, 4242])
def test_one_seed_replays_identically(seed):
    a, b = simnet.run(seed), simnet.run(seed)
    assert (a.steps, a.journaled, a.frames, a.lost) == (b.steps, b.journaled, b.frames, b.lost)
