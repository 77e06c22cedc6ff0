"""The NPC kind's tunable rules: a scenario's ``[rules.npc]``, composed by the model.

Rule numbers have no defaults on purpose: the scenario is the one place a designer reads
and changes them. ``rules/utility.py`` says what each utility weight multiplies.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.engine import limits as lim
from norn.rules.schema import Frac, Rate, Strict, TickRange, Ticks, Weight, Zeny


class UtilityWeights(Strict):
    """Weights of the behaviour utilities (rules/utility.py says what each multiplies)."""

    idle: Weight
    wander: Weight
    wander_social: Weight
    travel_home: Weight
    travel_goods: Weight
    travel_explore: Weight
    work: Weight
    work_greed: Weight
    trade_need: Weight
    trade_fatigue: Weight
    trade_goods: Weight
    rest: Weight
    flee_danger: Weight
    flee_conflict: Weight
    talk: Weight
    inertia: Weight
    noise: Annotated[float, Field(ge=0.0, le=10.0)]


class TalkWeights(Strict):
    """Utilities of the answers to a player who talks to an NPC (a decision request).

    ``*_karma`` multiply the player's karma over its bound (in [-1, 1], the ``karma``
    resource), ``*_affinity`` how this NPC feels about the player (in [-1, 1], the
    ``memory`` resource), ``quest_frustrated`` how frustrated the player is (in [0, 1], the
    ``emotion`` resource). From ``recall_affinity`` up an NPC greets the player with a
    ``recall`` line (an old friend); from ``-recall_affinity`` down it refuses with a
    ``grudge`` line.
    """

    greet: Weight
    greet_mood: Weight
    trade: Weight
    trade_goods: Weight
    refuse: Weight
    refuse_mood: Weight
    refuse_danger: Weight
    quest: Weight
    quest_reputation: Weight
    greet_karma: Weight
    refuse_karma: Weight
    quest_karma: Weight
    greet_affinity: Weight
    trade_affinity: Weight
    refuse_affinity: Weight
    quest_frustrated: Weight
    recall_affinity: Annotated[float, Field(gt=0.0, le=1.0)]


class Durations(Strict):
    idle: TickRange
    wander: TickRange
    work: TickRange
    rest: TickRange
    trade: TickRange
    talk: TickRange
    travel: TickRange
    flee: TickRange


class NpcRules(Strict):
    update_every_ticks: Annotated[int, Field(ge=1, le=64)]
    think_margin: Frac
    decision_requests_per_tick_max: Annotated[int, Field(ge=0, le=65536)]
    decision_deadline_ticks: Annotated[int, Field(ge=1, le=600)]
    hunger_per_tick: Rate
    fatigue_per_tick: Rate
    work_fatigue_per_tick: Rate
    rest_recovery_per_tick: Rate
    social_per_tick: Rate
    talk_relief_per_tick: Rate
    comfort_per_tick: Rate
    hp_max: Annotated[int, Field(ge=1, le=255)]
    hurt_hp_per_tick: Annotated[float, Field(ge=0.0, le=255.0)]
    regen_every_ticks: Ticks
    mood_rate: Rate
    mood_base: Annotated[float, Field(ge=-1.0, le=1.0)]
    mood_need_weight: Annotated[float, Field(ge=0.0, le=10.0)]
    mood_danger_weight: Annotated[float, Field(ge=0.0, le=10.0)]
    mood_conflict_weight: Annotated[float, Field(ge=0.0, le=10.0)]
    alarm_danger: Annotated[float, Field(ge=0.0, le=100.0)]
    wander_move_every_ticks: Ticks
    travel_move_every_ticks: Ticks
    flee_cells_per_tick: Annotated[int, Field(ge=1, le=8)]
    react_radius_cells: Annotated[int, Field(ge=0, le=64)]
    react_scan_max: Annotated[int, Field(ge=0, le=1024)]
    wage_zeny: Zeny
    produce_value_zeny: Annotated[int, Field(ge=0, le=lim.zeny_max)]
    buy_qty_max: Annotated[int, Field(ge=1, le=lim.item_stack_max)]
    buy_need_min: Frac
    bid_slack: Frac
    wallet_max: Zeny
    respawn_delay_ticks: Ticks
    respawn_per_tick_max: Annotated[int, Field(ge=0, le=1 << 16)]
    wallet_birth_zeny: tuple[Zeny, Zeny]
    capacity_headroom: Annotated[int, Field(ge=0, le=1 << 20)]
    utility: UtilityWeights
    talk: TalkWeights
    durations: Durations
