"""Delivery is the canonical stable sort, whatever path it takes (fast count, lazy fields,
stale split, unsorted emission), for any thread count, and a held inbox stays valid."""

from __future__ import annotations

import numpy as np
import pytest

from norn.engine.errors import NornBug
from norn.engine.messages import Channel, _histogram, _prefix

PAYLOAD = (("amount", np.int64), ("weight", np.float32))


def reference(cols: dict[str, np.ndarray], n_dst: int, alive: np.ndarray, gen: np.ndarray):
    """The eager algorithm, written plainly: sort by (src, seq), then stably by dst."""
    key = cols["src"].astype(np.int64) << 32 | cols["seq"].astype(np.int64)
    first = np.argsort(key, kind="stable")
    cols = {f: a[first] for f, a in cols.items()}
    order = np.argsort(cols["dst"], kind="stable")
    out = {f: a[order] for f, a in cols.items()}
    d = out["dst"]
    ok = alive[d] & (gen[d] == out["dst_gen"])
    stale = {f: a[~ok] for f, a in out.items()}
    out = {f: a[ok] for f, a in out.items()}
    offsets = np.zeros(n_dst + 1, dtype=np.int64)
    np.cumsum(np.bincount(out["dst"], minlength=n_dst), out=offsets[1:])
    return out, offsets, stale


def make_channel(n_dst: int, alive: np.ndarray, gen: np.ndarray, capacity: int = 5000):
    return Channel("gift", "a", "a", PAYLOAD, capacity, n_dst, alive, gen)


def emit_random(ch: Channel, rng: np.random.Generator, n: int, n_dst: int, gen: np.ndarray,
                shuffle: bool = False, stale_share: float = 0.0) -> dict[str, np.ndarray]:
    dst = rng.integers(0, n_dst, n).astype(np.int64)
    dgen = gen[dst].astype(np.int64)
    bad = rng.random(n) < stale_share
    dgen[bad] += 1
    src = np.sort(rng.integers(0, 100_000, n))
    seq = np.zeros(n, dtype=np.int64)
    for i in range(1, n):  # number each source's messages 0, 1, 2 ...
        if src[i] == src[i - 1]:
            seq[i] = seq[i - 1] + 1
    order = rng.permutation(n) if shuffle else np.arange(n)
    handles = (dgen << 32) | dst
    ch.emit(
        handles[order],
        src[order],
        seq[order],
        amount=rng.integers(0, 1000, n)[order],
        weight=rng.random(n).astype(np.float32)[order],
    )
    return ch.pending()


def assert_inbox_equal(inbox, want, offsets, stale) -> None:
    np.testing.assert_array_equal(inbox.offsets, offsets)
    assert len(inbox) == len(want["dst"])
    for f in want:
        np.testing.assert_array_equal(inbox[f], want[f], err_msg=f)
        np.testing.assert_array_equal(inbox.stale[f], stale[f], err_msg=f"stale {f}")
    np.testing.assert_array_equal(inbox.counts(), np.diff(offsets))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("reused", [False, True])
@pytest.mark.parametrize("stale_share", [0.0, 0.1])
def test_delivery_equals_the_eager_stable_sort(shuffle, reused, stale_share):
    rng = np.random.default_rng(7)
    n_dst = 3000
    alive = np.ones(n_dst, dtype=np.bool_)
    gen = np.zeros(n_dst, dtype=np.uint32)
    if reused:
        gen[rng.integers(0, n_dst, 200)] = 3
        alive[rng.integers(0, n_dst, 50)] = False
    ch = make_channel(n_dst, alive, gen)
    for _ in range(3):  # several ticks: both buffer sets in turn
        cols = {f: a.copy() for f, a in emit_random(ch, rng, 4000, n_dst, gen, shuffle,
                                                     stale_share).items()}
        want, offsets, stale = reference(cols, n_dst, alive, gen)
        inbox = ch.deliver()
        assert_inbox_equal(inbox, want, offsets, stale)
        assert ch.count == 0


def test_a_held_inbox_stays_valid_after_its_buffers_are_reused():
    rng = np.random.default_rng(3)
    n_dst = 500
    alive = np.ones(n_dst, dtype=np.bool_)
    gen = np.zeros(n_dst, dtype=np.uint32)
    ch = make_channel(n_dst, alive, gen)
    cols = {f: a.copy() for f, a in emit_random(ch, rng, 800, n_dst, gen).items()}
    want, offsets, stale = reference(cols, n_dst, alive, gen)
    held = ch.deliver()  # nothing read yet: its fields are still unsorted buffers
    for _ in range(3):  # its buffer set is refilled by later ticks
        emit_random(ch, rng, 900, n_dst, gen)
        ch.deliver()
    assert_inbox_equal(held, want, offsets, stale)


def test_counts_alone_never_need_the_fields():
    rng = np.random.default_rng(5)
    n_dst = 1000
    alive = np.ones(n_dst, dtype=np.bool_)
    gen = np.zeros(n_dst, dtype=np.uint32)
    ch = make_channel(n_dst, alive, gen)
    cols = {f: a.copy() for f, a in emit_random(ch, rng, 2000, n_dst, gen).items()}
    inbox = ch.deliver()
    np.testing.assert_array_equal(inbox.counts(), np.bincount(cols["dst"], minlength=n_dst))
    sums = inbox.sum("amount")
    np.testing.assert_array_equal(
        sums, np.bincount(cols["dst"], weights=cols["amount"], minlength=n_dst).astype(np.int64)
    )


def test_restore_pending_keeps_a_held_inbox():
    rng = np.random.default_rng(9)
    n_dst = 400
    alive = np.ones(n_dst, dtype=np.bool_)
    gen = np.zeros(n_dst, dtype=np.uint32)
    ch = make_channel(n_dst, alive, gen)
    cols = {f: a.copy() for f, a in emit_random(ch, rng, 600, n_dst, gen).items()}
    want, offsets, stale = reference(cols, n_dst, alive, gen)
    held = ch.deliver()
    pending = {f: a.copy() for f, a in emit_random(ch, rng, 700, n_dst, gen).items()}
    ch.restore_pending(pending)
    ch.deliver()
    emit_random(ch, rng, 700, n_dst, gen)
    ch.deliver()
    assert_inbox_equal(held, want, offsets, stale)


def test_destination_out_of_range_is_refused_naming_it():
    alive = np.ones(10, dtype=np.bool_)
    gen = np.zeros(10, dtype=np.uint32)
    ch = make_channel(10, alive, gen)
    rows = ch.reserve(3)
    rows["dst"][:] = [1, 12, 3]
    rows["src"][:] = [0, 1, 2]
    with pytest.raises(NornBug, match="destination 12 outside"):
        ch.deliver()


def test_empty_delivery():
    alive = np.ones(10, dtype=np.bool_)
    gen = np.zeros(10, dtype=np.uint32)
    inbox = make_channel(10, alive, gen).deliver()
    assert len(inbox) == 0
    assert len(inbox["amount"]) == 0 and len(inbox.stale["dst"]) == 0
    np.testing.assert_array_equal(inbox.offsets, np.zeros(11, dtype=np.int64))


def test_histogram_and_prefix_equal_bincount_and_cumsum():
    rng = np.random.default_rng(11)
    n_dst = 1001
    dst = rng.integers(0, n_dst, 5000).astype(np.int32)
    counts = np.full(n_dst, 7, dtype=np.int32)  # stale scratch: the count starts from 0
    _histogram(dst, counts)
    np.testing.assert_array_equal(counts, np.bincount(dst, minlength=n_dst))
    offsets = np.full(n_dst + 1, -5, dtype=np.int64)
    _prefix(counts, offsets)
    want = np.zeros(n_dst + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=n_dst), out=want[1:])
    np.testing.assert_array_equal(offsets, want)


def test_counts_are_read_only_and_offsets_summed_only_when_read():
    rng = np.random.default_rng(13)
    n_dst = 700
    alive = np.ones(n_dst, dtype=np.bool_)
    gen = np.zeros(n_dst, dtype=np.uint32)
    ch = make_channel(n_dst, alive, gen)
    cols = {f: a.copy() for f, a in emit_random(ch, rng, 1500, n_dst, gen).items()}
    want, offsets, stale = reference(cols, n_dst, alive, gen)
    inbox = ch.deliver()
    assert len(inbox) == 1500
    assert not inbox._off.ready  # nothing has read the offsets yet
    counts = inbox.counts()
    assert counts.dtype == np.int32
    with pytest.raises(ValueError):
        counts[0] = 1
    np.testing.assert_array_equal(counts, np.diff(offsets))
    assert_inbox_equal(inbox, want, offsets, stale)
    assert inbox._off.ready


def test_table_all_fresh_is_remembered_until_alive_or_generation_may_change():
    from norn.engine.table import Column, Table

    t = Table("a", [Column("x", np.int64)], 64, 8)
    t.spawn(40)
    assert not t.all_fresh(1)  # spawned, not alive until the sync
    t.sync()
    assert t.all_fresh(40) and t.all_fresh(10) and not t.all_fresh(41)
    t.despawn(t.handles(np.array([5])))
    assert t.all_fresh(40)  # queued only: alive until the sync
    t.sync()
    assert t.all_fresh(5) and not t.all_fresh(6) and not t.all_fresh(40)
    t.spawn(1)  # reuses slot 5, generation 1
    t.sync()
    assert not t.all_fresh(6) and t.all_fresh(5)
    arrays = {k: v.copy() for k, v in t.state_arrays().items()}
    arrays["generation"][5] = 0
    t.restore_arrays(arrays, 40)
    assert t.all_fresh(40)
    t.columns["alive"][3] = False  # a direct write: the world bumps churn for a system
    t.churn += 1  # declaring writes to alive (World.after_system)
    assert not t.all_fresh(40)


def test_a_system_declaring_writes_to_alive_makes_the_table_ask_again():
    from tests.helpers import toy_world

    w, _, _ = toy_world()
    table = next(iter(w.tables.values()))

    class S:
        name, writes, marks_own_writes = "x.kill", (f"{table.name}.alive",), False

    before = table.churn
    w.after_system(S())
    assert table.churn == before + 1
    S.writes = (f"{table.name}.*",)
    w.after_system(S())  # the answer is remembered per system name, as declared at build
    assert table.churn == before + 2
