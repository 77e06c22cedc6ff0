"""Operating a run, in process: structured logs and their bounds, label caps, the metrics
collector and the readiness checks over a real (toy) run.

The served end to end (a ``norn run --serve --metrics`` subprocess scraped over HTTP while
``norn sim-server`` feeds it) is ``tests/test_operate_e2e.py``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from norn.engine import observe
from norn.engine.errors import EXIT_ENVIRONMENT, EnvironmentFailure, UserError, exit_code_for
from norn.engine.metrics import (
    OTHER,
    LabelCap,
    MetricsHttp,
    RunMetrics,
    parse_address,
)
from norn.engine.observe import Probes, RateLimit, Sample, log_event

log = logging.getLogger("norn.test")


@pytest.fixture
def stderr(capsys):
    """What the log writer thread writes to stderr; logging is reset afterwards."""
    yield capsys
    observe.stop_logging()


def _lines(setup: observe.LogSetup, capsys) -> list[str]:
    setup.stop()  # drains the queue
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_event_message_and_fields(stderr):
    setup = observe.setup_logging("info", "json")
    log_event(log, "server_connected", "map server map01 connected", server="map01", maps=3)
    log_event(log, "run_failed", "boom", level=logging.ERROR, printed=True, exit_code=3)
    log_event(log, "debugging", "not shown at info", level=logging.DEBUG)
    lines = [json.loads(x) for x in _lines(setup, stderr)]
    assert [x["event"] for x in lines] == ["server_connected", "run_failed"]
    first = lines[0]
    assert first["level"] == "info" and first["logger"] == "norn.test"
    assert first["msg"] == "map server map01 connected"
    assert (first["server"], first["maps"]) == ("map01", 3)
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert lines[1]["exit_code"] == 3  # the JSON stream carries what the CLI prints


def test_plain_lines_skip_what_the_cli_already_printed(stderr):
    setup = observe.setup_logging("warning", "plain")
    log_event(log, "info_event", "below the level")
    log_event(log, "server_silent", "map server map01 went silent", level=logging.WARNING,
              server="map01")
    log_event(log, "run_failed", "printed by the dispatcher", level=logging.ERROR, printed=True)
    lines = _lines(setup, stderr)
    assert len(lines) == 1
    assert lines[0].endswith("WARNING norn.test: map server map01 went silent [server=map01]")


def test_rate_limit_at_the_bound_and_one_past():
    limit = RateLimit(per_s_max=5, keys_max=4)

    def rec(t: float, reason: str = "too_many_servers", server: str = "x"):
        r = logging.LogRecord("norn.bridge", logging.WARNING, __file__, 1, "refused", None, None)
        r.created = t
        r.event = "server_refused"
        r.fields = {"reason": reason, "server": server}
        return r

    passed = [limit.filter(rec(100.1)) for _ in range(5)]
    assert passed == [True] * 5 and limit.suppressed == 0  # exactly at the bound
    assert limit.filter(rec(100.2)) is False  # one past
    assert limit.filter(rec(100.9)) is False and limit.suppressed == 2
    assert limit.filter(rec(100.9, reason="unknown_map")) is True  # another reason: own budget
    nxt = rec(101.0)
    assert limit.filter(nxt) is True and nxt.fields["suppressed"] == 2  # says how many
    # keys are bounded: past keys_max, quiet old keys are forgotten, else new ones share one
    for i in range(10):
        assert limit.filter(rec(101.5, server=f"s{i}")) in (True, False)
    assert len(limit._keys) <= 4 + 1  # and the one shared overflow key


def test_a_blocked_stderr_never_blocks_the_logging_thread(monkeypatch):
    release = threading.Event()

    class Stuck(io.StringIO):
        def write(self, s: str) -> int:  # a terminal nobody reads, a full pipe
            release.wait(10)
            return super().write(s)

    monkeypatch.setattr(sys, "stderr", Stuck())  # read at write time, in the writer
    try:
        setup = observe.setup_logging("info", "plain", queue_max=8, rate_per_key_max=10**6)
        done = threading.Event()

        def flood() -> None:
            for i in range(100):
                log_event(log, "flood", f"record {i}")
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(10), "a log call blocked on the writer"
        assert setup.dropped >= 100 - 8 - 1  # the queue's bound, and one in the writer's hand
    finally:
        release.set()
        observe.stop_logging()


def test_label_cap_at_the_bound_and_one_past():
    cap = LabelCap(3)
    assert [cap.admit(v) for v in ("a", "b", "c")] == ["a", "b", "c"]
    assert cap.admit("d") == OTHER  # one past
    assert cap.admit("a") == "a"  # admitted values stay admitted
    with pytest.raises(ValueError):
        LabelCap(0)


@pytest.mark.parametrize("text,expect", [("127.0.0.1:9600", ("127.0.0.1", 9600)),
                                         ("[::1]:0", ("::1", 0)), ("localhost:65535",
                                                                   ("localhost", 65535))])
def test_metrics_addresses(text, expect):
    assert parse_address(text) == expect


@pytest.mark.parametrize("text", ["9600", "http://127.0.0.1:9600", "127.0.0.1:65536", "x:y"])
def test_a_bad_metrics_address_is_bad_input(text):
    with pytest.raises(UserError, match="HOST:PORT"):
        parse_address(text)


def test_a_busy_metrics_port_is_an_environment_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EnvironmentFailure) as e:
            MetricsHttp(f"127.0.0.1:{port}")
    assert exit_code_for(e.value) == EXIT_ENVIRONMENT and str(port) in str(e.value)


# -- a real run in process ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A toy world run 5 ticks with a journal, measured by RunMetrics and served over HTTP."""
    from norn.engine.recorder import Recorder
    from norn.engine.runner import make_header, run
    from tests.helpers import toy_world

    world, scenario, config = toy_world(walkers=50, ticks=5, snapshot_every=0)
    out = tmp_path_factory.mktemp("toy") / "run"
    recorder = Recorder.create(out, make_header(scenario, config, world), fsync=True,
                               snapshot_every=0)
    probes = Probes()
    probes.add_samples(lambda: [Sample("norn_test_per_server", 1, "counter", "t",
                                       (("server", f"s{i}"),)) for i in range(5)])
    probes.add_samples(lambda: [Sample("norn_test_gauge", 7, "gauge", "t",
                                       (("server", f"s{i}"),)) for i in range(5)])
    metrics = RunMetrics(world, config, recorder, probes, ready_lag_ms=3_600_000,
                         labels_max=3)
    world.subscribe(metrics.committed)
    run(world, config, recorder, before_tick=lambda t: metrics.before_tick(t))
    http = MetricsHttp("127.0.0.1:0")
    http.start(metrics)
    yield metrics, recorder, http
    http.close()
    recorder.close(world, "completed")


def _get(address: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _values(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_collector_reports_the_run(toy_run):
    _, recorder, http = toy_run
    code, body = _get(http.address, "/metrics")
    assert code == 200
    v = _values(body.decode())
    assert v[("norn_ticks_total", ())] == 5 and v[("norn_tick", ())] == 5
    assert v[("norn_tick_seconds_count", ())] == 5
    assert v[("norn_journal_bytes", ())] == recorder.writer.offset > 0
    assert v[("norn_journal_fsync_seconds_count", ())] == 5  # one fsync per tick
    assert sum(val for (name, _), val in v.items() if name == "norn_phase_seconds_total") > 0
    assert v[("norn_ready", ())] == 1
    # per-server labels capped at 3: counters summed under _other, gauges past it left out
    per = {dict(k)["server"]: val for (name, k), val in v.items()
           if name == "norn_test_per_server_total"}
    assert per == {"s0": 1, "s1": 1, "s2": 1, OTHER: 2}
    gauges = {dict(k)["server"] for (name, k), _ in v.items() if name == "norn_test_gauge"}
    assert gauges == {"s0", "s1", "s2"}


def test_health_and_readiness_over_http(toy_run, tmp_path):
    metrics, recorder, http = toy_run
    code, body = _get(http.address, "/healthz")
    assert code == 200 and json.loads(body) == {"status": "alive", "tick": 5}
    code, body = _get(http.address, "/readyz")
    assert code == 200 and json.loads(body)["ready"] is True
    assert _get(http.address, "/nope")[0] == 404

    # the journal moved away (a prune script, an operator): not ready, named
    path = recorder.writer.path
    os.rename(path, path + ".moved")
    try:
        code, body = _get(http.address, "/readyz")
        doc = json.loads(body)
        assert code == 503 and "not the file being written" in doc["checks"]["journal"]
    finally:
        os.rename(path + ".moved", path)
    assert _get(http.address, "/readyz")[0] == 200

    # the disk floor: more free space asked for than there is
    floor = metrics.disk_free_bytes
    metrics.disk_free_bytes = 1 << 62
    try:
        code, body = _get(http.address, "/readyz")
        assert code == 503 and "readiness floor" in json.loads(body)["checks"]["journal"]
    finally:
        metrics.disk_free_bytes = floor

    # a check an extension registered (the bridge's), and ticking within its lag bound
    metrics.probes.checks["bridge"] = lambda: "the bridge is not serving"
    last = metrics.last_commit
    metrics.last_commit = last - 2 * metrics.ready_lag_s  # the last commit, long ago
    try:
        code, body = _get(http.address, "/readyz")
        checks = json.loads(body)["checks"]
        assert code == 503 and checks["bridge"] == "the bridge is not serving"
        assert "late" in checks["ticking"]
    finally:
        metrics.probes.checks.pop("bridge")
        metrics.last_commit = last
    assert _get(http.address, "/readyz")[0] == 200


def test_a_failed_run_is_one_json_record_then_the_plain_line(tmp_path):
    from tests.helpers import norn

    r = norn("run", "--log-json", "--scenario", str(tmp_path / "missing.toml"), "--out",
             str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    record = json.loads(lines[0])
    assert (record["event"], record["level"], record["exit_code"]) == ("run_failed", "error", 2)
    assert "missing.toml" in record["msg"]
    assert len(lines) == 2 and lines[1].startswith("norn: error: ")  # still the last line
    plain = norn("run", "--scenario", str(tmp_path / "missing.toml"), "--out",
                 str(tmp_path / "run"))
    assert plain.stderr.strip().count("\n") == 0  # plain: the dispatcher's line alone
