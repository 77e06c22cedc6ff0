"""The headless-browser check of HTML reports (Debian's chromium): a page loads with no
console message and every plot draws. A canary page with a script error proves the check
sees console errors. The report of a real run is checked in test_replay_tools.py (beside
the recorded runs it reads) and in test_designer_guide.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from norn.replays import report

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
def test_the_console_check_sees_a_script_error(tmp_path):
    """Canary: a page whose script throws is caught by the same check."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><script>undefinedFunction();</script>"
                    "</body></html>")
    _, console = render_in_chromium(page, tmp_path)
    assert any("undefinedFunction" in line for line in console), console
