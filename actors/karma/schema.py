"""The karma kind's tunable rules (``[rules.karma]``) and its hard ceilings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.rules.schema import Rate, Strict, Ticks

#: Characters the karma table may ever hold (a ceiling for ``characters_max``).
karma_rows_max = 1 << 22
#: |karma| a rule may allow (``karma_max``); the ``set_karma`` action's bound on the wire.
karma_bound_max = 1_000_000
#: |shop price change| in percent a rule may allow (``price_pct_max``); the wire's bound.
price_pct_bound_max = 50

Delta = Annotated[float, Field(ge=-1e5, le=1e5)]


class KarmaRules(Strict):
    """Karma per character: what each deed is worth, how it fades, what it costs in shops.

    ``characters_max`` rows (the table's bound: when full, an offline character with the
    karma closest to 0, then the longest unseen, makes room; with none, the newcomer is
    refused and counted). ``karma_max`` bounds |karma|. Every ``decay_every_ticks`` karma
    is multiplied by ``1 - decay_per_tick * decay_every_ticks``. The shop price change is
    ``-karma / karma_max * price_pct_max`` percent rounded to a multiple of
    ``price_pct_step``, announced (``set_karma``) to online characters when it changes or
    when karma moved by ``announce_step`` since the last announcement, at most
    ``announce_per_tick_max`` a tick (the least recently announced first).
    """

    characters_max: Annotated[int, Field(ge=1, le=karma_rows_max)]
    karma_max: Annotated[float, Field(gt=0.0, le=karma_bound_max)]
    kill_karma: Delta
    kill_danger_bonus: Annotated[float, Field(ge=0.0, le=100.0)]
    death_karma: Delta
    quest_karma: Delta
    trade_karma: Delta
    vend_karma: Delta
    gouge_karma: Delta
    fair_price_ratio: Annotated[float, Field(ge=1.0, le=1000.0)]
    decay_per_tick: Rate
    decay_every_ticks: Ticks
    price_pct_max: Annotated[int, Field(ge=0, le=price_pct_bound_max)]
    price_pct_step: Annotated[int, Field(ge=1, le=price_pct_bound_max)]
    announce_step: Annotated[float, Field(gt=0.0, le=karma_bound_max)]
    announce_per_tick_max: Annotated[int, Field(ge=0, le=1 << 16)]
