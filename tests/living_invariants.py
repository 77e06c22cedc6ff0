"""Invariants of the living world (quests, bosses, treasure, world events), restated from
the scenario's rules and rAthena's facts, not by calling the kinds' own code: checked after
every tick by the world tests (``violations``, ``action_violations``).

- no quest reward over its cap (zeny within ``reward_zeny_max`` and rAthena's signed 32
  bits, items within ``reward_amount_max`` and a 30,000 stack), on problems, on quests and
  in every ``give_reward``; a player holds at most one Norn quest;
- no boss without a map: every live boss stands on a walkable cell of a known map;
- every buried find lies on a walkable cell of a map that is not a town, within the
  per-map and total bounds;
- one world event per town, every stage one its type has;
- the living world's actions: boss mobs from the boss lists, quest ids the world offers,
  map flags known, dig marks off towns, broadcasts one of the scenario's line templates.
"""

from __future__ import annotations

import re

import numpy as np

from norn.actors.worldevents.kinds import MAPFLAG_CODES

INT32_MAX = 2**31 - 1
RATHENA_STACK_MAX = 30_000


def _open(world, maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Walkable cells inside known maps (the scenario's grid as the model built it)."""
    st = world.resources["midgard"]
    m = maps.astype(np.int64)
    ok = (m >= 0) & (m < st.n_maps)
    mc = np.where(ok, m, 0)
    x, y = x.astype(np.int64), y.astype(np.int64)
    ok &= (x >= 0) & (y >= 0) & (x < st.width[mc]) & (y < st.height[mc])
    cell = st.walk_off[mc] + np.where(ok, y * st.width[mc] + x, 0)
    return ok & (st.walk[cell] == 1)


def _here(t) -> np.ndarray:
    live = t.live_slots()
    return live[t["gone"][live] == 0]


def violations(world) -> list[str]:
    st = world.resources["midgard"]
    r = st.spec.rules
    out: list[str] = []
    zmax = min(r.quests.reward_zeny_max, r.actions.reward_zeny_max, INT32_MAX)
    amax = min(r.quests.reward_amount_max, r.actions.reward_amount_max, RATHENA_STACK_MAX)
    for name in ("problem", "quest"):
        t = world.tables[name]
        live = t.live_slots()
        z, a = t["reward_zeny"][live].astype(np.int64), t["reward_amount"][live].astype(np.int64)
        if ((z < 0) | (z > zmax)).any():
            out.append(f"{name} reward zeny over its cap {zmax}")
        if ((a < 0) | (a > amax)).any():
            out.append(f"{name} reward items over their cap {amax}")
    q = world.tables["quest"]
    held = q["char_id"][_here(q)]
    if len(np.unique(held)) != len(held):
        out.append("a player holds two Norn quests")
    if world.tables["problem"].count > r.quests.problems_max or q.count > r.quests.quests_max:
        out.append("more problems or quests than their *_max")
    b = world.tables["boss"]
    live = b.live_slots()
    if not _open(world, b["map"][live], b["x"][live], b["y"][live]).all():
        out.append("a boss without a map (or off a walkable cell)")
    if b.count > r.bosses.bosses_max:
        out.append("more bosses than bosses_max")
    boss_mobs = [m.id for m in (*r.bosses.surge_mobs, *r.bosses.war_mobs)]
    if not np.isin(b["mob"][live], boss_mobs).all():
        out.append("a boss that is not a boss mob")
    tr = world.tables["treasure"]
    live = tr.live_slots()
    maps = tr["map"][live].astype(np.int64)
    if not _open(world, maps, tr["x"][live], tr["y"][live]).all():
        out.append("treasure off a walkable cell")
    elif st.is_town[maps].any():
        out.append("treasure buried in a town")
    if tr.count > r.treasure.sites_max:
        out.append("more buried finds than sites_max")
    if len(maps) and np.bincount(maps).max() > r.treasure.sites_per_map_max:
        out.append("more finds on a map than sites_per_map_max")
    if (tr["amount"][live] > min(r.actions.reward_amount_max, RATHENA_STACK_MAX)).any():
        out.append("a find holds more items than a reward may")
    ev = world.tables["worldevent"]
    live = ev.live_slots()
    town = ev["town"][live].astype(np.int64)
    if len(np.unique(town)) != len(town) or not st.is_town[town].all():
        out.append("two world events in one town, or one outside a town")
    n_stages = np.array([len(t.stages) for t in (r.worldevents.festival, r.worldevents.invasion,
                                                 r.worldevents.famine)])
    if (ev["stage"][live] >= n_stages[ev["type"][live]]).any() or (ev["stage"][live] < 0).any():
        out.append("a world event in a stage its type does not have")
    if ev.count > r.worldevents.events_max:
        out.append("more world events than events_max")
    return out


# -- the living world's actions ---------------------------------------------------------------
def _template(line: str) -> re.Pattern[bytes]:
    parts = re.split(r"\{[a-z]+\}", line)
    return re.compile(b".+".join(re.escape(p.encode()) for p in parts) + b"$", re.S)


def line_patterns(spec) -> list[re.Pattern[bytes]]:
    """Every line template the living world may broadcast, as a pattern."""
    r = spec.rules
    lines = [r.bosses.appear_text, r.bosses.slain_text, r.bosses.leave_text,
             r.treasure.site_text, r.treasure.found_text, r.worldevents.woe_start_text,
             r.worldevents.woe_end_text]
    for k in ("hunt", "relief", "supply", "defend"):
        lines += getattr(r.quests, k).texts
    for t in (r.worldevents.festival, r.worldevents.invasion, r.worldevents.famine):
        lines += [s.text for s in t.stages if s.text]
    return [_template(line) for line in lines]


def known_broadcast(spec, text: bytes) -> bool:
    """Whether ``text`` is one of the living world's line templates, filled."""
    return any(p.match(bytes(text)) for p in line_patterns(spec))


def action_violations(world, batch) -> list[str]:
    spec = world.resources["midgard"].spec
    st = world.resources["midgard"]
    r = spec.rules
    out: list[str] = []
    tick = batch.tick

    def bad(kind: str, what: str, mask) -> None:
        mask = np.asarray(mask, bool)
        if mask.any():
            out.append(f"tick {tick} {kind}: {what} ({int(mask.sum())} of {len(mask)})")

    k = batch.kinds
    if "spawn_monster" in k:
        c = k["spawn_monster"]
        mobs = [m.id for m in (*r.bosses.surge_mobs, *r.bosses.war_mobs)]
        bad("spawn_monster", "mob_id not a boss mob", ~np.isin(c["mob_id"], mobs))
        bad("spawn_monster", "not a walkable cell of a known map",
            ~_open(world, c["map_id"], c["x"], c["y"]))
        bad("spawn_monster", "spawn_id outside [1, int32 max]", c["spawn_id"] < 1)
    if "mark_dig_site" in k:
        c = k["mark_dig_site"]
        bad("mark_dig_site", "not a walkable cell of a known map",
            ~_open(world, c["map_id"], c["x"], c["y"]))
        bad("mark_dig_site", "a dig site in a town", st.is_town[c["map_id"].astype(np.int64)])
    if "set_mapflag" in k:
        c = k["set_mapflag"]
        bad("set_mapflag", "flag unknown", ~np.isin(c["flag"], list(MAPFLAG_CODES.values())))
        bad("set_mapflag", "flag off a town", ~st.is_town[c["map_id"].astype(np.int64)])
    if "give_reward" in k:
        c = k["give_reward"]
        z = c["zeny"].astype(np.int64)
        a = c["amount"].astype(np.int64)
        bad("give_reward", "zeny over the cap", z > min(r.actions.reward_zeny_max, INT32_MAX))
        bad("give_reward", "items over the cap",
            a > min(r.actions.reward_amount_max, RATHENA_STACK_MAX))
        ev = world.events
        earned = np.concatenate([ev[kind]["char_id"] for kind in (
            "quest_done", "mob_kill", "npc_shop", "trade", "dig", "mvp_kill")])
        bad("give_reward", "reward to a character that did nothing this tick that pays",
            ~np.isin(c["char_id"], earned))
    return out


def quest_ids(spec) -> list[int]:
    """Quest ids a world offers: the scenario's and the quest kind's (one per problem kind)."""
    return [q.id for q in spec.quests] + [spec.rules.quests.quest_id_base + k for k in range(4)]
