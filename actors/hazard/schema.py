"""The hazard kind's tunable rules (``[rules.hazard]``) and its hard ceiling."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.rules.schema import Strict

#: Live hazard instances (a ceiling for ``rules.hazard.hazards_max``).
live_hazards_max = 1 << 16


class HazardRules(Strict):
    intensity_max: Annotated[float, Field(gt=0.0, le=100.0)]
    hazards_max: Annotated[int, Field(ge=1, le=live_hazards_max)]
    spread_per_tick_max: Annotated[int, Field(ge=0, le=live_hazards_max)]
    starts_per_tick_max: Annotated[int, Field(ge=0, le=live_hazards_max)]
