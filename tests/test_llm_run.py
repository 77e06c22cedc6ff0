"""``norn run --llm``: the tier behind the decision seam, journaled, replayed without it."""

from __future__ import annotations

import orjson

from norn.engine.decisions import (
    SOURCE_RESOLVER,
    TIER_BATCH,
    TIER_CACHE,
    TIER_FALLBACK,
    TIER_SINGLE,
)
from norn.engine.reader import open_run
from tests.helpers import norn


def _run(*args: str):
    r = norn("run", "--clock", "fast", "--no-fsync", "--json", "--llm", "default", *args)
    assert r.returncode == 0, r.stderr
    return orjson.loads(r.stdout)


def test_a_run_through_the_llm_tier_reports_its_tiers_and_replays_without_a_provider(
        tmp_path):
    out = tmp_path / "run"
    report = _run("--ticks", "40", "--out", str(out))
    tiers = report["llm"]["by_tier"]
    assert sum(tiers.values()) > 0 and tiers["cache"] + tiers["batch"] + tiers["single"] > 0
    recs = list(open_run(out).ticks())
    decided = sum(int((r.decisions["source"] == SOURCE_RESOLVER).sum()) for r in recs)
    notes = [n for r in recs for n in r.notes["tier"].tolist()]
    assert len(notes) == decided > 0  # every result the tier decided says which tier it was
    assert set(notes) <= {TIER_CACHE, TIER_BATCH, TIER_SINGLE, TIER_FALLBACK}
    v = norn("replay", "verify", str(out))
    assert v.returncode == 0 and "match" in v.stdout, v.stdout + v.stderr


def test_a_resumed_run_hands_its_pending_requests_to_the_tier_and_applies_each_once(tmp_path):
    out = tmp_path / "run"
    _run("--ticks", "20", "--out", str(out), "--snapshot-every", "10")
    _run("--resume", "--out", str(out), "--ticks", "20")
    seen: dict[int, int] = {}
    for rec in open_run(out).ticks():
        for rid in rec.decisions["request_id"].tolist():
            seen[rid] = seen.get(rid, 0) + 1
    assert seen and max(seen.values()) == 1  # no request applied twice
    v = norn("replay", "verify", str(out))
    assert v.returncode == 0, v.stdout + v.stderr
