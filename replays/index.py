"""A dense seek index: the world every K ticks, derived from a run and kept beside it.

A run's own snapshots are as far apart as the run was recorded with (``--snapshot-every``),
and a seek replays every tick after the nearest one: 499 ticks of the default world for a
run with snapshots every 500. ``norn replay index RUN --every K`` replays the run once,
checking every tick's digest against the journal, and keeps a compressed snapshot of the
world every K ticks in ``RUN/seek-index/``; a seek (``norn replay show``, ``Replay.at``)
then restores the nearest of them and replays at most K - 1 ticks.

The index is a cache, never a source of truth: the journal is not touched, and the index
can be deleted and rebuilt at any time. Nothing in it is trusted on its word. Before a
seek uses an entry it restores the snapshot, recomputes every chunk hash of the restored
state and the tick digest from them (with the tick's outputs, the emitted actions and the
inputs' hash, which a snapshot of state cannot hold, kept in the manifest) and compares it
with the digest the journal recorded for that tick. An entry that does not match (a
tampered file, an index of another run, a journal rewritten since) is refused: the seek
falls back to the run's own snapshots and says why (``Replay.warnings``), and
``norn replay index`` builds the index again. Other checks refuse it earlier, for a
clearer message: the manifest names the run (seed, config and scenario hashes, the
initial digest) and each entry's journal digest. ``norn replay verify --index-every K``
writes the index in the same pass as it verifies, so a run verified once seeks fast.

Layout: ``seek-index/manifest.json`` (``version``, ``run``, ``every``, ``entries``: tick,
file, journal digest, output region hashes) and ``seek-index/tick-<T>.arrow`` (the
engine's snapshot format, zstd-compressed Arrow buffers).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from norn.engine import snapshot_io, state
from norn.engine.digest import OUTPUT_GROUPS
from norn.engine.errors import Diverged, EnvironmentFailure, NornError, UserError
from norn.engine.tick import step

if TYPE_CHECKING:
    from norn.engine.reader import RunJournal
    from norn.engine.world import World
    from norn.replays.session import Replay

INDEX_DIR = "seek-index"
INDEX_VERSION = 1
MANIFEST = "manifest.json"
#: The default distance between entries: a seek replays at most ``every - 1`` ticks (the
#: default world steps ~100 ticks/s on one loaded core, so under a second).
DEFAULT_EVERY = 50
COMPRESSION = "zstd"

Progress = Callable[[int, int], None] | None


class StaleIndex(NornError):
    """An index entry that does not match the run's journal (refused, never used)."""


@dataclass(frozen=True)
class Entry:
    tick: int
    file: str
    digest: int  # the journal's digest of this tick
    outputs: dict[str, np.ndarray]  # chunk hashes of the tick's output regions


def run_identity(run: RunJournal) -> dict[str, Any]:
    """What names the run an index was made from (its journal's header)."""
    h = run.header
    return {"seed": int(h["seed"]), "config_hash": h["config_hash"],
            "scenario_hash": h["scenario"]["hash"], "d0": f"{int(h['d0']):016x}",
            "first_tick": int(h.get("t0", 0))}


def index_dir(replay: Replay | RunJournal) -> Path:
    return Path(replay.dir) / INDEX_DIR


class Writer:
    """Writes a run's seek index while something replays it with every digest checked
    (``build``, or ``norn replay verify --index-every K``): ``tick`` after each matched
    tick, then ``finish``. Written beside the index and renamed into place, so a reader
    sees the old index or the new one. Ticks a recorded snapshot holds are left out."""

    def __init__(self, run: RunJournal, every: int) -> None:
        if every < 1:
            raise UserError(f"--every must be at least 1, got {every}")
        self.run = run
        self.every = every
        self.out = index_dir(run)
        self.tmp = self.out.with_name(INDEX_DIR + ".tmp")
        try:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        except OSError as e:
            raise EnvironmentFailure.from_os(self.tmp, "cannot write the seek index", e) from e
        self.recorded = {s[0] for s in run.snapshots}
        self.entries: list[dict[str, Any]] = []

    def tick(self, world: World, digest: int) -> None:
        """After a tick whose digest matched the journal's (``digest``)."""
        if world.tick % self.every == 0 and world.tick not in self.recorded:
            self.entries.append(_write_entry(self.tmp, world, digest))

    def finish(self) -> Path:
        manifest = {"version": INDEX_VERSION, "run": run_identity(self.run),
                    "every": self.every, "last_tick": self.run.last_tick,
                    "entries": self.entries}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = self.out.with_name(INDEX_DIR + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def build(replay: Replay, every: int = DEFAULT_EVERY, progress: Progress = None) -> Path:
    """Replay the whole run once (every digest checked) and write ``RUN/seek-index``."""
    writer = Writer(replay.run, every)
    world = replay.fresh_world()
    total = replay.last_tick - replay.first_tick
    for i, rec in enumerate(replay.records(), 1):
        got = step(world, rec)
        if got.digest != rec.digest:
            writer.abandon()
            raise Diverged(f"{replay.dir}: the replay diverges from the journal, so no index "
                           f"can be made; run 'norn replay verify {replay.dir}'",
                           seed=world.seed, tick=rec.tick)
        writer.tick(world, rec.digest)
        if progress is not None:
            progress(i, total)
    return writer.finish()


def _write_entry(directory: Path, world: World, digest: int) -> dict[str, Any]:
    arrays, meta = state.capture(world)
    name = f"tick-{world.tick:09d}.arrow"
    snapshot_io.write_snapshot(directory / name, arrays, meta, compression=COMPRESSION)
    outputs = {r.key: r.hashes.tobytes().hex() for r in world.digest.regions
               if r.group in OUTPUT_GROUPS}
    return {"t": int(world.tick), "file": name, "d": f"{digest:016x}", "outputs": outputs}


def load(replay: Replay) -> tuple[list[Entry], str | None]:
    """The index's entries for this run (ticks in the journal), or why there are none.

    Returns ``([], reason)`` when the index is missing (reason None) or unusable: another
    version, another run, or an entry whose digest is not the journal's at its tick.
    """
    path = index_dir(replay) / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return [], None
    except (OSError, ValueError) as e:
        return [], f"{path}: unreadable ({e})"
    if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
        return [], f"{path}: index version {doc.get('version') if isinstance(doc, dict) else '?'}"
    if doc.get("run") != run_identity(replay.run):
        return [], f"{path}: made from another run (seed, config, scenario or start differ)"
    entries = []
    try:
        for e in doc["entries"]:
            t = int(e["t"])
            if not replay.first_tick < t <= replay.last_tick:
                continue  # past a torn tail: the journal no longer reaches it
            entries.append(Entry(t, str(e["file"]), int(e["d"], 16),
                                 {k: np.frombuffer(bytes.fromhex(v), np.uint64)
                                  for k, v in e["outputs"].items()}))
    except (KeyError, TypeError, ValueError) as e:
        return [], f"{path}: malformed entry ({type(e).__name__}: {e})"
    for e in entries:
        if replay.record(e.tick).digest != e.digest:
            return [], (f"{path}: the entry of tick {e.tick} does not match the journal's "
                        "digest (the journal changed since the index was made)")
    return sorted(entries, key=lambda e: e.tick), None


def restore(replay: Replay, world: World, entry: Entry) -> None:
    """Load ``entry`` into ``world`` and prove it is the run's state at its tick.

    The restored state's chunk hashes are recomputed from its arrays (``state.restore``);
    with the tick's output hashes they must give the digest the journal recorded.
    """
    path = index_dir(replay) / entry.file
    try:
        arrays, meta = snapshot_io.read_snapshot(path)
        state.restore(world, arrays, meta)
    except NornError as e:
        raise StaleIndex(f"{path}: {e}") from e
    world.last_actions = None
    regions = {r.key: r for r in world.digest.regions if r.group in OUTPUT_GROUPS}
    if set(regions) != set(entry.outputs):
        raise StaleIndex(f"{path}: output regions {sorted(entry.outputs)} are not the "
                         f"world's {sorted(regions)}")
    for key, hashes in entry.outputs.items():
        regions[key].hashes = hashes.copy()  # as the stepped world had them; the next
        # commit rehashes these per-tick regions whole
    if world.tick != entry.tick or world.digest.combine(world.tick) != entry.digest:
        raise StaleIndex(f"{path}: the restored world's digest at tick {entry.tick} is not "
                         "the journal's (a tampered or stale index entry)")
