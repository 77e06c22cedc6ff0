"""Bridge subcommands of ``norn``: ``sim-server``, ``bridge keygen`` and ``bridge dead-letters``.

Registered through the ``norn.commands`` entry point group (``register``); each
subcommand sets ``func`` to a function taking the parsed arguments and returning an exit
code. ``python -m norn.bridge.cli`` runs them without the rest of the CLI, with the same
one-line errors and exit codes as ``norn``. The bridge's options of ``norn run`` are in
``serve.py``.

``norn bridge dead-letters list|show|replay RUN`` reads a run's dead letters (a live run's
too: ``dead_letter.open_duckdb``) and re-offers the ones an operator fixed to a running
engine through an admin session (``admin.py``: validated and journaled like any map
server's input, source ``admin``). Each replay is noted in ``RUN/dead_letters.replayed.jsonl``
(which records, which file, the seqs and whether the engine journaled them), so ``list``
shows what was re-offered and ``replay`` refuses to re-offer a record twice unless told to.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from norn.engine.cli import run_command
from norn.engine.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USER_ERROR, UserError
from norn.engine.observe import add_log_arguments, logging_from_args

#: A run's dead-letter store and the log of what was re-offered from it.
DEAD_LETTERS_NAME = "dead_letters.duckdb"
REPLAYED_NAME = "dead_letters.replayed.jsonl"


def cmd_sim_server(args: argparse.Namespace) -> int:
    """Run the simulated rAthena map server and print its summary."""
    logging_from_args(args)
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
        event_kinds=[k for k in args.event_kinds.split(",") if k],
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
    p.add_argument("--event-kinds", default="", dest="event_kinds",
                   help="event kinds beyond protocol v1 the engine declares, comma separated: "
                   "the simulator sends those it knows (the calendar, dig, mvp_kill)")
    p.add_argument("--result-lag", type=int, default=2, dest="result_lag",
                   help="lockstep: answer the actions of tick a in the batch stamped a + LAG")
    p.add_argument("--json", action="store_true")
    add_log_arguments(p)
    p.set_defaults(func=cmd_sim_server)

    bp = subparsers.add_parser("bridge", help="bridge tools")
    bsub = bp.add_subparsers(dest="bridge_command", required=True)
    k = bsub.add_parser("keygen", help="write a CurveZMQ key pair")
    k.add_argument("--out", required=True, help="directory for NAME.public and NAME.secret")
    k.add_argument("--name", default="bridge")
    k.set_defaults(func=cmd_keygen)
    _register_dead_letters(bsub)


# -- norn bridge dead-letters ----------------------------------------------------------------
def _store_path(run: str) -> Path:
    """RUN (a run directory) or the store file itself."""
    p = Path(run)
    if p.is_dir():
        p = p / DEAD_LETTERS_NAME
    if not p.is_file():
        raise UserError(f"{p}: no dead-letter store (a run that served the bridge has one)")
    return p


def _replayed(store: Path) -> dict[int, dict[str, Any]]:
    """Dead letter n -> the last replay that re-offered it (from the replay log)."""
    out: dict[int, dict[str, Any]] = {}
    log = store.with_name(REPLAYED_NAME)
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            for n in entry.get("records", []):
                out[int(n)] = entry
    return out


def _code_name(code: int | None) -> str:
    from norn.bridge import protocol as proto

    try:
        return proto.ErrorCode(int(code)).name.lower()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "internal_error" if code == 0 else str(code)


def _code_number(text: str | None) -> int | None:
    """--code NAME or NUMBER as the stored code."""
    from norn.bridge import protocol as proto

    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if text == "internal_error":
        return 0
    try:
        return int(proto.ErrorCode[text.upper()])
    except KeyError:
        raise UserError(f"--code {text}: no such error code; names: internal_error, "
                        f"{', '.join(c.name.lower() for c in proto.ErrorCode)}") from None


def _load(args: argparse.Namespace, **query: Any
          ) -> tuple[Path, int, int, list[dict[str, Any]]]:
    """The store, its size, how many records match ``query`` and the ones returned."""
    from norn.bridge.dead_letter import query_dead_letters

    try:
        store = _store_path(args.run)
        return (store, *query_dead_letters(store, **query))
    except OSError as e:  # a live store too large to copy, a permission
        from norn.engine.errors import EnvironmentFailure

        raise EnvironmentFailure(str(e)) from e


def _public(rec: dict[str, Any], replayed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k != "raw"}
    out["code_name"] = _code_name(rec["code"])
    r = replayed.get(rec["n"])
    out["replayed"] = None if r is None else {k: r.get(k) for k in (
        "at", "server_id", "seqs", "journaled")}
    return out


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    """The run's dead letters (filtered), oldest first."""
    if args.limit < 0 or args.start < 0:
        raise UserError("--start and --limit must be >= 0")
    store, total, matching, shown = _load(
        args, server=args.server, kind=args.kind, code=_code_number(args.code),
        start=args.start, limit=args.limit, raw=False)
    replayed = _replayed(store)
    if args.json:
        sys.stdout.write(orjson.dumps({"store": str(store), "total": total,
                                       "matching": matching,
                                       "records": [_public(r, replayed) for r in shown]},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    print(f"{store}: {total} dead letters, {matching} matching, showing {len(shown)}")
    print(f"{'n':>6} {'tick':>7} {'server':<12} {'seq':>6} {'kind':<14} {'event':>5} "
          f"{'code':<16} {'field':<10} reason")
    for r in shown:
        mark = " [replayed]" if r["n"] in replayed else ""
        event = "frame" if r["event_index"] is None or r["event_index"] < 0 else r["event_index"]
        print(f"{r['n']:>6} {r['tick']:>7} {r['server_id'] or '-'!s:<12} "
              f"{'' if r['seq'] is None else r['seq']:>6} {r['kind'] or '-'!s:<14} "
              f"{event:>5} {_code_name(r['code']):<16} {r['field'] or '-'!s:<10} "
              f"{r['reason'][:80]}{mark}")
    if matching > len(shown):
        print(f"... {matching - len(shown)} more (--start, --limit)")
    return EXIT_OK


def _records(args: argparse.Namespace, numbers: list[int]
             ) -> tuple[Path, list[dict[str, Any]]]:
    """The store and the records ``numbers`` (in that order); bad input if one is missing."""
    store, total, _, found = _load(args, numbers=numbers)
    by_n = {r["n"]: r for r in found}
    missing = [n for n in numbers if n not in by_n]
    if missing:
        raise UserError(f"no dead letter {missing[0]} (the store holds {total}: "
                        f"norn bridge dead-letters list)")
    return store, [by_n[n] for n in numbers]


def cmd_dead_letters_show(args: argparse.Namespace) -> int:
    """One dead letter in full: its fields and its raw bytes decoded; optionally exported as
    a fix file to edit and replay."""
    import msgpack

    from norn.bridge.admin import frames_from_records, to_json

    store, (rec,) = _records(args, [args.n])
    try:
        decoded: Any = to_json(msgpack.unpackb(rec["raw"], raw=False, strict_map_key=False))
    except Exception as exc:
        decoded = f"(not msgpack: {type(exc).__name__}: {exc})"
    out = _public(rec, _replayed(store))
    out["raw_decoded"] = decoded
    out["raw_complete"] = rec["raw_bytes"] == len(rec["raw"])
    if args.export:
        try:
            frames = frames_from_records([rec])
        except UserError:
            frames = [decoded] if isinstance(decoded, dict) else []
        if not frames:
            raise UserError(f"dead letter {args.n}: its bytes are not a frame that can be "
                            "exported; see raw_decoded")
        Path(args.export).write_text(json.dumps(to_json(frames[0]), indent=2) + "\n")
        out["exported"] = args.export
    if args.json:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    for k, v in out.items():
        if k != "raw_decoded":
            print(f"{k}: {v}")
    print("raw (decoded): " + json.dumps(decoded, ensure_ascii=False)[:4000])
    if args.export:
        print(f"exported to {args.export}: edit it, then `norn bridge dead-letters replay "
              f"{args.run} --file {args.export} --connect ENDPOINT`")
    return EXIT_OK


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    """Re-offer dead letters (or a fix file) to the running engine at --connect."""
    from norn.bridge.admin import (
        AdminSession,
        check_admin_id,
        frames_from_fix,
        frames_from_records,
    )
    from norn.bridge.keys import read_key

    check_admin_id(args.server_id)
    if not args.numbers and not args.file:
        raise UserError("name the dead letters to re-offer (their n) or a fixed --file")
    store, records = _records(args, list(args.numbers)) if args.numbers else (
        _store_path(args.run), [])
    replayed = _replayed(store)
    again = [n for n in args.numbers if n in replayed]
    if again and not args.again:
        raise UserError(f"dead letters {again} were re-offered already "
                        f"({store.with_name(REPLAYED_NAME)}); --again to offer them once more")
    frames = frames_from_records(records)
    if args.file:
        try:
            doc = json.loads(Path(args.file).read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{args.file}: not JSON: {e}") from e
        frames += frames_from_fix(doc, args.file)
    curve = None
    if args.curve_server_key:
        if not (args.curve_public and args.curve_secret):
            raise UserError("--curve-server-key needs --curve-public and --curve-secret")
        curve = (read_key(args.curve_server_key), read_key(args.curve_public),
                 read_key(args.curve_secret))
    offered = AdminSession(args.connect, args.server_id, curve=curve,
                           timeout_s=args.timeout_s).offer(frames)
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "records": args.numbers,
             "file": args.file, "endpoint": args.connect, **offered.as_dict()}
    with open(store.with_name(REPLAYED_NAME), "a") as log:
        log.write(json.dumps(entry, default=str) + "\n")
    if args.json:
        sys.stdout.write(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        seqs = f"{offered.seqs[0]}..{offered.seqs[-1]}" if offered.seqs else "-"
        state = "journaled (acked)" if offered.journaled else "NOT confirmed journaled"
        print(f"re-offered {len(frames)} batch(es) as {offered.server_id} seq {seqs}: {state}; "
              f"{offered.events_rejected} event(s) refused again")
        for e in offered.errors:
            print(f"  engine: {e.get('name')}: {e.get('message')}")
    if not offered.journaled:
        return EXIT_ENVIRONMENT
    return EXIT_USER_ERROR if offered.events_rejected or offered.errors else EXIT_OK


def _register_dead_letters(bsub: argparse._SubParsersAction) -> None:
    d = bsub.add_parser("dead-letters", help="inspect and re-offer a run's dead letters")
    dsub = d.add_subparsers(dest="dead_letters_command", required=True)
    ls = dsub.add_parser("list", help="the run's dead letters, oldest first")
    ls.add_argument("run", metavar="RUN", help="run directory (or its dead_letters.duckdb)")
    ls.add_argument("--server", help="only this map server's")
    ls.add_argument("--kind", help="only this event kind")
    ls.add_argument("--code", help="only this error code (name or number)")
    ls.add_argument("--start", type=int, default=0, help="from dead letter n (default 0)")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_dead_letters_list)
    sh = dsub.add_parser("show", help="one dead letter in full")
    sh.add_argument("run", metavar="RUN")
    sh.add_argument("n", type=int, help="its number (list's first column)")
    sh.add_argument("--export", metavar="FILE",
                    help="write it as a fix file (JSON) to edit and replay with --file")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_dead_letters_show)
    rp = dsub.add_parser(
        "replay", help="re-offer fixed dead letters to the running engine (validated and "
        "journaled as source admin)")
    rp.add_argument("run", metavar="RUN")
    rp.add_argument("numbers", metavar="N", type=int, nargs="*",
                    help="dead letters to re-offer as they are stored")
    rp.add_argument("--file", help="a fix file (show --export writes one): frames to offer")
    rp.add_argument("--connect", required=True,
                    help="the running engine's bridge (norn run --serve ...); a stopped run: "
                    "resume it serving first")
    rp.add_argument("--as", dest="server_id", default="admin",
                    help="the admin session's id, the journal's source (default admin)")
    rp.add_argument("--again", action="store_true", help="re-offer records offered before")
    rp.add_argument("--timeout-s", type=float, default=30.0, dest="timeout_s")
    rp.add_argument("--curve-server-key", help="engine's public key file (enables CURVE)")
    rp.add_argument("--curve-public", help="the admin's public key file (in the allowlist)")
    rp.add_argument("--curve-secret", help="the admin's secret key file")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_dead_letters_replay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="norn", description="Norn bridge tools")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
