"""The ``norn`` command line: a dispatcher over the subcommands packages register.

Each package registers its own subcommands through the entry point group
``norn.commands`` (``pyproject.toml``): a ``register(subparsers)`` function that adds them
and sets ``func`` (parsed arguments -> exit code). The engine registers ``run``; replays,
the bridge and bench register theirs. So this module imports nothing above the engine,
and a package that is not installed simply brings no commands.

Errors end a command with one line on stderr and an exit code that says what kind of
failure it was (the table in ``errors.py``): 0 ok, 1 divergence, 2 bad input (a key, a path
or a file named), 3 environment, 4 bug (with its traceback above the line). ``python -m
norn.engine.cli`` is the same as ``norn``.

A reader that stops early (``norn replay info RUN | head``) closes the pipe under any
command's stdout: the dispatcher ends that command quietly with 141 (128 + SIGPIPE, what a
shell reports for a tool killed by the closed pipe), not a traceback, and not one of the
codes above, whose meanings it would blur (the output did not all reach its reader).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import orjson

from norn.engine.errors import EXIT_BUG, EnvironmentFailure, NornError, exit_code_for

#: The entry point group through which packages add subcommands to ``norn``.
COMMANDS_GROUP = "norn.commands"
#: Registered first, so ``norn --help`` starts with the command most people want.
FIRST = "run"
#: The exit code of a command whose stdout reader went away (128 + SIGPIPE, as a shell says).
EXIT_STDOUT_CLOSED = 141


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON (numpy values included) on stdout."""
    sys.stdout.write(
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()
    )
    sys.stdout.write("\n")


def progress(enabled: bool, total: int, label: str) -> tuple[Any, Any] | None:
    """A rich progress bar (and its task) on a terminal; None elsewhere (CI logs, --json)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    prog = Progress(
        f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = prog.add_task(label, total=total)
    return prog, task


def command_entry_points() -> list[EntryPoint]:
    """The registered ``norn.commands`` entry points, ``run`` first, then by name."""
    eps = sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: (ep.name != FIRST, ep.name))
    if not eps:
        raise EnvironmentFailure(
            f"no norn commands are registered (entry point group {COMMANDS_GROUP}); "
            "reinstall Norn: pip install -e ."
        )
    return eps


def load_registered(ep: EntryPoint) -> Callable[..., Any] | None:
    """The object an entry point names; None when its own module is not installed."""
    module = ep.value.partition(":")[0].strip()
    try:
        return ep.load()
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None  # that package is not part of this installation
        raise


def build_parser() -> argparse.ArgumentParser:
    """The ``norn`` parser with every registered package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="norn", description="Deterministic world engine for rAthena"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for ep in command_entry_points():
        register = load_registered(ep)
        if register is not None:
            register(sub)
    return parser


def report_failure(exc: BaseException, prog: str = "norn") -> int:
    """Print the one-line message for ``exc`` (a bug's traceback first); its exit code."""
    code = exit_code_for(exc)
    if isinstance(exc, NornError):
        message = str(exc)
    elif isinstance(exc, FileNotFoundError) and exc.filename is not None:
        message = f"{exc.filename}: not found"
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        message = f"{where}{exc.strerror or exc}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    if code == EXIT_BUG:
        traceback.print_exception(exc, file=sys.stderr)
        print(f"{prog}: bug: {message} (a bug in Norn or a plugin; the traceback is above)",
              file=sys.stderr)
    else:
        print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def stdout_closed() -> bool:
    """True when stdout is a pipe (or socket) whose reader has gone away.

    A write end whose read end is closed polls as an error (POLLERR) on Linux and the BSDs;
    a terminal, a file or a pipe still being read does not.
    """
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (captured, closed)
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                prog: str = "norn") -> int:
    """Run one parsed command; every failure becomes one line and its exit code.

    stdout is flushed here, so a reader that went away (``| head``) is noticed while the
    error can still be handled, not in the interpreter's last flush.
    """
    try:
        code = int(func(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if stdout_closed():  # the reader of our output stopped reading: end quietly
            _quiet_stdout()
            return EXIT_STDOUT_CLOSED
        return report_failure(exc, prog)  # another pipe (a socket, a child's): environment
    except Exception as exc:
        return report_failure(exc, prog)


def main(argv: list[str] | None = None) -> int:
    """``norn``: parse, dispatch to the registered command, map failures to exit codes."""
    try:
        parser = build_parser()
    except Exception as exc:  # a package's registration failed: no command can run
        return report_failure(exc)
    args = parser.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
