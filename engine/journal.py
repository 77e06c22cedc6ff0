"""Append-only journal of checksummed, chained frames; the record a run is replayed from.

The journal stores opaque frames (the engine encodes payloads with msgpack itself). Every
frame carries two CRC32C checksums so that a crash that tore the last write is told apart
from damage in the middle: the torn tail is truncated and the run continues, while
corruption in the middle is refused (JournalCorruptError with the byte offset), never
misread and never skipped, unless the reader is told to salvage.

File layout (all integers little-endian):

    offset 0   8 bytes   magic  b"NORNJRNL"
    offset 8   u16       FORMAT_VERSION (= 1)
    offset 10  frames, back to back, to the end of the file

One frame, starting at its frame offset F, with payload length N:

    F+0        u32       payload_len N (at most limits.journal_frame_bytes_max)
    F+4        u8        kind (0..255; KIND_* below)
    F+5        3 bytes   reserved, zero
    F+8        u32       header_crc = crc32c(bytes F+0 .. F+7)
    F+12       N bytes   payload
    F+12+N     u32       frame_crc = crc32c(bytes F+0 .. F+12+N-1, seeded with the previous
                         frame's frame_crc; the first frame's seed is crc32c(magic+version))
    F+16+N               next frame

The chain makes a frame valid only after the frames before it: a frame spliced in from
another journal, or reordered, fails its CRC. The separate header CRC exists so that a
flipped byte in a length field is refused as corruption instead of being mistaken for a
frame that runs past the end of the file (a torn tail).

Reading rules, at each frame offset F with R bytes left in the file:

    (a) R == 0: clean end.  0 < R < 12: torn tail.
    (b) header_crc wrong, or reserved bytes not zero: corruption at F; except that a tail
        of only zero bytes is a torn tail (a crash can leave the file size updated and the
        data blocks unwritten, which reads back as zeros; a real header is never all zero,
        since crc32c of eight zero bytes is not zero).
    (c) header good, payload_len above limits.journal_frame_bytes_max: corruption at F.
    (d) header good, frame runs past the end of the file: torn tail.
    (e) frame_crc wrong: torn tail if the frame ends exactly at the end of the file (the
        last write was torn), corruption at F if any bytes follow it.

Writes are buffered; ``commit`` writes the buffer and calls os.fsync at most once (group
commit: one sync per tick). A failed write or fsync raises EnvironmentFailure and the
writer refuses all further use: after a failed fsync the kernel may have dropped the dirty
pages, so retrying could report success for data that is gone.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import NamedTuple, Self

import crc32c

from norn.engine import clock, limits
from norn.engine.errors import (
    BoundError,
    EnvironmentFailure,
    JournalCorruptError,
    JournalError,
    JournalVersionError,
)

__all__ = [
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "KIND_END",
    "KIND_HEADER",
    "KIND_SNAPSHOT",
    "KIND_TICK",
    "MAGIC",
    "PREAMBLE_BYTES",
    "TRAILER_BYTES",
    "Frame",
    "JournalReader",
    "JournalWriter",
    "rewrite",
]

MAGIC = b"NORNJRNL"
FORMAT_VERSION = 1

KIND_HEADER = 1    # run header: versions, scenario, seed, config, environment fingerprint
KIND_TICK = 2      # one tick: inputs, decision results applied, state digest
KIND_SNAPSHOT = 3  # reference to a snapshot file written beside the journal
KIND_END = 4       # clean end of a run

_PREAMBLE = struct.Struct("<8sH")
_HEAD = struct.Struct("<IB3xI")    # payload_len, kind, reserved, header_crc
_HEAD_PREFIX = struct.Struct("<IB3x")
_CRC = struct.Struct("<I")
PREAMBLE_BYTES = _PREAMBLE.size    # 10
HEADER_BYTES = _HEAD.size          # 12
TRAILER_BYTES = _CRC.size          # 4
_CHAIN_SEED = crc32c.crc32c(_PREAMBLE.pack(MAGIC, FORMAT_VERSION))
_IOV_MAX = 512  # buffers per writev (the kernel's IOV_MAX is at least 1024)


class Frame(NamedTuple):
    """One journal frame: its byte offset in the file, its kind and its payload."""

    offset: int
    kind: int
    payload: bytes


def _encode_frame(kind: int, payload: bytes, prev_crc: int) -> tuple[bytes, bytes, int]:
    """Header and trailer bytes for one frame, and its frame_crc (the next chain seed)."""
    if not 0 <= kind <= 255:
        raise ValueError(f"journal frame kind must be in 0..255, got {kind}")
    if len(payload) > limits.journal_frame_bytes_max:
        raise BoundError(
            "journal_frame_bytes_max", limits.journal_frame_bytes_max, len(payload),
            "journal frame payload bytes",
        )
    prefix = _HEAD_PREFIX.pack(len(payload), kind)
    header = prefix + _CRC.pack(crc32c.crc32c(prefix))
    frame_crc = crc32c.crc32c(payload, value=crc32c.crc32c(header, value=prev_crc))
    return header, _CRC.pack(frame_crc), frame_crc


def _check_preamble(path: str, data: bytes) -> None:
    if len(data) < PREAMBLE_BYTES or data[:len(MAGIC)] != MAGIC:
        raise JournalError(f"{path}: not a Norn journal (bad magic or shorter than 10 bytes)")
    (_magic, version) = _PREAMBLE.unpack(data)
    if version != FORMAT_VERSION:
        raise JournalVersionError(
            f"{path}: journal format version {version}; this code reads version {FORMAT_VERSION}"
        )


class JournalReader:
    """Reads and verifies a journal's frames in order.

    After ``frames()`` is exhausted: ``torn_tail_bytes`` (bytes after the last good frame
    left by a torn write), ``end_offset`` (the offset just past the last good frame),
    ``chain_crc`` (the last good frame's frame_crc) and, with ``salvage=True``,
    ``salvaged_at`` (offset of the corrupt frame where reading stopped, else None).
    """

    def __init__(self, path: str | os.PathLike[str], *, salvage: bool = False) -> None:
        self.path = str(path)
        self.salvage = salvage
        self.torn_tail_bytes = 0
        self.salvaged_at: int | None = None
        self.end_offset = PREAMBLE_BYTES
        self.chain_crc = _CHAIN_SEED
        try:
            with open(self.path, "rb") as f:
                _check_preamble(self.path, f.read(PREAMBLE_BYTES))
        except FileNotFoundError:
            raise JournalError(f"{self.path}: no such journal") from None
        except IsADirectoryError:
            raise JournalError(f"{self.path}: is a directory, not a journal") from None

    def frames(self) -> Iterator[Frame]:
        """Yield every good frame; stop cleanly at a torn tail; raise on corruption."""
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= PREAMBLE_BYTES:
                _check_preamble(self.path, f.read(PREAMBLE_BYTES))
                self._mark_good(PREAMBLE_BYTES, _CHAIN_SEED)
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                _check_preamble(self.path, buf[:PREAMBLE_BYTES])
                yield from self._scan(buf, size)

    def _scan(self, buf: mmap.mmap, size: int) -> Iterator[Frame]:
        pos = PREAMBLE_BYTES
        prev = _CHAIN_SEED
        self._mark_good(pos, prev)
        while pos < size:
            left = size - pos
            if left < HEADER_BYTES:
                break  # (a) torn tail
            header = buf[pos:pos + HEADER_BYTES]
            payload_len, kind, header_crc = _HEAD.unpack(header)
            if header_crc != crc32c.crc32c(header[:8]) or header[5:8] != b"\0\0\0":
                if buf[pos:size].count(0) == left:
                    break  # (b) a zero-filled tail: the crash left the size, not the data
                self._refuse(pos, "frame header checksum mismatch or reserved bytes not zero")
                return
            if payload_len > limits.journal_frame_bytes_max:
                reason = (f"payload_len {payload_len} > journal_frame_bytes_max "
                          f"{limits.journal_frame_bytes_max}")
                self._refuse(pos, reason)  # (c)
                return
            end = pos + HEADER_BYTES + payload_len + TRAILER_BYTES
            if end > size:
                break  # (d) torn tail
            payload = buf[pos + HEADER_BYTES:end - TRAILER_BYTES]
            (frame_crc,) = _CRC.unpack(buf[end - TRAILER_BYTES:end])
            if frame_crc != crc32c.crc32c(payload, value=crc32c.crc32c(header, value=prev)):
                if end == size:
                    break  # (e) the last frame's write was torn
                self._refuse(pos, "frame checksum mismatch")
                return
            prev = frame_crc
            self._mark_good(end, prev)
            yield Frame(pos, kind, payload)
            pos = end
        self.torn_tail_bytes = size - pos

    def _mark_good(self, end: int, chain_crc: int) -> None:
        self.end_offset = end
        self.chain_crc = chain_crc
        self.torn_tail_bytes = 0

    def _refuse(self, offset: int, reason: str) -> None:
        """Raise on corruption; with salvage, record where reading stops instead."""
        if not self.salvage:
            raise JournalCorruptError(self.path, offset, reason)
        self.salvaged_at = offset


class JournalWriter:
    """Appends frames to a journal, continuing its CRC chain; use ``create`` or ``open_append``.

    ``frames_written`` and ``bytes_written`` count the frames and bytes this writer has
    appended (committed or still buffered); ``offset`` is where the next frame will start.
    ``syncs`` and ``sync_s`` count the fsyncs and the seconds spent in them (metrics only).
    """

    def __init__(self, path: str, fd: int, offset: int, chain_crc: int, fsync: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._fsync = fsync
        self._chain = chain_crc
        self._buffer: list[bytes] = []
        self._failed: str | None = None
        self._unsynced = False
        self.offset = offset
        self.frames_written = 0
        self.bytes_written = 0
        self.truncated_bytes = 0
        self.syncs = 0
        self.sync_s = 0.0

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, fsync: bool = True) -> JournalWriter:
        """Start a new journal at ``path``; refuses to overwrite an existing file."""
        p = str(path)
        preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise JournalError(f"{p}: already exists; refusing to overwrite a journal") from None
        except OSError as e:
            raise EnvironmentFailure(f"{p}: cannot create journal: {e}") from e
        writer = cls(p, fd, PREAMBLE_BYTES, _CHAIN_SEED, fsync)
        try:
            writer._write_all(preamble)
            writer._sync(directory=True)
        except BaseException:
            writer._close_fd()
            raise
        return writer

    @classmethod
    def open_append(cls, path: str | os.PathLike[str], *, fsync: bool = True) -> JournalWriter:
        """Open an existing journal to continue it: verify every frame, truncate a torn tail.

        Corruption in the middle raises JournalCorruptError; nothing is changed then.
        """
        reader = JournalReader(path)
        for _ in reader.frames():
            pass
        p = reader.path
        try:
            fd = os.open(p, os.O_WRONLY)
        except OSError as e:
            raise EnvironmentFailure(f"{p}: cannot open journal for append: {e}") from e
        writer = cls(p, fd, reader.end_offset, reader.chain_crc, fsync)
        writer.truncated_bytes = reader.torn_tail_bytes
        try:
            if reader.torn_tail_bytes:
                try:
                    os.ftruncate(fd, reader.end_offset)
                except OSError as e:
                    writer._fail(f"truncating torn tail failed: {e}")
                writer._unsynced = True
                writer._sync(directory=False)
            try:
                os.lseek(fd, reader.end_offset, os.SEEK_SET)
            except OSError as e:
                writer._fail(f"seek failed: {e}")
        except BaseException:
            writer._close_fd()
            raise
        return writer

    def append(self, kind: int, payload: bytes) -> int:
        """Buffer one frame and return its byte offset; durable only after ``commit``."""
        self._check_usable()
        payload = bytes(payload)  # a copy if mutable: the caller may reuse its buffer
        header, trailer, self._chain = _encode_frame(kind, payload, self._chain)
        self._buffer += (header, payload, trailer)
        frame_offset = self.offset
        size = len(header) + len(payload) + len(trailer)
        self.offset += size
        self.bytes_written += size
        self.frames_written += 1
        return frame_offset

    def commit(self) -> None:
        """Write buffered frames and make them durable with at most one fsync (group commit)."""
        self._check_usable()
        if self._buffer:
            parts = list(self._buffer)
            self._buffer.clear()
            self._write_parts(parts)  # gathered by the kernel: the frames are not joined
        self._sync(directory=False)

    def close(self) -> None:
        """Commit what is buffered, then close. A failed writer just closes its descriptor."""
        if self._fd is None:
            return
        try:
            if self._failed is None:
                self.commit()
        finally:
            self._close_fd()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit on a clean exit; after an exception drop the buffer, so no half work lands."""
        if exc_type is None:
            self.close()
        else:
            self._buffer.clear()
            self._close_fd()

    @property
    def failure(self) -> str | None:
        """Why this writer refuses further use (a failed write or fsync), None while usable."""
        return self._failed

    def same_file(self) -> bool:
        """Whether ``path`` still names the file this writer appends to (False once it is
        closed, or the path was deleted, moved or replaced: appends would go unseen)."""
        fd = self._fd
        if fd is None:
            return False
        try:
            mine, named = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise EnvironmentFailure(
                f"{self.path}: journal writer failed earlier ({self._failed}); not retried"
            )
        if self._fd is None:
            raise ValueError(f"{self.path}: journal writer is closed")

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            self._fail(f"write failed: {e}")
        self._unsynced = True

    def _write_parts(self, parts: list[bytes]) -> None:
        """``_write_all(b"".join(parts))`` without the copy (``os.writev``, short writes
        continued where they stopped)."""
        assert self._fd is not None
        views = [memoryview(p) for p in parts if len(p)]
        try:
            while views:
                n = os.writev(self._fd, views[:_IOV_MAX])
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
        except OSError as e:
            self._fail(f"write failed: {e}")
        self._unsynced = True

    def _sync(self, *, directory: bool) -> None:
        if not (self._fsync and self._unsynced):
            return
        assert self._fd is not None
        t0 = clock.monotonic()
        try:
            os.fsync(self._fd)
            if directory:
                dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as e:
            self._fail(f"fsync failed: {e}")
        self._unsynced = False
        self.syncs += 1
        self.sync_s += clock.monotonic() - t0

    def _fail(self, reason: str) -> None:
        self._failed = reason
        self._buffer.clear()
        raise EnvironmentFailure(f"{self.path}: {reason}; the journal writer is now unusable")

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def rewrite(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    transform: Callable[[Frame], bytes | None],
) -> int:
    """Copy journal ``src`` to a new journal ``dst``, replacing payloads, fresh checksums.

    ``transform`` returns a frame's new payload, or None to keep it as it is; kinds and
    order are kept. For tools and tests that alter a recorded run and still want a journal
    that reads. A torn tail in ``src`` is dropped. Returns the number of frames written.
    """
    reader = JournalReader(src)
    with JournalWriter.create(dst, fsync=False) as writer:
        for frame in reader.frames():
            new = transform(frame)
            writer.append(frame.kind, frame.payload if new is None else new)
        count = writer.frames_written
    return count

