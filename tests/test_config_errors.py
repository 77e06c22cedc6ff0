"""Misspelled keys are named, with the key meant, wherever a TOML table is validated.

Every problem is its own line (no "(and 1 more)"); an unknown key gets the close match among
the keys allowed in its table, and when that key is required and missing the two errors
are said once, as the one typo they are (``engine/config.py:format_validation_error``).
The ``[bridge]`` table of ``--config`` is checked on every run, served or not.
"""

from __future__ import annotations

import copy

import pytest

from norn.actors.midgard import load
from norn.engine.config import make_config
from norn.engine.errors import ConfigError
from norn.engine.scenario import load_scenario
from tests.helpers import journal_digests, norn


@pytest.fixture(scope="module")
def midgard() -> dict:
    return load_scenario("midgard").data


def _err(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(data, "bad.toml")
    return str(exc.value).splitlines()


def test_a_misspelled_required_key_is_named_with_the_key_meant(midgard):
    data = copy.deepcopy(midgard)
    data["world"]["terain_seed"] = data["world"].pop("terrain_seed")
    assert _err(data) == [
        "bad.toml: world.terain_seed: unknown key; did you mean 'terrain_seed' (required)?"]


def test_every_problem_is_named_each_on_its_line(midgard):
    data = copy.deepcopy(midgard)
    data["world"]["terain_seed"] = data["world"].pop("terrain_seed")
    data["rules"]["npc"]["hungr_per_tick"] = data["rules"]["npc"].pop("hunger_per_tick")
    data["quests"][0]["idd"] = data["quests"][0].pop("id")
    data["maps"][2]["warps"][0]["x"] = -4
    lines = _err(data)
    assert len(lines) == 4, lines
    assert not any("more)" in line for line in lines)
    assert "bad.toml: world.terain_seed: unknown key; did you mean 'terrain_seed' (required)?" \
        in lines
    assert ("bad.toml: rules.npc.hungr_per_tick: unknown key; did you mean 'hunger_per_tick' "
            "(required)?") in lines
    assert "bad.toml: quests[0].idd: unknown key; did you mean 'id' (required)?" in lines
    assert any(line.startswith("bad.toml: maps[2].warps[0].x: ") for line in lines)


def test_an_unknown_key_with_no_close_match_and_the_missing_one_are_both_named(midgard):
    data = copy.deepcopy(midgard)
    data["rules"]["npc"]["xyzzy"] = data["rules"]["npc"].pop("hunger_per_tick")
    lines = _err(data)
    assert "bad.toml: rules.npc.hunger_per_tick: required key is missing" in lines
    assert any(line.startswith("bad.toml: rules.npc.xyzzy: unknown key") for line in lines)


def test_a_misspelled_optional_key_gets_the_key_meant(midgard):
    data = copy.deepcopy(midgard)
    data["descripton"] = "typo"
    assert _err(data) == ["bad.toml: descripton: unknown key; did you mean 'description'?"]
    with pytest.raises(ConfigError, match=r"tikcs: unknown key; did you mean 'ticks'\?"):
        make_config(None, tikcs=3)


def test_toy_and_config_tables_suggest_too(tmp_path):
    sc = tmp_path / "t.toml"
    sc.write_text('name = "t"\nmodel = "toy"\n[toyy]\nwalkers = 3\n')
    r = norn("run", "--scenario", str(sc), "--ticks", "1", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "toyy: unknown key; did you mean 'toy'?" in r.stderr, r.stderr
    sc.write_text('name = "t"\nmodel = "toy"\n[toy]\nwalkres = 3\n')
    r = norn("run", "--scenario", str(sc), "--ticks", "1", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "walkres: unknown key; did you mean 'walkers'?" in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text("[runn]\nticks = 3\n")
    r = norn("run", "--scenario", "toy", "--config", str(cfg), "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "runn: unknown key; did you mean 'run'?" in r.stderr
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_bridge_table_typo_is_refused_without_serve(tmp_path):
    cfg = tmp_path / "norn.toml"
    cfg.write_text("[bridge]\nframe_byts_max = 100000\n")
    out = tmp_path / "runs" / "r"
    r = norn("run", "--scenario", "toy", "--ticks", "2", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert (f"{cfg}: [bridge]: frame_byts_max: unknown key; did you mean 'frame_bytes_max'?"
            in r.stderr), r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_bridge_table_typo_is_refused_on_resume_too(tmp_path):
    out = tmp_path / "run"
    assert norn("run", "--scenario", "toy", "--ticks", "3", "--out", str(out),
                "--json").returncode == 0
    cfg = tmp_path / "norn.toml"
    cfg.write_text("[bridge]\nservers_mx = 3\n")
    r = norn("run", "--out", str(out), "--resume", "--ticks", "2", "--config", str(cfg))
    assert r.returncode == 2 and "servers_mx: unknown key; did you mean 'servers_max'?" \
        in r.stderr, r.stderr
    assert max(journal_digests(out)) == 3


def test_bridge_config_names_every_problem():
    from norn.bridge.config import BridgeConfig

    with pytest.raises(ConfigError) as exc:
        BridgeConfig(frame_byts_max=1, servers_max=0)
    lines = str(exc.value).splitlines()
    assert "[bridge]: frame_byts_max: unknown key; did you mean 'frame_bytes_max'?" in lines
    assert any(line.startswith("[bridge]: servers_max: ") for line in lines)
