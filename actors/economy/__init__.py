"""Economy actors: a market per (town, item) with integer stock, price and cash.

Zeny is conserved: the world's ``ledger`` (``engine/ledger.py``) sums every declared
holding (this kind's are market cash and the escrow of orders and fills in flight) and
books what enters or leaves through named sources and sinks; the audit checks
``held == initial + sources - sinks``.

Orders travel as messages: NPCs escrow zeny (or goods) into an ``order``; the market clears
it next tick and answers with a ``fill`` carrying the zeny and goods back.

Players move markets too (``economy.clear``, before NPC orders):

- ``npc_shop``: a purchase or sale at the town's market, at its price changed by the
  character's karma as the game server applies it (``karma`` resource: ``price_pct``);
  zeny enters as ``player_purchase`` and leaves as ``player_sale``.
- ``trade`` and ``vending_purchase`` (goods changing hands between players) are market
  pressure in the town nearest to where the buyer stands (the ``player`` table's map):
  a unit traded at or above the market's price is demand, below it (or given away)
  supply, exactly as an NPC order priced there would be, at most
  ``player_pressure_per_tick_max`` units per market and tick; prices then follow in
  ``economy.update`` as they do for orders. A vending sale's tax (rAthena's
  ``vending_tax``, ``vending_tax_bp`` basis points of price x amount, ``price_zeny``
  being the unit price) is collected by that market: the ledger source ``vending_tax``.
  The goods themselves go from player to player, never through the market's stock.

Resources read: ``items``, ``markets``, ``ledger``, ``geography`` (the nearest town),
``karma`` (shop prices). When the world keeps an action log, a price the game server
refused is reverted to the one it still has (``economy.revert``).
"""

from __future__ import annotations

import numpy as np

from norn.actors.economy.schema import EconomyRules
from norn.engine.errors import require
from norn.engine.rng import register_stream
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules import pricing
from norn.rules.keyed import find

S_SHOCK = register_stream("economy.shock")

ORDER_PAYLOAD = (
    ("src_gen", np.uint32),
    ("side", np.uint8),  # 0 buy, 1 sell
    ("item", np.int16),
    ("qty", np.int32),
    ("limit_zeny", np.int32),  # highest unit price a buyer accepts
    ("escrow_zeny", np.int64),  # zeny travelling with a buy order
)
FILL_PAYLOAD = (
    ("side", np.uint8),
    ("item", np.int16),
    ("qty", np.int32),  # goods bought (buy) or returned unsold (sell)
    ("zeny", np.int64),  # refund (buy) or payment (sell)
)

STAT_COLUMNS = (
    "npc_bought",
    "npc_sold",
    "refused",
    "player_bought",
    "player_sold",
    "unknown_shop",
    "price_rises",
    "price_falls",
    "stock_lost",
    "taxed_zeny",
    "announced",
    "player_trades",  # trade events
    "player_vends",  # vending_purchase events
    "p2p_units",  # units that changed hands between players
    "p2p_zeny",  # zeny that changed hands between players
    "vending_tax",  # vending tax collected by markets (ledger source vending_tax)
    "unlocated",  # player trades of goods with no market where the buyer stands
    "pressure_capped",  # units over player_pressure_per_tick_max, not counted
    "karma_priced",  # shop events priced with a karma price change
)


class EconomyPlugin:
    name = "economy"
    resources = ("items", "markets", "ledger", "geography", "karma")

    def __init__(self, rules: EconomyRules, *, price_actions_max: int) -> None:
        self.rules = rules
        self.price_actions_max = price_actions_max

    def build(self, world: World) -> None:
        self.items = items = world.resource("items")
        self.markets = mk = world.resource("markets")
        self.ledger = world.resource("ledger")
        self.geo = world.resource("geography")
        self.karma = world.resource("karma")
        eco = self.rules
        n = mk.n
        world.consumes("npc_shop", "trade", "vending_purchase")
        world.emits("set_price")
        market = world.add_table(
            "market",
            [
                Column("town", np.int16),
                Column("item", np.int16),
                Column("stock", np.int32),
                Column("target", np.int32),
                Column("price", np.int32),
                Column("price_x", np.float64),
                Column("announced", np.int32),
                Column("cash", np.int64),
                Column("demand", np.int32),
                Column("supply", np.int32),
                Column("d_ema", np.float32),
                Column("s_ema", np.float32),
                Column("p2p_units", np.int64),  # units players traded here, all time
                Column("p2p_zeny", np.int64),  # zeny they paid for them
                Column("p2p_net", np.int64),  # their pressure counted: demand - supply
            ],
            n,
        )
        # the base price, inside the band (which holds the item's shop-exploit floor)
        base = np.minimum(np.maximum(items.price[mk.item], mk.lo), mk.hi)
        market.spawn(
            n,
            town=mk.map,
            item=mk.item,
            stock=mk.stock0,
            target=mk.stock0,
            price=base,
            price_x=base.astype(np.float64),
            announced=base,
            cash=mk.cash0,
        )
        stats = world.add_table("market_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.add_channel("order", "npc", "market", ORDER_PAYLOAD, eco.orders_per_tick_max)
        world.add_channel("fill", "market", "npc", FILL_PAYLOAD, eco.orders_per_tick_max)
        self.ledger.holds("market.cash", "msg:order.escrow_zeny", "msg:fill.zeny")
        self.ledger.uses(sources=("player_purchase", "vending_tax"),
                         sinks=("player_sale", "upkeep"))
        log = world.action_log
        if log is not None:
            log.track("set_price")
            world.consumes("action_result")
            world.add_system(
                "economy.revert",
                "ingest",
                self.revert,
                reads=("events", "action_log.*"),
                writes=("market.price", "market.price_x", "market.announced"),
                after=("action_log.match",),
            )
        world.add_system(
            "economy.clear",
            "deliver",
            self.clear,
            reads=("events", "in:order", "player.*", "karma.*"),
            writes=(
                "market.stock",
                "market.cash",
                "market.demand",
                "market.supply",
                "market.p2p_units",
                "market.p2p_zeny",
                "market.p2p_net",
                "out:fill",
                "ledger.sources",
                "ledger.sinks",
                "market_stats.*",
            ),
        )
        world.add_system(
            "economy.update",
            "act",
            self.update,
            reads=("hazard_map.supply", "territory.owner"),
            writes=(
                "market.stock",
                "market.price",
                "market.price_x",
                "market.announced",
                "market.cash",
                "market.demand",
                "market.supply",
                "market.d_ema",
                "market.s_ema",
                "faction.treasury",
                "ledger.sinks",
                "market_stats.*",
                "actions",
            ),
            after=("npc.act",),
        )

    # -- deliver: clear players' shop events and NPC orders -----------------------------
    def clear(self, world: World) -> None:
        eco = self.rules
        m = world.tables["market"]
        stats = np.zeros(6, dtype=np.int64)
        shop = world.events["npc_shop"]
        if len(shop["char_id"]):
            slots = self.markets.slot(shop["map_id"], self.items.index(shop["item_id"]))
            pct = self.karma.price_pct(world, shop["char_id"])
            world.tables["market_stats"]["karma_priced"][0] += int((pct != 0).sum())
            paid_in, paid_out = pricing.clear_players(
                slots,
                shop["is_sell"],
                shop["amount"],
                pct,
                m["stock"],
                m["price"],
                m["cash"],
                m["demand"],
                m["supply"],
                eco.stock_max,
                eco.sell_ratio,
                stats,
            )
            self.ledger.book(world, source="player_purchase", amount=int(paid_in))
            self.ledger.book(world, sink="player_sale", amount=int(paid_out))
        self._player_trades(world)
        inbox = world.channels["order"].inbox
        if len(inbox):
            fill = world.channels["fill"]
            rows = fill.reserve(len(inbox))
            n = pricing.clear_orders(
                inbox.offsets,
                inbox["src"],
                inbox["src_gen"],
                inbox["side"],
                inbox["item"],
                inbox["qty"],
                inbox["limit_zeny"],
                inbox["escrow_zeny"],
                m["stock"],
                m["price"],
                m["cash"],
                m["demand"],
                m["supply"],
                eco.stock_max,
                eco.sell_ratio,
                rows["dst"],
                rows["dst_gen"],
                rows["src"],
                rows["seq"],
                rows["zeny"],
                rows["qty"],
                rows["item"],
                rows["side"],
                stats,
            )
            require(n == len(inbox), "economy.clear: one fill per order")
        s = world.tables["market_stats"]
        for k, col in enumerate(STAT_COLUMNS[:6]):
            s[col][0] += stats[k]

    def _player_trades(self, world: World) -> None:
        """Trades and vending between players: pressure on the buyer's town market, and
        the vending tax it collects."""
        ev = world.events
        tr, vp = ev["trade"], ev["vending_purchase"]
        n_t, n_v = len(tr["char_id"]), len(vp["char_id"])
        if not n_t and not n_v:
            return
        eco = self.rules
        m = world.tables["market"]
        s = world.tables["market_stats"]
        t_amount = tr["amount"].astype(np.int64)
        v_amount = vp["amount"].astype(np.int64)
        t_zeny = tr["zeny"].astype(np.int64)
        v_unit = vp["price_zeny"].astype(np.int64)
        item = np.concatenate([tr["item_id"], vp["item_id"]]).astype(np.int64)
        units = np.concatenate([t_amount, v_amount])
        unit = np.concatenate([np.where(t_amount > 0, t_zeny // np.maximum(t_amount, 1), 0),
                               v_unit])
        zeny = np.concatenate([t_zeny, v_unit * v_amount])
        goods = (item > 0) & (units > 0)
        pl = world.tables["player"]
        row = find(pl, "char_id", np.concatenate([tr["char_id"], vp["char_id"]]))
        where = np.where(row >= 0, pl["map"][np.maximum(row, 0)].astype(np.int64), -1)
        where = np.where((where >= 0) & (where < self.geo.n_maps), where, -1)
        town = np.where(where >= 0, self.geo.nearest_town[np.maximum(where, 0)], -1)
        market = np.where(goods & (town >= 0),
                          self.markets.slot(np.maximum(town, 0), self.items.index(item)), -1)
        here = market >= 0
        left = np.full(self.markets.n, eco.player_pressure_per_tick_max, np.int64)
        taken = pricing.player_pressure(market, np.where(here, units, 0), unit, m["price"],
                                        m["demand"], m["supply"], left, m["p2p_net"])
        np.add.at(m["p2p_units"], market[here], units[here])
        np.add.at(m["p2p_zeny"], market[here], zeny[here])
        tax = v_unit * v_amount * eco.vending_tax_bp // 10000
        collect = here[n_t:] & (tax > 0)
        if collect.any():
            np.add.at(m["cash"], market[n_t:][collect], tax[collect])
            self.ledger.book(world, source="vending_tax", amount=int(tax[collect].sum()))
        s["player_trades"][0] += n_t
        s["player_vends"][0] += n_v
        s["p2p_units"][0] += int(units[goods].sum())
        s["p2p_zeny"][0] += int(zeny.sum())
        s["vending_tax"][0] += int(tax[collect].sum())
        s["unlocated"][0] += int((goods & ~here).sum())
        s["pressure_capped"][0] += int(units[here].sum()) - int(taken)

    # -- act: shocks, restock, prices, taxes, announcements --------------------------------
    def update(self, world: World) -> None:
        mk = self.markets
        eco = self.rules
        n = mk.n
        m = {k: v[:n] for k, v in world.tables["market"].columns.items()}
        s = world.tables["market_stats"]
        lost = np.zeros(1, dtype=np.int64)
        restock = eco.restock_qty if world.tick % eco.restock_every_ticks == 0 else 0
        pricing.shocks_and_restock(
            world.stream_seed(),
            world.tick,
            S_SHOCK,
            mk.map,
            m["stock"],
            m["target"],
            world.tables["hazard_map"]["supply"],
            restock,
            eco.stock_max,
            lost,
        )
        s["stock_lost"][0] += lost[0]
        rises, falls = pricing.adjust_prices(
            m["stock"],
            m["target"],
            m["price"],
            m["price_x"],
            mk.lo,
            mk.hi,
            m["demand"],
            m["supply"],
            m["d_ema"],
            m["s_ema"],
            eco.price_ema_rate,
            eco.price_elasticity,
            eco.price_step_max,
            eco.pressure_floor,
            eco.stock_weight,
        )
        s["price_rises"][0] += rises
        s["price_falls"][0] += falls
        # cash above the cap is taxed to the faction holding the town, or lost to upkeep
        cash = m["cash"]
        excess = np.maximum(cash - eco.market_cash_max, 0)
        if excess.any():
            cash -= excess
            owner = world.tables["territory"]["owner"][mk.map].astype(np.int64)
            fac = world.tables["faction"]
            owned = owner >= 0
            np.add.at(fac["treasury"], owner[owned], excess[owned])
            s["taxed_zeny"][0] += int(excess.sum())
            self.ledger.book(world, sink="upkeep", amount=int(excess[~owned].sum()))
            treasury = fac["treasury"][: fac.hwm]
            over = np.maximum(treasury - eco.treasury_max, 0)
            if over.any():
                treasury -= over
                self.ledger.book(world, sink="upkeep", amount=int(over.sum()))
        # tell the game server about changed prices, lowest market ids first, up to the cap
        cap = self.price_actions_max
        k = np.flatnonzero(m["price"] != m["announced"])[:cap]
        if len(k):
            world.emit(
                "set_price",
                log_prior=m["announced"][k],  # what the game server has until this lands
                market_id=k,
                map_id=mk.map[k],
                item_id=self.items.ids[mk.item[k]],
                price_zeny=m["price"][k],
            )
            m["announced"][k] = m["price"][k]
            s["announced"][0] += len(k)

    # -- ingest: prices the game server refused ---------------------------------------------
    def revert(self, world: World) -> None:
        """A refused ``set_price`` is undone: the market goes back to the price the game
        server still has (the one announced before), unless a newer price was announced
        since. The latest refusal per market wins."""
        failed = world.action_log.failed(world, ("set_price",))
        if not len(failed):
            return
        order = np.argsort(failed.action_id, kind="stable")
        market, price, prior = failed.key[order], failed.value[order], failed.prior[order]
        _, last_rev = np.unique(market[::-1], return_index=True)
        last = len(market) - 1 - last_rev
        market, price, prior = market[last], price[last], prior[last]
        m = world.tables["market"]
        ok = (market >= 0) & (market < self.markets.n) & (prior > 0)
        market, price, prior = market[ok], price[ok], prior[ok]
        still = m["announced"][market] == price  # nothing newer left since
        k, p = market[still], prior[still]
        m["price"][k] = p
        m["price_x"][k] = p.astype(np.float64)
        m["announced"][k] = p
