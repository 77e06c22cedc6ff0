"""``norn scenario import --rathena DIR``: a Midgard scenario from an operator's rAthena data.

Reads the checkout in place (``actors/midgard/rathena.py``) and writes a scenario TOML the
operator can edit and ``norn run --scenario`` accepts. What comes from where:

- **maps**: the map cache's real cell grids (``walk.cells``; gat types 1 and 5 blocked),
  the maps the loaded scripts touch (or ``--maps``), joined by the warp scripts;
- **towns and markets**: the shop scripts (a shop indoors belongs to the nearest outdoor
  map); base prices from the shop or the item database's ``Buy``, sell prices its
  ``Sell`` (rAthena's default Buy / 2), so the shop-exploit floor holds;
- **items**: the item database (``Type`` Healing is food or, named "Potion", potion);
- **quests**: the quest database's hunting quests whose monsters spawn in the world;
- **monsters**: the spawn scripts name the simulated players' prey (``mob_ids``) and the
  bosses (the MVPs that spawn here); the mob database gives their names and levels;
- **factions and NPCs**: one faction per town, ``--npcs`` townsfolk spread as generated
  worlds spread them (towns weigh more, a rival minority on each map).

Rules, hazard types and dialogue come from the default scenario. Where rAthena's data
does not fit the scenario's bounds (more than 32 warps on a map, warps on blocked cells,
cells no warp reaches, shops paid in cash points), the choice made is written in the
file's opening comments, with counts. A malformed file is a ``RathenaDataError`` naming
its file and line (exit code 2).
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import tomllib
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np

from norn.actors.midgard import limits as lim
from norn.actors.midgard import rathena as ra
from norn.actors.midgard.generate import BASE_SCENARIO, RIVAL_SHARE, TOWN_WEIGHT, _split
from norn.actors.midgard.schema import encode_cells
from norn.actors.midgard.tomlw import dumps
from norn.engine.errors import ConfigError
from norn.rules import grid

SNAP_RADIUS = 6  # cells searched around a warp or arrival on a blocked cell
NPCS_PER_TOWN = 150  # the default --npcs: this many per town
STOCK_MAX_DEFAULT = 20000  # zeny of goods a market holds of an item (generate's rule)
QUESTS_PER_FACTION = 4
_INTERIOR = re.compile(r"(_in\d*$|^in_|_in\d*_)")
SMALL_MAP_CELLS = 150 * 150  # a small map without monsters counts as a building


def _interior(name: str, grids: dict[str, ra.MapGrid], spawned: set[str]) -> bool:
    g = grids[name]
    return bool(_INTERIOR.search(name)) or (g.width * g.height < SMALL_MAP_CELLS
                                             and name not in spawned)


def _snap(walk: np.ndarray, x: int, y: int, sx: int, sy: int) -> tuple[int, int] | None:
    """The walkable cell nearest (x, y) within its span (sx, sy) plus SNAP_RADIUS."""
    h, w = walk.shape
    rx, ry = max(sx, 0) + SNAP_RADIUS, max(sy, 0) + SNAP_RADIUS
    x0, x1 = max(x - rx, 0), min(x + rx, w - 1)
    y0, y1 = max(y - ry, 0), min(y + ry, h - 1)
    if x0 > x1 or y0 > y1:
        return None
    win = walk[y0 : y1 + 1, x0 : x1 + 1]
    ys, xs = np.nonzero(win)
    if not len(xs):
        return None
    xs, ys = xs + x0, ys + y0
    d = np.maximum(np.abs(xs - x), np.abs(ys - y)) * 4096 + np.abs(xs - x) + np.abs(ys - y)
    k = int(np.argmin(d))  # ties: the first in row order
    return int(xs[k]), int(ys[k])


def _scc(nodes: list[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    """Strongly connected components (Kosaraju, iterative)."""
    out_e: dict[str, list[str]] = {n: [] for n in nodes}
    in_e: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in sorted(edges):
        out_e[a].append(b)
        in_e[b].append(a)
    order: list[str] = []
    seen: set[str] = set()
    for s in nodes:
        if s in seen:
            continue
        seen.add(s)
        stack = [(s, iter(out_e[s]))]
        while stack:
            v, it = stack[-1]
            for u in it:
                if u not in seen:
                    seen.add(u)
                    stack.append((u, iter(out_e[u])))
                    break
            else:
                order.append(v)
                stack.pop()
    comps: list[set[str]] = []
    done: set[str] = set()
    for s in reversed(order):
        if s in done:
            continue
        comp = {s}
        done.add(s)
        q = [s]
        while q:
            v = q.pop()
            for u in in_e[v]:
                if u not in done:
                    done.add(u)
                    comp.add(u)
                    q.append(u)
        comps.append(comp)
    return comps


class Notes:
    """What the import had to decide, for the file's opening comments."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def count(self, key: str, example: str = "") -> None:
        self.counts[key] += 1
        if example and key not in self.examples:
            self.examples[key] = example

    def add(self, line: str) -> None:
        self.lines.append(line)


def import_scenario(root: Path, *, mode: str | None = None, maps: list[str] | None = None,
                    npcs: int | None = None, seed: int = 1) -> tuple[str, dict[str, Any]]:
    """The scenario text and a summary (counts) for the rAthena checkout at ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: --rathena must be an rAthena checkout (a directory)")
    if mode is None:
        mode = "re" if (root / "db" / "re").is_dir() else "pre-re"
    notes = Notes()
    index = ra.read_map_index(root)
    grids = ra.read_map_cache(root, mode)
    scripts = ra.read_scripts(root, mode)
    items_db = ra.read_items(root, mode)
    mobs = ra.read_mobs(root, mode)
    quests_db = ra.read_quests(root, mode)
    for m in scripts.missing:
        notes.count("missing_script", m)
    by_aegis = {m.aegis.upper(): m for m in mobs.values()}
    item_by_aegis = {it.aegis: it for it in items_db.values()}
    indexed = set(index)

    # -- which maps --------------------------------------------------------------------
    touched: list[str] = []
    for name in ([w.map for w in scripts.warps] + [w.to for w in scripts.warps]
                 + [s.map for s in scripts.shops] + [s.map for s in scripts.spawns]):
        if name not in touched:
            touched.append(name)
    if maps:
        chosen = []
        for pat in maps:
            hit = [n for n in grids if fnmatch.fnmatchcase(n, pat)]
            if not hit:
                raise ConfigError(f"--maps: {pat!r} names no map of {root}'s map cache")
            chosen += [n for n in hit if n not in chosen]
    else:
        chosen = [n for n in touched if n in grids]
        for n in touched:
            if n not in grids:
                notes.count("not_cached", n)
    for n in chosen:
        if n not in indexed:
            notes.count("not_indexed", n)
    chosen = [n for n in chosen if len(n.encode()) <= lim.map_name_bytes_max]
    walk = {n: grids[n].walkable() for n in chosen}
    spawned = {s.map for s in scripts.spawns}

    # -- warps: snapped onto walkable cells, one component per map, strongly connected --
    sel = set(chosen)
    raw: list[tuple[str, int, int, str, int, int, str]] = []
    seen_w: set[tuple[str, int, int, str]] = set()
    for w in scripts.warps:
        if w.map not in sel or w.to not in sel:
            continue
        where = f"{w.file.relative_to(root)}:{w.line}"
        src = _snap(walk[w.map], w.x, w.y, w.xs, w.ys)
        dst = _snap(walk[w.to], w.to_x, w.to_y, 0, 0)
        if src is None or dst is None:
            notes.count("warp_blocked", where)
            continue
        if (src, dst) != ((w.x, w.y), (w.to_x, w.to_y)):
            notes.count("warp_snapped", where)
        key = (w.map, *src, w.to)
        if key in seen_w:
            continue
        seen_w.add(key)
        raw.append((w.map, *src, w.to, *dst, where))
    comp: dict[str, np.ndarray] = {}
    for n in chosen:  # the component of each map holding most of its warp ends
        g = walk[n]
        h, wd = g.shape
        ends = [(x, y) for m, x, y, *_ in raw if m == n] + [
            (tx, ty) for _, _, _, to, tx, ty, _ in raw if to == n]
        flat = g.reshape(-1).astype(np.uint8)
        seen = np.zeros(h * wd, np.uint8)
        best, best_key = None, (-1, -1)
        covered = np.zeros(h * wd, np.bool_)
        starts = list(ends)
        if not starts and g.any():  # no warps: the region of the first walkable cell
            y0, x0 = np.argwhere(g)[0]
            starts = [(int(x0), int(y0))]
        for x, y in starts:
            if covered[y * wd + x]:
                continue
            cells = grid.flood(flat, 0, wd, h, x, y, seen)
            mask = seen.astype(np.bool_)
            covered |= mask
            k = (sum(mask[yy * wd + xx] for xx, yy in ends), int(cells))
            if k > best_key:
                best, best_key = mask.copy(), k
        comp[n] = best if best is not None else np.zeros(h * wd, np.bool_)
    warps = []
    for r in raw:
        m, x, y, to, tx, ty, where = r
        if comp[m][y * walk[m].shape[1] + x] and comp[to][ty * walk[to].shape[1] + tx]:
            warps.append(r)
        else:
            notes.count("warp_unreachable", where)
    # at most warps_per_map_max a map (first to each destination first), strongly connected
    while True:
        per: dict[str, list] = {}
        for r in warps:
            per.setdefault(r[0], []).append(r)
        kept = []
        for _m, rs in per.items():
            first = {}
            for r in rs:
                first.setdefault(r[3], r)
            order = list(first.values()) + [r for r in rs if first[r[3]] is not r]
            for r in order[lim.warps_per_map_max:]:
                notes.count("warp_over_cap", r[6])
            kept += order[: lim.warps_per_map_max]
        warps = sorted(kept, key=lambda r: (chosen.index(r[0]), r[6]))
        comps = _scc(chosen, {(r[0], r[3]) for r in warps})
        shops_on = Counter(s.map for s in scripts.shops)
        big = max(comps, key=lambda c: (sum(shops_on[n] for n in c), len(c), -min(
            chosen.index(n) for n in c)))
        left = [r for r in warps if r[0] in big and r[3] in big]
        if len(left) == len(warps) and set(chosen) == big:
            break
        for n in chosen:
            if n not in big:
                notes.count("map_unconnected", n)
        chosen = [n for n in chosen if n in big]
        warps = left
    if len(chosen) > lim.maps_max:
        raise ConfigError(f"{len(chosen)} maps exceed maps_max={lim.maps_max}; pick with --maps")
    cells = sum(grids[n].width * grids[n].height for n in chosen)
    if cells > lim.map_cells_max:
        raise ConfigError(f"{cells} cells in {len(chosen)} maps exceed map_cells_max="
                          f"{lim.map_cells_max}; pick fewer with --maps")
    sel = set(chosen)
    blocked_pockets = 0
    for n in chosen:  # cells no warp of the map reaches are closed: nobody starts there
        w = walk[n]
        shut = w.reshape(-1) & ~comp[n]
        blocked_pockets += int(shut.sum())
        walk[n] = (w.reshape(-1) & comp[n]).reshape(w.shape)

    # -- towns, items, markets -----------------------------------------------------------
    adj: dict[str, list[str]] = {n: [] for n in chosen}
    for r in warps:
        if r[3] not in adj[r[0]]:
            adj[r[0]].append(r[3])

    def town_of(name: str) -> str:
        if not _interior(name, grids, spawned):
            return name
        q, dist = deque([name]), {name: 0}
        while q:
            v = q.popleft()
            for u in adj[v]:
                if u not in dist:
                    dist[u] = dist[v] + 1
                    if not _interior(u, grids, spawned):
                        return u
                    q.append(u)
        return name

    base = tomllib.loads(Path(BASE_SCENARIO).read_text())
    rules = base["rules"]
    stock_max = rules["economy"]["stock_max"]
    town_items: dict[str, dict[int, int]] = {}
    town_sprite: dict[str, int] = {}
    shop_price: dict[int, int] = {}
    for s in scripts.shops:
        where = f"{s.file.relative_to(root)}:{s.line}"
        if s.map not in sel:
            notes.count("shop_off_world", where)
            continue
        town = town_of(s.map)
        if town != s.map:
            notes.count("shop_moved", f"{s.name} on {s.map} -> {town}")
        town_sprite.setdefault(town, s.sprite if 0 <= s.sprite <= 32767 else 0)
        for key, price in s.items:
            it = items_db.get(int(key)) if key.isdigit() else item_by_aegis.get(key)
            if it is None:
                notes.count("shop_item_unknown", f"{where}: {key}")
                continue
            p = price if price > 0 else (it.buy if it.buy else 2 * (it.sell or 0))
            if p <= 0:
                notes.count("shop_item_free", f"{where}: {key}")
                continue
            p = min(p, lim.zeny_max)
            town_items.setdefault(town, {})
            if it.id not in town_items[town]:
                if len(town_items[town]) >= lim.markets_per_town_max:
                    notes.count("market_over_cap", f"{town}: {it.id}")
                    continue
                town_items[town][it.id] = p
                shop_price[it.id] = min(shop_price.get(it.id, p), p)
    if not town_items:
        raise ConfigError(f"{root}: no shop of the loaded scripts stands on the chosen maps; "
                          "a Midgard world needs at least one town with a market")
    towns = [t for t in chosen if t in town_items]

    def use_of(it: ra.Item) -> str:
        if it.type == "Healing":
            return "potion" if "potion" in it.name.lower() else "food"
        return "luxury"

    needed = set(shop_price)
    needed |= {rules["quests"][k]["reward_item"] for k in ("hunt", "relief", "supply",
                                                           "defend")} - {0}
    needed |= set(rules["bosses"]["drop_items"]) | {lo["item"] for lo in
                                                    rules["treasure"]["loot"]}
    base_items = {it["id"]: it for it in base["items"]}
    items = []
    for iid in sorted(needed):
        it = items_db.get(iid)
        if it is None:  # a rule names an item the operator's database lacks
            items.append(dict(base_items[iid]))
            notes.count("item_from_default", str(iid))
            continue
        price = shop_price.get(iid) or it.buy or 2 * (it.sell or 0) or 1
        sell = it.sell if it.sell is not None else (it.buy or 0) // 2
        if (sell * 124 + 74) // 75 > price:
            notes.count("price_below_floor", f"{it.name} ({iid}): {price}z, sells for {sell}z")
        name = (it.name or it.aegis or str(iid))[:64]
        # dearer items relieve more: 0.1 per decimal digit of the price (integer digits,
        # not a logarithm: the written file must not depend on the machine's libm)
        relief = round(min(0.9, 0.05 + 0.1 * (len(str(max(price, 1))) - 1)), 3)
        items.append({"id": iid, "name": name, "price_zeny": int(min(price, lim.zeny_max)),
                      "sell_zeny": int(min(sell, lim.zeny_max)), "use": use_of(it),
                      "relief": float(relief)})
    price_of = {it["id"]: it["price_zeny"] for it in items}
    town_specs = []
    for t in towns:
        market = [{"item": iid, "stock": int(min(stock_max,
                                                 max(20, STOCK_MAX_DEFAULT // price_of[iid])))}
                  for iid in town_items[t]]
        town_specs.append({"map": t, "cash_zeny": int(min(2000 * len(market),
                                                          rules["economy"]["market_cash_max"])),
                           "market": market})

    # -- maps ---------------------------------------------------------------------------
    out_warps: dict[str, list[dict[str, Any]]] = {n: [] for n in chosen}
    for m, x, y, to, tx, ty, _ in warps:
        out_warps[m].append({"x": x, "y": y, "to": to, "to_x": tx, "to_y": ty})
    map_specs = [{"name": n, "width": grids[n].width, "height": grids[n].height,
                  "walk": {"cells": encode_cells(walk[n])}, "warps": out_warps[n]}
                 for n in chosen]

    # -- factions, NPCs -----------------------------------------------------------------
    if len(towns) > lim.factions_max:
        notes.add(f"factions: {len(towns)} towns, one faction each for the first "
                  f"{lim.factions_max}; the rest are held by none at first")
    fac_towns = towns[: lim.factions_max]
    fname = {t: (t[:1].upper() + t[1:]).replace("_", " ")[:48] for t in fac_towns}
    factions = [{"name": fname[t], "home": t, "sprite": town_sprite.get(t, 0) or 90,
                 "influence": 0.6, "treasury_zeny": 10000} for t in fac_towns]
    fnames = [f["name"] for f in factions]
    relations = []
    if len(fnames) > 1:
        for f in range(len(fnames)):
            relations.append({"a": fnames[f], "b": fnames[(f + 1) % len(fnames)], "value": -0.5})
            if len(fnames) > 3:
                relations.append({"a": fnames[f], "b": fnames[(f + 2) % len(fnames)],
                                  "value": 0.4})
        pairs: set[tuple[str, str]] = set()
        unique = []
        for r in relations:
            key = (min(r["a"], r["b"]), max(r["a"], r["b"]))
            if r["a"] != r["b"] and key not in pairs:
                pairs.add(key)
                unique.append(r)
        relations = unique
    # the nearest faction town of each map (over warps both ways)
    near: dict[str, str] = {}
    q = deque(fac_towns)
    for t in fac_towns:
        near[t] = t
    back: dict[str, list[str]] = {n: [] for n in chosen}
    for m, _, _, to, *_ in warps:
        back[to].append(m)
    while q:
        v = q.popleft()
        for u in adj[v] + back[v]:
            if u not in near:
                near[u] = near[v]
                q.append(u)
    n_npcs = NPCS_PER_TOWN * len(towns) if npcs is None else npcs
    weight = np.array([TOWN_WEIGHT if n in town_items else 1 for n in chosen], np.int64)
    per_map = _split(n_npcs, weight) if n_npcs else np.zeros(len(chosen), np.int64)
    pops = []
    for i, n in enumerate(chosen):
        k = int(per_map[i])
        if not k:
            continue
        major = fnames[fac_towns.index(near[n])]
        rival = fnames[(fac_towns.index(near[n]) + 1) % len(fnames)]
        r = k // RIVAL_SHARE if len(fnames) > 1 else 0
        pops.append({"map": n, "count": k - r, "faction": major, "wallet_zeny": [100, 2000]})
        if r:
            pops.append({"map": n, "count": r, "faction": rival, "wallet_zeny": [100, 2000]})

    # -- monsters: the players' prey, the bosses; hunting quests -------------------------
    def mob_of(key: int | str) -> ra.Mob | None:
        return mobs.get(key) if isinstance(key, int) else by_aegis.get(str(key).upper())

    prey: Counter[int] = Counter()
    mvps: dict[int, str] = {}
    where_mob: dict[int, str] = {}
    for s in scripts.spawns:
        if s.map not in sel:
            continue
        mob = mob_of(s.mob)
        if mob is None:
            notes.count("spawn_mob_unknown", f"{s.file.relative_to(root)}:{s.line}: {s.mob}")
            continue
        where_mob.setdefault(mob.id, s.map)
        if mob.mvp:
            mvps.setdefault(mob.id, mob.name[:24] or mob.aegis)
        elif s.map not in town_items:
            prey[mob.id] += max(s.amount, 0)
    if prey:
        rules["players"]["mob_ids"] = [m for m, _ in prey.most_common(8)]
    if mvps:
        bosses = [{"id": i, "name": n} for i, n in sorted(mvps.items())][:8]
        rules["bosses"]["surge_mobs"] = bosses
        rules["bosses"]["war_mobs"] = bosses[: max(1, min(4, len(bosses)))]
    rules["npc"]["capacity_headroom"] = max(256, n_npcs // 1000)
    reward_max = min(rules["actions"]["reward_zeny_max"], 20000)
    own_ids = set(range(rules["quests"]["quest_id_base"], rules["quests"]["quest_id_base"] + 4))
    per_fac: Counter[str] = Counter()
    quests = []
    for qd in sorted(quests_db.values(), key=lambda q: q.id):
        if not qd.targets or qd.id in own_ids or qd.id > 2**31 - 1:
            continue
        targets = [(mob_of(a), c) for a, c in qd.targets]
        if any(m is None or m.id not in where_mob for m, _ in targets):
            continue
        fac = fname.get(near.get(where_mob[targets[0][0].id], ""), "")
        if not fac or per_fac[fac] >= QUESTS_PER_FACTION:
            continue
        per_fac[fac] += 1
        zeny = sum(max(c, 1) * max(m.level, 1) * 10 for m, c in targets)
        quests.append({"id": qd.id, "faction": fac, "reward_zeny": int(min(max(zeny, 100),
                                                                            reward_max)),
                       "reward_item": 0, "reward_amount": 0})

    data: dict[str, Any] = {
        "name": f"rathena-{root.resolve().name}",
        "model": "midgard",
        "description": (f"Imported from the rAthena data in {root.resolve()} ({mode}) by "
                        "norn scenario import."),
        "world": {"terrain_seed": seed & 0xFFFFFFFF},
        "rules": rules,
        "dialogue": base["dialogue"],
        "items": items,
        "maps": map_specs,
        "towns": town_specs,
        "factions": factions,
        "relations": relations,
        "populations": pops,
        "hazard_types": base["hazard_types"],
        "quests": quests,
    }
    summary = {"maps": len(chosen), "cells": cells, "warps": len(warps), "towns": len(towns),
               "markets": sum(len(t["market"]) for t in town_specs), "items": len(items),
               "factions": len(factions), "npcs": n_npcs, "quests": len(quests),
               "mob_ids": len(rules["players"]["mob_ids"]), "bosses": len(mvps)}
    head = _comments(root, mode, scripts, summary, notes, blocked_pockets)
    return head + dumps(data), summary


_NOTE_TEXT = {
    "missing_script": "script files a conf lists but the checkout lacks (skipped, as the "
                      "map server does)",
    "not_cached": "maps the scripts name that the map cache lacks (left out)",
    "not_indexed": "maps in the cache but not in db/map_index.txt (kept)",
    "warp_snapped": "warps or arrivals on a blocked cell, moved to the nearest walkable "
                    f"cell of their trigger area (+{SNAP_RADIUS} cells)",
    "warp_blocked": f"warps with no walkable cell within {SNAP_RADIUS} cells (left out)",
    "warp_unreachable": "warps whose cell or arrival is cut off from the rest of its map's "
                        "warps (left out: a map keeps the walkable region holding most of "
                        "its warp ends)",
    "warp_over_cap": f"warps past warps_per_map_max={lim.warps_per_map_max} on one map "
                     "(left out; the first warp to each destination is kept first)",
    "map_unconnected": "maps outside the largest strongly connected set of maps joined by "
                       "warps (left out: every NPC must be able to reach every town)",
    "shop_off_world": "shops on maps left out",
    "shop_moved": "shops indoors, their market given to the nearest outdoor map (the town)",
    "shop_item_unknown": "shop items missing from the item database (equipment is not "
                         "imported when its database is absent)",
    "shop_item_free": "shop items with no price (left out)",
    "market_over_cap": f"shop items past markets_per_town_max={lim.markets_per_town_max}",
    "item_from_default": "items the rules name but the item database lacks (from the "
                         "default scenario)",
    "price_below_floor": "items whose shop price is below the shop-exploit floor "
                         "(sell x 1.24 / 0.75): their markets start at the floor",
    "spawn_mob_unknown": "monster spawns of mobs missing from the mob database",
}


def _comments(root: Path, mode: str, scripts: ra.Scripts, summary: dict[str, Any],
              notes: Notes, pockets: int) -> str:
    lines = [
        "# A Norn world imported from rAthena's data by `norn scenario import`.",
        f"# Source: {root.resolve()} (mode {mode}): db/map_index.txt, map caches, "
        f"{len(scripts.files)} NPC script files,",
        "# the item, mob and quest databases. Edit freely: this file is the world.",
        "#",
        "# " + ", ".join(f"{v} {k}" for k, v in summary.items()),
        "#",
        "# How rAthena's data was mapped onto the scenario:",
        "# - maps[].walk.cells: the map cache's cells, gat types 1 (wall) and 5 (gap) blocked,",
        "#   as base64 of zlib-compressed bits (replace with border/blocks/mask to hand-edit).",
        f"# - {pockets} walkable cells no warp of their map reaches were closed, so no NPC "
        "starts",
        "#   where it cannot leave.",
        "# - items: price_zeny is the lowest shop price over the towns (a shop's -1: the",
        "#   database's Buy); sell_zeny the database's Sell (absent: Buy / 2). Use: Healing",
        "#   items are food, or potion when named so; all others luxury. relief grows with",
        "#   log10(price). Stock per market: 20000 zeny of goods (20 to stock_max).",
        "# - towns: maps with shops (an indoor shop's market goes to the nearest outdoor map);",
        "#   one faction per town, rivals in a ring as in generated worlds; --npcs townsfolk",
        "#   spread over maps with towns weighing 4 (a fifth of each map's NPCs are rivals).",
        "# - rules.players.mob_ids: the 8 most spawned monsters off towns; rules.bosses: the",
        "#   MVPs that spawn in this world; quests: hunting quests of the quest database whose",
        "#   monsters spawn here (rewards: count x level x 10 zeny), a few per faction.",
        "# - rules, hazard types and dialogue: copied from the default scenario (midgard.toml).",
    ]
    for line in notes.lines:
        lines.append(f"# - {line}")
    if notes.counts:
        lines.append("#")
        lines.append("# Left out or changed (count, first example):")
        for key, n in sorted(notes.counts.items()):
            ex = notes.examples.get(key, "")
            lines.append(f"# - {n} {_NOTE_TEXT.get(key, key)}" + (f"; e.g. {ex}" if ex else ""))
    return "\n".join(lines) + "\n\n"


# -- the command ------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``norn scenario import`` to ``norn``."""
    p = subparsers.add_parser("scenario", help="make scenarios (import one from rAthena's data)")
    sub = p.add_subparsers(dest="scenario_command", required=True)
    imp = sub.add_parser("import", help="write a scenario from an rAthena checkout's data")
    imp.add_argument("--rathena", required=True, help="the rAthena checkout (its db/ and npc/)")
    imp.add_argument("--out", default="rathena.toml", help="scenario TOML to write "
                     "(default rathena.toml; - for stdout)")
    imp.add_argument("--mode", choices=["re", "pre-re"],
                     help="renewal or pre-renewal data (default: re when db/re exists)")
    imp.add_argument("--maps", help="comma-separated map names or patterns (prt_fild0*); "
                     "default: every map the loaded scripts touch")
    imp.add_argument("--npcs", type=int, help=f"townsfolk in all (default {NPCS_PER_TOWN} a "
                     "town)")
    imp.add_argument("--seed", type=int, default=1, help="the world's terrain seed")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    imp.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from norn.engine.scenario import parse_scenario

    if args.npcs is not None and not 0 <= args.npcs <= lim.npcs_max:
        raise ConfigError(f"--npcs: must be in [0, {lim.npcs_max}] (got {args.npcs})")
    maps = [m.strip() for m in args.maps.split(",") if m.strip()] if args.maps else None
    text, summary = import_scenario(Path(args.rathena), mode=args.mode, maps=maps,
                                    npcs=args.npcs, seed=args.seed)
    # what is written must load: validate it as `norn run --scenario` will
    from norn.actors.midgard.schema import validate

    sc = parse_scenario(text, args.out)
    validate(sc.data, args.out)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    if args.json:
        from norn.engine.cli import print_json

        print_json({"out": args.out, **summary})
    elif args.out != "-":
        print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in summary.items()))
    return 0
