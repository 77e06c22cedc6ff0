"""Invariants checked after every tick, on the default world and on generated worlds.

Zeny is conserved (held = initial + sources - sinks), stock is never negative, NPCs stand
on walkable cells inside their map, influence, hazard intensity, needs and hp stay within
their bounds, and every world action that left a tick obeys the rules written out below
(``action_violations``): restated from the scenario data and the rAthena facts, not by
calling the ``check`` that guards ``emit`` (a rule broken on both sides alike would pass).
"""

from __future__ import annotations

import base64
import math
import weakref
import zlib

import numpy as np
import pytest

from norn.actors.midgard import audit, make_event_source
from norn.actors.midgard.generate import generate
from norn.actors.midgard.schema import WEATHER_CODES
from norn.engine.actions import ACTION_KINDS, ACTION_SCHEMAS
from norn.engine.config import make_config
from norn.engine.runner import build_world
from norn.engine.scenario import Scenario, load_scenario
from norn.engine.tick import step
from tests import living_invariants, player_invariants


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
    sell = exploit_sell(st.spec)[st.market_item]
    cheap = np.flatnonzero(price.astype(np.int64) * 75 < sell * 124)
    if len(cheap):
        out.append(f"{len(cheap)} prices below the shop-exploit floor (sell x 1.24 / 0.75), "
                   f"first market {int(cheap[0])}: {int(price[cheap[0]])}z")
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
    out += player_invariants.violations(world)
    out += living_invariants.violations(world)
    if world.last_actions is not None:
        out += action_violations(world, world.last_actions)
    return out


def exploit_sell(spec) -> np.ndarray:
    """What an NPC shop pays for each scenario item (rAthena's Sell, default buy / 2): a
    market price p must keep p x 0.75 >= sell x 1.24 (rAthena's shop-exploit rule: a
    player buying with Discount and selling back with Overcharge makes no profit)."""
    return np.array([it.price_zeny // 2 if it.sell_zeny is None else it.sell_zeny
                     for it in spec.items], np.int64)


# -- the rules for world actions, stated again from the scenario ------------------------------
INT32_MAX = 2**31 - 1
RATHENA_STACK_MAX = 30_000  # rAthena MAX_AMOUNT
TEXT_BYTES_MAX = 255  # rAthena CHAT_SIZE_MAX
_OPEN_CELLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _open_cells(world, spec) -> list[np.ndarray]:
    if world not in _OPEN_CELLS:
        _OPEN_CELLS[world] = _walk_limits(spec)
    return _OPEN_CELLS[world]


def _walk_limits(spec) -> list[np.ndarray]:
    """Per map, the cells the scenario's walk rules leave open (noise cells aside).

    A mask says it cell by cell; otherwise the border band and the blocked rectangles are
    closed, and the 5x5 squares around warp cells and warp arrivals are open again.
    """
    names = [m.name for m in spec.maps]
    out = []
    for m in spec.maps:
        if m.walk.cells is not None:  # a real grid (norn scenario import), bit by bit
            bits = base64.b64decode(m.walk.cells)
            cells = np.unpackbits(np.frombuffer(zlib.decompress(bits), np.uint8),
                                  bitorder="little")[: m.width * m.height]
            out.append(cells.reshape(m.height, m.width).astype(bool))
            continue
        if m.walk.mask is not None:
            out.append(np.array([[c == "." for c in row] for row in m.walk.mask]))
            continue
        b = m.walk.border
        ok = np.zeros((m.height, m.width), bool)
        ok[b : m.height - b, b : m.width - b] = True
        for x0, y0, x1, y1 in m.walk.blocks:
            ok[y0 : y1 + 1, x0 : x1 + 1] = False
        out.append(ok)
    for i, m in enumerate(spec.maps):
        for w in m.warps:
            for mi, cx, cy in ((i, w.x, w.y), (names.index(w.to), w.to_x, w.to_y)):
                if spec.maps[mi].walk.mask is None and spec.maps[mi].walk.cells is None:
                    out[mi][max(cy - 2, 0) : cy + 3, max(cx - 2, 0) : cx + 3] = True
    return out


def action_violations(world, batch) -> list[str]:
    """Every way the tick's actions break the world's rules, as readable lines."""
    spec = world.resources["midgard"].spec  # the validated scenario data, not the Static
    open_cells = _open_cells(world, spec)
    rules = spec.rules
    n_maps = len(spec.maps)
    width = np.array([m.width for m in spec.maps])
    height = np.array([m.height for m in spec.maps])
    item_ids = {it.id for it in spec.items}
    item_price = {it.id: it.price_zeny for it in spec.items}
    map_ix = {m.name: i for i, m in enumerate(spec.maps)}
    # markets: one per (town, item), numbered in (map id, item's place in the catalogue) order
    item_row = {it.id: k for k, it in enumerate(spec.items)}
    markets = sorted((map_ix[t.map], item_row[mi.item], mi.item) for t in spec.towns
                     for mi in t.market)
    lines = {line.encode() for name in ("greet", "trade", "quest", "refuse", "hazard",
                                        "conflict", "takeover", "recall", "grudge")
             for line in getattr(spec.dialogue, name)}
    hazard_lines = {line.encode() for line in spec.dialogue.hazard}
    loud_hazards = {h.name.encode() for h in spec.hazard_types if h.kind == "hazard"}
    weather_codes = {WEATHER_CODES[h.weather] for h in spec.hazard_types if h.weather}
    npc = world.tables["npc"]
    out: list[str] = []
    tick = batch.tick

    def bad(kind: str, what: str, mask) -> None:
        mask = np.asarray(mask, bool)
        if mask.any():
            out.append(f"tick {tick} {kind}: {what} ({int(mask.sum())} of {len(mask)})")

    # ids: tick << 24 | position, positions 0.. in emission order across kinds (each
    # kind's ascending), no gaps, no repeats; kinds in the world's order (protocol v1's
    # kinds first, then the plugins')
    assert tuple(world.kinds.actions)[: len(ACTION_KINDS)] == ACTION_KINDS
    assert list(batch.kinds) == [k for k in world.kinds.actions if k in batch.kinds]
    every = [batch.kinds[k]["action_id"] for k in batch.kinds]
    every = np.concatenate(every) if every else np.empty(0, np.int64)
    bad("actions", "action ids are not this tick's positions 0..n-1",
        np.sort(every) != (np.int64(tick) << 24) + np.arange(len(every)))
    for kind in world.kinds.actions:
        if kind not in batch.kinds:
            continue
        ids = batch.kinds[kind]["action_id"]
        bad(kind, "action ids do not ascend within the kind", np.diff(ids) <= 0)
        schema = ACTION_SCHEMAS.get(kind, world.kinds.action_schemas[kind])
        assert set(batch.kinds[kind]) == {n for n, _ in schema} | {"action_id"}
    gone = batch.kinds.get("despawn_npc", {}).get("npc_id", np.empty(0, np.int64))
    for kind, c in batch.kinds.items():
        if "map_id" in c:
            m = c["map_id"].astype(np.int64)
            lo = -1 if kind == "broadcast" else 0  # -1: a broadcast to every map
            bad(kind, f"map_id outside [{lo}, {n_maps})", (m < lo) | (m >= n_maps))
        if "x" in c:
            m = np.clip(c["map_id"].astype(np.int64), 0, n_maps - 1)
            x, y = c["x"].astype(np.int64), c["y"].astype(np.int64)
            inside = (x >= 0) & (y >= 0) & (x < width[m]) & (y < height[m])
            bad(kind, "cell outside the map's width x height", ~inside)
            shut = [not open_cells[mm][yy, xx]
                    for mm, xx, yy in zip(m[inside], x[inside], y[inside], strict=True)]
            bad(kind, "cell closed by the map's border, blocks or mask", shut)
        if "text" in c:
            t = c["text"]
            bad(kind, "empty text", np.char.str_len(t) == 0)
            bad(kind, f"text over {TEXT_BYTES_MAX} bytes", np.char.str_len(t) > TEXT_BYTES_MAX)
        if kind in ("move_npc", "npc_say"):  # an NPC alive now, or one that left this tick
            ok = npc.is_current(c["npc_id"]) | np.isin(c["npc_id"], gone)
            bad(kind, "npc_id not a live NPC", ~ok)
            # one that left: before it left (a map server executes in action_id order)
            if len(gone):
                d = batch.kinds["despawn_npc"]
                at = np.searchsorted(d["npc_id"], c["npc_id"], sorter=np.argsort(d["npc_id"]))
                hit = np.isin(c["npc_id"], gone)
                left = d["action_id"][np.argsort(d["npc_id"])][np.minimum(at, len(gone) - 1)]
                bad(kind, "names an NPC after its despawn_npc", hit & (c["action_id"] > left))
        elif kind == "spawn_npc":
            h = c["npc_id"]
            ok = npc.is_current(h)
            bad(kind, "npc_id not a live NPC", ~ok)
            s = (h[ok] & 0xFFFFFFFF).astype(np.int64)
            where = np.stack([npc["map"][s], npc["x"][s], npc["y"][s]]).astype(np.int64)
            said = np.stack([c["map_id"][ok], c["x"][ok], c["y"][ok]]).astype(np.int64)
            bad(kind, "not where the NPC stands", (where != said).any(axis=0))
        elif kind == "despawn_npc":
            bad(kind, "npc_id still alive", npc.is_current(c["npc_id"]))
        if kind == "npc_say":
            bad(kind, "text is not one of the scenario's dialogue lines",
                ~np.isin(c["text"], list(lines)))
        elif kind == "broadcast":
            words = [bytes(t).split(b": ", 1) for t in c["text"]]
            wrong = [(len(w) != 2 or w[1] not in hazard_lines
                      or w[0] not in {n + b" on " + spec.maps[int(m)].name.encode()
                                      for n in loud_hazards})
                     and not living_invariants.known_broadcast(spec, t)
                     for w, m, t in zip(words, c["map_id"], c["text"], strict=True)]
            bad(kind, "text is not '<hazard> on <its map>: <hazard line>' nor one of the "
                "living world's lines", wrong)
        elif kind == "set_price":
            k = c["market_id"].astype(np.int64)
            known = (k >= 0) & (k < len(markets))
            bad(kind, "market_id unknown", ~known)
            for j in np.flatnonzero(known):
                town, _, item = markets[k[j]]
                base = item_price[item]
                floor = -(-int(exploit_sell(spec)[item_row[item]]) * 124 // 75)
                lo = max(1, math.ceil(base * rules.economy.price_band_min), floor)
                hi = max(min(math.floor(base * rules.economy.price_band_max), INT32_MAX), base,
                         lo)
                p = int(c["price_zeny"][j])
                if int(c["map_id"][j]) != town or int(c["item_id"][j]) != item:
                    out.append(f"tick {tick} set_price: market {k[j]} is item {item} in map "
                               f"{town}, not {int(c['item_id'][j])} in {int(c['map_id'][j])}")
                if not lo <= p <= hi:
                    out.append(f"tick {tick} set_price: {p} outside [{lo}, {hi}] for item {item}")
        elif kind == "set_weather":
            bad(kind, "weather not one of the scenario's weather codes",
                ~np.isin(c["weather"], list(weather_codes)))
            bad(kind, "on not 0 or 1", c["on"] > 1)
        elif kind == "set_hazard":
            ht = c["hazard_type"].astype(np.int64)
            bad(kind, "hazard_type unknown", (ht < 0) | (ht >= len(spec.hazard_types)))
            it = c["intensity"]
            bad(kind, "intensity outside [0, intensity_max]",
                ~((it >= 0) & (it <= rules.hazard.intensity_max)))
            bad(kind, "on not 0 or 1", c["on"] > 1)
        elif kind == "start_quest":
            bad(kind, "quest_id not a scenario quest nor one of the quest kind's",
                ~np.isin(c["quest_id"], living_invariants.quest_ids(spec)))
            bad(kind, "char_id outside [1, int32 max]",
                (c["char_id"] < 1) | (c["char_id"] > INT32_MAX))
        elif kind == "set_karma":
            out += player_invariants.set_karma_violations(world, c, tick)
        elif kind == "give_reward":
            z, a = c["zeny"].astype(np.int64), c["amount"].astype(np.int64)
            item = c["item_id"].astype(np.int64)
            bad(kind, "zeny outside [0, reward_zeny_max] or int32",
                (z < 0) | (z > min(rules.actions.reward_zeny_max, INT32_MAX)))
            bad(kind, "amount outside [0, reward_amount_max] or rAthena's 30000",
                (a < 0) | (a > min(rules.actions.reward_amount_max, RATHENA_STACK_MAX)))
            bad(kind, "item_id unknown", ~(np.isin(item, list(item_ids)) | (item == 0)))
            bad(kind, "item 0 with an amount, or an item without one", (item == 0) != (a == 0))
            bad(kind, "nothing given", (z == 0) & (a == 0))
    return out + living_invariants.action_violations(world, batch)


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
    from norn.engine.inputs import InputBatch

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
    # and the living world: a surge boss, dig sites, offers voiced on their maps
    assert {"spawn_monster", "mark_dig_site", "broadcast"} <= set(seen), seen


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
    from norn.actors.midgard.actions import InvalidAction, emit

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
