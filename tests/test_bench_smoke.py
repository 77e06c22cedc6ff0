"""Every ``norn bench`` scenario runs once at tiny size, so the benchmarks never rot.

No test here asserts a duration: speed goals are checked by ``norn bench`` and recorded
in docs/benchmarks.md, never by timing assertions in tests. The peers need their own
virtual environments (pip, network), so they are not run here.
"""

from __future__ import annotations

import json

import pytest

from bench import cli
from bench.stats import compare, summarize

SCENARIOS = ("core", "scale", "actors", "journal", "bridge", "boltzmann")


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "all.json"
    png = out.with_suffix(".png")
    rc = cli.main(["all", "--tiny", "--in-process", "--out", str(out), "--plot", str(png)])
    return rc, json.loads(out.read_text()), png


def test_all_scenarios_run_and_pass_their_checks(tiny_result):
    rc, result, _ = tiny_result
    assert rc == 0
    assert set(result["scenarios"]) == set(SCENARIOS)
    for name, scen in result["scenarios"].items():
        assert scen["cases"], name
        for check in scen.get("checks", []):
            assert check["ok"], check


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_case_has_figures_or_says_why_not(tiny_result, scenario):
    _, result, _ = tiny_result
    for case in result["scenarios"][scenario]["cases"]:
        if case.get("available", True):
            assert case["figures"], case["name"]
        else:
            assert "not available yet" in case["reason"]


def test_result_records_the_machine(tiny_result):
    _, result, _ = tiny_result
    m = result["machine"]
    for key in ("cpu", "cpu_flags", "logical_cores", "memory_gib", "libraries", "numba", "git"):
        assert key in m, key
    assert m["numba"]["threads"] >= 1 and m["numba"]["layer"]
    assert result["triad"]["gb_per_s"] > 0


def test_boltzmann_reports_rates_ratios_and_the_goal(tiny_result):
    _, result, _ = tiny_result
    scen = result["scenarios"]["boltzmann"]
    names = [c["name"].split("/")[0] for c in scen["cases"]]
    assert names == ["engine", "ceiling", "numba-rng", "numpy"]
    engine = scen["cases"][0]
    assert {"ticks_per_s", "agent_steps_per_s", "tick_ms_p50", "tick_ms_p99", "peak_rss_mb",
            "gini", "efficiency", "digest_share"} <= set(engine["figures"])
    assert engine["phase_ms"] and engine["system_ms"]
    assert any(k.startswith("engine / ceiling") for k in scen["ratios"])


def test_plot_is_written(tiny_result):
    _, _, png = tiny_result
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_against_itself_flags_nothing(tiny_result, tmp_path, capsys):
    _, result, _ = tiny_result
    rows = compare(result, result)
    assert rows and all(r.ratio in (1.0, None) and not r.flag for r in rows)


def test_compare_flags_a_change_beyond_the_noise():
    def doc(median):
        return {"scenarios": {"s": {"cases": [{"name": "c", "figures": {
            "ticks_per_s": summarize([median * 0.99, median, median * 1.01]),
            "tick_ms_p99": 10.0}}]}}}

    rows = {r.key: r for r in compare(doc(50.0), doc(100.0))}
    assert rows["s/c/ticks_per_s"].flag == "worse"
    assert rows["s/c/tick_ms_p99"].flag == ""
    rows = {r.key: r for r in compare(doc(101.0), doc(100.0))}
    assert rows["s/c/ticks_per_s"].flag == ""  # within the measured noise


def test_cli_json_and_compare(tmp_path, capsys):
    base = tmp_path / "base.json"
    assert cli.main(["core", "--tiny", "--in-process", "--out", str(base)]) == 0
    capsys.readouterr()
    rc = cli.main(["core", "--tiny", "--in-process", "--json", "--compare", str(base),
                   "--out", str(tmp_path / "new.json")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "norn-bench/1" and doc["compare"]


def test_norn_bench_is_registered():
    from engine.cli import build_parser

    args = build_parser().parse_args(["bench", "boltzmann", "--peers", "--sizes", "1000"])
    assert args.scenario == "boltzmann" and args.peers and args.sizes == [1000]
