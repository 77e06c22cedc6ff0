"""Game events as the engine sees them: one fixed column schema per event kind.

rAthena map servers send these through the bridge (see ``bridge/PROTOCOL.md``); the
synthetic player generator produces the same batches. Maps travel as names on the wire and
as ``map_id`` (index in the scenario's map list) here: the edge converts and rejects
unknown names. Character id and account id are different numbers, as in rAthena.
"""

from __future__ import annotations

import numpy as np

from norn.engine import limits

TEXT_DTYPE = np.dtype(f"S{limits.text_bytes_max}")

_CHAR = ("char_id", np.uint32)
_ACCOUNT = ("account_id", np.uint32)
_MAP = ("map_id", np.int16)
_X = ("x", np.int16)
_Y = ("y", np.int16)

#: kind -> ordered (field, dtype) pairs. The order is the wire's column order too.
EVENT_SCHEMAS: dict[str, tuple[tuple[str, np.dtype], ...]] = {
    "login": (_CHAR, _ACCOUNT, _MAP, _X, _Y, ("base_level", np.int16)),
    "logout": (_CHAR, _ACCOUNT),
    "map_change": (_CHAR, ("from_map_id", np.int16), ("to_map_id", np.int16), _X, _Y),
    "player_move": (_CHAR, _MAP, _X, _Y),
    "mob_kill": (_CHAR, ("mob_id", np.int32), ("instance_id", np.int32), _MAP, _X, _Y),
    "player_death": (_CHAR, _MAP, _X, _Y),
    "level_up": (_CHAR, ("base_level", np.int16), ("job_level", np.int16)),
    "npc_talk": (_CHAR, ("npc_id", np.int64), ("text", TEXT_DTYPE)),
    "quest_done": (_CHAR, ("quest_id", np.int32)),
    "trade": (
        _CHAR,
        ("partner_char_id", np.uint32),
        ("item_id", np.int32),
        ("amount", np.int32),
        ("zeny", np.int32),
    ),
    "vending_purchase": (
        _CHAR,
        ("seller_char_id", np.uint32),
        ("item_id", np.int32),
        ("amount", np.int32),
        ("price_zeny", np.int32),
    ),
    "npc_shop": (
        _CHAR,
        _MAP,
        ("item_id", np.int32),
        ("amount", np.int32),
        ("is_sell", np.uint8),
    ),
    "map_snapshot": (_MAP, ("players", np.int32)),
    # The game server's answer to a world action: status 0 done, 1 failed (reason code).
    "action_result": (("action_id", np.int64), ("status", np.uint8), ("reason", np.int16)),
    # Admin commands travel through the same seam so they are journaled like events.
    "admin_hazard": (_MAP, ("hazard_type", np.int16), ("intensity", np.float32)),
}

EVENT_KINDS: tuple[str, ...] = tuple(EVENT_SCHEMAS)
EVENT_KIND_IDS: dict[str, int] = {k: i for i, k in enumerate(EVENT_KINDS)}


def empty_columns(kind: str) -> dict[str, np.ndarray]:
    """Zero-length columns of ``kind``: what a system reads when no such event came."""
    return {name: np.empty(0, dtype=dt) for name, dt in EVENT_SCHEMAS[kind]}
