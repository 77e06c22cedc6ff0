"""A cold kernel cache is compiled on every core (issue 11: cold start under 20 s).

``engine/kernels.json`` lists the kernels a run of the default world calls from Python and
their argument types; on a cold cache ``prime`` splits it into shares balanced by compile
seconds, compiles one share here and the others in child processes, all into numba's
cache. The list must match what a run calls (else a kernel compiles at first call again,
silently slower), and a kernel another process compiled must load from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from norn.engine import precompile
from norn.engine.errors import UserError
from norn.engine.precompile import Kernel, read_manifest, shares
from tests.helpers import ROOT


def _kernel(cost: float, i: int = 0) -> Kernel:
    return Kernel("norn.engine.messages", f"k{i}", ("()",), ("",), cost)


def test_the_manifest_lists_every_kernel_the_warmup_and_the_demo_call():
    """Warmup's ticks, then ``make run``'s demo (served, a simulated map server, the LLM
    tier) for 100 ticks: a kernel they call that the list lacks would compile inside a
    paced tick of a fresh clone's ``make run`` (8 did: 2.9 s in its first ticks)."""
    kernels = read_manifest(model="midgard")
    assert kernels, f"{precompile.MANIFEST} is absent or unreadable"
    listed = {(k.module, k.qualname, k.types) for k in kernels}
    called = {(k["module"], k["qualname"], tuple(k["types"]))
              for k in precompile.called_on()["kernels"]}
    assert called <= listed, (
        f"not in engine/kernels.json: {sorted(called - listed)}; "
        "python -m norn.engine.precompile --write renews it")
    for k in kernels:  # every entry names a kernel that still compiles from its types
        assert precompile.dispatcher(k)._can_compile, k.name
    assert max(kernels, key=lambda k: k.cost_s).qualname == "npc_step"


@given(st.lists(st.floats(0, 20), min_size=1, max_size=60), st.integers(1, 8))
def test_shares_hold_every_kernel_once_and_the_heaviest_bounds_the_longest(costs, jobs):
    kernels = [_kernel(c, i) for i, c in enumerate(costs)]
    parts = shares(kernels, jobs)
    assert sorted(i for p in parts for i in p) == list(range(len(kernels)))
    assert len(parts) <= jobs and all(parts)
    loads = [sum(costs[i] for i in p) for p in parts]
    # longest-first greedy: the longest share is within one kernel of the even split
    assert max(loads) <= sum(costs) / len(parts) + max(costs) + 1e-9


def test_a_manifest_of_another_model_or_unreadable_is_not_used(tmp_path):
    assert read_manifest(precompile.MANIFEST, "toy") is None
    other = tmp_path / "kernels.json"
    other.write_text("{not json")
    assert read_manifest(other) is None
    assert read_manifest(tmp_path / "absent.json") is None


def test_a_kernel_that_cannot_be_compiled_ahead_is_named_and_left_to_its_first_call(caplog):
    gone = Kernel("norn.engine.messages", "renamed_since", ("()",), ("",), 1.0)
    assert precompile.compile_share([gone], [0]) == 0
    assert "norn.engine.messages.renamed_since: not compiled ahead" in caplog.text


def test_compile_jobs_from_the_environment_are_checked(monkeypatch):
    monkeypatch.setenv(precompile.JOBS_ENV, "3")
    assert precompile.default_jobs() == 3
    monkeypatch.setenv(precompile.JOBS_ENV, "0")  # nothing ahead
    assert precompile.default_jobs() == 0 and precompile.prime("midgard") is None
    for bad in ("two", "-1"):
        monkeypatch.setenv(precompile.JOBS_ENV, bad)
        with pytest.raises(UserError, match="NORN_COMPILE_JOBS must be a whole number"):
            precompile.default_jobs()


PRIME = """
import json, sys
from pathlib import Path
from norn.engine import precompile
manifest = Path(sys.argv[1])
kernels = precompile.read_manifest(manifest, "midgard")
cold = precompile.cache_is_cold(kernels)
done = precompile.prime("midgard", jobs=2, manifest=manifest)
stats = {}
for k in kernels:  # [loaded from the cache, compiled here]
    s = precompile.dispatcher(k).stats
    stats[k.name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
print(json.dumps({"cold": cold, "prime": done, "stats": stats,
                  "cold_after": precompile.cache_is_cold(kernels)}))
"""


def _prime(manifest: Path, cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    r = subprocess.run([sys.executable, "-c", PRIME, str(manifest)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_a_cold_cache_is_compiled_in_shares_then_every_kernel_is_ready_here(tmp_path):
    """Four cheap kernels of the manifest, two shares: this process compiles one, a child
    the other three, which this process then loads from the cache (none compiled twice);
    a later process on that cache loads all four before its first tick."""
    doc = json.loads(precompile.MANIFEST.read_text())
    pick = {"_histogram": 3.0, "_scan": 1.0, "_prefix": 1.0, "_dirty_tasks": 1.0}
    small = [{**k, "cost_s": pick[k["qualname"]]} for k in doc["kernels"]
             if k["qualname"] in pick]
    assert len(small) == len(pick)
    manifest = tmp_path / "kernels.json"
    manifest.write_text(json.dumps({**doc, "kernels": small}))
    out = _prime(manifest, tmp_path / "cache")
    assert out["cold"] and not out["cold_after"]
    assert out["prime"]["cold"] and out["prime"]["jobs"] == 2
    assert out["prime"]["failed_shares"] == 0
    assert out["prime"]["compiled_here"] == 1  # _histogram alone: 3 s against 1 + 1 + 1
    child = {f"norn.engine.{m}" for m in ("messages._scan", "messages._prefix",
                                            "digest._dirty_tasks")}
    assert out["stats"] == {name: [1, 0] if name in child else [0, 1]
                            for name in out["stats"]}
    again = _prime(manifest, tmp_path / "cache")  # warm: loaded, nothing compiled
    assert not again["prime"]["cold"] and again["prime"]["jobs"] == 1
    assert again["prime"]["ready_here"] == 4
    assert again["stats"] == {name: [1, 0] for name in out["stats"]}


def test_the_manifest_names_its_model_and_the_numba_that_wrote_it():
    doc = json.loads(Path(precompile.MANIFEST).read_text())
    assert doc["model"] == "midgard" and doc["numba"].count(".") >= 1
