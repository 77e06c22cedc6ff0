"""The HTML report in a real headless browser (Debian's chromium): it loads offline with
no console errors and every plot draws. A canary page with a script error proves the
check sees console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from norn.replays import report
from tests.test_replay_tools import TICKS, base, plague  # noqa: F401 (module fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary here (CI installs Debian's: .ci/run)")


def render_in_chromium(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages chromium logged."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    return proc.stdout, console


def check_report(page: Path, tmp: Path) -> str:
    """Loads with no console message, and all six plots drew SVG marks."""
    dom, console = render_in_chromium(page, tmp)
    assert console == [], console
    assert 'data-plots="6"' in dom
    for plot in report.PLOTS:
        m = re.search(rf'<figure id="plot-{plot}"[^>]*>(.*?)</figure>', dom, re.S)
        assert m, f"no {plot} figure"
        fig = m.group(0)
        assert 'data-rendered="1"' in fig, f"{plot} did not draw"
        assert "<svg" in fig and ("<path" in fig or "<rect" in fig), f"{plot} drew no marks"
    return dom


@needs_chromium
def test_the_report_renders_in_a_real_browser_with_no_console_errors(plague, tmp_path):  # noqa: F811
    from norn.replays.session import Replay

    page = tmp_path / "report.html"
    with Replay(plague) as r:
        report.report(r, page)
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html  # self-contained: offline
    dom = check_report(page, tmp_path)
    assert "A what-if fork of" in dom and "plague" in dom


@needs_chromium
def test_the_console_check_sees_a_script_error(tmp_path):
    """Canary: a page whose script throws is caught by the same check."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><script>undefinedFunction();</script>"
                    "</body></html>")
    _, console = render_in_chromium(page, tmp_path)
    assert any("undefinedFunction" in line for line in console), console


@pytest.mark.parametrize("points_max", [TICKS + 1, TICKS])
def test_series_keep_at_most_points_max_points(base, points_max, monkeypatch):  # noqa: F811
    """A run of TICKS + 1 ticks (0..TICKS) plots every tick at that bound; one point
    fewer allowed and it is thinned, keeping its first and last tick."""
    from norn.replays.session import Replay

    monkeypatch.setattr(report, "POINTS_MAX", points_max)
    with Replay(base[0]) as r:
        data = report.collect(r)
    for plot in ("population", "prices", "zeny", "ground"):
        xs = data["plots"][plot]["x"]
        assert len(xs) <= points_max and xs[0] == 0 and xs[-1] == TICKS
        assert (len(xs) == TICKS + 1) == (points_max == TICKS + 1)
