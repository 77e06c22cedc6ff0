"""Event and action kinds, each declared once; columns, wire, checks and docs derive from it.

A kind is a name and an ordered tuple of ``Field``s. A field says everything there is to
know about one column: its engine name and dtype, its wire name and wire kind (``int``,
``float``, ``map``, ``text``), its inclusive bounds, named codes and what it means. From
that one declaration Norn derives

- the engine's columns: ``world.events[kind]``, the ``ActionBuffer`` schema, the column
  bytes a journal frame holds (``engine/recorder.py``);
- the wire schema and its validation at the bridge edge (``bridge/protocol.py``,
  ``bridge/codec.py``), including "this event's cell lies inside its map";
- an action's generic safety checks at emit time (``check_action``: dtype ranges, bounds,
  closed codes, text lengths, known maps, walkable cells); a model adds its own checks
  once (``World.add_action_check``);
- the kind tables of ``bridge/PROTOCOL.md`` (``python -m norn.bridge.golden --write``).

A world's kinds live in a ``Kinds`` registry: rAthena's protocol-v1 vocabulary
(``engine/rathena.py``) first, always, in its fixed order, so event ids in journals and
action ids never depend on which plugins a world has; a plugin declares its own kinds in
its own package and registers them in its build (``World.consumes``, ``World.emits``),
appended after. Adding an event kind end to end therefore touches one package.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from norn.engine import limits
from norn.engine.errors import DefinitionError, NornBug

if TYPE_CHECKING:
    from norn.engine.geography import Geography

#: Fixed-width engine dtype of text columns (rAthena's chat size).
TEXT_DTYPE = np.dtype(f"S{limits.text_bytes_max}")
#: Largest value of an ``i8`` id on the wire (action ids, NPC handles).
I8_MAX = 2**63 - 1
INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1
KIND_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: Fields one action kind may keep in the action log (``ActionKind.log``): key and value.
ACTION_LOG_FIELDS_MAX = 2

WireKind = Literal["int", "float", "map", "text"]
#: ``(column name, dtype)`` pairs in column order: how the engine stores a kind.
Schema = tuple[tuple[str, np.dtype], ...]


class InvalidAction(NornBug):
    """A rule produced an action outside its kind's bounds (a bug in the rules: exit 4)."""


@dataclass(frozen=True)
class Field:
    """One column of a kind, as the engine stores it and as the wire carries it.

    ``lo``/``hi`` are inclusive: for ``int`` and ``float`` the value, for ``text`` its
    UTF-8 length in bytes, for ``map`` the map id (``lo`` = -1: "every map" is allowed).
    ``codes`` name values (documentation, and the only valid values when ``closed``).
    """

    name: str
    dtype: np.dtype
    kind: WireKind
    wire: str
    lo: int | float
    hi: int | float
    doc: str = ""
    codes: tuple[tuple[int, str], ...] = ()
    closed: bool = False

    def __post_init__(self) -> None:
        dt = np.dtype(self.dtype)
        object.__setattr__(self, "dtype", dt)
        where = f"field {self.name!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", self.name) or not re.fullmatch(
            r"[a-z][a-z0-9_]{0,31}", self.wire
        ):
            raise DefinitionError(f"{where}: names are [a-z][a-z0-9_]{{0,31}} (wire {self.wire!r})")
        if self.kind == "int":
            if dt.kind not in "iu":
                raise DefinitionError(f"{where}: an int field needs an integer dtype, not {dt}")
            info = np.iinfo(dt)
            if not info.min <= self.lo <= self.hi <= info.max:
                raise DefinitionError(
                    f"{where}: bounds [{self.lo}, {self.hi}] outside {dt} [{info.min}, {info.max}]"
                )
        elif self.kind == "float":
            if dt.kind != "f" or not self.lo <= self.hi:
                raise DefinitionError(f"{where}: a float field needs a float dtype and lo <= hi")
        elif self.kind == "map":
            if dt != np.int16 or self.lo not in (-1, 0):
                raise DefinitionError(f"{where}: a map field is int16 with lo 0 or -1 (every map)")
        elif self.kind == "text":
            if dt.kind != "S" or not 0 <= self.lo <= self.hi <= dt.itemsize:
                raise DefinitionError(f"{where}: a text field is bytes with 0 <= lo <= hi <= width")
        else:
            raise DefinitionError(f"{where}: unknown wire kind {self.kind!r}")
        if self.closed and not self.codes:
            raise DefinitionError(f"{where}: closed codes need codes")

    @property
    def wire_dtype(self) -> np.dtype:
        """The little-endian dtype of the wire column (text: its ``<name>_len`` column)."""
        if self.kind == "map":
            return np.dtype("<i2")
        if self.kind == "text":
            return np.dtype("<u2")
        return self.dtype.newbyteorder("<")

    def wire_type(self) -> str:
        """The wire type as PROTOCOL.md writes it: ``u4``, ``i2``, ``f4``, ``map``, ``text``."""
        if self.kind in ("map", "text"):
            return self.kind
        return f"{self.dtype.kind}{self.dtype.itemsize}"


def int_field(
    name: str,
    dtype: Any,
    lo: int | None = None,
    hi: int | None = None,
    *,
    wire: str | None = None,
    doc: str = "",
    codes: Mapping[int, str] | None = None,
    closed: bool = False,
) -> Field:
    """An integer column; bounds default to the dtype's range."""
    info = np.iinfo(np.dtype(dtype))
    return Field(
        name, np.dtype(dtype), "int", wire or name,
        info.min if lo is None else lo, info.max if hi is None else hi, doc,
        tuple(sorted((codes or {}).items())), closed,
    )


def float_field(
    name: str, dtype: Any = np.float32, lo: float = -math.inf, hi: float = math.inf, *,
    wire: str | None = None, doc: str = "",
) -> Field:
    """A float column (raw little-endian IEEE 754 on the wire); values must be finite."""
    return Field(name, np.dtype(dtype), "float", wire or name, lo, hi, doc)


def map_field(
    name: str = "map_id", *, wire: str | None = None, every: bool = False, doc: str = ""
) -> Field:
    """A map id (int16 index into the world's maps); on the wire a map name.

    The wire name drops ``_id`` (``to_map_id`` travels as ``to_map``). ``every`` allows -1,
    "every map" (a broadcast).
    """
    return Field(
        name, np.dtype(np.int16), "map", wire or name.removesuffix("_id"),
        -1 if every else 0, INT16_MAX, doc,
    )


def text_field(name: str = "text", *, lo: int = 0, doc: str = "") -> Field:
    """UTF-8 text of ``lo`` to ``text_bytes_max`` bytes (fixed-width bytes in the engine)."""
    return Field(name, TEXT_DTYPE, "text", name, lo, limits.text_bytes_max, doc)


def _check_fields(what: str, name: str, fields: tuple[Field, ...]) -> None:
    if not KIND_NAME_RE.fullmatch(name):
        raise DefinitionError(f"{what} kind {name!r}: names are [a-z][a-z0-9_]{{0,31}}")
    for attr in ("name", "wire"):
        seen = [getattr(f, attr) for f in fields]
        if len(set(seen)) != len(seen):
            raise DefinitionError(f"{what} kind {name!r}: field {attr}s repeat: {seen}")


@dataclass(frozen=True)
class EventKind:
    """Something that happened in the game, as a batch of columns.

    ``arrives``: how a map server sends it (``events`` batches, the ``results`` message) or
    ``none`` (never from the wire: admin tools, the engine itself). ``inside``: engine
    names of (map, x, y) whose cell must lie inside that map, checked at the edge.
    """

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    arrives: Literal["events", "results", "none"] = "events"
    inside: tuple[str, str, str] | None = None

    def __post_init__(self) -> None:
        _check_fields("event", self.name, self.fields)
        names = [f.name for f in self.fields]
        if self.inside is not None:
            by = {f.name: f for f in self.fields}
            m, x, y = self.inside
            if m not in by or by[m].kind != "map" or x not in by or y not in by:
                raise DefinitionError(
                    f"event kind {self.name!r}: inside={self.inside} must name a map field and "
                    f"two coordinate fields of {names}"
                )

    @property
    def schema(self) -> Schema:
        return tuple((f.name, f.dtype) for f in self.fields)

    def empty(self) -> dict[str, np.ndarray]:
        """Zero-length columns: what a system reads when no such event came."""
        return {f.name: np.empty(0, dtype=f.dtype) for f in self.fields}


#: Every action's first column: ``tick << 24 | position`` (``engine/actions.py``).
ACTION_ID = int_field("action_id", np.int64, 0, I8_MAX)


@dataclass(frozen=True)
class ActionKind:
    """What the engine asks a game server to do, as a batch of columns.

    ``fields`` exclude ``action_id``, which every kind has first. ``cell``: engine names of
    (map, x, y) that must be a walkable cell of that map (checked against the world's
    ``geography`` at emit time). ``log``: up to two integer fields (target, value) the
    action log keeps, so a later ``action_result`` can be traced to what it was about.
    """

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    cell: tuple[str, str, str] | None = None
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_fields("action", self.name, (ACTION_ID, *self.fields))
        by = {f.name: f for f in self.fields}
        if self.cell is not None:
            m, x, y = self.cell
            if m not in by or by[m].kind != "map" or x not in by or y not in by:
                raise DefinitionError(f"action kind {self.name!r}: cell={self.cell} names no "
                                      "map field and two coordinate fields")
        if len(self.log) > ACTION_LOG_FIELDS_MAX or any(
            n not in by or by[n].kind not in ("int", "map") for n in self.log
        ):
            raise DefinitionError(
                f"action kind {self.name!r}: log={self.log} must name at most "
                f"{ACTION_LOG_FIELDS_MAX} integer fields"
            )

    @property
    def schema(self) -> Schema:
        """Columns excluding ``action_id`` (the buffer adds it when numbering)."""
        return tuple((f.name, f.dtype) for f in self.fields)

    @property
    def wire_fields(self) -> tuple[Field, ...]:
        return (ACTION_ID, *self.fields)


# -- the registry --------------------------------------------------------------------------
class Kinds:
    """A world's event and action kinds, in id order, and who consumes or emits each.

    ``event_schemas`` and ``action_schemas`` are live views (name -> ``Schema``) that the
    input queue and the action buffer read. Registration ends at ``freeze`` (world build):
    from then on ids are fixed.
    """

    def __init__(self) -> None:
        self.events: dict[str, EventKind] = {}
        self.actions: dict[str, ActionKind] = {}
        self.event_schemas: dict[str, Schema] = {}
        self.action_schemas: dict[str, Schema] = {}
        self.consumers: dict[str, list[str]] = {}
        self.emitters: dict[str, list[str]] = {}
        self.frozen = False

    @classmethod
    def protocol_v1(cls) -> Kinds:
        """rAthena's protocol-v1 vocabulary, every kind declared by it, in its fixed order."""
        from norn.engine import rathena

        kinds = cls()
        for e in rathena.EVENT_KINDS:
            kinds.add_event(e)
        for a in rathena.ACTION_KINDS:
            kinds.add_action(a)
        return kinds

    def _open(self, what: str) -> None:
        if self.frozen:
            raise DefinitionError(f"{what}: kinds are fixed once the world is built")

    def add_event(self, kind: EventKind, by: str = "") -> EventKind:
        """Register ``kind`` (again is fine if it is the same declaration)."""
        have = self.events.get(kind.name)
        if have is not None:
            if have != kind:
                raise DefinitionError(
                    f"event kind {kind.name!r} declared twice with different fields"
                    + (f" (again by plugin {by!r})" if by else "")
                )
            return have
        self._open(f"event kind {kind.name!r}")
        self.events[kind.name] = kind
        self.event_schemas[kind.name] = kind.schema
        return kind

    def add_action(self, kind: ActionKind, by: str = "") -> ActionKind:
        have = self.actions.get(kind.name)
        if have is not None:
            if have != kind:
                raise DefinitionError(
                    f"action kind {kind.name!r} declared twice with different fields"
                    + (f" (again by plugin {by!r})" if by else "")
                )
            return have
        self._open(f"action kind {kind.name!r}")
        self.actions[kind.name] = kind
        self.action_schemas[kind.name] = kind.schema
        return kind

    def consume(self, plugin: str, kinds: Iterable[str | EventKind]) -> None:
        """``plugin`` reads these event kinds (a declaration registers a new kind)."""
        for k in kinds:
            name = self.add_event(k, plugin).name if isinstance(k, EventKind) else k
            if name not in self.events:
                raise DefinitionError(
                    f"plugin {plugin!r} consumes unknown event kind {name!r}; declare it "
                    f"(an EventKind) or use one of {sorted(self.events)}"
                )
            users = self.consumers.setdefault(name, [])
            if plugin not in users:
                users.append(plugin)

    def emit_by(self, plugin: str, kinds: Iterable[str | ActionKind]) -> None:
        """``plugin`` emits these action kinds (a declaration registers a new kind)."""
        for k in kinds:
            name = self.add_action(k, plugin).name if isinstance(k, ActionKind) else k
            if name not in self.actions:
                raise DefinitionError(
                    f"plugin {plugin!r} emits unknown action kind {name!r}; declare it "
                    f"(an ActionKind) or use one of {sorted(self.actions)}"
                )
            users = self.emitters.setdefault(name, [])
            if plugin not in users:
                users.append(plugin)

    def freeze(self) -> None:
        self.frozen = True

    def event_id(self, name: str) -> int:
        return list(self.events).index(name)

    def action_id(self, name: str) -> int:
        return list(self.actions).index(name)

    def empty_events(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: k.empty() for name, k in self.events.items()}

    def journal_table(self) -> list[list[Any]]:
        """The event kinds as a journal header records them: ``[name, [[col, dtype]...]]``.

        Tick frames number input kinds by their index here, so a replay maps them by name
        whatever kinds the code it runs on declares.
        """
        return [[n, [[c, dt.str] for c, dt in k.schema]] for n, k in self.events.items()]


@dataclass(frozen=True)
class EventTable:
    """Event kinds by journal id: a journal header's ``kinds`` (or protocol v1's)."""

    names: tuple[str, ...]
    schemas: tuple[Schema, ...]
    ids: dict[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.ids.update({n: i for i, n in enumerate(self.names)})

    @classmethod
    def of(cls, kinds: Kinds) -> EventTable:
        return cls(tuple(kinds.events), tuple(k.schema for k in kinds.events.values()))

    @classmethod
    def from_journal(cls, table: list[list[Any]]) -> EventTable:
        return cls(
            tuple(str(n) for n, _ in table),
            tuple(tuple((str(c), np.dtype(dt)) for c, dt in cols) for _, cols in table),
        )


# -- emit-time checks ----------------------------------------------------------------------
def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def typed_columns(kind: ActionKind, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``cols`` as the kind's dtypes; an integer that does not fit its dtype is refused."""
    want = [f.name for f in kind.fields]
    missing = [n for n in want if n not in cols]
    if missing:
        raise InvalidAction(f"{kind.name}: missing column {missing[0]!r}")
    extra = sorted(set(cols) - set(want))
    if extra:
        raise InvalidAction(f"{kind.name}: unknown columns {extra}")
    typed = {}
    for f in kind.fields:
        raw = np.atleast_1d(np.asarray(cols[f.name]))
        if f.dtype.kind in "iu" and raw.size and raw.dtype.kind in "iu":
            info = np.iinfo(f.dtype)
            if int(raw.min()) < info.min or int(raw.max()) > info.max:
                raise InvalidAction(f"{kind.name}.{f.name}: value outside {f.dtype} range")
        typed[f.name] = np.ascontiguousarray(raw, dtype=f.dtype)
    n = {len(v) for v in typed.values()}
    if len(n) > 1:
        raise InvalidAction(f"{kind.name}: columns have different lengths {sorted(n)}")
    return typed


def check_action(
    kind: ActionKind, cols: Mapping[str, np.ndarray], geography: Geography | None
) -> str | None:
    """The first way the typed batch breaks its kind's declared bounds, or None.

    Map fields and cells are checked against ``geography`` (the world's maps); without
    one, a kind with map fields cannot be checked, which ``World.build`` refuses.
    """
    for f in kind.fields:
        v = cols[f.name]
        if not len(v):
            return None
        if f.kind == "int":
            if f.closed:
                ok = np.isin(v, [c for c, _ in f.codes])
                if not ok.all():
                    return f"{f.name} {int(v[_first(~ok)])} is not one of {dict(f.codes)}"
            bad = (v < f.lo) | (v > f.hi)
            if bad.any():
                return f"{f.name} {int(v[_first(bad)])} outside [{f.lo}, {f.hi}]"
        elif f.kind == "float":
            bad = ~(np.isfinite(v) & (v >= f.lo) & (v <= f.hi))
            if bad.any():
                return f"{f.name} {float(v[_first(bad)])} outside [{f.lo}, {f.hi}] or not finite"
        elif f.kind == "text":
            n = np.char.str_len(v)
            if (n < f.lo).any():
                return "empty text" if f.lo == 1 else f"{f.name} shorter than {f.lo} bytes"
            if (n > f.hi).any():
                return f"{f.name} longer than {f.hi} bytes"
        elif f.kind == "map" and geography is not None:
            m = v.astype(np.int64)
            bad = (m < f.lo) | (m >= geography.n_maps)
            if bad.any():
                return f"{f.name} {int(m[_first(bad)])} unknown"
    if kind.cell is not None and geography is not None:
        m, x, y = (cols[n] for n in kind.cell)
        return geography.cell_problem(m, x, y)
    return None
