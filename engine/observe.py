"""Operating a run: structured logs, and the probes that metrics and health read.

**Logs.** Every Norn module logs under the ``norn`` logger through ``log_event(logger,
event, message, **fields)``: a stable event name (``server_connected``, ``clock_stalled``)
an operator can filter on, a sentence for people, and fields for machines. Nothing is
printed until a command configures logging (``setup_logging``: ``--log-level`` and
``--log-format plain|json`` on ``norn run`` and ``norn sim-server``); a library user gets
the standard ``NullHandler`` silence. Records go to stderr, one per line (JSON when asked),
so ``--json`` reports on stdout stay clean.

The threads that log must never wait on a terminal, a pipe or journald: the tick thread
and the bridge thread only put records on a bounded queue (``log_queue_max``) that one
writer thread drains to stderr. A full queue drops the record and counts it
(``LogSetup.dropped``), never blocks. Repeated records are bounded too: at most
``log_rate_per_key_max`` a second for each (logger, event, reason, server) key; the next
record let through after a quiet second carries ``suppressed=N``, and the totals are counted
(``LogSetup.suppressed``), so a flood of refused hellos costs a few lines a second, not one
per frame, and still says how many there were.

A record the CLI already prints in plain form (the one-line ``norn: error: ...``, a
traceback the bridge prints) is marked ``printed``: the plain stream skips it, the JSON
stream carries it, so a log shipper reading JSON sees every error once.

**Probes.** ``Probes`` is what a run's extensions expose to the metrics endpoint and the
readiness check (``engine/metrics.py``): sample functions (``Sample``: a name, a kind, a
value, labels) read at scrape time, and named checks (``None``: fine; a string: why not
ready). The engine imports nothing above it, so the bridge and the LLM tier fill a run's
``Probes`` when they attach (``RunContext.probes``) and the metrics module reads them
without knowing who they are.

Not state (``engine/fingerprint.py:NOT_STATE``): nothing here reaches a tick.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

#: The logger every Norn module logs under (``norn.bridge.session``, ``norn.engine.runner``).
ROOT_LOGGER = "norn"
#: ``--log-level`` choices, quietest last.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: ``--log-format`` choices.
LOG_FORMATS = ("plain", "json")
#: Records waiting for the writer thread; past this a record is dropped and counted.
log_queue_max = 10_000
#: Records per second let through for one (logger, event, reason, server) key.
log_rate_per_key_max = 5
#: Keys the rate limiter remembers at once; past this the new ones share one key.
log_rate_keys_max = 1024

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())  # silent until configured


def log_event(logger: logging.Logger, event: str, message: str, *, level: int = logging.INFO,
              printed: bool = False, **fields: Any) -> None:
    """Log ``message`` as event ``event`` with ``fields`` (cheap when the level is off).

    ``printed``: the CLI or a traceback already says this on stderr in plain form; only
    the JSON stream carries it.
    """
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"event": event, "fields": fields, "printed": printed})


# -- formatting ------------------------------------------------------------------------------
def _timestamp(record: logging.LogRecord) -> str:
    # the record's own creation time (logging reads it); ISO 8601 UTC, milliseconds
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"
                                                                 ).replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "fields", None) or {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, msg, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            doc.setdefault(str(k), v)
        exc = record.exc_text or (self.formatException(record.exc_info)
                                  if record.exc_info else None)
        if exc:
            doc["exc"] = exc
        return orjson.dumps(doc, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class PlainFormatter(logging.Formatter):
    """``2026-12-01T23:59:59.123Z INFO norn.bridge.session: message [k=v k=v]``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        exc = record.exc_text or (self.formatException(record.exc_info)
                                  if record.exc_info else None)
        if exc:
            line += "\n" + exc
        return line


# -- bounding ---------------------------------------------------------------------------------
class RateLimit(logging.Filter):
    """At most ``per_s_max`` records a second per (logger, event, reason, server) key.

    Windows are whole seconds of the record's own time. The first record let through in a
    new window after suppressed ones carries ``suppressed=N``; ``suppressed`` totals them.
    At most ``keys_max`` keys are remembered (keys quiet since an earlier second are
    forgotten first; if all are current, new keys share one more, the overflow key).
    """

    def __init__(self, per_s_max: int = log_rate_per_key_max,
                 keys_max: int = log_rate_keys_max) -> None:
        super().__init__()
        if per_s_max < 1 or keys_max < 1:
            raise ValueError("per_s_max and keys_max must be >= 1")
        self.per_s_max = per_s_max
        self.keys_max = keys_max
        self.suppressed = 0
        self._lock = threading.Lock()  # held for a dict lookup, never across I/O
        self._keys: dict[tuple, list[int]] = {}  # key -> [window second, let through, held]

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields(record)
        key = (record.name, getattr(record, "event", None) or record.msg,
               fields.get("reason"), fields.get("server"))
        second = int(record.created)
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self.keys_max:
                    for k in [k for k, s in self._keys.items() if s[0] < second]:
                        if not self._keys[k][2]:
                            del self._keys[k]
                    if len(self._keys) >= self.keys_max:
                        key = ("*", "*", None, None)  # the overflow key
                state = self._keys.setdefault(key, [second, 0, 0])
            if state[0] != second:
                held = state[2]
                state[:] = [second, 0, 0]
                if held:
                    record.fields = {**fields, "suppressed": held}
            if state[1] >= self.per_s_max:
                state[2] += 1
                self.suppressed += 1
                return False
            state[1] += 1
            return True


class _BoundedQueueHandler(QueueHandler):
    """Puts records on a bounded queue without ever blocking; a full queue drops and counts."""

    def __init__(self, q: queue.Queue, plain: bool) -> None:
        super().__init__(q)
        self.dropped = 0
        self.plain = plain

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge the arguments and render a traceback now (the objects may change later);
        # the writer thread does the formatting.
        rec = logging.makeLogRecord(record.__dict__)
        rec.msg = record.getMessage()
        rec.args = None
        if record.exc_info:
            rec.exc_text = logging.Formatter().formatException(record.exc_info)
        rec.exc_info = None
        return rec

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def filter(self, record: logging.LogRecord) -> bool:
        if self.plain and getattr(record, "printed", False):
            return False  # already on stderr in plain form
        return super().filter(record)


class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when the record is written (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not kill the writer thread
            self.handleError(record)


class _Listener(QueueListener):
    def enqueue_sentinel(self) -> None:
        # wait for room (the writer is draining): a full queue must not lose the stop
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=5)


@dataclass
class LogSetup:
    """The configured logging of this process: its level, format and bounds' counters."""

    level: str
    format: str
    handler: _BoundedQueueHandler
    limiter: RateLimit
    listener: _Listener
    stopped: bool = False

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full."""
        return self.handler.dropped

    @property
    def suppressed(self) -> int:
        """Records held back by the rate limit."""
        return self.limiter.suppressed

    def flush(self, timeout_s: float = 1.0) -> None:
        """Wait (at most ``timeout_s``) until what is queued is written."""
        from norn.engine import clock

        deadline = clock.monotonic() + timeout_s
        while (self.handler.queue.unfinished_tasks and not self.stopped  # type: ignore[attr-defined]
               and clock.monotonic() < deadline):
            clock.sleep_until(clock.monotonic() + 0.005)

    def stop(self) -> None:
        """Write what is queued and stop the writer thread (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(Exception):
            self.listener.stop()


_active: LogSetup | None = None
_active_lock = threading.Lock()


def setup_logging(level: str = "warning", fmt: str = "plain", *,
                  queue_max: int = log_queue_max,
                  rate_per_key_max: int = log_rate_per_key_max) -> LogSetup:
    """Configure the ``norn`` logger for this process (again: replaces the last setup)."""
    global _active
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {LOG_LEVELS}, got {level!r}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    with _active_lock:
        if _active is not None:
            _active.stop()
        q: queue.Queue = queue.Queue(maxsize=queue_max)
        out = _Stderr()
        out.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
        handler = _BoundedQueueHandler(q, plain=fmt == "plain")
        limiter = RateLimit(rate_per_key_max)
        handler.addFilter(limiter)
        listener = _Listener(q, out)
        logger = logging.getLogger(ROOT_LOGGER)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False
        listener.start()
        _active = LogSetup(level, fmt, handler, limiter, listener)
        return _active


def active_logging() -> LogSetup | None:
    """This process's logging setup, None when no command configured it."""
    return _active


def stop_logging() -> None:
    """Flush and stop the writer; the ``norn`` logger goes back to silence."""
    global _active
    with _active_lock:
        if _active is None:
            return
        _active.stop()
        logger = logging.getLogger(ROOT_LOGGER)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        _active = None


atexit.register(stop_logging)  # what is queued reaches stderr before the process ends


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level``, ``--log-format`` and its short form ``--log-json``."""
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="warning", dest="log_level",
        help="log records at this level and above to stderr (default: warning; operators "
        "want info: connects, disconnects, snapshots, stalls)",
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default="plain", dest="log_format",
        help="plain lines or one JSON object per line (default: plain)",
    )
    parser.add_argument(
        "--log-json", action="store_const", const="json", dest="log_format",
        help="same as --log-format json",
    )


def logging_from_args(args: argparse.Namespace) -> LogSetup:
    """Configure logging from the options ``add_log_arguments`` added."""
    return setup_logging(getattr(args, "log_level", None) or "warning",
                         getattr(args, "log_format", None) or "plain")


def log_failure(logger: logging.Logger, event: str, exc: BaseException) -> None:
    """An error ending a command, for the JSON stream (the CLI prints the plain line)."""
    from norn.engine.errors import exit_code_for

    log_event(logger, event, f"{type(exc).__name__}: {exc}", level=logging.ERROR,
              printed=True, exit_code=exit_code_for(exc), error=type(exc).__name__)
    if _active is not None:
        _active.flush()  # before the dispatcher's plain line, which then comes last


# -- probes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One metric value: ``name`` (``norn_...``; a counter's without ``_total``), its kind
    (``counter`` or ``gauge``), help text, value and labels."""

    name: str
    value: float
    kind: str = "gauge"
    help: str = ""
    labels: tuple[tuple[str, str], ...] = ()


#: A readiness check: None when ready, else one line saying why not.
Check = Callable[[], "str | None"]


@dataclass
class Probes:
    """What a run's extensions expose to metrics and readiness: filled at attach, read at
    scrape time from the metrics thread (so each function must be safe to call from it)."""

    samples: list[Callable[[], Iterable[Sample]]] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)

    def add_samples(self, fn: Callable[[], Iterable[Sample]]) -> None:
        self.samples.append(fn)

    def add_check(self, name: str, fn: Check) -> None:
        if name in self.checks:
            raise ValueError(f"readiness check {name!r} registered twice")
        self.checks[name] = fn
