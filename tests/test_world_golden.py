"""The default world's per-tick digests, pinned: a change in behaviour shows up as a diff.

``tests/golden/midgard_digests_300.txt`` holds the digest of every tick of 300 ticks of the
embedded Rune-Midgarts scenario (seed 1, its own player event source). Refactors must leave
it byte-identical; an intended change of behaviour regenerates it with
``NORN_UPDATE_GOLDEN=1`` and says in its commit why the digests moved.
"""

from __future__ import annotations

import os

from tests.helpers import ROOT, journal_digests, norn

GOLDEN = ROOT / "tests" / "golden" / "midgard_digests_300.txt"


def test_default_world_digests_over_300_ticks_equal_the_golden_file(tmp_path):
    out = tmp_path / "run"
    r = norn("run", "--ticks", "300", "--clock", "fast", "--no-fsync", "--out", str(out),
             "--json")
    assert r.returncode == 0, r.stderr
    digests = journal_digests(out)
    text = "".join(f"{t} {d:016x}\n" for t, d in sorted(digests.items()))
    if os.environ.get("NORN_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "world digests changed: see the module docstring"
