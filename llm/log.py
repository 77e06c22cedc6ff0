"""The inference log: every model call, in DuckDB (the historical log of issue 12).

One row per call: when (``unix_s``), run, tick, use case, variant, provider, model,
prompt version, tier (``batch``, ``single``, ``retry_single``, ``reask``), items, the
request ids (first few), prompt and output (each cut to ``text_chars_max``), latency,
tokens, cost, outcome (``ok``, ``partial``, ``invalid``, ``refused``, ``failed``) and the
error. Rows are buffered (at most ``log_buffer_max``; past it they are counted as
dropped, never waited for) and written by the resolver's worker every ``flush_s`` through
a short-lived connection, so ``norn llm log`` can read the file between flushes. Past
``rows_max`` rows the oldest are deleted.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from norn.llm import limits

COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("unix_s", "DOUBLE", pa.float64()),
    ("run", "VARCHAR", pa.string()),
    ("tick", "BIGINT", pa.int64()),
    ("use_case", "VARCHAR", pa.string()),
    ("variant", "VARCHAR", pa.string()),
    ("provider", "VARCHAR", pa.string()),
    ("model", "VARCHAR", pa.string()),
    ("prompt_version", "VARCHAR", pa.string()),
    ("tier", "VARCHAR", pa.string()),
    ("items", "INTEGER", pa.int32()),
    ("request_ids", "VARCHAR", pa.string()),
    ("prompt", "VARCHAR", pa.string()),
    ("output", "VARCHAR", pa.string()),
    ("latency_ms", "DOUBLE", pa.float64()),
    ("tokens_in", "INTEGER", pa.int32()),
    ("tokens_out", "INTEGER", pa.int32()),
    ("cost_usd", "DOUBLE", pa.float64()),
    ("outcome", "VARCHAR", pa.string()),
    ("error", "VARCHAR", pa.string()),
    ("attempts", "INTEGER", pa.int32()),
)
NAMES = tuple(c[0] for c in COLUMNS)
SCHEMA = pa.schema([(n, t) for n, _, t in COLUMNS])
CREATE = "CREATE TABLE IF NOT EXISTS inference (" + ", ".join(
    f"{n} {t}" for n, t, _ in COLUMNS) + ")"


def cut(text: str, chars_max: int) -> str:
    if len(text) <= chars_max:
        return text
    return text[: max(chars_max - 1, 0)] + "…" if chars_max else ""


class InferenceLog:
    def __init__(self, path: str | Path | None, *, text_chars_max: int = 2000,
                 rows_max: int = 1_000_000, buffer_max: int = limits.log_buffer_max) -> None:
        if not 0 <= text_chars_max <= limits.log_text_chars_max:
            raise ValueError(f"text_chars_max must be in 0..{limits.log_text_chars_max}")
        if not 1 <= rows_max <= limits.log_rows_max:
            raise ValueError(f"rows_max must be in 1..{limits.log_rows_max}")
        if not 1 <= buffer_max <= limits.log_buffer_max:
            raise ValueError(f"buffer_max must be in 1..{limits.log_buffer_max}")
        self.path = Path(path) if path is not None else None
        self.text_chars_max = text_chars_max
        self.rows_max = rows_max
        self.buffer_max = buffer_max
        self.buffer: list[dict[str, Any]] = []
        self.dropped = 0
        self.written = 0
        if self.path is not None:
            with duckdb.connect(str(self.path)) as con:
                con.execute(CREATE)

    def add(self, **row: Any) -> None:
        if self.path is None:
            return
        if len(self.buffer) >= self.buffer_max:
            self.dropped += 1
            return
        row.setdefault("unix_s", time.time())
        for k in ("prompt", "output", "error"):
            row[k] = cut(str(row.get(k) or ""), self.text_chars_max)
        self.buffer.append({n: row.get(n) for n in NAMES})

    def flush(self) -> int:
        if self.path is None or not self.buffer:
            return 0
        rows, self.buffer = self.buffer, []
        batch_rows = pa.Table.from_pylist(rows, schema=SCHEMA)  # noqa: F841 (read by DuckDB)
        with duckdb.connect(str(self.path)) as con:
            con.execute(CREATE)
            con.execute("INSERT INTO inference SELECT * FROM batch_rows")
            n = con.execute("SELECT count(*) FROM inference").fetchone()[0]
            if n > self.rows_max:
                con.execute(
                    "DELETE FROM inference WHERE rowid IN (SELECT rowid FROM inference "
                    "ORDER BY unix_s, rowid LIMIT ?)", [n - self.rows_max])
        self.written += len(rows)
        return len(rows)


def _connect_read(path: str | Path) -> duckdb.DuckDBPyConnection:
    last: Exception | None = None
    for _ in range(20):  # the engine holds the file only while it flushes
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            last = exc
            time.sleep(0.05)
    raise last  # type: ignore[misc]


def query(path: str | Path, *, use_case: str | None = None, outcome: str | None = None,
          variant: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest rows (newest first), filtered."""
    limit = max(1, min(limit, limits.log_query_rows_max))
    where, args = [], []
    for col, val in (("use_case", use_case), ("outcome", outcome), ("variant", variant)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    sql = "SELECT * FROM inference" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY unix_s DESC, rowid DESC LIMIT ?"
    with contextlib.closing(_connect_read(path)) as con:
        cur = con.execute(sql, [*args, limit])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def aggregate(path: str | Path) -> list[dict[str, Any]]:
    """Per use case, variant and tier: calls, outcomes, latency p50/p95, tokens, cost."""
    sql = """
        SELECT use_case, variant, tier, count(*) AS calls,
               sum(items) AS items,
               avg(CASE WHEN outcome = 'ok' THEN 1 ELSE 0 END) AS ok_rate,
               quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
               quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
               sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
               sum(cost_usd) AS cost_usd
        FROM inference GROUP BY ALL ORDER BY use_case, variant, tier"""
    with contextlib.closing(_connect_read(path)) as con:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
