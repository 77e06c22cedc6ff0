"""Pydantic building blocks for the rule schemas of actor kinds and models.

Each actor kind owns the schema of its tunable rules (``actors/<kind>/schema.py``) and a
model composes them into its scenario schema; these are the shared pieces: a strict,
frozen base (unknown keys are errors), and bounded numbers with units in their names.
Bounds (``ge``/``le``) are validation, not tuning: rule numbers have no defaults.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from norn.engine import limits

Frac = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Weight = Annotated[float, Field(ge=-100.0, le=100.0)]
Ticks = Annotated[int, Field(ge=1, le=1_000_000)]
Zeny = Annotated[int, Field(ge=0, le=limits.zeny_max)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TickRange(Strict):
    min: Ticks
    max: Ticks

    @model_validator(mode="after")
    def _ordered(self) -> TickRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self
