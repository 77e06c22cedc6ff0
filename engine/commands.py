"""``norn run``: build (or resume) a world, run it under its clock, journal it, report it.

The engine's own subcommand (registered through ``norn.commands`` like every other).
Packages above the engine extend it without the engine importing them: a **run
extension** (entry point group ``norn.run_extensions``) adds its options, may set config
overrides its options imply, and attaches to the built world for the run (the bridge
serves it with ``--serve``, ``--sim-players`` and ``--lockstep-server``). Its attachment
can feed the world's inputs, hold each tick at a barrier, and add to the report.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from norn.engine.cli import load_registered, print_json, progress
from norn.engine.errors import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EnvironmentFailure,
    NornBug,
    NornError,
    UserError,
)
from norn.engine.observe import Probes, log_failure

if TYPE_CHECKING:  # the world's modules load numba: only a run needs them, not --help
    from norn.engine.actions import ActionBatch
    from norn.engine.config import RunConfig
    from norn.engine.recorder import Recorder
    from norn.engine.world import World

#: The entry point group of ``norn run`` extensions (objects satisfying ``RunExtension``).
RUN_EXTENSIONS_GROUP = "norn.run_extensions"


# -- the extension point ----------------------------------------------------------------
@dataclass
class RunContext:
    """What an extension attaching to a run sees: the world just built or resumed."""

    args: argparse.Namespace
    world: World
    config: RunConfig
    model: str  # the scenario's model name (its hooks: ``model_hook``)
    out_dir: Path
    durable: dict[str, int] = field(default_factory=dict)  # resume: journaled seq per source
    resend: list[ActionBatch] = field(default_factory=list)  # resume: recent ticks' actions
    recorder: Recorder | None = None  # the run's journal writer and snapshots
    #: What extensions expose to ``--metrics`` and ``/readyz`` (``engine/observe.py``).
    probes: Probes = field(default_factory=Probes)


class Attachment(Protocol):
    """An extension's part in one run, from the first tick to the report."""

    #: The world's inputs come from here, so the scenario's own event source stays off.
    feeds_inputs: bool
    #: After ``close``: why this attachment stopped the run early (the run exits 3), or None.
    failure: str | None

    def before_tick(self, tick: int) -> bool:
        """Called before each tick; False stops the run (the journal stays intact)."""
        ...

    def close(self) -> None:
        """After the run loop, whatever ended it: stop threads, collect processes."""
        ...

    def report(self, report: dict[str, Any]) -> list[str]:
        """Add its entries to the run report; return its lines for the human report."""
        ...


class RunExtension(Protocol):
    """What a package adds to ``norn run``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add its options to ``norn run``."""
        ...

    def configure(self, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
        """Before the config is made: set the config overrides its options imply."""
        ...

    def resend_ticks(self, args: argparse.Namespace) -> int:
        """On ``--resume``: how many recent ticks' actions to rebuild for it (0: none)."""
        ...

    def attach(self, run: RunContext) -> Attachment | None:
        """Attach to the run when its options ask for it (None: not this time)."""
        ...

    # Optional: ``preflight(args)``, called before the run directory is touched (and before
    # a resume reads the journal): check what can fail cheaply (its config table, an
    # endpoint to bind), so such a failure costs no world build and leaves no run behind.


def run_extensions() -> list[RunExtension]:
    """The installed ``norn run`` extensions, in entry point name order."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=RUN_EXTENSIONS_GROUP), key=lambda ep: ep.name):
        ext = load_registered(ep)
        if ext is not None:
            found.append(ext)
    return found


def model_hook(model: str, name: str) -> Callable | None:
    """The optional hook ``name`` of a world model (``bridge_view``, ...), None if it has none.

    Hooks are fields of the model's ``engine.scenario.Model`` (entry point group
    ``norn.models``).
    """
    from norn.engine.scenario import load_model

    return getattr(load_model(model), name)


# -- norn run ---------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` (and every installed run extension's options) to ``norn``."""
    p = subparsers.add_parser("run", help="run a world (optionally serving the rAthena bridge)")
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
    extensions = run_extensions()
    for ext in extensions:
        ext.add_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: _logged_run(args, extensions))


def _logged_run(args: argparse.Namespace, extensions: list[RunExtension]) -> int:
    """``cmd_run``; a failure also reaches the JSON log as ``run_failed`` (the dispatcher
    prints the plain line)."""
    try:
        return cmd_run(args, extensions)
    except Exception as exc:
        log_failure(logging.getLogger("norn.engine.run"), "run_failed", exc)
        raise


def cmd_run(args: argparse.Namespace, extensions: list[RunExtension] | None = None) -> int:
    """Build or resume the world, run it, close the journal, print the report."""
    from norn.engine.warmup import compile_notice

    # a first run compiles for a while: say so on a terminal ("compiling kernels ...")
    with compile_notice(not args.json) as notice:
        return _cmd_run(args, extensions, notice)


def _cmd_run(args: argparse.Namespace, extensions: list[RunExtension] | None,
             notice: Any) -> int:
    from norn.engine.config import make_config
    from norn.engine.precompile import prime
    from norn.engine.recorder import Recorder
    from norn.engine.runner import build_world, make_header, run
    from norn.engine.scenario import load_scenario, parse_scenario

    extensions = run_extensions() if extensions is None else extensions
    overrides = dict(
        seed=args.seed,
        ticks=args.ticks,
        clock=args.clock,
        snapshot_every=args.snapshot_every,
        synctest=args.synctest or None,
        tick_ms=args.tick_ms,
    )
    if args.no_fsync:
        overrides["fsync"] = False
    for ext in extensions:
        ext.configure(args, overrides)
    check_threading_layer()
    durable: dict[str, int] = {}
    resend: list = []
    new_run: _NewRun | None = None  # a fresh run, discarded if it fails before its first tick
    ticks = None  # config.ticks
    if args.resume:
        from norn.engine.config import run_table
        from norn.engine.resume import resume

        if not args.out:
            raise UserError("--resume needs --out DIR (the run to continue)")
        if args.replace:
            raise UserError("--replace starts a new run in --out; --resume continues the one "
                            "there: choose one")
        # what this resume asks for: the config file's [run] table, then the options
        requested = {**run_table(args.config),
                     **{k: v for k, v in overrides.items() if v is not None}}
        make_config(args.config, **requested)  # a bad value is refused before anything runs
        header = _recorded_header(args.out)
        if header is not None:  # (no journal: resume says so, naming the directory)
            _refuse_other_scenario(args.scenario, header["scenario"], args.out)
            _refuse_fixed_changes(requested, header["config"])
        _preflight(extensions, args)
        model = _recorded_model(header)
        if model is not None:  # the known kernels ready first (a cold cache: every core)
            prime(model)
        ttl = max((ext.resend_ticks(args) for ext in extensions), default=0)
        resumed = resume(args.out, resend_ticks=ttl, fsync=requested.get("fsync"),
                         snapshot_every=requested.get("snapshot_every"))
        world, recorder, journal_run = resumed.world, resumed.recorder, resumed.run
        durable, resend = resumed.durable, resumed.resend
        recorded = journal_run.config()
        _refuse_fixed_changes(requested, recorded.model_dump())
        config = make_config(None, **{**recorded.model_dump(), **requested})
        # without --ticks the run goes on to its length (recorded, or the config file's);
        # with it, that many more
        ticks = args.ticks if args.ticks is not None else max(0, config.ticks - world.tick)
        recorded_scenario = parse_scenario(
            journal_run.header["scenario"]["text"], journal_run.header["scenario"]["source"]
        )
        scenario_model, scenario_name = recorded_scenario.model, recorded_scenario.name
        scenario_data = recorded_scenario.data  # the event source goes on where it stopped
    else:
        scenario = load_scenario(args.scenario)
        config = make_config(args.config, **overrides)
        _preflight(extensions, args)
        scenario_model, scenario_name, scenario_data = scenario.model, scenario.name, scenario.data
        out = (
            Path(args.out)
            if args.out
            else Path("runs")
            / (f"{scenario.name}-s{config.seed}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")
        )
        created = _prepare_run_dir(out, replace=args.replace)  # fail fast, before the build
        new_run = _NewRun(out, created)
        try:
            prime(scenario.model)  # the known kernels ready first (a cold cache: every core)
            with _naming(seed=config.seed, tick=0):
                world = build_world(scenario, config)
            recorder = Recorder.create(
                out,
                make_header(scenario, config, world),
                fsync=config.fsync,
                snapshot_every=config.snapshot_every,
            )
        except BaseException:
            new_run.discard()  # a scenario refused by its model leaves no empty run dir
            raise
        new_run.recorder = recorder
    out_dir = recorder.out_dir

    context = RunContext(args, world, config, scenario_model, out_dir, durable, resend,
                         recorder)
    attached: list[Attachment] = []
    try:
        for ext in extensions:
            att = ext.attach(context)
            if att is not None:
                attached.append(att)
        if config.lockstep_servers and not any(a.feeds_inputs for a in attached):
            raise UserError("lockstep_servers needs a bridge serving the map servers it waits "
                            "for (norn run --serve)")
    except BaseException:
        for att in attached:
            att.close()
        if new_run is not None:  # no tick ran: a run that never started leaves nothing
            new_run.discard()
        raise
    before: list[Callable[[int], bool | None]] = [a.before_tick for a in attached]
    if not any(a.feeds_inputs for a in attached) and scenario_data is not None:
        make_source = model_hook(scenario_model, "make_event_source")
        if make_source is not None:
            source = make_source(scenario_data, config.seed)

            def feed(tick: int) -> None:
                for batch in source(tick):
                    if not world.inputs.offer(batch):
                        raise UserError("generated events exceed the input queue bounds")

            before.append(feed)
    before_tick = None
    if len(before) == 1:
        before_tick = before[0]
    elif before:

        def before_tick(tick: int) -> bool:
            # in order; a barrier saying stop stops the rest too
            return all(hook(tick) is not False for hook in before)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    bar = progress(not args.json, config.ticks, f"{scenario_name} seed {config.seed}")
    on_tick = None
    if bar is not None:
        prog, task = bar
        notice.attach(prog)  # later compiles show as a line of the tick bar
        prog.start()

        def on_tick(rec) -> None:
            prog.advance(task)

    try:
        with _naming(seed=world.seed, tick=lambda: world.tick):
            summary = run(world, config, recorder, ticks=ticks, on_tick=on_tick,
                          before_tick=before_tick, stop=stop)
    finally:
        if bar is not None:
            bar[0].stop()
        for att in attached:
            att.close()
    recorder.close(world, summary.stopped)
    failures = [a.failure for a in attached if a.failure]
    if failures:
        print(f"norn: {failures[0]}", file=sys.stderr)

    report = summary.as_dict()
    report["run_dir"] = str(out_dir)
    report["scenario"] = scenario_name
    report["seed"] = config.seed
    report["clock"] = config.clock
    report["population"] = world.state_summary()
    world_summary = model_hook(scenario_model, "summary")
    if world_summary is not None:
        report["world"] = world_summary(world)
    lines = [line for att in attached for line in att.report(report)]
    if args.json:
        print_json(report)
    else:
        _print_run_report(report, lines)
    return EXIT_ENVIRONMENT if failures else EXIT_OK


@contextlib.contextmanager
def _naming(*, seed: int, tick: int | Callable[[], int]) -> Iterator[None]:
    """Name the seed and tick in any error leaving the block (unexpected ones are bugs).

    ``tick`` may be a callable, read when the error happens (the tick that failed).
    Interrupts and the machine's refusals (``OSError``) keep their own story.
    """
    try:
        yield
    except OSError:
        raise
    except NornError as exc:
        exc.within(seed=seed, tick=tick() if callable(tick) else tick)
        raise
    except Exception as exc:
        at = tick() if callable(tick) else tick
        raise NornBug(f"{type(exc).__name__}: {exc}", seed=seed, tick=at) from exc


#: Config keys a resumed run cannot change: the world was built with them (or they decide
#: what its ticks hold), so a resumed run with another value would not be the recorded one.
#: Every other key (ticks, clock, snapshot_every, fsync, synctest, timeouts) is honoured.
RESUME_FIXED = ("seed", "tick_ms", "chunk_rows", "decision_latency_ticks", "lockstep_servers",
                "input_batches_max", "input_events_max", "actions_per_tick_max")


def _recorded_model(header: dict[str, Any] | None) -> str | None:
    """The model of a recorded run's scenario; None when the header cannot say (resume
    then names what is wrong with it)."""
    from norn.engine.scenario import parse_scenario

    try:
        sc = header["scenario"]  # type: ignore[index]
        return parse_scenario(sc["text"], sc["source"]).model
    except (NornError, KeyError, TypeError):
        return None


def _recorded_header(run_dir: str) -> dict[str, Any] | None:
    """The header of the journal in ``run_dir`` (its first frame only), or None."""
    from norn.engine import journal
    from norn.engine.recorder import JOURNAL_NAME, unpack

    path = Path(run_dir) / JOURNAL_NAME
    if not path.is_file():
        return None
    with contextlib.suppress(StopIteration):
        first = next(iter(journal.JournalReader(path).frames()))
        if first.kind == journal.KIND_HEADER:
            header = unpack(first.payload)
            if isinstance(header, dict) and "scenario" in header and "config" in header:
                return header
    return None  # not a usable header: resume refuses it with the reason


def _refuse_fixed_changes(requested: dict[str, Any], recorded: dict[str, Any]) -> None:
    """A resume may not change what the recorded world was built with (``RESUME_FIXED``)."""
    from norn.engine.config import make_config

    before = make_config(None, **recorded).model_dump()  # both normalised (lists, tuples)
    asked = make_config(None, **{**recorded, **requested}).model_dump()
    changed = {k: (before[k], asked[k]) for k in RESUME_FIXED
               if k in requested and asked[k] != before[k]}
    if changed:
        what = ", ".join(f"{k} (recorded {old!r}, asked {new!r})"
                         for k, (old, new) in sorted(changed.items()))
        raise UserError(f"--resume continues the recorded run; it cannot change {what}: the "
                        f"recorded world was built with its values (to try others from this "
                        f"run's state, fork it: norn replay fork)")


def _refuse_other_scenario(asked: str | None, recorded: dict[str, Any], run_dir: str) -> None:
    """``--scenario`` on ``--resume``: the recorded one is fine; another one is refused."""
    if asked is None:
        return
    from norn.engine.scenario import load_scenario

    if load_scenario(asked).text == recorded["text"]:
        return
    raise UserError(
        f"--resume continues {run_dir} with the scenario it recorded ({recorded['name']!r} "
        f"from {recorded['source']}); --scenario {asked} is another one. To see what another "
        f"world does from this run's state, fork it (norn replay fork), or start a new run "
        f"without --resume"
    )


def check_threading_layer() -> None:
    """Load numba's threading layer now: one that cannot load is an environment failure.

    ``NUMBA_THREADING_LAYER=tbb`` without Intel TBB installed (or an unknown layer) would
    otherwise fail inside the first parallel kernel, mid-tick; here it is exit 3 with one
    line, before a run directory exists. Loading the layer compiles nothing.
    """
    import numba
    from numba.np.ufunc import parallel

    try:
        parallel._launch_threads()
    except ValueError as exc:  # numba's "No threading layer could be loaded" and its hint
        chosen = numba.config.THREADING_LAYER
        reason = " ".join(line.strip("$ ").strip() for line in str(exc).splitlines()
                          if line.strip() and line.strip() != "HINT:")
        raise EnvironmentFailure(
            f"numba cannot load its threading layer (NUMBA_THREADING_LAYER={chosen}): {reason}"
        ) from None


def _preflight(extensions: list[RunExtension], args: argparse.Namespace) -> None:
    """Each extension's optional cheap checks, before the run directory is touched."""
    for ext in extensions:
        check = getattr(ext, "preflight", None)
        if check is not None:
            check(args)


class _NewRun:
    """A fresh run directory until its first tick: a failure before then removes it whole.

    What this run created goes (the directories ``prepare_run_dir`` made, or, in a directory
    that existed and was empty, the entries it added); nothing that was there before.
    """

    def __init__(self, out: Path, created: list[Path]) -> None:
        self.out = out
        self.created = created
        self.recorder: Any = None
        self.kept = set() if out in created else {p.name for p in out.iterdir()}

    def discard(self) -> None:
        from norn.engine.recorder import discard_dirs

        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.writer.close()
        for entry in self.out.iterdir() if self.out.is_dir() else ():
            if entry.name in self.kept:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        discard_dirs(self.created)


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


def _print_run_report(r: dict[str, Any], extra: list[str]) -> None:
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
    if r["clock"] == "realtime":
        from norn.engine.runner import realtime_behind_ms_max

        con.print(
            f"realtime: paced at {r['paced_ticks_per_s']} ticks/s; stalls {r['stalls']} (fell "
            f"over {realtime_behind_ms_max} ms behind: re-phased, {r['stall_s']} s skipped)"
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
    for line in extra:
        con.print(line)
    con.print(f"verify with: norn replay verify {r['run_dir']}")
