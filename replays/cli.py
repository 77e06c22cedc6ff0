"""``norn replay ...`` and ``norn sweep``: the replays package's subcommands.

Registered through the ``norn.commands`` entry point group (``register``). Every command
takes a run directory; long ones (seeking, deriving, diffing, forking) show progress on a
terminal (ticks done, rate, time left) and stay quiet under ``--json``. Exit codes are the
dispatcher's: 0 ok, 1 divergence (``verify``, or a replay that does not match its
journal), 2 bad input (a tick outside the run, an unknown table, a bad ``--set``), 3
environment, 4 bug. docs/designers.md walks through them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from norn.engine.cli import print_json
from norn.engine.errors import EXIT_DIVERGED, EXIT_OK, UserError
from norn.replays.progress import Progress


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
        "first_tick": h.get("t0", 0),
        "ticks": run.tick_frames,
        "last_tick": run.last_tick,
        "snapshots": [t for t, _, _ in run.snapshots],
        "end": run.end,
        "torn_tail_bytes": run.torn_tail_bytes,
        "fork": h.get("fork"),
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
    from norn.replays.verify import verify

    with Progress(not args.json, "verify") as bar:
        result = verify(args.dir, bar.update, index_every=args.index_every)
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


def cmd_replay_index(args: argparse.Namespace) -> int:
    """Build the run's seek index: a derived snapshot every K ticks (``replays/index.py``)."""
    from norn.replays import index
    from norn.replays.session import Replay

    with Replay(args.dir, use_index=False) as r, Progress(not args.json, "index") as bar:
        out = index.build(r, args.every, bar.update)
        entries, reason = index.load(r)
    if reason is not None:  # just written: a refusal now is a bug
        raise AssertionError(f"the seek index just built is refused: {reason}")
    size = sum(p.stat().st_size for p in out.iterdir())
    if args.json:
        print_json({"index": str(out), "every": args.every, "bytes": size,
                    "ticks": [e.tick for e in entries]})
    else:
        print(f"seek index: {len(entries)} snapshots every {args.every} ticks in {out} "
              f"({size / 1e6:.1f} MB); a seek now replays at most {args.every - 1} ticks")
    return EXIT_OK


# -- seek and inspect -----------------------------------------------------------------------
def cmd_replay_show(args: argparse.Namespace) -> int:
    """The world at a tick: every table's rows, or one table's readable rows."""
    from norn.replays.query import format_table
    from norn.replays.session import Replay

    with Replay(args.dir) as r, Progress(not args.json, f"seek to tick {args.tick}") as bar:
        at = r.at(args.tick, bar.update)
        for w in r.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if args.table is None:
            counts = at.summary()
            if args.json:
                print_json({"tick": at.tick, "tables": counts})
            else:
                print(f"tick {at.tick} of {r.dir} (ticks {r.first_tick}..{r.last_tick})")
                for name, n in counts.items():
                    print(f"  {name:<20} {n:>9} rows")
            return EXIT_OK
        table = at.table(args.table, raw=args.raw)
        table = _select(table, args.where, args.columns, args.limit, args.order)
        if args.json:
            print_json({"tick": at.tick, "table": args.table, "rows": table.to_pylist()})
        else:
            print(f"tick {at.tick}, table {args.table}: {table.num_rows} rows shown")
            print(format_table(table, args.limit))
    return EXIT_OK


def _select(table: Any, where: str | None, columns: str | None, limit: int,
            order: str | None) -> Any:
    """Filter a table with a SQL condition (DuckDB over the Arrow table, no copy)."""
    import duckdb

    cols = "*" if not columns else ", ".join(f'"{c.strip()}"' for c in columns.split(","))
    sql = f"SELECT {cols} FROM t"
    if where:
        sql += f" WHERE {where}"
    if order:
        sql += f" ORDER BY {order}"
    sql += f" LIMIT {int(limit)}"
    con = duckdb.connect()
    con.register("t", table)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise UserError(f"--where/--columns/--order: {exc}\n(columns: "
                        f"{', '.join(table.column_names)})") from None


def cmd_replay_timeline(args: argparse.Namespace) -> int:
    from norn.replays.session import Replay
    from norn.replays.timeline import format_rows, timeline

    kinds = [k.strip() for k in args.kind.split(",")] if args.kind else None
    with Replay(args.dir) as r, Progress(not args.json, "replay (actions)") as bar:
        rows = timeline(r, start=args.start, stop=args.stop, kinds=kinds,
                        shock_pct=args.shock_pct, progress=bar.update)
    if args.json:
        print_json(rows)
    else:
        print(format_rows(rows) if rows else "nothing happened in those ticks")
    return EXIT_OK


# -- compare and branch ---------------------------------------------------------------------
def cmd_replay_diff(args: argparse.Namespace) -> int:
    from norn.replays.diff import diff, format_diff

    with Progress(not args.json, "diff") as bar:
        res = diff(args.a, args.b, progress=bar.update)
    if args.json:
        print_json(res.as_dict())
    else:
        print(format_diff(res))
    return EXIT_OK


def cmd_replay_fork(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from norn.replays.fork import fork

    out = Path(args.out)
    if out.exists() and args.replace:
        shutil.rmtree(out)
    with Progress(not args.json, "fork") as bar:
        res = fork(args.dir, at=args.at, out=out, sets=args.set, injects=args.inject,
                   drops=args.drop, seed=args.seed, ticks=args.ticks, progress=bar.update)
    if args.json:
        print_json(res.as_dict())
    else:
        print(f"forked {res.parent} at tick {res.at} -> {res.out}: ticks {res.at + 1}.."
              f"{res.last_tick}, {res.injected} injected, {res.dropped_batches} recorded "
              f"batches dropped")
        print(f"compare with: norn replay diff {res.parent} {res.out}")
    return EXIT_OK


# -- SQL and reports ------------------------------------------------------------------------
def cmd_replay_export(args: argparse.Namespace) -> int:
    from norn.replays.query import export
    from norn.replays.session import Replay

    if args.format != "parquet":
        raise UserError(f"--format {args.format}: only parquet is written")
    with Replay(args.dir) as r, Progress(not args.json, "export") as bar:
        out = export(r, args.out, every=args.every, progress=bar.update)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    if args.json:
        print_json({"out": str(out), "files": files})
    else:
        print(f"wrote {len(files)} Parquet files to {out}: {', '.join(files)}")
    return EXIT_OK


def cmd_replay_query(args: argparse.Namespace) -> int:
    from norn.replays.query import EXAMPLES, format_table, query
    from norn.replays.session import Replay

    if args.examples:
        for name, sql in EXAMPLES.items():
            print(f"-- {name}\n{' '.join(sql.split())}\n")
        return EXIT_OK
    if len(args.args) < 2:
        raise UserError("usage: norn replay query RUN [RUN ...] \"SELECT ...\"")
    *dirs, sql = args.args
    replays = [Replay(d) for d in dirs]
    try:
        with Progress(not args.json, "replay (derive)") as bar:
            table = query(replays, sql, progress=bar.update)
    finally:
        for r in replays:
            r.close()
    if table is None:
        return EXIT_OK
    if args.json:
        print_json(table.to_pylist())
    elif args.csv:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, sys.stdout.buffer)
    else:
        print(format_table(table, args.limit))
    return EXIT_OK


def cmd_replay_report(args: argparse.Namespace) -> int:
    from norn.replays.report import report
    from norn.replays.session import Replay

    with Replay(args.dir) as r, Progress(not args.json, "report") as bar:
        path = report(r, args.out, progress=bar.update)
    if args.json:
        print_json({"out": str(path)})
    else:
        print(f"wrote {path} (one self-contained page; open it in any browser)")
    return EXIT_OK


def cmd_replay_gm(args: argparse.Namespace) -> int:
    from norn.replays.gm import send

    path = send(args.dir, args.command)
    if args.json:
        print_json({"queued": str(path)})
    else:
        print(f"queued for the running world: {path.name} (journaled as an input at the "
              "next tick)")
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from norn.replays.sweep import format_sweep, sweep

    res = sweep(args.scenario, params=args.param, seeds=args.seeds, ticks=args.ticks,
                out=args.out, address=args.address, workers=args.workers,
                replace=args.replace, quiet=args.json)
    if args.json:
        print_json(res)
    else:
        print(format_sweep(res))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``replay ...`` and ``sweep`` to ``norn``."""
    rp = subparsers.add_parser("replay", help="look at, compare, fork and query recorded runs")
    rsub = rp.add_subparsers(dest="replay_command", required=True)
    p = rsub.add_parser("info", help="what a run directory holds")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_info)
    p = rsub.add_parser("verify", help="re-simulate and compare every tick's digest")
    p.add_argument("dir")
    p.add_argument("--index-every", dest="index_every", type=int, default=0, metavar="K",
                   help="also write the seek index (a snapshot every K ticks) from the "
                   "same replay, as 'norn replay index --every K' would")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_verify)
    p = rsub.add_parser("index", help="a seek index: the world every K ticks, so a seek "
                        "replays fewer than K ticks (a cache beside the run)")
    p.add_argument("dir")
    p.add_argument("--every", type=int, default=50, help="ticks between snapshots (50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_index)

    p = rsub.add_parser("show", help="the world at a tick: tables with readable columns")
    p.add_argument("dir")
    p.add_argument("--tick", type=int, required=True)
    p.add_argument("--table", help="one table's rows (default: rows per table)")
    p.add_argument("--where", help="SQL condition on the table's columns, e.g. \"map = 'payon'\"")
    p.add_argument("--columns", help="comma-separated columns to show")
    p.add_argument("--order", help="SQL ORDER BY, e.g. 'wallet DESC'")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--raw", action="store_true", help="ids instead of names")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_show)

    p = rsub.add_parser("timeline", help="inputs, actions, decisions, hazards, takeovers, "
                        "price shocks, tick by tick")
    p.add_argument("dir")
    p.add_argument("--from", dest="start", type=int)
    p.add_argument("--to", dest="stop", type=int)
    p.add_argument("--kind", help="categories or kinds, comma-separated (hazard,admin_hazard)")
    p.add_argument("--shock-pct", dest="shock_pct", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_timeline)

    p = rsub.add_parser("diff", help="where two runs part and how they drift apart")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_diff)

    p = rsub.add_parser("fork", help="a what-if run from a recorded run's tick")
    p.add_argument("dir")
    p.add_argument("--at", type=int, required=True, help="the tick to branch from")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a scenario parameter (rules.economy.price_band_min=0.8)")
    p.add_argument("--inject", action="append", default=[], metavar="EVENT",
                   help="a GM event: 'admin_hazard map=payon type=plague intensity=0.8 [at=T]'")
    p.add_argument("--drop", action="append", default=[], metavar="WHICH",
                   help="leave recorded inputs out: 'kind=npc_shop source=gen ticks=100..200'")
    p.add_argument("--seed", type=int, help="another seed from the fork tick on")
    p.add_argument("--ticks", type=int, help="ticks to run (default: to the parent's end)")
    p.add_argument("--replace", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_fork)

    p = rsub.add_parser("export", help="tables, events, actions and decisions as Parquet")
    p.add_argument("dir")
    p.add_argument("--format", default="parquet", choices=["parquet"])
    p.add_argument("--out", help="directory (default RUN/export)")
    p.add_argument("--every", type=int, default=0, help="also keep tables every K ticks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_export)

    p = rsub.add_parser("query", help="SQL (DuckDB) over one or more runs")
    p.add_argument("args", nargs="*", metavar="RUN... SQL")
    p.add_argument("--examples", action="store_true", help="print the example queries")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--csv", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_query)

    p = rsub.add_parser("report", help="one self-contained HTML page of plots")
    p.add_argument("dir")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_report)

    p = rsub.add_parser("gm", help="send a GM command to a running world (norn run --gm)")
    p.add_argument("dir", help="the running world's run directory")
    p.add_argument("command", help="'admin_hazard map=payon type=plague intensity=0.8'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_gm)

    p = subparsers.add_parser("sweep", help="many journaled runs of a scenario on Ray")
    p.add_argument("scenario")
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2",
                   help="scenario parameter values to sweep (every combination)")
    p.add_argument("--seeds", default="1", help="seeds: 1..32 or 1,5,9")
    p.add_argument("--ticks", type=int, default=100)
    p.add_argument("--out", required=True, help="directory for the runs and sweep.duckdb")
    p.add_argument("--address", help="a Ray cluster's address (default: a local Ray)")
    p.add_argument("--workers", type=int, help="local Ray worker processes (default: CPUs)")
    p.add_argument("--replace", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)
