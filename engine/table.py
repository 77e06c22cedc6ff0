"""Structure-of-arrays tables: one per actor kind, named numpy columns of fixed dtype.

Rows are slots in ``[0, capacity)``. An entity is named by a handle, ``generation << 32 |
slot``: when a slot is freed its generation is bumped, so a handle kept past a despawn is
detected as stale instead of silently reading the slot's next occupant.

Spawns reserve the lowest free slots at once (so the spawning system knows the new
handles and can emit actions for them) and become alive at the tick's sync point;
despawns are queued and applied there too. Lowest-free-first makes slot assignment a pure
function of the table's history, never of timing or of Python object identity.

Capacity is rounded up to a whole number of digest chunks so every chunk has the same
byte length (see ``engine.digest``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from norn.engine import limits
from norn.engine.errors import BoundError, DefinitionError, NornBug, SnapshotError, StaleEntityError

SLOT_BITS = 32
SLOT_MASK = (1 << SLOT_BITS) - 1


@dataclass(frozen=True)
class Column:
    """A column's declaration: name, dtype, per-row shape (``()`` for scalars), fill value."""

    name: str
    dtype: np.dtype | type
    shape: tuple[int, ...] = ()
    fill: object = 0


@numba.njit(cache=True, nogil=True)
def _all_alive_first_generation(alive: np.ndarray, generation: np.ndarray, stop: int) -> bool:
    """Slots [0, stop) are all alive and none was ever reused (generation 0)."""
    ok = True
    for d in range(stop):
        ok &= alive[d] & (generation[d] == 0)
    return ok


def make_handles(slots: np.ndarray, generations: np.ndarray) -> np.ndarray:
    return (generations.astype(np.int64) << SLOT_BITS) | slots.astype(np.int64)


def handle_slots(handles: np.ndarray) -> np.ndarray:
    return (np.asarray(handles, dtype=np.int64) & SLOT_MASK).astype(np.int64)


class Table:
    """Columns of one actor kind plus liveness, generations and the spawn/despawn queues."""

    RESERVED = ("alive", "generation")

    def __init__(self, name: str, columns: list[Column], capacity: int, chunk_rows: int) -> None:
        if capacity < 1 or capacity > limits.table_capacity_max:
            raise BoundError("table_capacity_max", limits.table_capacity_max, capacity, name)
        if chunk_rows < 8 or chunk_rows % 8:
            raise ValueError(f"chunk_rows must be a positive multiple of 8, got {chunk_rows}")
        self.name = name
        self.chunk_rows = chunk_rows
        self.capacity = -(-capacity // chunk_rows) * chunk_rows
        self.declared_capacity = capacity
        self.specs: dict[str, Column] = {}
        self.columns: dict[str, np.ndarray] = {}
        self.add_column(Column("alive", np.bool_, (), False))
        self.add_column(Column("generation", np.uint32, (), 0))
        for col in columns:
            if col.name in self.RESERVED:
                raise DefinitionError(f"{name}: column name {col.name!r} is reserved")
            self.add_column(col)
        self.hwm = 0  # slots in [0, hwm) have ever been used; kernels iterate this prefix
        self._reserved = np.zeros(self.capacity, dtype=np.bool_)
        self._spawning: list[np.ndarray] = []
        self._despawning: list[np.ndarray] = []
        self.dirty_rows: list[tuple[int, int]] = []  # (start, stop) written outside systems
        # Bumped whenever alive or generation may have changed: sync with spawns or
        # despawns, restore_arrays, a system declaring writes to them (World.after_system).
        self.churn = 0
        self._fresh = (-1, 0, 0)  # (churn, fresh below this, not fresh at or above this)

    def add_column(self, col: Column) -> None:
        if col.name in self.columns:
            raise DefinitionError(f"{self.name}: duplicate column {col.name!r}")
        arr = np.empty((self.capacity, *col.shape), dtype=col.dtype)
        arr[...] = col.fill
        self.specs[col.name] = col
        self.columns[col.name] = arr

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def alive(self) -> np.ndarray:
        return self.columns["alive"]

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.columns["alive"][: self.hwm]))

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.columns["alive"][: self.hwm])

    # -- spawn and despawn ------------------------------------------------------------
    def spawn(self, n: int, **values: np.ndarray) -> np.ndarray:
        """Reserve ``n`` lowest free slots, write their initial ``values``; return handles.

        The rows become alive at the next sync point of the tick.
        """
        if n < 0:
            raise ValueError("spawn count must be >= 0")
        if n == 0:
            return np.empty(0, dtype=np.int64)
        unknown = set(values) - set(self.specs)
        if unknown:
            raise ValueError(f"{self.name}: spawn got unknown columns {sorted(unknown)}")
        pending = sum(len(s) for s in self._spawning)
        if pending + n > limits.spawns_per_tick_max:
            raise BoundError(
                "spawns_per_tick_max", limits.spawns_per_tick_max, pending + n, self.name
            )
        alive = self.columns["alive"]
        free_inside = np.flatnonzero(~alive[: self.hwm] & ~self._reserved[: self.hwm])
        take = free_inside[:n]
        extra = n - len(take)
        if extra:
            if self.hwm + extra > self.declared_capacity:
                raise BoundError(
                    "capacity", self.declared_capacity, self.count + pending + n, self.name
                )
            take = np.concatenate([take, np.arange(self.hwm, self.hwm + extra)])
            self.hwm += extra
        slots = take.astype(np.int64)
        self._reserved[slots] = True
        for name, spec in self.specs.items():
            if name in self.RESERVED:
                continue
            col = self.columns[name]
            col[slots] = values.get(name, spec.fill)
        self._spawning.append(slots)
        self._mark_rows(slots)
        return make_handles(slots, self.columns["generation"][slots])

    def despawn(self, handles: np.ndarray) -> None:
        """Queue live entities for removal at the sync point; stale handles are an error."""
        slots = self.resolve(handles)
        self._despawning.append(slots)

    def sync(self) -> tuple[int, int]:
        """Apply queued spawns and despawns (the tick's fixed sync point)."""
        alive = self.columns["alive"]
        gen = self.columns["generation"]
        spawned = despawned = 0
        if self._spawning:
            slots = np.concatenate(self._spawning)
            alive[slots] = True
            self._reserved[slots] = False
            self._spawning.clear()
            spawned = len(slots)
            self.churn += 1
        if self._despawning:
            slots = np.unique(np.concatenate(self._despawning))
            alive[slots] = False
            gen[slots] += np.uint32(1)
            self._despawning.clear()
            self._mark_rows(slots)
            despawned = len(slots)
            self.churn += 1
        return spawned, despawned

    def all_fresh(self, stop: int) -> bool:
        """Slots [0, stop) are all alive and none was ever reused (generation 0).

        Remembered until ``churn`` changes (issue 16: the check reads 5 MB at 1M rows, and
        a channel's delivery asks it every tick): an answer for one ``stop`` also answers
        smaller stops (True) or larger ones (False) without reading.
        """
        churn, yes, no = self._fresh
        if churn != self.churn:
            yes, no = 0, self.capacity + 1
        if stop <= yes:
            return True
        if stop >= no:
            return False
        ok = bool(_all_alive_first_generation(self.columns["alive"], self.columns["generation"],
                                              stop))
        if ok:
            yes = stop
        else:
            no = stop
        self._fresh = (self.churn, yes, no)
        return ok

    def reserved_slots(self) -> np.ndarray:
        """Slots spawned this tick that become alive at the sync point, in spawn order."""
        if not self._spawning:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self._spawning)

    def has_pending(self) -> bool:
        return bool(self._spawning or self._despawning)

    # -- handles ----------------------------------------------------------------------
    def handles(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        return make_handles(slots, self.columns["generation"][slots])

    def resolve(self, handles: np.ndarray) -> np.ndarray:
        """Slots of live (or spawning) entities; raises StaleEntityError naming the bad handle."""
        handles = np.atleast_1d(np.asarray(handles, dtype=np.int64))
        slots = handles & SLOT_MASK
        gens = handles >> SLOT_BITS
        in_range = (slots >= 0) & (slots < self.hwm)
        ok = in_range.copy()
        idx = slots[in_range]
        ok[in_range] = (self.columns["alive"][idx] | self._reserved[idx]) & (
            self.columns["generation"][idx].astype(np.int64) == gens[in_range]
        )
        if not ok.all():
            bad = int(handles[np.flatnonzero(~ok)[0]])
            raise StaleEntityError(
                f"{self.name}: stale or unknown entity handle {bad} "
                f"(slot {bad & SLOT_MASK}, generation {bad >> SLOT_BITS})"
            )
        return slots

    def is_current(self, handles: np.ndarray) -> np.ndarray:
        """Vectorized liveness check without raising: True where the handle is current."""
        handles = np.asarray(handles, dtype=np.int64)
        slots = handles & SLOT_MASK
        gens = handles >> SLOT_BITS
        ok = (slots >= 0) & (slots < self.hwm)
        idx = np.where(ok, slots, 0)
        return (
            ok
            & self.columns["alive"][idx]
            & (self.columns["generation"][idx].astype(np.int64) == gens)
        )

    # -- dirty tracking for the digest --------------------------------------------------
    def _mark_rows(self, slots: np.ndarray) -> None:
        if len(slots):
            self.dirty_rows.append((int(slots.min()), int(slots.max()) + 1))

    def used_chunks(self) -> int:
        return -(-self.hwm // self.chunk_rows)

    # -- snapshot ---------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        if self.has_pending():
            raise NornBug(f"{self.name}: snapshot with pending spawns/despawns")
        return dict(self.columns)

    def restore_arrays(self, arrays: dict[str, np.ndarray], hwm: int) -> None:
        for name, arr in arrays.items():
            if name not in self.columns:
                raise SnapshotError(f"{self.name}: snapshot has unknown column {name!r}")
            dst = self.columns[name]
            if dst.shape != arr.shape or dst.dtype != arr.dtype:
                raise SnapshotError(f"{self.name}.{name}: snapshot shape/dtype mismatch")
            dst[...] = arr
        self.hwm = hwm
        self._reserved[:] = False
        self.churn += 1
