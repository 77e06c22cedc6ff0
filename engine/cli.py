"""The ``norn`` command line: run worlds, replay and verify them, benchmark, bridge tools.

User errors (bad config, scenario, journal, path) print one line naming the key or path
and exit 2, without a stack trace. Divergence exits 1; environment failures 3; bugs 4.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from norn.engine.errors import (
    EXIT_DIVERGED,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_USER_ERROR,
    EnvironmentFailure,
    NornError,
    UserError,
)


def _print_json(obj: Any) -> None:
    sys.stdout.write(
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()
    )
    sys.stdout.write("\n")


def _progress(enabled: bool, total: int, label: str):
    """A rich progress bar on a terminal; a no-op elsewhere (CI logs, --json)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    prog = Progress(
        f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = prog.add_task(label, total=total)
    return prog, task


def _model_hook(model: str, name: str) -> Callable | None:
    from norn.engine.scenario import MODELS

    module = importlib.import_module(MODELS[model].partition(":")[0])
    return getattr(module, name, None)


# -- norn run ---------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from norn.engine.config import bridge_table, make_config
    from norn.engine.recorder import Recorder, discard_dirs
    from norn.engine.runner import build_world, make_header, run
    from norn.engine.scenario import load_scenario, parse_scenario

    overrides = dict(
        seed=args.seed,
        ticks=args.ticks,
        clock=args.clock or ("realtime" if args.sim_players else None),
        snapshot_every=args.snapshot_every,
        synctest=args.synctest or None,
        tick_ms=args.tick_ms,
    )
    if args.no_fsync:
        overrides["fsync"] = False
    if args.lockstep_servers:
        overrides["lockstep_servers"] = tuple(sorted(args.lockstep_servers))
    durable: dict[str, int] = {}
    resend: list = []
    ticks = None  # config.ticks
    if args.resume:
        from norn.bridge.config import BridgeConfig
        from norn.engine.resume import resume

        if not args.out:
            raise UserError("--resume needs --out DIR (the run to continue)")
        ttl = BridgeConfig(**bridge_table(args.config)).action_ttl_ticks if args.serve else 0
        resumed = resume(args.out, resend_ticks=ttl)
        world, recorder, journal_run = resumed.world, resumed.recorder, resumed.run
        durable, resend = resumed.durable, resumed.resend
        recorded = journal_run.config()
        fixed = ("seed", "tick_ms", "lockstep_servers")  # they decide what the ticks hold
        changed = [k for k in fixed if overrides.get(k) is not None
                   and overrides[k] != getattr(recorded, k)]
        if changed:
            raise UserError(f"--resume continues the recorded run; it cannot change {changed}")
        config = make_config(
            None,
            **{
                **recorded.model_dump(),
                **{k: v for k, v in overrides.items() if v is not None and k not in fixed},
            },
        )
        # without --ticks the run goes on to its recorded length; with it, that many more
        ticks = args.ticks if args.ticks is not None else max(0, recorded.ticks - world.tick)
        recorded_scenario = parse_scenario(
            journal_run.header["scenario"]["text"], journal_run.header["scenario"]["source"]
        )
        scenario_model, scenario_name = recorded_scenario.model, recorded_scenario.name
        scenario_data = recorded_scenario.data  # the event source goes on where it stopped
    else:
        scenario = load_scenario(args.scenario)
        config = make_config(args.config, **overrides)
        scenario_model, scenario_name, scenario_data = scenario.model, scenario.name, scenario.data
        out = (
            Path(args.out)
            if args.out
            else Path("runs")
            / (f"{scenario.name}-s{config.seed}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
        )
        created = _prepare_run_dir(out, replace=args.replace)  # fail fast, before the build
        try:
            world = build_world(scenario, config)
        except BaseException:
            discard_dirs(created)  # a scenario refused by its model leaves no empty run dir
            raise
        recorder = Recorder.create(
            out,
            make_header(scenario, config, world),
            fsync=config.fsync,
            snapshot_every=config.snapshot_every,
        )
    out_dir = recorder.out_dir

    server = None
    sim = None
    if args.sim_players and not args.serve:
        args.serve = "tcp://127.0.0.1:0"
    if config.lockstep_servers and not args.serve:
        raise UserError("lockstep_servers needs --serve: the servers it waits for are bridged")
    if args.serve:
        server = _start_bridge(
            args, world, scenario_model, durable, out_dir, bridge_table(args.config)
        )
        for batch in resend:  # actions a crash may have kept from leaving; ids dedupe
            server.emit(batch)
        server.committed(world.tick)
        if args.sim_players:
            sim = _start_sim(server.endpoint, args.sim_players, config)
    before_tick = None
    stall: list[str] = []
    if server is not None and config.lockstep_servers:
        servers, wait_s = config.lockstep_servers, config.lockstep_servers_timeout_s

        def before_tick(tick: int) -> bool:
            behind = server.wait_progress(servers, tick, wait_s)
            if behind:
                stall.append(
                    f"lockstep: map server(s) {behind} did not declare tick {tick} complete "
                    f"within {wait_s} s (lockstep_servers_timeout_s); the journal is intact: "
                    f"continue with --resume once they are back"
                )
                return False
            return True
    if server is None and scenario_data is not None:
        make_source = _model_hook(scenario_model, "make_event_source")
        if make_source is not None:
            source = make_source(scenario_data, config.seed)

            def before_tick(tick: int) -> None:
                for batch in source(tick):
                    if not world.inputs.offer(batch):
                        raise UserError("generated events exceed the input queue bounds")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    bar = _progress(not args.json, config.ticks, f"{scenario_name} seed {config.seed}")
    on_tick = None
    if bar is not None:
        prog, task = bar
        prog.start()

        def on_tick(rec) -> None:
            prog.advance(task)

    try:
        summary = run(world, config, recorder, ticks=ticks, on_tick=on_tick,
                      before_tick=before_tick, stop=stop)
    finally:
        if bar is not None:
            bar[0].stop()
        sim_report = _finish_sim(sim)
        if server is not None:
            server.stop()
    recorder.close(world, summary.stopped)
    if stall:
        print(f"norn: {stall[0]}", file=sys.stderr)

    report = summary.as_dict()
    report["run_dir"] = str(out_dir)
    report["scenario"] = scenario_name
    report["seed"] = config.seed
    report["clock"] = config.clock
    report["population"] = world.state_summary()
    world_summary = _model_hook(scenario_model, "summary")
    if world_summary is not None:
        report["world"] = world_summary(world)
    if server is not None:
        report["bridge"] = server.stats()
    if sim_report is not None:
        report["sim_server"] = sim_report
    if args.json:
        _print_json(report)
    else:
        _print_run_report(report)
    return EXIT_ENVIRONMENT if stall else EXIT_OK


def _prepare_run_dir(out: Path, *, replace: bool) -> list[Path]:
    """Remove the old run on --replace, then create the new run directory, writable.

    Anything the OS refuses (a read-only location, a tree this user may not remove, a file
    in the way) is one EnvironmentFailure naming the path and the reason: exit 3. Returns
    the directories created.
    """
    from norn.engine.recorder import prepare_run_dir

    try:
        exists = out.exists()
    except OSError as e:
        raise EnvironmentFailure.from_os(out, "cannot look at the run directory", e) from e
    if exists and replace:
        try:
            shutil.rmtree(out)
        except OSError as e:
            raise EnvironmentFailure.from_os(out, "cannot remove the old run (--replace)", e
                                             ) from e
    return prepare_run_dir(out)


def _io_failure(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` is an OS or storage I/O error, else None."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return f"{reason} ({exc.filename})" if exc.filename is not None else reason
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency
        return None
    if isinstance(exc, duckdb.IOException):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _start_bridge(
    args, world, model: str, durable: dict[str, int], out_dir: Path, bridge_cfg: dict[str, Any]
):
    from norn.bridge.config import BridgeConfig
    from norn.bridge.server import BridgeServer, WorldView

    view_fn = _model_hook(model, "bridge_view")
    if view_fn is None:
        raise UserError(f"model {model!r} cannot be served: it has no bridge_view")
    view = WorldView(**view_fn(world))
    dead_letters = out_dir / "dead_letters.duckdb"
    try:
        server = BridgeServer(
            args.serve,
            world.inputs,
            view,
            BridgeConfig(**bridge_cfg),
            durable_seqs=durable,
            dead_letter_path=dead_letters,
            start_tick=world.tick,
        )
        world.sinks.append(server)
        server.start()  # the dead-letter store is opened on the bridge thread; errors land here
    except Exception as exc:
        reason = _io_failure(exc)
        if reason is None:
            raise
        raise EnvironmentFailure(f"{dead_letters}: cannot start the bridge: {reason}") from exc
    return server


def _start_sim(endpoint: str, players: int, config):
    """Launch ``norn sim-server`` as a separate process playing rAthena over the socket."""
    import subprocess

    duration = max(1.0, config.ticks * config.tick_ms / 1000.0)
    cmd = [
        sys.executable,
        "-m",
        "norn.engine.cli",
        "sim-server",
        "--connect",
        endpoint,
        "--players",
        str(players),
        "--seed",
        str(config.seed),
        "--duration-s",
        f"{duration:.1f}",
        "--json",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_sim(sim) -> dict[str, Any] | None:
    if sim is None:
        return None
    try:
        out, err = sim.communicate(timeout=60)
    except Exception:
        sim.kill()
        out, err = sim.communicate()
    try:
        return orjson.loads(out)
    except orjson.JSONDecodeError:
        return {"exit_code": sim.returncode, "stderr": err.strip()[-500:]}


def _print_run_report(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(
        f"[bold]Norn run[/bold] {r['scenario']} seed {r['seed']} ({r['clock']} clock) "
        f"-> {r['run_dir']}  [{r['stopped']}]"
    )
    con.print(
        f"ticks {r['first_tick']}..{r['last_tick']} ({r['ticks']}), "
        f"{r['ticks_per_s']} ticks/s, tick p50 {r['tick_ms_p50']} ms p99 {r['tick_ms_p99']} ms, "
        f"JIT compile {r['compile_s']} s (excluded), wall {r['wall_s']} s, overruns {r['overruns']}"
    )
    con.print(
        f"last digest {r['last_digest']}; actions {r['actions']}; input batches "
        f"{r['input_batches']}; decisions {r['decisions']}"
    )
    t = Table("phase", "seconds", title="time per phase")
    for k, v in r["phase_s"].items():
        t.add_row(k, f"{v:.4f}")
    con.print(t)
    t = Table("system", "seconds", title="time per system")
    for k, v in r["system_s"].items():
        t.add_row(k, f"{v:.4f}")
    con.print(t)
    con.print(f"population: {r['population']}")
    if "world" in r:
        con.print("[bold]what happened[/bold]")
        for k, v in r["world"].items():
            con.print(f"  {k}: {v}")
    if "bridge" in r:
        con.print(f"bridge: {r['bridge']}")
    if "sim_server" in r:
        con.print(f"sim-server (rAthena stand-in): {r['sim_server']}")
    con.print(f"verify with: norn replay verify {r['run_dir']}")


# -- norn replay ------------------------------------------------------------------------
def cmd_replay_info(args: argparse.Namespace) -> int:
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
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return EXIT_OK


def cmd_replay_verify(args: argparse.Namespace) -> int:
    from norn.engine.reader import open_run
    from norn.replays.verify import verify

    total = open_run(args.dir).tick_frames
    bar = _progress(not args.json, total, "verify")
    progress = None
    if bar is not None:
        prog, task = bar
        prog.start()

        def progress(n: int, _total: int) -> None:
            prog.update(task, completed=n)

    try:
        result = verify(args.dir, progress)
    finally:
        if bar is not None:
            bar[0].stop()
    if args.json:
        _print_json(result.as_dict())
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


# -- entry point ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="norn", description="Deterministic world engine for rAthena"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a world (optionally serving the rAthena bridge)")
    p.add_argument("--scenario", help="scenario TOML (default: the embedded Rune-Midgarts world)")
    p.add_argument("--config", help="config TOML with [run] and [bridge] tables")
    p.add_argument(
        "--ticks", type=int,
        help="ticks to run (with --resume: how many more; default: to the recorded length)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--tick-ms", type=int, dest="tick_ms")
    p.add_argument("--out", help="run directory for the journal and snapshots")
    p.add_argument("--replace", action="store_true", help="replace an existing run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its journal"
    )
    p.add_argument("--clock", choices=["fast", "realtime", "lockstep"])
    p.add_argument("--snapshot-every", type=int, dest="snapshot_every")
    p.add_argument("--synctest", action="store_true", help="check every tick by snapshot/restore")
    p.add_argument(
        "--no-fsync", action="store_true", help="skip fsync (benchmarks; unsafe on crash)"
    )
    p.add_argument(
        "--serve", metavar="ENDPOINT", help="serve the bridge, e.g. tcp://127.0.0.1:7600"
    )
    p.add_argument(
        "--sim-players",
        type=int,
        default=0,
        dest="sim_players",
        help="also launch `norn sim-server` with N players against the bridge (the demo)",
    )
    p.add_argument(
        "--lockstep-server", action="append", dest="lockstep_servers", metavar="SERVER_ID",
        help="wait before each tick until this map server declared it complete (repeatable; "
        "PROTOCOL.md section 14): inputs land on the ticks the server stamped, whatever the "
        "timing",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="inspect and verify recorded runs")
    rsub = rp.add_subparsers(dest="replay_command", required=True)
    p = rsub.add_parser("info", help="what a run directory holds")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_info)
    p = rsub.add_parser("verify", help="re-simulate and compare every tick's digest")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay_verify)

    for module in ("norn.bridge.cli", "norn.bench.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NornError as exc:
        print(f"norn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:
        print(f"norn: error: {exc.filename}: not found", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # the machine refused something no cause above turned into words
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"norn: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
