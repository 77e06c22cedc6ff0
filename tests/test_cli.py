"""The CLI as a new user meets it: clear one-line errors with exit 2, no stack traces."""

from __future__ import annotations

import pytest

from tests.helpers import journal_digests, norn


def _fails_cleanly(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_unknown_config_key_is_named(tmp_path):
    cfg = tmp_path / "norn.toml"
    cfg.write_text("[run]\nticks = 5\ntikcs = 3\n")
    _fails_cleanly(
        norn("run", "--scenario", "toy", "--config", str(cfg), "--out", str(tmp_path / "r")),
        "tikcs",
        "unknown key",
    )


def test_wrong_type_and_out_of_range_values_are_named(tmp_path):
    cfg = tmp_path / "norn.toml"
    cfg.write_text('[run]\nticks = "many"\n')
    _fails_cleanly(norn("run", "--scenario", "toy", "--config", str(cfg)), "ticks")
    cfg.write_text("[run]\nchunk_rows = 12\n")
    _fails_cleanly(
        norn("run", "--scenario", "toy", "--config", str(cfg)), "chunk_rows", "multiple of 8"
    )
    cfg.write_text('[run]\nclock = "slow"\n')
    _fails_cleanly(norn("run", "--scenario", "toy", "--config", str(cfg)), "clock", "fast")
    _fails_cleanly(norn("run", "--scenario", "toy", "--ticks", "0"), "ticks")


def test_bad_scenario_values_are_named(tmp_path):
    sc = tmp_path / "bad.toml"
    sc.write_text('name = "bad"\nmodel = "toy"\n[toy]\nwalkers = -3\n')
    _fails_cleanly(norn("run", "--scenario", str(sc)), "toy", "walkers")
    sc.write_text('name = "bad"\nmodel = "nope"\n')
    _fails_cleanly(norn("run", "--scenario", str(sc)), "model", "nope")


@pytest.mark.parametrize(
    "cmd",
    [
        ("run", "--scenario", "/no/such.toml"),
        ("replay", "verify", "/no/such/run"),
        ("replay", "info", "/no/such/run"),
    ],
)
def test_missing_files_are_named(cmd):
    _fails_cleanly(norn(*cmd), "/no/such")


def test_journal_of_another_format_version_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(run_dir), "--json").returncode
        == 0
    )
    from engine import journal
    from engine.recorder import JOURNAL_NAME, pack, unpack

    def bump(frame):
        if frame.kind == journal.KIND_HEADER:
            h = unpack(frame.payload)
            h["format"] = 99
            return pack(h)
        return frame.payload

    other = tmp_path / "other"
    other.mkdir()
    journal.rewrite(run_dir / JOURNAL_NAME, other / JOURNAL_NAME, bump)
    _fails_cleanly(norn("replay", "verify", str(other)), "format 99")
    data = bytearray((run_dir / JOURNAL_NAME).read_bytes())
    data[8] = 7  # the file format version field
    (other / JOURNAL_NAME).write_bytes(bytes(data))
    _fails_cleanly(norn("replay", "info", str(other)), "version")


def test_run_then_verify_then_info_as_a_user_would(tmp_path):
    run_dir = tmp_path / "run"
    r = norn("run", "--scenario", "toy", "--ticks", "50", "--out", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "ticks 1..50 (50)," in r.stdout and "JIT compile" in r.stdout
    assert f"last digest {journal_digests(run_dir)[50]:016x};" in r.stdout
    v = norn("replay", "verify", str(run_dir))
    assert v.returncode == 0 and "match: 50 ticks" in v.stdout
    i = norn("replay", "info", str(run_dir), "--json")
    assert i.returncode == 0 and '"last_tick": 50' in i.stdout
    again = norn("run", "--scenario", "toy", "--ticks", "5", "--out", str(run_dir))
    _fails_cleanly(again, "already exists")


def test_realtime_and_lockstep_clocks_run_and_report_overruns(tmp_path):
    for clock in ("realtime", "lockstep"):
        r = norn(
            "run",
            "--scenario",
            "toy",
            "--ticks",
            "5",
            "--tick-ms",
            "20",
            "--clock",
            clock,
            "--out",
            str(tmp_path / clock),
            "--json",
        )
        assert r.returncode == 0, r.stderr
        assert '"overruns"' in r.stdout and f'"clock": "{clock}"' in r.stdout


def test_lockstep_needs_serve_and_a_stalled_barrier_stops_cleanly(tmp_path):
    _fails_cleanly(
        norn("run", "--scenario", "toy", "--lockstep-server", "map01", "--out",
             str(tmp_path / "x")),
        "lockstep_servers needs --serve",
    )
    _fails_cleanly(norn("run", "--lockstep-server", "bad id!", "--serve", "tcp://127.0.0.1:0"),
                   "lockstep_servers", "server id")
    cfg = tmp_path / "norn.toml"
    cfg.write_text("[run]\nlockstep_servers_timeout_s = 0.5\n")
    out = tmp_path / "stalled"
    r = norn("run", "--serve", "tcp://127.0.0.1:0", "--lockstep-server", "map01", "--config",
             str(cfg), "--ticks", "5", "--out", str(out), "--json")
    # no map server ever connects: exit 3 naming the server, the journal closed and intact
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "map01" in r.stderr and "did not declare tick 1 complete" in r.stderr
    assert "Traceback" not in r.stderr
    info = norn("replay", "info", str(out), "--json")
    assert info.returncode == 0 and '"stalled"' in info.stdout
    # resuming cannot change what decides the ticks' inputs
    _fails_cleanly(
        norn("run", "--out", str(out), "--resume", "--serve", "tcp://127.0.0.1:0",
             "--lockstep-server", "map02"),
        "cannot change", "lockstep_servers",
    )
