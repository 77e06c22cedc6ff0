"""Economy actors: a market per (town, item) with integer stock, price and cash; the ledger.

Zeny is conserved: it sits in NPC wallets, market cash, faction treasuries and the escrow
of orders and fills in flight, and it enters or leaves the world only through the named
sources and sinks below, each booked in the ``ledger`` table. ``audit`` checks
``held == initial + sources - sinks`` (the invariant the tests check every tick, and the
commit-phase check enforces every ``rules.audit_every_ticks``).

Orders travel as messages: NPCs escrow zeny (or goods) into an ``order``; the market clears
it next tick and answers with a ``fill`` carrying the zeny and goods back.
"""

from __future__ import annotations

import numpy as np

from norn.actors.midgard.actions import emit
from norn.actors.midgard.static import Static
from norn.engine.errors import require
from norn.engine.rng import register_stream
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules import pricing

SOURCES = ("birth", "wages", "player_purchase")
SINKS = ("death", "player_sale", "quest_reward", "upkeep", "unclaimed")
SRC = {n: i for i, n in enumerate(SOURCES)}
SNK = {n: i for i, n in enumerate(SINKS)}

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
)


def book(world: World, *, source: str | None = None, sink: str | None = None, zeny: int) -> None:
    """Record zeny entering (``source``) or leaving (``sink``) the world."""
    require(zeny >= 0, f"ledger: negative amount {zeny}")
    led = world.tables["ledger"]
    if source is not None:
        led["sources"][0, SRC[source]] += zeny
    if sink is not None:
        led["sinks"][0, SNK[sink]] += zeny


def held_zeny(world: World) -> int:
    """All zeny inside the world now, escrow in flight included."""
    npc = world.tables["npc"]
    total = int(npc["wallet"][: npc.hwm].sum())  # the dead hold 0: their zeny was booked out
    total += int(world.tables["market"]["cash"][: world.tables["market"].hwm].sum())
    fac = world.tables["faction"]
    total += int(fac["treasury"][: fac.hwm].sum())
    total += int(world.channels["order"].pending()["escrow_zeny"].sum())
    total += int(world.channels["fill"].pending()["zeny"].sum())
    return total


def audit(world: World) -> dict[str, int]:
    """held, expected (initial + sources - sinks) and their difference."""
    led = world.tables["ledger"]
    expected = int(led["initial"][0]) + int(led["sources"][0].sum()) - int(led["sinks"][0].sum())
    held = held_zeny(world)
    return {"held": held, "expected": expected, "difference": held - expected}


class EconomyPlugin:
    name = "economy"

    def __init__(self, st: Static) -> None:
        self.st = st

    def build(self, world: World) -> None:
        st = self.st
        eco = st.spec.rules.economy
        n = len(st.market_map)
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
            ],
            n,
        )
        base = st.item_price[st.market_item]
        market.spawn(
            n,
            town=st.market_map,
            item=st.market_item,
            stock=st.market_stock0,
            target=st.market_stock0,
            price=base,
            price_x=base.astype(np.float64),
            announced=base,
            cash=st.town_cash0,
        )
        ledger = world.add_table(
            "ledger",
            [
                Column("initial", np.int64),
                Column("sources", np.int64, (len(SOURCES),)),
                Column("sinks", np.int64, (len(SINKS),)),
            ],
            1,
        )
        ledger.spawn(1)
        stats = world.add_table("market_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.add_channel("order", "npc", "market", ORDER_PAYLOAD, eco.orders_per_tick_max)
        world.add_channel("fill", "market", "npc", FILL_PAYLOAD, eco.orders_per_tick_max)
        world.add_system(
            "economy.clear",
            "deliver",
            self.clear,
            reads=("events", "in:order"),
            writes=(
                "market.stock",
                "market.cash",
                "market.demand",
                "market.supply",
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
        st = self.st
        eco = st.spec.rules.economy
        m = world.tables["market"]
        stats = np.zeros(6, dtype=np.int64)
        shop = world.events["npc_shop"]
        if len(shop["char_id"]):
            slots = st.market_slot(shop["map_id"], st.item_index(shop["item_id"]))
            paid_in, paid_out = pricing.clear_players(
                slots,
                shop["is_sell"],
                shop["amount"],
                m["stock"],
                m["price"],
                m["cash"],
                m["demand"],
                m["supply"],
                eco.stock_max,
                eco.sell_ratio,
                stats,
            )
            book(world, source="player_purchase", zeny=int(paid_in))
            book(world, sink="player_sale", zeny=int(paid_out))
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

    # -- act: shocks, restock, prices, taxes, announcements --------------------------------
    def update(self, world: World) -> None:
        st = self.st
        eco = st.spec.rules.economy
        n = len(st.market_map)
        m = {k: v[:n] for k, v in world.tables["market"].columns.items()}
        s = world.tables["market_stats"]
        lost = np.zeros(1, dtype=np.int64)
        restock = eco.restock_qty if world.tick % eco.restock_every_ticks == 0 else 0
        pricing.shocks_and_restock(
            world.stream_seed(),
            world.tick,
            S_SHOCK,
            st.market_map,
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
            st.market_lo,
            st.market_hi,
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
            owner = world.tables["territory"]["owner"][st.market_map].astype(np.int64)
            fac = world.tables["faction"]
            owned = owner >= 0
            np.add.at(fac["treasury"], owner[owned], excess[owned])
            s["taxed_zeny"][0] += int(excess.sum())
            book(world, sink="upkeep", zeny=int(excess[~owned].sum()))
            treasury = fac["treasury"][: fac.hwm]
            over = np.maximum(treasury - eco.treasury_max, 0)
            if over.any():
                treasury -= over
                book(world, sink="upkeep", zeny=int(over.sum()))
        # tell the game server about changed prices, lowest market ids first, up to the cap
        cap = st.spec.rules.actions.price_actions_per_tick_max
        k = np.flatnonzero(m["price"] != m["announced"])[:cap]
        if len(k):
            emit(
                world,
                "set_price",
                market_id=k,
                map_id=st.market_map[k],
                item_id=st.item_ids[st.market_item[k]],
                price_zeny=m["price"][k],
            )
            m["announced"][k] = m["price"][k]
            s["announced"][0] += len(k)


def set_initial(world: World) -> None:
    """Book the zeny the world starts with (after every plugin has spawned its holders)."""
    npc = world.tables["npc"]
    total = int(npc["wallet"].sum())  # build time: every spawned row holds its wallet
    total += int(world.tables["market"]["cash"].sum())
    total += int(world.tables["faction"]["treasury"].sum())
    world.tables["ledger"]["initial"][0] = total
