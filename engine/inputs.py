"""The inputs seam: a thread-safe, bounded queue that the bridge (and admin tools) fill.

Other threads ``offer`` validated batches; the tick ``drain``s what is due at the start
of its ingest phase, and those batches belong to that tick and are journaled with it.
Once the tick's journal frame is durable the runner publishes ``Committed`` carrying them
(``engine/commit.py``): that is how the bridge learns the highest sequence number safe to
acknowledge per source (cumulative acks only then, so an acked event is never lost).

A batch is due at once unless it carries a ``tick`` stamp (the bridge's lockstep mode):
then it waits for that tick. A source's batches leave in seq order, so a batch stamped
for a later tick holds back every later batch of its source; what a tick takes from each
source is always a prefix of its seqs, which keeps acks cumulative.

``offer`` never blocks and never drops: when the queue is full it returns False and the
caller keeps the batch (the bridge's credit window makes this rare).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from norn.engine import limits
from norn.engine.errors import BoundError
from norn.engine.events import EVENT_SCHEMAS
from norn.engine.kinds import Schema


@dataclass(frozen=True)
class InputBatch:
    """A batch of events of one kind from one source, with its per-source sequence number.

    ``tick`` > 0 stamps the batch for that tick (applied there, or at the first tick after
    it arrives if it is late); 0 means "apply at the next tick".
    """

    source: str
    seq: int
    kind: str
    columns: dict[str, np.ndarray]
    tick: int = 0

    def __len__(self) -> int:
        return 0 if not self.columns else len(next(iter(self.columns.values())))


def check_batch(batch: InputBatch, schemas: Mapping[str, Schema] = EVENT_SCHEMAS) -> None:
    """Raise ValueError naming what is wrong; the edge calls this before offering.

    ``schemas``: the world's event kinds (``World.kinds.event_schemas``); protocol v1 by
    default.
    """
    if batch.kind not in schemas:
        raise ValueError(f"unknown event kind {batch.kind!r}")
    if not batch.source or len(batch.source.encode()) > limits.source_name_bytes_max:
        raise ValueError(
            f"source name must be 1..{limits.source_name_bytes_max} bytes, got {batch.source!r}"
        )
    if batch.seq < 0:
        raise ValueError(f"seq must be >= 0, got {batch.seq}")
    if batch.tick < 0:
        raise ValueError(f"tick stamp must be >= 0, got {batch.tick}")
    schema = schemas[batch.kind]
    names = [n for n, _ in schema]
    if sorted(batch.columns) != sorted(names):
        raise ValueError(f"{batch.kind}: columns {sorted(batch.columns)} != schema {names}")
    lengths = {len(c) for c in batch.columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"{batch.kind}: columns have different lengths {sorted(lengths)}")
    for name, dt in schema:
        col = batch.columns[name]
        if col.dtype != dt or col.ndim != 1:
            raise ValueError(
                f"{batch.kind}.{name}: dtype {col.dtype} ndim {col.ndim}, want {dt} 1-D"
            )
    if len(batch) > limits.batch_events_max:
        raise BoundError("batch_events_max", limits.batch_events_max, len(batch), batch.kind)


def _column_bytes(batch: InputBatch) -> int:
    return sum(c.nbytes for c in batch.columns.values())


class InputQueue:
    """Bounded multi-producer, single-consumer queue of input batches."""

    def __init__(
        self,
        batches_max: int = limits.input_batches_max,
        events_max: int = limits.input_events_max,
        schemas: Mapping[str, Schema] = EVENT_SCHEMAS,
    ) -> None:
        self.batches_max = batches_max
        self.events_max = events_max
        self.schemas = schemas  # a live view: a world's kinds grow until it is built
        self._lock = threading.Lock()
        self._batches: list[InputBatch] = []
        self._events = 0
        self.refused = 0  # offers refused because the queue was full (reported in metrics)

    def offer(self, batch: InputBatch) -> bool:
        """Queue ``batch`` without blocking. False when full: the caller keeps it."""
        check_batch(batch, self.schemas)
        with self._lock:
            if (
                len(self._batches) + 1 > self.batches_max
                or self._events + len(batch) > self.events_max
            ):
                self.refused += 1
                return False
            self._batches.append(batch)
            self._events += len(batch)
            return True

    def drain(self, tick: int | None = None,
              bytes_max: int | None = None) -> list[InputBatch]:
        """What is due at ``tick`` (None: everything), in canonical (source, seq) order.

        Per source, batches leave in seq order up to the first one stamped after ``tick``,
        or the first that would take the tick past ``bytes_max`` column bytes (default
        ``limits.tick_input_bytes_max``, so the tick's journal frame fits its bound; the
        first batch of a tick is always taken); that one and the rest of its source stay
        queued for a later tick. (A loop over batches, never over events.)
        """
        budget = limits.tick_input_bytes_max if bytes_max is None else bytes_max
        with self._lock:
            batches = sorted(self._batches, key=lambda b: (b.source, b.seq))
            if tick is None:
                due, keep = batches, []
            else:
                due, keep = [], []
                held: str | None = None
                taken = 0
                for b in batches:
                    nb = _column_bytes(b)
                    if b.source == held or b.tick > tick or (due and taken + nb > budget):
                        held = b.source
                        keep.append(b)
                    else:
                        due.append(b)
                        taken += nb
            self._batches = keep
            self._events = sum(len(b) for b in keep)
        return due

    def __len__(self) -> int:
        with self._lock:
            return len(self._batches)
