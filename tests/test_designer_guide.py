"""docs/designers.md, walked exactly as written: every ``$ norn ...`` line of its console
blocks through the real CLI in a fresh directory, in order, then its Python block in a
fresh interpreter, then the report it makes in a real headless browser. If the guide and
the tools disagree, this fails (SimPy's habit: documentation examples are tests)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.test_replay_report import CHROMIUM, check_report

GUIDE = ROOT / "docs" / "designers.md"


def guide_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the guide, in order."""
    return [(m.group(1), m.group(2))
            for m in re.finditer(r"```(\w+)\n(.*?)```", GUIDE.read_text(), re.S)]


def guide_commands() -> list[list[str]]:
    return [shlex.split(line[2:]) for lang, text in guide_blocks() if lang == "console"
            for line in text.splitlines() if line.startswith("$ ")]


def test_the_guide_names_each_step_of_the_walk():
    verbs = [c[1] if c[1] != "replay" else f"replay {c[2]}" for c in guide_commands()]
    for step in ("run", "replay show", "replay timeline", "replay fork", "replay diff",
                 "replay query", "replay export", "replay report"):
        assert step in verbs, step
    assert [lang for lang, _ in guide_blocks()].count("python") == 1


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary here (CI installs Debian's)")
def test_walk_the_designers_guide(tmp_path):
    out: dict[str, str] = {}
    for argv in guide_commands():
        assert argv[0] == "norn"
        proc = subprocess.run([sys.executable, "-m", "norn.engine.cli", *argv[1:]],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
        out[shlex.join(argv[1:3])] = out.get(shlex.join(argv[1:3]), "") + proc.stdout
    assert "payon" in out["replay show"] and "Payon Archers" in out["replay show"]
    assert "hazard" in out["replay timeline"] and "input" in out["replay timeline"]
    assert "forked runs/base at tick 60" in out["replay fork"]
    assert "first divergence: tick 61, table 'hazard'" in out["replay diff"]
    assert "base" in out["replay query"] and "plague" in out["replay query"]
    assert (tmp_path / "plague-parquet" / "tables" / "npc.parquet").is_file()
    (python,) = [text for lang, text in guide_blocks() if lang == "python"]
    proc = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    fleeing, markets, plagues, hazards, decisions = (int(x) for x in proc.stdout.split())
    assert fleeing >= 0
    assert markets == 81 and plagues == 1 and hazards >= 1 and decisions > 0
    check_report(Path(tmp_path / "plague.html"), tmp_path)
