"""Result files say which sources they measured (issue 16, "figures you can trust").

``machine.source_tree`` records the commit, whether the sources differ from it (modified,
staged, deleted or untracked files, less what cannot change a figure) and a hash of the
sources on disk; ``norn bench`` warns, on stderr and in the result, when the tree is dirty
or the sources changed while it ran.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from norn.bench import cli
from norn.bench.machine import source_tree
from norn.bench.report import render
from norn.bench.stats import differences


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "engine").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "bench" / "results").mkdir(parents=True)
    (root / "engine" / "tick.py").write_text("X = 1\n")
    (root / "docs" / "benchmarks.md").write_text("# figures\n")
    (root / "bench" / "results" / "scale.json").write_text("{}\n")
    (root / ".gitignore").write_text("runs/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


def test_a_clean_tree_is_clean_and_its_hash_is_stable(repo):
    a, b = source_tree(repo), source_tree(repo)
    assert a["dirty"] is False and a["dirty_paths"] == []
    assert a["source_hash"] == b["source_hash"] and a["source_hash"].startswith("sha256:")
    assert len(a["commit"]) == 40 and a["source_files"] == 2  # engine/tick.py, .gitignore


@pytest.mark.parametrize("change", ["modify", "stage", "delete", "untracked"])
def test_a_changed_source_makes_the_tree_dirty_and_changes_the_hash(repo, change):
    clean = source_tree(repo)
    f = repo / "engine" / "tick.py"
    if change == "modify":
        f.write_text("X = 2\n")
        path = "engine/tick.py"
    elif change == "stage":
        f.write_text("X = 3\n")
        _git(repo, "add", "engine/tick.py")
        path = "engine/tick.py"
    elif change == "delete":
        f.unlink()
        path = "engine/tick.py"
    else:
        (repo / "engine" / "new.py").write_text("Y = 1\n")
        path = "engine/new.py"
    now = source_tree(repo)
    assert now["dirty"] is True and now["dirty_paths"] == [path] and now["dirty_count"] == 1
    assert now["source_hash"] != clean["source_hash"]
    assert now["commit"] == clean["commit"]


def test_results_docs_and_ignored_files_are_not_sources(repo):
    clean = source_tree(repo)
    (repo / "bench" / "results" / "scale.json").write_text('{"new": 1}\n')
    (repo / "docs" / "benchmarks.md").write_text("# regenerated\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "out.json").write_text("{}\n")
    now = source_tree(repo)
    assert now["dirty"] is False and now["source_hash"] == clean["source_hash"]


def test_a_commit_of_docs_only_keeps_the_hash(repo):
    clean = source_tree(repo)
    (repo / "docs" / "benchmarks.md").write_text("# more\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "docs")
    now = source_tree(repo)
    assert now["commit"] != clean["commit"] and now["source_hash"] == clean["source_hash"]


def test_outside_git_the_tree_is_unknown(tmp_path):
    assert source_tree(tmp_path) == {"commit": "unknown", "dirty": None, "source_hash": None}


def _args(**kw) -> argparse.Namespace:
    base = dict(scenario="core", json=False, compare=None, plot=None, peers=False, repeat=None,
                sizes=None, ticks=None, seed=1, out=None, in_process=True, tiny=True,
                quiet_wait=0.0)
    return argparse.Namespace(**{**base, **kw})


def _stub_run(monkeypatch, trees):
    """``norn bench`` with no case run and ``source_tree`` answering ``trees`` in turn."""
    it = iter(trees)
    monkeypatch.setattr(cli, "run_scenario", lambda name, opts: {"cases": [], "goals": [],
                                                                 "checks": []})
    monkeypatch.setattr(cli, "triad_bandwidth", lambda *a: {"gb_per_s": 1.0,
                                                            "gb_per_s_median": 1.0})
    tree = {}

    def fake_tree(*a):
        tree.update(next(it))
        return dict(tree)

    monkeypatch.setattr(cli, "source_tree", fake_tree)
    real_info = cli.machine_info
    monkeypatch.setattr(cli, "machine_info",
                        lambda: {**real_info(), "git": fake_tree()})


DIRTY = {"commit": "a" * 40, "dirty": True, "dirty_count": 2,
         "dirty_paths": ["engine/tick.py", "engine/world.py"], "source_hash": "sha256:1"}
CLEAN = {"commit": "a" * 40, "dirty": False, "dirty_count": 0, "dirty_paths": [],
         "source_hash": "sha256:0"}


def test_norn_bench_warns_loudly_on_a_dirty_tree_and_marks_the_result(
        monkeypatch, tmp_path, capsys):
    _stub_run(monkeypatch, [DIRTY, DIRTY])
    out = tmp_path / "r.json"
    assert cli.cmd_bench(_args(out=str(out)), ["core"]) == 0
    err = capsys.readouterr()
    result = json.loads(out.read_text())
    assert result["machine"]["git"]["dirty"] is True
    (w,) = result["warnings"]
    assert "DIRTY" in w and "engine/tick.py" in w and "sha256:1" in w
    assert err.err.count("norn bench: WARNING: the source tree is DIRTY") == 2  # start, end
    assert "WARNING: the source tree is DIRTY" in err.out  # the report's head too
    assert "+DIRTY" in render(result)


def test_a_clean_run_has_no_warning(monkeypatch, tmp_path, capsys):
    _stub_run(monkeypatch, [CLEAN, CLEAN])
    out = tmp_path / "r.json"
    assert cli.cmd_bench(_args(out=str(out)), ["core"]) == 0
    assert json.loads(out.read_text())["warnings"] == []
    assert "WARNING" not in capsys.readouterr().err


def test_sources_changed_during_the_run_are_warned_about(monkeypatch, tmp_path, capsys):
    _stub_run(monkeypatch, [CLEAN, {**CLEAN, "source_hash": "sha256:2"}])
    out = tmp_path / "r.json"
    cli.cmd_bench(_args(out=str(out)), ["core"])
    (w,) = json.loads(out.read_text())["warnings"]
    assert "changed while the benchmark ran" in w


def test_compare_says_when_two_commits_ran_the_same_sources():
    def doc(commit, h, dirty=False):
        return {"machine": {"git": {"commit": commit, "source_hash": h, "dirty": dirty}}}

    _, changed = differences(doc("b" * 40, "sha256:0"), doc("a" * 40, "sha256:0"))
    assert changed == ["commit: baseline aaaaaaaaaa, now bbbbbbbbbb (the same sources: only "
                       "what cannot change a figure differs)"]
    _, changed = differences(doc("a" * 40, "sha256:1", True), doc("a" * 40, "sha256:0"))
    assert changed == ["sources: baseline sha256:0, now sha256:1",
                       "now: measured on a dirty tree (local changes)"]
