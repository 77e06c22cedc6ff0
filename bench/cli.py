"""``norn bench``: every speed goal of Norn is measured here, never by timing assertions in tests.

Usage::

    norn bench SCENARIO [--json] [--compare BASELINE.json] [--plot FILE.png] [--peers]
                        [--repeat N] [--sizes N [N ...]] [--ticks N] [--out FILE.json]

SCENARIO is one of core, scale, actors, journal, bridge, boltzmann, startup, or all (and fuzz,
run only by name: ``--ticks`` is its number of frames; see bench/scenarios/fuzz.py).
``bridge --seconds S``: how long its sustained client sends (bench/scenarios/bridge.py).
``norn bench report [--docs | --check]``: docs/benchmarks.md's figures from
bench/results/*.json (bench/docs.py); nothing is measured. The run
measures the machine's memory bandwidth first, then each scenario's cases (each in a
fresh process unless ``--in-process``), prints a human report (``--json``: the result
document instead) and writes the result JSON to ``--out`` (default
``runs/bench/SCENARIO-TIME.json``). Exit status: 0, or 1 when a correctness check of a
scenario failed (never for a missed speed goal: that is a figure, not an error).

Registered through the ``norn.commands`` entry point group (``register``); ``python -m
norn.bench.cli`` works on its own, with the same one-line errors and exit codes as ``norn``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from norn.bench.machine import ROOT, machine_info, source_tree, triad_bandwidth
from norn.bench.report import plot, render, render_compare
from norn.bench.suite import EXTRA_SCENARIOS, SCENARIOS, Options, run_scenario
from norn.engine.cli import run_command

SCHEMA = "norn-bench/1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", choices=[*SCENARIOS, *EXTRA_SCENARIOS, "all", "report"],
                   help="what to measure; report: docs/benchmarks.md's figures from "
                   "bench/results/*.json (--docs rewrites them, --check compares)")
    p.add_argument("--docs", action="store_true",
                   help="report: rewrite docs/benchmarks.md's generated sections")
    p.add_argument("--check", action="store_true",
                   help="report: exit 1 when docs/benchmarks.md differs from bench/results/")
    p.add_argument("--json", action="store_true", help="print the result document as JSON")
    p.add_argument("--compare", metavar="BASELINE", help="a saved result JSON to compare with")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the scaling curve")
    p.add_argument("--peers", action="store_true",
                   help="boltzmann: also run mesa and mesa-frames (own environments)")
    p.add_argument("--repeat", type=int, help="repetitions per case (default per scenario)")
    p.add_argument("--sizes", type=int, nargs="+", help="world sizes (NPCs or agents)")
    p.add_argument("--ticks", type=int, help="measured ticks (steps) per repetition")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", metavar="FILE", help="where to write the result JSON")
    p.add_argument("--in-process", action="store_true",
                   help="run cases in this process (faster; peak RSS is then shared)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (seconds, not minutes)")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="bridge: how long the sustained client sends (default 30; --tiny 3)")
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                   help="before each case wait up to SECONDS for other processes to idle")


def register(subparsers: Any) -> None:
    """Add ``bench`` to the ``norn`` command line."""
    p = subparsers.add_parser("bench", help="measure speed against the goals (docs/benchmarks.md)")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def _log(quiet: bool):
    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    return log


def collect(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the requested scenarios; the result document (machine, triad, scenarios)."""
    log = _log(False)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    log("measuring the machine (memory bandwidth, STREAM triad) ...")
    triad = triad_bandwidth(1 << 20, 3) if args.tiny else triad_bandwidth()
    opts = Options(
        sizes=args.sizes,
        repeat=args.repeat,
        ticks=args.ticks,
        peers=args.peers,
        seed=args.seed,
        isolate=not args.in_process,
        tiny=args.tiny,
        triad_gbs=triad["gb_per_s"],
        quiet_wait_s=args.quiet_wait,
        seconds=getattr(args, "seconds", None),
        log=log,
        quiet=args.json,
    )
    before = source_tree()
    for w in tree_warnings(before):
        log(f"norn bench: WARNING: {w}")
    scenarios = {name: run_scenario(name, opts) for name in names}
    machine = machine_info()
    warnings = tree_warnings(machine["git"], before)
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "norn bench " + " ".join(argv if argv is not None else sys.argv[2:]),
        "machine": machine,
        "warnings": warnings,
        "triad": triad,
        "options": {
            "sizes": args.sizes,
            "repeat": args.repeat,
            "ticks": args.ticks,
            "peers": args.peers,
            "seed": args.seed,
            "isolated": not args.in_process,
            "tiny": args.tiny,
            "quiet_wait_s": args.quiet_wait,
            "seconds": getattr(args, "seconds", None),
        },
        "scenarios": scenarios,
    }


def tree_warnings(tree: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    """What makes a result's figures impossible to tie to a commit: a dirty source tree
    (``machine.source_tree``), or sources that changed while the cases ran."""
    out = []
    if tree.get("dirty"):
        paths = ", ".join(tree.get("dirty_paths", [])[:8])
        more = tree.get("dirty_count", 0) - min(8, len(tree.get("dirty_paths", [])))
        if more > 0:
            paths += f", +{more} more"
        out.append(
            f"the source tree is DIRTY: {tree.get('dirty_count')} source file(s) differ from "
            f"commit {str(tree.get('commit'))[:10]} ({paths}); "
            f"these figures cannot be tied to a commit (the result records source_hash "
            f"{tree.get('source_hash')}); commit or stash, then measure again"
        )
    elif tree.get("dirty") is None:
        out.append("the source tree is unknown (no git): these figures cannot be tied to a commit")
    if before is not None and before.get("source_hash") != tree.get("source_hash"):
        out.append(
            f"the sources changed while the benchmark ran (hash {before.get('source_hash')} at "
            f"the start, {tree.get('source_hash')} at the end): cases may have measured "
            f"different code"
        )
    return out


def _default_out(scenario: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return ROOT / "runs" / "bench" / f"{scenario}-{stamp}.json"


def cmd_report(args: argparse.Namespace) -> int:
    """``norn bench report``: the page's generated sections (bench/docs.py)."""
    from norn.bench.docs import DOC_PATH, check_doc, generate, load_results, update_doc

    if args.docs:
        changed = update_doc()
        print(f"{DOC_PATH}: {'rewritten' if changed else 'already up to date'} from "
              f"bench/results/*.json", file=sys.stderr)
    text = DOC_PATH.read_text()
    results = load_results()
    if args.check or args.docs:
        problems = check_doc(text, results)
        for p in problems:
            print(f"norn bench report: {DOC_PATH.name}: {p}", file=sys.stderr)
        return 1 if problems else 0
    sys.stdout.write(generate(text, results))
    return 0


def cmd_bench(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    if args.scenario == "report":
        return cmd_report(args)
    baseline = None
    if args.compare:
        path = Path(args.compare)
        if not path.is_file():
            print(f"norn bench: error: {path}: baseline not found", file=sys.stderr)
            return 2
        baseline = json.loads(path.read_text())
        if baseline.get("schema") != SCHEMA:
            print(f"norn bench: error: {path}: not a {SCHEMA} result", file=sys.stderr)
            return 2
    result = collect(args, argv)
    out = Path(args.out) if args.out else _default_out(args.scenario)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    messages = [f"result written to {out}"]
    messages += [f"norn bench: WARNING: {w}" for w in result.get("warnings", [])]
    if args.plot:
        messages.append(plot(result, args.plot))
    if args.json:
        doc = dict(result)
        if baseline is not None:
            from norn.bench.stats import compare, differences

            doc["compare"] = [r.__dict__ for r in compare(result, baseline)]
            apart, changed = differences(result, baseline)
            doc["compare_not_comparable"] = apart  # non-empty: no figure is judged
            doc["compare_changed"] = changed
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        print(render(result))
        if baseline is not None:
            print(render_compare(result, baseline, args.compare))
    if baseline is not None:
        from norn.bench.stats import differences

        apart, _ = differences(result, baseline)
        if apart:  # said on stderr too, so --json users see it
            messages.append(f"norn bench: warning: {args.compare} is not comparable with this "
                            f"run ({'; '.join(apart)}): no figure judged better or worse")
    for m in messages:
        print(m, file=sys.stderr)
    failed = [
        c["name"]
        for scen in result["scenarios"].values()
        for c in scen.get("checks", [])
        if not c["ok"]
    ]
    if failed:
        print(f"norn bench: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="norn bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(lambda a: cmd_bench(a, argv if argv is not None else sys.argv[1:]), args,
                       prog="norn bench")


if __name__ == "__main__":
    sys.exit(main())
