"""Every ``norn bench`` scenario runs once at tiny size, so the benchmarks never rot.

No test here asserts a duration: speed goals are checked by ``norn bench`` and recorded
in docs/benchmarks.md, never by timing assertions in tests. The peers need their own
virtual environments (pip, network), so they are not run here.
"""

from __future__ import annotations

import json
import os
import subprocess

import numba
import numpy as np
import psutil
import pytest

from norn.bench import cli
from norn.bench.machine import ROOT
from norn.bench.stats import compare, summarize
from norn.engine import threads
from norn.engine.fingerprint import all_cpu_flags, cpu_model

SCENARIOS = ("core", "scale", "actors", "journal", "bridge", "boltzmann", "startup")


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
    # the record says what this machine and process are (the bench ran in-process)
    assert m["cpu"] == cpu_model()
    assert m["cpu_flags"] == all_cpu_flags()
    assert m["logical_cores"] == os.cpu_count()
    assert m["memory_gib"] == round(psutil.virtual_memory().total / 2**30, 2)
    assert m["libraries"]["numpy"] == np.__version__
    assert m["libraries"]["numba"] == numba.__version__
    chosen = threads.describe()
    assert m["numba"] == {"layer": numba.threading_layer(), "threads": numba.get_num_threads(),
                          "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                          "chosen_by": chosen["chosen_by"]}
    if chosen["chosen_by"] == {"layer": "norn", "wait_policy": "norn"}:  # no operator choice
        assert (m["numba"]["layer"], m["numba"]["wait_policy"]) == (threads.LAYER,
                                                                    threads.WAIT_POLICY)
    commit = m["git"]["commit"]
    kind = subprocess.run(["git", "cat-file", "-t", commit], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert kind.stdout.strip() == "commit", commit  # a commit of this repository
    # the triad: STREAM's byte count, and the best pass (the figure) is at least the median
    t = result["triad"]
    assert (t["elements"], t["repeat"], t["bytes_per_pass"]) == (1 << 20, 3, 24 << 20)
    assert t["gb_per_s"] >= t["gb_per_s_median"] > 0


def test_boltzmann_reports_rates_ratios_and_the_goal(tiny_result):
    _, result, _ = tiny_result
    scen = result["scenarios"]["boltzmann"]
    names = [c["name"].split("/")[0] for c in scen["cases"]]
    assert names == ["engine", "ceiling", "numba-rng", "numpy"]
    engine = scen["cases"][0]
    fig = engine["figures"]
    n = engine["entities"]
    # an agent-step is one agent in one tick: the rate is the tick rate times the agents
    assert fig["agent_steps_per_s"]["median"] == pytest.approx(
        fig["ticks_per_s"]["median"] * n, rel=1e-5)
    assert fig["total_wealth"] == n  # one coin each, conserved
    assert 0 < fig["digest_share"] < 1 and 0 < fig["gini"] < 1
    assert set(engine["phase_ms"]) == {"ingest", "deliver", "act", "decide", "apply", "emit",
                                       "commit"}
    # every system of the schedule is timed, the engine's own steps included
    assert set(engine["system_ms"]) == {
        "boltzmann.give", "engine.drain_inputs", "engine.deliver_messages",
        "engine.submit_decisions", "engine.settle_decisions", "engine.sync_spawns",
        "engine.number_actions", "engine.digest_state"}
    # every ratio is the engine's rate over the other case's, for each other case
    e_rate = fig["agent_steps_per_s"]["median"]
    assert scen["ratios"] == {
        f"engine / {c['name']}": round(e_rate / c["figures"]["agent_steps_per_s"]["median"], 3)
        for c in scen["cases"][1:]
    }


def test_startup_reports_cold_and_warm_starts(tiny_result):
    _, result, _ = tiny_result
    (case,) = result["scenarios"]["startup"]["cases"]
    fig = case["figures"]
    assert (case["cold"], case["warm"]) == (1, 1)
    for kind in ("cold", "warm"):
        assert fig[f"{kind}_s"]["n"] == 1 and fig[f"{kind}_s"]["median"] > 0
        assert fig[f"{kind}_cpu_s"]["median"] > 0
    # an empty cache compiles inside the first tick; the run's report says how long
    assert fig["cold_tick_compile_s"]["median"] > 0


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
    from norn.engine.cli import build_parser

    args = build_parser().parse_args(["bench", "boltzmann", "--peers", "--sizes", "1000"])
    assert args.scenario == "boltzmann" and args.peers and args.sizes == [1000]


def test_bridge_reports_burst_sustained_and_both_round_trips_apart(tiny_result):
    _, result, _ = tiny_result
    scen = result["scenarios"]["bridge"]
    by = {c["name"].split("/")[0]: c for c in scen["cases"]
          if not c["name"].startswith("rtt-engine/npcs=")}
    assert set(by) == {"ingest", "sustained", "rtt-standin", "rtt-engine"}
    s = by["sustained"]
    f = s["figures"]
    # the client sent into the generated world for the whole window; the world applied
    # events in ticks it committed (journal + fsync), at some fraction of the asked rate
    assert s["journal"] and s["fsync"] and s["seconds"] == 3.0 and s["window_s"] > 0
    assert f["events_per_s"] > 0 and s["events_applied_total"] > 0
    assert f["ticks_per_s_requested"] == 1000 / s["tick_ms"]
    assert f["tick_rate_kept"] == pytest.approx(f["ticks_per_s"] / f["ticks_per_s_requested"],
                                                abs=1e-3)
    assert s["bytes_per_update"] > 0 and "efficiency" in f
    assert s["server"]["events_rejected"] == 0
    assert "sustained" in s["kind"] and "burst" in by["ingest"]["kind"]
    # the round trip: the stand-in says it is one; the real engine lost nothing
    assert "stand-in" in by["rtt-standin"]["kind"] and "stand-in" in by["rtt-standin"]["engine"]
    e = by["rtt-engine"]
    assert e["fsync"] and e["journal"] and e["figures"]["lost"] == 0
    assert e["run"]["received"] == e["run"]["events"]
    # it is the default world as operators run it (issue 16), its tick rate beside it; the
    # generated world's case says whether it kept its rate (no goal when it did not)
    assert e["world"] == "midgard" and e["name"].startswith("rtt-engine/world=midgard/")
    assert 1000 < e["entities"] < 100_000 and "midgard.toml" in e["kind"]
    assert e["figures"]["ticks_per_s_requested"] == 10 and e["figures"]["ticks_per_s"] > 0
    g = next(c for c in scen["cases"] if c["name"].startswith("rtt-engine/npcs="))
    assert g["world"] == "generated" and g["figures"]["lost"] == 0
    assert g["overloaded"] == (g["figures"]["tick_rate_kept"] < 0.95)
    assert ("OVERLOADED" in g["kind"]) == g["overloaded"]
    assert (not g["overloaded"]) == any(f"{g['entities']}-NPC" in x["name"]
                                        for x in scen["goals"])
    goals = [g["name"] for g in scen["goals"]]
    assert any("sustained" in g for g in goals) and any("real engine" in g for g in goals)
    assert any("stand-in" in g for g in goals) and any("burst" in g for g in goals)


def test_every_world_figure_has_bytes_per_update_and_triad_share(tiny_result):
    _, result, _ = tiny_result
    scen = result["scenarios"]
    world_cases = [*scen["core"]["cases"], *scen["scale"]["cases"],
                   scen["boltzmann"]["cases"][0],  # the engine; the others are no world
                   *[c for c in scen["actors"]["cases"]
                     if "entity_updates_per_s" in c["figures"]],
                   *[c for c in scen["bridge"]["cases"]
                     if c["name"].startswith(("sustained/", "rtt-engine/"))]]
    world_cases = [c for c in world_cases if c.get("available", True)]  # no data: said why
    assert len(world_cases) >= 9
    for c in world_cases:
        assert c["bytes_per_update"] > 0, c["name"]
        assert c["figures"]["efficiency"] >= 0, c["name"]


def test_the_goal_against_the_fastest_hand_written_names_the_winner():
    from norn.bench.suite import vs_fastest_hand_written

    def case(name, rate):
        return {"name": f"{name}/n=1000000", "figures": {"agent_steps_per_s": {"median": rate}}}

    engine = case("engine", 120e6)
    group = [engine, case("ceiling", 80e6), case("numba-rng", 70e6), case("numpy", 125e6),
             case("mesa", 1e9)]  # a peer is not hand-written, however fast
    g = vs_fastest_hand_written(engine, group)
    assert g["against"] == "numpy/n=1000000" and g["value"] == 0.96 and g["met"] is False
    assert g["target"] == 1.0 and g["op"] == ">="
    group[3] = case("numpy", 100e6)
    g = vs_fastest_hand_written(engine, group)
    assert g["against"] == "numpy/n=1000000" and g["value"] == 1.2 and g["met"] is True
