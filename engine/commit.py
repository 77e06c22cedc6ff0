"""The one commit notice: what the world tells the outside once a tick is durable.

After a tick's journal frame is fsynced (or, in a run without a journal, once it has
stepped), the runner publishes one ``Committed`` to every subscriber (``World.subscribe``).
Everything that may only happen after durability follows from it and from nothing else:
the bridge acknowledges the inputs it carries (an acked event is never lost) and lets its
actions leave (an action a crash could undo, and a resumed run might redo differently,
never reaches a game server). One notice means one ordering to reason about and one path
to test: the load generator and the test harnesses publish the same notice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from norn.engine.actions import ActionBatch
from norn.engine.inputs import InputBatch


@dataclass(frozen=True)
class Committed:
    """Tick ``tick`` is durable: ``inputs`` (its journaled batches) may be acknowledged and
    ``actions`` (its numbered actions) may leave."""

    tick: int
    inputs: Sequence[InputBatch]
    actions: ActionBatch

    def durable_seqs(self) -> dict[str, int]:
        """The highest durable seq per source (acks are cumulative), sources in sorted order."""
        highest: dict[str, int] = {}
        for b in self.inputs:
            if b.seq > highest.get(b.source, -1):
                highest[b.source] = b.seq
        return {s: highest[s] for s in sorted(highest)}


#: A subscriber: called on the tick thread, so it must queue and return, never block.
CommitListener = Callable[[Committed], None]
