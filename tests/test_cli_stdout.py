"""A reader that stops early (``norn replay info RUN | head``) ends any command quietly.

The dispatcher (``engine/cli.py:run_command``) notices the closed pipe while it can still
handle it: exit 141 (128 + SIGPIPE, what a shell reports), nothing on stderr. The reader is
made to go away deterministically: stdout is a pipe whose read end is already closed, which
is what ``head`` leaves behind once it has its lines.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from norn.engine.cli import EXIT_STDOUT_CLOSED
from tests.helpers import ROOT, norn


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    r = norn("run", "--scenario", "toy", "--ticks", "20", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """``norn *args`` writing to a pipe nobody reads any more (``| head`` after its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "norn.engine.cli", *args], cwd=ROOT,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("cmd", [("replay", "info"), ("replay", "verify"),
                                 ("replay", "info", "--json"), ("replay", "verify", "--json")])
def test_replay_piped_into_a_reader_that_stops_exits_quietly(toy_run, cmd):
    r = _into_closed_pipe(*cmd[:2], str(toy_run), *cmd[2:])
    errors = [line for line in r.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [], r.stderr  # no traceback, no "norn: error: Broken pipe"
    assert r.returncode == EXIT_STDOUT_CLOSED


def test_a_run_piped_into_a_reader_that_stops_exits_quietly_with_its_journal(tmp_path):
    out = tmp_path / "run"
    r = _into_closed_pipe("run", "--scenario", "toy", "--ticks", "5", "--out", str(out), "--json")
    assert (r.returncode, r.stderr) == (EXIT_STDOUT_CLOSED, "")
    v = norn("replay", "verify", str(out))
    assert v.returncode == 0 and "match: 5 ticks" in v.stdout


def test_a_broken_pipe_that_is_not_stdout_is_still_an_environment_failure(monkeypatch, capsys):
    from norn.engine import cli
    from norn.replays import cli as replays_cli

    def peer_gone(args):
        raise BrokenPipeError(32, "Broken pipe")  # a socket or a child's pipe, not our stdout

    monkeypatch.setattr(replays_cli, "cmd_replay_info", peer_gone)
    assert cli.main(["replay", "info", "/some/run"]) == 3
    assert capsys.readouterr().err == "norn: error: Broken pipe\n"
