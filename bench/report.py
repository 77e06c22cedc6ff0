"""Presenting results: the human table, the comparison against a baseline, the PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from norn.bench.machine import describe
from norn.bench.stats import compare, differences


def _against(goal: dict) -> str:
    """A ratio goal's reference case, where it names one (it may change from run to run)."""
    return f" (against {goal['against']})" if goal.get("against") else ""


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int | float):
        ax = abs(x)
        if ax >= 1e9:
            return f"{x / 1e9:.3g}G"
        if ax >= 1e6:
            return f"{x / 1e6:.4g}M"
        if ax >= 1e4:
            return f"{x / 1e3:.4g}k"
        if ax >= 100:
            return f"{x:.1f}"
        return f"{x:.4g}"
    return str(x)


def _figure_cell(v: Any) -> tuple[str, str]:
    if isinstance(v, dict):
        rng = f"[{_num(v.get('min'))} .. {_num(v.get('max'))}] n={v.get('n')}"
        return _num(v.get("median")), rng
    return _num(v), ""


def render(result: dict[str, Any]) -> str:
    """The human-readable report of one result file."""
    lines = [f"Norn bench  {result.get('created', '')}", f"machine: {describe(result['machine'])}"]
    triad = result.get("triad") or {}
    if triad:
        lines.append(
            f"memory bandwidth (STREAM triad, numba): {triad['gb_per_s']} GB/s best, "
            f"{triad['gb_per_s_median']} GB/s median"
        )
    lines.append(f"command: {result.get('command', '')}")
    git = result.get("machine", {}).get("git", {})
    if git.get("source_hash"):
        lines.append(f"sources: {git['source_hash']} ({git.get('source_files')} files) at "
                     f"commit {git.get('commit')}{' + LOCAL CHANGES' if git.get('dirty') else ''}")
    for w in result.get("warnings", []):
        lines.append(f"WARNING: {w}")
    for name, scen in result.get("scenarios", {}).items():
        lines.append("")
        lines.append(f"== {name} ==")
        width = max([len(c["name"]) for c in scen.get("cases", [])] + [4])
        for case in scen.get("cases", []):
            if not case.get("available", True):
                lines.append(f"  {case['name']:<{width}}  {case.get('reason')}")
                continue
            extra = []
            if "compile_s" in case:
                extra.append(f"compile {case['compile_s']} s")
            if "setup_s" in case:
                extra.append(f"setup {case['setup_s']} s")
            if case.get("other_load_cores"):
                extra.append(f"other processes used {case['other_load_cores']} cores meanwhile")
            if "versions" in case:
                extra.append(", ".join(f"{k} {v}" for k, v in case["versions"].items()))
            lines.append(f"  {case['name']}" + (f"   ({'; '.join(extra)})" if extra else ""))
            if case.get("kind"):
                lines.append(f"      [{case['kind']}]")
            if case.get("bytes_per_update") is not None:
                eff = case.get("figures", {}).get("efficiency")
                share = "-" if eff is None else f"{eff:.3g}"
                bpu = case["bytes_per_update"]
                lines.append(f"      bytes touched per entity-update {bpu:.4g} B (estimate); "
                             f"share of the STREAM triad {share}")
            for metric, value in case.get("figures", {}).items():
                med, rng = _figure_cell(value)
                lines.append(f"      {metric:<24} {med:>12}  {rng}")
            if case.get("phase_ms"):
                ph = ", ".join(f"{k} {v:.3g}" for k, v in case["phase_ms"].items())
                lines.append(f"      phases ms/tick: {ph}")
            if case.get("system_ms"):
                sy = ", ".join(f"{k} {v:.3g}" for k, v in case["system_ms"].items())
                lines.append(f"      systems ms/tick: {sy}")
        for k, v in scen.get("ratios", {}).items():
            lines.append(f"  ratio {k}: {v}")
        for g in scen.get("goals", []):
            state = {True: "MET", False: "NOT MET", None: "unknown"}[g["met"]]
            lines.append(
                f"  goal {g['name']}{_against(g)}: {_num(g['value'])} {g['op']} "
                f"{_num(g['target'])} "
                f"{g['unit']} -> {state}"
            )
        for c in scen.get("checks", []):
            lines.append(f"  check {'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}")
        for n in scen.get("notes", []):
            lines.append(f"  note: {n}")
    return "\n".join(lines)


def render_compare(new: dict[str, Any], base: dict[str, Any], base_name: str) -> str:
    """The comparison table; first, what makes the two runs differ.

    Runs on another machine, at another size or in another mode are shown side by side
    but not judged: each difference is a WARNING line and no figure is flagged.
    """
    rows = compare(new, base)
    apart, changed = differences(new, base)
    lines = [
        "",
        f"compared with {base_name}",
        f"  baseline machine: {describe(base['machine'])}",
        f"  this machine:     {describe(new['machine'])}",
    ]
    lines += [f"  WARNING: not comparable: {d}" for d in apart]
    if apart:
        lines.append("  the ratios below are not judged better or worse: measure the baseline "
                     "again here, with the same options")
    lines += [f"  changed since the baseline: {c}" for c in changed]
    if not rows:
        lines.append("  no figure in common")
        return "\n".join(lines)
    width = max(len(r.key) for r in rows)
    lines.append(f"  {'figure':<{width}}  {'baseline':>10}  {'now':>10}  ratio   noise  flag")
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        flag = r.flag.upper() if not r.unjudged else "not judged"
        if r.unjudged and not apart:  # a case-level reason (its size) is said on its row
            flag += f" ({r.unjudged})"
        lines.append(
            f"  {r.key:<{width}}  {_num(r.base):>10}  {_num(r.new):>10}  {ratio:>5}  "
            f"{r.noise:>5.1%}  {flag}"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> str:
    """PNG of the scaling curve(s): ticks/s and updates/s against world size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install -e '.[plot]')"
    series = _series(result)
    if not series:
        return "plot skipped: no scenario with a size axis (scale or boltzmann) in this run"
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.5), squeeze=False)
    for ax, (title, ylabel, curves) in zip(axes[0], series, strict=True):
        for label, xs, ys in curves:
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entities")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(describe(result["machine"]), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def _series(result: dict[str, Any]) -> list[tuple[str, str, list]]:
    out = []
    scen = result.get("scenarios", {})
    if "scale" in scen:
        pts = [
            (c["entities"], c["figures"]["ticks_per_s"]["median"],
             c["figures"]["npc_updates_per_s"]["median"])
            for c in scen["scale"]["cases"]
            if c.get("available", True) and "ticks_per_s" in c.get("figures", {})
        ]
        if pts:
            pts.sort()
            xs = [p[0] for p in pts]
            out.append(("generated world", "per second", [
                ("ticks/s", xs, [p[1] for p in pts]),
                ("NPC-updates/s", xs, [p[2] for p in pts]),
            ]))
    if "boltzmann" in scen:
        by_impl: dict[str, list[tuple[int, float]]] = {}
        for c in scen["boltzmann"]["cases"]:
            rate = c.get("figures", {}).get("agent_steps_per_s")
            if c.get("available", True) and isinstance(rate, dict):
                by_impl.setdefault(c["name"].split("/")[0], []).append(
                    (c["entities"], rate["median"])
                )
        if by_impl:
            curves = [
                (impl, [p[0] for p in sorted(pts)], [p[1] for p in sorted(pts)])
                for impl, pts in by_impl.items()
            ]
            out.append(("Boltzmann wealth model", "agent-steps/s", curves))
    return out
