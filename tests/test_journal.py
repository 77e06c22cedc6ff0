"""The journal: round trips, torn tails truncated, corruption refused at its frame's offset."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from norn.engine import journal, limits
from norn.engine.errors import (
    BoundError,
    EnvironmentFailure,
    JournalCorruptError,
    JournalError,
    JournalVersionError,
)
from norn.engine.journal import Frame, JournalReader, JournalWriter

FRAMES = [
    (journal.KIND_HEADER, b"header: seed=7"),
    (journal.KIND_TICK, b"tick 1 inputs"),
    (journal.KIND_TICK, b"tick 2 inputs"),
]


def _write(path: Path, frames: list[tuple[int, bytes]], **kw: bool) -> list[int]:
    with JournalWriter.create(path, fsync=False, **kw) as w:
        offsets = [w.append(kind, payload) for kind, payload in frames]
    return offsets


def _read(path: Path, **kw: bool) -> tuple[list[Frame], JournalReader]:
    reader = JournalReader(path, **kw)
    return list(reader.frames()), reader


def test_roundtrip_and_byte_layout(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with JournalWriter.create(path) as w:  # real fsyncs
        offsets = [w.append(kind, payload) for kind, payload in FRAMES]
        w.commit()
        assert w.frames_written == 3
        assert w.bytes_written == sum(16 + len(p) for _, p in FRAMES)
    frames, reader = _read(path)
    assert frames == [Frame(o, k, p) for o, (k, p) in zip(offsets, FRAMES, strict=True)]
    assert reader.torn_tail_bytes == 0
    assert reader.end_offset == path.stat().st_size
    data = path.read_bytes()
    assert data[:10] == b"NORNJRNL" + struct.pack("<H", 1)
    assert offsets[0] == 10
    # First frame, byte by byte, as the module docstring describes it.
    kind, payload = FRAMES[0]
    head8 = struct.pack("<IB3x", len(payload), kind)
    header = head8 + struct.pack("<I", crc32c.crc32c(head8))
    assert data[10:22] == header
    assert data[22:22 + len(payload)] == payload
    chained = crc32c.crc32c(header + payload, value=crc32c.crc32c(data[:10]))
    assert data[22 + len(payload):26 + len(payload)] == struct.pack("<I", chained)
    assert offsets[1] == 26 + len(payload)


def test_empty_journal_reads_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _write(path, [])
    assert path.stat().st_size == 10
    frames, reader = _read(path)
    assert frames == [] and reader.torn_tail_bytes == 0


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _write(path, FRAMES)
    before = path.read_bytes()
    with pytest.raises(JournalError, match="already exists"):
        JournalWriter.create(path)
    assert path.read_bytes() == before


def test_truncation_at_every_offset_of_last_frame_recovers(tmp_path: Path) -> None:
    src = tmp_path / "full"
    offsets = _write(src, FRAMES)
    data = src.read_bytes()
    last = offsets[-1]
    expected = [Frame(o, k, p) for o, (k, p) in zip(offsets[:-1], FRAMES[:-1], strict=True)]
    for cut in range(last, len(data)):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        frames, reader = _read(path)
        assert frames == expected, cut
        assert reader.torn_tail_bytes == cut - last, cut
        with JournalWriter.open_append(path, fsync=False) as w:
            assert w.truncated_bytes == cut - last
            assert w.append(journal.KIND_END, b"resumed") == last
        frames, reader = _read(path)
        assert frames == [*expected, Frame(last, journal.KIND_END, b"resumed")], cut
        assert reader.torn_tail_bytes == 0


def test_flipping_any_byte_of_a_middle_frame_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "full"
    offsets = _write(src, FRAMES)
    data = src.read_bytes()
    middle, after = offsets[1], offsets[2]
    for pos in range(middle, after):
        path = tmp_path / f"flip{pos}"
        damaged = bytearray(data)
        damaged[pos] ^= 0xFF
        path.write_bytes(damaged)
        with pytest.raises(JournalCorruptError) as info:
            _read(path)
        assert info.value.offset == middle, pos
        # Appending to a corrupt journal is refused too, and changes nothing.
        with pytest.raises(JournalCorruptError):
            JournalWriter.open_append(path, fsync=False)
        assert path.read_bytes() == bytes(damaged)
        # Salvage stops at the last good frame instead.
        frames, reader = _read(path, salvage=True)
        assert frames == [Frame(offsets[0], *FRAMES[0])]
        assert reader.salvaged_at == middle


def test_last_frame_damage_header_refused_payload_torn(tmp_path: Path) -> None:
    """Rule (b) holds for the last frame too; rule (e) makes a bad last payload a torn tail."""
    src = tmp_path / "full"
    offsets = _write(src, FRAMES)
    data = bytearray(src.read_bytes())
    header_hit = bytearray(data)
    header_hit[offsets[2]] ^= 0x01  # payload_len of the last frame
    (tmp_path / "h").write_bytes(header_hit)
    with pytest.raises(JournalCorruptError) as info:
        _read(tmp_path / "h")
    assert info.value.offset == offsets[2]
    data[offsets[2] + 14] ^= 0x01  # a payload byte of the last frame
    (tmp_path / "p").write_bytes(data)
    frames, reader = _read(tmp_path / "p")
    assert len(frames) == 2 and reader.torn_tail_bytes == len(data) - offsets[2]


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _write(path, FRAMES)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(bytes(4096))
    frames, reader = _read(path)
    assert len(frames) == 3 and reader.torn_tail_bytes == 4096
    with JournalWriter.open_append(path, fsync=False) as w:
        assert w.truncated_bytes == 4096
    assert path.stat().st_size == size


def test_bad_magic_other_version_short_missing(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _write(path, FRAMES)
    data = path.read_bytes()
    (tmp_path / "magic").write_bytes(b"NORNJRNX" + data[8:])
    with pytest.raises(JournalError, match="not a Norn journal"):
        JournalReader(tmp_path / "magic")
    (tmp_path / "v2").write_bytes(data[:8] + struct.pack("<H", 2) + data[10:])
    with pytest.raises(JournalVersionError, match=r"version 2.*version 1"):
        JournalReader(tmp_path / "v2")
    with pytest.raises(JournalVersionError):
        JournalWriter.open_append(tmp_path / "v2")
    (tmp_path / "short").write_bytes(data[:5])
    with pytest.raises(JournalError, match="not a Norn journal"):
        JournalReader(tmp_path / "short")
    with pytest.raises(JournalError, match="no such journal"):
        JournalReader(tmp_path / "missing")


def test_fsync_failure_is_fatal_and_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    w = JournalWriter.create(path)  # real fsync of the preamble and directory
    calls: list[int] = []

    def counting_fsync(fd: int) -> None:
        calls.append(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    w.append(journal.KIND_TICK, b"a")
    w.append(journal.KIND_TICK, b"b")
    w.commit()
    assert len(calls) == 1  # group commit: one sync for both frames
    w.commit()
    assert len(calls) == 1  # nothing new: no sync

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    w.append(journal.KIND_TICK, b"c")
    with pytest.raises(EnvironmentFailure, match="fsync failed"):
        w.commit()
    assert len(calls) == 2
    with pytest.raises(EnvironmentFailure, match="not retried"):
        w.commit()
    with pytest.raises(EnvironmentFailure):
        w.append(journal.KIND_TICK, b"d")
    assert len(calls) == 2  # never retried
    w.close()
    monkeypatch.undo()
    frames, _ = _read(path)
    assert [f.payload for f in frames][:2] == [b"a", b"b"]


def test_frame_bound_exactly_max_and_one_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "journal_frame_bytes_max", 64)
    path = tmp_path / "j"
    with JournalWriter.create(path, fsync=False) as w:
        w.append(journal.KIND_TICK, bytes(64))
        with pytest.raises(BoundError) as info:
            w.append(journal.KIND_TICK, bytes(65))
        assert info.value.name == "journal_frame_bytes_max"
        assert (info.value.limit, info.value.requested) == (64, 65)
        w.append(journal.KIND_TICK, b"after")
    frames, _ = _read(path)
    assert [len(f.payload) for f in frames] == [64, 5]
    # Paired on the read side: a frame above the bound is refused as corruption.
    monkeypatch.setattr(limits, "journal_frame_bytes_max", 63)
    with pytest.raises(JournalCorruptError, match="journal_frame_bytes_max") as err:
        _read(path)
    assert err.value.offset == 10


def test_kind_must_fit_a_byte(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path / "j", fsync=False) as w:
        w.append(0, b"")
        w.append(255, b"")
        for bad in (-1, 256):
            with pytest.raises(ValueError):
                w.append(bad, b"")
    assert [f.kind for f in JournalReader(tmp_path / "j").frames()] == [0, 255]


def test_exception_in_context_drops_uncommitted_frames(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with pytest.raises(RuntimeError), JournalWriter.create(path, fsync=False) as w:
        w.append(journal.KIND_TICK, b"committed")
        w.commit()
        w.append(journal.KIND_TICK, b"not committed")
        raise RuntimeError("bug mid-tick")
    assert [f.payload for f in JournalReader(path).frames()] == [b"committed"]


def test_open_append_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "j"
    _write(path, FRAMES[:2])
    with JournalWriter.open_append(path, fsync=False) as w:
        assert w.truncated_bytes == 0
        w.append(*FRAMES[2])
    one_go = tmp_path / "k"
    _write(one_go, FRAMES)
    assert path.read_bytes() == one_go.read_bytes()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=64)), max_size=20))
def test_roundtrip_random_frames(frames: list[tuple[int, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j"
        offsets = _write(path, frames)
        got, reader = _read(path)
        assert got == [Frame(o, k, p) for o, (k, p) in zip(offsets, frames, strict=True)]
        assert reader.end_offset == path.stat().st_size


def test_rewrite_changes_only_transformed_frames(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _write(src, FRAMES)

    def transform(frame: Frame) -> bytes | None:
        return b"tick 2 ALTERED input" if frame.payload == b"tick 2 inputs" else None

    assert journal.rewrite(src, dst, transform) == 3
    old, _ = _read(src)
    new, reader = _read(dst)
    assert reader.torn_tail_bytes == 0
    assert [(f.kind, f.payload) for f in new[:2]] == [(f.kind, f.payload) for f in old[:2]]
    assert (new[2].kind, new[2].payload) == (journal.KIND_TICK, b"tick 2 ALTERED input")
    assert dst.read_bytes()[: old[2].offset] == src.read_bytes()[: old[2].offset]
    # Identity rewrite reproduces the file byte for byte.
    journal.rewrite(src, tmp_path / "same", lambda f: None)
    assert (tmp_path / "same").read_bytes() == src.read_bytes()
