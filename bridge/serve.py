"""The bridge's part of ``norn run``: ``--serve``, ``--sim-players``, ``--lockstep-server``.

A run extension (entry point group ``norn.run_extensions``; the protocol is
``norn.engine.commands.RunExtension``), so the engine's ``run`` command serves the bridge
without importing it. Attached, it starts a ``BridgeServer`` on the world's input queue,
hands it the actions a resumed run rebuilt, optionally launches ``norn sim-server`` as a
separate process, holds each tick at the lockstep barrier, and adds the bridge's and the
simulator's figures to the run report.
"""

from __future__ import annotations

import argparse
import errno
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from norn.engine.commands import RunContext, model_hook
from norn.engine.commit import Committed
from norn.engine.config import RunConfig, bridge_table
from norn.engine.errors import ConfigError, EnvironmentFailure, UserError


class BridgeRunExtension:
    """Adds the bridge's options to ``norn run`` and serves the world when asked."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--serve``, ``--sim-players``, ``--lockstep-server``."""
        parser.add_argument(
            "--serve", metavar="ENDPOINT", help="serve the bridge, e.g. tcp://127.0.0.1:7600"
        )
        parser.add_argument(
            "--sim-players",
            type=int,
            default=0,
            dest="sim_players",
            help="also launch `norn sim-server` with N players against the bridge (the demo)",
        )
        parser.add_argument(
            "--lockstep-server", action="append", dest="lockstep_servers", metavar="SERVER_ID",
            help="wait before each tick until this map server declared it complete (repeatable; "
            "PROTOCOL.md section 14): inputs land on the ticks the server stamped, whatever the "
            "timing",
        )

    def configure(self, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
        """The demo (``--sim-players``) serves a local endpoint in realtime by default."""
        if args.sim_players and overrides.get("clock") is None:
            overrides["clock"] = "realtime"
        if args.lockstep_servers:
            overrides["lockstep_servers"] = tuple(sorted(args.lockstep_servers))
        if args.sim_players and not args.serve:
            args.serve = "tcp://127.0.0.1:0"

    def preflight(self, args: argparse.Namespace) -> None:
        """Before the run directory is touched: the ``[bridge]`` table, always (a typo is
        refused whether or not this run serves), and the endpoint ``--serve`` names: its form
        (exit 2) and whether it can be bound now (exit 3), so a typo or a busy port never
        costs a world build nor leaves a half-made run (nor, with ``--replace``, the old one).
        """
        from norn.bridge.config import BridgeConfig

        try:
            BridgeConfig(**bridge_table(args.config))
        except ConfigError as exc:  # name the file the table is in
            raise ConfigError("\n".join(f"{args.config}: {line}"
                                         for line in exc.message.splitlines())) from None
        if args.serve:
            check_endpoint(args.serve)
            probe_bind(args.serve)

    def resend_ticks(self, args: argparse.Namespace) -> int:
        """Serving: the actions of the last ``action_ttl_ticks`` ticks go out again."""
        if not args.serve:
            return 0
        from norn.bridge.config import BridgeConfig

        return BridgeConfig(**bridge_table(args.config)).action_ttl_ticks

    def attach(self, run: RunContext) -> ServedRun | None:
        """Start serving when ``--serve`` (or ``--sim-players``) asked for it."""
        args = run.args
        if not args.serve:
            if run.config.lockstep_servers:
                raise UserError(
                    "lockstep_servers needs --serve: the servers it waits for are bridged"
                )
            return None
        server = _start_bridge(args.serve, run, bridge_table(args.config))
        from norn.bridge.observe import observe_bridge

        observe_bridge(server, run.probes)  # its counters in --metrics, its state in /readyz
        try:
            for batch in run.resend:  # actions a crash may have kept from leaving; ids dedupe
                server.committed(Committed(batch.tick, (), batch))  # journaled: durable
            sim = _start_sim(server.endpoint, args.sim_players, run.config,
                             _world_event_kinds(run.world)) \
                if args.sim_players else None
        except BaseException:
            server.stop()
            raise
        return ServedRun(server, sim, run.config)


class ServedRun:
    """One served run: the bridge server, maybe the simulator, the lockstep barrier."""

    feeds_inputs = True

    def __init__(self, server: Any, sim: subprocess.Popen | None, config: RunConfig) -> None:
        self.server = server
        self.sim = sim
        self.config = config
        self.failure: str | None = None
        self.sim_report: dict[str, Any] | None = None

    def before_tick(self, tick: int) -> bool:
        """Lockstep: wait until every named map server declared the tick before complete."""
        servers, wait_s = self.config.lockstep_servers, self.config.lockstep_servers_timeout_s
        if not servers:
            return True
        behind = self.server.wait_progress(servers, tick, wait_s)
        if behind:
            self.failure = (
                f"lockstep: map server(s) {behind} did not declare tick {tick} complete "
                f"within {wait_s} s (lockstep_servers_timeout_s); the journal is intact: "
                f"continue with --resume once they are back"
            )
            return False
        return True

    def close(self) -> None:
        """Collect the simulator's report, then stop the bridge."""
        self.sim_report = _finish_sim(self.sim)
        self.server.stop()

    def report(self, report: dict[str, Any]) -> list[str]:
        """The bridge's counters (and the simulator's summary) in the run report."""
        report["bridge"] = self.server.stats()
        lines = [f"bridge: {report['bridge']}"]
        if self.sim_report is not None:
            report["sim_server"] = self.sim_report
            lines.append(f"sim-server (rAthena stand-in): {report['sim_server']}")
        return lines


#: The object ``norn.run_extensions`` names.
extension = BridgeRunExtension()


#: What ``--serve`` accepts: ``tcp://HOST:PORT`` (``*`` for every interface; port 0 or
#: ``*``: any free one) and ``ipc://PATH``.
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5}|\*)")
_ENDPOINT_FORMS = "tcp://HOST:PORT (e.g. tcp://127.0.0.1:7600, tcp://*:7600) or ipc://PATH"


def check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint the bridge cannot serve, naming the accepted forms (exit 2)."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return
    m = _TCP.fullmatch(endpoint)
    if m is None:
        raise UserError(f"--serve {endpoint}: not an endpoint to serve on; use {_ENDPOINT_FORMS}")
    if m["port"] != "*" and int(m["port"]) > 65535:
        raise UserError(f"--serve {endpoint}: port {m['port']} is not in 0..65535; use "
                        f"{_ENDPOINT_FORMS}")


def _any_port(endpoint: str) -> bool:
    return endpoint.startswith("tcp://") and endpoint.endswith((":0", ":*"))


def zmq_failure(endpoint: str, exc: BaseException) -> UserError | EnvironmentFailure | None:
    """The one-line error for a ZeroMQ refusal to bind ``endpoint``; None if ``exc`` is not."""
    import zmq

    if not isinstance(exc, zmq.ZMQError):
        return None
    reason = (exc.strerror or str(exc)).split(" (addr=")[0].strip()
    if exc.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, zmq.ENOCOMPATPROTO):
        return UserError(f"--serve {endpoint}: ZeroMQ refuses it: {reason}; use {_ENDPOINT_FORMS}")
    return EnvironmentFailure(f"{endpoint}: cannot serve the bridge there: {reason}")


def probe_bind(endpoint: str) -> None:
    """Bind ``endpoint`` once and let it go: a port in use fails here, before the build."""
    if _any_port(endpoint):
        return
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise (zmq_failure(endpoint, exc) or exc) from None
    finally:
        sock.close(0)
        ctx.term()  # the listener is closed once term returns: the real bind can follow


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


def _start_bridge(endpoint: str, run: RunContext, bridge_cfg: dict[str, Any]):
    from norn.bridge.config import BridgeConfig
    from norn.bridge.server import BridgeServer, WorldView

    view_fn = model_hook(run.model, "bridge_view")
    if view_fn is None:
        raise UserError(f"model {run.model!r} cannot be served: it has no bridge_view")
    view = WorldView(**view_fn(run.world))
    sync_fn = model_hook(run.model, "bridge_sync")
    world = run.world

    def sync_source(hosts: Any) -> tuple[int, dict[str, Any]]:
        """The join sync: read on the tick thread, between ticks (BridgeServer)."""
        return world.tick, sync_fn(world, hosts)
    dead_letters = Path(run.out_dir) / "dead_letters.duckdb"
    try:
        server = BridgeServer(
            endpoint,
            run.world.inputs,
            view,
            BridgeConfig(**bridge_cfg),
            durable_seqs=run.durable,
            dead_letter_path=dead_letters,
            start_tick=run.world.tick,
            sync_source=sync_source if sync_fn is not None else None,
        )
        run.world.subscribe(server.committed)  # acks and actions follow the commit notice
        server.start()  # the dead-letter store is opened on the bridge thread; errors land here
    except Exception as exc:
        failure = zmq_failure(endpoint, exc)
        if failure is not None:  # bound by another process since the probe, or not probed
            raise failure from None
        reason = _io_failure(exc)
        if reason is None:
            raise
        raise EnvironmentFailure(f"{dead_letters}: cannot start the bridge: {reason}") from exc
    return server


def _world_event_kinds(world: Any) -> tuple[str, ...]:
    """The event kinds a map server may send that the world declares beyond protocol v1."""
    from norn.engine.rathena import EVENT_NAMES

    return tuple(n for n, k in world.kinds.events.items()
                 if k.arrives == "events" and n not in EVENT_NAMES)


def _start_sim(endpoint: str, players: int, config: RunConfig,
               event_kinds: tuple[str, ...] = ()) -> subprocess.Popen:
    """Launch ``norn sim-server`` as a separate process playing rAthena over the socket;
    it sends the world's own event kinds it knows (``event_kinds``)."""
    duration = max(1.0, config.ticks * config.tick_ms / 1000.0)
    cmd = [
        sys.executable,
        "-m",
        "norn.bridge.cli",
        "sim-server",
        "--connect",
        endpoint,
        "--players",
        str(players),
        "--seed",
        str(config.seed),
        "--duration-s",
        f"{duration:.1f}",
        "--event-kinds",
        ",".join(event_kinds),
        "--json",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_sim(sim: subprocess.Popen | None) -> dict[str, Any] | None:
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
