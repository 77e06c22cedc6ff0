"""``norn replay verify``: re-simulate a run from its journal and compare every tick's digest.

On a mismatch it names the first divergent tick, then the first divergent region (table and
column, or pending messages/decisions) and chunk, and the entity slots that chunk covers,
straight from the chunk hashes the journal recorded. No network, no LLM: inputs and decision
results come from the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine.digest import CHUNK_RECORD
from norn.engine.fingerprint import differences, fingerprint
from norn.engine.reader import chunk_state, open_run
from norn.engine.tick import step


@dataclass
class Divergence:
    tick: int
    region: str
    table: str
    column: str
    chunk: int
    slots: tuple[int, int]
    entity_ids: list[int]
    recorded_digest: int
    replayed_digest: int
    also: list[str] = field(default_factory=list)  # other regions diverged in the same tick

    def describe(self) -> str:
        if self.table == "inputs":  # the digest's hash of the tick's input batches
            return (
                f"diverged at tick {self.tick}: the tick's inputs differ from those recorded "
                f"(region {self.region}: the journal's inputs were altered, or decode "
                f"differently than they were encoded); digest recorded "
                f"{self.recorded_digest:016x}, replayed {self.replayed_digest:016x}"
                + (f"; also diverged: {', '.join(self.also)}" if self.also else "")
            )
        ids = ", ".join(str(e) for e in self.entity_ids[:8])
        more = " ..." if len(self.entity_ids) > 8 else ""
        return (
            f"diverged at tick {self.tick}: table {self.table!r} column {self.column!r} "
            f"(chunk {self.chunk}, slots {self.slots[0]}..{self.slots[1] - 1}; "
            f"entity ids {ids}{more}); digest recorded {self.recorded_digest:016x}, "
            f"replayed {self.replayed_digest:016x}"
            + (f"; also diverged: {', '.join(self.also)}" if self.also else "")
        )


@dataclass
class VerifyResult:
    matched: bool
    ticks: int
    last_tick: int
    divergence: Divergence | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "matched": self.matched,
            "ticks": self.ticks,
            "last_tick": self.last_tick,
            "warnings": self.warnings,
        }
        if self.divergence is not None:
            d["divergence"] = {k: v for k, v in self.divergence.__dict__.items()}
        return d


def verify(run_dir: str | Path, progress: Callable[[int, int], None] | None = None, *,
           index_every: int = 0) -> VerifyResult:
    """Replay ``run_dir`` and compare every tick's digest with the journal's.

    ``index_every`` K > 0 also writes the run's seek index (``replays/index.py``) from the
    same replay, a snapshot every K ticks; kept only if every digest matched.
    """
    run = open_run(run_dir)
    header = run.header
    now = fingerprint()
    warnings = [f"environment differs: {d}" for d in differences(header["env"], now)]
    if header["env"].get("source", now["source"]) != now["source"]:
        warnings.append(
            "the engine's state code (engine/, actors/, rules/) changed since this run was "
            "recorded: a divergence may be that change, not nondeterminism"
        )
    if run.torn_tail_bytes:
        warnings.append(f"journal has a torn tail of {run.torn_tail_bytes} bytes (ignored)")
    world = run.build_world()
    if world.digest.keys() != header["regions"]:
        raise_mismatch = "the scenario builds different tables/columns than were recorded"
        return VerifyResult(False, 0, 0, None, [*warnings, raise_mismatch])
    regions = header["regions"]
    if world.digest.combine(world.tick) != header["d0"]:
        div = _locate(world, chunk_state(header), regions, world.tick, header["d0"],
                      world.digest.combine(0))
        return VerifyResult(False, 0, 0, div, warnings)
    n = 0
    total = run.tick_frames
    digest_regions = world.digest.regions
    writer = None
    if index_every:
        from norn.replays.index import Writer

        writer = Writer(run, index_every)
    for rec in run.ticks():
        # The hashes before the tick: while every digest matched they are the recorded ones
        # too, so only a divergence needs them (with the tick's recorded chunks, they name
        # what diverged). One copy a tick, not the recorded hashes kept up to date.
        before = [r.hashes for r in digest_regions]
        kept = np.concatenate(before)
        out = step(world, rec)
        n += 1
        if progress is not None:
            progress(n, total)
        if out.digest != rec.digest:
            recorded, lengths = recorded_after(regions, kept, [len(h) for h in before],
                                               rec.chunks)
            div = _locate(world, recorded, regions, rec.tick, rec.digest, out.digest, lengths)
            if writer is not None:
                writer.abandon()
            return VerifyResult(False, n, rec.tick, div, warnings)
        if writer is not None:
            writer.tick(world, rec.digest)
    if writer is not None:
        writer.finish()
    return VerifyResult(True, n, world.tick, None, warnings)


def recorded_after(regions: list[str], kept: np.ndarray, lens: list[int],
                   chunks: np.ndarray | None) -> tuple[dict[str, np.ndarray],
                                                      dict[str, set[int]]]:
    """The recorded chunk hashes after a tick, from those before it (``kept``, the regions'
    hashes end to end, ``lens`` long each) and the chunks the tick recorded as changed;
    and, for the regions it touched, the lengths they may have (``recorded_lengths``)."""
    recorded = dict(zip(regions, np.split(kept.copy(), np.cumsum(lens)[:-1]), strict=True))
    chunks = chunks if chunks is not None else np.empty(0, dtype=CHUNK_RECORD)
    lengths: dict[str, set[int]] = {}
    for region_idx in np.unique(chunks["region"]):
        key = regions[int(region_idx)]
        sel = chunks[chunks["region"] == region_idx]
        lengths[key] = recorded_lengths(len(recorded[key]), sel["chunk"])
        arr = recorded[key]
        need = int(sel["chunk"].max()) + 1
        if need > len(arr):
            arr = np.concatenate([arr, np.zeros(need - len(arr), dtype=np.uint64)])
            recorded[key] = arr
        arr[sel["chunk"].astype(np.int64)] = sel["hash"]
    return recorded, lengths


def recorded_lengths(before: int, changed: np.ndarray) -> set[int]:
    """The lengths (in chunks) a recorded region may have after a tick, from the chunks the
    tick recorded as changed and its length before.

    The journal keeps changed chunk hashes, not lengths. A region whose length changes is
    hashed again from scratch, so every one of its chunks is recorded: a record reaching
    past the old length is the new length; a record of exactly chunks ``0..k-1`` may be a
    region shrunk to ``k`` or one whose first ``k`` chunks changed; anything else keeps
    the old length. (A region of variable length, such as a tick's emitted actions, changes
    length most ticks: compared by length alone it would be named wrongly.)
    """
    if not len(changed):
        return {before}
    k = int(changed.max()) + 1
    if k > before:
        return {k}
    if len(np.unique(changed)) == k:  # exactly 0..k-1
        return {k, before}
    return {before}


def _write_rank(world) -> dict[str, int]:
    """Position of the first system (in schedule order) that writes each region.

    Several regions usually diverge in the same tick (a wrong column feeds the systems
    after it); the one written earliest in the tick is the likeliest cause.
    """
    from norn.engine.schedule import PHASES

    rank: dict[str, int] = {}
    all_keys = world.digest.keys()
    pos = 0
    for phase in PHASES:
        for system in world.schedule.phase(phase):
            for w in system.writes:
                table, _, col = w.partition(".")
                if w.startswith("out:"):
                    keys = [k for k in all_keys if k.startswith(f"msg:{w[4:]}.")]
                elif w == "events":  # the drain: the tick's inputs, hashed into the digest
                    keys = [k for k in all_keys if k.startswith("inputs.")]
                elif w in ("decisions", "actions"):
                    keys = [k for k in all_keys if k.startswith(f"{w}.")]
                elif col == "*":
                    keys = [k for k in all_keys if k.startswith(f"{table}.")]
                else:
                    keys = [w]
                for k in keys:
                    rank.setdefault(k, pos)
            pos += 1
    return rank


def _locate(world, recorded, regions, tick, want, got,
            lengths: dict[str, set[int]] | None = None) -> Divergence:
    """Name the region (and chunk) that diverged first at ``tick``.

    ``lengths``: for regions the tick recorded, the lengths the recorded region may have
    (``recorded_lengths``); the others kept theirs. A region differs when a chunk both
    have differs, or when its replayed length is not one it may have.
    """
    lengths = lengths or {}
    diverged = []
    for key in regions:
        mine = world.digest.region(key).hashes
        theirs = recorded.get(key, np.zeros(0, dtype=np.uint64))
        possible = lengths.get(key, {len(theirs)})
        length = len(mine) if len(mine) in possible else max(possible)
        m = min(len(mine), length)
        diff = np.flatnonzero(mine[:m] != theirs[:m])
        if len(diff) or len(mine) not in possible:
            diverged.append((key, int(diff[0]) if len(diff) else m))
    if not diverged:
        return Divergence(tick, "(tick digest only)", "", "", -1, (0, 0), [], want, got)
    rank = _write_rank(world)

    def derived(key: str) -> bool:  # outputs of systems, not table state
        return key.startswith(("msg:", "actions.", "decisions."))

    diverged.sort(key=lambda kc: (rank.get(kc[0], 1 << 30), derived(kc[0]), kc[0]))
    key, chunk = diverged[0]
    group, _, column = key.partition(".")
    rows = world.chunk_rows
    lo, hi = chunk * rows, (chunk + 1) * rows
    ids: list[int] = []
    table = world.tables.get(group)
    if table is not None:
        hi = min(hi, table.hwm)
        slots = np.arange(lo, hi)
        slots = slots[table.alive[lo:hi]] if hi > lo else slots
        ids = [int(h) for h in table.handles(slots)]
    return Divergence(
        tick, key, group, column, chunk, (lo, hi), ids, want, got, also=[k for k, _ in diverged[1:]]
    )
