"""Specifications of the engine's parts: tables, messages, schedule, decisions, bounds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from norn.engine import limits
from norn.engine.actions import ActionBatch, ActionBuffer
from norn.engine.commit import Committed
from norn.engine.decisions import (
    SOURCE_DEADLINE,
    SOURCE_INVALID,
    SOURCE_RESOLVER,
    DecisionBook,
    DeterministicResolver,
)
from norn.engine.errors import BoundError, NornBug, ScheduleError, StaleEntityError
from norn.engine.inputs import InputBatch, InputQueue
from norn.engine.messages import Channel
from norn.engine.schedule import PHASES, Schedule, System
from norn.engine.table import Column, Table
from tests.helpers import toy_world

GOLDEN = Path(__file__).parent / "golden"


# -- tables -----------------------------------------------------------------------------
def _table(capacity=64):
    return Table("t", [Column("v", np.int64)], capacity, chunk_rows=8)


def test_spawn_takes_lowest_free_slots_and_becomes_alive_at_sync():
    t = _table()
    h = t.spawn(3, v=np.array([1, 2, 3]))
    assert list(h & 0xFFFFFFFF) == [0, 1, 2]
    assert t.count == 0  # not alive until the sync point
    t.sync()
    assert t.count == 3
    t.despawn(h[1:2])
    t.sync()
    h2 = t.spawn(1)
    assert int(h2[0] & 0xFFFFFFFF) == 1 and int(h2[0] >> 32) == 1  # reused slot, new generation


def test_stale_handle_is_detected_not_read():
    t = _table()
    h = t.spawn(2)
    t.sync()
    t.despawn(h[:1])
    t.sync()
    with pytest.raises(StaleEntityError, match="stale"):
        t.resolve(h[:1])
    assert list(t.is_current(h)) == [False, True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=40))
def test_spawn_despawn_keeps_ids_stable_and_detects_every_stale_id(ops):
    t = _table(capacity=400)
    live: list[int] = []
    dead: list[int] = []
    for spawn, k in ops:
        if spawn or not live:
            handles = t.spawn(k + 1, v=np.arange(k + 1))
            live += [int(x) for x in handles]
        else:
            gone, live = live[: k + 1], live[k + 1 :]
            t.despawn(np.array(gone))
            dead += gone
        t.sync()
        if live:
            slots = t.resolve(np.array(live))  # live ids still name the same slots
            assert list(slots) == [h & 0xFFFFFFFF for h in live]
        for h in dead:
            assert not t.is_current(np.array([h]))[0]
            with pytest.raises(StaleEntityError):
                t.resolve(np.array([h]))


def test_table_capacity_bound_at_max_and_one_past():
    t = Table("t", [], 16, chunk_rows=8)
    t.spawn(16)
    with pytest.raises(BoundError, match="capacity"):
        t.spawn(1)
    with pytest.raises(BoundError, match="table_capacity_max"):
        Table("big", [], limits.table_capacity_max + 1, chunk_rows=8)


def test_spawns_per_tick_bound_at_max_and_one_past():
    n = limits.spawns_per_tick_max
    t = Table("t", [], n + 64, chunk_rows=1024)  # room for more: the bound, not capacity
    t.spawn(n - 1)
    t.spawn(1)  # exactly spawns_per_tick_max queued in one tick
    with pytest.raises(BoundError, match="spawns_per_tick_max") as info:
        t.spawn(1)
    assert (info.value.limit, info.value.requested) == (n, n + 1)
    t.sync()  # the sync point applies the queue: a new tick may spawn again
    assert t.count == n
    t.spawn(1)
    big = Table("big", [], n + 64, chunk_rows=1024)
    with pytest.raises(BoundError, match="spawns_per_tick_max"):
        big.spawn(n + 1)  # one past in a single call
    assert big.hwm == 0  # refused before any slot was taken


# -- messages ---------------------------------------------------------------------------
def _deliver(dst, src, seq, payload, n_dst=16):
    ch = Channel("c", "a", "b", (("p", np.int64),), capacity=max(len(dst), 1), n_dst=n_dst)
    ch.emit(dst, src, seq, p=payload)
    inbox = ch.deliver()
    return inbox


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_inbox_contents_and_order_do_not_depend_on_emission_order(data):
    n = data.draw(st.integers(0, 60))
    src = np.repeat(np.arange(n // 3 + 1), 3)[:n].astype(np.int64)
    seq = np.tile(np.arange(3), n // 3 + 1)[:n]
    dst = np.array(data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n)), dtype=np.int64)
    payload = np.array(data.draw(st.lists(st.integers(-99, 99), min_size=n, max_size=n)))
    perm = np.array(data.draw(st.permutations(list(range(n)))), dtype=np.int64)
    a = _deliver(dst, src, seq, payload)
    b = _deliver(dst[perm], src[perm], seq[perm], payload[perm])
    for f in ("dst", "src", "seq", "p"):
        assert np.array_equal(a[f], b[f])
    assert np.array_equal(a.offsets, b.offsets)
    # canonical: sorted by (dst, src, seq); each destination's inbox is a contiguous slice
    key = list(zip(a["dst"], a["src"], a["seq"], strict=True))
    assert key == sorted(key)
    for d in range(16):
        assert (a["dst"][a.offsets[d] : a.offsets[d + 1]] == d).all()


def test_duplicate_source_sequence_is_refused():
    with pytest.raises(NornBug, match="duplicate"):
        _deliver(np.array([1, 2]), np.array([5, 5]), np.array([0, 0]), np.array([1, 1]))


def test_destination_outside_table_is_refused():
    with pytest.raises(NornBug, match="outside"):
        _deliver(np.array([99]), np.array([0]), 0, np.array([1]))


def test_channel_capacity_bound_at_max_and_one_past():
    ch = Channel("c", "a", "b", (), capacity=4, n_dst=8)
    ch.emit(np.arange(4), np.arange(4))
    with pytest.raises(BoundError, match=r"c\.capacity"):
        ch.emit(np.array([0]), np.array([9]))
    with pytest.raises(BoundError, match="messages_per_channel_max"):
        Channel("c", "a", "b", (), capacity=limits.messages_per_channel_max + 1, n_dst=8)


def test_messages_to_despawned_entities_are_set_apart_not_delivered():
    world, _, _ = toy_world(seed=1, walkers=20)
    t = world.tables["walker"]
    ch = world.channels["gift"]
    target = t.handles(np.array([3, 4]))
    ch.emit(target, np.array([0, 1]), 0, amount=np.array([7, 8]))
    t.despawn(target[:1])
    t.sync()
    inbox = ch.deliver()
    assert list(inbox["amount"]) == [8] and list(inbox.stale["amount"]) == [7]


# -- schedule ---------------------------------------------------------------------------
def _noop(world):
    pass


def test_unknown_phase_is_an_error_at_startup():
    with pytest.raises(ScheduleError, match="unknown phase 'think'"):
        Schedule().add(System("x", "think", _noop))


def test_two_unordered_writers_of_one_column_are_an_error_at_startup():
    s = Schedule()
    s.add(System("a", "act", _noop, writes=("npc.x",)))
    s.add(System("b", "act", _noop, writes=("npc.*",)))
    with pytest.raises(ScheduleError, match="both write"):
        s.build({"npc.x", "npc.y"})
    s2 = Schedule()
    s2.add(System("a", "act", _noop, writes=("npc.x",)))
    s2.add(System("b", "act", _noop, writes=("npc.x",), after=("a",)))
    s2.build({"npc.x"})  # an explicit order resolves it


def test_undeclared_state_and_cycles_are_errors():
    s = Schedule()
    s.add(System("a", "act", _noop, writes=("npc.z",)))
    with pytest.raises(ScheduleError, match=r"unknown state 'npc\.z'"):
        s.build({"npc.x"})
    s = Schedule()
    s.add(System("a", "act", _noop, after=("b",)))
    s.add(System("b", "act", _noop, after=("a",)))
    with pytest.raises(ScheduleError, match="cycle"):
        s.build(set())


def test_an_unordered_reader_of_what_another_system_writes_is_an_error_at_startup():
    s = Schedule()
    s.add(System("npc.talk", "ingest", _noop, reads=("reputation.*",)))
    s.add(System("faction.deeds", "ingest", _noop, writes=("reputation.value",)))
    with pytest.raises(ScheduleError) as err:
        s.build({"reputation.value"})
    msg = str(err.value)  # names both systems and the state, and how to order them
    assert "'npc.talk' reads 'reputation.*'" in msg and "'faction.deeds' writes" in msg
    assert "'reputation.value'" in msg and "phase ingest" in msg
    for fix in (
        lambda s: s.add(System("npc.talk", "ingest", _noop, reads=("reputation.*",),
                               after=("faction.deeds",))),
        lambda s: s.add(System("npc.talk", "ingest", _noop, reads=("reputation.*",))),
    ):
        s = Schedule()
        s.add(System("faction.deeds", "ingest", _noop, writes=("reputation.value",)))
        fix(s)
        if not s.systems[1].after:
            s.order("faction.deeds", "npc.talk")  # or the model orders them
        order = s.build({"reputation.value"})["ingest"]
        assert [x.name for x in order] == ["faction.deeds", "npc.talk"]
    # readers alone never conflict; another phase is ordered by the phase list
    s = Schedule()
    s.add(System("a", "act", _noop, reads=("npc.x",)))
    s.add(System("b", "act", _noop, reads=("npc.*",)))
    s.add(System("c", "apply", _noop, writes=("npc.x",)))
    s.build({"npc.x"})


def test_order_must_name_known_systems_of_one_phase():
    s = Schedule()
    s.add(System("a", "act", _noop))
    s.add(System("b", "apply", _noop))
    s.order("a", "zz")
    with pytest.raises(ScheduleError, match="no system named 'zz'"):
        s.build(set())
    s = Schedule()
    s.add(System("a", "act", _noop))
    s.add(System("b", "apply", _noop))
    s.order("a", "b")
    with pytest.raises(ScheduleError, match="different phases"):
        s.build(set())


def test_first_and_last_slots_are_the_engines_and_bracket_the_plugins():
    with pytest.raises(ScheduleError, match="only the engine's systems hold a 'first' slot"):
        Schedule().add(System("p.x", "ingest", _noop, plugin="p", slot="first"))
    with pytest.raises(ScheduleError, match="unknown slot"):
        Schedule().add(System("engine.x", "ingest", _noop, slot="middle"))
    s = Schedule()
    s.add(System("engine.z_first", "ingest", _noop, writes=("events",), slot="first"))
    s.add(System("a.read", "ingest", _noop, reads=("events",), plugin="a"))
    s.add(System("engine.a_last", "ingest", _noop, reads=("events",), slot="last"))
    order = s.build({"events"})["ingest"]  # slots order them, not names: no conflict
    assert [x.name for x in order] == ["engine.z_first", "a.read", "engine.a_last"]
    s = Schedule()
    s.add(System("engine.end", "emit", _noop, slot="last"))
    s.add(System("a.x", "emit", _noop, plugin="a", after=("engine.end",)))
    with pytest.raises(ScheduleError, match=r"cannot run after 'engine\.end'"):
        s.build(set())


def test_every_engine_step_is_a_system_in_the_printed_schedule():
    world, _, _ = toy_world()
    engine = [(s.phase, s.name, s.slot) for p in PHASES
              for s in world.schedule.phase(p) if s.plugin == "engine"]
    assert engine == [
        ("ingest", "engine.drain_inputs", "first"),
        ("deliver", "engine.deliver_messages", "first"),
        ("decide", "engine.submit_decisions", "first"),
        ("apply", "engine.settle_decisions", "first"),
        ("apply", "engine.sync_spawns", "last"),
        ("emit", "engine.number_actions", "last"),
        ("commit", "engine.digest_state", "last"),
    ]


@pytest.mark.parametrize("name", ["toy", "midgard"])
def test_printed_schedule_is_pinned(name):
    if name == "toy":
        world, _, _ = toy_world()
    else:
        from norn.engine.config import make_config
        from norn.engine.runner import build_world
        from norn.engine.scenario import load_scenario

        scenario = load_scenario(GOLDEN.parents[1] / "scenarios" / "midgard.toml")
        world = build_world(scenario, make_config(None, seed=1))
    text = world.schedule.describe()
    golden = GOLDEN / f"schedule_{name}.txt"
    if os.environ.get("NORN_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "schedule changed: rerun with NORN_UPDATE_GOLDEN=1"


# -- decisions --------------------------------------------------------------------------
def _request(book, tick, n, deadline=2):
    ctx = np.zeros((n, 2), np.float32)
    ctx[:, 1] = 1.0  # option 1 has the higher utility
    opts = np.tile(np.array([[10, 20]], np.int16), (n, 1))
    return book.request(tick, 1, np.arange(n), opts, 2, 0, ctx, deadline)


def test_resolver_results_are_applied_and_deadlines_fall_back():
    book = DecisionBook()
    res = DeterministicResolver(latency_ticks=1)
    ids = _request(book, 1, 3)
    res.submit(1, book.take_new())
    assert len(book.settle(1, res.collect(1))) == 0  # nothing due yet, no deadline yet
    recs = book.settle(2, res.collect(2))
    book.apply(recs)
    assert list(book.applied["request_id"]) == list(ids)
    assert list(book.applied["option"]) == [20, 20, 20]
    assert (book.applied["source"] == SOURCE_RESOLVER).all()
    ids = _request(book, 5, 2, deadline=1)
    book.take_new()  # never submitted: the resolver is silent
    book.apply(book.settle(6, np.empty(0, dtype=[("request_id", "<i8"), ("choice", "u1")])))
    assert list(book.applied["request_id"]) == list(ids)
    assert (book.applied["source"] == SOURCE_DEADLINE).all()
    assert list(book.applied["option"]) == [10, 10]  # the fallback
    assert len(book.pending) == 0


def test_invalid_choice_becomes_the_fallback_never_a_guess():
    book = DecisionBook()
    (rid,) = _request(book, 1, 1)
    book.take_new()
    bogus = np.array([(rid, 7)], dtype=[("request_id", "<i8"), ("choice", "u1")])
    book.apply(book.settle(1, bogus))
    assert book.applied["source"][0] == SOURCE_INVALID and book.applied["option"][0] == 10


def test_pending_decisions_bound_at_max_and_one_past():
    book = DecisionBook(pending_max=4)
    _request(book, 1, 4)
    with pytest.raises(BoundError, match="decisions_pending_max"):
        _request(book, 1, 1)


def test_decision_deadline_bound():
    book = DecisionBook()
    ctx = np.zeros((1, 2), np.float32)
    opts = np.array([[1, 2]], np.int16)
    book.request(1, 1, np.arange(1), opts, 2, 0, ctx, limits.decision_deadline_ticks_max)
    with pytest.raises(BoundError, match="decision_deadline_ticks_max"):
        book.request(1, 1, np.arange(1), opts, 2, 0, ctx, limits.decision_deadline_ticks_max + 1)


def _wide_request(book, n_opts: int, n_ctx: int):
    opts = np.arange(1, n_opts + 1, dtype=np.int16)[None, :]
    ctx = np.linspace(0, 1, n_ctx, dtype=np.float32)[None, :]
    return book.request(1, 1, np.arange(1), opts, n_opts, 0, ctx, 2)


def test_decision_options_bound_at_max_and_one_past():
    book = DecisionBook()
    (rid,) = _wide_request(book, limits.decision_options_max, 2)
    (req,) = book.take_new()
    assert req["request_id"] == rid and req["n_options"] == limits.decision_options_max
    assert req["options"].tolist() == list(range(1, limits.decision_options_max + 1))
    with pytest.raises(BoundError, match="decision_options_max") as info:
        _wide_request(book, limits.decision_options_max + 1, 2)
    assert info.value.requested == limits.decision_options_max + 1
    assert len(book.take_new()) == 0  # nothing was filed


def test_decision_context_bound_at_max_and_one_past():
    book = DecisionBook()
    _wide_request(book, 2, limits.decision_context_max)
    (req,) = book.take_new()
    np.testing.assert_array_equal(
        req["context"], np.linspace(0, 1, limits.decision_context_max, dtype=np.float32))
    with pytest.raises(BoundError, match="context_max"):
        _wide_request(book, 2, limits.decision_context_max + 1)
    assert len(book.take_new()) == 0


def test_decision_context_overflow_names_the_context_limit_and_size():
    book = DecisionBook()
    with pytest.raises(BoundError) as info:
        _wide_request(book, 2, limits.decision_context_max + 1)
    assert (info.value.limit, info.value.requested) == (
        limits.decision_context_max, limits.decision_context_max + 1)


# -- inputs and actions -----------------------------------------------------------------
def _logins(n, seq=0, source="s"):
    cols = {
        "char_id": np.arange(150000, 150000 + n, dtype=np.uint32),
        "account_id": np.arange(2000000, 2000000 + n, dtype=np.uint32),
        "map_id": np.zeros(n, np.int16),
        "x": np.zeros(n, np.int16),
        "y": np.zeros(n, np.int16),
        "base_level": np.ones(n, np.int16),
    }
    return InputBatch(source, seq, "login", cols)


def test_input_queue_bounds_refuse_without_dropping():
    q = InputQueue(batches_max=2, events_max=10)
    assert q.offer(_logins(5, 0)) and q.offer(_logins(5, 1))  # exactly at both bounds
    assert not q.offer(_logins(1, 2))  # one past: refused, caller keeps it
    assert q.refused == 1
    drained = q.drain()
    assert [b.seq for b in drained] == [0, 1]
    assert q.offer(_logins(1, 2))


def test_batch_events_bound_and_schema_checks():
    q = InputQueue()
    assert q.offer(_logins(limits.batch_events_max))
    with pytest.raises(BoundError, match="batch_events_max"):
        q.offer(_logins(limits.batch_events_max + 1))
    bad = _logins(2)
    bad.columns["x"] = bad.columns["x"].astype(np.int32)
    with pytest.raises(ValueError, match=r"login\.x: dtype int32"):
        q.offer(bad)


def test_drain_orders_by_source_and_seq_and_the_commit_notice_names_the_highest_seqs():
    q = InputQueue()
    for src, seq in [("b", 1), ("a", 2), ("b", 0), ("a", 1)]:
        q.offer(_logins(1, seq, src))
    drained = q.drain()
    assert [(b.source, b.seq) for b in drained] == [("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    notice = Committed(5, tuple(drained), ActionBatch(5))
    assert notice.durable_seqs() == {"a": 2, "b": 1}  # cumulative acks: one per source
    assert list(notice.durable_seqs()) == ["a", "b"]
    assert Committed(5, (), ActionBatch(5)).durable_seqs() == {}


def test_actions_bound_at_max_and_one_past_and_ids_are_deterministic():
    buf = ActionBuffer(actions_max=3)
    buf.add("despawn_npc", npc_id=np.arange(3, dtype=np.int64))
    with pytest.raises(BoundError, match="actions_per_tick_max"):
        buf.add("despawn_npc", npc_id=np.arange(1, dtype=np.int64))
    batch = buf.take(7)
    assert list(batch.kinds["despawn_npc"]["action_id"]) == [(7 << 24) + i for i in range(3)]


def test_action_ids_follow_emission_order_across_kinds():
    """An NPC says a line (talk answers, apply phase) and then dies (its burial, later): the
    say's id is below the despawn's, so a map server executing in action_id order shows the
    line before removing the NPC (PROTOCOL.md section 8). The batch stays grouped by kind."""
    buf = ActionBuffer()
    buf.add("npc_say", npc_id=np.array([5, 6], np.int64), text=np.array([b"hi", b"yo"]))
    buf.add("despawn_npc", npc_id=np.array([5], np.int64))
    buf.add("spawn_npc", npc_id=np.array([9], np.int64), map_id=np.array([0], np.int16),
            x=np.array([1], np.int16), y=np.array([1], np.int16),
            sprite=np.array([105], np.int16))
    buf.add("npc_say", npc_id=np.array([9], np.int64), text=np.array([b"new"]))
    batch = buf.take(7)
    assert list(batch.kinds) == ["spawn_npc", "despawn_npc", "npc_say"]  # kind order
    ids = {k: [int(i) - (7 << 24) for i in c["action_id"]] for k, c in batch.kinds.items()}
    assert ids == {"npc_say": [0, 1, 4], "despawn_npc": [2], "spawn_npc": [3]}
    assert len(buf) == 0
    again = buf.take(8)  # the next tick starts at position 0
    assert again.count() == 0


def _stamped(seq: int, tick: int, source: str = "map01") -> InputBatch:
    b = _logins(1, seq, source)
    return InputBatch(b.source, b.seq, b.kind, b.columns, tick)


def test_stamped_batches_wait_for_their_tick_and_hold_back_their_source():
    q = InputQueue()
    for b in [_stamped(1, 3), _stamped(2, 0), _stamped(3, 5), _stamped(1, 0, "admin")]:
        assert q.offer(b)
    # tick 2: map01's seq 1 waits for tick 3, and seq 2 (unstamped) waits behind it
    assert [(b.source, b.seq) for b in q.drain(2)] == [("admin", 1)]
    assert [(b.source, b.seq) for b in q.drain(3)] == [("map01", 1), ("map01", 2)]
    assert q.drain(4) == [] and len(q) == 1
    assert [b.seq for b in q.drain(9)] == [3]  # late: applied at the first tick after its own


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6)), max_size=30),
       st.lists(st.integers(1, 8), min_size=1, max_size=8))
def test_each_tick_takes_a_seq_prefix_per_source_and_nothing_early(batches, ticks):
    """Invariants of drain: nothing before its stamp, nothing twice, per-source seq order."""
    q = InputQueue()
    seqs: dict[str, int] = {}
    for src, stamp in batches:
        name = f"s{src}"
        seqs[name] = seqs.get(name, 0) + 1
        q.offer(_stamped(seqs[name], stamp, name))
    taken: dict[str, list[int]] = {}
    for t in sorted(ticks):
        for b in q.drain(t):
            assert b.tick <= t
            taken.setdefault(b.source, []).append(b.seq)
    for got in taken.values():
        assert got == list(range(1, len(got) + 1))  # a prefix of 1, 2, 3...
    left = q.drain()  # None: everything
    assert sum(map(len, taken.values())) + len(left) == len(batches)
