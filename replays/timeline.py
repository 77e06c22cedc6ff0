"""``norn replay timeline``: what happened, tick by tick.

One row per (tick, category, kind) with a count and up to three examples: inputs (per
event kind), world actions (per action kind), decisions (per kind, tier and source),
hazards started and ended, takeovers (a map changing hands) and price shocks (a market's
price ``shock_pct`` or more away from where it was ``shock_window_ticks`` before, at the
tick it first gets there). Everything is grouped by DuckDB over the derived tables, so a
long run is one pass of SQL, not a loop over events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from norn.engine.errors import UserError
from norn.engine.rathena import WEATHER_CODES
from norn.replays.query import connect
from norn.replays.session import Replay

CATEGORIES = ("input", "action", "decision", "hazard", "takeover", "price_shock")
#: A price this far from where it was ``SHOCK_WINDOW_TICKS`` before is a shock.
SHOCK_PCT = 5.0
SHOCK_WINDOW_TICKS = 20
#: Examples shown per row.
EXAMPLES_MAX = 3

#: rAthena weather codes as names, for ``set_weather`` rows.
_WEATHER = ("CASE weather " + " ".join(f"WHEN {v} THEN '{k}'" for k, v in WEATHER_CODES.items())
            + " ELSE 'weather' END")

_SQL: dict[str, str] = {
    "input": """
        SELECT tick, 'input' AS category, kind, count(*) AS count,
               list(concat_ws(' ', source, {ev_map}, {ev_hazard_type}, {ev_intensity}))
                 AS examples
        FROM events GROUP BY ALL""",
    "action": """
        SELECT tick, 'action' AS category, kind, count(*) AS count,
               list(concat_ws(' ', {ac_map}, {ac_item}, {ac_text})) AS examples
        FROM actions GROUP BY ALL""",
    "decision": """
        SELECT tick, 'decision' AS category, concat(kind, ' ', tier, '/', source) AS kind,
               count(*) AS count,
               list(concat(actor, ': ', coalesce(option_name, CAST(option AS VARCHAR))))
                 AS examples
        FROM decisions GROUP BY ALL""",
    "hazard": """
        SELECT tick, 'hazard' AS category,
               CASE WHEN "on" = 1 THEN 'started' ELSE 'ended' END AS kind, count(*) AS count,
               list(concat_ws(' ', coalesce({ac_hazard_type}, {weather}),
                              'on', {ac_map},
                              CASE WHEN "on" = 1 AND intensity IS NOT NULL
                                   THEN printf('%.2f', intensity) END)) AS examples
        FROM actions WHERE kind IN ('set_hazard', 'set_weather') GROUP BY ALL""",
    "takeover": """
        SELECT tick, 'takeover' AS category, 'map changed hands' AS kind, count(*) AS count,
               list(concat(map, ': ', coalesce(CAST(prev AS VARCHAR), 'nobody'), ' -> ',
                           coalesce(CAST(owner AS VARCHAR), 'nobody'))) AS examples
        FROM (SELECT tick, map, owner,
                     lag(owner) OVER (PARTITION BY map ORDER BY tick) AS prev,
                     row_number() OVER (PARTITION BY map ORDER BY tick) AS n
              FROM owners)
        WHERE n > 1 GROUP BY ALL""",
    "price_shock": """
        SELECT tick, 'price_shock' AS category, 'price moved' AS kind, count(*) AS count,
               list(concat(item, ' in ', town, ' ', before, '->', price, 'z (',
                           printf('%+.1f', pct), '%)')) AS examples
        FROM (SELECT *, abs(pct) >= {pct} AND abs(coalesce(prev_pct, 0)) < {pct} AS crossed
              FROM (SELECT *, lag(pct) OVER (PARTITION BY market ORDER BY tick) AS prev_pct
                    FROM (SELECT tick, market, town, item, price, before,
                                 100.0 * (price - before) / before AS pct
                          FROM (SELECT *, lag(price, {window}) OVER (PARTITION BY market
                                                                 ORDER BY tick) AS before
                                FROM prices))
                    WHERE before IS NOT NULL))
        WHERE crossed GROUP BY ALL""",
}


def timeline(
    replay: Replay, *, start: int | None = None, stop: int | None = None,
    kinds: list[str] | None = None, shock_pct: float = SHOCK_PCT,
    shock_window_ticks: int = SHOCK_WINDOW_TICKS,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows (tick, category, kind, count, examples) in tick order.

    ``kinds`` keeps rows whose category or kind is listed (``hazard``, ``admin_hazard``).
    """
    wanted = set(kinds or ())
    con = connect([replay], progress=progress)
    views = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    need = {"input": "events", "action": "actions", "decision": "decisions",
            "hazard": "actions", "takeover": "owners", "price_shock": "prices"}
    cols = {"ev": _columns(con, "events", views), "ac": _columns(con, "actions", views)}

    def pick(view: str, *names: str) -> str:
        """The first of ``names`` the view has (as text), else NULL: worlds differ."""
        name = next((n for n in names if n in cols[view]), None)
        return "NULL" if name is None else f'CAST("{name}" AS VARCHAR)'

    fields = {f"{v}_{n}": pick(v, n, f"{n}_id") for v in ("ev", "ac")
              for n in ("map", "item", "hazard_type", "intensity", "text")}
    parts = []
    for cat in CATEGORIES:
        if need[cat] not in views:
            continue
        parts.append(_SQL[cat].format(pct=float(shock_pct), window=int(shock_window_ticks),
                                      weather=_WEATHER, **fields))
    if not parts:
        return []
    where = []
    if start is not None:
        where.append(f"tick >= {int(start)}")
    if stop is not None:
        where.append(f"tick <= {int(stop)}")
    if wanted:
        names = ", ".join("'" + k.replace("'", "''") + "'" for k in sorted(wanted))
        where.append(f"(category IN ({names}) OR kind IN ({names}) "
                     f"OR split_part(kind, ' ', 1) IN ({names}))")
    sql = " UNION ALL ".join(f"({p})" for p in parts)
    sql = (f"SELECT tick, category, kind, count, list_slice(examples, 1, {EXAMPLES_MAX}) "
           f"AS examples FROM ({sql}) {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY tick, array_position({list(CATEGORIES)}, category), kind")
    try:
        rows = con.execute(sql).fetchall()
    except Exception as exc:  # a run without one of the columns the SQL names
        raise UserError(f"timeline: {exc}") from exc
    return [{"tick": t, "category": c, "kind": k, "count": n,
             "examples": [e for e in (ex or []) if e]} for t, c, k, n, ex in rows]


def _columns(con: Any, view: str, views: set[str]) -> set[str]:
    if view not in views:
        return set()
    return {r[0] for r in con.execute(f'DESCRIBE "{view}"').fetchall()}


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned text, the tick printed once per group of rows."""
    out = []
    last = None
    for r in rows:
        tick = str(r["tick"]) if r["tick"] != last else ""
        last = r["tick"]
        ex = "; ".join(r["examples"])
        more = " ..." if r["count"] > len(r["examples"]) and r["examples"] else ""
        out.append(f"{tick:>7}  {r['category']:<11} {r['kind']:<28} x{r['count']:<6} "
                   f"{ex}{more}".rstrip())
    return "\n".join(out)
