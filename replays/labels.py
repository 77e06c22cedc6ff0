"""Readable columns: map, item, faction and hazard names instead of raw ids.

A table holds ids (``map`` 3, ``faction`` 1, ``item`` 12); a designer reads names. The
names come from the world's resources, which the model provides (``geography``,
``items``, ``factions``, ``hazard_types``, ``ledger``), so the labels of a recorded run
are exactly the ones its scenario built. Which column means which vocabulary is declared
once here, by column name (with a few per-table entries), because the engine's tables
carry dtypes, not meanings; a model with its own names provides a ``labels`` resource (a
dict with the keys of ``COLUMNS``/``TABLE_COLUMNS``/``AXES``/``ROWS``) that extends them.

Named columns become Arrow dictionary arrays (pandas: categoricals): the ids stay the
indices, so converting a 100k-row table costs one array, never a loop over rows; an id
outside the vocabulary (``-1`` for "none") is null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

#: Vocabularies that index columns by position (an id is an index into the names).
#: ``item_id`` is special: a rAthena item id, mapped through the item catalogue.
COLUMNS: dict[str, str] = {
    "map": "map", "map_id": "map", "town": "map", "home": "map", "goal": "map",
    "from_map_id": "map", "to_map_id": "map",
    "faction": "faction", "owner": "faction",
    "item": "item", "carry_item": "item", "item_id": "item_id",
    "hazard_type": "hazard_type",
}
#: Per-table meanings that a bare column name cannot carry.
TABLE_COLUMNS: dict[tuple[str, str], str] = {
    ("hazard", "type"): "hazard_type",
    ("npc", "state"): "npc_state",
    ("reputation", "faction"): "faction",
}
#: Vector columns whose axis is a vocabulary: ``influence`` (one float per faction) becomes
#: ``influence.<faction name>``.
AXES: dict[tuple[str, str], str] = {
    ("territory", "influence"): "faction",
    ("territory", "deeds"): "faction",
    ("faction", "diplomacy"): "faction",
    ("hazard_stats", "started"): "hazard_type",
    ("hazard_stats", "ended"): "hazard_type",
    ("hazard_stats", "peak"): "hazard_type",
    ("ledger", "sources"): "ledger_source",
    ("ledger", "sinks"): "ledger_sink",
    ("npc", "needs"): "need",
    ("npc", "traits"): "trait",
}
#: Tables with one row per entry of a vocabulary (row ``m`` of ``territory`` is map ``m``).
ROWS: dict[str, str] = {
    "territory": "map", "hazard_map": "map", "npc_site": "map", "faction": "faction",
}
#: Engine bookkeeping columns a reader does not want by default.
HIDDEN = ("alive", "generation")


@dataclass
class Vocabulary:
    """Names per vocabulary, gathered from a world's resources (configuration, not state)."""

    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    item_ids: np.ndarray | None = None  # rAthena item id per catalogue index
    columns: dict[str, str] = field(default_factory=lambda: dict(COLUMNS))
    table_columns: dict[tuple[str, str], str] = field(default_factory=lambda: dict(TABLE_COLUMNS))
    axes: dict[tuple[str, str], str] = field(default_factory=lambda: dict(AXES))
    rows: dict[str, str] = field(default_factory=lambda: dict(ROWS))

    @classmethod
    def of(cls, world: Any) -> Vocabulary:
        """The names ``world``'s model provides; vocabularies it lacks stay ids."""
        from norn.rules.utility import STATE_NAMES

        res = world.resources
        v = cls()
        geo = res.get("geography")
        if geo is not None:
            v.names["map"] = tuple(geo.map_names)
        items = res.get("items")
        if items is not None:
            v.names["item"] = tuple(items.names)
            v.item_ids = np.asarray(items.ids, np.int64)
        fac = res.get("factions")
        if fac is not None:
            v.names["faction"] = tuple(fac.names)
        ht = res.get("hazard_types")
        if ht is not None:
            v.names["hazard_type"] = tuple(ht.names)
        ledger = res.get("ledger")
        if ledger is not None:
            v.names["ledger_source"] = tuple(ledger.sources)
            v.names["ledger_sink"] = tuple(ledger.sinks)
        if "npc" in world.tables:
            v.names["npc_state"] = tuple(STATE_NAMES)
            v.names["need"] = ("hunger", "fatigue", "social", "comfort")
            v.names["trait"] = ("courage", "greed", "sociability", "diligence")
        own = res.get("labels")
        if isinstance(own, dict):  # a model's own names and meanings
            v.names.update({k: tuple(n) for k, n in own.get("names", {}).items()})
            v.columns.update(own.get("columns", {}))
            v.table_columns.update(own.get("table_columns", {}))
            v.axes.update(own.get("axes", {}))
            v.rows.update(own.get("rows", {}))
        return v

    def meaning(self, table: str, column: str) -> str | None:
        """The vocabulary of ``table.column``, or None when it holds plain numbers."""
        voc = self.table_columns.get((table, column), self.columns.get(column))
        if voc == "item_id":
            return voc if self.item_ids is not None else None
        return voc if voc in self.names else None

    def label(self, voc: str, ids: np.ndarray) -> pa.Array:
        """``ids`` as a dictionary array over ``voc``'s names (out of range: null)."""
        ids = np.asarray(ids)
        if voc == "item_id":
            assert self.item_ids is not None
            order = np.argsort(self.item_ids, kind="stable")
            pos = np.searchsorted(self.item_ids[order], ids.astype(np.int64))
            pos_c = np.minimum(pos, max(len(order) - 1, 0))
            found = (pos < len(order)) & (self.item_ids[order][pos_c] == ids)
            idx = np.where(found, order[pos_c], -1)
            names = self.names["item"]
        else:
            if voc == "npc_state":
                ids = ids & 0x7F  # the high bit marks an NPC still being set up
            idx = ids.astype(np.int64)
            names = self.names[voc]
        bad = (idx < 0) | (idx >= len(names))
        indices = pa.array(np.where(bad, 0, idx).astype(np.int32), mask=bad)
        return pa.DictionaryArray.from_arrays(indices, pa.array(list(names), pa.string()))

    def axis_names(self, table: str, column: str, width: int) -> list[str]:
        """Sub-column names of a vector column (``influence.Prontera``, or ``col[0]``)."""
        voc = self.axes.get((table, column))
        names = self.names.get(voc or "", ())
        if voc is not None and len(names) == width:
            return [f"{column}.{n}" for n in names]
        return [f"{column}[{i}]" for i in range(width)]


def _plain(values: np.ndarray) -> pa.Array:
    """A 1-D numpy column as Arrow (fixed-width bytes become UTF-8 text)."""
    if values.dtype.kind == "S":
        return pa.array(np.char.decode(np.char.rstrip(values, b"\0"), "utf-8", "replace"),
                        pa.string())
    return pa.array(values)


def columns_table(
    columns: dict[str, np.ndarray], vocab: Vocabulary | None, table: str = "",
    *, raw: bool = False, lead: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """Arrow table of named columns: ``lead`` first (tick, slot, ...), then ``columns``.

    Vector columns are spread into one column per axis entry; a named ``*_id`` column
    drops its ``_id`` (``map_id`` becomes ``map``); with ``raw`` ids stay ids. A column
    named like a lead column is prefixed with its table (``memory_tick``).
    """
    names: list[str] = []
    arrays: list[pa.Array] = []
    for name, values in (lead or {}).items():
        names.append(name)
        arrays.append(pa.array(values))
    taken = set(lead or ())
    for name, values in columns.items():
        if name in HIDDEN:
            continue
        if name in taken:  # a table's own ``tick`` column beside the lead's
            name = f"{table or 'column'}_{name}"
        if values.ndim > 1:
            flat = values.reshape(len(values), int(np.prod(values.shape[1:])))
            sub = (vocab.axis_names(table, name, flat.shape[1]) if vocab is not None
                   else [f"{name}[{i}]" for i in range(flat.shape[1])])
            for i, sname in enumerate(sub):
                names.append(sname)
                arrays.append(_plain(np.ascontiguousarray(flat[:, i])))
            continue
        voc = None if raw or vocab is None else vocab.meaning(table, name)
        if voc is None:
            names.append(name)
            arrays.append(_plain(values))
        else:  # ``map_id`` 3 reads as ``map`` 'payon'
            names.append(name[:-3] if name.endswith("_id") else name)
            arrays.append(vocab.label(voc, values))
    return pa.table(arrays, names=names)


def world_table(world: Any, name: str, vocab: Vocabulary | None, *, raw: bool = False,
                dead: bool = False, tick: bool = False) -> pa.Table:
    """A world table's live rows (``dead``: every row below the high-water mark) as Arrow.

    Leading columns: ``tick`` (when asked), ``slot``, ``id`` (the entity handle,
    generation and slot) and, for tables with a row per map or faction, that row's name.
    """
    t = world.tables[name]
    hwm = t.hwm
    slots = np.arange(hwm, dtype=np.int64) if dead else t.live_slots().astype(np.int64)
    lead: dict[str, Any] = {"tick": np.full(len(slots), world.tick, np.int64)} if tick else {}
    lead.update(slot=slots, id=t.handles(slots).astype(np.int64))
    cols = {c: a[:hwm][slots] for c, a in t.columns.items()}
    if dead:
        lead["alive"] = t.alive[:hwm].copy()
    row_voc = None if vocab is None or raw else vocab.rows.get(name)
    out = columns_table(cols, vocab, name, raw=raw, lead=lead)
    if row_voc is not None and row_voc in vocab.names and row_voc not in out.column_names:
        out = out.add_column(len(lead), row_voc, vocab.label(row_voc, slots))
    return out
