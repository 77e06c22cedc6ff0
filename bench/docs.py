"""``docs/benchmarks.md``'s figures, generated from ``bench/results/*.json``.

The page marks every generated part::

    <!-- bench: NAME -->
    ...generated; edits here are overwritten...
    <!-- /bench -->

``NAME`` is a result file's stem (``scale`` reads ``bench/results/scale.json``), or
``sources`` (which file was measured where, on what code) or ``goals`` (every goal of every
result file). ``norn bench report --docs`` rewrites the marked parts; ``check_doc`` (run by
``tests/test_bench_docs.py`` and ``norn bench report --check``) fails when a marked part
differs from what the result files give, or when a line under ``## Latest figures`` quotes
a figure (has a digit) outside a marked part: so every figure the page quotes there is in
a result file, with the machine and the code it was measured on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from norn.bench.machine import ROOT
from norn.engine.errors import UserError

RESULTS_DIR = ROOT / "bench" / "results"
DOC_PATH = ROOT / "docs" / "benchmarks.md"
#: the headings under which every line with a digit must be inside a generated part
FIGURE_HEADINGS = ("## Latest figures",)

_START = re.compile(r"^<!-- bench: (?P<name>[A-Za-z0-9_.-]+) -->$")
_END = "<!-- /bench -->"


class DocError(UserError):
    """The page's markers are malformed, or name a result file that does not exist."""


# -- number formatting ----------------------------------------------------------------------
def si(x: float | None, digits: int = 3) -> str:
    """92255992 -> 92.3M, 31.4405 -> 31.4, 0.165 -> 0.165."""
    if x is None:
        return "-"
    ax = abs(x)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= scale * 10 or (ax >= scale and suffix != "k"):
            return f"{_sig(x / scale, digits)}{suffix}"
    return _sig(x, digits)


def _sig(x: float, digits: int) -> str:
    if x == 0:
        return "0"
    s = f"{x:.{digits}g}"
    if "e" in s:
        return f"{x:.0f}"
    return s


def _med(fig: Any) -> float | None:
    return fig.get("median") if isinstance(fig, dict) else fig


def _rng(fig: Any, digits: int = 3) -> str:
    """``**median** [min .. max], n runs`` of a summarized figure (or just the value)."""
    if not isinstance(fig, dict):
        return si(fig, digits)
    if fig.get("n", 1) == 1:
        return f"{si(fig['median'], digits)}, 1 run"
    return (f"{si(fig['median'], digits)} [{si(fig['min'], digits)} .. "
            f"{si(fig['max'], digits)}], {fig['n']} runs")


def _cases(doc: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [c for c in doc.get("scenarios", {}).get(scenario, {}).get("cases", [])
            if c.get("available", True)]


def _mib(mb: float | None) -> str:
    return "-" if mb is None else f"{mb:.0f} MiB"


def _share(case: dict[str, Any]) -> str:
    bpu = case.get("bytes_per_update")
    eff = case.get("figures", {}).get("efficiency")
    if bpu is None:
        return "- (not recorded)"
    return f"{bpu:.0f} B, {eff:.3g} of the triad" if eff is not None else f"{bpu:.0f} B"


def provenance(doc: dict[str, Any]) -> str:
    """The line under every generated table: the command, when, on what code and machine."""
    m = doc.get("machine", {})
    git = m.get("git", {})
    commit = str(git.get("commit", "unknown"))[:7]
    tree = "**dirty tree**" if git.get("dirty") else "clean tree"
    if git.get("dirty") is None:
        tree = "tree state unknown"
    src = git.get("source_hash")
    src_s = f"sources {src.removeprefix('sha256:')[:12]}" if src else "source hash not recorded"
    nb = m.get("numba", {})
    loads = [c.get("other_load_cores") for s in doc.get("scenarios", {}).values()
             for c in s.get("cases", []) if c.get("other_load_cores") is not None]
    load = f"; other load up to {max(loads):.2g} cores" if loads else ""
    return (f"`{doc.get('command', '')}`, {doc.get('created', '')[:10]}, commit {commit} "
            f"({tree}, {src_s}); {m.get('cpu')}, {m.get('logical_cores')} cores, "
            f"numba {nb.get('layer')} x{nb.get('threads')} wait "
            f"{nb.get('wait_policy') or 'default'}; triad "
            f"{doc.get('triad', {}).get('gb_per_s')} GB/s{load}")


# -- sections -----------------------------------------------------------------------------
def sec_sources(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| result file | measured | commit | tree | sources (SHA-256) | machine | "
             "threads (layer, wait) | triad GB/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, doc in sorted(results.items()):
        m = doc.get("machine", {})
        git = m.get("git", {})
        tree = {True: "**dirty**", False: "clean", None: "unknown"}[git.get("dirty")]
        src = git.get("source_hash")
        nb = m.get("numba", {})
        lines.append(
            f"| `{name}.json` | {doc.get('created', '')[:10]} | "
            f"{str(git.get('commit', 'unknown'))[:7]} | {tree} | "
            f"{src.removeprefix('sha256:')[:12] if src else 'not recorded'} | "
            f"{m.get('cpu')}, {m.get('logical_cores')} cores | "
            f"{nb.get('layer')} x{nb.get('threads')}, {nb.get('wait_policy') or 'default'} | "
            f"{doc.get('triad', {}).get('gb_per_s')} |")
    return lines


def sec_goals(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| goal | measured | target | status | result file |",
             "| --- | --- | --- | --- | --- |"]
    for name, doc in sorted(results.items()):
        for scen in doc.get("scenarios", {}).values():
            for g in scen.get("goals", []):
                status = {True: "met", False: "**not met**", None: "unknown"}[g.get("met")]
                against = f" (against `{g['against']}`)" if g.get("against") else ""
                lines.append(f"| {g['name']}{against} | **{si(g.get('value'))}** "
                             f"{g.get('unit', '')} | "
                             f"{g['op']} {si(g.get('target'))} | {status} | `{name}.json` |")
    return lines


def sec_boltzmann(doc: dict[str, Any]) -> list[str]:
    cases = _cases(doc, "boltzmann")
    scen = doc["scenarios"]["boltzmann"]
    labels = {
        "engine": "Norn engine (`actors.boltzmann`)",
        "ceiling": "hand-written ceiling (same Philox draws, numba)",
        "numba-rng": "hand-written numba, numba's generator",
        "numpy": "plain numpy (PCG64, bincount)",
        "mesa": "mesa (benchmark's model, sequential)",
        "mesa-frames": "mesa-frames (benchmark's Polars model)",
    }
    lines = ["| implementation | agents | agent-steps/s (median [min .. max]) | engine / this | "
             "Gini | versions |", "| --- | --- | --- | --- | --- | --- |"]
    for c in cases:
        impl = c["name"].split("/")[0]
        ratio = scen.get("ratios", {}).get(f"engine / {c['name']}")
        versions = ", ".join(f"{k} {v}" for k, v in c.get("versions", {}).items())
        lines.append(f"| {labels.get(impl, impl)} | {si(c.get('entities'))} | "
                     f"{_rng(c['figures'].get('agent_steps_per_s'))} | "
                     f"{'' if ratio is None else f'{ratio:.3g}x'} | "
                     f"{c['figures'].get('gini')} | {versions} |")
    lines.append("")
    for c in cases:
        if not c["name"].startswith("engine/"):
            continue
        f, ph = c["figures"], c.get("phase_ms", {})
        systems = ", ".join(f"{k} {v:.2g}" for k, v in c.get("system_ms", {}).items())
        lines.append(
            f"Engine tick at {si(c.get('entities'))} agents: p50 {f.get('tick_ms_p50'):.3g} ms, "
            f"p99 {f.get('tick_ms_p99'):.3g} ms; deliver {ph.get('deliver', 0):.2g} ms, act "
            f"{ph.get('act', 0):.2g} ms, commit (digest) {ph.get('commit', 0):.2g} ms = "
            f"{f.get('digest_share', 0):.0%} of the tick; systems ms/tick: {systems}; peak RSS "
            f"{_mib(f.get('peak_rss_mb'))}; bytes per agent-update {_share(c)}.")
    for chk in scen.get("checks", []):
        if not chk["ok"]:
            lines.append(f"Check FAILED: {chk['name']}: {chk['detail']}.")
    return lines


def sec_scale(doc: dict[str, Any]) -> list[str]:
    lines = ["| NPCs | ticks/s | NPC-updates/s | tick p50 / p99 ms | commit (digest) ms | "
             "peak RSS | bytes/NPC | bytes per NPC-update, triad share | other load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    world = [c for c in _cases(doc, "scale") if not c["name"].startswith("memory/")]
    for c in world:
        f = c["figures"]
        lines.append(
            f"| {c['entities']:,} | {_rng(f.get('ticks_per_s'))} | "
            f"{si(_med(f.get('npc_updates_per_s')))} | {f.get('tick_ms_p50'):.3g} / "
            f"{f.get('tick_ms_p99'):.3g} | {c.get('phase_ms', {}).get('commit', 0):.3g} | "
            f"{_mib(f.get('peak_rss_mb'))} | {si(f.get('bytes_per_npc'))} | {_share(c)} | "
            f"{c.get('other_load_cores', 0):.2g} cores |")
    if world:
        big = max(world, key=lambda c: c["entities"])
        ph = ", ".join(f"{k} {v:.3g}" for k, v in big.get("phase_ms", {}).items())
        lines += ["", f"At {big['entities']:,} NPCs, phases ms/tick: {ph}."]
    lines += [f"Note: {n}." for n in doc["scenarios"]["scale"].get("notes", [])]
    return lines


def sec_actors(doc: dict[str, Any]) -> list[str]:
    lines = ["| kind | ms/tick | entities (table) | entity-updates/s | "
             "bytes per entity-update, triad share |", "| --- | --- | --- | --- | --- |"]
    for c in _cases(doc, "actors"):
        f = c["figures"]
        ent = f"{si(c.get('entities'))} ({c.get('table')})" if c.get("table") else "-"
        lines.append(f"| {c['name'].split('/')[0]} | {f['ms_per_tick']:.3g} | {ent} | "
                     f"{si(f.get('entity_updates_per_s'))} | {_share(c)} |")
    return lines


def sec_core(doc: dict[str, Any]) -> list[str]:
    lines = ["| case | ticks/s | tick p50 / p99 ms | commit (digest) ms | digest MB/s | "
             "journal ms/tick | bytes per row-update, triad share |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in _cases(doc, "core"):
        f = c["figures"]
        lines.append(
            f"| {c['name']} ({si(c.get('entities'))} rows) | {_rng(f.get('ticks_per_s'))} | "
            f"{f.get('tick_ms_p50'):.3g} / {f.get('tick_ms_p99'):.3g} | "
            f"{c.get('phase_ms', {}).get('commit', 0):.3g} | {si(f.get('digest_mb_per_s'))} | "
            f"{si(_med(f.get('journal_ms_per_tick')))} | {_share(c)} |")
    return lines


def sec_journal(doc: dict[str, Any]) -> list[str]:
    lines = ["| case | model | write MB/s | write ms/tick | verify ticks/s | bytes/tick |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in _cases(doc, "journal"):
        f = c["figures"]
        lines.append(f"| {c['name']} | {c.get('model')} | {_rng(f.get('write_mb_per_s'))} | "
                     f"{si(_med(f.get('write_ms_per_tick')))} | "
                     f"{_rng(f.get('verify_ticks_per_s'))} | "
                     f"{si(f.get('journal_bytes_per_tick'))} |")
    return lines


#: what each bridge case measures, for files written before cases carried a ``kind``
_BRIDGE_KINDS = {
    "ingest/columns": "burst: one burst into the bridge, a bare thread drains it (no world)",
    "ingest/rows": "burst, list-of-maps rows",
    "rtt": "round trip on the stand-in (MiniEngine: no tables, no journal)",
}


def sec_bridge(doc: dict[str, Any]) -> list[str]:
    lines = ["| case | what it measures | figures |", "| --- | --- | --- |"]
    for c in _cases(doc, "bridge"):
        f = c["figures"]
        kind = c.get("kind") or _BRIDGE_KINDS.get(c["name"].split("/tick_ms")[0], "")
        if "events_per_s" in f and "tick_rate_kept" in f:
            figs = (f"**{si(_med(f['events_per_s']))}** events/s applied; ticks/s "
                    f"{f['ticks_per_s']:.3g} of {f['ticks_per_s_requested']:.3g} requested "
                    f"({f['tick_rate_kept']:.0%}); tick p50 {f['tick_ms_p50']:.3g} ms, p99 "
                    f"{f['tick_ms_p99']:.3g} ms; bytes per NPC-update {_share(c)}")
        elif "events_per_s" in f:
            figs = f"**{_rng(f['events_per_s'])}** events/s ({si(_med(f.get('mb_per_s')))} MB/s)"
        else:
            figs = (f"p50 {f['rtt_ms_p50']:.3g} ms, **p99 {f['rtt_ms_p99']:.4g} ms**, max "
                    f"{f['rtt_ms_max']:.4g} ms, {f['lost']} lost")
            if "unsent" in f:  # unanswered, said apart (issue 16): none of them lost
                figs += (f" ({f['unsent']} unsent, {f['pending']} in flight, "
                         f"{f['expired']} expired)")
            if c.get("overloaded"):
                figs += "; **overloaded** (tick rate not kept: no goal)"
            if "ticks_per_s" in f:
                figs += (f"; ticks/s {f['ticks_per_s']:.3g} of "
                         f"{f['ticks_per_s_requested']:.3g} requested")
            if "tick_ms_p50" in f:
                figs += (f"; tick p50 {f['tick_ms_p50']:.3g} ms, p99 {f['tick_ms_p99']:.3g} ms; "
                         f"bytes per NPC-update {_share(c)}")
        lines.append(f"| {c['name']} | {kind} | {figs} |")
    names = [c["name"] for c in _cases(doc, "bridge")]
    if not any(n.startswith("sustained/") for n in names):
        lines += ["", "Not in this file (measured before `norn bench bridge` had them): the "
                  "sustained ingest into the generated world, and the round trip through the "
                  "real engine."]
    return lines


def _fig(v: Any) -> str:
    if isinstance(v, dict):
        return _rng(v)
    if isinstance(v, list):
        return "[" + ", ".join(_fig(x) for x in v) + "]"
    if isinstance(v, int | float) and not isinstance(v, bool):
        return si(v)
    return str(v)


def sec_figures(scenario: str) -> Callable[[dict[str, Any]], list[str]]:
    """A table of every case's figures as recorded, then the scenario's checks and notes:
    for scenarios whose figures are read one by one (startup, llm, fuzz)."""

    def render(doc: dict[str, Any]) -> list[str]:
        lines = ["| case | figures |", "| --- | --- |"]
        for c in _cases(doc, scenario):
            figs = "; ".join(f"{k} {_fig(v)}" for k, v in c.get("figures", {}).items())
            lines.append(f"| {c['name']} | {figs} |")
        scen = doc["scenarios"][scenario]
        if scen.get("checks") or scen.get("notes"):
            lines.append("")
        for chk in scen.get("checks", []):
            lines.append(f"- check {'ok' if chk.get('ok') else '**FAILED**'}: {chk['name']} "
                         f"({chk.get('detail', '')})")
        lines += [f"Note: {n}." for n in scen.get("notes", [])]
        return lines

    return render


#: result-file stem -> (scenario in it, renderer)
RENDERERS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "boltzmann": ("boltzmann", sec_boltzmann),
    "boltzmann-peers": ("boltzmann", sec_boltzmann),
    "scale": ("scale", sec_scale),
    "actors": ("actors", sec_actors),
    "core": ("core", sec_core),
    "journal": ("journal", sec_journal),
    "bridge": ("bridge", sec_bridge),
    "startup": ("startup", sec_figures("startup")),
    "llm": ("llm", sec_figures("llm")),
    "fuzz": ("fuzz", sec_figures("fuzz")),
}


def load_results(results_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` result document in ``results_dir`` (``RESULTS_DIR``), by file stem."""
    out = {}
    for p in sorted((results_dir or RESULTS_DIR).glob("*.json")):
        doc = json.loads(p.read_text())
        if doc.get("schema") == "norn-bench/1":
            out[p.stem] = doc
    return out


def render_section(name: str, results: dict[str, dict[str, Any]]) -> list[str]:
    """The generated lines of section ``name`` (between its markers)."""
    if name == "sources":
        return sec_sources(results)
    if name == "goals":
        return sec_goals(results)
    if name not in results:
        raise DocError(f"<!-- bench: {name} -->: no result file bench/results/{name}.json")
    doc = results[name]
    scen_name = RENDERERS.get(name, (name, None))[0]
    render = RENDERERS.get(name, (None, None))[1]
    if scen_name not in doc.get("scenarios", {}):
        raise DocError(f"<!-- bench: {name} -->: {name}.json has no {scen_name!r} scenario")
    if render is None:
        scen_name = next(iter(doc["scenarios"]))
        render = RENDERERS.get(scen_name, (None, None))[1]
        if render is None:
            raise DocError(f"<!-- bench: {name} -->: no table for scenario {scen_name!r}")
    return [provenance(doc) + ":", "", *render(doc)]


def _parts(text: str) -> list[tuple[str | None, list[str]]]:
    """The page as (None, plain lines) and (name, generated lines) parts, in order."""
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    current: str | None = None
    for i, line in enumerate(text.split("\n"), 1):
        m = _START.match(line)
        if m:
            if current is not None:
                raise DocError(f"line {i}: {line!r} inside the {current!r} section")
            parts[-1][1].append(line)
            current = m["name"]
            parts.append((current, []))
        elif line == _END:
            if current is None:
                raise DocError(f"line {i}: {_END} with no section open")
            current = None
            parts.append((None, [line]))
        else:
            parts[-1][1].append(line)
    if current is not None:
        raise DocError(f"section {current!r} is not closed with {_END}")
    return parts


def generate(text: str, results: dict[str, dict[str, Any]]) -> str:
    """The page with every marked section regenerated from ``results``."""
    out: list[str] = []
    for name, lines in _parts(text):
        out.extend(lines if name is None else render_section(name, results))
    return "\n".join(out)


def check_doc(text: str, results: dict[str, dict[str, Any]]) -> list[str]:
    """What makes the page disagree with the result files (empty: it agrees)."""
    try:
        parts = _parts(text)
        problems = []
        for name, lines in parts:
            if name is not None and lines != render_section(name, results):
                problems.append(f"section {name!r} differs from bench/results/ (run `norn "
                                f"bench report --docs`)")
    except DocError as exc:
        return [str(exc)]
    heading = None
    lineno = 0
    for name, lines in parts:
        for line in lines:
            lineno += 1
            if name is not None:
                continue
            if line.startswith("## "):
                heading = next((h for h in FIGURE_HEADINGS if line.strip() == h), None)
            if heading and re.search(r"\d", line) and not _START.match(line):
                problems.append(f"line {lineno}: a figure under {heading!r} outside a "
                                f"generated section (in no result file?): {line.strip()!r}")
    return problems


def update_doc(path: Path | None = None, results_dir: Path | None = None) -> bool:
    """Rewrite ``path``'s (``DOC_PATH``) marked sections; True when it changed."""
    path = path or DOC_PATH
    text = path.read_text()
    new = generate(text, load_results(results_dir))
    if new != text:
        path.write_text(new)
    return new != text
