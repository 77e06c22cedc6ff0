"""Behaviour checks that fail when a rule is wrong: flight, prices, influence, life and death.

Each compares a world with a stimulus against the same world without it (same seed), or
checks a rule kernel against its definition, so a rule with a flipped sign, a missing
term or a broken bound shows up as a failed comparison.
"""

from __future__ import annotations

import tomllib

import numpy as np

from norn.actors.midgard.generate import generate
from norn.actors.midgard.tomlw import dumps
from norn.engine.events import EVENT_SCHEMAS, TEXT_DTYPE
from norn.engine.inputs import InputBatch
from norn.engine.scenario import load_scenario, parse_scenario
from norn.engine.tick import step
from norn.rules import pricing
from norn.rules import spread as sp
from tests.test_world_invariants import build, violations


def batch(kind: str, seq: int, source: str = "test", **cols) -> InputBatch:
    schema = EVENT_SCHEMAS[kind]
    typed = {n: np.ascontiguousarray(np.atleast_1d(cols[n]), dtype=dt) for n, dt in schema}
    return InputBatch(source, seq, kind, typed)


def scenario_with(base, **rules) -> object:
    """``base`` with some rule numbers replaced ("npc.hurt_hp_per_tick": 100, ...)."""
    data = tomllib.loads(base.text)
    for path, value in rules.items():
        node = data["rules"]
        *head, last = path.split("__")
        for h in head:
            node = node[h]
        node[last] = value
    return parse_scenario(dumps(data), base.source)


# -- NPCs flee a strong hazard -------------------------------------------------------------
def _left_prontera(with_fire: bool, ticks: int = 100) -> float:
    world, _ = build(load_scenario("midgard"), seed=5)
    st = world.resources["midgard"]
    p = st.map_id("prontera")
    npc = world.tables["npc"]
    there = npc.live_slots()[npc["map"][npc.live_slots()] == p]
    if with_fire:
        fire = st.htype_names.index("fire")
        world.inputs.offer(batch("admin_hazard", 0, map_id=p, hazard_type=fire, intensity=1.0))
    for _ in range(ticks):
        step(world)
    gone = npc["map"][there] != p
    return float(gone.mean())


def test_npcs_leave_a_map_when_a_strong_hazard_starts_there():
    calm = _left_prontera(False)
    burning = _left_prontera(True)
    assert burning > 0.5, burning
    assert burning > calm + 0.35, (calm, burning)


def test_a_hazard_starts_and_ends_as_world_actions():
    world, _ = build(generate(maps=6, npcs=60, markets=6, factions=2, hazards=0, seed=4))
    st = world.resources["midgard"]
    storm = st.htype_names.index("storm")
    world.inputs.offer(batch("admin_hazard", 0, map_id=2, hazard_type=storm, intensity=0.9))
    step(world)
    on = world.last_actions.kinds["set_hazard"]
    assert (on["map_id"] == 2).any() and (on["on"][on["map_id"] == 2] == 1).all()
    assert "set_weather" in world.last_actions.kinds  # a storm shows as rAthena weather
    world.inputs.offer(batch("admin_hazard", 1, map_id=2, hazard_type=storm, intensity=0.0))
    ended = False
    for _ in range(2):
        step(world)
        off = world.last_actions.kinds.get("set_hazard")
        ended |= off is not None and bool(((off["map_id"] == 2) & (off["on"] == 0)).any())
    assert ended
    hz = world.tables["hazard"]
    assert not ((hz["map"][hz.live_slots()] == 2) & (hz["type"][hz.live_slots()] == storm)).any()


# -- prices follow excess demand --------------------------------------------------------------
def _apple_price(side: int | None, ticks: int = 100) -> tuple[int, int]:
    world, _ = build(load_scenario("midgard"), seed=8)
    st = world.resources["midgard"]
    p = st.map_id("prontera")
    apple = int(st.item_index(np.array([512]))[0])
    k = int(st.market_slot(np.array([p]), np.array([apple]))[0])
    for t in range(ticks):
        if side is not None:
            world.inputs.offer(
                batch("npc_shop", t, char_id=150001, map_id=p, item_id=512,
                      amount=40 if side == 0 else 400, is_sell=side)
            )
        step(world)
    return int(world.tables["market"]["price"][k]), int(st.item_price[apple])


def test_price_rises_under_persistent_demand_and_falls_under_persistent_supply():
    calm, base = _apple_price(None)
    dear, _ = _apple_price(0)
    cheap, _ = _apple_price(1)
    assert dear > calm and dear > base, (calm, dear, base)
    assert cheap < calm and cheap < base, (calm, cheap, base)


def test_price_step_and_band_are_bounds():
    n = 4
    stock = np.array([0, 100, 100, 100], np.int32)
    target = np.full(n, 100, np.int32)
    price = np.array([100, 100, 199, 51], np.int32)
    price_x = price.astype(np.float64)
    lo = np.full(n, 50, np.int64)
    hi = np.full(n, 200, np.int64)
    demand = np.array([50, 50, 50, 0], np.int32)
    supply = np.array([0, 0, 0, 50], np.int32)
    d_ema = np.zeros(n, np.float32)
    s_ema = np.zeros(n, np.float32)
    rises, falls = pricing.adjust_prices(
        stock, target, price, price_x, lo, hi, demand, supply, d_ema, s_ema,
        1.0, 10.0, 0.02, 1.0, 0.5,
    )
    assert list(price) == [102, 102, 200, 50]  # +2% capped; band top; band bottom
    assert (rises, falls) == (3, 1)
    assert not demand.any() and not supply.any()


# -- influence spreads along warps and decays without presence -------------------------------------
def test_influence_spreads_to_neighbours_and_decays_without_presence():
    world, _ = build(generate(maps=30, npcs=0, markets=3, factions=2, hazards=0, seed=6))
    st = world.resources["midgard"]
    terr = world.tables["territory"]
    infl = terr["influence"][: st.n_maps]
    infl[:] = 0
    a = int(np.argmax(np.diff(st.adj_off)))  # the best connected map
    infl[a, 0] = 0.8
    nbrs = st.adj[st.adj_off[a] : st.adj_off[a + 1]]
    hops = np.full(st.n_maps, -1)
    hops[a] = 0
    frontier = [a]
    for d in range(1, 4):
        ring = [st.adj[st.adj_off[u] : st.adj_off[u + 1]] for u in frontier]
        nxt = [int(v) for r in ring for v in r if hops[v] < 0]
        for v in nxt:
            hops[v] = d
        frontier = nxt
    for _ in range(100):
        step(world)
    assert infl[a, 0] < 0.8
    assert (infl[nbrs, 0] > 0).all()
    far = np.flatnonzero(hops == 3)
    assert len(far) > 0, "no map 3 warps away: the decay check below would check nothing"
    assert infl[far, 0].max() < infl[nbrs, 0].min()
    assert not violations(world)


def test_presence_grows_influence_and_hostile_rivals_contest():
    infl = np.zeros((1, 3), np.float32)
    deeds = np.zeros((1, 3), np.float32)
    heads = np.array([[10, 0, 0]], np.int64)
    adj_off = np.zeros(2, np.int64)
    adj = np.zeros(0, np.int64)
    shift = np.zeros(1, np.float32)
    scratch = np.zeros((1, 3))
    sp.influence_step(infl, deeds, heads, adj_off, adj, shift, 10.0, 0.005, 0.001, 0.001,
                      0.0, 1.0, scratch)
    assert infl[0, 0] > 0 and infl[0, 1] == 0
    infl = np.array([[0.6, 0.55, 0.0], [0.6, 0.55, 0.0]], np.float32)
    dip = np.array([[1, -0.5, 0], [-0.5, 1, 0], [0, 0, 1]], np.float32)
    owner = np.full(2, -1, np.int16)
    contested = np.zeros(2, np.uint8)
    conflict = np.zeros(2, np.float32)
    e = np.zeros(2, np.int64)
    n_new, _ = sp.contest(infl, dip, 0.2, 0.2, 0.25, -0.1, owner, contested, conflict, 1.0,
                          e, e.copy(), e.copy(), e.copy())
    assert n_new == 2 and (contested == 1).all() and (conflict == 1.0).all()
    dip[0, 1] = dip[1, 0] = 0.5  # allies share a map in peace
    contested[:] = 0
    conflict[:] = 0
    n_new, _ = sp.contest(infl, dip, 0.2, 0.2, 0.25, -0.1, owner, contested, conflict, 1.0,
                          e, e.copy(), e.copy(), e.copy())
    assert n_new == 0 and (owner == 0).all()


# -- decisions: near-ties and players talking ---------------------------------------------------
def test_near_ties_and_player_talk_are_escalated_and_applied():
    world, _ = build(load_scenario("midgard"), seed=3)
    npc = world.tables["npc"]
    target = int(npc.handles(npc.live_slots()[:1])[0])
    world.inputs.offer(
        batch("npc_talk", 0, char_id=150007, npc_id=target,
              text=np.array([b"hi"], dtype=TEXT_DTYPE))
    )
    said = []
    for _ in range(40):
        step(world)
        say = world.last_actions.kinds.get("npc_say")
        if say is not None:
            said += say["npc_id"].tolist()
    stats = world.tables["npc_stats"]
    assert stats["pondered"][0] > 0 and stats["behaviour_applied"][0] > 0
    assert stats["talks"][0] == 1 and stats["talks_applied"][0] == 1
    assert target in said
    assert world.tables["conversation"].count == 0
    assert world.decisions.counters["resolved"] > 0


# -- harm, death and newcomers -------------------------------------------------------------------
def test_deadly_hazard_kills_then_newcomers_take_the_free_slots():
    base = generate(maps=6, npcs=300, markets=6, factions=2, hazards=0, seed=12)
    sc = scenario_with(base, npc__hurt_hp_per_tick=250.0, npc__respawn_delay_ticks=5)
    world, _ = build(sc, seed=2)
    st = world.resources["midgard"]
    npc = world.tables["npc"]
    fire = st.htype_names.index("fire")
    counts = np.bincount(npc["map"][npc.live_slots()], minlength=st.n_maps)
    m = int(np.argmax(counts))
    world.inputs.offer(batch("admin_hazard", 0, map_id=m, hazard_type=fire, intensity=1.0))
    despawned = spawned = 0
    for _ in range(40):
        before = set(npc.handles(npc.live_slots()).tolist())
        step(world)
        assert not violations(world)
        k = world.last_actions.kinds
        despawned += len(k.get("despawn_npc", {}).get("npc_id", []))
        # spawn_npc also shows an NPC that took a warp on its new map (join sync, issue 14):
        # a birth is the announcement of a handle that was not alive before the tick
        shown = k.get("spawn_npc", {}).get("npc_id", [])
        spawned += sum(1 for h in np.asarray(shown).tolist() if h not in before)
        if world.tick == 3:
            world.inputs.offer(batch("admin_hazard", 1, map_id=m, hazard_type=fire, intensity=0.0))
    stats = world.tables["npc_stats"]
    assert stats["died"][0] > 0 and despawned == stats["died"][0]
    assert stats["born"][0] > 0 and spawned == stats["born"][0]
    assert (npc["generation"][: npc.hwm] > 0).any()  # slots reused under a new generation
    sinks = world.tables["ledger"]["sinks"][0]
    assert sinks[0] > 0  # the dead's zeny left through the 'death' sink


# -- players mirrored from events ---------------------------------------------------------------
def test_player_table_mirrors_logins_moves_and_logouts():
    world, _ = build(generate(maps=4, npcs=10, markets=4, factions=2, hazards=0, seed=1))
    world.inputs.offer(batch("login", 0, char_id=[150000, 150001], account_id=[2000000, 2000001],
                             map_id=[1, 2], x=[10, 11], y=[12, 13], base_level=[5, 60]))
    step(world)
    world.inputs.offer(batch("map_change", 1, char_id=150000, from_map_id=1, to_map_id=3,
                             x=20, y=21))
    world.inputs.offer(batch("logout", 2, char_id=150001, account_id=2000001))
    step(world)
    pl = world.tables["player"]
    s = pl.live_slots()
    rows = {int(c): i for c, i in zip(pl["char_id"][s], s, strict=True)}
    a, b = rows[150000], rows[150001]
    assert pl["account_id"][a] == 2000000 and pl["account_id"][b] == 2000001
    assert (pl["map"][a], pl["x"][a], pl["y"][a], pl["online"][a]) == (3, 20, 21, 1)
    assert pl["online"][b] == 0 and pl["level"][b] == 60
