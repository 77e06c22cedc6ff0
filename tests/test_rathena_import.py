"""``norn scenario import --rathena DIR`` (issue 14): worlds from an operator's rAthena data.

The files are read in place from ``../shared/rathena-data`` (or ``NORN_RATHENA_DATA``),
never copied; the tests that need them skip with the reason when the folder is absent.
A subset of maps keeps ``make test`` fast; the full import runs from the CLI the same way.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from norn.actors.midgard import rathena as ra
from norn.actors.midgard.importer import import_scenario
from norn.actors.midgard.schema import decode_cells
from norn.engine.scenario import parse_scenario
from tests.helpers import ROOT, norn
from tests.test_world_invariants import build, exploit_sell, run_checked

DATA = Path(os.environ.get("NORN_RATHENA_DATA", ROOT.parent / "shared" / "rathena-data"))
needs_data = pytest.mark.skipif(
    not (DATA / "db" / "map_index.txt").is_file(),
    reason=f"rAthena data not found at {DATA} (set NORN_RATHENA_DATA to an rAthena checkout)",
)
#: Prontera, Izlude, their fields and Prontera's buildings: three towns, real grids
MAPS = "prontera,prt_fild0*,izlude,prt_in,prt_church"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    if not (DATA / "db" / "map_index.txt").is_file():
        pytest.skip(f"rAthena data not found at {DATA}")
    out = tmp_path_factory.mktemp("rathena") / "imported.toml"
    r = norn("scenario", "import", "--rathena", str(DATA), "--out", str(out), "--maps", MAPS,
             "--npcs", "400", "--json")
    assert r.returncode == 0, r.stderr
    assert '"towns": 3' in r.stdout, r.stdout
    return out


@needs_data
def test_imported_world_runs_and_verifies(imported, tmp_path):
    run = tmp_path / "run"
    r = norn("run", "--scenario", str(imported), "--ticks", "40", "--clock", "fast",
             "--no-fsync", "--out", str(run))
    assert r.returncode == 0, r.stderr
    v = norn("replay", "verify", str(run))
    assert v.returncode == 0, v.stdout + v.stderr
    assert "every digest equal" in v.stdout


@needs_data
def test_imported_world_keeps_every_invariant_every_tick(imported):
    world, source = build(parse_scenario(imported.read_text(), str(imported)), seed=3)
    seen = run_checked(world, source, 40)
    assert "move_npc" in seen, seen


@needs_data
def test_imported_maps_are_rathenas_real_cells_and_warps(imported):
    data = tomllib.loads(imported.read_text())
    grids = ra.read_map_cache(DATA, "re")
    maps = {m["name"]: m for m in data["maps"]}
    assert {"prontera", "izlude", "prt_fild08"} <= set(maps)
    for name in ("prontera", "izlude"):
        g, m = grids[name], maps[name]
        assert (m["width"], m["height"]) == (g.width, g.height)
        cells = decode_cells(m["walk"]["cells"], g.width, g.height).reshape(g.height, g.width)
        real = g.walkable()
        assert not (cells & ~real).any()  # never opens a cell rAthena blocks
        assert cells.sum() > 0.8 * real.sum()  # closes only pockets no warp reaches
    # Prontera's south gate leads to prt_fild08, as in npc/warps/cities/prontera.txt
    assert any(w["to"] == "prt_fild08" for w in maps["prontera"]["warps"])
    # towns come from the shop scripts; indoor shops trade in their town
    towns = {t["map"] for t in data["towns"]}
    assert "prontera" in towns and "prt_in" not in towns
    # Red Potion: the item database's price; its sell price keeps the exploit floor
    items = {it["id"]: it for it in data["items"]}
    assert items[501]["name"] == "Red Potion" and items[501]["sell_zeny"] >= 0
    # what was left out or changed is written where the operator reads it
    text = imported.read_text()
    assert text.startswith("# A Norn world imported from rAthena's data")
    assert "Left out or changed" in text


@needs_data
def test_imported_prices_start_at_or_above_the_exploit_floor(imported):
    world, _ = build(parse_scenario(imported.read_text(), str(imported)), seed=3)
    st = world.resources["midgard"]
    n = len(st.market_map)
    price = world.tables["market"]["price"][:n].astype(np.int64)
    assert not (price * 75 < exploit_sell(st.spec)[st.market_item] * 124).any()


@needs_data
def test_unknown_map_pattern_is_a_config_error(tmp_path):
    r = norn("scenario", "import", "--rathena", str(DATA), "--out", str(tmp_path / "x.toml"),
             "--maps", "no_such_map*")
    assert r.returncode == 2, r.stderr
    assert "no_such_map*" in r.stderr


def test_not_a_checkout_is_a_config_error(tmp_path):
    r = norn("scenario", "import", "--rathena", str(tmp_path), "--out", str(tmp_path / "x.toml"))
    assert r.returncode == 2, r.stderr
    assert "map_index.txt" in r.stderr


def test_malformed_operator_files_name_file_and_line(tmp_path):
    bad = tmp_path / "npc" / "warps.txt"
    bad.parent.mkdir()
    bad.write_text("// warps\nprontera,156,22,0\twarp\tprt001\t3,2,prt_fild08,170\n")
    with pytest.raises(ra.RathenaDataError, match=r"warps.txt:2: warp: expected 'xs,ys,map"):
        ra._read_script(bad, ra.Scripts())
    idx = tmp_path / "db" / "map_index.txt"
    idx.parent.mkdir()
    idx.write_text("prontera 1\nizlude two\n")
    with pytest.raises(ra.RathenaDataError, match=r"map_index.txt:2: expected 'mapname"):
        ra.read_map_index(tmp_path)
    db = tmp_path / "db" / "re" / "item_db_etc.yml"
    db.parent.mkdir()
    db.write_text("Body:\n  - Id: 909\n    AegisName: Jellopy\n    Buy: -6\n")
    with pytest.raises(ra.RathenaDataError, match=r"item_db_etc.yml:4: Buy: -6 is negative"):
        ra.read_items(tmp_path, "re")
    cache = tmp_path / "db" / "map_cache.dat"
    cache.write_bytes(b"\x10\x00\x00\x00\x01\x00\x00\x00" + b"x" * 8)
    with pytest.raises(ra.RathenaDataError, match=r"map_cache\.dat: map 0 of 1: header past"):
        ra.read_map_cache(tmp_path, "re")


def test_script_reader_skips_script_bodies_and_reads_spawns(tmp_path):
    f = tmp_path / "mix.txt"
    f.write_text(
        "prontera,150,150,0\tscript\tGuide\t105,{\n"
        "\tmes \"prontera,1,1,0\twarp\tx\t1,1,izlude,5,5\";\n"
        "}\n"
        "/* prontera,1,1,0\twarp\tx\t1,1,izlude,5,5 */\n"
        "prt_fild08,0,0\tmonster\tPoring\t1002,60,5000\n"
        "amicitia1\tmonster\tAmitera\tAMITERA,55\n"
        "alberta_in,182,97,0\tshop\tTool Dealer#alb2\t73,1750:-1,501:50\n"
    )
    out = ra.Scripts()
    ra._read_script(f, out)
    assert out.warps == []
    assert [(s.map, s.mob, s.amount) for s in out.spawns] == [
        ("prt_fild08", 1002, 60), ("amicitia1", "AMITERA", 55)]
    assert out.shops[0].items == (("1750", -1), ("501", 50))


def test_import_needs_no_copy_of_the_data_in_the_repository():
    """The fixtures are read in place: nothing under the repository holds rAthena's files."""
    names = {"map_cache.dat", "item_db_usable.yml", "item_db_etc.yml", "mob_db.yml",
             "quest_db.yml", "map_index.txt"}
    found = [p for p in ROOT.rglob("*") if p.name in names and ".venv" not in p.parts]
    assert not found, found


def test_import_function_refuses_a_missing_folder(tmp_path):
    from norn.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="rAthena checkout"):
        import_scenario(tmp_path / "nope")
