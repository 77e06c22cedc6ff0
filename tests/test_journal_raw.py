"""Issue 16: the journal writes input columns without re-encoding or joining them, and
the bytes on disk are exactly what they were (a tick frame is byte for byte the same)."""

from __future__ import annotations

import os

import msgpack
import numpy as np

from norn.engine import journal
from norn.engine.decisions import RECORD
from norn.engine.digest import CHUNK_RECORD
from norn.engine.events import EVENT_SCHEMAS
from norn.engine.inputs import InputBatch
from norn.engine.recorder import V1_EVENTS, decode_tick, encode_tick
from norn.engine.tick import TickRecord


def _batch(seq: int, n: int) -> InputBatch:
    rng = np.random.default_rng(seq)
    cols = {name: rng.integers(0, 100, n).astype(dt) for name, dt in EVENT_SCHEMAS["mob_kill"]}
    return InputBatch("load01", seq, "mob_kill", cols)


def test_tick_frame_is_what_tobytes_wrote():
    rec = TickRecord(7, [_batch(1, 1000), _batch(2, 0), _batch(3, 5)],
                     np.zeros(0, RECORD), digest=123, chunks=np.zeros(2, CHUNK_RECORD))
    new = encode_tick(rec)
    old = msgpack.packb({
        "t": 7,
        "in": [[b.source, b.seq, V1_EVENTS.ids["mob_kill"],
                [np.ascontiguousarray(b.columns[k]).tobytes() for k, _ in
                 EVENT_SCHEMAS["mob_kill"]]] for b in rec.inputs],
        "dec": np.zeros(0, RECORD).tobytes(), "d": 123,
        "ch": np.zeros(2, CHUNK_RECORD).tobytes(), "na": 0,
    }, use_bin_type=True)
    assert new == old
    back = decode_tick(new)
    for a, b in zip(back.inputs, rec.inputs, strict=True):
        assert all(np.array_equal(a.columns[k], b.columns[k]) for k in b.columns)


def test_commit_writes_every_byte_through_short_writes(tmp_path, monkeypatch):
    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, bufs: real(fd, [bytes(bufs[0])[:7]]))
    payloads = [os.urandom(n) for n in (0, 1, 100, 5000)]
    with journal.JournalWriter.create(tmp_path / "j", fsync=False) as w:
        for p in payloads:
            w.append(journal.KIND_TICK, p)
        w.commit()
    got = [f.payload for f in journal.JournalReader(tmp_path / "j").frames()]
    assert [bytes(p) for p in got] == payloads


def test_a_tick_takes_no_more_input_than_its_journal_frame_holds():
    """Issue 16: a slow tick found 4M mob kills queued (input_events_max), 75 MB of columns,
    and its journal frame passed journal_frame_bytes_max: the run stopped. A tick now
    takes at most tick_input_bytes_max column bytes; the rest (per source, a seq suffix)
    waits for the next tick, nothing lost or reordered."""
    from norn.engine import limits
    from norn.engine.inputs import InputQueue

    q = InputQueue(batches_max=1000, events_max=1 << 24)
    per = _batch(0, 65536)
    nb = sum(c.nbytes for c in per.columns.values())
    for s in range(1, 41):
        for src in ("a", "b"):
            assert q.offer(InputBatch(src, s, "mob_kill", per.columns))
    ticks = []
    while len(q):
        got = q.drain(len(ticks) + 1)
        assert got and sum(sum(c.nbytes for c in b.columns.values()) for b in got) <= max(
            limits.tick_input_bytes_max, nb)
        ticks.append(got)
    assert len(ticks) > 1
    for src in ("a", "b"):
        seqs = [b.seq for t in ticks for b in t if b.source == src]
        assert seqs == list(range(1, 41))
    big = encode_tick(TickRecord(1, ticks[0], np.zeros(0, RECORD)))
    assert len(big) <= limits.journal_frame_bytes_max
