"""Continue a run from its journal: restore the last snapshot, replay the ticks after it.

Used after a crash (``norn run --resume``): the torn tail is truncated, the world is
brought to the last committed tick bit-identically, and the journal continues its chain.
"""

from __future__ import annotations

from pathlib import Path

from engine import journal, state
from engine.decisions import DeterministicResolver
from engine.errors import JournalError
from engine.recorder import JOURNAL_NAME, Recorder
from engine.tick import step
from engine.world import World
from replays.reader import RunJournal, durable_seqs, open_run


def resume(run_dir: str | Path) -> tuple[World, Recorder, RunJournal, dict[str, int]]:
    run = open_run(run_dir)
    world = run.build_world()
    base = run.restore_latest(world)
    for rec in run.ticks(after=base):
        out = step(world, rec, emit=False)
        if out.digest != rec.digest:
            raise JournalError(
                f"{run.dir}: replay diverged at tick {rec.tick} while resuming; run "
                "'norn replay verify' for details"
            )
    world.resolver = DeterministicResolver(run.config().decision_latency_ticks)
    state.resubmit_pending(world)
    writer = journal.JournalWriter.open_append(
        Path(run.dir) / JOURNAL_NAME, fsync=run.config().fsync
    )
    recorder = Recorder(Path(run.dir), writer, run.config().snapshot_every)
    return world, recorder, run, durable_seqs(run)
