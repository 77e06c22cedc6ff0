"""Operating a served run, end to end: what an operator sees of a live engine.

One ``norn run --serve ... --lockstep-server map01 --metrics 127.0.0.1:0 --log-json`` in a
subprocess, fed by ``norn sim-server --lockstep`` (the rAthena stand-in) and by a raw map
server ``map02`` that sends bad logins. While it runs, over HTTP:

- ``/healthz`` answers; ``/readyz`` is 503 until the first tick commits (lockstep waits for
  map01), then 200;
- ``/metrics`` moves between two scrapes (ticks, journal bytes), and per-server series
  appear (map01's events in, map02's rejections by reason, map01's session up);
- the tick is made to lag (the simulator is stopped with SIGSTOP, so the lockstep barrier
  waits): ``/readyz`` flips to 503 naming the lag, and back once it continues;
- the journal is moved away (as a careless prune would): 503 naming the journal, and back;
- the live run's dead letters are listed (its store is held by the engine: read from a
  copy), one is re-offered as stored (refused again: validation is not bypassed) and once
  fixed (journaled as source ``admin``).

Afterwards: SIGTERM ends the run with exit 0, its ``--json`` report alone on stdout, every
stderr line a JSON log record, and the log tells the story (listening, connected, rejected,
started, first tick, ended); the fixed login is in the journal under source ``admin``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from norn.bridge import protocol as proto
from norn.bridge.cli import main as bridge_main
from norn.bridge.testing import RawPeer
from tests.helpers import ROOT

pytestmark = [pytest.mark.slow]

WAIT_S = 120  # generous: two cores shared by several test runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """A subprocess's stream, read line by line on a thread (never blocks the test)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def join(self, timeout_s: float = WAIT_S) -> None:
        """Wait for the end of the stream (the process closed it)."""
        self._t.join(timeout_s)

    def records(self) -> list[dict]:
        return [json.loads(x) for x in list(self.lines) if x.startswith("{")]

    def wait_event(self, event: str, timeout_s: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for r in self.records():
                if r.get("event") == event:
                    return r
            time.sleep(0.05)
        raise AssertionError(f"no {event} in the log:\n" + "\n".join(self.lines[-30:]))


def _get(address: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _ready(address: str) -> tuple[int, dict]:
    code, body = _get(address, "/readyz")
    return code, json.loads(body)


def _until(pred, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _scrape(address: str) -> dict[tuple[str, tuple], float]:
    code, body = _get(address, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def _family(sample: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def _documented_metrics() -> set[str]:
    """Every metric docs/operations.md names (its tables and alert expressions)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    names = {_family(n) for n in re.findall(r"norn_[a-z0-9_]*[a-z0-9]", text)}
    return names - {"norn_bridge"}  # from `norn_bridge_<counter>_total`


def _norn(capsys, *args: str) -> tuple[int, str, str]:
    """``norn ARGS`` in this process (another process than the engine's, as an operator's
    shell is): exit code, stdout, stderr."""
    capsys.readouterr()
    code = bridge_main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_a_served_run_is_observable_and_its_dead_letters_replayable(tmp_path, capsys):
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    out = tmp_path / "run"
    cfg = tmp_path / "norn.toml"
    cfg.write_text("[run]\nlockstep_servers_timeout_s = 300\n")
    engine = subprocess.Popen(
        [sys.executable, "-m", "norn.engine.cli", "run", "--serve", endpoint,
         "--lockstep-server", "map01", "--config", str(cfg), "--metrics", "127.0.0.1:0",
         "--log-json", "--log-level", "info", "--ready-lag-ms", "1500", "--ticks", "1000000",
         "--snapshot-every", "0", "--out", str(out), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = _Lines(engine.stderr)
    report_lines = _Lines(engine.stdout)
    sim = peer = None
    try:
        addr = log.wait_event("metrics_listening")["address"]
        code, body = _get(addr, "/healthz")
        assert code == 200 and json.loads(body)["status"] == "alive"
        code, ready = _ready(addr)  # lockstep waits for map01: nothing has ticked
        assert code == 503 and "no tick committed yet" in ready["checks"]["ticking"], ready
        assert ready["checks"]["bridge"] is None and ready["checks"]["journal"] is None

        sim = subprocess.Popen(
            [sys.executable, "-m", "norn.engine.cli", "sim-server", "--connect", endpoint,
             "--lockstep", "--players", "20", "--steps", "1000000", "--step-ms", "40",
             "--server-id", "map01", "--log-json", "--log-level", "info", "--json"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sim_log = _Lines(sim.stderr)
        _until(lambda: _ready(addr)[0] == 200, "/readyz 200 once map01 ticks the world")
        assert sim_log.wait_event("sim_connected")["server"] == "map01"

        # map02 sends four logins, two of them invalid (base_level 0)
        peer = RawPeer(endpoint)
        welcome = _until(lambda: peer.hello("map02", caps=["rows"]), "map02's welcome")
        m = welcome["maps"][0][0]
        rows = [[7000 + i, 9000 + i, m, 5, 5, lvl] for i, lvl in enumerate((10, 0, 0, 30))]
        peer.send(proto.pack({"t": proto.EVENTS, "seq": 1, "kind": "login", "rows": rows}))
        err = peer.recv_type(proto.ERROR, timeout_s=60)
        assert err is not None and err["name"] == "invalid_events" and err["invalid"] == 2
        assert peer.recv_until(lambda x: x.get("t") == proto.ACK and x["seq"] >= 1, 60)
        # and reports an action failed (an id it never got: the world shrugs, metrics count)
        not_here = int(proto.ResultReason.NOT_HERE)
        peer.send(proto.pack({"t": proto.RESULTS, "seq": 2, "rows": [[12345, 1, not_here]]}))
        assert peer.recv_until(lambda x: x.get("t") == proto.ACK and x["seq"] >= 2, 60)

        first = _scrape(addr)
        assert first[("norn_ticks_total", ())] > 0
        assert first[("norn_bridge_rejected_total",
                      (("reason", "invalid_events"), ("server", "map02")))] == 2
        assert first[("norn_bridge_server_up", (("server", "map01"),))] == 1
        assert first[("norn_events_in_total", (("kind", "login"), ("source", "map02")))] == 2
        assert first[("norn_action_results_failed_total",
                      (("reason", "not_here"), ("server", "map02")))] == 1
        assert any(name == "norn_events_in_total" and dict(k)["source"] == "map01"
                   for name, k in first)
        assert first[("norn_journal_fsync_seconds_count", ())] > 0
        assert first[("norn_ready", ())] == 1
        documented = _documented_metrics() - {n for n in _documented_metrics()
                                                  if n.startswith("norn_llm_")}  # no --llm
        scraped = {_family(name) for name, _ in first}
        assert documented <= scraped, f"docs/operations.md names {documented - scraped}"
        # values move (a scrape may fall between a tick's journal write and its count)
        _until(lambda: (s := _scrape(addr))[("norn_ticks_total", ())]
               > first[("norn_ticks_total", ())] + 1 and s[("norn_journal_bytes", ())]
               > first[("norn_journal_bytes", ())], "the tick count and journal to grow")

        # the tick lags: map01 stops declaring progress, the lockstep barrier waits
        sim.send_signal(signal.SIGSTOP)
        try:
            code, ready = _until(lambda: (r := _ready(addr))[0] == 503 and r,
                                 "/readyz 503 while the tick lags")
            assert "late" in ready["checks"]["ticking"], ready
            assert _scrape(addr)[("norn_tick_lag_seconds", ())] > 1.5
        finally:
            sim.send_signal(signal.SIGCONT)
        _until(lambda: _ready(addr)[0] == 200, "/readyz 200 once ticking again")

        # the journal moved away: not ready, named; back: ready
        journal = out / "journal.norn"
        os.rename(journal, out / "journal.moved")
        try:
            code, ready = _ready(addr)
            assert code == 503 and "not the file being written" in ready["checks"]["journal"]
        finally:
            os.rename(out / "journal.moved", journal)
        _until(lambda: _ready(addr)[0] == 200, "/readyz 200 with the journal back")

        # the live run's dead letters (the engine holds the store: read from a copy)
        code, stdout, stderr = _norn(capsys, "bridge", "dead-letters", "list", str(out),
                                     "--server", "map02", "--json")
        assert code == 0, stderr
        bad = json.loads(stdout)["records"]
        assert [(d["kind"], d["event_index"], d["field"]) for d in bad] == [
            ("login", 1, "base_level"), ("login", 2, "base_level")]
        fix = tmp_path / "fix.json"
        code, _, stderr = _norn(capsys, "bridge", "dead-letters", "show", str(out),
                                str(bad[0]["n"]), "--export", str(fix))
        assert code == 0, stderr
        # as stored it is refused again: exit 2, the engine's reason printed
        code, stdout, stderr = _norn(capsys, "bridge", "dead-letters", "replay", str(out),
                                     str(bad[1]["n"]), "--connect", endpoint)
        assert code == 2 and "invalid_events" in stdout, (stdout, stderr)
        doc = json.loads(fix.read_text())
        doc["rows"][0][5] = 42  # the operator's fix
        fix.write_text(json.dumps(doc))
        code, stdout, stderr = _norn(capsys, "bridge", "dead-letters", "replay", str(out),
                                     "--file", str(fix), "--connect", endpoint, "--json")
        assert code == 0, (stdout, stderr)
        assert json.loads(stdout)["journaled"] is True
        code, _, stderr = _norn(capsys, "bridge", "dead-letters", "replay", str(out),
                                str(bad[1]["n"]), "--connect", endpoint)
        assert code == 2 and "--again" in stderr  # re-offered once already
    finally:
        if peer is not None:
            peer.close()
        engine.send_signal(signal.SIGTERM)  # while map01 still steps the barrier
        try:
            engine.wait(WAIT_S)
        finally:
            if sim is not None:
                sim.kill()
                sim.wait(30)
    log.join()
    report_lines.join()
    assert engine.returncode == 0, "\n".join(log.lines[-40:])
    report = json.loads("\n".join(report_lines.lines))  # the report and nothing else
    assert report["stopped"] == "interrupted" and report["metrics"]["address"] == addr
    assert log.lines and all(x.startswith("{") for x in log.lines), log.lines[-5:]
    events = [(r["event"], r.get("server")) for r in log.records()]
    for expected in [("bridge_listening", None), ("metrics_listening", None),
                     ("run_started", None), ("first_tick", None),
                     ("server_connected", "map01"), ("server_connected", "map02"),
                     ("events_rejected", "map02"), ("server_connected", "admin"),
                     ("events_rejected", "admin"), ("server_disconnected", "admin"),
                     ("run_ended", None)]:
        assert expected in events, (expected, events)

    from norn.engine.reader import open_run

    admin = [b for rec in open_run(out).ticks() for b in rec.inputs
             if b.source == "admin" and len(b)]
    assert len(admin) == 1 and admin[0].columns["base_level"].tolist() == [42]
    assert Path(out / "dead_letters.replayed.jsonl").read_text().count("\n") == 2
