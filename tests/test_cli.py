"""The CLI as a new user meets it: clear one-line errors with exit 2, no stack traces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, journal_digests, norn


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
    from norn.engine import journal
    from norn.engine.recorder import JOURNAL_NAME, pack, unpack

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


# -- an output the machine refuses: one line naming the path and the reason, exit 3 ----------
def _fails_environment(r, *needles):
    """Exit 3 (EXIT_ENVIRONMENT) with one stderr line naming what the machine refused."""
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("norn: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _os_refusal(path: str) -> str:
    """The reason the OS gives for creating ``path`` here (the test's own try)."""
    try:
        os.makedirs(path)
    except OSError as e:
        return e.strerror
    os.rmdir(path)
    pytest.skip(f"{path} is writable on this machine")


READ_ONLY = ["/proc/norn-test-read-only/run", "/sys/norn-test-read-only/run"]


@pytest.mark.parametrize("out", READ_ONLY)
def test_new_out_on_a_read_only_location_is_one_line_exit_3(out):
    if not os.path.isdir("/" + out.split("/")[1]):
        pytest.skip("no such pseudo file system here")
    reason = _os_refusal(os.path.dirname(out))
    _fails_environment(norn("run", "--scenario", "toy", "--ticks", "3", "--out", out),
                       out, "cannot create the run directory", reason)


@pytest.mark.parametrize("out", READ_ONLY[1:])
def test_serving_on_a_read_only_location_is_one_line_exit_3(out):
    reason = _os_refusal(os.path.dirname(out))
    _fails_environment(norn("run", "--ticks", "1", "--serve", "tcp://127.0.0.1:0", "--out", out),
                       out, "cannot create the run directory", reason)


def test_a_file_where_the_run_directory_should_be_is_one_line_exit_3(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    _fails_environment(norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(f / "run")),
                       str(f / "run"), "cannot create the run directory", "Not a directory")
    _fails_environment(norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(f)),
                       str(f), "exists and is not a directory")
    _fails_environment(
        norn("run", "--scenario", "toy", "--ticks", "3", "--replace", "--out", str(f)),
        str(f), "cannot remove the old run (--replace)", "Not a directory")
    assert f.read_text() == "not a directory"


def test_an_unusable_snapshots_directory_is_one_line_exit_3(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "snapshots").write_text("a file where the snapshots directory goes")
    r = norn("run", "--scenario", "toy", "--ticks", "5", "--snapshot-every", "2", "--out",
             str(out))
    _fails_environment(r, f"{out / 'snapshots'}: cannot create the snapshots directory")
    assert sorted(journal_digests(out)) == [1]  # tick 2's frame was never committed


def test_serving_with_an_unusable_dead_letter_store_is_one_line_exit_3(tmp_path):
    out = tmp_path / "run"
    (out / "dead_letters.duckdb").mkdir(parents=True)  # a directory where the store goes
    _fails_environment(
        norn("run", "--ticks", "1", "--serve", "tcp://127.0.0.1:0", "--out", str(out)),
        f"{out / 'dead_letters.duckdb'}: cannot start the bridge", "Is a directory")


def test_a_scenario_refused_by_its_model_leaves_no_empty_run_directory(tmp_path):
    sc = tmp_path / "bad.toml"
    sc.write_text('name = "bad"\nmodel = "toy"\n[toy]\nwalkers = -3\n')
    out = tmp_path / "runs" / "bad"
    _fails_cleanly(norn("run", "--scenario", str(sc), "--out", str(out)), "walkers")
    assert not (tmp_path / "runs").exists()


def test_any_other_os_refusal_is_one_line_exit_3_not_a_traceback(monkeypatch, capsys):
    from norn.engine import cli
    from norn.replays import cli as replays_cli

    def refused(args):
        raise PermissionError(13, "Permission denied", "/some/run/journal.norn")

    monkeypatch.setattr(replays_cli, "cmd_replay_info", refused)
    assert cli.main(["replay", "info", "/some/run"]) == 3
    err = capsys.readouterr().err
    assert err == "norn: error: /some/run/journal.norn: Permission denied\n"


# -- the same as a user without root's powers ---------------------------------------------------
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def nobody_norn():
    """Run ``norn`` as uid/gid 65534 (tests run as root, whom permission bits do not stop)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the CLI as an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="norn-nobody-", dir="/tmp"))
    base.chmod(0o755)  # root's: nobody may look, not write
    # numba's cache (cache=True kernels) must be writable somewhere for that user: its own
    cache = Path(tempfile.mkdtemp(prefix="norn-nobody-cache-", dir="/tmp"))
    os.chown(cache, 65534, 65534)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "HOME": str(cache)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*NOBODY, sys.executable, "-m", "norn.engine.cli", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)

    try:
        probe = run("--help")
        if probe.returncode != 0:
            pytest.skip(f"the unprivileged user cannot run norn here: {probe.stderr[-300:]}")
        yield base, run
    finally:
        shutil.rmtree(base)
        shutil.rmtree(cache)


def test_unprivileged_user_cannot_create_or_write_the_run_directory(nobody_norn):
    base, run = nobody_norn
    out = base / "new" / "run"
    _fails_environment(run("run", "--scenario", "toy", "--ticks", "3", "--out", str(out)),
                       str(out), "cannot create the run directory", "Permission denied")
    assert list(base.iterdir()) == []
    locked = base / "locked"
    locked.mkdir(mode=0o755)  # exists, root's
    _fails_environment(run("run", "--scenario", "toy", "--ticks", "3", "--out", str(locked)),
                       str(locked), "cannot write the run directory", "Permission denied")
    _fails_environment(
        run("run", "--ticks", "1", "--serve", "tcp://127.0.0.1:0", "--out", str(locked)),
        str(locked), "cannot write the run directory", "Permission denied")


def test_unprivileged_replace_over_a_tree_it_cannot_remove(nobody_norn):
    base, run = nobody_norn
    old = base / "old"
    r = norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(old), "--json")
    assert r.returncode == 0, r.stderr
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    _fails_environment(
        run("run", "--scenario", "toy", "--ticks", "3", "--replace", "--out", str(old)),
        str(old), "cannot remove the old run (--replace)", "Permission denied")
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before  # nothing removed
    assert len(journal_digests(old)) == 3
