"""The economy kind's tunable rules: a scenario's ``[rules.economy]``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.engine import limits as lim
from norn.rules.schema import Frac, Rate, Strict, Ticks, Zeny


class EconomyRules(Strict):
    item_stack_max: Annotated[int, Field(ge=1, le=lim.item_stack_max)]
    stock_max: Annotated[int, Field(ge=1, le=lim.item_stack_max)]
    price_ema_rate: Rate
    price_elasticity: Annotated[float, Field(ge=0.0, le=10.0)]
    price_step_max: Annotated[float, Field(ge=0.0, le=0.5)]
    price_band_min: Annotated[float, Field(gt=0.0, le=1.0)]
    price_band_max: Annotated[float, Field(ge=1.0, le=100.0)]
    pressure_floor: Annotated[float, Field(gt=0.0, le=1e6)]
    stock_weight: Annotated[float, Field(ge=0.0, le=10.0)]
    sell_ratio: Frac
    restock_every_ticks: Ticks
    restock_qty: Annotated[int, Field(ge=0, le=lim.item_stack_max)]
    market_cash_max: Zeny
    treasury_max: Zeny
    orders_per_tick_max: Annotated[int, Field(ge=1, le=1 << 22)]
    # players trading among themselves: rAthena's vending_tax (basis points: 200 = 2%),
    # collected by the town's market; units of pressure one market takes from them a tick
    vending_tax_bp: Annotated[int, Field(ge=0, le=10_000)]
    player_pressure_per_tick_max: Annotated[int, Field(ge=0, le=1 << 24)]
