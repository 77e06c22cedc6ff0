"""One error story, as ``norn`` tells it: each kind of failure ends with one line and its code.

0 ok, 1 divergence, 2 bad input, 3 environment, 4 bug (``engine/errors.py``). Every case
runs the real CLI in a subprocess; failures inside a run are provoked by a canary system
added to the toy world (``World.build`` patched in that process only), and the line must
name what it can: seed, tick, system, table.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from norn.engine.errors import (
    EXIT_BUG,
    EXIT_DIVERGED,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_USER_ERROR,
    BoundError,
    ConfigError,
    DefinitionError,
    Diverged,
    EnvironmentFailure,
    JournalError,
    NornBug,
    NornError,
    ScheduleError,
    SnapshotError,
    StaleEntityError,
    UserError,
    exit_code_for,
)
from tests.helpers import ROOT, norn

SEED = 5


def _toy(tmp_path, walkers: int = 10, capacity: int = 16):
    sc = tmp_path / "toy-small.toml"
    sc.write_text(f'name = "toy-small"\nmodel = "toy"\n[toy]\nwalkers = {walkers}\n'
                  f"capacity = {capacity}\n")
    return str(sc)


def _with_canary(setup: str, *args: str) -> subprocess.CompletedProcess:
    """``norn *args`` in a fresh process whose worlds get ``setup`` run in ``World.build``."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from norn.engine.world import World
        from norn.engine.cli import main

        _build = World.build

        def build(self):
        {setup}
            _build(self)

        World.build = build
        sys.exit(main(sys.argv[1:]))
    """).format(setup=textwrap.indent(textwrap.dedent(setup), "    "))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _last_line(r: subprocess.CompletedProcess, code: int, prefix: str) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(prefix), r.stderr
    return last


def _one_line(r: subprocess.CompletedProcess, code: int) -> str:
    """Exactly one stderr line, ``norn: error: ...``, and no traceback."""
    line = _last_line(r, code, "norn: error: ")
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    return line


def _bug(r: subprocess.CompletedProcess) -> str:
    """Exit 4: the traceback first (a bug report needs it), then ``norn: bug: ...`` last."""
    line = _last_line(r, EXIT_BUG, "norn: bug: ")
    assert "Traceback" in r.stderr and line.endswith("the traceback is above)"), r.stderr
    return line


# -- the table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (Diverged("d"), EXIT_DIVERGED),
        (UserError("u"), EXIT_USER_ERROR),
        (ConfigError("c"), EXIT_USER_ERROR),
        (JournalError("j"), EXIT_USER_ERROR),
        (SnapshotError("s"), EXIT_USER_ERROR),
        (BoundError("x_max", 1, 2), EXIT_USER_ERROR),
        (FileNotFoundError(2, "No such file or directory", "/x"), EXIT_USER_ERROR),
        (EnvironmentFailure("e"), EXIT_ENVIRONMENT),
        (PermissionError(13, "Permission denied", "/x"), EXIT_ENVIRONMENT),
        (NornBug("b"), EXIT_BUG),
        (StaleEntityError("s"), EXIT_BUG),
        (ScheduleError("s"), EXIT_BUG),
        (DefinitionError("d"), EXIT_BUG),
        (ValueError("v"), EXIT_BUG),
        (RuntimeError("r"), EXIT_BUG),
        (AssertionError("a"), EXIT_BUG),
    ],
)
def test_each_class_has_its_exit_code(exc, code):
    assert exit_code_for(exc) == code


def test_context_is_added_outside_in_and_never_overwritten():
    exc = BoundError("capacity", 16, 20, "walker", system="canary.crowd")
    exc.within(seed=SEED, tick=2, system="other")
    assert str(exc) == ("capacity=16 exceeded: 20 requested (walker) "
                        "[seed=5 tick=2 system=canary.crowd]")
    assert (exc.seed, exc.tick, exc.system) == (SEED, 2, "canary.crowd")
    assert exc.table is None and exc.key is None
    with pytest.raises(TypeError, match="unknown error context"):
        NornError("x", where="here")


# -- 0 and 1 ---------------------------------------------------------------------------------
def test_divergence_while_resuming_is_exit_1_naming_seed_and_tick(tmp_path):
    from norn.engine import journal
    from norn.engine.recorder import JOURNAL_NAME, decode_tick, encode_tick

    run_dir = tmp_path / "run"
    r = norn("run", "--scenario", "toy", "--seed", str(SEED), "--ticks", "8", "--snapshot-every",
             "0", "--no-fsync", "--out", str(run_dir), "--json")
    assert r.returncode == EXIT_OK, r.stderr

    def alter(frame):
        if frame.kind != journal.KIND_TICK:
            return None
        rec = decode_tick(frame.payload)
        if rec.tick != 5:
            return None
        rec.digest ^= 1
        return encode_tick(rec)

    other = tmp_path / "other"
    other.mkdir()
    journal.rewrite(run_dir / JOURNAL_NAME, other / JOURNAL_NAME, alter)
    line = _one_line(norn("run", "--resume", "--out", str(other), "--ticks", "1"), EXIT_DIVERGED)
    assert line == (f"norn: error: {other}: replay diverged while resuming; run 'norn replay "
                    f"verify' for details [seed={SEED} tick=5]")


# -- 2: bad input ----------------------------------------------------------------------------
def test_a_table_the_scenario_sized_too_small_is_exit_2_naming_tick_and_system(tmp_path):
    crowd = """
        def crowd(world):
            if world.tick == 2:
                world.tables["walker"].spawn(10)

        self.add_system("canary.crowd", "apply", crowd, writes=("walker.*",),
                        after=("toy.churn",))
    """
    line = _one_line(_with_canary(crowd, "run", "--scenario", _toy(tmp_path), "--seed",
                                  str(SEED), "--ticks", "5", "--out", str(tmp_path / "r")),
                     EXIT_USER_ERROR)
    assert line == ("norn: error: capacity=16 exceeded: 20 requested (walker) "
                    f"[seed={SEED} tick=2 system=canary.crowd]")


def test_a_population_over_capacity_at_build_is_exit_2(tmp_path):
    line = _one_line(norn("run", "--scenario", _toy(tmp_path, walkers=20, capacity=16),
                          "--seed", str(SEED), "--out", str(tmp_path / "r")), EXIT_USER_ERROR)
    assert line.startswith("norn: error: capacity=16 exceeded: 20 requested (walker)")
    assert f"seed={SEED}" in line
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_corrupt_snapshot_is_exit_2_naming_the_file(tmp_path):
    run_dir = tmp_path / "run"
    r = norn("run", "--scenario", "toy", "--ticks", "6", "--snapshot-every", "3", "--no-fsync",
             "--out", str(run_dir), "--json")
    assert r.returncode == EXIT_OK, r.stderr
    snap = sorted((run_dir / "snapshots").iterdir())[-1]
    snap.write_bytes(b"not an arrow file")
    line = _one_line(norn("run", "--resume", "--out", str(run_dir)), EXIT_USER_ERROR)
    assert str(snap) in line and "not a Norn snapshot" in line


def test_a_config_file_that_is_not_toml_is_exit_2_on_resume_too(tmp_path):
    run_dir = tmp_path / "run"
    assert norn("run", "--scenario", "toy", "--ticks", "2", "--no-fsync", "--out", str(run_dir),
                "--json").returncode == EXIT_OK
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[bridge\n")
    for args in (("--scenario", "toy", "--out", str(tmp_path / "x")),
                 ("--resume", "--out", str(run_dir), "--serve", "tcp://127.0.0.1:0")):
        line = _one_line(norn("run", "--config", str(cfg), *args), EXIT_USER_ERROR)
        assert line.startswith(f"norn: error: {cfg}: not valid TOML")


def test_bridge_and_bench_commands_tell_the_same_story(tmp_path):
    r = subprocess.run([sys.executable, "-m", "norn.bridge.cli", "sim-server", "--connect",
                        "tcp://127.0.0.1:9", "--curve-server-key", "k"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert _one_line(r, EXIT_USER_ERROR) == (
        "norn: error: --curve-server-key needs --curve-public and --curve-secret")
    r = norn("sim-server", "--connect", "tcp://127.0.0.1:9", "--curve-server-key", "k")
    assert _one_line(r, EXIT_USER_ERROR).endswith("needs --curve-public and --curve-secret")


# -- 4: bugs ---------------------------------------------------------------------------------
def test_a_system_that_raises_is_exit_4_naming_seed_tick_and_system(tmp_path):
    boom = """
        def boom(world):
            if world.tick == 3:
                raise ValueError("boom")

        self.add_system("canary.boom", "act", boom)
    """
    line = _bug(_with_canary(boom, "run", "--scenario", _toy(tmp_path), "--seed", str(SEED),
                             "--ticks", "5", "--out", str(tmp_path / "r")))
    assert f"ValueError: boom [seed={SEED} tick=3 system=canary.boom]" in line


def test_a_duplicate_table_is_exit_4_naming_the_table_and_seed(tmp_path):
    twice = """
        from norn.engine.table import Column

        self.add_table("walker", [Column("x", np.float32)], 8)
    """
    line = _bug(_with_canary(twice, "run", "--scenario", _toy(tmp_path), "--seed", str(SEED),
                             "--out", str(tmp_path / "r")))
    assert "table 'walker' defined twice" in line and f"seed={SEED}" in line
    assert "DefinitionError" in _with_canary(twice, "run", "--scenario", _toy(tmp_path),
                                             "--out", str(tmp_path / "r2")).stderr


def test_a_duplicate_message_is_exit_4_naming_channel_seed_and_tick(tmp_path):
    dup = """
        def dup(world):
            if world.tick == 2:
                live = world.tables["walker"].handles(world.tables["walker"].live_slots()[:1])
                world.channels["gift"].emit(np.repeat(live, 2), src=np.array([0, 0]),
                                            seq=np.array([7, 7]), amount=np.array([0, 0]))

        self.add_system("canary.dup", "act", dup, writes=("out:gift",), after=("toy.give",))
    """
    line = _bug(_with_canary(dup, "run", "--scenario", _toy(tmp_path), "--seed", str(SEED),
                             "--ticks", "5", "--out", str(tmp_path / "r")))
    assert "channel gift: duplicate (src, seq) = (0, 7)" in line
    assert f"seed={SEED} tick=3" in line  # sent in tick 2, refused when delivered in tick 3


def test_an_unexpected_exception_in_any_command_is_exit_4_not_1(monkeypatch, capsys):
    from norn.engine import cli
    from norn.replays import cli as replays_cli

    def broken(args):
        raise KeyError("header")

    monkeypatch.setattr(replays_cli, "cmd_replay_info", broken)
    assert cli.main(["replay", "info", "/some/run"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1] == (
        "norn: bug: KeyError: 'header' (a bug in Norn or a plugin; the traceback is above)")
