"""Dead-letter store: every rejected frame or event, with its raw bytes and the reason.

Invalid input is never silently dropped (STYLE habit 5): the peer gets an error frame and
the store keeps what was refused so an operator can see what a map server sent. Two
backends, chosen by the path's suffix:

- ``*.duckdb`` / ``*.db``: a DuckDB table ``dead_letter`` (query it with SQL next to the
  run's other tables). Records are buffered and inserted per flush through Arrow, so a batch
  with thousands of invalid events costs one insert.
- anything else: an append-only file of records, each ``u32 length | u32 crc32c | msgpack
  map`` (little-endian), readable with ``read_dead_letters`` even after a torn write.

Both are bounded (``dead_letter_records_max`` records, ``dead_letter_raw_bytes_max`` raw
bytes each); what does not fit is counted, never hidden. The most recent records are also
kept in memory (``recent``) for tests and ``stats``, and every rejection, kept or not, is
counted per (server, error code) for the metrics (``counts``; at most ``servers_max`` server
ids, the rest under ``_other``). The store is written from the bridge thread only;
``counts`` may be read from any thread.

Reading a store (``read_dead_letters``, ``norn bridge dead-letters``) works on a live run
too: DuckDB lets one process hold a database file open for writing, so while the engine
runs, a reader opens a copy of the file (and its WAL) made at that moment.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import msgpack

COLUMNS = (
    "n", "at_unix_ms", "tick", "server_id", "seq", "kind", "event_index", "code", "field",
    "reason", "raw_bytes", "raw",
)
_HEADER = struct.Struct("<II")
#: Distinct server ids counted apart in ``counts``; the rest are counted under ``OTHER``.
servers_max = 256
OTHER = "_other"
#: The server id of a rejection before any hello (no session yet).
NO_SERVER = "-"


class DeadLetterStore:
    """Append-only, bounded store of rejected input."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        records_max: int,
        raw_bytes_max: int,
        memory_max: int = 1024,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.records_max = records_max
        self.raw_bytes_max = raw_bytes_max
        self.recent: deque[dict[str, Any]] = deque(maxlen=memory_max)
        self.written = 0
        self.dropped = 0
        self._counts: dict[tuple[str, int], int] = {}  # (server, code) -> rejections
        self._servers: set[str] = set()
        self._counts_lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._file = None
        self._con = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.suffix in (".duckdb", ".db"):
                import duckdb

                self._con = duckdb.connect(str(self.path))
                self._con.execute(
                    "CREATE TABLE IF NOT EXISTS dead_letter (n BIGINT, at_unix_ms BIGINT, "
                    "tick BIGINT, server_id VARCHAR, seq BIGINT, kind VARCHAR, "
                    "event_index INTEGER, code INTEGER, field VARCHAR, reason VARCHAR, "
                    "raw_bytes BIGINT, raw BLOB)"
                )
                self.written = int(
                    self._con.execute("SELECT count(*) FROM dead_letter").fetchall()[0][0]
                )
            else:
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for appends

    def add(
        self,
        *,
        tick: int,
        server_id: str | None,
        seq: int | None,
        kind: str | None,
        event_index: int,
        code: int,
        field: str | None,
        reason: str,
        raw: bytes,
    ) -> bool:
        """Record one rejection; False when the store is full (counted in ``dropped``)."""
        self._count(server_id, int(code))
        if self.written + len(self._buffer) >= self.records_max:
            self.dropped += 1
            return False
        rec = {
            "n": self.written + len(self._buffer),
            # Wall time for operators only; it never reaches world state.
            "at_unix_ms": int(time.time() * 1000),
            "tick": tick,
            "server_id": server_id,
            "seq": seq,
            "kind": kind,
            "event_index": event_index,
            "code": int(code),
            "field": field,
            "reason": reason[:1024],
            "raw_bytes": len(raw),
            "raw": bytes(raw[: self.raw_bytes_max]),
        }
        self._buffer.append(rec)
        self.recent.append(rec)
        return True  # written at the next flush (one per bridge wake-up; a batch at most)

    def _count(self, server_id: str | None, code: int) -> None:
        sid = server_id if server_id is not None else NO_SERVER
        with self._counts_lock:
            if sid not in self._servers:
                if len(self._servers) < servers_max:
                    self._servers.add(sid)
                else:
                    sid = OTHER
            self._counts[(sid, code)] = self._counts.get((sid, code), 0) + 1

    def counts(self) -> dict[tuple[str, int], int]:
        """(server id, error code) -> rejections, stored or not (any thread may ask)."""
        with self._counts_lock:
            return dict(self._counts)

    def flush(self) -> None:
        """Write buffered records (called by the bridge thread after each wake-up)."""
        if not self._buffer:
            return
        buf, self._buffer = self._buffer, []
        try:
            self._write(buf)
        except Exception:
            self.dropped += len(buf)  # counted, never hidden; the caller reports the error
            raise
        self.written += len(buf)

    def _write(self, buf: list[dict[str, Any]]) -> None:
        if self._file is not None:
            parts = []
            for rec in buf:
                body = msgpack.packb(rec, use_bin_type=True)
                parts.append(_HEADER.pack(len(body), crc32c.crc32c(body)))
                parts.append(body)
            self._file.write(b"".join(parts))
            self._file.flush()
        elif self._con is not None:
            import pyarrow as pa

            self._con.register("dead_letter_batch",
                               pa.table({c: [r[c] for r in buf] for c in COLUMNS}))
            try:
                self._con.execute("INSERT INTO dead_letter SELECT * FROM dead_letter_batch")
            finally:
                self._con.unregister("dead_letter_batch")

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._con is not None:
            self._con.close()
            self._con = None


def read_dead_letters(path: str | Path) -> list[dict[str, Any]]:
    """All records of a store (either backend); a torn tail of the file backend is ignored."""
    path = Path(path)
    if path.suffix in (".duckdb", ".db"):
        with open_duckdb(path) as con:
            rows = con.execute(
                f"SELECT {', '.join(COLUMNS)} FROM dead_letter ORDER BY n"
            ).fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]
    data = path.read_bytes()
    out = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        body = data[pos + _HEADER.size : pos + _HEADER.size + length]
        if len(body) != length or crc32c.crc32c(body) != crc:
            break  # torn tail: a crash in the middle of an append
        out.append(msgpack.unpackb(body, raw=False))
        pos += _HEADER.size + length
    return out


def query_dead_letters(
    path: str | Path, *, server: str | None = None, kind: str | None = None,
    code: int | None = None, numbers: list[int] | None = None, start: int = 0,
    limit: int | None = None, raw: bool = True,
) -> tuple[int, int, list[dict[str, Any]]]:
    """(records in the store, records matching, the first ``limit`` matching from ``start``).

    The filters are ANDed; ``numbers`` picks records by ``n``. ``raw=False`` leaves the raw
    bytes out (``raw`` is None): listing a store of a million records reads no blob. A
    DuckDB store is filtered in SQL; the file backend is read through.
    """
    path = Path(path)
    if path.suffix not in (".duckdb", ".db"):
        recs = read_dead_letters(path)
        sel = [r for r in recs
               if (server is None or r["server_id"] == server)
               and (kind is None or r["kind"] == kind)
               and (code is None or r["code"] == code)
               and (numbers is None or r["n"] in numbers) and r["n"] >= start]
        shown = sel if limit is None else sel[:limit]
        if not raw:
            shown = [{**r, "raw": None} for r in shown]
        return len(recs), len(sel), shown
    where, params = ["n >= ?"], [start]
    for col, value in (("server_id", server), ("kind", kind), ("code", code)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    if numbers is not None:
        if not numbers:
            return 0, 0, []
        where.append(f"n IN ({', '.join('?' * len(numbers))})")
        params += list(numbers)
    cond = " AND ".join(where)
    cols = ", ".join(c if raw or c != "raw" else "NULL AS raw" for c in COLUMNS)
    with open_duckdb(path) as con:
        total = int(con.execute("SELECT count(*) FROM dead_letter").fetchall()[0][0])
        matching = int(con.execute(f"SELECT count(*) FROM dead_letter WHERE {cond}",
                                   params).fetchall()[0][0])
        sql = f"SELECT {cols} FROM dead_letter WHERE {cond} ORDER BY n"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = con.execute(sql, params).fetchall()
    return total, matching, [dict(zip(COLUMNS, r, strict=True)) for r in rows]


#: Reading a live run's store copies it; a store larger than this is refused instead.
live_copy_bytes_max = 1 << 30


@contextlib.contextmanager
def open_duckdb(path: str | Path, *, copy_bytes_max: int = live_copy_bytes_max
                ) -> Iterator[object]:
    """A read-only DuckDB connection to the store at ``path``, even while an engine writes it.

    The engine keeps the file open for writing (DuckDB's lock excludes other processes),
    so when the lock is held the file and its WAL are copied as they are now and the copy
    is opened (a copy torn by a concurrent checkpoint is retried). ``OSError`` when the
    store is locked and larger than ``copy_bytes_max``.
    """
    import duckdb

    path = Path(path)
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        con = None
    if con is not None:
        try:
            yield con
        finally:
            con.close()
        return
    wal = path.with_name(path.name + ".wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    if size > copy_bytes_max:
        raise OSError(f"{path}: held open by a running engine and {size >> 20} MiB, more than "
                      f"the {copy_bytes_max >> 20} MiB a reader copies; read it after the run "
                      "stops")
    with tempfile.TemporaryDirectory(prefix="norn-dead-letters-") as tmp:
        last: Exception | None = None
        for _ in range(5):
            copy = Path(tmp) / path.name
            try:
                shutil.copyfile(path, copy)
                if wal.exists():
                    shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
                con = duckdb.connect(str(copy), read_only=True)
                break
            except (duckdb.Error, OSError) as exc:  # torn by a checkpoint: copy again
                last = exc
                for f in Path(tmp).iterdir():
                    f.unlink()
                time.sleep(0.05)
        else:
            raise OSError(f"{path}: could not read a consistent copy of the live store: {last}")
        try:
            yield con
        finally:
            con.close()
