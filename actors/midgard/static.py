"""The world's fixed geography and catalogue, as flat arrays for kernels.

Built once from a validated scenario and kept in ``world.resources["midgard"]`` (the
model's own view, for its summary and its checks). What actor kinds read is cut from it
as typed resources (``resources``: geography, items, markets, factions, quests,
dialogue), the kinds never see ``Static``. Nothing here changes during a run, so it is
configuration, not state: the scenario text (in the journal header) rebuilds it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.actors.hazard import HAZARD_PARAMS, STARTS_ON, H, HazardTypes, InitialHazards
from norn.actors.midgard.schema import (
    WEATHER_CODES,
    Scenario,
    ScenarioError,
    decode_cells,
    fail,
)
from norn.actors.npc import Populations
from norn.engine.geography import Geography
from norn.engine.kinds import TEXT_DTYPE
from norn.rules import grid, pricing
from norn.rules.catalogue import USE_CODES, Dialogue, Factions, Items, Markets, Quests
from norn.rules.routing import nearest_source, next_hops, reverse_csr

CARVE_RADIUS = 2  # cells kept walkable around warp cells and arrivals


@dataclass(frozen=True)
class Static:
    spec: Scenario
    source: str
    map_names: tuple[str, ...]
    width: np.ndarray
    height: np.ndarray
    walk_off: np.ndarray
    walk: np.ndarray
    warp_off: np.ndarray
    warp_x: np.ndarray
    warp_y: np.ndarray
    warp_to: np.ndarray
    warp_tx: np.ndarray
    warp_ty: np.ndarray
    adj_off: np.ndarray
    adj: np.ndarray
    next_local: np.ndarray
    town_maps: np.ndarray
    is_town: np.ndarray
    nearest_town: np.ndarray
    item_ids: np.ndarray
    item_names: tuple[str, ...]
    item_price: np.ndarray
    item_sell: np.ndarray  # what an NPC shop pays (rAthena's Sell; default price // 2)
    item_use: np.ndarray
    item_relief: np.ndarray
    market_map: np.ndarray
    market_item: np.ndarray
    market_stock0: np.ndarray
    market_off: np.ndarray  # CSR by map id: markets of map m are market_off[m]..[m+1]
    market_key: np.ndarray  # sorted map_id * n_items + item index, for event lookups
    market_key_slot: np.ndarray
    town_cash0: np.ndarray  # per market: its share of the town's starting cash
    market_lo: np.ndarray  # price band, zeny (inclusive), never below market_floor
    market_hi: np.ndarray
    market_floor: np.ndarray  # the item's shop-exploit floor (rules.pricing.exploit_floor)
    faction_names: tuple[str, ...]
    faction_home: np.ndarray
    faction_sprite: np.ndarray
    faction_influence0: np.ndarray
    diplomacy0: np.ndarray
    htype_names: tuple[str, ...]
    htype: np.ndarray  # (types, len(HAZARD_PARAMS)) float64
    htype_weather: np.ndarray  # int16 weather code, 0 none
    quest_ids: np.ndarray  # sorted
    quest_faction: np.ndarray
    quest_zeny: np.ndarray
    quest_item: np.ndarray
    quest_amount: np.ndarray
    faction_quests_off: np.ndarray
    faction_quests: np.ndarray  # quest ids grouped by faction
    dialogue: dict[str, np.ndarray]

    @property
    def n_maps(self) -> int:
        return len(self.map_names)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_factions(self) -> int:
        return len(self.faction_names)

    @property
    def n_htypes(self) -> int:
        return len(self.htype_names)

    def map_id(self, name: str) -> int:
        return self.map_names.index(name)

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        """Item index of each rAthena item id, -1 where unknown (vectorized)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        order = np.argsort(self.item_ids, kind="stable")
        sorted_ids = self.item_ids[order].astype(np.int64)
        pos = np.searchsorted(sorted_ids, ids)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        ok = sorted_ids[pos_c] == ids
        return np.where(ok, order[pos_c], -1).astype(np.int64)

    # -- what the kinds read, as typed resources (sharing these arrays) --------------------
    def geography(self) -> Geography:
        return Geography(
            self.map_names, self.width, self.height, self.walk_off, self.walk, self.warp_off,
            self.warp_x, self.warp_y, self.warp_to, self.warp_tx, self.warp_ty, self.adj_off,
            self.adj, self.next_local, self.town_maps, self.is_town, self.nearest_town,
        )

    def items(self) -> Items:
        return Items(self.item_ids, self.item_names, self.item_price, self.item_use,
                     self.item_relief, self.spec.rules.economy.item_stack_max, self.item_sell)

    def markets(self) -> Markets:
        return Markets(self.market_map, self.market_item, self.market_stock0, self.market_off,
                       self.market_key, self.market_key_slot, self.town_cash0, self.market_lo,
                       self.market_hi, self.n_items, self.market_floor)

    def factions(self) -> Factions:
        return Factions(
            self.faction_names, self.faction_home, self.faction_sprite, self.faction_influence0,
            np.array([f.treasury_zeny for f in self.spec.factions], np.int64), self.diplomacy0,
        )

    def quests(self) -> Quests:
        return Quests(self.quest_ids, self.quest_faction, self.quest_zeny, self.quest_item,
                      self.quest_amount, self.faction_quests_off, self.faction_quests)

    def resources(self) -> dict[str, object]:
        """The resources the model provides, by name."""
        return {
            "geography": self.geography(), "items": self.items(), "markets": self.markets(),
            "factions": self.factions(), "quests": self.quests(),
            "dialogue": Dialogue(self.dialogue),
            "hazard_types": self.hazard_types(),  # names for readers (replays' labels)
        }

    def hazard_types(self) -> HazardTypes:
        return HazardTypes(self.htype_names, self.htype, self.htype_weather)

    def initial_hazards(self) -> InitialHazards:
        init = self.spec.initial_hazards
        return InitialHazards(
            np.array([self.map_id(h.map) for h in init], np.int64),
            np.array([self.htype_names.index(h.type) for h in init], np.int64),
            np.array([h.intensity for h in init], np.float32),
        )

    def populations(self) -> Populations:
        pops = self.spec.populations
        return Populations(
            map=np.array([self.map_id(p.map) for p in pops], np.int64),
            faction=np.array([self.faction_names.index(p.faction) for p in pops], np.int64),
            home=np.array([self.map_id(p.home) if p.home else -1 for p in pops], np.int64),
            area=np.array([p.area if p.area else (0, 0, -1, -1) for p in pops],
                          np.int64).reshape(-1, 4),
            wallet_lo=np.array([p.wallet_zeny[0] for p in pops], np.int64),
            wallet_hi=np.array([p.wallet_zeny[1] for p in pops], np.int64),
            count=np.array([p.count for p in pops], np.int64),
        )

    def market_slot(self, map_ids: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Market slot selling item index ``item_idx`` on map ``map_ids``, -1 if none."""
        key = np.asarray(map_ids, np.int64) * self.n_items + np.asarray(item_idx, np.int64)
        if not len(self.market_key):
            return np.full(len(key), -1, np.int64)
        pos = np.searchsorted(self.market_key, key)
        pos_c = np.minimum(pos, len(self.market_key) - 1)
        ok = (self.market_key[pos_c] == key) & (np.asarray(item_idx) >= 0)
        return np.where(ok, self.market_key_slot[pos_c], -1).astype(np.int64)


def _text_array(lines: list[str]) -> np.ndarray:
    return np.array([s.encode() for s in lines], dtype=TEXT_DTYPE)


def build_static(sc: Scenario, source: str) -> Static:
    names = tuple(m.name for m in sc.maps)
    ix = {n: i for i, n in enumerate(names)}
    n = len(names)
    width = np.array([m.width for m in sc.maps], dtype=np.int64)
    height = np.array([m.height for m in sc.maps], dtype=np.int64)
    walk_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(width * height, out=walk_off[1:])
    walk = np.zeros(int(walk_off[-1]), dtype=np.uint8)

    warp_rows = [
        (i, w.x, w.y, ix[w.to], w.to_x, w.to_y) for i, m in enumerate(sc.maps) for w in m.warps
    ]
    wa = np.array(warp_rows, dtype=np.int64).reshape(-1, 6)
    warp_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(wa[:, 0], minlength=n), out=warp_off[1:])

    seed = np.uint64(sc.world.terrain_seed)
    for i, m in enumerate(sc.maps):  # a loop over maps at build time, not in a tick
        off = int(walk_off[i])
        if m.walk.cells is not None:
            walk[off : off + m.width * m.height] = decode_cells(m.walk.cells, m.width, m.height)
        elif m.walk.mask is not None:
            rows = np.frombuffer("".join(m.walk.mask).encode(), dtype=np.uint8)
            walk[off : off + m.width * m.height] = rows == ord(".")
        else:
            noise = np.uint64(int(m.walk.noise * 2**32))
            grid.fill_rules(walk, off, m.width, m.height, m.walk.border, noise, seed, i)
            for x0, y0, x1, y1 in m.walk.blocks:
                grid.block_rect(walk, off, m.width, x0, y0, x1, y1)
    for src, x, y, dst, tx, ty in wa.tolist():  # warps, at build time
        if _ruled(sc.maps[src]):
            grid.carve(walk, walk_off[src], width[src], height[src], x, y, CARVE_RADIUS)
        if _ruled(sc.maps[dst]):
            grid.carve(walk, walk_off[dst], width[dst], height[dst], tx, ty, CARVE_RADIUS)
    _check_reachable(sc, source, walk, walk_off, width, height, wa, warp_off)

    rev_off, rev_src = reverse_csr(n, wa[:, 0], wa[:, 3])
    next_local = np.empty((n, n), dtype=np.int8)
    next_hops(n, warp_off, wa[:, 3].copy(), rev_off, rev_src, next_local)
    edges = np.unique(wa[:, 0] * n + wa[:, 3]) if len(wa) else np.empty(0, np.int64)
    adj_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(edges // n, minlength=n), out=adj_off[1:])
    adj = (edges % n).astype(np.int64)

    town_maps = np.array([ix[t.map] for t in sc.towns], dtype=np.int64)
    is_town = np.zeros(n, dtype=np.bool_)
    is_town[town_maps] = True
    nearest_town = nearest_source(n, rev_off, rev_src, np.sort(town_maps, kind="stable"))

    item_ids = np.array([it.id for it in sc.items], dtype=np.int32)
    item_row = {it.id: k for k, it in enumerate(sc.items)}
    n_items = len(item_ids)
    mk = sorted(
        (ix[t.map], item_row[mi.item], mi.stock, t.cash_zeny, len(t.market))
        for t in sc.towns
        for mi in t.market
    )
    ma = np.array(mk, dtype=np.int64).reshape(-1, 5)
    market_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ma[:, 0], minlength=n), out=market_off[1:])
    # a town's cash is split evenly over its markets, the remainder to its first ones
    per, rem = ma[:, 3] // ma[:, 4], ma[:, 3] % ma[:, 4]
    rank = np.arange(len(ma)) - market_off[ma[:, 0]]
    town_cash0 = per + (rank < rem)

    item_price = np.array([it.price_zeny for it in sc.items], dtype=np.int64)
    item_sell = np.where(
        np.array([it.sell_zeny is None for it in sc.items], dtype=np.bool_),
        pricing.default_sell(item_price),
        np.array([it.sell_zeny or 0 for it in sc.items], dtype=np.int64),
    ).astype(np.int64)
    base = item_price[ma[:, 1]]
    market_floor = pricing.exploit_floor(item_sell)[ma[:, 1]]
    eco = sc.rules.economy
    # the band around the base price, never below the shop-exploit floor; a band whose
    # top is below the floor (a sell price above 0.6 x the buy price) is lifted to it
    market_lo = np.maximum(1, np.ceil(base * eco.price_band_min)).astype(np.int64)
    market_lo = np.maximum(market_lo, market_floor)
    market_hi = np.minimum(np.floor(base * eco.price_band_max), 2**31 - 1).astype(np.int64)
    market_hi = np.maximum(np.maximum(market_hi, base), market_lo)

    fac = {f.name: k for k, f in enumerate(sc.factions)}
    nf = len(sc.factions)
    diplomacy0 = np.zeros((nf, nf), dtype=np.float32)
    np.fill_diagonal(diplomacy0, 1.0)
    for r in sc.relations:
        diplomacy0[fac[r.a], fac[r.b]] = r.value
        diplomacy0[fac[r.b], fac[r.a]] = r.value

    ht = np.zeros((len(sc.hazard_types), len(HAZARD_PARAMS)), dtype=np.float64)
    for k, h in enumerate(sc.hazard_types):
        vals = h.model_dump()
        for p in HAZARD_PARAMS:
            if p in vals and not isinstance(vals[p], str | tuple | list | type(None)):
                ht[k, H[p]] = float(vals[p])
        ht[k, H["start_min"]], ht[k, H["start_max"]] = h.start_intensity
        ht[k, H["starts_on"]] = STARTS_ON[h.starts_on]
        ht[k, H["is_weather"]] = 1.0 if h.kind == "weather" else 0.0
    weather = np.array(
        [WEATHER_CODES[h.weather] if h.weather else 0 for h in sc.hazard_types], dtype=np.int16
    )

    qs = sorted(sc.quests, key=lambda q: q.id)
    quest_ids = np.array([q.id for q in qs], dtype=np.int64)
    quest_faction = np.array([fac[q.faction] for q in qs], dtype=np.int64)
    by_fac = sorted((fac[q.faction], q.id) for q in qs)
    fq = np.array(by_fac, dtype=np.int64).reshape(-1, 2)
    faction_quests_off = np.zeros(nf + 1, dtype=np.int64)
    np.cumsum(np.bincount(fq[:, 0], minlength=nf), out=faction_quests_off[1:])

    return Static(
        spec=sc,
        source=source,
        map_names=names,
        width=width,
        height=height,
        walk_off=walk_off,
        walk=walk,
        warp_off=warp_off,
        warp_x=wa[:, 1].copy(),
        warp_y=wa[:, 2].copy(),
        warp_to=wa[:, 3].copy(),
        warp_tx=wa[:, 4].copy(),
        warp_ty=wa[:, 5].copy(),
        adj_off=adj_off,
        adj=adj,
        next_local=next_local,
        town_maps=town_maps,
        is_town=is_town,
        nearest_town=nearest_town,
        item_ids=item_ids,
        item_names=tuple(it.name for it in sc.items),
        item_price=item_price,
        item_sell=item_sell,
        item_use=np.array([USE_CODES[it.use] for it in sc.items], dtype=np.int64),
        item_relief=np.array([it.relief for it in sc.items], dtype=np.float32),
        market_map=ma[:, 0].copy(),
        market_item=ma[:, 1].copy(),
        market_stock0=ma[:, 2].copy(),
        market_off=market_off,
        market_key=ma[:, 0] * n_items + ma[:, 1],
        market_key_slot=np.arange(len(ma), dtype=np.int64),
        town_cash0=town_cash0.astype(np.int64),
        market_lo=market_lo,
        market_hi=market_hi,
        market_floor=market_floor,
        faction_names=tuple(fac),
        faction_home=np.array([ix[f.home] for f in sc.factions], dtype=np.int64),
        faction_sprite=np.array([f.sprite for f in sc.factions], dtype=np.int16),
        faction_influence0=np.array([f.influence for f in sc.factions], dtype=np.float32),
        diplomacy0=diplomacy0,
        htype_names=tuple(h.name for h in sc.hazard_types),
        htype=ht,
        htype_weather=weather,
        quest_ids=quest_ids,
        quest_faction=quest_faction,
        quest_zeny=np.array([q.reward_zeny for q in qs], dtype=np.int64),
        quest_item=np.array([q.reward_item for q in qs], dtype=np.int64),
        quest_amount=np.array([q.reward_amount for q in qs], dtype=np.int64),
        faction_quests_off=faction_quests_off,
        faction_quests=fq[:, 1].copy(),
        dialogue={
            k: _text_array(getattr(sc.dialogue, k))
            for k in ("greet", "trade", "quest", "refuse", "hazard", "conflict", "takeover",
                      "recall", "grudge")
        },
    )


def _ruled(m) -> bool:
    """Walkability from rules (warps carve their cells), not a mask or a real grid."""
    return m.walk.mask is None and m.walk.cells is None


def _check_reachable(sc, source, walk, walk_off, width, height, wa, warp_off) -> None:
    """Every warp cell and arrival of a map must be walkable and reachable from the others."""
    arrivals: dict[int, list[tuple[int, int, str]]] = {}
    for k, (src, _x, _y, dst, tx, ty) in enumerate(wa):
        j = k - int(warp_off[src])
        arrivals.setdefault(int(dst), []).append(
            (int(tx), int(ty), f"maps[{int(src)}].warps[{j}].to_x/to_y")
        )
    for i, m in enumerate(sc.maps):  # build time, a loop over maps
        cells = [(w.x, w.y, f"maps[{i}].warps[{j}]") for j, w in enumerate(m.warps)]
        cells += arrivals.get(i, [])
        off = int(walk_off[i])
        if not walk[off : off + m.width * m.height].any():
            raise fail(source, f"maps[{i}].walk", f"{m.name} has no walkable cell")
        if not cells:
            continue
        seen = np.zeros(m.width * m.height, dtype=np.uint8)
        x0, y0, p0 = cells[0]
        if not walk[off + y0 * m.width + x0]:
            raise fail(source, p0, f"cell ({x0}, {y0}) on {m.name} is not walkable")
        grid.flood(walk, off, m.width, m.height, x0, y0, seen)
        for x, y, p in cells[1:]:
            if not seen[y * m.width + x]:
                raise ScenarioError(
                    f"{source}: {p}: cell ({x}, {y}) on {m.name} is not walkable or not "
                    f"reachable from ({x0}, {y0})"
                )
