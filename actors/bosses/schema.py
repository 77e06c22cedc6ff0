"""The boss kind's tunable rules (``[rules.bosses]``) and its hard ceiling."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.engine import limits as lim
from norn.rules.schema import Frac, Strict, Ticks, Zeny

#: Live bosses the table may ever hold (a ceiling for ``rules.bosses.bosses_max``).
bosses_rows_max = 1 << 12
#: Boss mobs a list may name.
boss_mobs_max = 64
#: A line template (placeholders filled, then cut to rAthena's chat size).
Line = Annotated[str, Field(min_length=1, max_length=200)]


class BossMob(Strict):
    """A monster from rAthena's mob_db: its id and the name broadcasts use."""

    id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    name: Annotated[str, Field(min_length=1, max_length=32)]


class BossRules(Strict):
    """When and where bosses appear, and what their death changes.

    A monster surge at least ``surge_intensity_min`` strong and ``surge_age_min_ticks``
    old calls a surge boss onto its map; a contested map whose conflict reached
    ``war_conflict_min`` (any contested map while the War of Emperium runs) calls a war
    boss. A map holds one boss at a time; a boss nobody kills leaves after
    ``boss_ttl_ticks`` (war bosses also when the War of Emperium ends). Its death ends the
    surge, adds ``kill_deeds`` to the map's defender, drops ``drop_qty`` of the first of
    ``drop_items`` the nearest town's market sells into it and pays the killer
    ``bounty_zeny`` from the defender's treasury. Broadcast lines are templates with
    ``{boss}`` and ``{map}``.
    """

    bosses_max: Annotated[int, Field(ge=1, le=bosses_rows_max)]
    check_every_ticks: Ticks
    spawns_per_tick_max: Annotated[int, Field(ge=0, le=bosses_rows_max)]
    surge_intensity_min: Frac
    surge_age_min_ticks: Ticks
    war_conflict_min: Frac
    boss_ttl_ticks: Ticks
    surge_mobs: Annotated[list[BossMob], Field(min_length=1, max_length=boss_mobs_max)]
    war_mobs: Annotated[list[BossMob], Field(min_length=1, max_length=boss_mobs_max)]
    drop_items: Annotated[list[Annotated[int, Field(ge=1, le=2**31 - 1)]],
                          Field(min_length=1, max_length=boss_mobs_max)]
    drop_qty: Annotated[int, Field(ge=0, le=lim.item_stack_max)]
    kill_deeds: Annotated[float, Field(ge=0.0, le=1e6)]
    bounty_zeny: Zeny
    appear_text: Line
    slain_text: Line
    leave_text: Line
