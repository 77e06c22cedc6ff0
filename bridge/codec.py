"""Column codecs: wire batches to engine columns (with per-event validation) and back.

Two event formats reach the edge:

- **columns** (the hot format): one little-endian binary array per field. Decoding is one
  ``np.frombuffer`` per field plus vectorized range, map and coordinate checks, so its
  cost does not grow with a Python loop per event.
- **rows**: one msgpack array per event, convenient for low-volume kinds and simple
  clients. msgpack already builds one Python object per value, and the edge turns each
  field into an array with one bounded comprehension; a per-element slow path runs only
  for fields whose values are not all of the right type.

Validation is per event: a batch with invalid events yields the valid ones as engine
columns and, for each invalid one, the field and the reason (for the error frame and the
dead-letter store). Problems that make the whole batch unreadable (a column of the wrong
length, a missing key) raise ``ProtocolError`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from norn.bridge.protocol import (
    ACTIONS,
    EVENTS,
    RESULTS,
    SYNC,
    WIRE_V1,
    ErrorCode,
    ProtocolError,
    WireField,
    WireSchema,
    describe,
    get_int,
    get_str_list,
    pack,
    sync_fields,
    wire_columns,
)
from norn.engine import limits
from norn.engine.kinds import TEXT_DTYPE

MAP_NAME_WIRE_BYTES_MAX = 64  # longer strings in a maps dictionary are refused outright


# -- text helpers -------------------------------------------------------------------------
def pack_text(values: np.ndarray | Sequence[str | bytes]) -> tuple[np.ndarray, bytes]:
    """Text values as (``<u2`` byte lengths, concatenated UTF-8 bytes).

    A fixed-width ``S`` array is converted without a Python loop (trailing NULs are
    padding, as numpy treats them); a list of str/bytes is encoded per value.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind == "S":
        n, w = len(values), values.dtype.itemsize
        if n == 0 or w == 0:
            return np.zeros(n, "<u2"), b""
        mat = np.ascontiguousarray(values).view(np.uint8).reshape(n, w)
        nz = mat != 0
        lens = np.where(nz.any(axis=1), w - np.argmax(nz[:, ::-1], axis=1), 0)
        data = mat[np.arange(w)[None, :] < lens[:, None]].tobytes()
        return lens.astype("<u2"), data
    enc = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
    lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
    if len(lens) and lens.max() > 0xFFFF:
        raise ValueError("a text value is longer than 65535 bytes")
    return lens.astype("<u2"), b"".join(enc)


def unpack_text(lens: np.ndarray, data: bytes | np.ndarray, width: int) -> np.ndarray:
    """(lengths, bytes) to a fixed-width ``S{width}`` array; bytes past ``width`` are cut."""
    n = len(lens)
    out = np.zeros((n, width), dtype=np.uint8)
    u8 = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    total = int(lens.sum()) if n else 0
    if total:
        lens64 = lens.astype(np.int64)
        starts = np.cumsum(lens64) - lens64
        row = np.repeat(np.arange(n), lens64)
        pos = np.arange(total) - np.repeat(starts, lens64)
        keep = pos < width
        out[row[keep], pos[keep]] = u8[:total][keep]
    return out.view(f"S{width}").reshape(n)


def _utf8_bad(data: bytes, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Events whose bytes are not valid UTF-8 on their own (invalid, or split characters)."""
    n = len(lens)
    bad = np.zeros(n, dtype=bool)
    total = len(data)
    if total == 0:
        return bad
    u8 = np.frombuffer(data, dtype=np.uint8)
    cont = (u8 & 0xC0) == 0x80
    nonempty = lens > 0
    ends = starts + lens
    # starts inside a character (a continuation byte first)
    bad |= nonempty & cont[np.minimum(starts, total - 1)]
    # ends inside a character: the last lead byte (within the last 4) needs more bytes than
    # the event has left. Such a character may look whole in the concatenation, so the
    # decode below cannot see it; the next event is judged on its own bytes.
    found = ~nonempty
    for k in range(4):
        p = ends - 1 - k
        here = ~found & (p >= starts)
        pc = np.clip(p, 0, total - 1)
        lead = here & ~cont[pc]
        b = u8[pc]
        need = np.where(b < 0xC0, 1, np.where(b < 0xE0, 2, np.where(b < 0xF0, 3, 4)))
        bad |= lead & (p + need > ends)
        found |= lead
    pos = 0
    for _ in range(n + 1):  # one iteration per invalid event at most
        try:
            data[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            p = pos + exc.start
            i = int(np.searchsorted(ends, p, side="right"))
            if i >= n:
                break
            bad[i] = True
            pos = max(int(ends[i]), p + 1)
    return bad


# -- edge decoding ------------------------------------------------------------------------
@dataclass
class DecodedBatch:
    """The outcome of decoding one events/results batch at the edge."""

    kind: str
    n: int
    columns: dict[str, np.ndarray]          # engine columns of the valid events only
    invalid: np.ndarray                      # indexes (in the batch) of rejected events
    invalid_fields: list[str] = field(default_factory=list)
    invalid_reasons: list[str] = field(default_factory=list)
    raw_event: Callable[[int], bytes] | None = None  # msgpack of event i as sent (row form)

    @property
    def accepted(self) -> int:
        return self.n - len(self.invalid)


class _Checks:
    """First failing check per event, so each invalid event gets one field and reason."""

    def __init__(self, n: int) -> None:
        self.fail = np.full(n, -1, dtype=np.int32)
        self.what: list[tuple[str, str]] = []

    def add(self, mask: np.ndarray, field_name: str, reason: str) -> None:
        if not mask.any():
            return
        new = mask & (self.fail < 0)
        if new.any():
            self.fail[new] = len(self.what)
        self.what.append((field_name, reason))


class EventDecoder:
    """Turns wire batches into engine columns, knowing the world's maps and kinds.

    ``schema`` is the world's wire schema (``WireSchema.of(world.kinds)``); protocol v1 by
    default. A kind a plugin declared is accepted exactly like a v1 one.
    """

    def __init__(
        self,
        map_names: Sequence[str],
        map_sizes: Sequence[tuple[int, int]],
        *,
        events_per_batch_max: int = limits.batch_events_max,
        text_bytes_max: int = limits.text_bytes_max,
        map_dict_max: int = 2048,
        schema: WireSchema = WIRE_V1,
    ) -> None:
        self.schema = schema
        self.map_names = tuple(map_names)
        self.name_to_id = {n: i for i, n in enumerate(self.map_names)}
        self.widths = np.array([w for w, _ in map_sizes] or [0], dtype=np.int32)
        self.heights = np.array([h for _, h in map_sizes] or [0], dtype=np.int32)
        self.events_per_batch_max = events_per_batch_max
        self.text_bytes_max = text_bytes_max
        self.map_dict_max = map_dict_max

    def decode(self, msg: dict[str, Any], *, seq: int | None = None) -> DecodedBatch:
        """Decode an ``events`` or ``results`` message. Raises ProtocolError for the batch."""
        if msg["t"] == RESULTS:
            kind, fields = self.schema.result_kind, self.schema.result
        else:
            kind = msg.get("kind")
            if not isinstance(kind, str):
                raise ProtocolError(
                    ErrorCode.BAD_FIELD,
                    f"kind must be a string naming an event kind, got {describe(kind)}"
                    if "kind" in msg else "kind is required (a string naming an event kind)",
                    field="kind", seq=seq,
                )
            if kind not in self.schema.events:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_KIND,
                    f"unknown event kind {describe(kind, 40)}; "
                    f"known: {', '.join(self.schema.events)}",
                    field="kind", seq=seq,
                )
            fields = self.schema.events[kind]
        has_cols, has_rows = "cols" in msg, "rows" in msg
        if has_cols == has_rows:
            raise ProtocolError(
                ErrorCode.BAD_FIELD, "a batch has exactly one of 'cols' or 'rows'", seq=seq
            )
        if has_cols:
            return self._columns(msg, kind, fields, seq)
        return self._rows(msg, kind, fields, seq)

    # -- columns ------------------------------------------------------------------------
    def _columns(
        self, msg: dict[str, Any], kind: str, fields: tuple[WireField, ...], seq: int | None
    ) -> DecodedBatch:
        n = msg.get("n")
        if type(n) is int and n > self.events_per_batch_max:
            raise ProtocolError(
                ErrorCode.BATCH_TOO_LARGE,
                f"{n} events > events_per_batch_max={self.events_per_batch_max}",
                field="n", seq=seq,
            )
        n = get_int(msg, "n", 0, self.events_per_batch_max, seq=seq)
        cols = msg["cols"]
        if not isinstance(cols, dict):
            raise ProtocolError(ErrorCode.BAD_FIELD, "cols must be a map", field="cols", seq=seq)
        want = wire_columns(fields)
        if set(cols) != set(want):
            missing = sorted(set(want) - set(cols))
            extra = sorted(str(k)[:40] for k in set(cols) - set(want))
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"{kind}: columns missing {missing}, unexpected {extra}; want {want}",
                field="cols", seq=seq,
            )
        maps = self._maps(msg, fields, seq)
        checks = _Checks(n)
        out: dict[str, np.ndarray] = {}
        wire: dict[str, Any] = {}
        for f in fields:
            if f.kind == "text":
                lens = self._bin(cols, f"{f.name}_len", f.dtype, n, seq)
                data = cols[f.name]
                if not isinstance(data, bytes) or len(data) != int(lens.sum(dtype=np.int64)):
                    raise ProtocolError(
                        ErrorCode.BAD_FIELD,
                        f"{kind}.{f.name}: bytes must be a bin of sum({f.name}_len) bytes",
                        field=f.name, seq=seq,
                    )
                out[f.engine] = self._text(checks, f.name, lens, data)
                wire[f.name] = (lens, data)
                continue
            arr = self._bin(cols, f.name, f.dtype, n, seq)
            wire[f.name] = arr
            if f.kind == "map":
                in_dict = (arr >= 0) & (arr < len(maps))
                checks.add(~in_dict, f.name, f"index outside the maps dictionary of {len(maps)}")
                lut = np.array(
                    [self.name_to_id.get(s, -1) for s in maps] + [-1], dtype=np.int16
                )
                ids = lut[np.where(in_dict, arr, len(maps))]
                checks.add(in_dict & (ids < 0), f.name, "unknown map")
                out[f.engine] = ids
            else:
                self._range(checks, f, arr)
                out[f.engine] = arr.astype(f.dtype.newbyteorder("="), copy=False)
        self._coords(checks, kind, fields, out)

        def raw_event(i: int) -> bytes:
            row: list[Any] = []
            for f in fields:
                v = wire[f.name]
                if f.kind == "text":
                    lens, data = v
                    start = int(lens[:i].sum(dtype=np.int64))
                    row.append(data[start : start + int(lens[i])])
                elif f.kind == "map":
                    j = int(v[i])
                    row.append(maps[j] if 0 <= j < len(maps) else j)
                else:
                    row.append(int(v[i]))
            return msgpack.packb(row, use_bin_type=True)

        return self._finish(kind, n, out, checks, raw_event)

    def _maps(self, msg: dict[str, Any], fields: tuple[WireField, ...], seq: int | None) -> list:
        if not any(f.kind == "map" for f in fields):
            return []
        try:
            return get_str_list(msg, "maps", self.map_dict_max, MAP_NAME_WIRE_BYTES_MAX)
        except ProtocolError as exc:
            exc.seq = seq
            raise

    @staticmethod
    def _bin(cols: dict, key: str, dt: np.dtype, n: int, seq: int | None) -> np.ndarray:
        b = cols[key]
        if not isinstance(b, bytes) or len(b) != n * dt.itemsize:
            got = f"{len(b)} bytes" if isinstance(b, bytes) else type(b).__name__
            raise ProtocolError(
                ErrorCode.BAD_FIELD,
                f"column {key} must be a bin of n*{dt.itemsize}={n * dt.itemsize} bytes "
                f"({dt.str}), got {got}",
                field=key, seq=seq,
            )
        return np.frombuffer(b, dtype=dt)

    @staticmethod
    def _range(checks: _Checks, f: WireField, arr: np.ndarray) -> None:
        info = np.iinfo(f.dtype)
        if f.lo > info.min or f.hi < info.max:
            checks.add((arr < f.lo) | (arr > f.hi), f.name, f"must be in [{f.lo}, {f.hi}]")
        if f.codes:
            checks.add(~np.isin(arr, f.codes), f.name, f"must be one of {list(f.codes)}")

    def _text(self, checks: _Checks, name: str, lens: np.ndarray, data: bytes) -> np.ndarray:
        lens64 = lens.astype(np.int64)
        checks.add(lens64 > self.text_bytes_max, name, f"longer than {self.text_bytes_max} bytes")
        ends = np.cumsum(lens64)
        starts = ends - lens64
        if data:
            nul = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
            if len(nul):
                m = np.zeros(len(lens), dtype=bool)
                m[np.searchsorted(ends, nul, side="right")] = True
                checks.add(m, name, "contains a NUL byte")
            checks.add(_utf8_bad(data, starts, lens64), name, "not valid UTF-8")
        return unpack_text(lens64, data, TEXT_DTYPE.itemsize)

    def _coords(
        self, checks: _Checks, kind: str, fields: tuple[WireField, ...], out: dict
    ) -> None:
        spec = self.schema.coords.get(kind)
        if spec is None:
            return
        by_name = {f.name: f.engine for f in fields}
        ids = out[by_name[spec[0]]].astype(np.int64)
        known = ids >= 0
        safe = np.where(known, ids, 0)
        x, y = out[by_name[spec[1]]], out[by_name[spec[2]]]
        checks.add(known & (x >= self.widths[safe]), spec[1], "outside the map's width")
        checks.add(known & (y >= self.heights[safe]), spec[2], "outside the map's height")

    # -- rows ---------------------------------------------------------------------------
    def _rows(
        self, msg: dict[str, Any], kind: str, fields: tuple[WireField, ...], seq: int | None
    ) -> DecodedBatch:
        rows = msg["rows"]
        if not isinstance(rows, list):
            raise ProtocolError(ErrorCode.BAD_FIELD, "rows must be an array", field="rows",
                                seq=seq)
        n = len(rows)
        if n > self.events_per_batch_max:
            raise ProtocolError(
                ErrorCode.BATCH_TOO_LARGE,
                f"{n} events > events_per_batch_max={self.events_per_batch_max}",
                field="rows", seq=seq,
            )
        k = len(fields)
        checks = _Checks(n)
        shape_bad = np.fromiter(
            (not (type(r) is list and len(r) == k) for r in rows), dtype=bool, count=n
        )
        ok_rows = rows
        if shape_bad.any():
            checks.add(shape_bad, "(row)", f"must be an array of {k} values")
            filler = [None] * k
            ok_rows = [filler if b else r for r, b in zip(rows, shape_bad.tolist(), strict=True)]
        out: dict[str, np.ndarray] = {}
        for j, f in enumerate(fields):
            col = [r[j] for r in ok_rows]
            if f.kind == "int":
                out[f.engine] = self._row_ints(checks, f, col)
            elif f.kind == "map":
                out[f.engine] = self._row_maps(checks, f, col)
            else:
                ok = np.fromiter((type(v) is str for v in col), dtype=bool, count=n)
                checks.add(~ok, f.name, "must be a string")
                enc = [v.encode() if type(v) is str else b"" for v in col]
                lens, data = pack_text_bytes(enc)
                out[f.engine] = self._text(checks, f.name, lens, data)
        self._coords(checks, kind, fields, out)

        def raw_event(i: int) -> bytes:
            return msgpack.packb(rows[i], use_bin_type=True)

        return self._finish(kind, n, out, checks, raw_event)

    @staticmethod
    def _row_ints(checks: _Checks, f: WireField, col: list) -> np.ndarray:
        n = len(col)
        reason = f"must be an integer in [{f.lo}, {f.hi}]"
        # set(map(type, ...)) runs in C: the fast path needs every value to be a plain int
        # (bool is not an integer here, although numpy would take it as one).
        if set(map(type, col)) <= {int}:
            try:
                a = np.array(col, dtype=np.int64 if f.lo < 0 else np.uint64)
            except OverflowError:
                a = None
            if a is not None:
                bad = (a < f.lo) | (a > f.hi)
                checks.add(bad, f.name, reason)
                if f.codes:
                    checks.add(~bad & ~np.isin(a, f.codes), f.name,
                               f"must be one of {list(f.codes)}")
                return np.where(bad, f.lo, a).astype(f.dtype.newbyteorder("="))
        ok = np.fromiter(
            (type(v) is int and f.lo <= v <= f.hi for v in col), dtype=bool, count=n
        )
        checks.add(~ok, f.name, reason)
        out = np.array(
            [v if o else f.lo for v, o in zip(col, ok.tolist(), strict=True)],
            dtype=f.dtype.newbyteorder("="),
        )
        if f.codes:
            checks.add(ok & ~np.isin(out, f.codes), f.name, f"must be one of {list(f.codes)}")
        return out

    def _row_maps(self, checks: _Checks, f: WireField, col: list) -> np.ndarray:
        n = len(col)
        if n and set(map(type, col)) == {str}:
            uniq, inv = np.unique(np.array(col), return_inverse=True)
            lut = np.array([self.name_to_id.get(str(u), -1) for u in uniq], dtype=np.int16)
            ids = lut[inv.reshape(-1)]
            checks.add(ids < 0, f.name, "unknown map")
            return ids
        is_str = np.fromiter((type(v) is str for v in col), dtype=bool, count=n)
        checks.add(~is_str, f.name, "must be a map name (string)")
        ids = np.fromiter(
            (self.name_to_id.get(v, -1) if type(v) is str else 0 for v in col),
            dtype=np.int16, count=n,
        )
        checks.add(is_str & (ids < 0), f.name, "unknown map")
        return ids

    # -- common -------------------------------------------------------------------------
    @staticmethod
    def _finish(
        kind: str, n: int, out: dict[str, np.ndarray], checks: _Checks,
        raw_event: Callable[[int], bytes],
    ) -> DecodedBatch:
        invalid = np.flatnonzero(checks.fail >= 0)
        if len(invalid):
            keep = checks.fail < 0
            out = {k: v[keep] for k, v in out.items()}
            codes = checks.fail[invalid].tolist()
            fields = [checks.what[c][0] for c in codes]
            reasons = [checks.what[c][1] for c in codes]
        else:
            fields, reasons = [], []
        return DecodedBatch(kind, n, out, invalid, fields, reasons, raw_event)


def pack_text_bytes(enc: list[bytes]) -> tuple[np.ndarray, bytes]:
    """Already-encoded text values as (int64 lengths, concatenated bytes)."""
    lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
    return lens, b"".join(enc)


# -- encoders used by clients (events, results) ---------------------------------------------
def encode_columns(
    t: str,
    seq: int,
    kind: str | None,
    columns: dict[str, Any],
    maps: Sequence[str] = (),
    *,
    tick: int = 0,
    schema: WireSchema = WIRE_V1,
) -> bytes:
    """An ``events`` (or ``results``) batch in columnar form.

    ``columns`` holds wire fields by wire name: integers as arrays, map fields as ``<i2``
    indexes into ``maps``, text as a fixed-width ``S`` array or a list of str. ``tick`` > 0
    stamps the batch for that engine tick (lockstep, PROTOCOL.md section 14). ``schema``
    knows the kinds (protocol v1 by default).
    """
    fields = schema.result if t == RESULTS else schema.events[kind]  # type: ignore[index]
    n = None
    cols: dict[str, bytes] = {}
    for f in fields:
        v = columns[f.name]
        if f.kind == "text":
            lens, data = pack_text(v)
            cols[f"{f.name}_len"] = lens.astype("<u2").tobytes()
            cols[f.name] = data
            m = len(lens)
        else:
            arr = np.asarray(v)
            cols[f.name] = arr.astype(f.dtype, copy=False).tobytes()
            m = len(arr)
        if n is None:
            n = m
        elif m != n:
            raise ValueError(f"{kind}: column {f.name} has {m} values, others {n}")
    msg: dict[str, Any] = {"t": t, "seq": seq}
    if tick:
        msg["tick"] = tick
    if t == EVENTS:
        msg["kind"] = kind
    msg["n"] = n or 0
    if any(f.kind == "map" for f in fields):
        msg["maps"] = list(maps)
    msg["cols"] = cols
    return pack(msg)


def encode_rows(
    t: str, seq: int, kind: str | None, rows: list[list[Any]], *, tick: int = 0
) -> bytes:
    """An ``events`` (or ``results``) batch in row form (maps as names, text as str)."""
    msg: dict[str, Any] = {"t": t, "seq": seq}
    if tick:
        msg["tick"] = tick
    if t == EVENTS:
        msg["kind"] = kind
    msg["rows"] = rows
    return pack(msg)


def columns_to_rows(
    t: str, kind: str | None, columns: dict[str, Any], maps: Sequence[str],
    schema: WireSchema = WIRE_V1,
) -> list[list[Any]]:
    """Wire columns (as given to ``encode_columns``) as rows; one list per field, zipped."""
    fields = schema.result if t == RESULTS else schema.events[kind]  # type: ignore[index]
    per_field = []
    for f in fields:
        v = columns[f.name]
        if f.kind == "text":
            if isinstance(v, np.ndarray) and v.dtype.kind == "S":
                per_field.append([b.decode("utf-8", "replace") for b in v.tolist()])
            else:
                per_field.append([s if isinstance(s, str) else bytes(s).decode() for s in v])
        elif f.kind == "map":
            names = np.asarray(list(maps) or [""], dtype=object)
            per_field.append(names[np.asarray(v, dtype=np.int64)].tolist())
        else:
            per_field.append(np.asarray(v).tolist())
    return [list(r) for r in zip(*per_field, strict=True)]


# -- actions (engine -> map server) -----------------------------------------------------------
def encode_actions(
    tick: int,
    expires_tick: int,
    kinds: dict[str, dict[str, np.ndarray]],
    map_names: Sequence[str],
    schema: WireSchema = WIRE_V1,
) -> bytes:
    """One ``actions`` frame from engine columns (map_id -> dictionary of names).

    Kinds go out in ``schema``'s kind order (the world's; protocol v1 by default).
    """
    used = [
        cols[f.engine]
        for k, cols in kinds.items()
        for f in schema.actions[k]
        if f.kind == "map" and len(cols[f.engine])
    ]
    uniq = np.unique(np.concatenate(used)) if used else np.zeros(0, dtype=np.int16)
    uniq = uniq[uniq >= 0]
    maps = [map_names[int(i)] for i in uniq]
    body: dict[str, Any] = {}
    for kind, fields in schema.actions.items():
        cols = kinds.get(kind)
        if cols is None or len(cols["action_id"]) == 0:
            continue
        n = len(cols["action_id"])
        wire: dict[str, Any] = {"n": n}
        for f in fields:
            v = cols[f.engine]
            if f.kind == "text":
                lens, data = pack_text(v)
                wire[f"{f.name}_len"] = lens.tobytes()
                wire[f.name] = data
            elif f.kind == "map":
                idx = np.searchsorted(uniq, v).astype("<i2")
                wire[f.name] = np.where(v < 0, -1, idx).astype("<i2").tobytes()
            else:
                wire[f.name] = np.asarray(v).astype(f.dtype, copy=False).tobytes()
        body[kind] = wire
    return pack({"t": ACTIONS, "tick": tick, "expires_tick": expires_tick, "maps": maps,
                 "kinds": body})


@dataclass
class ActionsFrame:
    """A decoded ``actions`` frame: per kind, wire columns (map fields index ``maps``),
    executed in ``action_id`` order across kinds (``in_order``; PROTOCOL.md section 8);
    ``unsupported``: ids of its actions of kinds the client does not know, which a lockstep
    map server answers ``unsupported`` in the frame's turn (``BridgeClient``); ``reflected``:
    likewise, those the join sync already reflects, answered ``done``."""

    tick: int
    expires_tick: int
    maps: list[str]
    kinds: dict[str, dict[str, np.ndarray]]
    unsupported: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: ids of actions the last join sync already reflects (section 16): a lockstep map
    #: server answers them ``done`` in the frame's turn, without executing them
    reflected: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def count(self) -> int:
        return sum(len(c["action_id"]) for c in self.kinds.values())

    def in_order(self) -> list[tuple[str, int]]:
        """(kind, row) of each action in ``action_id`` order across kinds: the order a map
        server executes them in (PROTOCOL.md section 8; the frame holds them by kind)."""
        kinds = list(self.kinds)
        if not kinds:
            return []
        ids = np.concatenate([self.kinds[k]["action_id"] for k in kinds])
        which = np.concatenate([np.full(len(self.kinds[k]["action_id"]), i, np.int64)
                                for i, k in enumerate(kinds)])
        row = np.concatenate([np.arange(len(self.kinds[k]["action_id"])) for k in kinds])
        by_id = np.argsort(ids, kind="stable")
        return [(kinds[i], j) for i, j in zip(which[by_id].tolist(), row[by_id].tolist(),
                                              strict=True)]

    def map_names(self, kind: str, field_name: str = "map") -> np.ndarray:
        """Map names of a map field ('' for -1, i.e. every map)."""
        names = np.array([*self.maps, ""], dtype=object)
        idx = self.kinds[kind][field_name].astype(np.int64)
        return names[np.where(idx < 0, len(self.maps), idx)]


def decode_actions(msg: dict[str, Any], text_bytes_max: int = limits.text_bytes_max,
                   schema: WireSchema = WIRE_V1) -> ActionsFrame:
    """Check and decode an ``actions`` message (client side). Raises ProtocolError."""
    tick = get_int(msg, "tick", 0, 2**63 - 1)
    expires = get_int(msg, "expires_tick", 0, 2**63 - 1)
    maps = get_str_list(msg, "maps", 32767, MAP_NAME_WIRE_BYTES_MAX)
    body = msg.get("kinds")
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "kinds must be a map", field="kinds")
    kinds: dict[str, dict[str, np.ndarray]] = {}
    for kind, wire in body.items():
        if kind not in schema.actions or not isinstance(wire, dict):
            raise ProtocolError(ErrorCode.UNKNOWN_KIND,
                                f"unknown action kind {describe(kind, 40)}",
                                field="kinds")
        kinds[kind] = _decode_columns(wire, kind, schema.actions[kind], len(maps),
                                      text_bytes_max, map_min=-1, label=kind)
    return ActionsFrame(tick, expires, maps, kinds)


def _decode_columns(wire: dict[str, Any], kind: str, fields: Any, n_maps: int,
                    text_bytes_max: int, *, map_min: int, label: str) -> dict[str, np.ndarray]:
    """One kind's columns of an ``actions`` or ``sync`` message, each checked: ``n`` rows,
    text lengths that add up, map indexes in [``map_min``, ``n_maps``) (-1: every map, only
    for actions). ``label`` names the kind in errors."""
    n = get_int(wire, "n", 0, limits.actions_per_tick_max)
    cols: dict[str, np.ndarray] = {}
    for f in fields:
        if f.kind == "text":
            lens = EventDecoder._bin(wire, f"{f.name}_len", f.dtype, n, None)
            data = wire.get(f.name)
            if not isinstance(data, bytes) or len(data) != int(lens.sum(dtype=np.int64)):
                raise ProtocolError(ErrorCode.BAD_FIELD, f"{kind}.{f.name}: bad text bytes",
                                    field=f.name)
            cols[f.name] = unpack_text(lens.astype(np.int64), data, text_bytes_max)
            continue
        if f.name not in wire:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{label}: missing {f.name}", field=f.name)
        cols[f.name] = EventDecoder._bin(wire, f.name, f.dtype, n, None)
        if f.kind == "map" and n and (
            (cols[f.name] < map_min).any() or (cols[f.name] >= n_maps).any()
        ):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{label}.map index out of range",
                                field=f.name)
    return cols


# -- the join sync (PROTOCOL.md section 16) ----------------------------------------------------
def _sync_len(cols: dict[str, np.ndarray]) -> int:
    return len(next(iter(cols.values()))) if cols else 0


def encode_sync(
    tick: int,
    kinds: dict[str, dict[str, np.ndarray]],
    map_names: Sequence[str],
    schema: WireSchema = WIRE_V1,
    *,
    rows_per_frame: int = limits.actions_per_tick_max,
) -> list[bytes]:
    """The ``sync`` frames of one sync: every row of ``kinds`` (engine columns of action
    kinds, no ``action_id``, plus ``SYNC_EXTRA``), at most ``rows_per_frame`` rows a frame,
    kinds in ``schema``'s order; always at least one frame (an empty sync says: nothing)."""
    ordered = {k: kinds[k] for k in schema.actions if k in kinds and _sync_len(kinds[k])}
    parts: list[dict[str, dict[str, np.ndarray]]] = []
    cur: dict[str, dict[str, np.ndarray]] = {}
    room = rows_per_frame
    for kind, cols in ordered.items():
        n, start = _sync_len(cols), 0
        while start < n:
            take = min(room, n - start)
            cur[kind] = {c: v[start : start + take] for c, v in cols.items()}
            start += take
            room -= take
            if room == 0:
                parts.append(cur)
                cur, room = {}, rows_per_frame
    if cur or not parts:
        parts.append(cur)
    out = []
    for i, part in enumerate(parts):
        fields = {k: sync_fields(schema, k) for k in part}
        used = [cols[f.engine] for k, cols in part.items() for f in fields[k]
                if f.kind == "map" and len(cols[f.engine])]
        uniq = np.unique(np.concatenate(used)) if used else np.zeros(0, dtype=np.int16)
        uniq = uniq[uniq >= 0]
        body: dict[str, Any] = {}
        for kind, cols in part.items():
            wire: dict[str, Any] = {"n": _sync_len(cols)}
            for f in fields[kind]:
                v = cols[f.engine]
                if f.kind == "text":
                    lens, data = pack_text(v)
                    wire[f"{f.name}_len"] = lens.tobytes()
                    wire[f.name] = data
                elif f.kind == "map":
                    idx = np.searchsorted(uniq, v).astype("<i2")
                    wire[f.name] = np.where(v < 0, -1, idx).astype("<i2").tobytes()
                else:
                    wire[f.name] = np.asarray(v).astype(f.dtype, copy=False).tobytes()
            body[kind] = wire
        out.append(pack({"t": SYNC, "tick": tick, "part": i, "parts": len(parts),
                         "maps": [map_names[int(m)] for m in uniq], "kinds": body}))
    return out


@dataclass
class SyncFrame:
    """One decoded ``sync`` frame: per kind, wire columns (map fields index ``maps``);
    ``unknown``: kinds this client does not know (their rows are skipped)."""

    tick: int
    part: int
    parts: int
    maps: list[str]
    kinds: dict[str, dict[str, np.ndarray]]
    unknown: list[str] = field(default_factory=list)

    def count(self) -> int:
        return sum(_sync_len(c) for c in self.kinds.values())


def decode_sync(msg: dict[str, Any], text_bytes_max: int = limits.text_bytes_max,
                schema: WireSchema = WIRE_V1) -> SyncFrame:
    """Check and decode a ``sync`` message (client side). Raises ProtocolError."""
    tick = get_int(msg, "tick", 0, 2**63 - 1)
    parts = get_int(msg, "parts", 1, 2**31 - 1)
    part = get_int(msg, "part", 0, parts - 1)
    maps = get_str_list(msg, "maps", 32767, MAP_NAME_WIRE_BYTES_MAX)
    body = msg.get("kinds")
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "kinds must be a map", field="kinds")
    kinds: dict[str, dict[str, np.ndarray]] = {}
    unknown: list[str] = []
    for kind, wire in body.items():
        if not isinstance(wire, dict):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"sync kind {describe(kind, 40)} must be "
                                "a map", field="kinds")
        if kind not in schema.actions:
            unknown.append(str(kind))
            continue
        kinds[kind] = _decode_columns(wire, kind, sync_fields(schema, kind), len(maps),
                                      text_bytes_max, map_min=0, label=f"sync {kind}")
    return SyncFrame(tick, part, parts, maps, kinds, unknown)
