"""``norn run``'s operator surface: logging options, the Prometheus endpoint, health.

A run extension (entry point ``observe`` in ``norn.run_extensions``) like the bridge's:

- ``--log-level`` and ``--log-format plain|json`` (``--log-json``): configured before
  anything else happens (``configure``), so every later step can log
  (``engine/observe.py``). The run logs ``run_started``, ``first_tick`` (how long the
  first tick took to come: the JIT compile, on a cold cache), ``run_ended``, and a failure
  ends as ``run_failed`` in the JSON stream.
- ``--metrics HOST:PORT`` (off by default): a small HTTP server, bound in ``preflight``
  (a busy port is exit 3 before the run directory exists) and serving, on its own threads,
  ``/metrics`` (Prometheus text), ``/healthz`` (alive: 200 while the process answers) and
  ``/readyz`` (200 when ready, 503 with the reasons as JSON otherwise). Ready means: the
  journal is writable (its writer usable, its path still the file being written, the run
  directory writable with at least ``--ready-disk-free-mb`` free), every check the
  extensions registered passes (the bridge: bound, its thread alive), and the run is
  ticking: a tick committed within ``--ready-lag-ms`` past its period.

What is measured comes from three places, none of which the tick waits for: the world's one
``Committed`` notice (ticks, their durations, events in by source and kind, action results
failed by server and reason, actions emitted, fsync time), the world and journal read at
scrape time (phase times, queue depth, decisions, journal bytes), and the ``Probes`` the
other extensions filled (the bridge's counters, queue depths and rejections per server; the
LLM tier's calls, tiers and cost). Label values that name a server or a source are capped
at ``server_labels_max`` distinct values per label; the rest are summed under ``_other``
(counters) or left out (gauges), so a stream of throwaway server ids cannot grow the series
without bound. docs/operations.md lists every metric and what to alert on.

Not state (``engine/fingerprint.py:NOT_STATE``).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
import re
import socket
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np

from norn.engine import clock
from norn.engine.errors import EnvironmentFailure, UserError
from norn.engine.observe import (
    Probes,
    Sample,
    active_logging,
    add_log_arguments,
    log_event,
    logging_from_args,
)

if TYPE_CHECKING:
    from norn.engine.commands import RunContext
    from norn.engine.commit import Committed
    from norn.engine.config import RunConfig
    from norn.engine.recorder import Recorder
    from norn.engine.world import World

_log = logging.getLogger("norn.engine.run")

#: Distinct values one label naming a server or a source may take; the rest are ``_other``.
server_labels_max = 64
#: The label value standing for every value past ``server_labels_max``.
OTHER = "_other"
#: Labels capped at ``server_labels_max`` values.
CAPPED_LABELS = ("server", "source")
#: ``/readyz``: how far past its period the last commit may be (default of --ready-lag-ms).
ready_lag_ms_default = 2000
#: ``/readyz``: free space the run directory's file system must keep (--ready-disk-free-mb).
ready_disk_free_mb_default = 256
#: Commit times kept for the tick rate gauge (over the last ``RATE_WINDOW_S``).
commit_times_max = 16384
RATE_WINDOW_S = 10.0
#: Histogram bounds (seconds).
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 1.0)


class LabelCap:
    """Admits the first ``values_max`` distinct values of a label; the rest become ``_other``."""

    def __init__(self, values_max: int = server_labels_max) -> None:
        if values_max < 1:
            raise ValueError("values_max must be >= 1")
        self.values_max = values_max
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.values_max:
                self._seen.add(value)
                return value
            return OTHER


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for b, c in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            acc += c
            out.append((b, acc))
        return out


class RunMetrics:
    """One run's measurements and readiness; fed on the tick thread, read by the HTTP one."""

    def __init__(self, world: World, config: RunConfig, recorder: Recorder | None,
                 probes: Probes, *, ready_lag_ms: int = ready_lag_ms_default,
                 disk_free_mb: int = ready_disk_free_mb_default,
                 labels_max: int = server_labels_max) -> None:
        from norn.engine.rathena import RESULT_KIND, ResultReason

        self.world = world
        self.config = config
        self.recorder = recorder
        self.probes = probes
        self.period_s = config.tick_ms / 1000
        self.ready_lag_s = ready_lag_ms / 1000
        self.disk_free_bytes = disk_free_mb << 20
        self.labels_max = labels_max
        self._caps = {name: LabelCap(labels_max) for name in CAPPED_LABELS}
        self._result_kind = RESULT_KIND
        self._reasons = {int(r): r.name.lower() for r in ResultReason}
        self._lock = threading.Lock()
        self.attached_at = clock.monotonic()
        self.ticks = 0
        self.last_tick = world.tick
        self.last_commit: float | None = None
        self._tick_t0: float | None = None
        self._commits: deque[float] = deque(maxlen=commit_times_max)
        self.tick_s = _Histogram(TICK_BUCKETS)
        self.fsync_s = _Histogram(FSYNC_BUCKETS)
        self.events_in: dict[tuple[str, str], int] = {}
        self.results_failed: dict[tuple[str, str], int] = {}
        self.actions = 0
        w = recorder.writer if recorder is not None else None
        self._synced = (w.syncs, w.sync_s) if w is not None else (0, 0.0)
        self.closed = False

    # -- the tick thread -----------------------------------------------------------------
    def before_tick(self, tick: int) -> None:
        self._tick_t0 = clock.monotonic()

    def committed(self, notice: Committed) -> None:
        """A world subscriber: count what the durable tick carried (never blocks)."""
        now = clock.monotonic()
        src_cap = self._caps["source"]
        srv_cap = self._caps["server"]
        with self._lock:
            self.ticks += 1
            self.last_tick = notice.tick
            self.last_commit = now
            self._commits.append(now)
            if self._tick_t0 is not None:
                self.tick_s.observe(now - self._tick_t0)
                self._tick_t0 = None
            for b in notice.inputs:
                key = (src_cap.admit(b.source), b.kind)
                self.events_in[key] = self.events_in.get(key, 0) + len(b)
                if b.kind == self._result_kind and len(b):
                    failed = b.columns["status"] != 0
                    if failed.any():
                        server = srv_cap.admit(b.source)
                        codes, counts = np.unique(b.columns["reason"][failed], return_counts=True)
                        for code, n in zip(codes.tolist(), counts.tolist(), strict=True):
                            k = (server, self._reasons.get(code, "other"))
                            self.results_failed[k] = self.results_failed.get(k, 0) + n
            self.actions += notice.actions.count()
            w = self.recorder.writer if self.recorder is not None else None
            if w is not None and w.syncs > self._synced[0]:
                self.fsync_s.observe(w.sync_s - self._synced[1])
                self._synced = (w.syncs, w.sync_s)

    # -- readiness -----------------------------------------------------------------------
    def lag_s(self, now: float | None = None) -> float:
        """How far the next commit is overdue: time since the last one (or since the run
        attached, before the first) less one tick period; never negative."""
        now = clock.monotonic() if now is None else now
        since = now - (self.last_commit if self.last_commit is not None else self.attached_at)
        return max(0.0, since - self.period_s)

    def _journal_problem(self) -> str | None:
        if self.recorder is None:
            return None
        w = self.recorder.writer
        if w.failure is not None:
            return f"the journal writer failed: {w.failure}"
        if not w.same_file():
            return (f"{w.path} is not the file being written any more (closed, moved or "
                    "deleted): ticks written now are not where readers look")
        out_dir = os.path.dirname(os.path.abspath(w.path))
        if not os.access(out_dir, os.W_OK) or not os.access(w.path, os.W_OK):
            return f"{out_dir}: the run directory or its journal is not writable"
        try:
            st = os.statvfs(out_dir)
        except OSError as e:
            return f"{out_dir}: cannot read its file system's free space: {e.strerror}"
        free = st.f_bavail * st.f_frsize
        if free < self.disk_free_bytes:
            return (f"{out_dir}: {free >> 20} MiB free, under the {self.disk_free_bytes >> 20} "
                    "MiB readiness floor (--ready-disk-free-mb)")
        return None

    def readiness(self) -> dict[str, str | None]:
        """Check name -> None (fine) or why not ready."""
        out: dict[str, str | None] = {"journal": self._journal_problem()}
        for name, check in sorted(self.probes.checks.items()):
            try:
                out[name] = check()
            except Exception as exc:  # a probe's bug is a not-ready, named
                out[name] = f"check failed: {type(exc).__name__}: {exc}"
        if self.closed:
            out["ticking"] = "the run has ended"
        elif self.last_commit is None:
            out["ticking"] = (f"no tick committed yet ({clock.monotonic() - self.attached_at:.1f}"
                              " s since start: compiling, or waiting for lockstep servers)")
        else:
            lag = self.lag_s()
            out["ticking"] = (None if lag <= self.ready_lag_s else
                              f"tick {self.last_tick + 1} is {lag:.2f} s late (--ready-lag-ms "
                              f"{round(self.ready_lag_s * 1000)})")
        return out

    # -- scraping ------------------------------------------------------------------------
    def samples(self) -> Iterator[Sample]:
        """Every sample of this run: the engine's own, then the probes' (capped)."""
        now = clock.monotonic()
        with self._lock:
            ticks, last_tick = self.ticks, self.last_tick
            events_in = dict(self.events_in)
            failed = dict(self.results_failed)
            actions = self.actions
            tick_hist = (self.tick_s.buckets(), self.tick_s.sum)
            fsync_hist = (self.fsync_s.buckets(), self.fsync_s.sum)
            recent = [t for t in self._commits if t >= now - RATE_WINDOW_S]
        span = min(RATE_WINDOW_S, now - self.attached_at)
        yield Sample("norn_ticks", ticks, "counter", "ticks committed by this process")
        yield Sample("norn_tick", last_tick, "gauge", "the last committed tick")
        yield Sample("norn_tick_rate_per_second", len(recent) / span if span > 0 else 0.0,
                     "gauge", f"ticks committed per second over the last {RATE_WINDOW_S:g} s")
        yield Sample("norn_tick_period_seconds", self.period_s, "gauge", "the configured tick")
        yield Sample("norn_tick_lag_seconds", self.lag_s(now), "gauge",
                     "how far the next commit is overdue (time since the last, less a period)")
        yield _histogram("norn_tick_seconds", tick_hist,
                               "one tick, stepped and journaled (the lockstep wait excluded)")
        ready = self.readiness()
        yield Sample("norn_ready", float(all(v is None for v in ready.values())), "gauge",
                     "1 when /readyz says ready")
        for phase, s in sorted(_copy(self.world.phase_seconds).items()):
            yield Sample("norn_phase_seconds", s, "counter", "seconds spent in each tick phase",
                         (("phase", phase),))
        inputs = self.world.inputs
        yield Sample("norn_input_queue_batches", len(inputs), "gauge",
                     "batches waiting in the world's input queue")
        yield Sample("norn_input_queue_batches_max", inputs.batches_max, "gauge",
                     "the input queue's bound (input_batches_max)")
        yield Sample("norn_input_queue_refused", inputs.refused, "counter",
                     "offers refused because the input queue was full")
        for (source, kind), n in sorted(events_in.items()):
            yield Sample("norn_events_in", n, "counter", "events journaled, by source and kind",
                         (("source", source), ("kind", kind)))
        for (server, reason), n in sorted(failed.items()):
            yield Sample("norn_action_results_failed", n, "counter",
                         "actions a map server reported failed, by server and reason",
                         (("server", server), ("reason", reason)))
        yield Sample("norn_actions_emitted", actions, "counter", "world actions committed")
        for outcome, n in sorted(_copy(self.world.decisions.counters).items()):
            yield Sample("norn_decisions", n, "counter",
                         "decision requests by outcome (requested, resolved, deadline, ...)",
                         (("outcome", outcome),))
        if self.recorder is not None:
            w = self.recorder.writer
            yield Sample("norn_journal_bytes", w.offset, "gauge", "size of the journal")
            yield Sample("norn_journal_frames_written", w.frames_written, "counter",
                         "journal frames this process appended")
            yield _histogram("norn_journal_fsync_seconds", fsync_hist,
                                   "one fsync of the journal (one per tick at most)")
            yield Sample("norn_snapshots_written", len(self.recorder.snapshots), "counter",
                         "snapshots this process wrote")
            try:
                st = os.statvfs(self.recorder.out_dir)
            except OSError:
                st = None
            if st is not None:
                yield Sample("norn_run_disk_free_bytes", st.f_bavail * st.f_frsize, "gauge",
                             "free space of the run directory's file system")
        logs = active_logging()
        if logs is not None:
            yield Sample("norn_log_records_dropped", logs.dropped, "counter",
                         "log records dropped because the log queue was full")
            yield Sample("norn_log_records_suppressed", logs.suppressed, "counter",
                         "log records held back by the per-key rate limit")
        for probe in list(self.probes.samples):
            try:
                probed = list(probe())
            except Exception as exc:  # a probe's bug must not take /metrics down
                log_event(_log, "probe_failed", f"a metrics probe failed: {exc}",
                          level=logging.WARNING, probe=getattr(probe, "__name__", "?"))
                continue
            yield from self._capped(probed)

    def _capped(self, samples: list[Sample]) -> Iterator[Sample]:
        """Cap the server/source labels of probe samples: counters sum under ``_other``,
        gauges past the cap are left out."""
        summed: dict[tuple[str, tuple], Sample] = {}
        for s in samples:
            labels = s.labels
            over = False
            for i, (k, v) in enumerate(labels):
                if k in self._caps:
                    admitted = self._caps[k].admit(str(v))
                    if admitted != v:
                        over = True
                        labels = (*labels[:i], (k, admitted), *labels[i + 1:])
            if not over:
                yield s
            elif s.kind == "counter":
                key = (s.name, labels)
                prev = summed.get(key)
                summed[key] = Sample(s.name, (prev.value if prev else 0) + s.value, s.kind,
                                     s.help, labels)
        yield from summed.values()


def _histogram(name: str, value: tuple[list[tuple[str, float]], float], help: str
               ) -> Sample:
    """A histogram sample: ``value`` is (cumulative buckets, sum)."""
    return Sample(name, value, "histogram", help)  # type: ignore[arg-type]


def _copy(d: dict) -> dict:
    """A copy of a dict another thread may be adding keys to (retried; rarely needed)."""
    for _ in range(8):
        try:
            return dict(d)
        except RuntimeError:
            continue
    return {}


class RunCollector:
    """The Prometheus collector over one ``RunMetrics`` (families built at each scrape)."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        families: dict[str, Any] = {}
        for s in self.metrics.samples():
            fam = families.get(s.name)
            names = [k for k, _ in s.labels]
            if fam is None:
                if s.kind == "histogram":
                    fam = HistogramMetricFamily(s.name, s.help, labels=names)
                elif s.kind == "counter":
                    fam = CounterMetricFamily(s.name, s.help, labels=names)
                else:
                    fam = GaugeMetricFamily(s.name, s.help, labels=names)
                fam._norn_labels = names
                families[s.name] = fam
            if fam._norn_labels != names:
                continue  # a probe disagreeing with itself on labels: keep the first form
            values = [str(v) for _, v in s.labels]
            if s.kind == "histogram":
                buckets, total = s.value
                fam.add_metric(values, buckets, total)
            else:
                fam.add_metric(values, float(s.value))
        return list(families.values())

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are only known at scrape time


# -- the HTTP server -------------------------------------------------------------------------
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9600`` for IPv6; port 0: any free one) -> (host, port)."""
    m = _ADDRESS.fullmatch(text)
    if m is None or int(m["port"]) > 65535:
        raise UserError(f"--metrics {text}: use HOST:PORT, e.g. 127.0.0.1:9600 (port 0: any "
                        "free port; 0.0.0.0 for every interface: mind who can reach it)")
    return m["host"].strip("[]"), int(m["port"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    metrics: RunMetrics | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        m = self.server.metrics
        if path == "/healthz":
            tick = m.last_tick if m is not None else None
            self._send(200, "application/json", json.dumps({"status": "alive", "tick": tick}))
        elif m is None:
            self._send(503, "application/json",
                       json.dumps({"ready": False, "checks": {"run": "not started yet"}}))
        elif path == "/readyz":
            checks = m.readiness()
            ready = all(v is None for v in checks.values())
            self._send(200 if ready else 503, "application/json",
                       json.dumps({"ready": ready, "checks": checks}))
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
            from prometheus_client.registry import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            registry.register(RunCollector(m))
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
        else:
            self._send(404, "text/plain", "not found: /metrics, /healthz, /readyz\n")

    def _send(self, code: int, ctype: str, body: str | bytes) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes are not news


class MetricsHttp:
    """The bound (not yet serving) metrics server; ``start`` serves a run's metrics."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        _Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.server = _Server((host, port), _Handler)
        except OSError as e:
            raise EnvironmentFailure(
                f"--metrics {address}: cannot serve metrics there: {e.strerror or e}") from e
        h, p = self.server.server_address[:2]
        self.address = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        self._thread: threading.Thread | None = None

    def start(self, metrics: RunMetrics) -> None:
        self.server.metrics = metrics
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.2}, name="norn-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server.server_close()


# -- the run extension -----------------------------------------------------------------------
class ObserveRunExtension:
    """Adds the logging, metrics and readiness options to ``norn run``."""

    def __init__(self) -> None:
        self._http: MetricsHttp | None = None  # bound in preflight, served from attach

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_log_arguments(parser)
        parser.add_argument(
            "--metrics", metavar="HOST:PORT",
            help="serve /metrics (Prometheus), /healthz and /readyz there, e.g. "
            "127.0.0.1:9600 (off by default; port 0: any free port, logged as "
            "metrics_listening)",
        )
        parser.add_argument(
            "--ready-lag-ms", type=int, default=ready_lag_ms_default, dest="ready_lag_ms",
            help=f"/readyz: not ready when the next tick is this late (default "
            f"{ready_lag_ms_default})",
        )
        parser.add_argument(
            "--ready-disk-free-mb", type=int, default=ready_disk_free_mb_default,
            dest="ready_disk_free_mb",
            help=f"/readyz: not ready when the run directory's file system has less free "
            f"(default {ready_disk_free_mb_default})",
        )

    def configure(self, args: argparse.Namespace, overrides: dict[str, Any]) -> None:
        """Logging first: everything after it may log."""
        logging_from_args(args)

    def preflight(self, args: argparse.Namespace) -> None:
        """Bind the metrics address now: a typo is exit 2 and a busy port exit 3, before the
        run directory exists."""
        if self._http is not None:  # an earlier run in this process that never attached
            self._http.close()
            self._http = None
        if getattr(args, "ready_lag_ms", 0) < 0 or getattr(args, "ready_disk_free_mb", 0) < 0:
            raise UserError("--ready-lag-ms and --ready-disk-free-mb must be >= 0")
        if getattr(args, "metrics", None):
            self._http = MetricsHttp(args.metrics)

    def resend_ticks(self, args: argparse.Namespace) -> int:
        return 0

    def attach(self, run: RunContext) -> ObservedRun:
        http, self._http = self._http, None
        metrics = None
        if http is not None:
            metrics = RunMetrics(run.world, run.config, run.recorder, run.probes,
                                 ready_lag_ms=run.args.ready_lag_ms,
                                 disk_free_mb=run.args.ready_disk_free_mb)
            run.world.subscribe(metrics.committed)
            http.start(metrics)
            log_event(_log, "metrics_listening",
                      f"metrics on http://{http.address}/metrics (and /healthz, /readyz)",
                      address=http.address)
        log_event(_log, "run_started", f"run {run.out_dir} from tick {run.world.tick}: "
                  f"{run.config.clock} clock, {run.config.tick_ms} ms ticks, seed "
                  f"{run.config.seed}", run_dir=str(run.out_dir), model=run.model,
                  seed=run.config.seed, clock=run.config.clock, tick_ms=run.config.tick_ms,
                  from_tick=run.world.tick, resumed=bool(run.args.resume),
                  serving=getattr(run.args, "serve", None))
        observed = ObservedRun(metrics, http)
        run.world.subscribe(observed.committed)
        return observed


class ObservedRun:
    """One run's metrics server and its start, first tick and end in the log."""

    feeds_inputs = False

    def __init__(self, metrics: RunMetrics | None, http: MetricsHttp | None) -> None:
        self.metrics = metrics
        self.http = http
        self.failure: str | None = None
        self.attached_at = clock.monotonic()
        self._first = True

    def committed(self, notice: Committed) -> None:
        """Say when the first tick is durable: the end of a JIT compile on a cold cache."""
        if self._first:
            self._first = False
            after = clock.monotonic() - self.attached_at
            log_event(_log, "first_tick", f"first tick committed (tick {notice.tick}) "
                      f"{after:.1f} s after start", tick=notice.tick, after_s=round(after, 3))

    def before_tick(self, tick: int) -> bool:
        if self.metrics is not None:
            self.metrics.before_tick(tick)
        return True

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.closed = True
        if self.http is not None:
            self.http.close()

    def report(self, report: dict[str, Any]) -> list[str]:
        log_event(_log, "run_ended", f"run ended ({report.get('stopped')}) at tick "
                  f"{report.get('last_tick')} after {report.get('ticks')} ticks",
                  stopped=report.get("stopped"), ticks=report.get("ticks"),
                  last_tick=report.get("last_tick"), last_digest=report.get("last_digest"),
                  overruns=report.get("overruns"), stalls=report.get("stalls"))
        if self.http is not None:
            report["metrics"] = {"address": self.http.address}
        return []


#: The object ``norn.run_extensions`` names.
extension = ObserveRunExtension()
