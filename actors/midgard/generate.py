"""Synthetic worlds of any size (N maps, M NPCs, K markets, F factions, H hazards).

``generate`` returns a scenario whose TOML names the generator's parameters in a
``[generate]`` table and carries the rules, hazard types and dialogue in full; the builder
expands the parameters into maps, warps, towns, items, factions and populations with draws
keyed by the generator seed. The text stays small for a million NPCs, and a replay (which
rebuilds the world from the journal header's scenario text) expands exactly the same world.

Shape: maps are 48..128 cells a side with a thin border and sparse rocks; they form a
random tree plus a quarter as many extra links (warps both ways); towns are spread evenly
and hold the markets; NPCs live mostly in towns, each map with a majority faction and a
rival minority so that borders get contested.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from norn.actors.midgard.schema import fail
from norn.actors.midgard.tomlw import dumps
from norn.engine.rng import register_stream, uniform_array, uniform_int_array
from norn.engine.scenario import SCENARIO_DIR, Scenario, parse_scenario

S_GEN = register_stream("midgard.generate")
BASE_SCENARIO = SCENARIO_DIR / "midgard.toml"
MARKETS_PER_TOWN = 64
SIDE_MIN, SIDE_MAX = 48, 128
EXTRA_LINK_SHARE = 4  # one extra link per this many maps
TOWN_WEIGHT = 4  # a town holds this many times the NPCs of another map
RIVAL_SHARE = 5  # one NPC in this many on a map belongs to a rival faction
PARAMS = ("maps", "npcs", "markets", "factions", "hazards", "players", "seed")
ITEM_ID_BASE = 20000  # generated items are ids ITEM_ID_BASE + index (item_templates cycled)


def generate(
    *,
    maps: int,
    npcs: int,
    markets: int,
    factions: int,
    hazards: int,
    seed: int,
    players: int = 0,
) -> Scenario:
    """A deterministic synthetic scenario; its ``text`` round-trips through the parser."""
    base = tomllib.loads(Path(BASE_SCENARIO).read_text())
    rules = base["rules"]
    rules["players"]["simulated"] = players
    rules["players"]["players_max"] = max(rules["players"]["players_max"], players)
    rules["hazard"]["hazards_max"] = max(rules["hazard"]["hazards_max"], 2 * hazards + 64)
    rules["npc"]["capacity_headroom"] = max(256, npcs // 1000)
    # items the living world's rules name are base catalogue ids: the generated item made
    # from the same template (id ITEM_ID_BASE + its index, see expand) stands in for each
    item_id = {it["id"]: ITEM_ID_BASE + k for k, it in enumerate(base["items"])}
    for kind in ("hunt", "relief", "supply", "defend"):
        q = rules["quests"][kind]
        q["reward_item"] = item_id.get(q["reward_item"], 0)
    rules["bosses"]["drop_items"] = [item_id[i] for i in rules["bosses"]["drop_items"]]
    for loot in rules["treasure"]["loot"]:
        loot["item"] = item_id[loot["item"]]
    data: dict[str, Any] = {
        "name": f"generated-m{maps}-n{npcs}-k{markets}-f{factions}-h{hazards}-s{seed}",
        "model": "midgard",
        "description": "A synthetic world expanded from [generate] by actors.midgard.generate.",
        "generate": {
            "maps": maps,
            "npcs": npcs,
            "markets": markets,
            "factions": factions,
            "hazards": hazards,
            "players": players,
            "seed": seed,
        },
        "world": {"terrain_seed": seed & 0xFFFFFFFF},
        "rules": rules,
        "dialogue": base["dialogue"],
        "item_templates": base["items"],
        "hazard_types": base["hazard_types"],
    }
    return parse_scenario(dumps(data), f"generated:{data['name']}")


def _u(seed: int, ids: np.ndarray, index: int) -> np.ndarray:
    return uniform_array(seed, 0, S_GEN, ids, index)


def _ui(seed: int, ids: np.ndarray, n: int, index: int) -> np.ndarray:
    return uniform_int_array(seed, 0, S_GEN, ids, n, index)


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder)."""
    w = weights.astype(np.int64)
    exact = total * w
    base = exact // w.sum()
    rem = exact - base * w.sum()
    short = total - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -rem))
    base[order[:short]] += 1
    return base


def expand(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The full scenario described by a ``[generate]`` table (deterministic from its seed)."""
    g = data["generate"]
    for k in PARAMS:
        if k not in g:
            raise fail(source, f"generate.{k}", "required key is missing")
        if not isinstance(g[k], int) or g[k] < 0:
            raise fail(source, f"generate.{k}", f"must be an integer >= 0 (got {g[k]!r})")
    for k in ("rules", "dialogue", "item_templates", "hazard_types"):
        if k not in data:
            raise fail(source, k, "required with [generate] (generate() writes it)")
    n_maps, n_npcs, n_markets = g["maps"], g["npcs"], g["markets"]
    n_fac, n_haz, seed = g["factions"], g["hazards"], g["seed"]
    if n_maps < 1 or n_fac < 1 or n_markets < 1:
        raise fail(source, "generate", "maps, markets and factions must be at least 1")
    ids = np.arange(n_maps, dtype=np.int64)
    width = SIDE_MIN + _ui(seed, ids, SIDE_MAX - SIDE_MIN + 1, 0)
    height = SIDE_MIN + _ui(seed, ids, SIDE_MAX - SIDE_MIN + 1, 1)
    names = [f"g{i:05d}" for i in range(n_maps)]

    # links: a random tree, then extra links between distinct, not yet linked maps
    parent = np.floor(_u(seed, ids, 2) * np.maximum(ids, 1)).astype(np.int64)
    edges = [(int(parent[i]), i) for i in range(1, n_maps)]
    n_extra = n_maps // EXTRA_LINK_SHARE
    ea = _ui(seed, np.arange(n_extra, dtype=np.int64), n_maps, 3)
    eb = _ui(seed, np.arange(n_extra, dtype=np.int64), n_maps, 4)
    seen = {(min(a, b), max(a, b)) for a, b in edges}
    degree = np.bincount(np.array(edges, np.int64).reshape(-1), minlength=n_maps)
    for a, b in zip(ea.tolist(), eb.tolist(), strict=True):  # build time
        key = (min(a, b), max(a, b))
        if a != b and key not in seen and degree[a] < 24 and degree[b] < 24:
            seen.add(key)
            edges.append(key)
            degree[a] += 1
            degree[b] += 1
    # the k-th warp of a map sits on side k % 4, further along the side for larger k
    slot = np.zeros(n_maps, np.int64)
    warps: list[list[dict[str, int | str]]] = [[] for _ in range(n_maps)]

    def place(m: int) -> tuple[tuple[int, int], tuple[int, int]]:
        k = int(slot[m])
        slot[m] += 1
        w, h = int(width[m]), int(height[m])
        along = 8 + 5 * (k // 4)
        side = k % 4
        if side == 0:
            return (along, 3), (along, 6)
        if side == 1:
            return (w - 4, along), (w - 7, along)
        if side == 2:
            return (w - 1 - along, h - 4), (w - 1 - along, h - 7)
        return (3, h - 1 - along), (6, h - 1 - along)

    for a, b in edges:
        (ax, ay), (aax, aay) = place(a)
        (bx, by), (bax, bay) = place(b)
        warps[a].append({"x": ax, "y": ay, "to": names[b], "to_x": bax, "to_y": bay})
        warps[b].append({"x": bx, "y": by, "to": names[a], "to_x": aax, "to_y": aay})
    maps = [
        {
            "name": names[i],
            "width": int(width[i]),
            "height": int(height[i]),
            "walk": {"border": 1, "noise": 0.04},
            "warps": warps[i],
        }
        for i in range(n_maps)
    ]

    # towns, items and markets
    n_towns = min(n_maps, max(1, math.ceil(n_markets / MARKETS_PER_TOWN)))
    town_maps = (np.arange(n_towns) * n_maps) // n_towns
    per_town = _split(n_markets, np.ones(n_towns, np.int64))
    templates = data["item_templates"]
    n_items = max(int(per_town.max()), len(templates))
    items = []
    for i in range(n_items):
        t = templates[i % len(templates)]
        items.append({**t, "id": ITEM_ID_BASE + i,
                      "name": f"{t['name']} {i // len(templates)}"})
    stock_max = data["rules"]["economy"]["stock_max"]
    towns = []
    for t in range(n_towns):
        chosen = [(t * 7 + j) % n_items for j in range(int(per_town[t]))]
        market = [
            {"item": ITEM_ID_BASE + j,
             "stock": min(stock_max, max(20, 20000 // items[j]["price_zeny"]))}
            for j in chosen
        ]
        town = names[int(town_maps[t])]
        towns.append({"map": town, "cash_zeny": 2000 * len(market), "market": market})

    # factions hold towns in turn; neighbours in the ring are hostile, every other allied
    fnames = [f"Faction {f:03d}" for f in range(n_fac)]
    factions = [
        {
            "name": fnames[f],
            "home": names[int(town_maps[f % n_towns])] if f < n_towns else names[(f * 37) % n_maps],
            "sprite": 100 + f % 50,
            "influence": 0.6,
            "treasury_zeny": 10000,
        }
        for f in range(n_fac)
    ]
    relations = []
    if n_fac > 1:
        for f in range(n_fac):
            relations.append({"a": fnames[f], "b": fnames[(f + 1) % n_fac], "value": -0.5})
            if n_fac > 3:
                relations.append({"a": fnames[f], "b": fnames[(f + 2) % n_fac], "value": 0.4})

    # populations: towns weigh more; each map has a majority and a rival minority
    weight = np.ones(n_maps, np.int64)
    weight[town_maps] = TOWN_WEIGHT
    per_map = _split(n_npcs, weight) if n_npcs else np.zeros(n_maps, np.int64)
    region = (ids * n_towns) // n_maps  # the town a map belongs to
    majority = region % n_fac
    rival = (majority + 1 + _ui(seed, ids, max(n_fac - 1, 1), 5)) % n_fac
    pops = []
    for m in np.flatnonzero(per_map).tolist():  # build time
        k = int(per_map[m])
        r = k // RIVAL_SHARE if n_fac > 1 else 0
        pops.append(
            {"map": names[m], "count": k - r, "faction": fnames[int(majority[m])],
             "wallet_zeny": [100, 2000]}
        )
        if r:
            pops.append(
                {"map": names[m], "count": r, "faction": fnames[int(rival[m])],
                 "wallet_zeny": [100, 2000]}
            )

    # initial hazards on distinct (map, type) pairs
    htypes = data["hazard_types"]
    n_t = len(htypes)
    cells = n_maps * n_t
    n_haz = min(n_haz, cells)
    stride = next(p for p in (7919, 104729, 1299709, 15485863) if math.gcd(p, cells) == 1)
    start = int(_ui(seed, np.zeros(1, np.int64), cells, 6)[0])
    keys = (start + np.arange(n_haz, dtype=np.int64) * stride) % cells
    inten = 0.3 + 0.6 * _u(seed, np.arange(n_haz, dtype=np.int64), 7)
    initial = [
        {"map": names[int(k // n_t)], "type": htypes[int(k % n_t)]["name"],
         "intensity": round(float(v), 4)}
        for k, v in zip(keys.tolist(), inten.tolist(), strict=True)
    ]
    quests = [
        {"id": 9000 + 2 * f + j, "faction": fnames[f], "reward_zeny": 500 * (1 + j),
         "reward_item": items[0]["id"] if j == 0 else 0, "reward_amount": 3 if j == 0 else 0}
        for f in range(n_fac)
        for j in range(2)
    ]
    out = {k: v for k, v in data.items() if k not in ("generate", "item_templates")}
    out.update(
        items=items,
        maps=maps,
        towns=towns,
        factions=factions,
        relations=relations,
        populations=pops,
        initial_hazards=initial,
        quests=quests,
    )
    return out
