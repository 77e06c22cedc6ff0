"""Systems that mark their own writes: exactly the chunks they wrote are rehashed.

A system registered with ``marks_own_writes`` marks rows (``World.mark_rows``) or chunks
(``World.chunk_mask``, filled by a numba kernel) instead of having every declared column
marked over ``[0, hwm)``. The tick digests must equal those of the same system marked
whole (the digest is of content; marking only chooses what is recomputed), the rehash
must cover only the marked chunks, and synctest must name a column written outside the
rows its system marked (the canary), which a plain step cannot see.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from norn.engine.errors import NornBug
from norn.engine.runner import start, synctest_step
from norn.engine.table import Column
from norn.engine.tick import step
from norn.engine.world import World

CHUNK = 8
ROWS = 64  # 8 chunks
TICKS = 12


def _block(tick: int) -> tuple[int, int]:
    """The rows a tick writes: one chunk-aligned block, moving through the table."""
    lo = (tick % (ROWS // CHUNK)) * CHUNK
    return lo, lo + CHUNK


@numba.njit(cache=True, nogil=True)
def _write_kernel(v, w, mask, lo, hi, tick, chunk_rows):
    """Write rows [lo, hi) and mark their chunks, as an NPC kernel would per update block."""
    for i in range(lo, hi):
        v[i] += tick
        w[i] = v[i] * 2
        mask[i // chunk_rows] = True


def _by_rows(world: World) -> None:
    t = world.tables["cell"]
    lo, hi = _block(world.tick)
    t["v"][lo:hi] += world.tick
    t["w"][lo:hi] = t["v"][lo:hi] * 2
    world.mark_rows("cell", lo, hi)


def _by_kernel(world: World) -> None:
    t = world.tables["cell"]
    lo, hi = _block(world.tick)
    _write_kernel(t["v"], t["w"], world.chunk_mask("cell"), lo, hi, world.tick, world.chunk_rows)


def _by_columns(world: World) -> None:
    t = world.tables["cell"]
    lo, hi = _block(world.tick)
    t["v"][lo:hi] += world.tick
    world.mark_rows("cell", lo, hi, columns=("v",))
    t["w"][lo:hi] = t["v"][lo:hi] * 2
    world.mark_rows("cell", lo, hi, columns=("w",))


def _off_by_one_chunk(world: World) -> None:
    """The canary: writes its block but marks the chunk before it."""
    t = world.tables["cell"]
    lo, hi = _block(world.tick)
    t["v"][lo:hi] += world.tick
    t["w"][lo:hi] = t["v"][lo:hi] * 2
    world.mark_rows("cell", (lo - CHUNK) % ROWS, (lo - CHUNK) % ROWS + CHUNK)


def _world(fn, *, marks: bool, seen: list | None = None) -> World:
    world = World(5, chunk_rows=CHUNK)
    world.add_table("cell", [Column("v", np.int64), Column("w", np.int64)], ROWS)
    world.tables["cell"].spawn(ROWS, v=np.arange(ROWS, dtype=np.int64))
    world.add_system("test.write", "act", fn, writes=("cell.v", "cell.w"),
                     marks_own_writes=marks)
    if seen is not None:  # what commit will rehash, seen just before it does
        world.add_system("test.look", "commit",
                         lambda w: seen.append(np.flatnonzero(w.digest.region("cell.v").dirty)))
    world.build()
    start(world)
    return world


def _digests(world: World) -> list[int]:
    return [step(world).digest for _ in range(TICKS)]


@pytest.mark.parametrize("fn", [_by_rows, _by_kernel, _by_columns])
def test_marked_rows_give_the_digests_of_whole_columns_and_rehash_only_their_chunks(fn):
    seen_whole: list = []
    seen_own: list = []
    whole = _digests(_world(fn, marks=False, seen=seen_whole))
    own_world = _world(fn, marks=True, seen=seen_own)
    assert _digests(own_world) == whole
    assert own_world.digest.full_check() == []
    for tick, (w, o) in enumerate(zip(seen_whole, seen_own, strict=True), start=1):
        assert w.tolist() == list(range(ROWS // CHUNK))  # marked whole: every chunk
        assert o.tolist() == [_block(tick)[0] // CHUNK]  # marked own: its one chunk


def test_the_printed_schedule_says_who_marks_its_own_writes():
    text = _world(_by_rows, marks=True).schedule.describe()
    assert "  test.write [test]\n    writes: cell.v, cell.w\n    marks:  its own written rows\n" \
        in text


def test_synctest_names_a_column_written_outside_the_rows_its_system_marked():
    world = _world(_off_by_one_chunk, marks=True)
    with pytest.raises(NornBug) as err:
        synctest_step(world)
    msg = str(err.value)
    assert "cell.v (declared written by test.write)" in msg
    assert "cell.w (declared written by test.write)" in msg
    assert err.value.tick == 1 and err.value.system == "synctest"
    # the plain step cannot see it: its digest simply misses the write (why synctest exists)
    world = _world(_off_by_one_chunk, marks=True)
    step(world)
    assert world.digest.full_check() == ["cell.v", "cell.w"]


def test_mark_rows_checks_its_table_range_and_columns():
    world = _world(_by_rows, marks=True)
    with pytest.raises(ValueError, match="outside"):
        world.mark_rows("cell", 0, ROWS + 1)
    with pytest.raises(ValueError, match="no column 'z'"):
        world.mark_rows("cell", 0, 1, columns=("z",))
    assert len(world.chunk_mask("cell")) == ROWS // CHUNK
