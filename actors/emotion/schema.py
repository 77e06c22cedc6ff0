"""The emotion kind's tunable rules (``[rules.emotion]``) and its hard ceiling."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.rules.schema import Frac, Strict, Ticks

#: Characters the emotion table may ever hold (a ceiling for ``characters_max``).
emotion_rows_max = 1 << 22

PerHour = Annotated[float, Field(gt=0.0, le=1e6)]


class EmotionRules(Strict):
    """How behaviour becomes emotion (the formulas are in ``actors/emotion``).

    ``characters_max`` rows (when full, the longest-unseen offline character's row is
    given to the newcomer; with none offline it is refused and counted). Rates are
    smoothed over about ``window_ticks`` ticks; each ``*_per_hour_ref`` is the rate a
    designer calls "a lot" (the feature is 1 there); ``idle_ref_ticks`` likewise for time
    without any activity. ``ease_max`` is the most a problem's difficulty is eased, for a
    fully frustrated character of level 1; characters from ``low_level_ref`` up are not
    "low level" and get none. A character none of whose scores reaches ``calm_below``
    counts as calm in a map's distribution.
    """

    characters_max: Annotated[int, Field(ge=1, le=emotion_rows_max)]
    window_ticks: Ticks
    deaths_per_hour_ref: PerHour
    kills_per_hour_ref: PerHour
    map_changes_per_hour_ref: PerHour
    trades_per_hour_ref: PerHour
    talks_per_hour_ref: PerHour
    level_ups_per_hour_ref: PerHour
    quests_per_hour_ref: PerHour
    idle_ref_ticks: Ticks
    ease_max: Frac
    low_level_ref: Annotated[int, Field(ge=1, le=999)]
    calm_below: Frac
