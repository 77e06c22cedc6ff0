"""docs/benchmarks.md's figures are the result files' (issue 16, "figures you can trust").

The page's tables are generated from ``bench/results/*.json`` (``norn bench report
--docs``); this test fails when a generated part differs from its file, or when a line under
"Latest figures" quotes a figure outside a generated part (a figure in no result file).
"""

from __future__ import annotations

import copy
import json

import pytest

from norn.bench import cli
from norn.bench.docs import (
    DOC_PATH,
    DocError,
    check_doc,
    generate,
    load_results,
    render_section,
    si,
)


@pytest.fixture(scope="module")
def results():
    return load_results()


def test_the_page_matches_the_result_files(results):
    problems = check_doc(DOC_PATH.read_text(), results)
    assert not problems, "\n".join(problems) + "\n(run `norn bench report --docs`)"


def test_every_result_file_is_on_the_page(results):
    text = DOC_PATH.read_text()
    for name in results:
        assert f"<!-- bench: {name} -->" in text, name


def test_the_page_quotes_the_files_figures_and_not_the_old_ones(results):
    text = DOC_PATH.read_text()
    rss = results["boltzmann"]["scenarios"]["boltzmann"]["cases"][0]["figures"]["peak_rss_mb"]
    assert f"peak RSS {rss:.0f} MiB" in text  # 509 in the file, not "0.97 GB"
    assert "0.97 GB" not in text and "count 3.2" not in text


def _doc(rss: float = 508.7) -> dict:
    case = {"name": "engine/n=1000", "entities": 1000, "figures": {
        "agent_steps_per_s": {"median": 9.0e7, "min": 8.0e7, "max": 9.5e7, "n": 3},
        "tick_ms_p50": 10.7, "tick_ms_p99": 17.1, "peak_rss_mb": rss, "gini": 0.58,
        "digest_share": 0.23, "efficiency": 0.15},
        "phase_ms": {"deliver": 4.9, "act": 3.1, "commit": 2.5},
        "system_ms": {"boltzmann.give": 3.07, "boltzmann.receive": 0.5},
        "bytes_per_update": 54.1}
    return {"schema": "norn-bench/1", "created": "2026-12-01T00:00:00Z",
            "command": "norn bench boltzmann",
            "machine": {"cpu": "AMD EPYC", "logical_cores": 2,
                        "numba": {"layer": "omp", "threads": 2, "wait_policy": "passive"},
                        "git": {"commit": "a" * 40, "dirty": False,
                                "source_hash": "sha256:" + "b" * 64}},
            "triad": {"gb_per_s": 20.0},
            "scenarios": {"boltzmann": {"cases": [case], "goals": [
                {"name": "g", "value": 9e7, "target": 8e7, "op": ">=", "unit": "x",
                 "met": True}], "checks": []}}}


PAGE = """# Benchmarks

## Latest figures

Prose without figures.

<!-- bench: boltzmann -->
<!-- /bench -->

<!-- bench: goals -->
<!-- /bench -->

## What remains

A figure here (12 ms) is not checked.
"""


def test_generate_fills_the_sections_and_check_accepts_the_result():
    results = {"boltzmann": _doc()}
    page = generate(PAGE, results)
    assert "peak RSS 509 MiB" in page and "sources bbbbbbbbbbbb" in page
    assert "| g | **90M** x | >= 80M | met | `boltzmann.json` |" in page
    assert check_doc(page, results) == []
    assert generate(page, results) == page  # idempotent


def test_a_figure_that_differs_from_its_file_fails():
    page = generate(PAGE, {"boltzmann": _doc()})
    (problem,) = check_doc(page, {"boltzmann": _doc(rss=1000.0)})
    assert "'boltzmann' differs" in problem


def test_a_hand_edited_figure_in_a_section_fails():
    results = {"boltzmann": _doc()}
    page = generate(PAGE, results).replace("peak RSS 509 MiB", "peak RSS 0.97 GB")
    assert check_doc(page, results)


def test_a_figure_outside_the_generated_sections_fails():
    results = {"boltzmann": _doc()}
    page = generate(PAGE, results).replace(
        "Prose without figures.", "Deliver 4.9 ms (count 3.2, receive 0.5).")
    (problem,) = check_doc(page, results)
    assert "outside a generated section" in problem and "count 3.2" in problem


def test_a_section_with_no_result_file_fails():
    with pytest.raises(DocError, match="no result file"):
        render_section("scale", {"boltzmann": _doc()})
    page = PAGE.replace("bench: goals", "bench: nosuch")
    assert "no result file" in check_doc(page, {"boltzmann": _doc()})[0]


@pytest.mark.parametrize("bad", [
    "<!-- bench: a -->\n<!-- bench: b -->\n<!-- /bench -->\n",
    "<!-- /bench -->\n",
    "<!-- bench: a -->\n",
])
def test_malformed_markers_are_refused(bad):
    with pytest.raises(DocError):
        generate(bad, {})


def test_dirty_and_unhashed_results_are_said(results):
    doc = copy.deepcopy(_doc())
    doc["machine"]["git"] = {"commit": "c" * 40, "dirty": True}
    (head, *_), = [render_section("boltzmann", {"boltzmann": doc})]
    assert "**dirty tree**" in head and "source hash not recorded" in head


def test_si():
    assert [si(x) for x in (92255992, 31.4405, 0.165, 9697, 23002229, None, 1.2e9)] == \
        ["92.3M", "31.4", "0.165", "9697", "23M", "-", "1.2G"]


def test_norn_bench_report_check(monkeypatch, tmp_path, capsys):
    import norn.bench.docs as docs

    results_dir = tmp_path / "results"
    results_dir.mkdir()
    (results_dir / "boltzmann.json").write_text(json.dumps(_doc()))
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    monkeypatch.setattr(docs, "DOC_PATH", page)
    monkeypatch.setattr(docs, "RESULTS_DIR", results_dir)
    assert cli.main(["report", "--check"]) == 1  # sections empty: they differ
    assert cli.main(["report", "--docs"]) == 0
    assert "peak RSS 509 MiB" in page.read_text()
    assert cli.main(["report", "--check"]) == 0

