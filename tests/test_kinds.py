"""Kinds declared once; resources and the ledger declared, never imported; the action log.

- Protocol v1's kinds (``engine/rathena.py``) come first in every world in a pinned order;
  the engine's schemas, the wire schema, the emit-time checks and PROTOCOL.md's tables all
  derive from the one declaration; a bad declaration is refused naming what is wrong.
- A plugin reads shared resources only by declaration; a missing one names plugin and
  resource. Zeny holdings and accounts are declared to the ledger, whose audit sums them.
- A journal numbers input kinds by its own header, so a replay maps them by name.
- The action log (state) traces ``action_result`` events to their actions: an NPC a server
  says is not there is re-announced (bounded per tick), a refused price is reverted; its
  bounds at the limit and one past; replays, synctest and the digests stay exact.
- Models are found through the ``norn.models`` entry point group.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from norn.actors.midgard.events import make_event_source
from norn.actors.midgard.generate import generate
from norn.actors.midgard.tomlw import dumps
from norn.bridge import golden
from norn.bridge import protocol as proto
from norn.bridge.codec import EventDecoder, encode_rows
from norn.engine import limits, rathena
from norn.engine.actions import ActionLog
from norn.engine.config import make_config
from norn.engine.errors import BoundError, ConfigError, DefinitionError, JournalError
from norn.engine.events import EVENT_SCHEMAS
from norn.engine.inputs import InputBatch
from norn.engine.kinds import (
    ActionKind,
    EventKind,
    EventTable,
    InvalidAction,
    Kinds,
    int_field,
    map_field,
    text_field,
)
from norn.engine.ledger import Ledger
from norn.engine.recorder import Recorder, decode_tick, encode_tick, event_table
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import Model, load_model, model_names, parse_scenario, register_model
from norn.engine.table import Column
from norn.engine.tick import step
from norn.engine.world import World
from norn.replays.verify import verify

V1_EVENTS = (
    "login", "logout", "map_change", "player_move", "mob_kill", "player_death", "level_up",
    "npc_talk", "quest_done", "trade", "vending_purchase", "npc_shop", "map_snapshot",
    "action_result", "admin_hazard",
)
V1_ACTIONS = (
    "spawn_npc", "despawn_npc", "move_npc", "npc_say", "broadcast", "set_price", "set_weather",
    "set_hazard", "start_quest", "give_reward",
)
PING = EventKind(
    "ping",
    (int_field("char_id", np.uint32, 1, 2**31 - 1), map_field(), int_field("x", np.int16, 0),
     int_field("y", np.int16, 0), text_field("note")),
    "a test kind", inside=("map_id", "x", "y"),
)


# -- declarations ------------------------------------------------------------------------------
def test_protocol_v1_comes_first_in_its_pinned_order():
    kinds = Kinds.protocol_v1()
    assert tuple(kinds.events) == V1_EVENTS == rathena.EVENT_NAMES
    assert tuple(kinds.actions) == V1_ACTIONS == rathena.ACTION_NAMES
    w = World(1)
    w.consumes(PING)
    # the engine's own kind (the decision tier's flips) next, then a plugin's kind
    assert tuple(w.kinds.events) == (*V1_EVENTS, "llm_deploy", "ping")
    assert w.kinds.event_id("ping") == len(V1_EVENTS) + 1


def test_engine_and_wire_schemas_derive_from_the_declaration():
    for k in rathena.EVENT_KINDS:
        assert EVENT_SCHEMAS[k.name] == k.schema
        if k.arrives != "events":
            continue
        wire = proto.WIRE_EVENT_SCHEMAS[k.name]
        assert [(w.engine, w.name, w.kind, w.lo, w.hi) for w in wire] == [
            (f.name, f.wire, f.kind, f.lo, f.hi) for f in k.fields]
    assert [w.engine for w in proto.WIRE_RESULT_SCHEMA] == ["action_id", "status", "reason"]
    assert proto.WIRE_EVENT_COORDS["map_change"] == ("to_map", "x", "y")
    for k in rathena.ACTION_KINDS:
        assert [w.engine for w in proto.WIRE_ACTION_SCHEMAS[k.name]] == [
            "action_id", *(f.name for f in k.fields)]


def test_a_declared_kind_is_accepted_and_checked_at_the_edge():
    kinds = Kinds.protocol_v1()
    kinds.consume("test", [PING])
    dec = EventDecoder(["prontera"], [(10, 10)], schema=proto.WireSchema.of(kinds))
    msg = proto.unpack(encode_rows(proto.EVENTS, 1, "ping", [
        [7, "prontera", 1, 2, "hi"], [8, "prontera", 10, 2, "out"], [0, "prontera", 1, 1, ""],
    ]), 1 << 20)
    out = dec.decode(msg)
    assert out.kind == "ping" and out.columns["char_id"].tolist() == [7]
    assert list(zip(out.invalid_fields, out.invalid_reasons, strict=True)) == [
        ("x", "outside the map's width"), ("char_id", "must be an integer in [1, 2147483647]")]
    with pytest.raises(proto.ProtocolError, match="unknown event kind"):
        EventDecoder(["prontera"], [(10, 10)]).decode(msg)  # protocol v1 alone


def test_bad_declarations_are_refused_naming_what_is_wrong():
    with pytest.raises(DefinitionError, match="names are"):
        EventKind("Bad-Name", ())
    with pytest.raises(DefinitionError, match="outside int16"):
        int_field("x", np.int16, 0, 1 << 20)
    with pytest.raises(DefinitionError, match="inside="):
        EventKind("e", (int_field("x", np.int16),), inside=("map_id", "x", "y"))
    with pytest.raises(DefinitionError, match="repeat"):
        EventKind("e", (int_field("x", np.int16), int_field("x", np.int32)))
    with pytest.raises(DefinitionError, match="log="):
        ActionKind("a", (text_field(),), log=("text",))
    kinds = Kinds.protocol_v1()
    kinds.consume("a", [PING])
    kinds.consume("b", [PING])  # the same declaration again: one kind, two consumers
    assert kinds.consumers["ping"] == ["a", "b"]
    other = EventKind("ping", (int_field("char_id", np.uint32),))
    with pytest.raises(DefinitionError, match="declared twice"):
        kinds.consume("c", [other])
    with pytest.raises(DefinitionError, match="unknown event kind 'nope'"):
        kinds.consume("c", ["nope"])
    with pytest.raises(DefinitionError, match="unknown action kind 'nope'"):
        kinds.emit_by("c", ["nope"])
    kinds.freeze()
    with pytest.raises(DefinitionError, match="fixed once"):
        kinds.consume("d", [EventKind("late", ())])


def test_protocol_md_kind_tables_are_generated_from_the_declaration():
    doc = golden.doc_kind_tables(golden.PROTOCOL_MD.read_text())
    want = golden.kind_tables(Kinds.protocol_v1())
    want |= golden.world_kind_tables(golden.default_world_kinds())
    assert doc == want, "PROTOCOL.md's kind tables are stale: python -m norn.bridge.golden --write"
    assert set(doc) == {"events", "reasons", "actions", "world_events", "world_actions"}


# -- a small Midgard world -----------------------------------------------------------------------
def midgard(log_ticks: int = 0, per_tick: int = 4096, reannounce: int = 64, seed: int = 7):
    sc = generate(maps=6, npcs=400, markets=8, factions=2, hazards=4, seed=5, players=30)
    data = copy.deepcopy(sc.data)
    data["rules"]["actions"].update(action_log_ticks=log_ticks,
                                    action_log_per_tick_max=per_tick,
                                    reannounce_per_tick_max=reannounce)
    sc = parse_scenario(dumps(data), "kinds-test.toml")
    config = make_config(None, seed=seed, fsync=False, snapshot_every=0)
    world = build_world(sc, config)
    return world, sc, config, make_event_source(sc.data, seed)


@pytest.fixture(scope="module")
def plain():
    return midgard()


def test_emit_checks_come_from_the_declared_bounds(plain):
    world = plain[0]
    geo = world.resource("geography")
    blocked = np.flatnonzero(geo.walk[: geo.width[0] * geo.height[0]] == 0)
    cases = [
        ("npc_say", dict(npc_id=[1], text=np.array([b""], "S255")), "empty text"),
        ("set_weather", dict(map_id=[0], weather=[99], on=[1]), "is not one of"),
        ("set_hazard", dict(map_id=[0], hazard_type=[0], intensity=[np.nan], on=[1]),
         "not finite"),
        ("set_hazard", dict(map_id=[0], hazard_type=[0], intensity=[0.5], on=[2]),
         r"on 2 outside \[0, 1\]"),
        ("move_npc", dict(npc_id=[-1], map_id=[0], x=[1], y=[1]), "npc_id -1 outside"),
        ("spawn_npc", dict(npc_id=[1], map_id=[99], x=[1], y=[1], sprite=[1]), "map_id 99"),
        ("start_quest", dict(char_id=[0], quest_id=[1]), "char_id 0 outside"),
        ("broadcast", dict(map_id=[-2], text=np.array([b"x"], "S255")), "map_id -2 unknown"),
        ("give_reward", dict(char_id=[1], item_id=[0], amount=[0], zeny=[2**31]), "range"),
        ("set_price", dict(market_id=[0], map_id=[0], item_id=[1], price_zeny=[1], oops=[1]),
         "unknown columns"),
    ]
    if len(blocked):
        c = int(blocked[0])
        cases.append(("move_npc", dict(npc_id=[1], map_id=[0], x=[c % int(geo.width[0])],
                                       y=[c // int(geo.width[0])]), "not walkable"))
    for kind, cols, match in cases:
        with pytest.raises(InvalidAction, match=match):
            world.emit(kind, **{k: np.asarray(v) for k, v in cols.items()})
    world.emit("broadcast", map_id=np.array([-1]), text=np.array([b"every map"], "S255"))
    assert len(world.actions) == 1
    world.actions.take(world.tick)


def test_undeclared_or_unchecked_actions_are_refused():
    from tests.helpers import toy_world

    world = toy_world()[0]
    with pytest.raises(DefinitionError, match="no plugin declared that it emits"):
        world.actions.add("set_weather", map_id=[0], weather=[1], on=[1])
    with pytest.raises(DefinitionError, match="no 'geography'"):
        world.emit("broadcast", map_id=np.array([0]), text=np.array([b"hi"], "S255"))


# -- resources and the ledger ----------------------------------------------------------------------
class Reader:
    def __init__(self, name: str, resources: tuple[str, ...], reads: str) -> None:
        self.name, self.resources, self.reads = name, resources, reads

    def build(self, world: World) -> None:
        world.resource(self.reads)


def test_resources_are_read_by_declaration_and_must_be_provided():
    w = World(1)
    w.provide("geography", object())
    with pytest.raises(DefinitionError, match="provided twice"):
        w.provide("geography", object())
    with pytest.raises(DefinitionError, match="plugin 'npc' reads resource 'items' without "):
        w.add_plugin(Reader("npc", ("geography",), "items"))
    with pytest.raises(DefinitionError, match="plugin 'npc' needs resource 'items', which "):
        w.add_plugin(Reader("npc", ("items",), "items"))
    w = World(1)
    w.provide("geography", object())
    w.add_plugin(Reader("eco", ("geography", "markets"), "geography"))
    with pytest.raises(DefinitionError, match="plugin 'eco' declares resource 'markets'"):
        w.build()


class Holder:
    name = "holder"
    resources = ("ledger",)

    def build(self, world: World) -> None:
        world.add_table("purse", [Column("zeny", np.int64), Column("weight", np.float32)], 4)
        world.tables["purse"].spawn(2, zeny=np.array([5, 7]))
        ledger = world.resource("ledger")
        ledger.holds("purse.zeny")
        ledger.uses(sources=("found",), sinks=("lost",))


def test_the_ledger_sums_declared_holdings_and_names_bad_declarations():
    w = World(1)
    ledger = Ledger(sources=("found",), sinks=("lost",))
    w.add_plugin(ledger)
    w.add_plugin(Holder())
    assert ledger.holdings == ["purse.zeny"] and ledger.holders == {"purse.zeny": "holder"}
    ledger.set_initial(w)
    w.build()
    w.tables["purse"].sync()
    assert ledger.audit(w) == {"held": 12, "expected": 12, "difference": 0}
    w.tables["purse"]["zeny"][0] += 3
    ledger.book(w, source="found", amount=3)
    assert ledger.audit(w)["difference"] == 0
    w.tables["purse"]["zeny"][1] -= 1
    assert ledger.audit(w)["difference"] == -1  # a zeny lost without a sink is caught
    for bad, match in (("purse.nope", "no column"), ("purse.weight", "not an integer"),
                       ("msg:none.zeny", "no channel field"), ("purse.zeny", "declared twice")):
        with pytest.raises(DefinitionError, match=match):
            ledger.holds(bad)
    w2 = World(1)
    w2.add_plugin(Ledger(sources=("found",), sinks=("lost",)))

    class Spender(Holder):
        name = "spender"

        def build(self, world: World) -> None:
            world.resource("ledger").uses(sinks=("burnt",))

    with pytest.raises(DefinitionError, match="plugin 'spender' books to ledger sink 'burnt'"):
        w2.add_plugin(Spender())


def test_midgard_zeny_holdings_are_the_kinds_declarations(plain):
    ledger = plain[0].resource("ledger")
    assert dict(ledger.holders) == {
        "faction.treasury": "faction", "npc.wallet": "npc", "market.cash": "economy",
        "msg:order.escrow_zeny": "economy", "msg:fill.zeny": "economy"}
    assert ledger.audit(plain[0])["difference"] == 0


# -- the journal numbers kinds by its header -------------------------------------------------------
class PingPlugin:
    name = "pinger"

    def build(self, world: World) -> None:
        world.consumes(PING)
        world.add_table("pings", [Column("n", np.int64)], 1).spawn(1)
        world.add_system("pinger.count", "ingest", self.count, reads=("events",),
                         writes=("pings.n",))

    @staticmethod
    def count(world: World) -> None:
        world.tables["pings"]["n"][0] += len(world.events["ping"]["char_id"])


def ping_model() -> Model:
    return Model("pinger", lambda world, scenario: world.add_plugin(PingPlugin()))


def ping_batch(seq: int) -> InputBatch:
    return InputBatch("map01", seq, "ping", {
        "char_id": np.array([seq], np.uint32), "map_id": np.zeros(1, np.int16),
        "x": np.ones(1, np.int16), "y": np.ones(1, np.int16),
        "note": np.array([b"hello"], "S255")})


def test_a_journal_numbers_input_kinds_by_its_own_header(tmp_path, request):
    request.addfinalizer(register_model(ping_model()))
    sc = parse_scenario('name = "p"\nmodel = "pinger"\n', "p.toml")
    config = make_config(None, seed=3, ticks=6, fsync=False, snapshot_every=3)
    world = build_world(sc, config)
    header = make_header(sc, config, world)
    assert header["kinds"][-1] == ["ping", [["char_id", "<u4"], ["map_id", "<i2"],
                                            ["x", "<i2"], ["y", "<i2"], ["note", "|S255"]]]
    rec = Recorder.create(tmp_path / "run", header, fsync=False, snapshot_every=3)
    run(world, config, rec, before_tick=lambda t: world.inputs.offer(ping_batch(t)) and None)
    rec.close(world, "completed")
    assert int(world.tables["pings"]["n"][0]) == 6
    result = verify(tmp_path / "run")
    assert result.matched and result.ticks == 6

    table = event_table(header)
    world2 = build_world(sc, config)
    world2.inputs.offer(ping_batch(1))
    step_record = step(world2)
    frame = encode_tick(step_record, world2.kinds)
    back = decode_tick(frame, table)
    assert back.inputs[0].kind == "ping" and back.inputs[0].columns["note"][0] == b"hello"
    with pytest.raises(JournalError, match="not in the journal's kinds"):
        decode_tick(frame)  # protocol v1 alone cannot read it
    with pytest.raises(JournalError, match="encode with the world's kinds"):
        encode_tick(step_record)
    # a v1-only world's frames are what FORMAT 1 always wrote
    v1 = EventTable.of(Kinds.protocol_v1())
    assert event_table({}) == v1


# -- the action log ----------------------------------------------------------------------------
def test_action_log_bounds_at_the_limit_and_one_past():
    ActionLog(limits.action_log_ticks_max, 1)
    with pytest.raises(BoundError, match="action_log_ticks_max"):
        ActionLog(limits.action_log_ticks_max + 1, 1)
    ActionLog(1, limits.action_log_rows_max)
    with pytest.raises(BoundError, match="action_log_rows_max"):
        ActionLog(1, limits.action_log_rows_max + 1)
    with pytest.raises(BoundError, match="action_log_rows_max"):
        ActionLog(2, limits.action_log_rows_max // 2 + 1)


def results(ids, status, reason, seq: int) -> InputBatch:
    n = len(ids)
    return InputBatch("map01", seq, "action_result", {
        "action_id": np.asarray(ids, np.int64), "status": np.full(n, status, np.uint8),
        "reason": np.full(n, reason, np.int16)})


def run_until_moves(world, source, need: int, ticks_max: int = 60):
    """Step until one tick has moved at least ``need`` distinct NPCs; that tick's actions."""
    for t in range(world.tick + 1, world.tick + ticks_max + 1):
        for b in source(t):
            world.inputs.offer(b)
        rec = step(world)
        mv = rec.emitted.kinds.get("move_npc")
        if mv is not None and len(np.unique(mv["npc_id"])) >= need:
            return rec.emitted
    raise AssertionError("the world moved too few NPCs")


def test_the_log_is_off_by_default_and_the_world_unchanged(plain):
    world = plain[0]
    assert world.action_log is None and "action_log" not in world.tables
    assert not any(s.name in ("npc.reannounce", "economy.revert", "action_log.match")
                   for s in world.schedule.systems)


@pytest.mark.parametrize("cap", [3, 4])
def test_an_npc_a_server_says_is_not_there_is_reannounced_bounded_per_tick(cap):
    world, _, _, source = midgard(log_ticks=10, reannounce=cap)
    batch = run_until_moves(world, source, 5)
    mv = batch.kinds["move_npc"]
    _, first = np.unique(mv["npc_id"], return_index=True)
    pick = np.sort(first)[:4]  # four NPCs: at the bound (cap 4) and one past it (cap 3)
    ids, npcs = mv["action_id"][pick], mv["npc_id"][pick]
    world.inputs.offer(results(ids, 1, int(rathena.ResultReason.NOT_HERE), 1))
    world.inputs.offer(results(ids[:1], 0, 0, 1 << 20))  # another server has done the first
    rec = step(world)
    spawned = rec.emitted.kinds["spawn_npc"]["npc_id"]
    expect = np.sort(npcs[1:])[:cap]
    assert np.isin(expect, spawned).all() and not np.isin(npcs[:1], spawned).any()
    assert np.isin(spawned, npcs).sum() == min(cap, 3)
    t = world.tables["npc"]
    s = (expect & 0xFFFFFFFF).astype(np.int64)
    got = rec.emitted.kinds["spawn_npc"]
    at = np.searchsorted(got["npc_id"], expect, sorter=np.argsort(got["npc_id"], kind="stable"))
    order = np.argsort(got["npc_id"], kind="stable")[at]
    assert (got["map_id"][order] == t["map"][s]).all()  # announced where the NPC is now
    stats = world.tables["action_log_stats"]
    assert int(stats["results_failed"][0]) == 4 and int(stats["results_done"][0]) == 1
    # another reason (not not_here) has no such consequence
    mv = rec.emitted.kinds["move_npc"]
    world.inputs.offer(results(mv["action_id"][:2], 1, int(rathena.ResultReason.EXPIRED), 2))
    after = step(world).emitted.kinds.get("spawn_npc", {"npc_id": np.empty(0, np.int64)})
    assert not np.isin(mv["npc_id"][:2], after["npc_id"]).any()
    assert int(stats["results_failed"][0]) == 6


def test_a_refused_price_goes_back_to_the_one_the_server_has():
    world, _, _, source = midgard(log_ticks=10)
    for t in range(1, 80):
        for b in source(t):
            world.inputs.offer(b)
        rec = step(world)
        if "set_price" in rec.emitted.kinds:
            break
    sp = rec.emitted.kinds["set_price"]
    k = sp["market_id"].astype(np.int64)
    m = world.tables["market"]
    prior = world.tables["action_log"]["prior"][world.action_log.rows(sp["action_id"])]
    assert (m["announced"][k] == sp["price_zeny"]).all() and (prior > 0).all()
    assert (prior != sp["price_zeny"]).all()
    # the next tick's ingest by hand (before economy.update moves prices on): match, revert
    world.events = {**world.kinds.empty_events(),
                    "action_result": results(sp["action_id"], 1, 7, 1).columns}
    world.action_log.match(world)
    revert = next(s for s in world.schedule.systems if s.name == "economy.revert")
    revert.fn(world)
    assert (m["price"][k] == prior).all() and (m["announced"][k] == prior).all()
    assert (m["price_x"][k] == prior.astype(np.float64)).all()


def test_more_tracked_actions_than_a_block_holds_are_counted_not_kept():
    world, _, _, source = midgard(log_ticks=4, per_tick=2)
    batch = run_until_moves(world, source, 3)
    stats = world.tables["action_log_stats"]
    assert int(stats["untracked"][0]) > 0
    mv = batch.kinds["move_npc"]["action_id"]
    rows = world.action_log.rows(mv)
    assert (rows[:2] >= 0).all() and (rows[2:] == -1).all()  # the lowest ids are kept
    for _ in range(4):  # four ticks later the block is reused
        step(world)
    assert (world.action_log.rows(mv) == -1).all()


def test_results_replay_exactly_and_the_log_is_complete_state(tmp_path):
    world, sc, config, source = midgard(log_ticks=6, reannounce=8)
    config = make_config(None, seed=7, fsync=False, snapshot_every=5, ticks=40, synctest=True)
    world = build_world(sc, config)
    header = make_header(sc, config, world)
    rec = Recorder.create(tmp_path / "run", header, fsync=False, snapshot_every=5)
    seq = [0]

    def feed(tick: int) -> None:
        for b in source(tick):
            world.inputs.offer(b)
        last = world.last_actions
        if last is None:
            return
        ids = np.concatenate([c["action_id"] for k, c in last.kinds.items()
                              if k in ("move_npc", "set_price", "npc_say")] or [np.empty(0)])
        if len(ids):
            seq[0] += 1
            world.inputs.offer(results(ids[::3], 1, int(rathena.ResultReason.NOT_HERE),
                                       seq[0]))

    run(world, config, rec, before_tick=feed)  # synctest: restore+step equal every tick
    rec.close(world, "completed")
    assert int(world.tables["action_log_stats"]["results_failed"][0]) > 0
    result = verify(tmp_path / "run")
    assert result.matched and result.ticks == 40


# -- models -------------------------------------------------------------------------------------
def test_models_are_found_through_entry_points():
    assert {"toy", "boltzmann", "midgard"} <= set(model_names())
    mid = load_model("midgard")
    assert mid.name == "midgard" and mid.bridge_view is not None and mid.summary is not None
    assert load_model("boltzmann").make_event_source is None  # an explicit "has none"
    with pytest.raises(ConfigError, match="not installed"):
        load_model("atlantis")
    with pytest.raises(ConfigError, match="model: must be one of"):
        parse_scenario('model = "atlantis"\n', "a.toml")
    undo = register_model(Model("scratch", lambda w, s: None))
    assert "scratch" in model_names()
    undo()
    assert "scratch" not in model_names()
