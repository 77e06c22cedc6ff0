"""The world events kind's tunable rules (``[rules.worldevents]``) and its hard ceilings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from norn.actors.worldevents.kinds import MAPFLAG_CODES
from norn.engine.rathena import WEATHER_CODES
from norn.rules.schema import Frac, Strict, Ticks

#: Live world events the table may ever hold (a ceiling for ``events_max``).
events_rows_max = 1 << 12
#: Stages one event type may have.
stages_max = 8
END = "end"
Line = Annotated[str, Field(max_length=200)]


class Stage(Strict):
    """One stage of an event: it lasts ``ticks``; then the players' score during it (see
    the event type) decides the next stage: ``next_met`` when it reached ``goal``, else
    ``next_missed`` (a stage name or ``"end"``). Entering it broadcasts ``text`` on the
    town ({town}, {score} and {goal} of the stage before; empty: silent) and sets
    ``mapflag`` (with ``mapflag_value``) and ``weather`` there until it ends ("" for
    none)."""

    name: Annotated[str, Field(min_length=1, max_length=24)]
    ticks: Ticks
    goal: Annotated[int, Field(ge=0, le=1 << 30)]
    next_met: str
    next_missed: str
    text: Line
    mapflag: Literal[("", *MAPFLAG_CODES)]  # type: ignore[valid-type]
    mapflag_value: Annotated[int, Field(ge=0, le=100_000)]
    weather: Literal[("", *WEATHER_CODES)]  # type: ignore[valid-type]


class EventType(Strict):
    stages: Annotated[list[Stage], Field(min_length=1, max_length=stages_max)]

    @model_validator(mode="after")
    def _linked(self) -> EventType:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names) or END in names:
            raise ValueError(f"stage names must be distinct and not {END!r}: {names}")
        for s in self.stages:
            for nxt in (s.next_met, s.next_missed):
                if nxt != END and nxt not in names:
                    raise ValueError(f"stage {s.name!r}: next stage {nxt!r} is not one of "
                                     f"{names} or {END!r}")
        return self


class Festival(EventType):
    """A town's festival: on a daily reset, the richest safe town without an event holds
    one with probability ``chance_per_day``; its score is the players' shop deals there."""

    chance_per_day: Frac


class Invasion(EventType):
    """Monsters march on a town from a neighbouring map whose monster surge is at least
    ``surge_min`` strong; its score is the players' kills on the town and its neighbours."""

    surge_min: Frac


class Famine(EventType):
    """A town whose food markets hold less than ``food_share_max`` of their target stock
    goes hungry; its score is the food players sell to its shops."""

    food_share_max: Frac


class WorldEventRules(Strict):
    """Multi-stage world events (festival, invasion, famine), one at a time per town:
    at most ``events_max`` alive, ``starts_per_tick_max`` new ones per check (every
    ``check_every_ticks``). The War of Emperium's start and end are announced on every map
    (``woe_start_text``, ``woe_end_text``); no festival starts while it runs."""

    events_max: Annotated[int, Field(ge=1, le=events_rows_max)]
    starts_per_tick_max: Annotated[int, Field(ge=0, le=events_rows_max)]
    check_every_ticks: Ticks
    woe_start_text: Annotated[str, Field(min_length=1, max_length=200)]
    woe_end_text: Annotated[str, Field(min_length=1, max_length=200)]
    festival: Festival
    invasion: Invasion
    famine: Famine
