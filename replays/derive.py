"""One verified replay of a run, kept as Parquet beside it: what designers query.

Actions are not journaled (they are a function of the journal), and neither are the
details of decisions (kind, actor, option) nor per-tick series (prices, ground held,
hazards, zeny). ``derive`` replays the run once, checks every tick's digest against the
journal (the actions region is part of it, so the actions it writes are the ones the run
emitted), and writes into ``RUN/derived/``:

| file | rows |
|---|---|
| ``ticks`` | tick, digest, input batches, events, actions, decisions |
| ``inputs`` | one per input batch: tick, source, seq, kind, events |
| ``events`` | one per input event: tick, source, seq, kind, its fields (names for ids) |
| ``actions`` | one per world action: tick, action id, kind, its fields |
| ``decisions`` | one per applied decision: tick, request, kind, actor, option, source, tier |
| ``population`` | tick, table, live rows |
| ``npc_states`` | tick, state, NPCs in it |
| ``prices`` | tick, market, town, item, price, stock |
| ``ground`` | tick, faction, maps held |
| ``owners`` | tick, map, owner (the start, then every change: takeovers) |
| ``hazards`` | tick, hazard id, map, type, intensity |
| ``zeny`` | tick, account, side (source/sink), zeny so far |
| ``tables/<name>`` | the table's live rows at snapshot ticks (and every K ticks on request) |

``manifest.json`` names the journal it was made from (tick frames, last tick and digest,
``every``); a run that grew (resumed) or a different ``every`` is derived again. The cost
is one replay, once: the alternative, journaling actions, would put every action on the
live tick's fsync path (thousands of moves a tick in a 100k-NPC world) for a question
designers ask after the fact; see docs/designers.md, "Where actions come from".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from norn.engine.decisions import SOURCE_DEADLINE, SOURCE_INVALID, SOURCE_RESOLVER
from norn.engine.errors import Diverged, EnvironmentFailure
from norn.replays.labels import Vocabulary, columns_table, world_table

if TYPE_CHECKING:
    from norn.engine.world import World
    from norn.replays.session import Replay

DERIVED_DIR = "derived"
DERIVED_VERSION = 1
#: Rows buffered per Parquet file before a row group is written (bounds memory).
FLUSH_ROWS = 1 << 16
#: Tables left out of ``tables/``: the action log is bookkeeping (``actions`` has it all).
SKIP_TABLES = ("action_log",)
SOURCE_NAMES = {SOURCE_RESOLVER: "resolver", SOURCE_DEADLINE: "deadline",
                SOURCE_INVALID: "invalid"}
#: Tier names of the LLM tier's decision notes (``llm/notes.py``); the built-in resolver
#: is the rules tier, and a deadline or invalid result is the rules' fallback.
TIER_NAMES = {1: "rules", 2: "cache", 3: "batch", 4: "single", 5: "fallback"}
SERIES = ("ticks", "inputs", "events", "actions", "decisions", "population", "npc_states",
          "prices", "ground", "owners", "hazards", "zeny")

Progress = Callable[[int, int], None] | None


class _Writer:
    """One Parquet file written in row groups, every table conformed to one schema."""

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.schema = schema
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        if not len(table):
            return
        self.parts.append(table)
        self.rows += len(table)
        if self.rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        t = pa.concat_tables(self.parts, promote_options="permissive")
        if self.schema is None:
            self.schema = t.schema
        t = conform(t, self.schema)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(t)
        self.parts, self.rows = [], 0

    def close(self) -> None:
        self.flush()
        if self.writer is None and self.schema is not None:  # an empty table, with columns
            pq.write_table(self.schema.empty_table(), self.path)
        if self.writer is not None:
            self.writer.close()


def conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """``t`` with exactly ``schema``'s columns (missing ones null), in its order."""
    cols = []
    for f in schema:
        if f.name in t.column_names:
            c = t[f.name]
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(len(t), f.type))
    return pa.table(cols, schema=schema)


def _kind_schema(lead: pa.Schema, tables: list[pa.Table]) -> pa.Schema:
    """The lead columns, then every kind's columns once (first declaration's type)."""
    fields = list(lead)
    seen = {f.name for f in fields}
    for t in tables:
        for f in t.schema:
            if f.name not in seen:
                seen.add(f.name)
                fields.append(f)
    return pa.schema(fields)


def _empty_cols(schema: tuple[tuple[str, np.dtype], ...]) -> dict[str, np.ndarray]:
    return {n: np.empty(0, dt) for n, dt in schema}


class Sampler:
    """Per-tick series of a world: small arrays a tick, long tables at the end.

    Each series is collected only when the world has the tables it reads; every sample
    is a handful of vectorized operations over those tables.
    """

    def __init__(self, world: World, vocab: Vocabulary) -> None:
        self.vocab = vocab
        t = world.tables
        self.names = sorted(t)
        self.pop: list[np.ndarray] = []
        self.ticks: list[int] = []
        self.has_npc = "npc" in t and "state" in t["npc"].columns
        self.has_market = "market" in t and "price" in t["market"].columns
        self.has_terr = "territory" in t and "owner" in t["territory"].columns
        self.has_hazard = "hazard" in t and "intensity" in t["hazard"].columns
        self.ledger = world.resources.get("ledger")
        self.states: list[np.ndarray] = []
        self.prices: list[np.ndarray] = []
        self.stock: list[np.ndarray] = []
        self.ground: list[np.ndarray] = []
        self.owner_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.last_owner: np.ndarray | None = None
        self.hz: list[tuple[np.ndarray, ...]] = []
        self.zeny: list[np.ndarray] = []
        self.n_markets = 0
        if self.has_market:
            mk = world.resources.get("markets")
            self.n_markets = mk.n if mk is not None else world.tables["market"].hwm
            m = world.tables["market"]
            self.market_town = m["town"][: self.n_markets].copy()
            self.market_item = m["item"][: self.n_markets].copy()
        self.n_factions = len(vocab.names.get("faction", ()))
        if self.has_terr:
            self.n_maps = len(vocab.names.get("map", ())) or world.tables["territory"].hwm

    def sample(self, world: World) -> None:
        tick = world.tick
        t = world.tables
        self.ticks.append(tick)
        self.pop.append(np.array([t[n].count for n in self.names], np.int64))
        if self.has_npc:
            npc = t["npc"]
            st = npc["state"][: npc.hwm][npc.alive[: npc.hwm]] & 0x7F
            self.states.append(np.bincount(st, minlength=8)[:8].astype(np.int64))
        if self.has_market:
            m = t["market"]
            self.prices.append(m["price"][: self.n_markets].astype(np.int64))
            self.stock.append(m["stock"][: self.n_markets].astype(np.int64))
        if self.has_terr:
            owner = t["territory"]["owner"][: self.n_maps].astype(np.int64)
            held = owner[owner >= 0]
            self.ground.append(np.bincount(held, minlength=self.n_factions)[: max(
                self.n_factions, 1)].astype(np.int64))
            prev = self.last_owner
            changed = np.arange(len(owner)) if prev is None else np.flatnonzero(owner != prev)
            if len(changed):
                self.owner_rows.append((np.full(len(changed), tick, np.int64), changed,
                                        owner[changed]))
            self.last_owner = owner
        if self.has_hazard:
            h = t["hazard"]
            live = h.live_slots()
            self.hz.append((np.full(len(live), tick, np.int64), h.handles(live).astype(np.int64),
                            h["map"][live].astype(np.int64), h["type"][live].astype(np.int64),
                            h["intensity"][live].astype(np.float64)))
        if self.ledger is not None:
            row = t[self.ledger.table]
            self.zeny.append(np.concatenate([row["sources"][0], row["sinks"][0]]).astype(
                np.int64))

    def tables(self) -> dict[str, pa.Table]:
        v = self.vocab
        ticks = np.asarray(self.ticks, np.int64)
        n = len(ticks)
        out: dict[str, pa.Table] = {}
        pop = np.asarray(self.pop).reshape(n, len(self.names))
        out["population"] = pa.table({
            "tick": np.repeat(ticks, len(self.names)),
            "table": np.tile(np.asarray(self.names, object), n),
            "rows": pop.reshape(-1)})
        if self.has_npc:
            names = v.names.get("npc_state", tuple(str(i) for i in range(8)))
            out["npc_states"] = pa.table({
                "tick": np.repeat(ticks, 8), "state": np.tile(np.asarray(names, object), n),
                "npcs": np.asarray(self.states).reshape(-1)})
        if self.has_market:
            k = self.n_markets
            idx = np.tile(np.arange(k), n)
            out["prices"] = columns_table(
                {"town": np.tile(self.market_town, n), "item": np.tile(self.market_item, n),
                 "price": np.asarray(self.prices).reshape(-1),
                 "stock": np.asarray(self.stock).reshape(-1)},
                v, "market", lead={"tick": np.repeat(ticks, k), "market": idx})
        if self.has_terr:
            f = max(self.n_factions, 1)
            out["ground"] = columns_table(
                {"faction": np.tile(np.arange(f), n), "maps": np.asarray(self.ground).reshape(-1)},
                v, "ground", lead={"tick": np.repeat(ticks, f)})
            parts = self.owner_rows or [(np.empty(0, np.int64),) * 3]
            out["owners"] = columns_table(
                {"map": np.concatenate([p[1] for p in parts]),
                 "owner": np.concatenate([p[2] for p in parts])},
                v, "owners", lead={"tick": np.concatenate([p[0] for p in parts])})
        if self.has_hazard:
            parts = self.hz or [(np.empty(0, np.int64),) * 5]
            cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
            out["hazards"] = columns_table(
                {"map": cat[2], "hazard_type": cat[3], "intensity": cat[4]}, v, "hazards",
                lead={"tick": cat[0], "hazard": cat[1]})
        if self.ledger is not None:
            acc = (*self.ledger.sources, *self.ledger.sinks)
            side = ("source",) * len(self.ledger.sources) + ("sink",) * len(self.ledger.sinks)
            out["zeny"] = pa.table({
                "tick": np.repeat(ticks, len(acc)), "account": np.tile(np.asarray(acc, object), n),
                "side": np.tile(np.asarray(side, object), n),
                "zeny": np.asarray(self.zeny).reshape(-1)})
        return out


def _decision_names() -> tuple[dict[int, str], dict[int, tuple[str, ...]]]:
    """Names of the default world's decision kinds and of their options."""
    try:
        from norn.actors.npc import DECISION_BEHAVIOUR, DECISION_TALK, TALK_LINES
        from norn.rules.utility import STATE_NAMES
    except ImportError:  # another model's world: kinds stay numbers
        return {}, {}
    return ({DECISION_BEHAVIOUR: "behaviour", DECISION_TALK: "talk"},
            {DECISION_BEHAVIOUR: tuple(STATE_NAMES), DECISION_TALK: tuple(TALK_LINES)})


def decisions_table(tick: int, applied: np.ndarray, notes: np.ndarray | None) -> pa.Table:
    """Applied decisions of one tick with their kind, option and source names and tier."""
    kinds, options = _decision_names()
    n = len(applied)
    src = applied["source"].astype(np.int64)
    tier = np.where(src == SOURCE_RESOLVER, 1, 5)
    if notes is not None and len(notes):  # the LLM tier's notes: which tier answered
        order = np.argsort(notes["request_id"], kind="stable")
        ids = notes["request_id"][order]
        pos = np.searchsorted(ids, applied["request_id"])
        pos_c = np.minimum(pos, len(ids) - 1)
        hit = (pos < len(ids)) & (ids[pos_c] == applied["request_id"])
        tier = np.where(hit, notes["tier"][order][pos_c].astype(np.int64), tier)
    kind = applied["kind"].astype(np.int64)
    opt = applied["option"].astype(np.int64)
    kind_name = np.array([kinds.get(int(k), str(int(k))) for k in np.unique(kind)], object)
    uk, inv = np.unique(kind, return_inverse=True)
    opt_name = np.full(n, None, object)
    for j, k in enumerate(uk.tolist()):  # one pass per decision kind, never per decision
        names = options.get(int(k))
        if names is not None:
            sel = inv == j
            o = opt[sel]
            ok = (o >= 0) & (o < len(names))
            vals = np.full(len(o), None, object)
            vals[ok] = np.asarray(names, object)[o[ok]]
            opt_name[sel] = vals
    return pa.table({
        "tick": np.full(n, tick, np.int64),
        "request_id": applied["request_id"].astype(np.int64),
        "created_tick": (applied["request_id"] >> 24).astype(np.int64),
        "kind": kind_name[inv] if n else np.empty(0, object),
        "actor": applied["actor"].astype(np.int64),
        "option": opt,
        "option_name": opt_name,
        "choice": applied["choice"].astype(np.int64),
        "source": np.asarray([SOURCE_NAMES.get(s, str(s)) for s in range(3)] + ["?"],
                             object)[np.minimum(src, 3)],
        "tier": np.asarray([TIER_NAMES.get(t, str(t)) for t in range(6)], object)[
            np.clip(tier, 0, 5)],
    }, schema=DECISIONS_SCHEMA)


DECISIONS_SCHEMA = pa.schema([
    ("tick", pa.int64()), ("request_id", pa.int64()), ("created_tick", pa.int64()),
    ("kind", pa.string()), ("actor", pa.int64()), ("option", pa.int64()),
    ("option_name", pa.string()), ("choice", pa.int64()), ("source", pa.string()),
    ("tier", pa.string())])


def _identity(replay: Replay, every: int) -> dict[str, Any]:
    last = replay.record(replay.last_tick).digest if replay.last_tick > replay.first_tick else 0
    return {"version": DERIVED_VERSION, "first_tick": replay.first_tick,
            "last_tick": replay.last_tick, "last_digest": f"{last:016x}", "every": every,
            "config_hash": replay.header["config_hash"],
            "scenario_hash": replay.header["scenario"]["hash"]}


def derived_dir(replay: Replay) -> Path:
    return replay.dir / DERIVED_DIR


def ensure(replay: Replay, *, every: int = 0, progress: Progress = None) -> Path:
    """The run's derived Parquet files, made now unless current ones exist.

    ``every`` 0 takes the current files whatever their ``every`` (a query does not care
    how many tables an export kept); a K > 0 needs files made with that K.
    """
    out = derived_dir(replay)
    want = _identity(replay, every)
    try:
        have = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        have = None
    if have is not None and every == 0:
        want["every"] = have.get("every")
    if have != want:
        derive(replay, every=every, progress=progress)
    return out


def derived_table(replay: Replay, name: str, *, progress: Progress = None) -> pa.Table:
    """One derived table (``actions``, ``decisions``, ``prices``, ...) as Arrow."""
    path = ensure(replay, progress=progress) / f"{name}.parquet"
    if not path.exists():
        return pa.table({"tick": pa.array([], pa.int64())})
    return pq.read_table(path)


def derive(replay: Replay, *, every: int = 0, progress: Progress = None) -> Path:
    """Replay the whole run once, checking digests, and write ``RUN/derived``."""
    out = derived_dir(replay)
    tmp = out.with_name(DERIVED_DIR + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as e:
        raise EnvironmentFailure.from_os(tmp, "cannot write derived tables", e) from e
    world = replay.fresh_world()
    vocab = Vocabulary.of(world)
    sampler = Sampler(world, vocab)
    snap_ticks = {s[0] for s in replay.run.snapshots}
    ev_lead = pa.schema([("tick", pa.int64()), ("source", pa.string()), ("seq", pa.int64()),
                         ("kind", pa.string())])
    ev_schema = _kind_schema(ev_lead, [
        columns_table(_empty_cols(s), vocab, k) for k, s in
        zip(replay.kinds.names, replay.kinds.schemas, strict=True)])
    ac_lead = pa.schema([("tick", pa.int64()), ("action_id", pa.int64()), ("kind", pa.string())])
    ac_schema = _kind_schema(ac_lead, [
        columns_table(_empty_cols(k.schema), vocab, name)
        for name, k in world.kinds.actions.items()])
    writers = {
        "events": _Writer(tmp / "events.parquet", ev_schema),
        "actions": _Writer(tmp / "actions.parquet", ac_schema),
        "decisions": _Writer(tmp / "decisions.parquet", DECISIONS_SCHEMA),
    }
    tables: dict[str, _Writer] = {}
    rows: dict[str, list] = {k: [] for k in ("t", "d", "b", "e", "a", "n")}
    inputs: dict[str, list] = {k: [] for k in ("tick", "source", "seq", "kind", "events")}

    def keep_tables() -> None:
        for name in world.tables:
            if name in SKIP_TABLES:
                continue
            t = world_table(world, name, vocab, tick=True)
            w = tables.get(name)
            if w is None:
                w = tables[name] = _Writer(tmp / "tables" / f"{name}.parquet")
            w.add(t)

    sampler.sample(world)
    keep_tables()
    total = replay.last_tick - replay.first_tick
    from norn.engine.tick import step

    for i, rec in enumerate(replay.records(), 1):
        got = step(world, rec)
        if got.digest != rec.digest:
            raise Diverged(f"{replay.dir}: the replay diverges from the journal, so its actions "
                           f"cannot be derived; run 'norn replay verify {replay.dir}'",
                           seed=world.seed, tick=rec.tick)
        tick = rec.tick
        n_ev = 0
        for b in rec.inputs:  # a loop over batches, never over events
            n = len(b)
            n_ev += n
            for k, v in (("tick", tick), ("source", b.source), ("seq", b.seq),
                         ("kind", b.kind), ("events", n)):
                inputs[k].append(v)
            writers["events"].add(columns_table(b.columns, vocab, b.kind, lead={
                "tick": np.full(n, tick, np.int64), "source": np.full(n, b.source, object),
                "seq": np.full(n, b.seq, np.int64), "kind": np.full(n, b.kind, object)}))
        batch = got.emitted
        n_ac = 0
        if batch is not None:
            for kind, cols in batch.kinds.items():
                n = len(cols["action_id"])
                n_ac += n
                body = {c: v for c, v in cols.items() if c != "action_id"}
                writers["actions"].add(columns_table(body, vocab, kind, lead={
                    "tick": np.full(n, tick, np.int64), "action_id": cols["action_id"],
                    "kind": np.full(n, kind, object)}))
        applied = world.decisions.applied if len(rec.decisions) else rec.decisions[:0]
        if len(rec.decisions):
            writers["decisions"].add(decisions_table(tick, applied,
                                                      getattr(rec, "notes", None)))
        for k, v in (("t", tick), ("d", f"{rec.digest:016x}"), ("b", len(rec.inputs)),
                     ("e", n_ev), ("a", n_ac), ("n", len(rec.decisions))):
            rows[k].append(v)
        sampler.sample(world)
        if tick in snap_ticks or (every and tick % every == 0) or tick == replay.last_tick:
            keep_tables()
        if progress is not None:
            progress(i, total)
    for w in (*writers.values(), *tables.values()):
        w.close()
    pq.write_table(pa.table({"tick": pa.array(rows["t"], pa.int64()),
                             "digest": pa.array(rows["d"], pa.string()),
                             "input_batches": pa.array(rows["b"], pa.int64()),
                             "events": pa.array(rows["e"], pa.int64()),
                             "actions": pa.array(rows["a"], pa.int64()),
                             "decisions": pa.array(rows["n"], pa.int64())}),
                   tmp / "ticks.parquet")
    pq.write_table(pa.table({"tick": pa.array(inputs["tick"], pa.int64()),
                             "source": pa.array(inputs["source"], pa.string()),
                             "seq": pa.array(inputs["seq"], pa.int64()),
                             "kind": pa.array(inputs["kind"], pa.string()),
                             "events": pa.array(inputs["events"], pa.int64())}),
                   tmp / "inputs.parquet")
    for name, t in sampler.tables().items():
        pq.write_table(t, tmp / f"{name}.parquet")
    (tmp / "manifest.json").write_text(json.dumps(_identity(replay, every), indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
