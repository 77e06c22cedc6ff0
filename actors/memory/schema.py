"""The memory kind's tunable rules (``[rules.memory]``) and its hard ceilings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from norn.rules.schema import Frac, Rate, Strict, Ticks

#: (NPC, character) relationships the affinity table may ever hold.
relations_rows_max = 1 << 22
#: Remembered events, all NPCs together, the ring table may ever hold.
memories_rows_max = 1 << 22

Affinity = Annotated[float, Field(ge=-1.0, le=1.0)]


class MemoryRules(Strict):
    """What NPCs remember of characters, and for how long.

    ``relations_max`` (NPC, character) rows: a full table gives the weakest relationship's
    row (|affinity| smallest, then the longest untouched) to a new pair. Each NPC keeps its
    last ``memories_per_npc_max`` events (a ring: the oldest is overwritten), all NPCs
    together at most ``memories_max`` (the world's oldest memory makes room). A talk, a
    trade and a quest move affinity by ``talk_affinity``, ``trade_affinity`` and
    ``quest_affinity``, each times ``1 + karma_weight * karma / karma_max`` of the
    character (below 0 for a character of bad enough karma: NPCs come to dislike
    wrongdoers they deal with). A shop purchase or sale is a trade with the NPC the
    character talked to last on that map, a finished quest one with the NPC it talked to
    last anywhere, within ``attribution_ticks``. Every ``decay_every_ticks`` affinity is
    multiplied by ``1 - decay_per_tick * decay_every_ticks``; a relationship whose
    |affinity| falls below ``forget_below`` is forgotten.
    """

    relations_max: Annotated[int, Field(ge=1, le=relations_rows_max)]
    memories_max: Annotated[int, Field(ge=1, le=memories_rows_max)]
    memories_per_npc_max: Annotated[int, Field(ge=1, le=1024)]
    talk_affinity: Affinity
    trade_affinity: Affinity
    quest_affinity: Affinity
    karma_weight: Annotated[float, Field(ge=0.0, le=100.0)]
    attribution_ticks: Ticks
    decay_per_tick: Rate
    decay_every_ticks: Ticks
    forget_below: Frac
