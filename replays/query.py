"""SQL over recorded runs: ``norn replay export`` and ``norn replay query``.

Both stand on the derived Parquet files (``derive.py``): ``export`` copies them where the
designer wants them (``--every K`` adds the tables every K ticks), ``query`` opens DuckDB
over them directly, deriving first when needed, so there is no export step to remember.
Every view has a ``run`` column (the run directory's name), and a query over several runs
sees the union of each view (``UNION ALL BY NAME``): a fork and its parent compare in one
``GROUP BY run``.

Views: every derived table (``ticks``, ``inputs``, ``events``, ``actions``,
``decisions``, ``population``, ``npc_states``, ``prices``, ``ground``, ``owners``,
``hazards``, ``zeny``), ``action_results`` (each result with the action it answers), and
one view per world table at its kept ticks (``npc``, ``market``, ...; ``table_<name>``
where a name is taken).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from norn.engine.errors import UserError
from norn.replays.derive import ensure
from norn.replays.session import Replay

#: Example queries for docs/designers.md and ``norn replay query --examples``; the tests
#: run every one of them against a real run.
EXAMPLES: dict[str, str] = {
    "markets that crashed after a hazard": """
        SELECT p.run, p.town, p.item, first(p.price ORDER BY p.tick) AS before,
               min(p.price) AS low,
               round(100.0 * (min(p.price) - first(p.price ORDER BY p.tick))
                     / first(p.price ORDER BY p.tick), 1) AS drop_pct
        FROM prices p
        JOIN (SELECT run, map, min(tick) AS since FROM hazards GROUP BY ALL) h
          ON p.run = h.run AND p.town = h.map AND p.tick >= h.since
        GROUP BY ALL ORDER BY drop_pct LIMIT 10""",
    "actions per kind": """
        SELECT run, kind, count(*) AS actions, min(tick) AS first, max(tick) AS last
        FROM actions GROUP BY ALL ORDER BY run, actions DESC""",
    "decisions by tier and source": """
        SELECT run, kind, tier, source, count(*) AS decisions
        FROM decisions GROUP BY ALL ORDER BY run, decisions DESC""",
    "ground held by each faction at the end": """
        SELECT run, faction, maps FROM ground g
        WHERE tick = (SELECT max(tick) FROM ground WHERE run = g.run)
        ORDER BY run, maps DESC""",
    "zeny that entered and left, per account": """
        SELECT run, side, account, max(zeny) AS zeny FROM zeny GROUP BY ALL
        ORDER BY run, side, zeny DESC""",
    "NPCs by state on each map at the last kept tick": """
        SELECT run, map, state, count(*) AS npcs FROM npc n
        WHERE tick = (SELECT max(tick) FROM npc WHERE run = n.run)
        GROUP BY ALL ORDER BY run, map, npcs DESC""",
    "results of actions, by kind and reason": """
        SELECT run, action_kind, status, reason, count(*) AS results
        FROM action_results GROUP BY ALL ORDER BY run, results DESC""",
}


def export(replay: Replay, out: str | Path | None = None, *, every: int = 0,
           progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the run's Parquet tables into ``out`` (default ``RUN/export``)."""
    src = ensure(replay, every=every, progress=progress)
    dst = Path(out) if out is not None else replay.dir / "export"
    if dst.resolve() == src.resolve():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def _names(replays: list[Replay]) -> list[str]:
    names: list[str] = []
    for r in replays:
        base = r.dir.resolve().name
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def connect(replays: list[Replay], *, every: int = 0,
            progress: Callable[[int, int], None] | None = None) -> Any:
    """An in-memory DuckDB connection with the runs' views (derived first if needed)."""
    import duckdb

    if not replays:
        raise UserError("query needs at least one run directory")
    con = duckdb.connect()
    dirs = [ensure(r, every=every, progress=progress) for r in replays]
    names = _names(replays)
    files: dict[str, list[tuple[str, Path]]] = {}
    for name, d in zip(names, dirs, strict=True):
        for p in sorted(d.glob("*.parquet")):
            files.setdefault(p.stem, []).append((name, p))
    series = set(files)
    for name, d in zip(names, dirs, strict=True):
        for p in sorted((d / "tables").glob("*.parquet")):
            view = p.stem if p.stem not in series else f"table_{p.stem}"
            files.setdefault(view, []).append((name, p))
    for view, parts in files.items():
        sql = " UNION ALL BY NAME ".join(
            f"SELECT {_lit(run)} AS run, * FROM read_parquet({_lit(str(p))})"
            for run, p in parts)
        con.execute(f'CREATE VIEW "{view}" AS {sql}')
    if "events" in files and "actions" in files:
        con.execute("""
            CREATE VIEW action_results AS
            SELECT r.run, r.tick, r.action_id, a.kind AS action_kind, a.tick AS action_tick,
                   CASE r.status WHEN 0 THEN 'done' ELSE 'failed' END AS status, r.reason,
                   r.source
            FROM events r LEFT JOIN actions a ON a.run = r.run AND a.action_id = r.action_id
            WHERE r.kind = 'action_result'""")
    return con


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def query(replays: list[Replay], sql: str, **kw: Any) -> Any:
    """Run ``sql`` over the runs; returns an Arrow table."""
    import duckdb

    con = connect(replays, **kw)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else None
    except duckdb.Error as exc:
        views = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        raise UserError(f"query failed: {exc}\n(views: {', '.join(views)})") from None


def format_table(table: Any, limit: int = 200) -> str:
    """An Arrow table as aligned text columns (the first ``limit`` rows)."""
    cols = table.column_names
    rows = table.slice(0, limit).to_pylist()

    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    if table.num_rows > limit:
        lines.append(f"... {table.num_rows - limit} more rows")
    return "\n".join(lines)
