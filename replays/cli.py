"""``norn replay info|verify``: the replays package's subcommands.

Registered through the ``norn.commands`` entry point group (``register``). ``verify``
exits 0 when every digest matches, 1 at the first divergence, 2 for unusable input.
"""

from __future__ import annotations

import argparse
import sys

from norn.engine.cli import print_json, progress
from norn.engine.errors import EXIT_DIVERGED, EXIT_OK


def cmd_replay_info(args: argparse.Namespace) -> int:
    """Print what a run directory holds: header, ticks, snapshots, end, torn tail."""
    from norn.engine.reader import open_run

    run = open_run(args.dir)
    h = run.header
    info = {
        "run_dir": str(run.dir),
        "format": h["format"],
        "norn": h["norn"],
        "scenario": {k: h["scenario"][k] for k in ("name", "model", "source", "hash")},
        "seed": h["seed"],
        "config": h["config"],
        "config_hash": h["config_hash"],
        "ticks": run.tick_frames,
        "last_tick": run.last_tick,
        "snapshots": [t for t, _, _ in run.snapshots],
        "end": run.end,
        "torn_tail_bytes": run.torn_tail_bytes,
        "env": h["env"],
    }
    if args.json:
        print_json(info)
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return EXIT_OK


def cmd_replay_verify(args: argparse.Namespace) -> int:
    """Re-simulate the run from its journal and compare every tick's digest."""
    from norn.engine.reader import open_run
    from norn.replays.verify import verify

    total = open_run(args.dir).tick_frames
    bar = progress(not args.json, total, "verify")
    on_progress = None
    if bar is not None:
        prog, task = bar
        prog.start()

        def on_progress(n: int, _total: int) -> None:
            prog.update(task, completed=n)

    try:
        result = verify(args.dir, on_progress)
    finally:
        if bar is not None:
            bar[0].stop()
    if args.json:
        print_json(result.as_dict())
    else:
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if result.matched:
            print(
                f"match: {result.ticks} ticks replayed, every digest equal "
                f"(last tick {result.last_tick})"
            )
        else:
            d = result.divergence
            print(f"DIVERGED: {d.describe() if d else 'scenario mismatch'}")
    return EXIT_OK if result.matched else EXIT_DIVERGED


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``replay info`` and ``replay verify`` to ``norn``."""
    rp = subparsers.add_parser("replay", help="inspect and verify recorded runs")
    rsub = rp.add_subparsers(dest="replay_command", required=True)
    p = rsub.add_parser("info", help="what a run directory holds")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_info)
    p = rsub.add_parser("verify", help="re-simulate and compare every tick's digest")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_verify)
