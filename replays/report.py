"""``norn replay report RUN --out report.html``: one self-contained page about a run.

The page carries its data as JSON and draws its plots as SVG with a few lines of inline
JavaScript: no network, no library, no files beside it, so it opens offline, mails as one
attachment and stays readable in ten years. Plots: NPC population by state, prices of the
top movers, zeny sources and sinks, ground held by each faction, hazards on a map-by-tick
chart, decisions by tier. Each plot marks itself drawn (``data-rendered``) and the page
counts them (``body[data-plots]``), which is what the browser test checks, with the
console.

The numbers come from the derived tables (``derive.py``) through DuckDB, thinned to at
most ``POINTS_MAX`` points per series, so a long run still makes a light page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from norn.replays.query import connect
from norn.replays.session import Replay

#: Points per plotted series, the first and last tick included (thinned evenly above).
POINTS_MAX = 400
#: Tick columns of the hazard chart.
HAZARD_COLUMNS_MAX = 120
#: Markets in the price plot.
MOVERS_MAX = 8
PLOTS = ("population", "prices", "zeny", "ground", "hazards", "decisions")


def thinning(first: int, last: int, points_max: int) -> int:
    """The tick step that keeps a series of ticks ``first..last`` within ``points_max``
    points (every step-th tick from ``first``, and ``last``)."""
    span = last - first
    return max(1, -(-span // max(points_max - 1, 1)))


def _series(con: Any, sql: str, key: str, value: str, step: int, first: int = 0
            ) -> dict[str, Any]:
    """``{"x": ticks, "series": [{"name", "values"}]}`` from rows (tick, key, value)."""
    rows = con.execute(f"SELECT tick, {key} AS k, {value} AS v FROM ({sql}) "
                       f"WHERE (tick - {first}) % {step} = 0 "
                       f"OR tick = (SELECT max(tick) FROM ({sql})) "
                       "ORDER BY k, tick").fetchall()
    ticks = sorted({r[0] for r in rows})
    pos = {t: i for i, t in enumerate(ticks)}
    series: dict[str, list[Any]] = {}
    for t, k, v in rows:  # output formatting over thinned points, not the simulation
        series.setdefault(str(k), [None] * len(ticks))[pos[t]] = v
    return {"x": ticks, "series": [{"name": k, "values": v} for k, v in series.items()]}


def collect(replay: Replay, progress: Callable[[int, int], None] | None = None
            ) -> dict[str, Any]:
    """The page's data: header facts and one entry per plot."""
    con = connect([replay], progress=progress)
    views = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    first, last = replay.first_tick, replay.last_tick
    step = thinning(first, last, POINTS_MAX)
    h = replay.header
    totals = con.execute("SELECT sum(events), sum(actions), sum(decisions) FROM ticks"
                         ).fetchone() or (0, 0, 0)
    data: dict[str, Any] = {
        "title": f"{h['scenario']['name']} seed {h['seed']}",
        "run": str(replay.dir), "scenario": h["scenario"]["name"], "seed": h["seed"],
        "ticks": [first, last], "tick_ms": h.get("tick_ms"), "fork": replay.fork,
        "totals": {"events": int(totals[0] or 0), "actions": int(totals[1] or 0),
                   "decisions": int(totals[2] or 0)},
        "plots": {},
    }
    plots = data["plots"]
    if "npc_states" in views:
        plots["population"] = _series(con, "SELECT * FROM npc_states", "state", "npcs", step, first)
    if "prices" in views:
        movers = con.execute(f"""
            SELECT market, any_value(item) || ' in ' || any_value(town) AS name
            FROM (SELECT *, first(price) OVER (PARTITION BY market ORDER BY tick) AS base
                  FROM prices)
            GROUP BY market ORDER BY max(abs(price - base) / base) DESC, market
            LIMIT {MOVERS_MAX}""").fetchall()
        ids = ", ".join(str(m) for m, _ in movers) or "-1"
        plots["prices"] = _series(con, f"""
            SELECT tick, item || ' in ' || town AS name,
                   round(100.0 * (price - first(price) OVER (PARTITION BY market ORDER BY tick))
                         / first(price) OVER (PARTITION BY market ORDER BY tick), 2) AS pct
            FROM prices WHERE market IN ({ids})""", "name", "pct", step, first)
    if "zeny" in views:
        plots["zeny"] = _series(con, """
            SELECT tick, side || ': ' || account AS name, zeny FROM zeny
            WHERE account IN (SELECT account FROM zeny GROUP BY account HAVING max(zeny) > 0)
            """, "name", "zeny", step, first)
    if "ground" in views:
        plots["ground"] = _series(con, "SELECT * FROM ground", "faction", "maps", step, first)
    if "hazards" in views:
        width = max(1, -(-(last - first) // HAZARD_COLUMNS_MAX))
        rows = con.execute(f"""
            SELECT CAST(map AS VARCHAR) AS map, (tick - {first}) // {width} AS col,
                   max(intensity) AS v, arg_max(CAST(hazard_type AS VARCHAR), intensity) AS t
            FROM hazards GROUP BY ALL ORDER BY map, col""").fetchall()
        maps = sorted({r[0] for r in rows})
        plots["hazards"] = {
            "maps": maps, "columns": -(-(last - first) // width) or 1, "first": first,
            "width": width,
            "cells": [[maps.index(m), c, round(float(v), 3), t] for m, c, v, t in rows]}
    if "decisions" in views:
        bucket = max(1, -(-(last - first) // 60))
        plots["decisions"] = _series(con, f"""
            SELECT ({first} + ((tick - {first} - 1) // {bucket}) * {bucket} + {bucket}) AS tick,
                   tier, count(*) AS n FROM decisions GROUP BY ALL""", "tier", "n", 1)
        plots["decisions"]["bucket"] = bucket
    return data


def render(data: dict[str, Any]) -> str:
    """The HTML page for ``collect``'s data."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    fork = data.get("fork")
    fork_line = (f"<p>A what-if fork of <code>{html.escape(str(fork['parent']))}</code> at "
                 f"tick {fork['tick']}: {html.escape(_changes(fork))}</p>" if fork else "")
    t = data["totals"]
    figs = "\n".join(
        f'<figure id="plot-{p}" data-plot="{p}"><figcaption>{html.escape(c)}</figcaption>'
        "</figure>" for p, c in (
            ("population", "NPC population by state"),
            ("prices", "Prices of the top movers (% from the first tick)"),
            ("zeny", "Zeny sources and sinks (so far)"),
            ("ground", "Ground held (maps per faction)"),
            ("hazards", "Hazards: maps by tick (darker: stronger)"),
            ("decisions", "Decisions by tier"))
        if p in data["plots"])
    return _PAGE.format(
        title=html.escape(data["title"]), run=html.escape(data["run"]),
        first=data["ticks"][0], last=data["ticks"][1], tick_ms=data.get("tick_ms"),
        events=t["events"], actions=t["actions"], decisions=t["decisions"],
        fork=fork_line, figures=figs, data=payload, script=_SCRIPT)


def _changes(fork: dict[str, Any]) -> str:
    parts = [f"set {s}" for s in fork.get("set", [])]
    parts += [f"inject {s}" for s in fork.get("inject", [])]
    parts += [f"drop {s}" for s in fork.get("drop", [])]
    if fork.get("seed") is not None:
        parts.append(f"seed {fork['seed']}")
    return "; ".join(parts) or "no changes"


def report(replay: Replay, out: str | Path,
           progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the report of ``replay`` to ``out``; returns its path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(collect(replay, progress)), encoding="utf-8")
    return path


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Norn report: {title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 960px;
       color: #222; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
.facts {{ color: #555; margin: 0 0 16px; }}
figure {{ margin: 18px 0; padding: 8px 12px; border: 1px solid #ddd; border-radius: 6px; }}
figcaption {{ font-weight: 600; margin-bottom: 6px; }}
svg {{ display: block; width: 100%; height: auto; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #444; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; }}
.legend span::before {{ content: ""; display: inline-block; width: 10px; height: 10px;
                        margin-right: 4px; background: var(--c); }}
.error {{ color: #b00; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="facts">Run <code>{run}</code>, ticks {first}..{last} ({tick_ms} ms each):
{events} input events, {actions} world actions, {decisions} decisions.</p>
{fork}
{figures}
<script type="application/json" id="norn-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("norn-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c"];
  const W = 900, H = 260, L = 56, R = 12, T = 10, B = 28;
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function svg(fig, h) {
    return el("svg", {viewBox: "0 0 " + W + " " + (h || H), role: "img"}, fig);
  }
  function nice(lo, hi) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo, p = Math.pow(10, Math.floor(Math.log10(span / 4)));
    const step = [1, 2, 5, 10].map(m => m * p).find(s => span / s <= 5) || p * 10;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(v);
    return ticks;
  }
  function axes(s, x0, x1, y0, y1, h) {
    const xs = v => L + (v - x0) / ((x1 - x0) || 1) * (W - L - R);
    const ys = v => h - B - (v - y0) / ((y1 - y0) || 1) * (h - T - B);
    el("line", {x1: L, y1: h - B, x2: W - R, y2: h - B, stroke: "#999"}, s);
    el("line", {x1: L, y1: T, x2: L, y2: h - B, stroke: "#999"}, s);
    for (const v of nice(y0, y1)) {
      el("line", {x1: L, x2: W - R, y1: ys(v), y2: ys(v), stroke: "#eee"}, s);
      el("text", {x: L - 6, y: ys(v) + 4, "text-anchor": "end"}, s).textContent =
        Math.abs(v) >= 1e6 ? (v / 1e6) + "M" : Math.abs(v) >= 1e4 ? (v / 1e3) + "k" : v;
    }
    for (const v of nice(x0, x1)) {
      el("text", {x: xs(v), y: h - 8, "text-anchor": "middle"}, s).textContent = v;
    }
    return [xs, ys];
  }
  function legend(fig, names) {
    const d = document.createElement("div");
    d.className = "legend";
    names.forEach((n, i) => {
      const s = document.createElement("span");
      s.style.setProperty("--c", COLORS[i % COLORS.length]);
      s.textContent = n;
      d.appendChild(s);
    });
    fig.appendChild(d);
  }
  function lines(fig, p, stacked) {
    const xs0 = p.x, series = p.series;
    if (!xs0.length || !series.length) throw new Error("no data to plot");
    let lo = Infinity, hi = -Infinity;
    const base = xs0.map(() => 0);
    const tops = series.map(s => s.values.map((v, i) => {
      const y = (v == null ? 0 : v) + (stacked ? base[i] : 0);
      if (stacked) base[i] = y;
      return v == null && !stacked ? null : y;
    }));
    for (const t of tops) {
      for (const v of t) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (stacked) lo = 0;
    const s = svg(fig);
    const [xs, ys] = axes(s, xs0[0], xs0[xs0.length - 1], lo, hi, H);
    tops.forEach((t, k) => {
      let d = "", pen = false;
      t.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        d += (pen ? "L" : "M") + xs(xs0[i]).toFixed(1) + " " + ys(v).toFixed(1);
        pen = true;
      });
      const path = el("path", {d: d, fill: "none", stroke: COLORS[k % COLORS.length],
                               "stroke-width": 1.6}, s);
      el("title", {}, path).textContent = series[k].name;
    });
    legend(fig, series.map(x => x.name));
  }
  function bars(fig, p) {
    const xs0 = p.x, series = p.series;
    if (!xs0.length || !series.length) throw new Error("no data to plot");
    const tot = xs0.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
    const s = svg(fig);
    const x0 = xs0[0] - (p.bucket || 1), x1 = xs0[xs0.length - 1];
    const [xs, ys] = axes(s, x0, x1, 0, Math.max(...tot), H);
    const bw = Math.max(1, (xs(x0 + (p.bucket || 1)) - xs(x0)) * 0.85);
    xs0.forEach((x, i) => {
      let acc = 0;
      series.forEach((sr, k) => {
        const v = sr.values[i] || 0;
        if (!v) return;
        const r = el("rect", {x: xs(x - (p.bucket || 1)).toFixed(1), width: bw.toFixed(1),
                              y: ys(acc + v).toFixed(1), height: (ys(acc) - ys(acc + v)).toFixed(1),
                              fill: COLORS[k % COLORS.length]}, s);
        el("title", {}, r).textContent = sr.name + ": " + v + " (ticks to " + x + ")";
        acc += v;
      });
    });
    legend(fig, series.map(x => x.name));
  }
  function heat(fig, p) {
    if (!p.maps.length) throw new Error("no hazards in this run");
    const rowH = 14, h = T + B + rowH * p.maps.length, left = 110;
    const s = svg(fig, h);
    const cw = (W - left - R) / p.columns;
    p.maps.forEach((m, i) => {
      el("text", {x: left - 6, y: T + rowH * i + 11, "text-anchor": "end"}, s).textContent = m;
    });
    for (const [row, col, v, t] of p.cells) {
      const r = el("rect", {x: (left + col * cw).toFixed(1), y: T + rowH * row,
                            width: Math.max(cw, 1).toFixed(1), height: rowH - 2,
                            fill: "#c0392b",
                            "fill-opacity": (0.15 + 0.85 * Math.min(v, 1)).toFixed(2)}, s);
      el("title", {}, r).textContent = p.maps[row] + ", ticks " + (p.first + col * p.width) +
        "+: " + t + " " + v;
    }
    for (const c of [0, Math.floor(p.columns / 2), p.columns - 1]) {
      el("text", {x: left + (c + 0.5) * cw, y: h - 8, "text-anchor": "middle"}, s).textContent =
        p.first + c * p.width;
    }
  }
  const draw = {population: f => lines(f, data.plots.population),
                prices: f => lines(f, data.plots.prices), zeny: f => lines(f, data.plots.zeny),
                ground: f => lines(f, data.plots.ground), hazards: f => heat(f, data.plots.hazards),
                decisions: f => bars(f, data.plots.decisions)};
  let rendered = 0;
  for (const fig of document.querySelectorAll("figure[data-plot]")) {
    try {
      draw[fig.dataset.plot](fig);
      fig.dataset.rendered = "1";
      rendered += 1;
    } catch (e) {
      const msg = document.createElement("p");
      msg.className = "error";
      msg.textContent = "(nothing to show: " + e.message + ")";
      fig.appendChild(msg);
      fig.dataset.rendered = "empty";
      if (!/^no /.test(e.message)) console.error(e);
    }
  }
  document.body.dataset.plots = String(rendered);
})();
"""
