"""The boss kind's own wire vocabulary: one action to spawn a monster, one to remove it, and
the event a map server sends when a boss dies. Declared once; the engine derives columns,
wire schema, edge checks and PROTOCOL.md's rows from these."""

from __future__ import annotations

import numpy as np

from norn.engine.kinds import INT32_MAX, ActionKind, EventKind, int_field
from norn.engine.rathena import CHAR, INSIDE, MAP, X, Y

SPAWN_ID = int_field("spawn_id", np.int32, 1, INT32_MAX,
                     doc="Norn's id for this spawn; mvp_kill reports it back")
MOB_ID = int_field("mob_id", np.int32, 1, INT32_MAX, doc="rAthena mob_db id")

SPAWN_MONSTER = ActionKind(
    "spawn_monster",
    (SPAWN_ID, MOB_ID, MAP, X, Y, int_field("amount", np.int16, 1, 100)),
    "spawn monsters at a walkable cell (rAthena: mob_once_spawn, with an event label that "
    "reports their death as mvp_kill with this spawn_id)",
    cell=INSIDE, log=("spawn_id", "mob_id"),
)
DESPAWN_MONSTER = ActionKind(
    "despawn_monster", (SPAWN_ID, MAP),
    "remove the monsters of a spawn nobody killed (rAthena: killmonster on the spawn's "
    "event label, which ends in mob_delete)",
    log=("spawn_id",),
)
MVP_KILL = EventKind(
    "mvp_kill",
    (CHAR, MOB_ID,
     int_field("spawn_id", np.int32, 0, INT32_MAX,
               doc="the spawn_monster id; 0 = a monster Norn did not spawn"),
     MAP, X, Y),
    "a character killed a boss (rAthena: mob_dead with an MVP, mvp_sd the character; the "
    "spawn's event label carries spawn_id)",
    inside=INSIDE,
)
