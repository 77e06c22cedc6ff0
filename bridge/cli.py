"""Bridge subcommands of ``norn``: ``sim-server`` and ``bridge keygen``.

Registered through the ``norn.commands`` entry point group (``register``); each
subcommand sets ``func`` to a function taking the parsed arguments and returning an exit
code. ``python -m norn.bridge.cli`` runs them without the rest of the CLI, with the same
one-line errors and exit codes as ``norn``. The bridge's options of ``norn run`` are in
``serve.py``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

import orjson

from norn.engine.cli import run_command
from norn.engine.errors import EXIT_ENVIRONMENT, EXIT_OK, UserError


def cmd_sim_server(args: argparse.Namespace) -> int:
    """Run the simulated rAthena map server and print its summary."""
    from norn.bridge.client import ClientConfig
    from norn.bridge.keys import read_key
    from norn.bridge.sim_server import run_sim_server

    cfg = ClientConfig(batch_events=args.batch_events, batch_ms=args.batch_ms,
                       columnar=not args.rows)
    if args.curve_server_key:
        if not (args.curve_public and args.curve_secret):
            raise UserError("--curve-server-key needs --curve-public and --curve-secret")
        cfg.curve_server_key = read_key(args.curve_server_key)
        cfg.curve_public_key = read_key(args.curve_public)
        cfg.curve_secret_key = read_key(args.curve_secret)
    summary = run_sim_server(
        args.connect,
        players=args.players,
        seed=args.seed,
        duration_s=args.duration_s,
        steps=args.steps,
        step_ms=args.step_ms,
        server_id=args.server_id,
        client_config=cfg,
        connect_timeout_s=args.connect_timeout_s,
        drain_timeout_s=args.drain_timeout_s,
        reward_zeny_max=args.reward_zeny_max,
        lockstep=args.lockstep,
        result_lag=args.result_lag,
    )
    report = asdict(summary)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(f"sim-server {summary.server_id} seed {summary.seed}: {summary.players} players, "
              f"{summary.steps} steps on {', '.join(summary.maps)} ({summary.wall_s} s)")
        print(f"events: generated {summary.events_generated}, sent {summary.events_sent}, "
              f"acked {summary.events_acked}, rejected {summary.events_rejected}; "
              f"batches {summary.batches_sent}, retransmits {summary.retransmits}, "
              f"reconnects {summary.reconnects}")
        reasons = f" {summary.failed_by_reason}" if summary.failed_by_reason else ""
        print(f"actions: received {summary.actions_received}, executed "
              f"{summary.actions_executed}, failed {summary.actions_failed}{reasons}, "
              f"duplicates {summary.actions_duplicate}")
        print(f"stream digest {summary.stream_digest}; all acked: {summary.all_acked}")
    return EXIT_OK if summary.all_acked else EXIT_ENVIRONMENT


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a CurveZMQ key pair (NAME.public, NAME.secret) into --out."""
    from norn.bridge.keys import write_keypair

    pub, sec = write_keypair(args.out, args.name)
    print(f"wrote {pub} (share) and {sec} (keep secret, mode 0600)")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sim-server`` and ``bridge keygen`` to the ``norn`` command line."""
    p = subparsers.add_parser(
        "sim-server", help="a simulated rAthena map server with N players (reference client)"
    )
    p.add_argument("--connect", required=True, help="engine endpoint, e.g. tcp://127.0.0.1:7600")
    p.add_argument("--players", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration-s", type=float, default=30.0, dest="duration_s")
    p.add_argument("--steps", type=int, default=None,
                   help="number of 'step-ms' steps (overrides --duration-s)")
    p.add_argument("--step-ms", type=int, default=100, dest="step_ms",
                   help="simulated step length; 0 runs as fast as credits allow")
    p.add_argument("--server-id", default="map01", dest="server_id")
    p.add_argument("--batch-events", type=int, default=8192, dest="batch_events")
    p.add_argument("--batch-ms", type=int, default=50, dest="batch_ms")
    p.add_argument("--rows", action="store_true", help="send row batches instead of columns")
    p.add_argument("--reward-zeny-max", type=int, default=1_000_000, dest="reward_zeny_max")
    p.add_argument("--connect-timeout-s", type=float, default=10.0, dest="connect_timeout_s")
    p.add_argument("--drain-timeout-s", type=float, default=30.0, dest="drain_timeout_s")
    p.add_argument("--curve-server-key", help="engine's public key file (enables CURVE)")
    p.add_argument("--curve-public", help="this server's public key file")
    p.add_argument("--curve-secret", help="this server's secret key file")
    p.add_argument("--lockstep", action="store_true",
                   help="stamp every batch with its engine tick and declare progress "
                   "(PROTOCOL.md section 14); pair with `norn run --lockstep-server ID`")
    p.add_argument("--result-lag", type=int, default=2, dest="result_lag",
                   help="lockstep: answer the actions of tick a in the batch stamped a + LAG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim_server)

    bp = subparsers.add_parser("bridge", help="bridge tools")
    bsub = bp.add_subparsers(dest="bridge_command", required=True)
    k = bsub.add_parser("keygen", help="write a CurveZMQ key pair")
    k.add_argument("--out", required=True, help="directory for NAME.public and NAME.secret")
    k.add_argument("--name", default="bridge")
    k.set_defaults(func=cmd_keygen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="norn", description="Norn bridge tools")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
