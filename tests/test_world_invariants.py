"""Invariants checked after every tick, on the default world and on generated worlds.

Zeny is conserved (held = initial + sources - sinks), stock is never negative, NPCs stand
on walkable cells inside their map, influence, hazard intensity, needs and hp stay within
their bounds, and every world action that left a tick passes the rules' checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from actors.midgard import audit, make_event_source
from actors.midgard.actions import check_batch
from actors.midgard.generate import generate
from engine.config import make_config
from engine.runner import build_world
from engine.scenario import Scenario, load_scenario
from engine.tick import step


def build(scenario: Scenario, seed: int = 1, **cfg):
    world = build_world(scenario, make_config(None, seed=seed, **cfg))
    return world, make_event_source(scenario.data, seed)


def step_with_events(world, source) -> None:
    for batch in source(world.tick + 1):
        assert world.inputs.offer(batch)
    step(world)


def violations(world) -> list[str]:
    """Every broken invariant of the world after a tick, as readable lines."""
    st = world.resources["midgard"]
    rules = st.spec.rules
    out = []
    a = audit(world)
    if a["difference"]:
        out.append(f"zeny: held {a['held']} != expected {a['expected']}")
    m = world.tables["market"]
    n = len(st.market_map)
    if (m["stock"][:n] < 0).any():
        out.append("negative stock")
    if (m["stock"][:n] > rules.economy.stock_max).any():
        out.append("stock above stock_max")
    price = m["price"][:n]
    if ((price < st.market_lo) | (price > st.market_hi)).any():
        out.append("price outside its band")
    if (m["cash"][:n] < 0).any():
        out.append("negative market cash")
    npc = world.tables["npc"]
    s = npc.live_slots()
    mp = npc["map"][s].astype(np.int64)
    x = npc["x"][s].astype(np.int64)
    y = npc["y"][s].astype(np.int64)
    inside = (mp >= 0) & (mp < st.n_maps)
    if not inside.all():
        out.append("NPC on an unknown map")
    else:
        inb = (x >= 0) & (y >= 0) & (x < st.width[mp]) & (y < st.height[mp])
        if not inb.all():
            out.append(f"{int((~inb).sum())} NPCs outside their map")
        elif not st.walk[st.walk_off[mp] + y * st.width[mp] + x].all():
            out.append("NPC on a blocked cell")
    if (npc["wallet"][s] < 0).any():
        out.append("negative wallet")
    needs = npc["needs"][s]
    if ((needs < 0) | (needs > 1)).any():
        out.append("need outside [0, 1]")
    if (npc["hp"][s] > rules.npc.hp_max).any():
        out.append("hp above hp_max")
    if ((npc["mood"][s] < -1) | (npc["mood"][s] > 1)).any():
        out.append("mood outside [-1, 1]")
    infl = world.tables["territory"]["influence"][: st.n_maps]
    if ((infl < 0) | (infl > rules.faction.influence_max)).any():
        out.append("influence outside [0, influence_max]")
    dip = world.tables["faction"]["diplomacy"][: st.n_factions]
    if ((dip < -1) | (dip > 1)).any():
        out.append("diplomacy outside [-1, 1]")
    rep = world.tables["reputation"]
    rv = rep["value"][rep.live_slots()]
    if (np.abs(rv) > rules.faction.reputation_max).any():
        out.append("reputation outside its bound")
    hz = world.tables["hazard"]
    hv = hz["intensity"][hz.live_slots()]
    if ((hv < 0) | (hv > rules.hazard.intensity_max)).any():
        out.append("hazard intensity outside [0, intensity_max]")
    keys = hz["map"][hz.live_slots()].astype(np.int64) * st.n_htypes + hz["type"][hz.live_slots()]
    if len(np.unique(keys)) != len(keys):
        out.append("two hazards of one type on one map")
    if world.last_actions is not None:
        out += check_batch(st, world.last_actions)
    return out


def run_checked(world, source, ticks: int) -> dict[str, int]:
    """Step ``ticks`` ticks checking every invariant after each; count the actions seen."""
    seen: dict[str, int] = {}
    for _ in range(ticks):
        step_with_events(world, source)
        problems = violations(world)
        assert not problems, f"tick {world.tick}: {problems}"
        for kind, cols in world.last_actions.kinds.items():
            seen[kind] = seen.get(kind, 0) + len(cols["action_id"])
    return seen


def test_default_world_keeps_every_invariant_every_tick():
    from engine.inputs import InputBatch

    world, source = build(load_scenario("midgard"), seed=11)
    assert not violations(world)
    st = world.resources["midgard"]

    def admin(seq: int, map_name: str, kind: str, intensity: float) -> InputBatch:
        cols = {
            "map_id": np.array([st.map_id(map_name)], np.int16),
            "hazard_type": np.array([st.htype_names.index(kind)], np.int16),
            "intensity": np.array([intensity], np.float32),
        }
        return InputBatch("admin", seq, "admin_hazard", cols)

    seen = run_checked(world, source, 10)
    world.inputs.offer(admin(0, "izlude", "storm", 0.9))  # a storm shows as weather too
    world.inputs.offer(admin(1, "prt_fild08", "fire", 1.0))
    seen2 = run_checked(world, source, 110)
    for k, v in seen2.items():
        seen[k] = seen.get(k, 0) + v
    # the world is alive: the rules produced most kinds of actions within the run
    assert {"move_npc", "set_price", "set_hazard", "set_weather", "npc_say"} <= set(seen), seen


@pytest.mark.parametrize(
    "params",
    [
        dict(maps=30, npcs=3000, markets=120, factions=6, hazards=25, seed=1, players=40),
        dict(maps=8, npcs=400, markets=9, factions=2, hazards=12, seed=2, players=10),
        dict(maps=60, npcs=1500, markets=200, factions=9, hazards=80, seed=3, players=0),
    ],
)
def test_generated_worlds_keep_every_invariant_every_tick(params):
    world, source = build(generate(**params), seed=params["seed"] + 100)
    run_checked(world, source, 80)


def test_a_bad_action_is_refused_before_it_leaves():
    from actors.midgard.actions import InvalidAction, emit

    world, _ = build(generate(maps=4, npcs=20, markets=4, factions=2, hazards=0, seed=9))
    st = world.resources["midgard"]
    k = np.array([0])
    base = st.market_hi[0]
    emit(world, "set_price", market_id=k, map_id=st.market_map[k],
         item_id=st.item_ids[st.market_item[k]], price_zeny=np.array([base]))
    with pytest.raises(InvalidAction, match="outside its band"):
        emit(world, "set_price", market_id=k, map_id=st.market_map[k],
             item_id=st.item_ids[st.market_item[k]], price_zeny=np.array([base + 1]))
    cap = st.spec.rules.actions.reward_zeny_max
    emit(world, "give_reward", char_id=np.array([150000]), item_id=np.array([0]),
         amount=np.array([0]), zeny=np.array([cap]))
    with pytest.raises(InvalidAction, match="reward_zeny_max"):
        emit(world, "give_reward", char_id=np.array([150000]), item_id=np.array([0]),
             amount=np.array([0]), zeny=np.array([cap + 1]))
    with pytest.raises(InvalidAction, match="outside"):
        emit(world, "move_npc", npc_id=np.array([0]), map_id=np.array([0]),
             x=np.array([int(st.width[0])]), y=np.array([1]))
    with pytest.raises(InvalidAction, match="range"):
        emit(world, "give_reward", char_id=np.array([150000]), item_id=np.array([0]),
             amount=np.array([0]), zeny=np.array([2**31]))
