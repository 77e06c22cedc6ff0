"""Structure-aware fuzzing of the bridge: a seeded frame generator, a model, a socket driver.

Written from ``bridge/PROTOCOL.md``, not from the server's code. Three parts:

- **The generator** ``frame(seed, index, spec)`` is a pure function: the same seed, index
  and spec (the engine's limits and maps) always give the same ``Frame``: its shape name,
  its ZeroMQ message parts and what the engine must answer (``expect``). Every setting of
  a run (lanes, cycle length, family weights, the mix of sessions) derives from the one
  seed (TigerBeetle's VOPR style), so a failure is reproduced from its seed and index
  (``python -m norn.bridge.fuzz show SEED INDEX``).
- **The model** ``model(parts, state, spec)`` is the protocol document as code: for one
  frame and the sending session's state, the acceptable answers (error codes, welcome,
  silence), whether the frame consumes a seq and how many events it brings. Where the
  document does not decide (unknown keys, unknown capability names, a missing ``maps``
  dictionary in columns), it lists every reasonable answer; each such case is marked
  ``ambiguous`` in the code. Replies to frames refused on arrival (several parts, too
  large) may overtake the replies to their connection's older frames.
- **The driver** ``run_fuzz(target, seed, frames)`` sends the frames over real DEALER
  sockets (thousands of routing ids and server ids), interleaved with a well-behaved
  reference client, and after every round checks that (a) the bridge thread is alive,
  (b) every frame got exactly the answers the model allows and the server's counters
  (frames in, errors, rejections, dead letters, duplicates, gaps ...) moved by exactly
  what was sent, (c) the good client's events are journaled exactly once, (d) the server's
  RSS stays bounded, (e) every batch that reached the input queue is within the wire
  schemas' bounds. A crash (the thread dying, or an exception the engine contained and
  counted in ``internal_errors``) is isolated to one frame by replaying the round on a
  fresh engine (``python -m norn.bridge.fuzz replay SEED INDEX``).

How a stream stays predictable: frames go out in rounds of ``lanes * cycle`` frames;
index ``i`` belongs to lane ``i % lanes`` at position ``(i // lanes) % cycle`` of round
``i // (lanes * cycle)``. Each (lane, round) is one *cycle* with a mode: ``post`` (a
session on a reused server id that consumes exactly ``consume`` seqs per cycle, so its
seq state is known from the index alone), ``pre`` (no session: frames from fresh routing
ids), ``ids`` (many fresh server ids, one short session each) and ``wild`` (a fresh server
id whose stamps and progress may break lockstep order). Within a cycle the generator
runs the model over the earlier positions, so a frame's expectation follows from the
documented effect of the frames before it. The driver waits for the engine at each
round's end (every frame counted in, a fence answered), so rounds never overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import random
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from norn.bridge import protocol as proto
from norn.bridge.config import BridgeConfig

#: Containers a client frame may nest, if this protocol version bounds it (else None).
NESTING_MAX: int | None = getattr(proto, "FRAME_NESTING_MAX", None)
#: msgpack-python's C unpacker refuses deeper frames (the top map counts as one level).
MSGPACK_DEPTH_MAX = 1024
#: Codes whose frame is refused as a whole: one error, one dead letter, ``frames_rejected``.
REJECT_CODES = frozenset({1, 2, 3, 4, 5, 7, 8, 12, 14})
#: server_id as PROTOCOL.md section 3 writes it (the whole string).
SERVER_ID_DOC = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAP_NAME_WIRE_BYTES_MAX = 64
CAPS_MAX = 64
#: A stamp at most this far ahead is safe under any engine-side ``stamp ahead`` bound.
STAMP_SAFE_MAX = 1000

FAMILIES = (
    "valid", "wrong_type", "missing", "extra_key", "deep", "huge_len", "truncated",
    "random", "multipart", "size", "col_len", "text", "maps_dict", "seq", "stamp",
    "invalid_events", "batch", "type", "hello", "progress", "hb", "dup_key",
)
#: Nesting depths tried; around 1000 is where Python's recursion limit used to bite.
DEPTHS = (1, 2, 3, 4, 8, 32, 100, 500, 511, 512, 900, 960, 980, 990, 1000, 1010, 1020, 1022,
          1023, 1024, 1100, 2000)
WRONG: tuple[Any, ...] = (
    None, True, False, 0.5, float("nan"), -1, -(2**63), 2**64 - 1, 2**63, "", "x", "ünï",
    b"", b"\x00", [], [1], {}, {"a": 1},
)
HUGE_HEADERS = (
    b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff", b"\xda\xff\xff", b"\xc5\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01",
)
KINDS = tuple(proto.WIRE_EVENT_SCHEMAS)


# -- encoding ------------------------------------------------------------------------------
class Raw:
    """Bytes placed verbatim in an encoded frame (a broken header, an invalid UTF-8 str)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Deep:
    """``value`` nested ``depth`` levels deep in arrays (or in maps keyed ``"k"``)."""

    __slots__ = ("depth", "maps", "value")

    def __init__(self, value: Any, depth: int, maps: bool = False) -> None:
        self.value, self.depth, self.maps = value, depth, maps


def _enc(o: Any, out: bytearray) -> None:
    t = type(o)
    if t is dict:
        n = len(o)
        out += bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
        for k, v in o.items():
            _enc(k, out)
            _enc(v, out)
    elif t is list:
        n = len(o)
        out += bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        for v in o:
            _enc(v, out)
    elif t is Raw:
        out += o.data
    elif t is Deep:
        out += (b"\x81\xa1k" if o.maps else b"\x91") * o.depth
        _enc(o.value, out)
    else:
        out += msgpack.packb(o, use_bin_type=True)


def encode(o: Any) -> bytes:
    """msgpack of ``o`` (maps keep insertion order), with ``Raw`` and ``Deep`` parts."""
    out = bytearray()
    _enc(o, out)
    return bytes(out)


def nesting(value: Any, cap: int = 4096) -> int:
    """Container depth of a decoded value (the top map counts), without recursion."""
    level = [value] if type(value) in (list, dict) else []
    depth = 0
    while level and depth < cap:
        depth += 1
        nxt = []
        for c in level:
            for v in c.values() if type(c) is dict else c:
                if type(v) is list or type(v) is dict:
                    nxt.append(v)
        level = nxt
    return depth


# -- what the generator knows of the engine ---------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """The engine's limits and world maps: the generator's only input besides the seed."""

    map_names: tuple[str, ...]
    map_sizes: tuple[tuple[int, int], ...]
    frame_bytes_max: int
    events_per_batch_max: int
    text_bytes_max: int
    map_dict_max: int
    hello_maps_max: int
    credit: int
    servers_max: int
    server_records_max: int
    stamp_ahead: int | None = None   # stamp_ahead_ticks_max, if this engine bounds stamps
    engine_tick: int = 0             # the engine's tick (the fuzz driver never commits one)
    nesting_max: int | None = NESTING_MAX
    exclude: frozenset[str] = frozenset()

    @classmethod
    def from_server(cls, config: BridgeConfig, view: Any, exclude: Any = ()) -> Spec:
        return cls(
            tuple(view.map_names), tuple(tuple(s) for s in view.map_sizes),
            config.frame_bytes_max, config.events_per_batch_max, config.text_bytes_max,
            config.map_dict_max, config.hello_maps_max, config.unacked_batches_max,
            config.servers_max, config.server_records_max,
            stamp_ahead=getattr(config, "stamp_ahead_ticks_max", None),
            exclude=frozenset(exclude),
        )

    @classmethod
    def from_welcome(cls, welcome: dict[str, Any], exclude: Any = (), servers_max: int = 16,
                     server_records_max: int = 64) -> Spec:
        lim = welcome["limits"]
        return cls(
            tuple(m[0] for m in welcome["maps"]), tuple((m[1], m[2]) for m in welcome["maps"]),
            lim["frame_bytes_max"], lim["events_per_batch_max"], lim["text_bytes_max"],
            lim["map_dict_max"], 4096, welcome["credit"], servers_max, server_records_max,
            engine_tick=welcome["tick"], exclude=frozenset(exclude),
        )

    def excluded(self, *names: str) -> bool:
        return any(n in self.exclude for n in names)


def fuzz_config(**overrides: Any) -> BridgeConfig:
    """A bridge config for fuzzing: small frames (so the size bounds are cheap to hit),
    room for thousands of server ids, sessions that never time out within a round, and
    dead letters counted without bound (kept in memory only as a short tail)."""
    base = {
        "frame_bytes_max": 8192, "events_per_batch_max": 256, "unacked_batches_max": 1024,
        "servers_max": 256, "server_records_max": 8192, "map_dict_max": 64,
        "hello_maps_max": 64, "heartbeat_ms": 1000, "peer_timeout_ms": 120_000,
        "dead_letter_memory_max": 64, "dead_letter_records_max": 10**9,
        "dead_letter_raw_bytes_max": 1024,
    }
    return BridgeConfig(**{**base, **overrides})


@dataclass(frozen=True)
class Settings:
    """Everything a run varies, derived from its seed and the spec (printed at the start)."""

    seed: int
    tag: str
    lanes: int
    cycle: int
    consume: int
    pool: int
    group: int
    ids_per_cycle: int
    special_rounds: int
    weights: tuple[tuple[str, float], ...]

    @classmethod
    def derive(cls, seed: int, spec: Spec) -> Settings:
        rng = random.Random(f"norn-fuzz/settings/{seed}")
        lanes = rng.choice((8, 8, 16))
        cycle = rng.choice((24, 32, 40))
        # A gap must stay a gap however far acks lag (up to ~3 cycles): seq <= acked + credit.
        cycle = max(8, min(cycle, (spec.credit - 24) // 3))
        if spec.credit < 48:
            raise ValueError(f"credit {spec.credit} is too small to fuzz seqs; use >= 48")
        consume = max(2, cycle // 3 + rng.randint(-2, 2))
        pool = rng.choice((2, 3, 4))
        group = rng.choice((2, 3, 4))
        posts = math.ceil(lanes * 5 / 8) + 2  # sessions of post/wild lanes, good client, slack
        per_round_ids = max(1, lanes // 8)
        ids = max(0, min((cycle - 2) // 3, (spec.servers_max - posts) // per_round_ids))
        per8 = lanes * (ids + 1)
        budget = spec.server_records_max - lanes * pool - 4
        special = 8 * (budget // per8) if budget > 0 else 0
        weights = tuple(
            (f, 0.0 if spec.excluded(f) else rng.choice((0.5, 1.0, 2.0))) for f in FAMILIES
        )
        tag = f"z{seed % 1_000_000:x}"
        return cls(seed, tag, lanes, cycle, consume, pool, group, ids, special, weights)

    def describe(self) -> str:
        return (f"seed={self.seed} lanes={self.lanes} cycle={self.cycle} "
                f"consume={self.consume} pool={self.pool} group={self.group} "
                f"ids/cycle={self.ids_per_cycle} special_rounds={self.special_rounds}")

    @property
    def round_frames(self) -> int:
        return self.lanes * self.cycle


# -- the model: PROTOCOL.md as code ----------------------------------------------------------
@dataclass
class SidState:
    """What the engine holds for one server id, as far as the generator can know it."""

    sid: str
    received: int = 0
    gap: int = 0              # expected seq whose gap was reported (0: none, -1: unknown)
    ahead: int = 0            # seq whose tick_ahead was reported (0: none)
    last_due: int = 0
    progress: tuple[int, int] = (0, 0)
    consistent: bool = True   # a reused id: its stamps and progress must stay in order



def stamp_of(seq: int) -> int:
    """The stamp a reused server id puts on batch ``seq`` (never decreasing, small)."""
    return 1 + seq // 64


@dataclass(frozen=True)
class Outcome:
    """One acceptable answer to a frame and its documented effects.

    ``tokens``: the replies, in order: ``welcome@NEXT_SEQ``, ``eCODE``, ``e9:INVALID``,
    ``e10@EXPECTED`` / ``e11@EXPECTED``. Acks and heartbeats are never tokens (they are
    timing); a duplicate may or may not be answered by an ack.
    """

    tokens: tuple[str, ...] = ()
    consumed: bool = False
    accepted: int = 0
    kind: str | None = None
    counts: tuple[tuple[str, int], ...] = ()
    gap: int | None = None
    ahead: int | None = None
    due: int | None = None
    progress: tuple[int, int] | None = None
    session: str = ""         # "": unchanged, "up:SID", "down"


def _rej(code: int) -> Outcome:
    return Outcome((f"e{code}",))


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def unpack_like_engine(data: bytes, spec: Spec) -> dict[str, Any] | int:
    """The frame as the engine decodes it, or the error code it refuses it with (0: the
    frame is over twice ``frame_bytes_max``, so the connection is dropped)."""
    n = len(data)
    if n > 2 * spec.frame_bytes_max:
        return 0  # ZeroMQ drops the connection (section 1): nothing to expect
    if n > spec.frame_bytes_max:
        return 4
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                              max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n,
                              max_ext_len=0)
    except Exception:
        return 1
    if type(msg) is not dict:
        return 1
    if spec.nesting_max is not None and nesting(msg, spec.nesting_max + 1) > spec.nesting_max:
        return 1
    if type(msg.get("t")) is not str:
        return 1
    return msg


def model(parts: list[bytes], st: SidState | None, spec: Spec,
          known: dict[str, int] | None = None) -> list[Outcome] | None:
    """Acceptable outcomes of one message from a connection whose session is ``st``.

    ``known``: server ids (besides ``st``) whose received seq the caller knows, for hellos
    that open a session. None means the outcome depends on something the caller cannot
    know (engine timing, another session's state): the generator draws another frame.
    """
    if len(parts) != 1:
        return [_rej(1)]
    msg = unpack_like_engine(parts[0], spec)
    if msg == 0:
        return None
    if type(msg) is int:
        return [_rej(msg)]
    t = msg["t"]
    if t == proto.HELLO:
        return _model_hello(msg, st, spec, known or {})
    if st is None:
        return [Outcome()] if t == proto.BYE else [Outcome(("e6",))]
    if t in (proto.EVENTS, proto.RESULTS):
        return _model_batch(msg, st, spec)
    if t == proto.HB:  # section 5: tick required, 0 .. 2^63-1
        return [Outcome()] if _is_int(msg.get("tick"), 0, proto.SEQ_MAX) else [_rej(3)]
    if t == proto.PROGRESS:
        tick, seq = msg.get("tick"), msg.get("seq")
        if not (_is_int(tick, 0, proto.SEQ_MAX) and _is_int(seq, 0, proto.SEQ_MAX)):
            return [_rej(3)]
        if st.consistent and tick > st.received // 64:
            return None  # would put later stamps of a reused id out of order
        prog = (tick, seq) if tick > st.progress[0] else None
        return [Outcome(counts=(("progress_received", 1),), progress=prog)]
    if t == proto.BYE:
        return [Outcome(session="down")]
    return [_rej(2)]


def _str_list(v: Any, n_max: int, len_max: int) -> str:
    """'ok', 'bad' (wrong type / too many) or 'len' (an entry empty or longer than len_max)."""
    if type(v) is not list or len(v) > n_max:
        return "bad"
    if any(type(s) is not str for s in v):
        return "bad"
    if any(not 0 < len(s.encode()) <= len_max for s in v):
        return "len"
    return "ok"


def _model_hello(msg: dict, st: SidState | None, spec: Spec, known: dict[str, int]
                 ) -> list[Outcome] | None:
    """Section 3: an integer v other than 1 is version_unsupported; a v that is not an
    integer, a bad server_id, a missing or malformed caps or maps is bad_field; an unknown
    map is unknown_map. When several apply, any of their codes is right."""
    codes: set[int] = set()
    maybe: set[int] = set()
    v = msg.get("v")
    if type(v) is not int:
        codes.add(3)
    elif v != proto.PROTOCOL_VERSION:
        codes.add(5)
    sid = msg.get("server_id")
    if not (type(sid) is str and SERVER_ID_DOC.fullmatch(sid)):
        codes.add(3)
    if "caps" not in msg:
        codes.add(3)
    else:
        c = _str_list(msg["caps"], CAPS_MAX, 64)
        if c == "bad":
            codes.add(3)
        elif c == "len" or any(s not in ("columns", "rows", proto.LOCKSTEP_CAP)
                               for s in msg["caps"]):
            maybe.add(3)  # ambiguous: unknown, empty or long capability names
    if "maps" not in msg:
        codes.add(3)
    else:
        m = _str_list(msg["maps"], spec.hello_maps_max, 10**9)
        if m == "bad":
            codes.add(3)
        elif m == "len":
            codes.add(14)  # an empty name is a map the world does not have ...
            maybe.add(3)   # ... or a bad field
        else:
            names = msg["maps"]
            if any(len(s.encode()) > MAP_NAME_WIRE_BYTES_MAX for s in names):
                maybe.add(3)  # ambiguous: the document bounds names only by the world's
            if any(s not in spec.map_names for s in names):
                codes.add(14)
    if codes:
        return [_rej(c) for c in sorted(codes | maybe)]
    if st is not None and sid == st.sid:
        received = st.received
    elif sid in known:
        received = known[sid]
    else:
        return None  # another id's session state: not ours to predict
    welcome = Outcome((f"welcome@{received + 1}",), gap=0, ahead=0, session=f"up:{sid}")
    return [welcome] + [_rej(c) for c in sorted(maybe)]


_BATCH_KEYS = {proto.EVENTS: {"t", "seq", "tick", "kind", "n", "maps", "cols", "rows"},
               proto.RESULTS: {"t", "seq", "tick", "n", "cols", "rows"}}


def _model_batch(msg: dict, st: SidState, spec: Spec) -> list[Outcome] | None:
    seq = msg.get("seq")
    if not _is_int(seq, 1, proto.SEQ_MAX):
        return [_rej(3)]
    stamp = 0
    if "tick" in msg:
        stamp = msg["tick"]
        if not _is_int(stamp, 1, proto.TICK_MAX):
            return [_rej(3)]
        if spec.stamp_ahead is None and stamp > STAMP_SAFE_MAX and hasattr(
                proto.ErrorCode, "TICK_AHEAD"):
            return None  # bounded by a limit we were not told
    r = st.received
    if seq <= r:
        return [Outcome(counts=(("duplicates_discarded", 1),))]
    if seq > r + spec.credit:
        return [Outcome((f"e11@{r + 1}",))]
    if seq > r + 1:
        if seq > r + spec.credit // 2:
            return None  # gap or window depends on how far acks lag
        gap = Outcome((f"e10@{r + 1}",), gap=r + 1)
        quiet = Outcome(counts=(("seq_gaps_suppressed", 1),))
        if st.gap == r + 1:
            return [quiet]
        if st.gap == -1:
            return [gap, quiet]
        return [gap]
    if spec.stamp_ahead is not None and stamp > spec.engine_tick + spec.stamp_ahead:
        # 3a: not consumed, reported once per seq
        toks = () if st.ahead == seq else ("e16",)
        return [Outcome(toks, counts=(("tick_ahead", 1),), ahead=seq)]
    pre: tuple[str, ...] = ()
    due = None
    if stamp:
        if st.consistent and stamp != stamp_of(seq):
            return None
        due = max(stamp, st.last_due)
        p_tick, p_seq = st.progress
        if due != stamp or (seq > p_seq and stamp <= p_tick):
            pre = ("e15",)
    out = []
    results = msg["t"] == proto.RESULTS
    counter = "results_received" if results else "events_accepted"
    for toks, accepted, kind in _model_body(msg, spec):
        out.append(Outcome(pre + toks, consumed=True, accepted=accepted, kind=kind,
                           counts=((counter, accepted),) if accepted else (), gap=0, due=due))
    return out


def _model_body(msg: dict, spec: Spec) -> list[tuple[tuple[str, ...], int, str | None]]:
    """(tokens, events accepted, engine kind) alternatives of an accepted batch."""
    if msg["t"] == proto.RESULTS:
        kind, fields = proto.RESULT_KIND, proto.WIRE_RESULT_SCHEMA
    else:
        kind = msg.get("kind")
        if type(kind) is not str:  # missing or not a string: bad_field (section 9)
            return [(("e3",), 0, None)]
        if kind not in proto.WIRE_EVENT_SCHEMAS:
            return [(("e7",), 0, None)]
        fields = proto.WIRE_EVENT_SCHEMAS[kind]
    refused: list[tuple[tuple[str, ...], int, str | None]] = [(("e3",), 0, None)]
    extra = set(msg) - _BATCH_KEYS[msg["t"]]
    has_map = any(f.kind == "map" for f in fields)
    if "cols" in msg and "rows" not in msg:
        if not has_map and "maps" in msg:
            extra.add("maps")
        res = _model_cols(msg, fields, kind, spec, has_map)
    elif "rows" in msg and "cols" not in msg:
        extra |= {k for k in ("n", "maps") if k in msg}
        res = _model_rows(msg, fields, kind, spec)
    else:
        return refused
    if extra and res != refused:
        res = res + refused  # ambiguous: keys the document does not name
    return res


def _model_cols(msg: dict, fields: tuple, kind: str, spec: Spec, has_map: bool) -> list:
    n = msg.get("n")
    cols = msg["cols"]
    if type(n) is int and n > spec.events_per_batch_max:
        return [(("e8",), 0, None)]
    if not _is_int(n, 0, spec.events_per_batch_max) or type(cols) is not dict:
        return [(("e3",), 0, None)]
    if set(cols) != set(proto.wire_columns(fields)):
        return [(("e3",), 0, None)]
    alts: list = []
    maps: list = []
    if has_map:
        if "maps" not in msg:
            alts.append((("e3",), 0, None))  # ambiguous: required, or an empty dictionary
        else:
            m = _str_list(msg["maps"], spec.map_dict_max, MAP_NAME_WIRE_BYTES_MAX)
            if m != "ok":
                return [(("e3",), 0, None)]
            maps = msg["maps"]
    values: dict[str, Any] = {}
    for f in fields:
        if f.kind == "text":
            lens = cols[f"{f.name}_len"]
            data = cols[f.name]
            if type(lens) is not bytes or len(lens) != 2 * n:
                return [(("e3",), 0, None)]
            ls = np.frombuffer(lens, "<u2").astype(np.int64)
            if type(data) is not bytes or len(data) != int(ls.sum()):
                return [(("e3",), 0, None)]
            ends = np.cumsum(ls)
            values[f.name] = [data[int(e - ln):int(e)] for e, ln in zip(ends, ls, strict=True)]
            continue
        b = cols[f.name]
        if type(b) is not bytes or len(b) != n * f.dtype.itemsize:
            return [(("e3",), 0, None)]
        arr = np.frombuffer(b, f.dtype).tolist()
        if f.kind == "map":
            arr = [maps[i] if 0 <= i < len(maps) else None for i in arr]
        values[f.name] = arr
    rows = [[values[f.name][i] for f in fields] for i in range(n)]
    bad = sum(not _event_ok(r, fields, kind, spec, text_bytes=True) for r in rows)
    return [*alts, (((f"e9:{bad}",) if bad else ()), n - bad, kind)]


def _model_rows(msg: dict, fields: tuple, kind: str, spec: Spec) -> list:
    rows = msg["rows"]
    if type(rows) is not list:
        return [(("e3",), 0, None)]
    if len(rows) > spec.events_per_batch_max:
        return [(("e8",), 0, None)]
    bad = sum(
        not (type(r) is list and len(r) == len(fields) and _event_ok(r, fields, kind, spec))
        for r in rows
    )
    return [(((f"e9:{bad}",) if bad else ()), len(rows) - bad, kind)]


def _event_ok(row: list, fields: tuple, kind: str, spec: Spec, text_bytes: bool = False
              ) -> bool:
    """One event checked on its own against its kind's table (section 6)."""
    by = {}
    for f, v in zip(fields, row, strict=True):
        if f.kind == "int":
            if not _is_int(v, f.lo, f.hi):
                return False
        elif f.kind == "map":
            if type(v) is not str or v not in spec.map_names:
                return False
        else:
            if text_bytes:
                if type(v) is not bytes:
                    return False
                raw = v
            else:
                if type(v) is not str:
                    return False
                raw = v.encode()
            if len(raw) > spec.text_bytes_max or b"\0" in raw:
                return False
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return False
        by[f.name] = v
    coords = proto.WIRE_EVENT_COORDS.get(kind)
    if coords:
        w, h = spec.map_sizes[spec.map_names.index(by[coords[0]])]
        if by[coords[1]] >= w or by[coords[2]] >= h:
            return False
    return True


# -- the generator ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One ZeroMQ message of the stream and what the engine must answer."""

    index: int
    shape: str
    parts: tuple[bytes, ...]
    expect: tuple[Outcome, ...]
    rid: bytes                 # the routing id (DEALER identity) it is sent from
    sid: str | None            # the server id of that connection's session (None: none)
    received: int              # that session's received seq before this frame
    consumes: bool             # it consumes seq ``received + 1`` of ``sid``
    early: bool = False        # refused on arrival (several parts, too large): its answer
    #                            may overtake the answers to its connection's older frames

    def __iter__(self) -> Iterator[Any]:
        """``shape, parts, expect = frame(seed, index, spec)``."""
        return iter((self.shape, list(self.parts), self.expect))

    def describe(self) -> str:
        alts = " | ".join(" ".join(o.tokens) or "(silent)" for o in self.expect)
        size = "+".join(str(len(p)) for p in self.parts)
        return (f"#{self.index} {self.shape} rid={self.rid.decode()} sid={self.sid} "
                f"received={self.received} bytes={size} expect: {alts}")


@functools.lru_cache(maxsize=64)
def settings_for(seed: int, spec: Spec) -> Settings:
    return Settings.derive(seed, spec)


def frame(seed: int, index: int, spec: Spec) -> Frame:
    """The frame at ``index`` of the stream of ``seed``: a pure function of its arguments."""
    s = settings_for(seed, spec)
    rnd, j = divmod(index, s.round_frames)
    return _cycle(seed, spec, j % s.lanes, rnd)[j // s.lanes]


def mode_of(s: Settings, lane: int, rnd: int) -> str:
    m = (rnd + lane) % 8
    if m % 2 == 0:
        return "post"
    if m == 3 and rnd < s.special_rounds and s.ids_per_cycle:
        return "ids"
    if m == 7 and rnd < s.special_rounds:
        return "wild"
    return "pre"


@dataclass
class _Ctx:
    spec: Spec
    s: Settings
    mode: str
    st: SidState | None
    known: dict[str, int] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)  # a round uses at most 16 cycles, in index order
def _cycle(seed: int, spec: Spec, lane: int, rnd: int) -> tuple[Frame, ...]:
    s = settings_for(seed, spec)
    mode = mode_of(s, lane, rnd)
    base = rnd * s.round_frames + lane
    idx = [base + pos * s.lanes for pos in range(s.cycle)]
    out: list[Frame] = []
    if mode in ("post", "wild"):
        rid = f"{s.tag}.{rnd}.{lane}".encode()
        if mode == "post":
            pc = (rnd + 1 - lane % 2) // 2
            st = SidState(f"{s.tag}p{lane}.{pc % s.pool}", (pc // s.pool) * s.consume)
            plan = ["consume"] * s.consume + ["keep"] * (s.cycle - 2 - s.consume)
            random.Random(f"{seed}/plan/{lane}/{rnd}").shuffle(plan)
        else:
            st = SidState(f"{s.tag}w{rnd}.{lane}", consistent=False)
            plan = ["any"] * (s.cycle - 2)
        out.append(_open(seed, idx[0], spec, s, mode, rid, st))
        for pos in range(1, s.cycle - 1):
            out.append(_slot(seed, idx[pos], _Ctx(spec, s, mode, st), plan[pos - 1], rid))
        out.append(_close(idx[-1], mode, rid, st))
        return tuple(out)
    pos = 0
    if mode == "ids":
        for m in range(s.ids_per_cycle):
            rid = f"{s.tag}.{rnd}.{lane}.m{m}".encode()
            st = SidState(f"{s.tag}i{rnd}.{lane}.{m}", consistent=False)
            out.append(_open(seed, idx[pos], spec, s, mode, rid, st))
            out.append(_slot(seed, idx[pos + 1], _Ctx(spec, s, mode, st), "any", rid))
            out.append(_close(idx[pos + 2], mode, rid, st))
            pos += 3
    for p in range(pos, s.cycle):
        rid = f"{s.tag}.{rnd}.{lane}.g{p // s.group}".encode()
        out.append(_slot(seed, idx[p], _Ctx(spec, s, "pre", None), "keep", rid))
    return tuple(out)


def _open(seed: int, index: int, spec: Spec, s: Settings, mode: str, rid: bytes,
          st: SidState) -> Frame:
    """The hello that opens a session on ``st`` (a documented welcome, nothing else)."""
    want = (f"welcome@{st.received + 1}",)
    for attempt in range(32):
        rng = random.Random(f"{seed}/{index}/{attempt}")
        detail, msg = _hello_ok(rng, spec, st.sid)
        data = encode(msg)
        alts = model([data], None, spec, {st.sid: st.received})
        if alts and len(alts) == 1 and alts[0].tokens == want:
            break
    else:  # pragma: no cover - the canonical hello is always welcome
        detail, data = "canonical", proto.encode_hello(st.sid)
        alts = [Outcome(want, gap=0, session=f"up:{st.sid}")]
    st.gap = st.ahead = 0
    return Frame(index, f"{mode}:open.{detail}", (data,), tuple(alts), rid, None, 0, False)


def _close(index: int, mode: str, rid: bytes, st: SidState) -> Frame:
    return Frame(index, f"{mode}:close", (proto.encode_bye(),),
                 (Outcome(session="down"),), rid, st.sid, st.received, False)


def _slot(seed: int, index: int, ctx: _Ctx, want: str, rid: bytes) -> Frame:
    """A frame for one position: drawn until the model's answer fits the plan."""
    st = ctx.st
    for attempt in range(64):
        rng = random.Random(f"{seed}/{index}/{attempt}")
        shape, parts = _draw(rng, ctx, want)
        if ctx.spec.exclude and _excluded(shape, ctx.spec.exclude):
            continue
        alts = model(list(parts), st, ctx.spec, ctx.known)
        if alts is None:
            continue
        if _fits(alts, want, st):
            break
    else:
        shape, parts = "fallback", (encode({"t": "fz-fallback"}),)
        alts = model(list(parts), st, ctx.spec)
        if want == "consume":
            assert st is not None
            shape = "fallback.consume"
            parts = (encode({"t": "events", "seq": st.received + 1, "kind": "logout",
                             "rows": [[1, 1]]}),)
            alts = model(list(parts), st, ctx.spec)
        assert alts is not None
    consumes = bool(alts[0].consumed)
    received = st.received if st is not None else 0
    if st is not None:
        _apply(alts, st)
    early = len(parts) != 1 or len(parts[0]) > ctx.spec.frame_bytes_max
    return Frame(index, f"{ctx.mode}:{shape}", tuple(parts), tuple(alts), rid,
                 st.sid if st is not None else None, received, consumes, early)


def _excluded(shape: str, exclude: frozenset[str]) -> bool:
    """A family name excludes its shapes; any other string, the shapes that contain it."""
    if shape.split(".", 1)[0] in exclude:
        return True
    return any(e in shape for e in exclude if e not in FAMILIES)


def _fits(alts: list[Outcome], want: str, st: SidState | None) -> bool:
    consumed = {o.consumed for o in alts}
    if len(consumed) != 1:
        return False
    if (want == "consume" and consumed != {True}) or (want == "keep" and consumed != {False}):
        return False
    for o in alts:
        if o.session == "down" or (o.session and (st is None or o.session != f"up:{st.sid}")):
            return False
    dues = {o.due for o in alts}
    progs = {o.progress for o in alts}
    return len(dues) == 1 and len(progs) == 1


def _apply(alts: list[Outcome], st: SidState) -> None:
    o = alts[0]
    if o.consumed:
        st.received += 1
    gaps = {st.gap if a.gap is None else a.gap for a in alts}
    st.gap = gaps.pop() if len(gaps) == 1 else -1
    aheads = {st.ahead if a.ahead is None else a.ahead for a in alts}
    st.ahead = aheads.pop() if len(aheads) == 1 else st.ahead
    if o.due is not None:
        st.last_due = o.due
    if o.progress is not None:
        st.progress = o.progress


# -- messages ---------------------------------------------------------------------------------
def _hello_ok(rng: random.Random, spec: Spec, sid: str) -> tuple[str, dict]:
    caps: list[str] = ["columns", "rows"]
    maps: list[str] = []
    detail = rng.choice(("canonical", "lockstep", "maps", "reordered", "caps_empty"))
    if detail == "lockstep":
        caps.append(proto.LOCKSTEP_CAP)
    elif detail == "maps":
        maps = rng.sample(list(spec.map_names), rng.randint(1, len(spec.map_names)))
    elif detail == "caps_empty":
        caps = []
    msg = {"t": "hello", "v": 1, "server_id": sid, "caps": caps, "maps": maps}
    if detail == "reordered":
        items = list(msg.items())
        rng.shuffle(items)
        msg = dict(items)
    return detail, msg


class _Idx:
    """A raw map index in a columnar batch (outside the dictionary, or chosen on purpose)."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


def _text(rng: random.Random, spec: Spec) -> str:
    k = rng.random()
    if k < 0.15:
        return ""
    if k < 0.25:
        return "a" * spec.text_bytes_max
    if k < 0.35:  # ends exactly at the bound with a 2-byte character
        return "b" * (spec.text_bytes_max - 2) + "é"
    alphabet = "abcdefghij klmnop!?,.0123" if k < 0.7 else "aé漢😀z ü"
    out = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
    while len(out.encode()) > spec.text_bytes_max:
        out = out[:-1]
    return out


def _int_value(rng: random.Random, f: Any) -> int:
    k = rng.random()
    if k < 0.15:
        return f.lo
    if k < 0.3:
        return f.hi
    return rng.randint(f.lo, min(f.hi, f.lo + 10**6) if rng.random() < 0.7 else f.hi)


def _fields(results: bool, kind: str) -> tuple:
    return proto.WIRE_RESULT_SCHEMA if results else proto.WIRE_EVENT_SCHEMAS[kind]


def _event(rng: random.Random, spec: Spec, results: bool, kind: str) -> list[Any]:
    fields = _fields(results, kind)
    row: list[Any] = []
    for f in fields:
        if f.kind == "int":
            row.append(_int_value(rng, f))
        elif f.kind == "map":
            row.append(rng.choice(spec.map_names))
        else:
            row.append(_text(rng, spec))
    coords = None if results else proto.WIRE_EVENT_COORDS.get(kind)
    if coords:
        names = [f.name for f in fields]
        w, h = spec.map_sizes[spec.map_names.index(row[names.index(coords[0])])]
        xi, yi = names.index(coords[1]), names.index(coords[2])
        row[xi] = rng.choice((0, w - 1, rng.randrange(w)))
        row[yi] = rng.choice((0, h - 1, rng.randrange(h)))
    return row


def _columns(rows: list[list[Any]], fields: tuple, extra_names: list[str] | None = None
             ) -> tuple[list[str], dict[str, bytes]]:
    """(maps dictionary, cols) of rows whose values fit their wire dtypes."""
    names: list[str] = []
    for r in rows:
        for f, v in zip(fields, r, strict=True):
            if f.kind == "map" and type(v) is str and v not in names:
                names.append(v)
    names += [n for n in (extra_names or []) if n not in names]
    cols: dict[str, bytes] = {}
    for j, f in enumerate(fields):
        vals = [r[j] for r in rows]
        if f.kind == "text":
            enc = [v.encode() if type(v) is str else bytes(v) for v in vals]
            cols[f"{f.name}_len"] = np.array([len(e) for e in enc], "<u2").tobytes()
            cols[f.name] = b"".join(enc)
        elif f.kind == "map":
            idx = [v.i if type(v) is _Idx else names.index(v) for v in vals]
            cols[f.name] = np.array(idx, "<i2").tobytes()
        else:
            cols[f.name] = np.array(vals, dtype=f.dtype).tobytes()
    return names, cols


def _batch(rng: random.Random, ctx: _Ctx, seq: Any, *, form: str | None = None,
           kind: str | None = None, results: bool | None = None, n: int | None = None,
           rows: list[list[Any]] | None = None, stamp: Any = None) -> dict[str, Any]:
    """A batch message (valid unless ``rows`` carries invalid values)."""
    spec = ctx.spec
    if results is None:
        results = kind is None and rng.random() < 0.15
    if kind is None:
        kind = rng.choice(KINDS)
    form = form or rng.choice(("rows", "cols"))
    fields = _fields(results, kind)
    if rows is None:
        n = n if n is not None else rng.choice((0, 1, 1, 2, 3, 5, 8))
        rows = [_event(rng, spec, results, kind) for _ in range(n)]
    msg: dict[str, Any] = {"t": proto.RESULTS if results else proto.EVENTS, "seq": seq}
    if stamp is None and type(seq) is int and ctx.st is not None and rng.random() < 0.3:
        stamp = stamp_of(seq) if ctx.st.consistent else rng.randint(1, STAMP_SAFE_MAX)
    if stamp is not None:
        msg["tick"] = stamp
    if not results:
        msg["kind"] = kind
    if form == "rows":
        msg["rows"] = rows
        return msg
    msg["n"] = len(rows)
    names, cols = _columns(rows, fields)
    if any(f.kind == "map" for f in fields):
        msg["maps"] = names
    msg["cols"] = cols
    return msg


def _seq(rng: random.Random, ctx: _Ctx, want: str) -> int:
    """A seq for a batch: the next one, or (to keep the seq) a duplicate, gap or overrun."""
    st = ctx.st
    if st is None:
        return rng.choice((1, 2, rng.randint(1, 10**6)))
    r = st.received
    if want == "consume" or (want == "any" and rng.random() < 0.7):
        return r + 1
    if want == "keep" and rng.random() < 0.25:
        return r + 1  # only envelope-level problems keep it
    k = rng.random()
    if k < 0.35 and r >= 1:
        return rng.choice((r, 1, rng.randint(1, r)))
    if k < 0.7:
        return r + 1 + rng.randint(1, 8)
    return rng.choice((r + ctx.spec.credit + 1, r + ctx.spec.credit + 1000, proto.SEQ_MAX))


def _any_msg(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, dict[str, Any]]:
    """A valid message of a random client type, for the generic field mutations."""
    k = rng.random()
    if k < 0.55:
        m = _batch(rng, ctx, _seq(rng, ctx, want))
        form = "cols" if "cols" in m else "rows"
        return f"{m['t']}-{form}", m
    if k < 0.7:
        sid = ctx.st.sid if ctx.st is not None and rng.random() < 0.5 else f"{ctx.s.tag}x"
        return "hello", _hello_ok(rng, ctx.spec, sid)[1]
    if k < 0.8:
        return "hb", {"t": "hb", "tick": rng.choice((0, 1, 10**6))}
    if k < 0.95:
        r = ctx.st.received if ctx.st is not None else 0
        return "progress", {"t": "progress", "tick": r // 64, "seq": r}
    return "bye", {"t": "bye"}


def _paths(msg: dict[str, Any]) -> list[tuple]:
    out: list[tuple] = [(k,) for k in msg]
    for k, v in msg.items():
        if type(v) is list:
            for i, x in enumerate(v[:3]):
                out.append((k, i))
                if type(x) is list:
                    out += [(k, i, j) for j in range(len(x))]
        elif type(v) is dict:
            out += [(k, kk) for kk in v]
    return out


def _path_name(path: tuple) -> str:
    return ".".join("i" if type(p) is int else str(p) for p in path)


def _get(msg: Any, path: tuple) -> Any:
    for p in path:
        msg = msg[p]
    return msg


def _set(msg: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        msg = msg[p]
    msg[path[-1]] = value


def _delete(msg: Any, path: tuple) -> None:
    for p in path[:-1]:
        msg = msg[p]
    del msg[path[-1]]


def _draw(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, tuple[bytes, ...]]:
    """One candidate frame: (shape, parts). The model judges it afterwards."""
    names = [f for f, w in ctx.s.weights if w > 0]
    fam = rng.choices(names, weights=[w for _, w in ctx.s.weights if w > 0])[0]
    detail, out = _DRAW[fam](rng, ctx, want)
    if isinstance(out, dict):
        return f"{fam}.{detail}", (encode(out),)
    return f"{fam}.{detail}", tuple(out)


def _d_valid(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    k = rng.random()
    if k < 0.7 or want == "consume":
        m = _batch(rng, ctx, _seq(rng, ctx, want))
        name = m.get("kind", "results")
        return f"{'cols' if 'cols' in m else 'rows'}.{name}", m
    if k < 0.8:
        return "hb", {"t": "hb", "tick": rng.choice((0, 7, 2**40, proto.SEQ_MAX))}
    if k < 0.9:
        r = ctx.st.received if ctx.st is not None else 0
        return "progress", {"t": "progress", "tick": rng.randint(0, r // 64),
                            "seq": rng.choice((r, 0, proto.SEQ_MAX))}
    if ctx.st is not None:
        return "rehello", _hello_ok(rng, ctx.spec, ctx.st.sid)[1]
    return "bye", {"t": "bye"}


def _d_wrong_type(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    path = rng.choice(_paths(msg))
    _set(msg, path, rng.choice(WRONG))
    return f"{what}@{_path_name(path)}", msg


def _d_missing(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    path = rng.choice(_paths(msg))
    _delete(msg, path)
    return f"{what}@{_path_name(path)}", msg


def _d_extra_key(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(("zz", "x", "T", "seq2", "", "\x00", "k" * 200, "tick_", "Kind"))
        msg[key] = rng.choice((1, "x", None, b"\x00", [1, 2], {"a": 1}))
    return what, msg


def _d_deep(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    path = rng.choice(_paths(msg))
    depth = rng.choice(DEPTHS)
    inner = rng.choice((1, "x", None, _get(msg, path) if rng.random() < 0.3 else 0))
    _set(msg, path, Deep(inner, depth, maps=rng.random() < 0.3))
    return f"{what}@{_path_name(path)}", msg


def _d_huge_len(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    head = rng.choice(HUGE_HEADERS)
    body = rng.choice((b"", b"\x01", b"abc", b"\xa1k\x01"))
    if rng.random() < 0.25:
        return "top", [head + body]
    what, msg = _any_msg(rng, ctx, want)
    path = rng.choice(_paths(msg))
    _set(msg, path, Raw(head + body))
    return f"{what}@{_path_name(path)}", msg


def _d_truncated(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    data = encode(msg)
    return what, [data[: rng.randrange(len(data))]]


def _d_random(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    first = rng.choice([b for b in range(256) if not (0x80 <= b <= 0x8F or b in (0xDE, 0xDF))])
    return "bytes", [bytes([first]) + rng.randbytes(rng.randint(0, 300))]


def _d_multipart(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    data = encode(msg)
    cut = rng.randrange(len(data) + 1)
    parts = rng.choice((
        [data, b""], [b"", data], [data, data], [data[:cut], data[cut:]], [b"", b""],
        [data, b"\x01", b"\x02"],
    ))
    return what, parts


def _padded(seq: int, target: int, spec: Spec) -> bytes:
    """An npc_talk rows batch of exactly ``target`` bytes (texts within text_bytes_max)."""
    tmax = spec.text_bytes_max

    def grow(n: int) -> int:  # bytes a text of n characters adds to an empty one
        return n if n < 32 else n + 1

    msg = {"t": "events", "seq": seq, "kind": "npc_talk", "rows": []}
    rows: list[list[Any]] = msg["rows"]  # type: ignore[assignment]
    while True:
        rows += [[150000 + len(rows), 7, ""], [150001 + len(rows), 7, ""]]
        d = target - len(msgpack.packb(msg))
        if d < 0:
            raise ValueError(f"cannot pad a frame to {target} bytes")
        if d <= 2 * grow(tmax):
            for a in range(min(tmax, d), -1, -1):
                rest = d - grow(a)
                b = rest if rest < 32 else rest - 1
                if 0 <= b <= tmax and grow(b) == rest:
                    rows[-2][2], rows[-1][2] = "q" * a, "r" * b
                    data = msgpack.packb(msg)
                    if len(data) == target:
                        return data
            raise ValueError(f"cannot pad a frame to {target} bytes")
        del rows[-2:]
        rows.append([150000 + len(rows), 7, "p" * tmax])


def _d_size(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    seq = _seq(rng, ctx, want)
    k = rng.random()
    detail, target = (("at_max", spec.frame_bytes_max) if k < 0.45 else
                      ("max+1", spec.frame_bytes_max + 1) if k < 0.9 else
                      ("1.5max", spec.frame_bytes_max * 3 // 2))
    try:
        return detail, [_padded(seq, target, spec)]
    except ValueError:
        return "unpaddable", [b"\xc1"]


def _d_col_len(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    m = _batch(rng, ctx, _seq(rng, ctx, want), form="cols", n=rng.randint(1, 6))
    name = rng.choice(list(m["cols"]))
    b = m["cols"][name]
    m["cols"][name] = rng.choice((b[:-1], b + b"\x00", b[: len(b) // 2], b + b, b""))
    return name, m


_BAD_UTF8 = (b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80",
             b"x\xe2\x82")


def _d_text(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    form = rng.choice(("rows", "cols"))
    n = rng.randint(1, 5)
    rows = [_event(rng, spec, False, "npc_talk") for _ in range(n)]
    i = rng.randrange(n)
    k = rng.random()
    if k < 0.2:
        detail, v = "nul", rng.choice(("\x00", "ab\x00", "\x00" * 3))
    elif k < 0.4:
        detail, v = "long", "x" * (spec.text_bytes_max + rng.choice((1, 2, 100)))
    elif k < 0.5:
        detail, v = "at_max", "y" * spec.text_bytes_max
    elif k < 0.75 and form == "cols":
        detail, v = "bad_utf8", rng.choice(_BAD_UTF8)
    elif k < 0.85 and form == "cols":
        detail, v = "cont_start", b"\x80" + rng.choice((b"", b"abc"))
    elif form == "rows":
        detail, v = rng.choice((("bin", b"hello"), ("bad_utf8_str", None)))
    else:
        detail, v = "multibyte", "é漢😀"
    if v is None:  # a msgpack str whose bytes are not UTF-8: the frame is not decodable
        rows[i][2] = Raw(b"\xa2\xff\xfe")
    else:
        rows[i][2] = v
    return f"{form}.{detail}", _batch(rng, ctx, _seq(rng, ctx, want), form=form,
                                      kind="npc_talk", rows=rows)


def _d_maps_dict(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    kind = rng.choice([k for k, fs in proto.WIRE_EVENT_SCHEMAS.items()
                       if any(f.kind == "map" for f in fs)])
    m = _batch(rng, ctx, _seq(rng, ctx, want), form="cols", kind=kind,
               n=rng.randint(0, 5))
    maps = m["maps"]
    k = rng.random()
    if k < 0.15:
        detail = "entry_type"
        maps.append(rng.choice((1, None, b"prontera", ["x"], True)))
    elif k < 0.25:
        detail = "entry_empty"
        maps.append("")
    elif k < 0.35:
        detail = "entry_long"
        maps.append("m" * rng.choice((MAP_NAME_WIRE_BYTES_MAX, MAP_NAME_WIRE_BYTES_MAX + 1,
                                      300)))
    elif k < 0.45:
        detail = "too_many"
        maps += [f"map{i}" for i in range(spec.map_dict_max + 1 - len(maps))]
    elif k < 0.55:
        detail = "at_max"
        maps += [f"map{i}" for i in range(spec.map_dict_max - len(maps))]
    elif k < 0.7:
        detail = "unknown_unreferenced"
        maps.append(rng.choice(("atlantis", "PRONTERA", "prontera\x00", "é")))
    elif k < 0.8:
        detail = "type"
        m["maps"] = rng.choice(("prontera", {"a": 1}, None, 3))
    elif k < 0.9:
        detail = "missing"
        del m["maps"]
    else:
        detail = "shuffled_dup"
        m["maps"] = [*maps, *maps]
    return detail, m


def _d_seq(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    st = ctx.st
    r = st.received if st is not None else 0
    k = rng.random()
    if k < 0.2 and r >= 1:
        detail, seq = "dup", rng.choice((r, 1, rng.randint(1, r)))
    elif k < 0.45:
        detail, seq = "gap", r + 1 + rng.randint(1, 8)
    elif k < 0.6:
        detail, seq = "window", rng.choice((r + ctx.spec.credit + 1, r + 10**9, proto.SEQ_MAX))
    elif k < 0.8:
        detail, seq = "value", rng.choice((0, -1, proto.SEQ_MAX + 1, 2**64 - 1, -(2**63)))
    else:
        detail, seq = "type", rng.choice(WRONG)
        if type(seq) is int:
            seq = "7"
    return detail, _batch(rng, ctx, seq, stamp=None)


def _d_stamp(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    seq = _seq(rng, ctx, want)
    st = ctx.st
    k = rng.random()
    if k < 0.35:
        detail, tick = "bad", rng.choice((0, -1, proto.TICK_MAX + 1, 2**63, 2**64 - 1))
    elif k < 0.5:
        detail, tick = "type", rng.choice((None, True, 1.0, "1", b"1", [1], {"t": 1}))
    elif k < 0.65:
        detail, tick = "tick_max", proto.TICK_MAX
    elif st is not None and st.consistent:
        detail, tick = "in_order", stamp_of(seq)
    else:
        detail, tick = "small", rng.randint(1, 60)
    return detail, _batch(rng, ctx, seq, stamp=tick)


def _bad_value(rng: random.Random, f: Any, form: str, spec: Spec) -> Any:
    """A value of field ``f`` that the document refuses (fitting the dtype in columns)."""
    if f.kind == "map":
        if form == "cols":
            return rng.choice((_Idx(-1), _Idx(32767), _Idx(len(spec.map_names) + 40)))
        return rng.choice(("atlantis", "", 5, None, b"prontera"))
    if f.kind == "text":
        return "x\x00" if form == "cols" else rng.choice((5, None, b"x", "y" * 300))
    info = np.iinfo(f.dtype)
    bad = [v for v in (f.lo - 1, f.hi + 1, int(info.min), int(info.max))
           if not f.lo <= v <= f.hi and info.min <= v <= info.max]
    if form == "rows":
        bad += [f.lo - 1, f.hi + 1, 2**64 - 1, None, True, 1.5, "5", b"5", [5], {"a": 5}]
    return rng.choice(bad)


def _d_invalid_events(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    form = rng.choice(("rows", "cols"))
    results = rng.random() < 0.15
    kind = rng.choice(KINDS)
    fields = _fields(results, kind)
    n = rng.randint(1, 8)
    rows = [_event(rng, spec, results, kind) for _ in range(n)]
    detail = "value"
    coords = None if results else proto.WIRE_EVENT_COORDS.get(kind)
    names = [g.name for g in fields]
    for _ in range(rng.randint(1, n)):
        i = rng.randrange(n)
        j = rng.randrange(len(fields))
        f = fields[j]
        row = rows[i]
        whole = type(row) is list and len(row) == len(fields)
        if form == "rows" and (not whole or rng.random() < 0.15):
            cur = row if type(row) is list else []
            rows[i] = rng.choice((cur[:-1], [*cur, 1], {"a": 1}, 7, None, []))
            detail = "row_shape"
            continue
        where = row[names.index(coords[0])] if coords else None
        if coords and f.name in coords[1:] and where in spec.map_names and rng.random() < 0.5:
            w, h = spec.map_sizes[spec.map_names.index(where)]
            row[j] = (w if f.name == coords[1] else h) + rng.choice((0, 0, 5))
            detail = "outside_map"
        else:
            row[j] = _bad_value(rng, f, form, spec)
    m = _batch(rng, ctx, _seq(rng, ctx, want), form=form, kind=kind, results=results,
               rows=rows)
    return f"{form}.{detail}", m


def _d_batch(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    seq = _seq(rng, ctx, want)
    k = rng.random()
    if k < 0.25:
        m = _batch(rng, ctx, seq, kind="logout")
        m["kind"] = rng.choice(("warp", "", "Login", "action_result", "npc_talk\x00", "x" * 300))
        return "unknown_kind", m
    if k < 0.4:
        m = _batch(rng, ctx, seq, form="cols")
        m["rows"] = [] if rng.random() < 0.5 else [[1]]
        return "cols_and_rows", m
    if k < 0.5:
        m = _batch(rng, ctx, seq, form=rng.choice(("rows", "cols")))
        m.pop("rows", None)
        m.pop("cols", None)
        return "neither", m
    if k < 0.65:
        m = _batch(rng, ctx, seq, form="cols", n=1)
        m["n"] = rng.choice((spec.events_per_batch_max + 1, 2**31, 2**64 - 1, -1))
        return "n_too_big", m
    if k < 0.8:
        n = spec.events_per_batch_max + rng.choice((0, 1))
        rows = [[150000 + i, 1] for i in range(n)]
        return f"rows_{'max' if n == spec.events_per_batch_max else 'max+1'}", _batch(
            rng, ctx, seq, form="rows", kind="logout", rows=rows)
    if k < 0.9:
        n = spec.events_per_batch_max
        return "cols_max", _batch(rng, ctx, seq, form="cols", kind="logout",
                                  rows=[[150000 + i, 1] for i in range(n)])
    m = _batch(rng, ctx, seq, form="cols", n=2)
    m["cols"][rng.choice(("zz", "char_idd", ""))] = b"\x00" * 8
    return "extra_column", m


def _d_type(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    k = rng.random()
    if k < 0.4:
        t = rng.choice(("welcome", "ack", "actions", "error", "", "HELLO", "events\x00",
                        "bye ", "x" * 200, "results2"))
        return "unknown", {"t": t, "seq": 1}
    if k < 0.6:
        return "not_str", {"t": rng.choice((1, None, b"hello", ["hb"], {"t": "hb"}, 1.5))}
    if k < 0.75:
        return "missing", {"seq": 1, "kind": "logout", "rows": []}
    return "not_map", [msgpack.packb(rng.choice(([1, 2], "hello", None, 5, b"x", [])))]


def _d_hello(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    spec = ctx.spec
    sid = ctx.st.sid if ctx.st is not None else f"{ctx.s.tag}h"
    msg = _hello_ok(rng, spec, sid)[1]
    k = rng.random()
    if k < 0.15:
        detail = "v"
        msg["v"] = rng.choice((0, 2, 2**31 - 1, 2**31, -1, 2**64 - 1))
    elif k < 0.4:
        bad = rng.choice((
            "", "s" * 65, "a b", f"{sid}\n", "é", "a\x00", "a/b", "\n", " x", "x" * 64 + "\n",
        ))
        detail = "server_id.newline" if bad.endswith("\n") else "server_id"
        msg["server_id"] = bad
    elif k < 0.6:
        detail = "caps"
        msg["caps"] = rng.choice((
            ["columns"] * 65, ["c" * 65], [""], ["teleport"], ["columns", 3], "columns",
        ))
    elif k < 0.8:
        detail = "maps"
        msg["maps"] = rng.choice((
            ["atlantis"], [*spec.map_names, "nowhere"], [""], ["m" * 65],
            [spec.map_names[0]] * (spec.hello_maps_max + 1), [1], {"prontera": 1},
        ))
    else:
        detail = "absent"
        del msg[rng.choice(("caps", "maps", "v", "server_id"))]
    return detail, msg


def _d_progress(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    st = ctx.st
    r = st.received if st is not None else 0
    k = rng.random()
    if k < 0.4:
        field_ = rng.choice(("tick", "seq"))
        msg = {"t": "progress", "tick": r // 64, "seq": r}
        msg[field_] = rng.choice((-1, proto.SEQ_MAX + 1, 2**64 - 1, None, "1", 1.0, [1]))
        return f"bad_{field_}", msg
    if k < 0.5:
        return "missing", {"t": "progress", "tick": 0}
    if k < 0.8 or st is None or st.consistent:
        return "in_order", {"t": "progress", "tick": rng.randint(0, r // 64),
                            "seq": rng.choice((r, 0))}
    return "ahead", {"t": "progress",
                     "tick": rng.choice((proto.TICK_MAX, proto.SEQ_MAX, rng.randint(1, 60))),
                     "seq": rng.choice((r, 0))}


def _d_hb(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    k = rng.random()
    if k < 0.4:
        return "ok", {"t": "hb", "tick": rng.choice((0, 1, proto.SEQ_MAX))}
    if k < 0.8:
        return "bad_tick", {"t": "hb", "tick": rng.choice((-1, None, "1", 2**64 - 1, [1]))}
    return "missing", {"t": "hb"}


def _d_dup_key(rng: random.Random, ctx: _Ctx, want: str) -> tuple[str, Any]:
    what, msg = _any_msg(rng, ctx, want)
    body = encode(msg)
    n = len(msg)
    if n >= 15:
        return "skip", [body]
    k = rng.random()
    key = rng.choice(list(msg))
    if k < 0.5:
        extra = encode(key) + encode(rng.choice((1, "hb", None, "bye")))
        detail = f"dup@{key}"
    elif k < 0.75:
        extra = encode(rng.choice((1, -1, 2**40))) + encode(1)
        detail = "int_key"
    else:
        extra = encode(key.encode()) + encode(1)
        detail = "bin_key"
    return f"{what}.{detail}", [bytes([0x80 | (n + 1)]) + body[1:] + extra]


_DRAW: dict[str, Callable[[random.Random, _Ctx, str], tuple[str, Any]]] = {
    "valid": _d_valid, "wrong_type": _d_wrong_type, "missing": _d_missing,
    "extra_key": _d_extra_key, "deep": _d_deep, "huge_len": _d_huge_len,
    "truncated": _d_truncated, "random": _d_random, "multipart": _d_multipart,
    "size": _d_size, "col_len": _d_col_len, "text": _d_text, "maps_dict": _d_maps_dict,
    "seq": _d_seq, "stamp": _d_stamp, "invalid_events": _d_invalid_events,
    "batch": _d_batch, "type": _d_type, "hello": _d_hello, "progress": _d_progress,
    "hb": _d_hb, "dup_key": _d_dup_key,
}
assert set(_DRAW) == set(FAMILIES)


# -- what reached the input queue ---------------------------------------------------------------
def check_batch(batch: Any, spec: Spec) -> list[str]:
    """Problems of one drained InputBatch against the wire schemas' bounds (empty: none)."""
    where = f"batch {batch.source}#{batch.seq} ({batch.kind})"
    if batch.kind == proto.RESULT_KIND:
        fields = proto.WIRE_RESULT_SCHEMA
    elif batch.kind in proto.WIRE_EVENT_SCHEMAS:
        fields = proto.WIRE_EVENT_SCHEMAS[batch.kind]
    else:
        return [f"{where}: unknown kind"]
    cols = batch.columns
    out: list[str] = []
    lengths = {len(c) for c in cols.values()}
    if len(lengths) > 1:
        out.append(f"{where}: columns of different lengths {sorted(lengths)}")
    for f in fields:
        col = cols.get(f.engine)
        if col is None:
            out.append(f"{where}: column {f.engine} missing")
            continue
        if not len(col):
            continue
        if f.kind == "int":
            lo, hi = int(col.min()), int(col.max())
            if lo < f.lo or hi > f.hi:
                out.append(f"{where}: {f.engine} in [{lo}, {hi}], outside [{f.lo}, {f.hi}]")
        elif f.kind == "map":
            lo, hi = int(col.min()), int(col.max())
            if lo < 0 or hi >= len(spec.map_names):
                out.append(f"{where}: {f.engine} ids in [{lo}, {hi}], not a map id")
        else:
            for v in col.tolist():
                raw = bytes(v)
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    out.append(f"{where}: {f.engine} {raw[:20]!r} is not UTF-8")
                    break
                if b"\0" in raw or len(raw) > spec.text_bytes_max:
                    out.append(f"{where}: {f.engine} {raw[:20]!r} has a NUL or is too long")
                    break
    coords = proto.WIRE_EVENT_COORDS.get(batch.kind)
    if coords and not out and len(cols[coords[1]]):
        eng = {f.name: f.engine for f in fields}
        ids = cols[eng[coords[0]]].astype(np.int64)
        w = np.array([s[0] for s in spec.map_sizes])[ids]
        h = np.array([s[1] for s in spec.map_sizes])[ids]
        if (cols[coords[1]] >= w).any() or (cols[coords[2]] >= h).any():
            out.append(f"{where}: a position outside its map")
    return out


@dataclass(frozen=True)
class BatchInfo:
    """What the driver learns of one journaled batch (computed where the engine runs)."""

    source: str
    seq: int
    kind: str
    n: int
    problems: tuple[str, ...]
    ids: tuple[int, ...] | None = None  # the good client's char_ids


def batch_info(batch: Any, spec: Spec, good: str | None) -> BatchInfo:
    ids = None
    if batch.source == good and batch.kind == "player_move":
        ids = tuple(batch.columns["char_id"].tolist())
    return BatchInfo(batch.source, batch.seq, batch.kind, len(batch),
                     tuple(check_batch(batch, spec)), ids)


def _rss(pid: int | None = None) -> int:
    try:
        import psutil

        return int(psutil.Process(pid or os.getpid()).memory_info().rss)
    except Exception:  # pragma: no cover - psutil is a dev dependency
        return 0


def _crash_text(server: Any) -> str | None:
    exc = getattr(server, "_crash", None)
    if exc is None:
        st = server.stats()
        return st.get("crashed")
    return "".join(traceback.format_exception(exc))


# -- targets: an engine to fuzz ------------------------------------------------------------------
class HarnessTarget:
    """A ``bridge.testing.Harness`` in this process; ``commit`` plays its journal."""

    def __init__(self, harness: Any, *, keep_journal: bool = True) -> None:
        self.h = harness
        self.endpoint: str = harness.endpoint
        self.config: BridgeConfig = harness.server.config
        self.view = harness.server.view
        self.keep_journal = keep_journal
        self.good: str | None = None
        self.spec: Spec | None = None

    def stats(self) -> dict[str, Any]:
        return self.h.server.stats()

    def commit(self) -> list[BatchInfo]:
        batches = self.h.commit()
        if not self.keep_journal:
            self.h.journal.clear()
        assert self.spec is not None
        return [batch_info(b, self.spec, self.good) for b in batches]

    def rss(self) -> int:
        return _rss()

    def crash_trace(self) -> str | None:
        return _crash_text(self.h.server)

    def close(self) -> None:
        """The caller owns the harness."""



def _serve(conn: Any, config: dict[str, Any], maps: tuple, good: str | None, spec: Spec
           ) -> None:
    """The engine side of a ``ProcessTarget``: a Harness answering commands on a pipe."""
    from norn.bridge.loadgen import demo_view
    from norn.bridge.testing import Harness

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - a crash's trace comes by the pipe
    h = Harness(BridgeConfig(**config), demo_view(maps))
    conn.send(h.endpoint)
    try:
        while True:
            cmd = conn.recv()
            if type(cmd) is tuple:  # ("good", server id of the well-behaved client)
                good = cmd[1]
                conn.send("ok")
            elif cmd == "stats":
                conn.send(h.server.stats())
            elif cmd == "commit":
                batches = h.commit()
                h.journal.clear()
                conn.send([batch_info(b, spec, good) for b in batches])
            elif cmd == "crash":
                conn.send(_crash_text(h.server))
            else:
                break
    finally:
        h.stop()
        with contextlib.suppress(Exception):
            conn.send("stopped")


class ProcessTarget:
    """A BridgeServer (in a Harness) in a fresh process, driven over a pipe."""

    def __init__(self, config: BridgeConfig | None = None, maps: tuple | None = None) -> None:
        import multiprocessing as mp

        from norn.bridge.loadgen import TEST_MAPS, demo_view

        self.config = config or fuzz_config()
        self.maps = maps or TEST_MAPS
        self.view = demo_view(self.maps)
        self.spec: Spec | None = Spec.from_server(self.config, self.view)
        self._good: str | None = None
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        cfg = self.config.model_dump(exclude_defaults=True)
        self.proc = ctx.Process(target=_serve, args=(child, cfg, self.maps, None, self.spec),
                                daemon=True)
        self.proc.start()
        child.close()
        if not self._conn.poll(60):
            raise RuntimeError("the engine process did not start")
        self.endpoint: str = self._conn.recv()

    @property
    def good(self) -> str | None:
        return self._good

    @good.setter
    def good(self, sid: str | None) -> None:
        self._good = sid
        self._ask(("good", sid))

    def _ask(self, cmd: Any, timeout_s: float = 60.0) -> Any:
        self._conn.send(cmd)
        if not self._conn.poll(timeout_s):
            raise RuntimeError(f"the engine process did not answer {cmd!r}")
        return self._conn.recv()

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def commit(self) -> list[BatchInfo]:
        return self._ask("commit")

    def rss(self) -> int:
        return _rss(self.proc.pid)

    def crash_trace(self) -> str | None:
        return self._ask("crash")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send("stop")
            self._conn.poll(10)
        self.proc.join(10)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.kill()
            self.proc.join(5)


class EndpointTarget:
    """Only an endpoint: answers are checked, the engine's counters and queue are not."""

    def __init__(self, endpoint: str, spec: Spec) -> None:
        self.endpoint = endpoint
        self.spec: Spec | None = spec
        self.good: str | None = None

    def stats(self) -> None:
        return None

    def commit(self) -> list[BatchInfo]:
        return []

    def rss(self) -> int:
        return 0

    def crash_trace(self) -> None:
        return None

    def close(self) -> None:
        pass


# -- the well-behaved client ------------------------------------------------------------------
class _CountingSocket:
    """A socket that counts the messages it sent (for the engine's ``frames_in``)."""

    def __init__(self, sock: zmq.Socket, owner: Any) -> None:
        self._s, self._owner = sock, owner

    def send(self, *a: Any, **kw: Any) -> Any:
        out = self._s.send(*a, **kw)
        self._owner.frames_sent += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


class GoodClient:
    """The reference ``BridgeClient`` sending player moves with unique char ids."""

    def __init__(self, endpoint: str, server_id: str, spec: Spec) -> None:
        from norn.bridge.client import BridgeClient, ClientConfig

        counter = self

        class _Client(BridgeClient):
            def _new_socket(self) -> None:
                super()._new_socket()
                self._sock = _CountingSocket(self._sock, counter)  # type: ignore[assignment]

        self.frames_sent = 0
        self.next_id = 1
        self.w, self.h = spec.map_sizes[0]
        cfg = ClientConfig(batch_events=64, batch_ms=2, heartbeat_ms=1000,
                           peer_timeout_ms=600_000, retransmit_ms=600_000)
        self.client = _Client(endpoint, server_id, maps=spec.map_names, config=cfg)
        self.sid = server_id

    def step(self, n: int = 4) -> None:
        ids = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        self.client.add_columns("player_move", {
            "char_id": ids, "map": np.zeros(n, np.int64), "x": ids % self.w,
            "y": (ids // self.w) % self.h})
        self.client.poll(0)

    def poll(self) -> None:
        self.client.poll(0)

    @property
    def events(self) -> int:
        return self.next_id - 1

    def close(self) -> None:
        self.client.close()


# -- the driver ---------------------------------------------------------------------------------
COUNTERS_CHECKED = (
    "frames_in", "errors_sent", "frames_rejected", "dead_letters", "events_rejected",
    "seq_gaps", "seq_gaps_suppressed", "window_exceeded", "tick_order", "tick_ahead",
    "duplicates_discarded", "progress_received", "events_accepted", "results_received",
    "internal_errors", "frames_overloaded",
)


@dataclass
class FuzzReport:
    """What a run sent, what came back and every failed check."""

    seed: int
    settings: str = ""
    frames: int = 0
    rounds: int = 0
    seconds: float = 0.0
    replies: int = 0
    acks: int = 0
    welcomes: int = 0
    errors_by_code: Counter = field(default_factory=Counter)
    dead_letters: int = 0
    identities: int = 0
    server_ids: int = 0
    good_events: int = 0
    journaled_batches: int = 0
    crashes: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failures_total: int = 0
    shapes: Counter = field(default_factory=Counter)
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures_total and not self.crashes

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def fail(self, msg: str, limit: int = 60) -> None:
        self.failures_total += 1
        if len(self.failures) < limit:
            self.failures.append(msg)

    def summary(self) -> str:
        mib = 1 << 20
        lines = [
            f"fuzz {self.settings}",
            f"  {self.frames} frames in {self.rounds} rounds, {self.seconds:.1f} s "
            f"({self.frames_per_s:.0f}/s); {self.identities} routing ids, "
            f"{self.server_ids} server ids",
            f"  replies {self.replies} (welcome {self.welcomes}, errors "
            f"{dict(sorted(self.errors_by_code.items()))}), acks {self.acks}, "
            f"dead letters {self.dead_letters}, journaled batches {self.journaled_batches}, "
            f"good events {self.good_events}",
            f"  RSS start {self.rss_start / mib:.1f} MiB, peak {self.rss_peak / mib:.1f}, "
            f"end {self.rss_end / mib:.1f}; checked: {', '.join(self.checked)}",
            f"  crashes {len(self.crashes)}, failed checks {self.failures_total}",
        ]
        for c in self.crashes:
            lines.append(f"  CRASH {c['where']}")
            lines += [f"    {x}" for x in c.get("trace_tail", [])]
        lines += [f"  FAIL {f}" for f in self.failures[:20]]
        return "\n".join(lines)


@dataclass
class _Sock:
    sock: zmq.Socket
    frames: list[Frame] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    matched: list[Outcome] | None = None
    fenced: bool = False  # the answer to this connection's own fence arrived


def token_of(msg: Any) -> str | None:
    """A reply as a token (None for acks, heartbeats and actions: timing, not answers)."""
    if type(msg) is not dict:
        return "?not-a-map"
    t = msg.get("t")
    if t in (proto.ACK, proto.HB, proto.ACTIONS):
        return None
    if t == proto.WELCOME:
        return f"welcome@{msg.get('next_seq')}"
    if t == proto.ERROR:
        code = msg.get("code")
        if code == 9:
            return f"e9:{msg.get('invalid')}"
        if code in (10, 11):
            return f"e{code}@{msg.get('expected_seq')}"
        return f"e{code}"
    return f"?{t}"


def match(frames: list[Frame], tokens: list[str]) -> tuple[list[Outcome] | None, int]:
    """Assign the replies of one connection to its frames.

    Replies come in the order of the frames, except those of frames refused on arrival
    (``early``: several parts, too large), which may overtake the replies to older frames.
    Returns (the outcome of each frame, len(frames)) or (None, the first frame that no
    acceptable outcome fits).
    """
    early = {k: n for n, k in enumerate(k for k, f in enumerate(frames) if f.early)}
    etok = {k: frames[k].expect[0].tokens for k in early}
    if any(len(frames[k].expect) != 1 or len(t) != 1 for k, t in etok.items()):
        return None, min(early)

    def absorb(states: dict, k: int) -> dict:
        """Let replies of early frames not reached yet come now (at any point before)."""
        todo = list(states.items())
        while todo:
            (p, mask), path = todo.pop()
            for j, n in early.items():
                if j >= k and not mask >> n & 1 and tuple(tokens[p:p + 1]) == etok[j]:
                    key = (p + 1, mask | 1 << n)
                    if key not in states:
                        states[key] = path
                        todo.append((key, path))
        return states

    states: dict[tuple[int, int], tuple[Outcome, ...]] = {(0, 0): ()}
    for k, f in enumerate(frames):
        states = absorb(states, k) if early else states
        nxt: dict[tuple[int, int], tuple[Outcome, ...]] = {}
        for (p, mask), path in states.items():
            if f.early:
                bit = 1 << early[k]
                if mask & bit:
                    nxt.setdefault((p, mask), (*path, f.expect[0]))
                elif tuple(tokens[p:p + 1]) == etok[k]:
                    nxt.setdefault((p + 1, mask | bit), (*path, f.expect[0]))
                continue
            for o in f.expect:
                end = p + len(o.tokens)
                if tuple(tokens[p:end]) == o.tokens:
                    nxt.setdefault((end, mask), (*path, o))
        if not nxt:
            return None, k
        states = nxt
    for (p, _mask), path in states.items():
        if p == len(tokens):
            return list(path), len(frames)
    return None, len(frames)


def _as_target(target: Any) -> Any:
    if isinstance(target, str):
        return None  # resolved in run_fuzz (needs a welcome for the spec)
    if hasattr(target, "server") and hasattr(target, "commit") and hasattr(target, "inputs"):
        return HarnessTarget(target)
    return target


def _welcome_spec(endpoint: str, exclude: Any) -> Spec:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(endpoint)
    try:
        s.send(proto.encode_hello(f"fzprobe{os.getpid()}"))
        if not s.poll(10_000):
            raise RuntimeError(f"{endpoint}: no welcome")
        w = msgpack.unpackb(s.recv(), raw=False)
        s.send(proto.encode_bye())
    finally:
        s.close(0)
    return Spec.from_welcome(w, exclude)


def run_fuzz(
    target: Any,
    seed: int,
    frames: int,
    *,
    exclude: Any = (),
    spec: Spec | None = None,
    good_client: bool = True,
    rss_growth_max: int = 128 << 20,
    progress: Callable[[int, int, FuzzReport], None] | None = None,
    log: Callable[[str], None] | None = None,
    isolate: bool = True,
    round_timeout_s: float = 30.0,
) -> FuzzReport:
    """Send ``frames`` frames of the stream of ``seed`` to ``target`` and check the engine.

    ``target``: a ``bridge.testing.Harness`` (checked fully, its journal played with
    ``commit``), a ``ProcessTarget`` / ``HarnessTarget`` (same), or an endpoint string
    (answers only). The engine must be fresh for this seed (its server ids start at seq
    0) and keep sessions for the whole round (``fuzz_config`` does). ``exclude``: family
    names or shape substrings the generator must not produce.
    """
    t0 = time.monotonic()
    tg = _as_target(target)
    if tg is None:
        spec = spec or _welcome_spec(target, exclude)
        tg = EndpointTarget(target, spec)
    spec = spec or Spec.from_server(tg.config, tg.view, exclude)
    tg.spec = spec
    s = settings_for(seed, spec)
    rep = FuzzReport(seed, settings=s.describe() + f" frames={frames}", frames=0)
    (log or (lambda m: print(m, file=sys.stderr)))(f"norn fuzz: {rep.settings}")
    ctx = zmq.Context()
    good = GoodClient(tg.endpoint, f"{s.tag}good", spec) if good_client else None
    tg.good = good.sid if good else None
    fence = ctx.socket(zmq.DEALER)
    fence.linger = 0
    fence.routing_id = f"{s.tag}.fence".encode()
    fence.connect(tg.endpoint)
    full = tg.stats() is not None
    rep.checked = ["answers"] + (["counters", "journal", "queue bounds", "rss", "alive"]
                                 if full else [])
    base = tg.stats() if full else {}
    expect: Counter = Counter()
    seen_counter_fail: set[str] = set()
    pending: dict[tuple[str, int], tuple[int, str | None]] = {}
    lenient: set[tuple[str, int]] = set()
    last_seq: dict[str, int] = {}
    good_ids: list[int] = []
    sids: set[str] = set()
    rids = 0
    sent = 0
    last_bugs = 0
    rss0 = None
    try:
        rounds = math.ceil(frames / s.round_frames)
        for rnd in range(rounds):
            lo, hi = rnd * s.round_frames, min(frames, (rnd + 1) * s.round_frames)
            socks: dict[bytes, _Sock] = {}
            for i in range(lo, hi):
                fr = frame(seed, i, spec)
                sk = socks.get(fr.rid)
                if sk is None:
                    z = ctx.socket(zmq.DEALER)
                    z.linger = 0
                    z.sndhwm = z.rcvhwm = 100_000
                    z.routing_id = fr.rid
                    z.connect(tg.endpoint)
                    sk = socks[fr.rid] = _Sock(z)
                    rids += 1
                sk.frames.append(fr)
                if len(fr.parts) == 1:
                    sk.sock.send(fr.parts[0])
                else:
                    sk.sock.send_multipart(list(fr.parts))
                sent += 1
                rep.shapes[_shape_key(fr.shape)] += 1
                if good is not None and i % 16 == 0:
                    good.step()
            rep.frames = hi
            rep.rounds = rnd + 1
            crashed = _sync(tg, rep, socks, fence, good, base, sent, full, round_timeout_s)
            if crashed is not None:
                _on_crash(rep, seed, spec, tg, socks, crashed, rnd, isolate)
                for sk in socks.values():
                    sk.sock.close(0)
                break
            for sk in socks.values():
                _check_socket(rep, sk, expect, pending, lenient, sids)
            if full:
                expect["frames_in"] = sent + (good.frames_sent if good else 0) + rnd + 1
                expect["errors_sent_fence"] = rnd + 1
                _check_counters(rep, tg, base, expect, good, seen_counter_fail, rnd)
                bugs = tg.stats().get("internal_errors", 0) - base.get("internal_errors", 0)
                if bugs > last_bugs:  # exceptions the engine contained: crashes all the same
                    _on_crash(rep, seed, spec, tg, socks, f"{bugs - last_bugs} internal "
                              f"error(s) (contained)", rnd, isolate and len(rep.crashes) < 10,
                              contained=True)
                    last_bugs = bugs
                _journal(rep, tg.commit(), pending, lenient, last_seq, good_ids, rnd)
                rss = tg.rss()
                rss0 = rss if rss0 is None and rnd >= min(1, rounds - 1) else rss0
                rep.rss_peak = max(rep.rss_peak, rss)
                rep.rss_end = rss
            for sk in socks.values():
                sk.sock.close(0)
            if progress is not None:
                rep.seconds = time.monotonic() - t0
                progress(hi, frames, rep)
        else:
            if full:
                _finish(rep, tg, good, pending, lenient, last_seq, good_ids)
    finally:
        if good is not None:
            rep.good_events = good.events
            good.close()
        fence.close(0)
        ctx.destroy(linger=0)
    rep.identities = rids
    rep.server_ids = len(sids)
    rep.rss_start = rss0 or rep.rss_end
    if full and rep.rss_end - rep.rss_start > rss_growth_max:
        rep.fail(f"RSS grew from {rep.rss_start >> 20} MiB to {rep.rss_end >> 20} MiB "
                 f"(bound {rss_growth_max >> 20} MiB)")
    end = tg.stats() if full and not rep.crashes else None
    if end is not None:
        rep.dead_letters = (end["dead_lettered"] + end.get("dead_letter_dropped", 0)
                            - base["dead_lettered"] - base.get("dead_letter_dropped", 0))
    rep.seconds = time.monotonic() - t0
    return rep


def _shape_key(shape: str) -> str:
    """A shape without its path's indexes, for per-shape counts."""
    return shape.split("@")[0]


def _read(sk: _Sock, rep: FuzzReport) -> None:
    while sk.sock.poll(0):
        data = sk.sock.recv()
        try:
            msg = msgpack.unpackb(data, raw=False)
        except Exception:
            msg = None
        if _is_fence_answer(msg):
            sk.fenced = True
            continue
        tok = token_of(msg)
        if tok is None:
            rep.acks += type(msg) is dict and msg.get("t") == proto.ACK
            continue
        sk.tokens.append(tok)


def _sync(tg: Any, rep: FuzzReport, socks: dict[bytes, _Sock], fence: zmq.Socket,
          good: GoodClient | None, base: dict, sent: int, full: bool, timeout_s: float
          ) -> str | None:
    """Wait until the engine processed every frame of the round; the crash text if it died."""
    deadline = time.monotonic() + timeout_s
    if full:
        while True:
            st = tg.stats()
            if st.get("crashed"):
                return tg.crash_trace() or st["crashed"]
            want = sent + (good.frames_sent if good else 0) + rep.rounds - 1
            if st["frames_in"] - base["frames_in"] >= want:
                break
            if time.monotonic() > deadline:
                rep.fail(f"round {rep.rounds - 1}: the engine read "
                         f"{st['frames_in'] - base['frames_in']} of {want} frames in "
                         f"{timeout_s} s")
                return None
            if good is not None:
                good.poll()
            time.sleep(0.001)
    # the fence: processed after everything counted above, so its answer ends the round
    fence.send(encode({"t": "hb", "tick": 0}))
    got = None
    while time.monotonic() < deadline:
        if fence.poll(5):
            tok = token_of(msgpack.unpackb(fence.recv(), raw=False))
            if tok is not None:
                got = tok
                break
        if good is not None:
            good.poll()
        if full and tg.stats().get("crashed"):
            return tg.crash_trace() or "crashed"
    if got != "e6":
        rep.fail(f"round {rep.rounds - 1}: the fence (hb without a session) got {got}, "
                 f"not hello_required")
    if not full:
        # Without the engine's counters: a fence on every connection, answered only once
        # the engine is done with that connection's frames (replies keep their order).
        for sk in socks.values():
            sk.sock.send(FENCE)
        for sk in socks.values():
            while not sk.fenced and time.monotonic() < deadline:
                if sk.sock.poll(5):
                    _read(sk, rep)
            if not sk.fenced:
                rep.fail(f"round {rep.rounds - 1}: no answer to the fence on "
                         f"{sk.frames[0].rid.decode()} in {timeout_s} s")
    # every answer was sent before the fence's: read until each connection's fits, or
    # until nothing more arrives
    for sk in socks.values():
        while True:
            _read(sk, rep)
            sk.matched, _ = match(sk.frames, sk.tokens)
            if sk.matched is not None or not sk.sock.poll(50):
                break
    return None


def _check_socket(rep: FuzzReport, sk: _Sock, expect: Counter,
                  pending: dict, lenient: set, sids: set) -> None:
    """One connection's answers against its frames; what the engine's counters must show."""
    for tok in sk.tokens:  # counters that follow from the answers themselves
        rep.replies += 1
        if tok.startswith("welcome"):
            rep.welcomes += 1
            continue
        if not tok.startswith("e"):
            continue
        code = int(re.split(r"[:@]", tok[1:])[0])
        rep.errors_by_code[code] += 1
        expect["errors_sent"] += 1
        if code in REJECT_CODES:
            expect["frames_rejected"] += 1
            expect["dead_letters"] += 1
        elif code == 9:
            k = int(tok.split(":")[1])
            expect["events_rejected"] += k
            expect["dead_letters"] += k
        elif code in (10, 11, 15):
            expect[{10: "seq_gaps", 11: "window_exceeded", 15: "tick_order"}[code]] += 1
    outs = sk.matched
    if outs is None:
        _, k = match(sk.frames, sk.tokens)
        fr = sk.frames[min(k, len(sk.frames) - 1)]
        rep.fail(f"answers on {fr.rid.decode()}: frame {fr.describe()} | engine answered "
                 f"{' '.join(sk.tokens) or '(nothing)'} to frames "
                 f"{sk.frames[0].index}..{sk.frames[-1].index}")
        for f in sk.frames:
            if f.consumes and f.sid:
                lenient.add((f.sid, f.received + 1))
    for n, f in enumerate(sk.frames):
        o = outs[n] if outs is not None else f.expect[0]
        for name, c in o.counts:
            expect[name] += c
        if outs is None:
            continue
        if o.session.startswith("up:"):
            sids.add(o.session[3:])
        if o.consumed and f.sid:
            pending[(f.sid, f.received + 1)] = (o.accepted, o.kind)


def _check_counters(rep: FuzzReport, tg: Any, base: dict, expect: Counter,
                    good: GoodClient | None, seen: set[str], rnd: int) -> None:
    """Each counter moved by what the frames call for; a mismatch is reported once, then
    the expectation is rebased so later rounds are checked on their own."""
    deadline = time.monotonic() + 0.1
    while True:
        st = tg.stats()
        got = {k: v - base.get(k, 0) for k, v in st.items() if type(v) is int}
        got["dead_letters"] = got.get("dead_lettered", 0) + got.get("dead_letter_dropped", 0)
        want = dict(expect)
        want["errors_sent"] = expect["errors_sent"] + expect["errors_sent_fence"]
        if good is not None:
            c = good.client.stats
            want["errors_sent"] += c["errors"]
            want["events_accepted"] += c["events_sent"]
            want["duplicates_discarded"] += c["retransmits"]
        bad = [k for k in COUNTERS_CHECKED if (k in st or k == "dead_letters")
               and got.get(k, 0) != want.get(k, 0)]
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(0.005)  # an answer may still be on its way out
    for k in bad:
        if k not in seen:
            seen.add(k)
            rep.fail(f"counter {k}: engine +{got.get(k, 0)}, frames sent call for "
                     f"+{want.get(k, 0)} (by round {rnd}; reported once)")
        expect[k] += got.get(k, 0) - want.get(k, 0)


def _journal(rep: FuzzReport, infos: list[BatchInfo], pending: dict, lenient: set,
             last_seq: dict, good_ids: list[int], rnd: int) -> None:
    for b in infos:
        rep.journaled_batches += 1
        for p in b.problems:
            rep.fail(f"input queue: {p} (round {rnd})")
        prev = last_seq.get(b.source, 0)
        if b.seq != prev + 1 and not (prev == 0 and b.source not in pending):
            rep.fail(f"journal: {b.source} seq {b.seq} after {prev} (not exactly once, "
                     f"in order)")
        last_seq[b.source] = b.seq
        if b.ids is not None:
            good_ids.extend(b.ids)
            continue
        key = (b.source, b.seq)
        want = pending.pop(key, None)
        if key in lenient:
            lenient.discard(key)
            continue
        if want is None:
            if not b.source.endswith("good"):
                rep.fail(f"journal: {b.source}#{b.seq} ({b.kind}, {b.n} events) was not "
                         f"sent as a consumed seq")
            continue
        accepted, kind = want
        if b.n != accepted or (accepted and kind != b.kind):
            rep.fail(f"journal: {b.source}#{b.seq} holds {b.n} {b.kind} events, the frame "
                     f"called for {accepted} {kind}")


def _finish(rep: FuzzReport, tg: Any, good: GoodClient | None, pending: dict,
            lenient: set, last_seq: dict, good_ids: list[int]) -> None:
    """Drain the rest: every consumed seq journaled, the good client's events exactly once."""
    deadline = time.monotonic() + 30
    if good is not None:
        good.client.flush()
    quiet_since = None
    while time.monotonic() < deadline:
        if good is not None:
            good.poll()
        infos = tg.commit()
        _journal(rep, infos, pending, lenient, last_seq, good_ids, rep.rounds)
        durable = good is None or good.client.events_durable()
        if durable and not pending:
            break
        if durable and not infos:  # nothing more is coming: what is pending is lost
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 1.0:
                break
        else:
            quiet_since = None
        time.sleep(0.005)
    for (sid, seq), (n, kind) in sorted(pending.items())[:10]:
        rep.fail(f"journal: {sid}#{seq} ({n} {kind} events) was consumed but never journaled")
    if good is not None:
        got = Counter(good_ids)
        dups = [k for k, v in got.items() if v > 1]
        missing = good.events - len(set(got) & set(range(1, good.events + 1)))
        if dups or missing or len(got) != good.events:
            rep.fail(f"good client: {good.events} events sent, {len(got)} distinct journaled, "
                     f"{len(dups)} twice, {missing} missing")
        if good.client.stats["errors"]:
            rep.fail(f"good client got {good.client.stats['errors']} errors: "
                     f"{list(good.client.errors)[:3]}")


# -- crashes ---------------------------------------------------------------------------------
def _on_crash(rep: FuzzReport, seed: int, spec: Spec, tg: Any, socks: dict[bytes, _Sock],
              trace: str, rnd: int, isolate: bool, contained: bool = False) -> None:
    """Record a crash of the bridge thread (or exceptions it contained) and find its frame."""
    frames = sorted((f for sk in socks.values() for f in sk.frames), key=lambda f: f.index)
    crash: dict[str, Any] = {
        "where": f"round {rnd} (frames {frames[0].index}..{frames[-1].index}), seed {seed}",
        "trace_tail": _tail(trace),
        "contained": contained,
    }
    config = getattr(tg, "config", None)
    if isolate and config is not None:
        culprit, iso_trace, first = replay(spec, config, tg.view, frames)
        if culprit is not None:
            crash.update(index=culprit.index, shape=culprit.shape, frame=culprit.describe(),
                         where=f"seed {seed} index {culprit.index}: {culprit.shape} "
                               f"(python -m norn.bridge.fuzz replay {seed} {culprit.index})",
                         trace_tail=_tail(iso_trace or trace),
                         signature=culprit.shape.split(":", 1)[1])
            if first is not None:  # the connection went wrong earlier: the root cause
                crash["first_deviation"] = first.describe()
                crash["signature"] = first.shape.split(":", 1)[1]
                crash["where"] += (f"; its connection first deviated from PROTOCOL.md at "
                                   f"#{first.index}: {first.shape}")
    rep.crashes.append(crash)


def _tail(trace: str | None, n: int = 6) -> list[str]:
    lines = [x for x in (trace or "").splitlines() if x.strip()]
    return lines[-n:]


FENCE_SEQ = 987654321
#: Answered e2 (unknown type, in a session) or e6 (no session, seq echoed), never silent.
FENCE = encode({"t": "fz-fence", "seq": FENCE_SEQ})


def _is_fence_answer(msg: Any) -> bool:
    return type(msg) is dict and msg.get("t") == proto.ERROR and (
        msg.get("seq") == FENCE_SEQ or "fz-fence" in str(msg.get("message")))


def replay(spec: Spec, config: BridgeConfig, view: Any, frames: list[Frame]
           ) -> tuple[Frame | None, str | None, Frame | None]:
    """Replay frames on a fresh engine, one connection at a time, until one breaks it.

    Each connection's frames go in their order on a new routing id, each followed by a
    fence frame whose answer says the engine is done with the frame. Server ids start at
    the seq the generator says they had. Returns the frame that killed the bridge thread
    or raised inside it (an ``internal_errors`` count; None if none), its traceback, and
    the first frame of that connection (of any, without a crash) whose answers the model
    did not allow (None if all fit): the root cause when a session the engine should have
    refused led to the crash.
    """
    from norn.bridge.testing import Harness

    durable: dict[str, int] = {}
    groups: dict[bytes, list[Frame]] = {}
    for f in sorted(frames, key=lambda f: f.index):
        if f.sid:
            durable.setdefault(f.sid, f.received)
        groups.setdefault(f.rid, []).append(f)
    h = Harness(config, view, durable_seqs=durable)
    ctx = zmq.Context()
    first_deviation = None
    try:
        for n, group in enumerate(groups.values()):
            z = ctx.socket(zmq.DEALER)
            z.linger = 0
            z.rcvhwm = 100_000
            z.routing_id = f"replay{n}".encode()
            z.connect(h.endpoint)
            deviation = None
            try:
                for f in group:
                    bugs = h.server.stats().get("internal_errors", 0)
                    if len(f.parts) == 1:
                        z.send(f.parts[0])
                    else:
                        z.send_multipart(list(f.parts))
                    z.send(FENCE)
                    tokens: list[str] = []
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        if h.server.stats().get("crashed"):
                            return f, _crash_text(h.server), deviation
                        if z.poll(2):
                            msg = msgpack.unpackb(z.recv(), raw=False)
                            if _is_fence_answer(msg):
                                break
                            tok = token_of(msg)
                            if tok is not None:
                                tokens.append(tok)
                    if h.server.stats().get("internal_errors", 0) > bugs:
                        text = getattr(getattr(h.server, "_session", None),
                                       "last_internal_error", None)
                        return f, f"internal error (contained): {text}", deviation
                    if deviation is None and tuple(tokens) not in {o.tokens for o in f.expect}:
                        deviation = f
                        first_deviation = first_deviation or f
            finally:
                z.close(0)
        return None, None, first_deviation
    finally:
        ctx.destroy(linger=0)
        h.stop()


def connection_of(seed: int, index: int, spec: Spec) -> list[Frame]:
    """The frames sent before ``index`` on its connection in its round, and itself."""
    s = settings_for(seed, spec)
    target = frame(seed, index, spec)
    lo = (index // s.round_frames) * s.round_frames
    return [f for i in range(lo, index + 1) if (f := frame(seed, i, spec)).rid == target.rid]


# -- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m norn.bridge.fuzz show|replay SEED INDEX`` / ``run SEED FRAMES``."""
    p = argparse.ArgumentParser(prog="python -m norn.bridge.fuzz",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("show", help="print frames of a seed (fuzz_config, the test maps)")
    sh.add_argument("seed", type=int)
    sh.add_argument("index", type=int)
    sh.add_argument("count", type=int, nargs="?", default=1)
    sh.add_argument("--hex", action="store_true", help="also print each frame's bytes")
    rp = sub.add_parser("replay", help="send a frame and its connection's earlier frames of "
                        "the round to a fresh in-process engine (fuzz_config)")
    rp.add_argument("seed", type=int)
    rp.add_argument("index", type=int)
    ru = sub.add_parser("run", help="fuzz a fresh in-process engine (fuzz_config)")
    ru.add_argument("seed", type=int)
    ru.add_argument("frames", type=int)
    ru.add_argument("--exclude", nargs="*", default=[])
    args = p.parse_args(argv)
    from norn.bridge.loadgen import demo_view

    if args.cmd == "show":
        spec = Spec.from_server(fuzz_config(), demo_view())
        print(settings_for(args.seed, spec).describe())
        for i in range(args.index, args.index + args.count):
            f = frame(args.seed, i, spec)
            print(f.describe())
            if args.hex:
                for part in f.parts:
                    print("   ", part[:512].hex(" "), "..." if len(part) > 512 else "")
        return 0
    if args.cmd == "replay":
        spec = Spec.from_server(fuzz_config(), demo_view())
        frames = connection_of(args.seed, args.index, spec)
        for f in frames:
            print(f.describe())
        culprit, trace, first = replay(spec, fuzz_config(), demo_view(), frames)
        if first is not None:
            print(f"the engine's answers first deviated from the model at #{first.index}")
        if culprit is None:
            print("the engine survived")
            return 0
        print(f"the engine died on #{culprit.index}:\n{trace}")
        return 1
    from norn.bridge.testing import Harness

    h = Harness(fuzz_config(), demo_view())
    try:
        rep = run_fuzz(h, args.seed, args.frames, exclude=args.exclude)
    finally:
        h.stop()
    print(rep.summary())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
