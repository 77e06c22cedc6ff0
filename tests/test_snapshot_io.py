"""Snapshots: bit-exact round trips for every dtype and shape, corruption refused, atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from norn.engine import snapshot_io
from norn.engine.errors import EnvironmentFailure, SnapshotError
from norn.engine.snapshot_io import read_snapshot, write_snapshot

PADDED = np.dtype({
    "names": ["b", "a", "c"],
    "formats": [("<f8", (2,)), "<i4", np.dtype([("x", "u1"), ("y", "S3")])],
    "offsets": [0, 16, 20],
    "itemsize": 32,
})


def _raw(a: np.ndarray) -> bytes:
    """An array's exact C-order bytes, padding included (numpy copies drop padding)."""
    if a.dtype.itemsize == 0 or a.size == 0:
        return b""
    if not a.flags.c_contiguous:
        a = np.array(a.view(np.dtype((np.void, a.dtype.itemsize))), order="C")
    return a.reshape(-1).view(np.uint8).tobytes()


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, a in want.items():
        b = got[name]
        assert b.dtype == a.dtype, name
        assert b.shape == a.shape, name
        assert _raw(b) == _raw(a), name


def _world() -> dict[str, np.ndarray]:
    padded = np.zeros(3, PADDED)
    raw = padded.view(np.uint8)
    raw[:] = np.arange(raw.size, dtype=np.uint8)  # padding bytes too
    return {
        "npc/x": np.linspace(0.0, 1.0, 7, dtype=np.float32),
        "npc/zeny": np.array([0, -(2**31), 2**31 - 1], dtype=np.int32),
        "npc/alive": np.array([True, False, True]),
        "grid/cost": np.arange(12, dtype=np.uint16).reshape(3, 4),
        "grid/fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "grid/strided": np.arange(20, dtype=np.float64)[::3],
        "big_endian": np.array([1, 2, 3], dtype=">i4"),
        "nan": np.array([np.nan, -0.0, np.inf], dtype=np.float64),
        "complex": np.array([1 + 2j], dtype=np.complex128),
        "names": np.array([b"prontera", b"geffen", b""], dtype="S11"),
        "text": np.array(["héllo", ""], dtype="U5"),
        "msg/out": padded,
        "msg/strided": padded[::2],
        "scalar": np.array(42, dtype=np.uint64),
        "empty": np.zeros(0, dtype=np.float64),
        "empty2d": np.zeros((0, 3), dtype=np.int8),
        "empty_struct": np.zeros(0, dtype=PADDED),
        "tick_ms": np.array([100], dtype=np.int64),
    }


META = {"tick": 1200, "seed": 7, "tables": ["npc", "grid"], "blob": b"\x00\xff", 3: None}


@pytest.mark.parametrize("mmap", [False, True])
def test_roundtrip_every_kind_of_array(tmp_path: Path, mmap: bool) -> None:
    path = tmp_path / "w.snap"
    arrays = _world()
    write_snapshot(path, arrays, META)
    got, meta = read_snapshot(path, mmap=mmap)
    _assert_same(got, arrays)
    assert meta == META
    for a in got.values():
        assert a.flags.writeable is (not mmap)
        assert a.flags.c_contiguous
    if not mmap:
        got["npc/x"][0] = 5.0  # restored state is mutable
    else:
        with pytest.raises(ValueError):
            got["npc/x"][0] = 5.0


def test_write_is_deterministic_and_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "w.snap"
    write_snapshot(path, _world(), META)
    first = path.read_bytes()
    write_snapshot(path, {"only": np.arange(3)}, {})
    got, meta = read_snapshot(path)
    assert list(got) == ["only"] and meta == {}
    write_snapshot(path, _world(), META)
    assert path.read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["w.snap"]


_DTYPES = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="=")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?")
    | hnp.complex_number_dtypes()
    | hnp.byte_string_dtypes(max_len=8)
    | hnp.array_dtypes(
        hnp.integer_dtypes() | hnp.floating_dtypes() | hnp.byte_string_dtypes(max_len=4),
        min_size=1, max_size=4,
    )
)


@settings(max_examples=80, deadline=None)
@given(
    arrays=st.dictionaries(
        st.text(min_size=1, max_size=12),
        hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)),
        max_size=4,
    ),
    tick=st.integers(0, 2**32),
)
def test_roundtrip_random_arrays(arrays: dict[str, np.ndarray], tick: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s"
        write_snapshot(path, arrays, {"tick": tick})
        for mmap in (False, True):
            got, meta = read_snapshot(path, mmap=mmap)
            _assert_same(got, arrays)
            assert meta == {"tick": tick}


def test_flipped_data_byte_names_the_array(tmp_path: Path) -> None:
    path = tmp_path / "s"
    marker = np.frombuffer(b"NORN-MARKER-BYTES-" * 4, dtype=np.uint8)
    write_snapshot(path, {"a": np.arange(4), "npc/needs": marker}, {})
    data = bytearray(path.read_bytes())
    at = bytes(data).index(marker.tobytes())
    data[at + 5] ^= 0x01
    path.write_bytes(data)
    for mmap in (False, True):
        with pytest.raises(SnapshotError, match="'npc/needs' checksum mismatch"):
            read_snapshot(path, mmap=mmap)


def test_any_flipped_byte_is_refused_or_harmless(tmp_path: Path) -> None:
    """Flip every byte of a small snapshot: each read either fails loudly or is exact.

    Some bytes are padding, or the schema copy Arrow keeps at the start of the file (it
    reads the footer's); flipping those changes nothing, which is fine. Misreading is not.
    """
    src = tmp_path / "src"
    arrays = {
        "npc/x": np.array([1.5, -2.25], dtype=np.float32),
        "msg": np.zeros(1, dtype=PADDED),
        "flags": np.array([[True, False]]),
    }
    write_snapshot(src, arrays, {"tick": 3})
    data = src.read_bytes()
    path = tmp_path / "flip"
    refused = 0
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0x20
        path.write_bytes(damaged)
        try:
            got, meta = read_snapshot(path)
        except SnapshotError:
            refused += 1
            continue
        _assert_same(got, arrays)
        assert meta == {"tick": 3}
    assert refused > len(data) // 2


def test_missing_not_a_snapshot_and_other_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SnapshotError, match="no such snapshot"):
        read_snapshot(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"not arrow at all" * 10)
    with pytest.raises(SnapshotError, match="not a Norn snapshot"):
        read_snapshot(tmp_path / "junk")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(SnapshotError):
        read_snapshot(tmp_path / "empty")
    plain = pa.table({"x": [1, 2]})
    with pa.OSFile(str(tmp_path / "plain"), "wb") as f, pa.ipc.new_file(f, plain.schema) as w:
        w.write_table(plain)
    with pytest.raises(SnapshotError, match="no Norn metadata"):
        read_snapshot(tmp_path / "plain")
    monkeypatch.setattr(snapshot_io, "FORMAT_VERSION", 2)
    write_snapshot(tmp_path / "v2", {"a": np.arange(3)}, {})
    monkeypatch.undo()
    with pytest.raises(SnapshotError, match="version 2; this code reads version 1"):
        read_snapshot(tmp_path / "v2")


def test_refuses_object_arrays_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="object"):
        write_snapshot(tmp_path / "s", {"o": np.array([None, 1], dtype=object)}, {})
    with pytest.raises(ValueError):
        write_snapshot(tmp_path / "s", {"": np.arange(2)}, {})
    with pytest.raises(TypeError):
        write_snapshot(tmp_path / "s", {"l": [1, 2]}, {})  # type: ignore[dict-item]
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_old_snapshot_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.snap"
    write_snapshot(path, {"old": np.arange(3)}, {"tick": 1})
    before = path.read_bytes()

    real_write_batch = pa.ipc.RecordBatchFileWriter.write_batch

    def failing_write_batch(self, batch, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_write_batch(self, batch, *args, **kwargs)  # bytes reach the temp file...
        raise OSError(28, "No space left on device")  # ...then the disk fills up

    monkeypatch.setattr(pa.ipc.RecordBatchFileWriter, "write_batch", failing_write_batch)
    with pytest.raises(EnvironmentFailure, match="No space left"):
        write_snapshot(path, _world(), {"tick": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.snap"]

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(EnvironmentFailure, match="Input/output error"):
        write_snapshot(tmp_path / "new.snap", _world(), {})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["w.snap"]
    got, meta = read_snapshot(path)
    assert meta == {"tick": 1} and got["old"].tolist() == [0, 1, 2]
