"""The quest kind's tunable rules (``[rules.quests]``) and its hard ceilings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.engine import limits as lim
from norn.rules.schema import Frac, Strict, Ticks, Zeny

#: Open problems the table may ever hold (a ceiling for ``problems_max``).
problems_rows_max = 1 << 12
#: Quests in players' logs the table may ever hold (a ceiling for ``quests_max``).
quests_rows_max = 1 << 20
#: How an offer is pitched (the options of its decision request), in option order.
PITCHES = ("plea", "bounty", "warning")
Line = Annotated[str, Field(min_length=1, max_length=200)]


class QuestKind(Strict):
    """One kind of problem as a quest: what each taker must do (``target`` kills or units),
    what it pays (``reward_zeny`` before the severity bonus, ``reward_amount`` of
    ``reward_item``, 0 for none) and how it is offered: one line per pitch (plea, bounty,
    warning), with ``{faction}``, ``{map}``, ``{item}``, ``{target}`` and ``{zeny}``."""

    target: Annotated[int, Field(ge=1, le=1 << 20)]
    reward_zeny: Zeny
    reward_item: Annotated[int, Field(ge=0, le=2**31 - 1)]
    reward_amount: Annotated[int, Field(ge=0, le=lim.item_stack_max)]
    texts: Annotated[list[Line], Field(min_length=len(PITCHES), max_length=len(PITCHES))]


class QuestRules(Strict):
    """Problems the world finds in its own state, and the quests it offers for them.

    Every ``scan_every_ticks`` the world looks for problems: a monster surge at least
    ``surge_intensity_min`` strong (**hunt**: kill monsters there), a hazard older than
    ``stuck_hazard_ticks`` that will not end (**relief**: bring potions to the nearest
    town's shops), a market whose stock fell below ``short_stock_share`` of its target
    (**supply**: sell that item to it) and a contested map (**defend**: kill monsters on it
    for its holder). At most ``problems_per_scan_max`` new ones a scan, one per kind and
    place, given by the faction holding the map (else its nearest town); a problem is
    solved when its cause is gone, or dropped after ``problem_ttl_ticks``.

    Every ``offer_every_ticks`` online players where a problem is are offered its quest
    (``start_quest``; at most ``offers_per_tick_max``, ``takers_max`` open quests per
    problem, one Norn quest per player at a time). A quest is done when its progress
    (from ``mob_kill``, ``npc_shop`` sales, ``trade``s; ``quest_done`` from a server that
    tracks it) reaches its target, or forgotten after ``quest_ttl_ticks``. Rewards come from
    the giver's treasury (at most what it holds) and never exceed ``reward_zeny_max`` and
    ``reward_amount_max``; a problem pays at most ``finishers_per_day_max`` quests a day
    (``daily_reset``). Offers are voiced by a decision request (a resolver picks the pitch
    and may write the line; the fallback fills the pitch's template) within
    ``offer_deadline_ticks``. Quest ids are ``quest_id_base`` + the kind (hunt, relief,
    supply, defend): the entries an integrator adds to the server's quest database.
    """

    problems_max: Annotated[int, Field(ge=1, le=problems_rows_max)]
    quests_max: Annotated[int, Field(ge=1, le=quests_rows_max)]
    scan_every_ticks: Ticks
    offer_every_ticks: Ticks
    problems_per_scan_max: Annotated[int, Field(ge=0, le=problems_rows_max)]
    offers_per_tick_max: Annotated[int, Field(ge=0, le=quests_rows_max)]
    takers_max: Annotated[int, Field(ge=1, le=quests_rows_max)]
    finishers_per_day_max: Annotated[int, Field(ge=0, le=quests_rows_max)]
    quest_id_base: Annotated[int, Field(ge=1, le=2**31 - 16)]
    surge_intensity_min: Frac
    stuck_hazard_ticks: Ticks
    short_stock_share: Frac
    problem_ttl_ticks: Ticks
    quest_ttl_ticks: Ticks
    reward_zeny_max: Zeny
    reward_amount_max: Annotated[int, Field(ge=0, le=lim.item_stack_max)]
    severity_bonus: Annotated[float, Field(ge=0.0, le=10.0)]
    offer_deadline_ticks: Annotated[int, Field(ge=1, le=lim.decision_deadline_ticks_max)]
    hunt: QuestKind
    relief: QuestKind
    supply: QuestKind
    defend: QuestKind
