"""``norn run --resume``: every option is honoured or refused, never ignored.

A resumed run is the recorded world going on, so what it was built with (the scenario,
the seed, the tick length, the chunk size, the decision latency, the bounds, the lockstep
servers) cannot change: asking for another value is refused, pointing at what-if forks.
How it goes on (ticks, clock, snapshots, fsync, synctest, timeouts), from the options or
from the ``[run]`` table of ``--config``, is honoured.
"""

from __future__ import annotations

import pytest

from tests.helpers import journal_digests, norn


@pytest.fixture
def toy_run(tmp_path):
    out = tmp_path / "run"
    r = norn("run", "--scenario", "toy", "--ticks", "10", "--snapshot-every", "5", "--out",
             str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out


def _refused(r, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_another_scenario_is_refused_pointing_at_forks(toy_run):
    before = journal_digests(toy_run)
    _refused(norn("run", "--out", str(toy_run), "--resume", "--scenario", "boltzmann",
                  "--ticks", "2"), "--scenario boltzmann", "'toy'", "norn replay fork")
    assert journal_digests(toy_run) == before  # nothing ran


def test_the_recorded_scenario_named_again_is_fine(toy_run):
    r = norn("run", "--out", str(toy_run), "--resume", "--scenario", "toy", "--ticks", "2",
             "--json")
    assert r.returncode == 0, r.stderr
    assert max(journal_digests(toy_run)) == 12


def test_replace_and_resume_together_are_refused(toy_run):
    before = journal_digests(toy_run)
    _refused(norn("run", "--out", str(toy_run), "--resume", "--replace", "--ticks", "2"),
             "--replace", "--resume")
    assert journal_digests(toy_run) == before


@pytest.mark.parametrize(("option", "value"), [("--seed", "9"), ("--tick-ms", "50")])
def test_options_that_built_the_world_are_refused(toy_run, option, value):
    _refused(norn("run", "--out", str(toy_run), "--resume", option, value, "--ticks", "2"),
             option.strip("-").replace("-", "_"), "norn replay fork")
    r = norn("run", "--out", str(toy_run), "--resume", "--seed", "1", "--ticks", "2", "--json")
    assert r.returncode == 0, r.stderr  # the recorded value, named again: fine


@pytest.mark.parametrize(("key", "value"), [("chunk_rows", "512"), ("decision_latency_ticks", "3"),
                                            ("seed", "9"), ("actions_per_tick_max", "1000")])
def test_config_file_keys_that_built_the_world_are_refused(toy_run, tmp_path, key, value):
    cfg = tmp_path / "resume.toml"
    cfg.write_text(f"[run]\n{key} = {value}\n")
    before = journal_digests(toy_run)
    _refused(norn("run", "--out", str(toy_run), "--resume", "--config", str(cfg), "--ticks", "2"),
             key, "norn replay fork")
    assert journal_digests(toy_run) == before


def test_snapshot_every_is_honoured_on_resume(toy_run):
    r = norn("run", "--out", str(toy_run), "--resume", "--ticks", "6", "--snapshot-every", "2",
             "--json")
    assert r.returncode == 0, r.stderr
    snaps = sorted(p.name for p in (toy_run / "snapshots").iterdir())
    assert snaps == [f"tick-{t:09d}.arrow" for t in (5, 10, 12, 14, 16)]


def test_the_config_files_run_table_is_honoured_on_resume(toy_run, tmp_path):
    cfg = tmp_path / "resume.toml"
    cfg.write_text("[run]\nticks = 16\nsnapshot_every = 3\nseed = 1\n")  # seed as recorded
    r = norn("run", "--out", str(toy_run), "--resume", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    assert max(journal_digests(toy_run)) == 16  # the file's length, not the recorded 10
    snaps = sorted(p.name for p in (toy_run / "snapshots").iterdir())
    assert snaps == [f"tick-{t:09d}.arrow" for t in (5, 10, 12, 15)]
    v = norn("replay", "verify", str(toy_run))
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_bad_value_in_the_config_file_is_refused_on_resume(toy_run, tmp_path):
    cfg = tmp_path / "resume.toml"
    cfg.write_text("[run]\nsnapshot_every = -1\n")
    _refused(norn("run", "--out", str(toy_run), "--resume", "--config", str(cfg)),
             "snapshot_every")
