"""numba's kernel cache is keyed by the state code's version (engine/kernel_cache.py).

numba checks a cached kernel against its own source file only; a kernel that calls a
function of another module keeps the old machine code after that module changes. The first
test shows that hazard with numba alone (so the reason for the rule stays visible); the
others, that Norn keys its cache folder by the source hash and leaves an operator's own
folder alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from norn.engine import kernel_cache
from norn.engine.fingerprint import source_hash

CALLEE_V1 = "import numba\n\n@numba.njit(cache=True)\ndef draw(x):\n    return x + 1\n"
CALLEE_V2 = CALLEE_V1.replace("x + 1", "x + 2")
CALLER = textwrap.dedent("""
    import numba
    from callee import draw

    @numba.njit(cache=True)
    def kernel(x):
        return draw(x) * 10

    print(kernel(1))
""")


def _run(pkg: Path, cache: Path) -> int:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(pkg)}
    r = subprocess.run([sys.executable, str(pkg / "caller.py")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def test_numba_alone_keeps_a_stale_kernel_when_only_its_callee_changes(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "callee.py").write_text(CALLEE_V1)
    (pkg / "caller.py").write_text(CALLER)
    cache = tmp_path / "one-cache"
    assert _run(pkg, cache) == 20
    (pkg / "callee.py").write_text(CALLEE_V2)
    assert _run(pkg, cache) == 20  # stale: the caller's cache entry still holds draw v1
    assert _run(pkg, tmp_path / "cache-for-v2") == 30  # a folder per version compiles afresh


def _configured(env: dict[str, str]) -> str:
    code = ("import os, numba\nimport norn.engine\n"
            "from norn.engine import kernel_cache\n"
            "print(os.environ['NUMBA_CACHE_DIR'], numba.config.CACHE_DIR,"
            " kernel_cache.describe()['by'])")
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    r = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_norn_keys_the_cache_folder_by_the_state_codes_hash():
    env_dir, numba_dir, by = _configured({})
    expected = str(kernel_cache.CACHE_ROOT / source_hash())
    assert env_dir == numba_dir == expected and by == "norn"


def test_an_operators_own_cache_folder_wins(tmp_path):
    mine = str(tmp_path / "mine")
    env_dir, numba_dir, by = _configured({"NUMBA_CACHE_DIR": mine})
    assert env_dir == numba_dir == mine and by == "environment"
