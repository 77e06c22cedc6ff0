"""GM commands to a running world, journaled as inputs: ``norn replay gm RUN '...'``.

A game master (or a designer at a live test) types the same command a fork injects,
``admin_hazard map=payon type=plague intensity=0.8``, and the running world takes it at
its next tick as an input of source ``gm``, so the journal holds it and every replay,
verify and fork sees it like any event. The command line and the world share only the run
directory: ``send`` drops the command as a file in ``RUN/gm-inbox/`` (written aside, then
renamed, so a half-written command is never read), and the ``norn run --gm`` extension
reads the inbox before each tick. A command the world cannot parse (an unknown map, a
missing field) is set aside as ``.rejected`` with its reason and the run goes on: a typo
must not stop a live world. Nothing else changes for a run without ``--gm``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from norn.engine.commands import RunContext
from norn.engine.errors import EnvironmentFailure, NornError, UserError
from norn.engine.inputs import InputBatch

INBOX = "gm-inbox"
SOURCE = "gm"
#: Commands read from the inbox per tick (the rest wait for the next tick).
COMMANDS_PER_TICK_MAX = 64


def send(run_dir: str | Path, command: str) -> Path:
    """Queue ``command`` for the world running in ``run_dir``; returns the queued file."""
    import time

    run = Path(run_dir)
    if not (run / "journal.norn").is_file():
        raise UserError(f"{run}: no journal here; is this a run directory?")
    inbox = run / INBOX
    if not inbox.is_dir():
        raise UserError(f"{run}: no {INBOX}/: is the world running with 'norn run --gm'?")
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = inbox / f".{name}.tmp"
    try:
        tmp.write_text(command.strip() + "\n", encoding="utf-8")
        final = inbox / f"{name}.cmd"
        os.replace(tmp, final)
    except OSError as e:
        raise EnvironmentFailure.from_os(inbox, "cannot queue the GM command", e) from e
    return final


class GmInbox:
    """The attachment: before each tick, the inbox's commands become ``gm`` inputs."""

    feeds_inputs = False  # the scenario's own events go on beside GM commands
    failure: str | None = None

    def __init__(self, run: RunContext) -> None:
        from norn.replays.labels import Vocabulary

        self.world = run.world
        self.inbox = run.out_dir / INBOX
        self.inbox.mkdir(exist_ok=True)
        self.vocab = Vocabulary.of(run.world)
        self.seq = run.durable.get(SOURCE, -1) + 1  # a resumed run continues its numbering
        self.applied = 0
        self.rejected = 0

    def before_tick(self, tick: int) -> bool:
        from norn.replays.fork import parse_inject

        files = sorted(self.inbox.glob("*.cmd"))[:COMMANDS_PER_TICK_MAX]
        for f in files:  # a loop over commands, a few a tick at most
            text = f.read_text(encoding="utf-8").strip()
            try:
                inj = parse_inject(text, self.world.kinds, self.vocab)
                batch = InputBatch(SOURCE, self.seq, inj.kind, inj.columns,
                                   tick=max(inj.tick, 0))
                if not self.world.inputs.offer(batch):
                    break  # the queue is full: the command waits for the next tick
            except (NornError, ValueError) as exc:
                f.with_suffix(".rejected").write_text(f"{text}\n{exc}\n", encoding="utf-8")
                f.unlink()
                self.rejected += 1
                continue
            self.seq += 1
            self.applied += 1
            f.rename(f.with_suffix(f".tick-{tick}.done"))
        return True

    def close(self) -> None:
        pass

    def report(self, report: dict[str, Any]) -> list[str]:
        report["gm"] = {"applied": self.applied, "rejected": self.rejected}
        return [f"GM commands: {self.applied} applied, {self.rejected} rejected "
                f"(inbox {self.inbox})"]


class GmExtension:
    """``norn run --gm``: accept GM commands through the run directory's inbox."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--gm", action="store_true",
                            help="accept GM commands (norn replay gm RUN '...'), journaled "
                                 "as inputs")

    def configure(self, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
        pass

    def resend_ticks(self, args: argparse.Namespace) -> int:
        return 0

    def attach(self, run: RunContext) -> GmInbox | None:
        return GmInbox(run) if getattr(run.args, "gm", False) else None


#: The run extension (entry point group ``norn.run_extensions``).
extension = GmExtension()
