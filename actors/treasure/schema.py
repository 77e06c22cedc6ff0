"""The treasure kind's tunable rules (``[rules.treasure]``) and its hard ceiling."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from norn.engine import limits as lim
from norn.rules.schema import Frac, Strict, Ticks

#: Live dig sites and caches the table may ever hold (a ceiling for ``sites_max``).
treasure_rows_max = 1 << 14
#: Cells around a site or cache where a dig finds it (Chebyshev radius).
radius_cells_max = 64
Line = Annotated[str, Field(min_length=1, max_length=200)]


class Loot(Strict):
    """What a find may hold: ``amount_min``..``amount_max`` of rAthena item ``item``."""

    item: Annotated[int, Field(ge=1, le=2**31 - 1)]
    amount_min: Annotated[int, Field(ge=1, le=lim.item_stack_max)]
    amount_max: Annotated[int, Field(ge=1, le=lim.item_stack_max)]

    @model_validator(mode="after")
    def _ordered(self) -> Loot:
        if self.amount_max < self.amount_min:
            raise ValueError("amount_max must be >= amount_min")
        return self


class TreasureRules(Strict):
    """Dig sites (announced ruins that take ``site_digs`` digs) and hidden caches (found by
    one dig within ``cache_radius_cells``), buried on walkable cells of maps that are not
    towns: ``places_per_tick_max`` every ``place_every_ticks``, plus ``daily_caches`` at
    each daily reset, never more than ``sites_max`` alive nor ``sites_per_map_max`` on a
    map; a find nobody makes is gone after ``site_ttl_ticks``. ``site_share`` of what is
    buried is an announced site. Finds follow adventurers: on the map of a player seen
    off town (a cache within ``cache_near_cells`` of that player, a site anywhere on the
    map; nobody seen: any field). Lines take ``{map}``, ``{x}``, ``{y}``, ``{item}``,
    ``{amount}``."""

    sites_max: Annotated[int, Field(ge=1, le=treasure_rows_max)]
    sites_per_map_max: Annotated[int, Field(ge=1, le=treasure_rows_max)]
    place_every_ticks: Ticks
    places_per_tick_max: Annotated[int, Field(ge=0, le=treasure_rows_max)]
    daily_caches: Annotated[int, Field(ge=0, le=treasure_rows_max)]
    site_share: Frac
    site_radius_cells: Annotated[int, Field(ge=0, le=radius_cells_max)]
    cache_radius_cells: Annotated[int, Field(ge=0, le=radius_cells_max)]
    cache_near_cells: Annotated[int, Field(ge=0, le=1 << 10)]
    site_digs: Annotated[int, Field(ge=1, le=1 << 16)]
    site_ttl_ticks: Ticks
    loot: Annotated[list[Loot], Field(min_length=1, max_length=256)]
    site_text: Line
    found_text: Line
