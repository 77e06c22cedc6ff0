"""The world events kind's wire vocabulary: map flags as an action. Declared once; columns,
wire schema, emit checks and PROTOCOL.md's row derive from it."""

from __future__ import annotations

import numpy as np

from norn.engine.kinds import ActionKind, int_field
from norn.engine.rathena import MAP, ON

#: rAthena map flags a world event may set (``enum e_mapflag``: MF_PVP, MF_GVG, ...).
MAPFLAG_CODES: dict[str, int] = {
    "pvp": 1,
    "gvg": 2,
    "noteleport": 3,
    "nowarp": 4,
    "nopenalty": 5,
    "bexp": 6,
    "jexp": 7,
    "nomemo": 8,
    "nosave": 9,
}

SET_MAPFLAG = ActionKind(
    "set_mapflag",
    (MAP,
     int_field("flag", np.int16, codes={v: k for k, v in MAPFLAG_CODES.items()}, closed=True),
     int_field("value", np.int32, 0, 100_000, doc="bexp and jexp: the rate in percent; else 0"),
     ON),
    "set or remove a map flag (rAthena: map_setmapflag, the setmapflag and removemapflag "
    "script commands)",
)
