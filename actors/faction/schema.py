"""The faction kind's tunable rules (``[rules.faction]``) and its hard ceiling."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.rules.schema import Frac, Rate, Strict, Ticks

#: Reputation rows (faction, player) the table may ever hold (a ceiling for the rule).
reputation_rows_max = 1 << 22


class FactionRules(Strict):
    every_ticks: Ticks
    influence_max: Annotated[float, Field(gt=0.0, le=1e6)]
    growth_per_tick: Rate
    decay_per_tick: Rate
    spread_per_tick: Rate
    deed_influence: Annotated[float, Field(ge=0.0, le=1e6)]
    own_min: Annotated[float, Field(ge=0.0, le=1e6)]
    contest_min: Annotated[float, Field(ge=0.0, le=1e6)]
    contest_margin: Frac
    hostile_below: Annotated[float, Field(ge=-1.0, le=1.0)]
    conflict_start: Annotated[float, Field(ge=0.0, le=1.0)]
    conflict_decay_per_tick: Rate
    diplomacy_drop: Frac
    diplomacy_recovery_per_tick: Rate
    reputation_max: Annotated[int, Field(ge=1, le=1 << 30)]
    reputation_per_kill: Annotated[int, Field(ge=0, le=1 << 20)]
    reputation_per_quest: Annotated[int, Field(ge=0, le=1 << 20)]
    reputation_per_talk: Annotated[int, Field(ge=0, le=1 << 20)]
    reputation_entries_max: Annotated[int, Field(ge=1, le=reputation_rows_max)]
    reward_reputation_bonus: Annotated[float, Field(ge=0.0, le=10.0)]
