"""Continue a run from its journal: restore a snapshot, replay the ticks after it.

Used after a crash (``norn run --resume``): the torn tail is truncated, the world is
brought to the last committed tick bit-identically, and the journal continues its chain.

Actions are not journaled; they are a pure function of the journal. The actions of the
last ``resend_ticks`` ticks are rebuilt by replaying from a snapshot old enough and handed
back, so the bridge can offer them again: a crash between a tick's commit and its actions
leaving the engine loses none (map servers drop the repeats by action id).

State code (restoring a world from its journal), so it lives in the engine, beside the
runner it hands the world back to; it was ``replays/resume.py`` until the CLI left the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from norn.engine import journal, state
from norn.engine.actions import ActionBatch
from norn.engine.decisions import DeterministicResolver
from norn.engine.errors import Diverged
from norn.engine.reader import RunJournal, durable_seqs, open_run
from norn.engine.recorder import JOURNAL_NAME, Recorder
from norn.engine.tick import step
from norn.engine.world import World


@dataclass
class Resumed:
    world: World
    recorder: Recorder
    run: RunJournal
    durable: dict[str, int]  # highest journaled seq per input source
    resend: list[ActionBatch]  # actions of the last ``resend_ticks`` ticks, oldest first


def resume(run_dir: str | Path, *, resend_ticks: int = 0, fsync: bool | None = None,
           snapshot_every: int | None = None) -> Resumed:
    """Bring the run in ``run_dir`` back to its last committed tick, ready to continue.

    ``fsync`` and ``snapshot_every``: how the journal goes on (None: as recorded).
    """
    run = open_run(run_dir)
    world = run.build_world()
    last = run.last_tick
    base = run.restore_latest(world, at_or_before=max(0, last - resend_ticks))
    resend: list[ActionBatch] = []
    for rec in run.ticks(after=base):
        out = step(world, rec)
        if out.digest != rec.digest:
            raise Diverged(
                f"{run.dir}: replay diverged while resuming; run 'norn replay verify' for "
                "details", seed=world.seed, tick=rec.tick,
            )
        if resend_ticks and rec.tick > last - resend_ticks and world.last_actions.count():
            resend.append(world.last_actions)
    world.resolver = DeterministicResolver(run.config().decision_latency_ticks)
    state.resubmit_pending(world)
    recorded = run.config()
    writer = journal.JournalWriter.open_append(
        Path(run.dir) / JOURNAL_NAME, fsync=recorded.fsync if fsync is None else fsync
    )
    recorder = Recorder(Path(run.dir), writer,
                        recorded.snapshot_every if snapshot_every is None else snapshot_every)
    return Resumed(world, recorder, run, durable_seqs(run), resend)
