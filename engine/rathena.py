"""rAthena's protocol-v1 vocabulary: every event and action kind a map server speaks, once.

This is the one declaration of the kinds ``bridge/PROTOCOL.md`` version 1 defines (its
kind tables are generated from here): the 13 event kinds a map server sends in ``events``
batches, ``action_result`` (the ``results`` message), ``admin_hazard`` (admin commands,
never on the wire) and the 10 action kinds. Every world registers them first, in this
order, so event ids in journals and action ids stay what they always were. Order and
fields are part of the protocol: append, never reorder.

Maps travel as names on the wire and as ``map_id`` (index into the world's maps) in the
engine: the edge converts and rejects unknown names. Character id and account id are
different numbers, as in rAthena.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from norn.engine import limits
from norn.engine.kinds import (
    I8_MAX,
    INT16_MAX,
    INT32_MAX,
    ActionKind,
    EventKind,
    float_field,
    int_field,
    map_field,
    text_field,
)

LEVEL_MAX = 999  # rAthena MAX_LEVEL is at most a few hundred; 999 bounds every fork


class ResultStatus(IntEnum):
    """``status`` of an action result."""

    DONE = 0
    FAILED = 1


class ResultReason(IntEnum):
    """Why a map server failed an action (``reason`` of an action result).

    Stable: never renumbered, only appended (an engine accepts reasons it does not know).
    """

    OK = 0
    UNKNOWN_MAP = 1
    OUT_OF_BOUNDS = 2
    REWARD_CAP = 3
    NOT_HERE = 4        # character not online / NPC not on this server
    EXPIRED = 5         # arrived after its expires_tick
    ZENY_OVERFLOW = 6
    INVALID = 7         # any other validation failure
    UNSUPPORTED = 8     # the server does not implement this action kind


#: What each reason means, as PROTOCOL.md section 7 lists them.
REASON_DOCS: dict[ResultReason, str] = {
    ResultReason.OK: "done",
    ResultReason.UNKNOWN_MAP: "the map is not on this server",
    ResultReason.OUT_OF_BOUNDS: "coordinates outside the map",
    ResultReason.REWARD_CAP: "reward above the server's caps (item stack 30000, zeny cap)",
    ResultReason.NOT_HERE: "character not online here / NPC not on this server",
    ResultReason.EXPIRED: "arrived after its `expires_tick`; not executed",
    ResultReason.ZENY_OVERFLOW: "the character's zeny would exceed 2^31-1",
    ResultReason.INVALID: "any other validation failure",
    ResultReason.UNSUPPORTED: "this server does not implement the action kind",
}

#: rAthena weather mapflags that ``set_weather`` can show, and their wire codes.
WEATHER_CODES: dict[str, int] = {
    "clouds": 1,
    "clouds2": 2,
    "fog": 3,
    "snow": 4,
    "sakura": 5,
    "leaves": 6,
    "fireworks": 7,
    "rain": 8,
}

# -- fields shared by several kinds ----------------------------------------------------------
CHAR = int_field("char_id", np.uint32, 1, INT32_MAX)
ACCOUNT = int_field("account_id", np.uint32, 1, INT32_MAX)
MAP = map_field()
X = int_field("x", np.int16, 0, INT16_MAX)
Y = int_field("y", np.int16, 0, INT16_MAX)
ITEM = int_field("item_id", np.int32, 1, INT32_MAX)
AMOUNT = int_field("amount", np.int32, 1, limits.item_stack_max)
NPC = int_field("npc_id", np.int64, 0, I8_MAX)
ON = int_field("on", np.uint8, 0, 1, doc="1 on, 0 off")
INSIDE = ("map_id", "x", "y")

# -- events ----------------------------------------------------------------------------------
EVENT_KINDS: tuple[EventKind, ...] = (
    EventKind("login", (CHAR, ACCOUNT, MAP, X, Y, int_field("base_level", np.int16, 1, LEVEL_MAX)),
              "a character entered the game", inside=INSIDE),
    EventKind("logout", (CHAR, ACCOUNT), "a character left the game"),
    EventKind(
        "map_change",
        (CHAR, map_field("from_map_id"), map_field("to_map_id"), X, Y),
        "a character warped; it stands at (x, y) of `to_map`",
        inside=("to_map_id", "x", "y"),
    ),
    EventKind("player_move", (CHAR, MAP, X, Y), "a character walked", inside=INSIDE),
    EventKind(
        "mob_kill",
        (CHAR, int_field("mob_id", np.int32, 1, INT32_MAX),
         int_field("instance_id", np.int32, 0, INT32_MAX, doc="0 = not in an instance"),
         MAP, X, Y),
        "a character killed a monster", inside=INSIDE,
    ),
    EventKind("player_death", (CHAR, MAP, X, Y), "a character died", inside=INSIDE),
    EventKind(
        "level_up",
        (CHAR, int_field("base_level", np.int16, 1, LEVEL_MAX),
         int_field("job_level", np.int16, 1, LEVEL_MAX)),
        "a character levelled up",
    ),
    EventKind("npc_talk", (CHAR, int_field("npc_id", np.int64, 0, I8_MAX), text_field()),
              "a character talked to an NPC"),
    EventKind("quest_done", (CHAR, int_field("quest_id", np.int32, 1, INT32_MAX)),
              "a character finished a quest"),
    EventKind(
        "trade",
        (CHAR, int_field("partner_char_id", np.uint32, 1, INT32_MAX),
         int_field("item_id", np.int32, 0, INT32_MAX, doc="0 = zeny only"),
         int_field("amount", np.int32, 0, limits.item_stack_max),
         int_field("zeny", np.int32, 0, limits.zeny_max)),
        "two characters traded",
    ),
    EventKind(
        "vending_purchase",
        (CHAR, int_field("seller_char_id", np.uint32, 1, INT32_MAX), ITEM, AMOUNT,
         int_field("price_zeny", np.int32, 0, limits.zeny_max)),
        "a character bought from a vending shop",
    ),
    EventKind(
        "npc_shop",
        (CHAR, MAP, ITEM, AMOUNT, int_field("is_sell", np.uint8, 0, 1, doc="0 = buy")),
        "a character bought from or sold to an NPC shop",
    ),
    EventKind(
        "map_snapshot",
        (MAP, int_field("players", np.int32, 0, INT32_MAX,
                        doc="players on that map now; send periodically")),
        "how many players a map holds",
    ),
    EventKind(
        "action_result",
        (int_field("action_id", np.int64, 0, I8_MAX),
         int_field("status", np.uint8, 0, 1, codes={int(s): s.name.lower() for s in ResultStatus},
                   closed=True),
         int_field("reason", np.int16, 0, INT16_MAX,
                   codes={int(r): r.name.lower() for r in ResultReason})),
        "the game server's answer to a world action (section 7)",
        arrives="results",
    ),
    EventKind(
        "admin_hazard",
        (MAP, int_field("hazard_type", np.int16), float_field("intensity", np.float32)),
        "an admin command: start, raise or end a hazard (journaled like events)",
        arrives="none",
    ),
)

# -- actions ---------------------------------------------------------------------------------
_SAY = text_field(lo=1)
ACTION_KINDS: tuple[ActionKind, ...] = (
    ActionKind("spawn_npc", (NPC, MAP, X, Y, int_field("sprite", np.int16, 0, INT16_MAX)),
               "show an NPC at a walkable cell", cell=INSIDE, log=("npc_id",)),
    ActionKind("despawn_npc", (NPC,), "remove an NPC", log=("npc_id",)),
    ActionKind("move_npc", (NPC, MAP, X, Y), "walk an NPC to a walkable cell",
               cell=INSIDE, log=("npc_id",)),
    ActionKind("npc_say", (NPC, _SAY), "an NPC says a line", log=("npc_id",)),
    ActionKind("broadcast", (map_field(every=True, doc="-1 = every map"), _SAY),
               "announce a line on a map or everywhere"),
    ActionKind(
        "set_price",
        (int_field("market_id", np.int32, 0, INT32_MAX), MAP, ITEM,
         int_field("price_zeny", np.int32, 1, limits.zeny_max)),
        "set an NPC shop's price", log=("market_id", "price_zeny"),
    ),
    ActionKind(
        "set_weather",
        (MAP, int_field("weather", np.int16, codes={v: k for k, v in WEATHER_CODES.items()},
                        closed=True), ON),
        "show or end a weather mapflag",
    ),
    ActionKind(
        "set_hazard",
        (MAP, int_field("hazard_type", np.int16, 0, INT16_MAX),
         float_field("intensity", np.float32, 0.0), ON),
        "show or end a hazard on a map",
    ),
    ActionKind("start_quest", (CHAR, int_field("quest_id", np.int32, 1, INT32_MAX)),
               "offer a quest to a character"),
    ActionKind(
        "give_reward",
        (CHAR, int_field("item_id", np.int32, 0, INT32_MAX, doc="0 = zeny only"),
         int_field("amount", np.int32, 0, limits.item_stack_max),
         int_field("zeny", np.int32, 0, limits.zeny_max)),
        "pay a character items and zeny",
    ),
)

EVENT_NAMES: tuple[str, ...] = tuple(k.name for k in EVENT_KINDS)
ACTION_NAMES: tuple[str, ...] = tuple(k.name for k in ACTION_KINDS)
RESULT_KIND = "action_result"
