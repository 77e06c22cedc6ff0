"""A bounded ring of recent happenings, kept as a table, for a kind's run summary.

A kind that wants to say *what* happened (which boss died where, which festival reached
which stage), not only how often, declares a ``History``: a table of ``rows_max`` rows,
all spawned at build, overwritten oldest first. The write position lives in the table's
own ``seq`` column (the number of records ever written, in row 0), so the ring is state
like any table: snapshots, restores and the digest see it. Writing is vectorised: a batch
of n records takes the last ``rows_max`` of them, at positions ``seq .. seq + n - 1``
modulo the ring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from norn.engine.table import Column

if TYPE_CHECKING:
    from norn.engine.world import World


class History:
    """``record`` columns of int32 (tick, then the kind's own) in a ring of ``rows_max``."""

    def __init__(self, table: str, fields: tuple[str, ...], rows_max: int) -> None:
        if rows_max < 1:
            raise ValueError(f"{table}: a history needs at least one row")
        self.table = table
        self.fields = fields
        self.rows_max = rows_max

    def build(self, world: World) -> None:
        cols = [Column("seq", np.int64), Column("tick", np.int32)]
        cols += [Column(f, np.int32, (), -1) for f in self.fields]
        world.add_table(self.table, cols, self.rows_max).spawn(self.rows_max)

    def record(self, world: World, **values: np.ndarray) -> None:
        """Append one record per element of ``values`` (every field, same length)."""
        n = len(next(iter(values.values())))
        if not n:
            return
        t = world.tables[self.table]
        seq = int(t["seq"][0])
        keep = min(n, self.rows_max)
        at = (seq + n - keep + np.arange(keep)) % self.rows_max
        t["tick"][at] = world.tick
        for f in self.fields:
            t[f][at] = np.asarray(values[f])[n - keep:]
        t["seq"][0] = seq + n

    def recent(self, world: World) -> dict[str, np.ndarray]:
        """The records kept, oldest first (for summaries and tests)."""
        t = world.tables[self.table]
        seq = int(t["seq"][0])
        k = min(seq, self.rows_max)
        at = (seq - k + np.arange(k)) % self.rows_max
        out = {"tick": t["tick"][at].copy()}
        out.update({f: t[f][at].copy() for f in self.fields})
        return out
