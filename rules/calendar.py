"""The game's calendar as event kinds: the daily reset and the War of Emperium.

A map server tells the world when its day turns over and when the War of Emperium starts
and ends; several kinds react (quests renew their daily limits, treasure is buried anew,
world events may start a festival, war bosses come and go with the siege). The kinds are
declared once, here, because more than one actor kind consumes them and kinds never import
each other; each consumer registers the same declaration (``World.consumes``).
"""

from __future__ import annotations

import numpy as np

from norn.engine.kinds import INT32_MAX, EventKind, int_field

#: rAthena's War of Emperium editions: first (``OnAgitStart``), second (``OnAgitStart2``),
#: training (``OnAgitStart3``).
WOE_EDITIONS: dict[int, str] = {1: "fe", 2: "se", 3: "te"}

_EDITION = int_field("edition", np.uint8, codes=WOE_EDITIONS, closed=True)

DAILY_RESET = EventKind(
    "daily_reset",
    (int_field("day", np.int32, 0, INT32_MAX, doc="the server's day number"),),
    "the game's day turned over (rAthena: an `OnClock0000` NPC label, where daily limits "
    "reset)",
)
WOE_START = EventKind(
    "woe_start", (_EDITION,),
    "the War of Emperium began (rAthena: the `OnAgitStart` labels, run by guild_agit_start)",
)
WOE_END = EventKind(
    "woe_end", (_EDITION,),
    "the War of Emperium ended (rAthena: the `OnAgitEnd` labels, run by guild_agit_end)",
)

CALENDAR_KINDS: tuple[EventKind, ...] = (DAILY_RESET, WOE_START, WOE_END)
