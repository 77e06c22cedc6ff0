"""Bridge wire protocol, version 1: message layouts, wire schemas, codes, msgpack envelope.

``bridge/PROTOCOL.md`` is the normative document; this module is its executable form and
the golden vectors in ``bridge/vectors/`` are generated from it. Every frame is one msgpack
map whose first key ``t`` names the message. Encoders write keys in the documented order
with msgpack's smallest encodings (canonical form) so a decoded vector re-encodes to the
same bytes; decoders accept any key order.

Events travel either as rows (one msgpack array per event) or as columns (one
little-endian binary array per field). Columns are the hot format: decoding is one
``np.frombuffer`` per field, independent of the number of events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from itertools import chain
from typing import Any, Literal

import msgpack
import numpy as np

from norn.engine.kinds import Field, Kinds, Schema
from norn.engine.rathena import LEVEL_MAX as LEVEL_MAX
from norn.engine.rathena import RESULT_KIND as RESULT_KIND
from norn.engine.rathena import ResultReason as ResultReason
from norn.engine.rathena import ResultStatus as ResultStatus

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Message types (the ``t`` key).
HELLO = "hello"
WELCOME = "welcome"
EVENTS = "events"
RESULTS = "results"
ACK = "ack"
ACTIONS = "actions"
HB = "hb"
ERROR = "error"
BYE = "bye"
PROGRESS = "progress"
SYNC = "sync"
CLIENT_TYPES = (HELLO, EVENTS, RESULTS, HB, BYE, PROGRESS)
SERVER_TYPES = (WELCOME, ACK, ACTIONS, HB, ERROR, SYNC)

#: Capabilities the engine announces in ``welcome``.
SERVER_CAPS = ("columns", "rows", "results", "actions", "lockstep")
#: The capability a map server names in ``hello`` to get a session in lockstep (section 14).
LOCKSTEP_CAP = "lockstep"
#: The capability a map server names in ``hello`` to get the join sync (section 16); an
#: engine that can send one announces it in ``welcome.caps`` too.
SYNC_CAP = "sync"

SERVER_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # whole string: use fullmatch
SEQ_MAX = 2**63 - 1
#: Largest tick a batch may be stamped with; ``progress`` may name up to ``SEQ_MAX`` (done).
TICK_MAX = 2**62
INT32_MAX = 2**31 - 1
INT16_MAX = 2**15 - 1
#: Containers (maps and arrays) a client frame may nest: the message, an array or map in
#: it (``rows``, ``cols``, ``maps``), a row, and one container as a row's value (that event
#: is then rejected on its own, like any value of the wrong type). Deeper frames are
#: ``malformed``: nothing the protocol defines needs them, and code that walks values
#: (repr, re-encoding a dead letter) must never meet a value a thousand levels deep.
FRAME_NESTING_MAX = 4


class ErrorCode(IntEnum):
    """Codes of the ``error`` message. Stable: never renumbered, only appended."""

    MALFORMED = 1          # not msgpack, not a map, or no string ``t``
    UNKNOWN_TYPE = 2       # ``t`` names no client message
    BAD_FIELD = 3          # an envelope field is missing, of the wrong type or out of range
    FRAME_TOO_LARGE = 4    # frame longer than frame_bytes_max
    VERSION_UNSUPPORTED = 5
    HELLO_REQUIRED = 6     # a message other than hello from a peer without a session
    UNKNOWN_KIND = 7       # event kind not accepted from map servers
    BATCH_TOO_LARGE = 8    # more than events_per_batch_max events
    INVALID_EVENTS = 9     # some events were rejected (details listed); the rest applied
    SEQ_GAP = 10           # seq is not the next expected; resend from expected_seq
    WINDOW_EXCEEDED = 11   # seq beyond acked + credit; resend from expected_seq later
    TOO_MANY_SERVERS = 12  # servers_max connected (or server_records_max known)
    SUPERSEDED = 13        # another connection said hello with this server id
    UNKNOWN_MAP = 14       # hello names a map the world does not have
    TICK_ORDER = 15        # a tick stamp below an earlier one or within declared progress
    TICK_AHEAD = 16        # a tick stamp beyond the engine's tick + stamp_ahead_ticks_max
    OVERLOADED = 17        # frame dropped unread: this connection has too much waiting


# ``ResultStatus`` and ``ResultReason`` are declared with the ``action_result`` kind in
# ``engine/rathena.py`` and re-exported here (``proto.ResultReason``).


class ProtocolError(Exception):
    """A frame-level problem: answered with one ``error`` frame and dead-lettered."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        seq: int | None = None,
        expected_seq: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.seq = seq
        self.expected_seq = expected_seq


# -- wire schemas ------------------------------------------------------------------------
@dataclass(frozen=True)
class WireField:
    """One field of an event or action on the wire, derived from its kind's ``Field``.

    ``kind`` is ``int`` (a little-endian integer column of ``dtype``, range ``lo..hi``),
    ``float`` (little-endian IEEE 754 column), ``map`` (``<i2`` index into the frame's
    ``maps`` dictionary of names; -1 = every map where ``lo`` is -1, actions only) or
    ``text`` (UTF-8; columns ``<name>_len`` ``<u2`` plus ``<name>`` bytes, ``lo..hi`` bytes).
    ``codes``: the only valid values when not empty (a closed set of codes).
    """

    name: str
    engine: str
    kind: Literal["int", "float", "map", "text"]
    dtype: np.dtype
    lo: int = 0
    hi: int = 0
    codes: tuple[int, ...] = ()

    @classmethod
    def of(cls, f: Field) -> WireField:
        codes = tuple(c for c, _ in f.codes) if f.closed else ()
        return cls(f.wire, f.name, f.kind, f.wire_dtype, f.lo, f.hi, codes)


@dataclass(frozen=True)
class WireSchema:
    """Everything the edge needs to know about a world's kinds, derived from ``Kinds``.

    ``events``: kinds a map server may send in ``events`` batches, in wire field order (=
    engine column order); ``result``: the ``results`` message's fields; ``coords``: per
    event kind, the (map, x, y) wire fields whose cell must lie inside that map;
    ``actions``: action kinds in kind order, ``action_id`` first; ``engine``: every event
    kind's engine schema (for empty placeholder batches).
    """

    events: dict[str, tuple[WireField, ...]]
    result: tuple[WireField, ...]
    result_kind: str
    coords: dict[str, tuple[str, str, str]]
    actions: dict[str, tuple[WireField, ...]]
    engine: dict[str, Schema]

    @classmethod
    def of(cls, kinds: Kinds) -> WireSchema:
        events, coords, result, result_kind = {}, {}, (), RESULT_KIND
        for name, k in kinds.events.items():
            fields = tuple(WireField.of(f) for f in k.fields)
            if k.arrives == "events":
                events[name] = fields
            elif k.arrives == "results":
                result, result_kind = fields, name
            if k.inside is not None and k.arrives == "events":
                wire = {f.name: f.wire for f in k.fields}
                coords[name] = tuple(wire[n] for n in k.inside)  # type: ignore[assignment]
        actions = {n: tuple(WireField.of(f) for f in k.wire_fields)
                   for n, k in kinds.actions.items()}
        return cls(events, result, result_kind, coords, actions, dict(kinds.event_schemas))


#: Protocol v1 (``engine/rathena.py``): what every world speaks; a world with its own kinds
#: has its own ``WireSchema`` (``bridge.view.WorldView.wire``).
WIRE_V1 = WireSchema.of(Kinds.protocol_v1())
#: Event kinds a map server may send, in wire field order (= engine column order).
WIRE_EVENT_SCHEMAS: dict[str, tuple[WireField, ...]] = WIRE_V1.events
#: Columns of the ``results`` message; it becomes an engine event of kind ``action_result``.
WIRE_RESULT_SCHEMA: tuple[WireField, ...] = WIRE_V1.result
#: (map field, x field, y field): events whose coordinates must lie inside that map.
WIRE_EVENT_COORDS: dict[str, tuple[str, str, str]] = WIRE_V1.coords
#: Action kinds the engine sends, in wire field order (``action_id`` first).
WIRE_ACTION_SCHEMAS: dict[str, tuple[WireField, ...]] = WIRE_V1.actions

def wire_columns(fields: tuple[WireField, ...]) -> list[str]:
    """The column keys of a columnar body, in canonical order (text adds ``<name>_len``)."""
    out: list[str] = []
    for f in fields:
        if f.kind == "text":
            out += [f"{f.name}_len", f.name]
        else:
            out.append(f.name)
    return out


# -- msgpack envelope --------------------------------------------------------------------
def pack(msg: dict[str, Any]) -> bytes:
    """Canonical msgpack: keys in insertion (documented) order, bin for bytes, str for str."""
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes | memoryview, frame_bytes_max: int) -> dict[str, Any]:
    """Decode one frame's envelope. Raises ``ProtocolError`` (never anything else).

    msgpack's own bounds are set from the frame size, so a declared length larger than
    the frame fails before any allocation.
    """
    n = len(data)
    if n > frame_bytes_max:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE, f"frame of {n} bytes > frame_bytes_max={frame_bytes_max}"
        )
    try:
        msg = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types; all mean "malformed"
        raise ProtocolError(ErrorCode.MALFORMED, f"not a msgpack frame: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"frame is {describe(msg)}, not a map")
    depth = nesting(msg, FRAME_NESTING_MAX)
    if depth > FRAME_NESTING_MAX:
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"frame nests containers more than FRAME_NESTING_MAX={FRAME_NESTING_MAX} deep",
        )
    t = msg.get("t")
    if not isinstance(t, str):
        raise ProtocolError(ErrorCode.MALFORMED, "frame has no string 't' (message type)")
    return msg


def nesting(value: Any, depth_max: int) -> int:
    """How deep ``value`` nests lists and dicts, counted up to ``depth_max + 1`` at most.

    One level at a time, with the type scan in C (``set(map(type, ...))``), so a batch of
    65,536 rows costs one pass over its values and a hostile frame stops one level past
    the bound, whatever it declares.
    """
    level = [value] if type(value) in (list, dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > depth_max:
            return depth
        items = list(chain.from_iterable(c.values() if type(c) is dict else c for c in level))
        kinds = set(map(type, items))
        if list not in kinds and dict not in kinds:
            return depth
        level = [v for v in items if type(v) is list or type(v) is dict]
    return depth


def describe(value: Any, width: int = 60) -> str:
    """A short, safe description of an untrusted value for an error message.

    Never recurses into containers (a frame may hold a list nested a thousand deep) and
    never formats more than ``width`` characters of a string or bytes.
    """
    t = type(value)
    if value is None or t is bool or t is int or t is float:
        return repr(value)[:width]
    if t is str:
        return repr(value[:width])
    if t is bytes:
        return f"{len(value)} bytes"
    if t is list:
        return f"an array of {len(value)}"
    if t is dict:
        return f"a map of {len(value)}"
    return t.__name__


def get_int(msg: dict[str, Any], key: str, lo: int, hi: int, *, seq: int | None = None) -> int:
    """A required integer field within ``lo..hi`` (bools are not integers)."""
    v = msg.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{key} must be an integer in [{lo}, {hi}], got {describe(v)}",
            field=key, seq=seq,
        )
    return v


def get_str_list(
    msg: dict[str, Any], key: str, n_max: int, len_max: int, *, required: bool = False
) -> list[str]:
    """A list of short strings; absent is empty unless ``required``."""
    if required and key not in msg:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{key} is required (an array of strings)",
                            field=key)
    v = msg.get(key, [])
    if not isinstance(v, list) or len(v) > n_max:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{key} must be an array of at most {n_max} strings, got {describe(v)}", field=key
        )
    for s in v:
        if not isinstance(s, str) or not 0 < len(s.encode()) <= len_max:
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"{key}: every entry must be a string of 1..{len_max} bytes, got {describe(s)}",
                field=key,
            )
    return v


# -- encoders (canonical key order = PROTOCOL.md order) ------------------------------------
def encode_hello(server_id: str, *, caps: tuple[str, ...] = ("columns", "rows"),
                 maps: tuple[str, ...] | list[str] = ()) -> bytes:
    return pack({"t": HELLO, "v": PROTOCOL_VERSION, "server_id": server_id,
                 "caps": list(caps), "maps": list(maps)})


def encode_welcome(
    *,
    server_id: str,
    acked: int,
    next_seq: int,
    credit: int,
    tick: int,
    heartbeat_ms: int,
    peer_timeout_ms: int,
    limits_: dict[str, int],
    maps: list[tuple[str, int, int]],
    reward_zeny_max: int,
    reward_amount_max: int,
    caps: tuple[str, ...] = SERVER_CAPS,
) -> bytes:
    return pack({
        "t": WELCOME, "v": PROTOCOL_VERSION, "server_id": server_id, "acked": acked,
        "next_seq": next_seq, "credit": credit, "tick": tick, "heartbeat_ms": heartbeat_ms,
        "peer_timeout_ms": peer_timeout_ms, "caps": list(caps), "limits": limits_,
        "maps": [[n, w, h] for n, w, h in maps],
        "reward": {"zeny_max": reward_zeny_max, "amount_max": reward_amount_max},
    })


def encode_ack(seq: int, credit: int) -> bytes:
    return pack({"t": ACK, "seq": seq, "credit": credit})


def encode_server_hb(tick: int, acked: int) -> bytes:
    return pack({"t": HB, "tick": tick, "acked": acked})


def encode_client_hb(tick: int) -> bytes:
    return pack({"t": HB, "tick": tick})


def encode_progress(tick: int, seq: int) -> bytes:
    return pack({"t": PROGRESS, "tick": tick, "seq": seq})


def encode_bye() -> bytes:
    return pack({"t": BYE})


def encode_error(
    code: ErrorCode,
    message: str,
    *,
    seq: int | None = None,
    field: str | None = None,
    expected_seq: int | None = None,
    invalid: int = 0,
    events: list[list[Any]] | None = None,
) -> bytes:
    return pack({
        "t": ERROR, "code": int(code), "name": code.name.lower(), "message": message[:1024],
        "seq": seq, "field": field, "expected_seq": expected_seq, "invalid": invalid,
        "events": events or [],
    })


def error_from(exc: ProtocolError) -> bytes:
    return encode_error(exc.code, exc.message, seq=exc.seq, field=exc.field,
                        expected_seq=exc.expected_seq)


def encode_tick_ahead(seq: int, stamp: int, tick: int, ahead_max: int) -> bytes:
    """``tick_ahead``: the batch is not consumed; the server resends it from ``seq`` later."""
    return encode_error(
        ErrorCode.TICK_AHEAD,
        f"seq {seq} stamped tick {stamp} > engine tick {tick} + stamp_ahead_ticks_max "
        f"{ahead_max}; not consumed: resend from {seq} once the engine's tick has advanced",
        seq=seq, field="tick", expected_seq=seq)


def encode_overloaded(frames: int, nbytes: int, frames_max: int, bytes_max: int) -> bytes:
    """``overloaded``: a frame dropped unread (so its seq, if any, is not consumed)."""
    return encode_error(
        ErrorCode.OVERLOADED,
        f"frame dropped unread: {frames} frames ({nbytes} bytes) of this connection wait "
        f"(peer_inbound_frames_max={frames_max}, peer_inbound_bytes_max={bytes_max}); "
        "resend what is not acked after the next ack")



# -- the join sync (section 16) ----------------------------------------------------------------
#: Action kinds whose effect is state a map server keeps on its maps: the join sync carries
#: that state, and an action of one of these kinds from a tick <= the sync's ``tick`` is
#: already reflected by it (answered ``done`` without being executed again).
MIRRORED_KINDS = (
    "spawn_npc", "despawn_npc", "move_npc", "set_price", "set_weather", "set_hazard",
    "spawn_monster", "despawn_monster", "mark_dig_site", "set_mapflag",
)
#: Action kinds an NPC performs (a line said): one from a tick <= a sync's ``tick`` whose
#: NPC that sync does not show is superseded by it (the NPC was gone by then; a server
#: that joins later gets the lines of recent ticks, and had no NPC to say them).
SPOKEN_KINDS = ("npc_say",)
#: rAthena's NAME_LENGTH (24) less the NUL: an NPC's shown name.
NPC_NAME_BYTES_MAX = 23


def _sync_extra() -> dict[str, tuple[WireField, ...]]:
    from norn.engine.kinds import int_field

    name = Field("name", np.dtype("S24"), "text", "name", 1, NPC_NAME_BYTES_MAX,
                 "the NPC's shown name (its faction's), at most 23 bytes")
    stock = int_field("stock", np.int32, 0, INT32_MAX, doc="units the shop holds now")
    return {"spawn_npc": (WireField.of(name),), "set_price": (WireField.of(stock),)}


#: Columns a sync row has beyond its action kind's fields (after them, in this order).
SYNC_EXTRA: dict[str, tuple[WireField, ...]] = _sync_extra()


def sync_fields(schema: WireSchema, kind: str) -> tuple[WireField, ...]:
    """A sync row's wire fields: its action kind's, less ``action_id``, then the extras."""
    return tuple(f for f in schema.actions[kind] if f.name != "action_id") + SYNC_EXTRA.get(
        kind, ())


def action_ticks(action_ids: np.ndarray) -> np.ndarray:
    """The tick that emitted each action (``action_id >> 24``)."""
    return np.asarray(action_ids, np.int64) >> 24


def reflected_by_sync(kind: str, cols: dict[str, np.ndarray], tick: int,
                      npcs: np.ndarray) -> np.ndarray | None:
    """Which actions of ``kind`` a join sync of ``tick`` showing the NPCs ``npcs`` (sorted
    handles) already reflects, to be answered done without executing them (section 16):
    a mirrored kind of a tick <= ``tick``, or a line of such a tick by an NPC the sync does
    not show. None: the kind is never reflected."""
    if kind in MIRRORED_KINDS:
        return action_ticks(cols["action_id"]) <= tick
    if kind in SPOKEN_KINDS:
        return (action_ticks(cols["action_id"]) <= tick) & ~np.isin(cols["npc_id"], npcs)
    return None


def take_reflected(kinds: dict[str, dict[str, np.ndarray]], tick: int,
                   npcs: np.ndarray) -> np.ndarray:
    """Take out of ``kinds`` (a frame's actions by kind, changed in place) what a join sync
    of ``tick`` showing ``npcs`` already reflects (``reflected_by_sync``); their ids."""
    out = [np.empty(0, np.int64)]
    for kind in list(kinds):
        cols = kinds[kind]
        old = reflected_by_sync(kind, cols, tick, npcs)
        if old is not None and old.any():
            out.append(cols["action_id"][old].astype(np.int64))
            if old.all():
                del kinds[kind]
            else:
                kinds[kind] = {k: v[~old] for k, v in cols.items()}
    return np.concatenate(out)
