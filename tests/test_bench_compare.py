"""``norn bench --compare``: a verdict only between runs that measured the same thing.

A baseline from another CPU, core count, numba threading, world size, tick count or mode
(smoke sizes, in-process) is shown beside the new figures with a warning per difference,
and no figure is judged WORSE or BETTER; a case measured at another world size is not
judged either. Software changes (libraries, commit) are what a comparison is for: said,
and judged.
"""

from __future__ import annotations

import copy
import json

import pytest

from norn.bench import cli
from norn.bench.report import render_compare
from norn.bench.stats import compare, differences, summarize

MACHINE = {
    "cpu": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx2", "sse4_2"], "machine": "x86_64",
    "logical_cores": 2, "physical_cores": 1, "usable_cores": 2, "memory_gib": 23.5,
    "system": "Linux 6", "python": "3.11.9", "libraries": {"numpy": "2.0", "numba": "0.60"},
    "numba": {"layer": "omp", "threads": 2}, "thread_env": {},
    "git": {"commit": "a" * 40, "dirty": False},
}
OPTIONS = {"sizes": None, "repeat": None, "ticks": None, "peers": False, "seed": 1,
           "isolated": True, "tiny": False, "quiet_wait_s": 0.0}


def _doc(rate: float, entities: int = 1000) -> dict:
    return {
        "schema": "norn-bench/1", "machine": copy.deepcopy(MACHINE),
        "options": dict(OPTIONS), "triad": {},
        "scenarios": {"scale": {"cases": [{"name": "world", "entities": entities, "figures": {
            "ticks_per_s": summarize([rate * 0.99, rate, rate * 1.01])}}]}},
    }


def _flags(new: dict, base: dict) -> dict[str, str]:
    return {r.key: r.flag for r in compare(new, base)}


def test_the_same_machine_and_options_are_judged():
    assert _flags(_doc(50.0), _doc(100.0)) == {"scale/world/ticks_per_s": "worse"}


@pytest.mark.parametrize(("where", "key", "value"), [
    ("machine", "cpu", "AMD EPYC 9654"),
    ("machine", "logical_cores", 96),
    ("machine", "numba", {"layer": "workqueue", "threads": 1}),
    ("machine", "thread_env", {"OMP_WAIT_POLICY": "passive"}),
    ("options", "sizes", [100000]),
    ("options", "ticks", 50),
    ("options", "tiny", True),
    ("options", "isolated", False),
])
def test_another_machine_size_or_mode_is_warned_about_and_never_judged(where, key, value):
    base = _doc(100.0)
    base[where][key] = value
    new = _doc(50.0)
    assert _flags(new, base) == {"scale/world/ticks_per_s": ""}
    apart, _ = differences(new, base)
    assert len(apart) == 1 and key in apart[0]
    (row,) = compare(new, base)
    assert row.ratio == pytest.approx(0.5) and key in row.unjudged
    text = render_compare(new, base, "base.json")
    assert "WARNING: not comparable: " in text
    assert key in text and "WORSE" not in text and "not judged" in text


def test_a_case_of_another_world_size_is_not_judged():
    (row,) = compare(_doc(50.0, entities=2000), _doc(100.0, entities=1000))
    assert row.flag == "" and "world size" in row.unjudged
    assert "WORSE" not in render_compare(_doc(50.0, entities=2000), _doc(100.0), "b.json")


def test_software_changes_are_said_and_still_judged():
    base = _doc(100.0)
    base["machine"]["libraries"]["numba"] = "0.59"
    base["machine"]["git"]["commit"] = "b" * 40
    new = _doc(50.0)
    apart, changed = differences(new, base)
    assert apart == [] and any("numba" in c for c in changed) and any("commit" in c
                                                                       for c in changed)
    assert _flags(new, base) == {"scale/world/ticks_per_s": "worse"}
    assert "WORSE" in render_compare(new, base, "base.json")


def test_the_cli_warns_on_stderr_and_in_its_json(tmp_path, capsys):
    base = tmp_path / "base.json"
    assert cli.main(["core", "--tiny", "--in-process", "--out", str(base)]) == 0
    capsys.readouterr()
    doc = json.loads(base.read_text())
    doc["machine"]["cpu"] = "Another CPU"
    base.write_text(json.dumps(doc))
    rc = cli.main(["core", "--tiny", "--in-process", "--json", "--compare", str(base),
                   "--out", str(tmp_path / "new.json")])
    out, err = capsys.readouterr()
    assert rc == 0
    result = json.loads(out)
    assert result["compare"] and all(r["flag"] == "" for r in result["compare"])
    assert any("cpu" in d for d in result["compare_not_comparable"])
    assert "is not comparable with this run" in err and "Another CPU" in err
