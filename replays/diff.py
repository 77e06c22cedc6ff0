"""``norn replay diff A B``: where two runs part, and how far apart they drift.

First the journals alone: the first tick both recorded whose digests differ. Then both
worlds are replayed side by side over the ticks they share (each tick checked against its
own journal) and compared table by table: the first divergent tick names its table,
column and entities as ``verify`` does; after it, per table, how many rows differ at each
tick; for markets, both price paths; for factions, the ground each holds. A fork and its
parent share the ticks from the fork tick on, so ``diff`` shows what the what-if changed.

Row comparison is vectorized per column (any element of a row differing marks the row);
a row alive in one world and not the other differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine.errors import UserError
from norn.engine.tick import step
from norn.engine.world import World
from norn.replays.derive import Sampler
from norn.replays.labels import Vocabulary
from norn.replays.session import Replay
from norn.replays.verify import Divergence, _write_rank

#: Entity ids named for the first divergence (as ``verify``).
ENTITIES_MAX = 8


@dataclass
class DiffResult:
    a: str
    b: str
    start: int  # first tick both runs have (a fork's tick)
    end: int
    first_digest_tick: int | None  # first shared tick whose journal digests differ
    divergence: Divergence | None
    rows: dict[str, list[int]] = field(default_factory=dict)  # table -> rows differing/tick
    ticks: list[int] = field(default_factory=list)
    prices: list[dict[str, Any]] = field(default_factory=list)  # market paths side by side
    ground: list[dict[str, Any]] = field(default_factory=list)  # faction -> maps in a and b

    @property
    def identical(self) -> bool:
        return self.divergence is None and self.first_digest_tick is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "start": self.start, "end": self.end,
            "identical": self.identical, "first_digest_tick": self.first_digest_tick,
            "divergence": None if self.divergence is None else dict(self.divergence.__dict__),
            "ticks": self.ticks, "rows_differing": self.rows, "prices": self.prices,
            "ground": self.ground,
        }


def _any_per_row(ne: np.ndarray) -> np.ndarray:
    """Rows of an element-wise comparison with any element set (vector columns too)."""
    if ne.ndim == 1:
        return ne
    return ne.reshape(len(ne), int(np.prod(ne.shape[1:]))).any(axis=1)


def _rows_differing(wa: World, wb: World, name: str) -> np.ndarray:
    """Slots of ``name`` that differ between the two worlds (any column, or aliveness)."""
    ta, tb = wa.tables[name], wb.tables[name]
    h = max(ta.hwm, tb.hwm)
    diff = np.zeros(h, dtype=bool)
    for c in ta.columns:  # a loop over columns; each compare is one array operation
        a, b = ta.columns[c][:h], tb.columns[c][:h]
        if a.shape != b.shape:
            diff[:] = True
            break
        ne = a != b
        if a.dtype.kind == "f":
            ne &= ~(np.isnan(a) & np.isnan(b))
        diff |= _any_per_row(ne)
    live = ta.alive[:h] | tb.alive[:h]
    return np.flatnonzero(diff & live)


def _first(wa: World, wb: World, tick: int, da: int, db: int) -> Divergence:
    """The first table and column (in schedule write order) that differ, with entities."""
    rank = _write_rank(wa)
    found = []
    for name, t in wa.tables.items():
        h = max(t.hwm, wb.tables[name].hwm)
        for c in t.columns:
            a, b = t.columns[c][:h], wb.tables[name].columns[c][:h]
            ne = _any_per_row(a != b) if a.shape == b.shape else np.ones(h, bool)
            slots = np.flatnonzero(ne)
            if len(slots):
                found.append((rank.get(f"{name}.{c}", 1 << 30), name, c, slots))
    if not found:
        return Divergence(tick, "(pending messages or decisions)", "", "", -1, (0, 0), [], da,
                          db)
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    _, name, col, slots = found[0]
    t = wa.tables[name]
    ids = [int(x) for x in t.handles(slots[:ENTITIES_MAX])]
    chunk = int(slots[0]) // wa.chunk_rows
    return Divergence(tick, f"{name}.{col}", name, col, chunk,
                      (int(slots[0]), int(slots[-1]) + 1), ids, da, db,
                      also=[f"{n}.{c}" for _, n, c, _ in found[1:9]])


def diff(a_dir: str | Path, b_dir: str | Path, *, samples: int = 10,
         progress: Callable[[int, int], None] | None = None) -> DiffResult:
    """Compare the runs in ``a_dir`` and ``b_dir`` over the ticks they share."""
    with Replay(a_dir) as a, Replay(b_dir) as b:
        start = max(a.first_tick, b.first_tick)
        end = min(a.last_tick, b.last_tick)
        if start > end:
            raise UserError(f"the runs share no ticks ({a.dir}: {a.first_tick}..{a.last_tick}, "
                            f"{b.dir}: {b.first_tick}..{b.last_tick})")
        if a.header["regions"] != b.header["regions"]:
            raise UserError("the runs' worlds have different tables or columns; diff compares "
                            "runs of one model and shape")
        res = DiffResult(str(a.dir), str(b.dir), start, end, None, None)
        for t in range(start + 1, end + 1):  # the journals alone: one digest a tick
            if a.record(t).digest != b.record(t).digest:
                res.first_digest_tick = t
                break
        wa, wb = a.world_at(start), b.world_at(start)
        vocab = Vocabulary.of(wa)
        sa, sb = Sampler(wa, vocab), Sampler(wb, vocab)
        names = [n for n in wa.tables if n in wb.tables]
        rows: dict[str, list[int]] = {n: [] for n in names}

        def compare() -> None:
            tick = wa.tick
            res.ticks.append(tick)
            any_diff = False
            for n in names:
                k = len(_rows_differing(wa, wb, n))
                rows[n].append(k)
                any_diff |= k > 0
            # state only: a world just restored (a fork's start) has emitted no actions yet
            da = wa.digest.combine(tick, state_only=True)
            db = wb.digest.combine(tick, state_only=True)
            if res.divergence is None and (any_diff or da != db):
                res.divergence = _first(wa, wb, tick, da, db)
            sa.sample(wa)
            sb.sample(wb)

        compare()
        for i, t in enumerate(range(start + 1, end + 1), 1):
            for r, w in ((a, wa), (b, wb)):
                rec = r.record(t)
                if step(w, rec).digest != rec.digest:
                    from norn.engine.errors import Diverged

                    raise Diverged(f"{r.dir}: the replay diverges from its own journal; run "
                                   f"'norn replay verify {r.dir}'", seed=w.seed, tick=t)
            compare()
            if progress is not None:
                progress(i, end - start)
        res.rows = {n: v for n, v in rows.items() if any(v)}
        _paths(res, sa, sb, vocab, samples)
    return res


def _paths(res: DiffResult, sa: Sampler, sb: Sampler, vocab: Vocabulary, samples: int) -> None:
    """Price paths of the markets that ended furthest apart, and ground held, side by side."""
    ticks = np.asarray(res.ticks)
    pick = np.unique(np.linspace(0, len(ticks) - 1, max(2, samples)).astype(np.int64))
    if sa.has_market and sa.prices:
        pa_, pb_ = np.asarray(sa.prices), np.asarray(sb.prices)
        gap = np.abs(pa_ - pb_).max(axis=0)
        final = np.abs(pa_[-1] - pb_[-1])
        top = np.lexsort((-gap, -final))[:8]  # apart at the end first, then ever apart
        items = vocab.names.get("item", ())
        maps = vocab.names.get("map", ())
        for m in top:
            if gap[m] == 0:
                break
            it, tw = int(sa.market_item[m]), int(sa.market_town[m])
            res.prices.append({
                "market": int(m),
                "item": items[it] if it < len(items) else str(it),
                "town": maps[tw] if tw < len(maps) else str(tw),
                "ticks": ticks[pick].tolist(), "a": pa_[pick, m].tolist(),
                "b": pb_[pick, m].tolist()})
    if sa.has_terr and sa.ground:
        ga, gb = np.asarray(sa.ground), np.asarray(sb.ground)
        names = vocab.names.get("faction", ())
        for f in range(ga.shape[1]):
            res.ground.append({
                "faction": names[f] if f < len(names) else str(f),
                "ticks": ticks[pick].tolist(), "a": ga[pick, f].tolist(),
                "b": gb[pick, f].tolist()})


def format_diff(res: DiffResult) -> str:
    """The diff as a designer reads it."""
    out = [f"A {res.a}", f"B {res.b}", f"shared ticks {res.start}..{res.end}"]
    if res.identical:
        out.append("identical: every shared tick has the same state")
        return "\n".join(out)
    if res.first_digest_tick is not None:
        out.append(f"journals differ from tick {res.first_digest_tick} (digests)")
    if res.divergence is not None:
        d = res.divergence
        ids = ", ".join(str(e) for e in d.entity_ids)
        out.append(f"first divergence: tick {d.tick}, table {d.table!r} column {d.column!r} "
                   f"(slots {d.slots[0]}..{d.slots[1] - 1}; entity ids {ids})"
                   + (f"; also: {', '.join(d.also)}" if d.also else ""))
    if res.rows:
        ticks = res.ticks
        pick = sorted(set(np.linspace(0, len(ticks) - 1, min(len(ticks), 8)).astype(int)))
        out.append("rows differing per table (tick: rows)")
        out.append("  " + "table".ljust(18) + "".join(f"{ticks[i]:>9}" for i in pick))
        for n, v in sorted(res.rows.items(), key=lambda kv: -kv[1][-1]):
            out.append("  " + n.ljust(18) + "".join(f"{v[i]:>9}" for i in pick))
    if res.prices:
        out.append("prices, A | B (the markets furthest apart)")
        for p in res.prices:
            path = "  ".join(f"{t}:{a}|{b}" for t, a, b in zip(p["ticks"], p["a"], p["b"],
                                                              strict=True))
            out.append(f"  {p['item']} in {p['town']}: {path}")
    moved = [g for g in res.ground if g["a"] != g["b"]]
    if res.ground:
        out.append("ground held (maps), A | B" + ("" if moved else ": the same throughout"))
        for g in moved:
            path = "  ".join(f"{t}:{a}|{b}" for t, a, b in zip(g["ticks"], g["a"], g["b"],
                                                              strict=True))
            out.append(f"  {g['faction']}: {path}")
    return "\n".join(out)
