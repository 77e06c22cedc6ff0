"""The treasure kind's wire vocabulary: what the game sends when a character digs, and the
action that shows (or removes) a dig site. Declared once; columns, wire schema, edge checks
and PROTOCOL.md's rows derive from these."""

from __future__ import annotations

import numpy as np

from norn.engine.kinds import INT32_MAX, ActionKind, EventKind, int_field
from norn.engine.rathena import CHAR, INSIDE, MAP, ON, X, Y

DIG = EventKind(
    "dig", (CHAR, MAP, X, Y),
    "a character dug at a cell (rAthena: the script of a shovel item or a dig skill, "
    "reporting the character's cell)",
    inside=INSIDE,
)
MARK_DIG_SITE = ActionKind(
    "mark_dig_site",
    (int_field("site_id", np.int32, 1, INT32_MAX, doc="Norn's id for the site"), MAP, X, Y, ON),
    "show or remove a dig site's mark (rAthena: clif_viewpoint, the `viewpoint` script "
    "command, for the players on the map)",
    cell=INSIDE, log=("site_id",),
)
