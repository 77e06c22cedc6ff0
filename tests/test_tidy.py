"""A tidy test (TigerBeetle): state code may not use what breaks determinism.

Banned in engine/, actors/ and rules/: wall-clock reads (allowed only in engine/clock.py,
whose values never reach state), unseeded or shared random generators, ``fastmath``, sorts
without ``kind="stable"``, NumPy transcendental ufuncs (SIMD-dispatch dependent results),
and ``hash()``/``id()`` (randomized per process).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE_DIRS = ("engine", "actors", "rules")
# engine/clock.py: metrics and pacing. engine/commands.py (norn run): naming a new run
# directory (the edge).
CLOCK_ALLOWED = {"engine/clock.py", "engine/commands.py"}
WALL_CLOCK = {
    ("time", n)
    for n in (
        "time",
        "perf_counter",
        "monotonic",
        "time_ns",
        "perf_counter_ns",
        "monotonic_ns",
        "process_time",
    )
}
TRANSCENDENTAL = {
    "exp",
    "exp2",
    "expm1",
    "log",
    "log2",
    "log10",
    "log1p",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "arctan2",
    "sinh",
    "cosh",
    "tanh",
    "power",
    "float_power",
    "hypot",
    "cbrt",
}
NP_RANDOM = {
    "seed",
    "rand",
    "randn",
    "random",
    "randint",
    "default_rng",
    "choice",
    "shuffle",
    "permutation",
    "RandomState",
    "uniform",
    "normal",
}
SORTS = {"sort", "argsort"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def violations(source: str, rel: str) -> list[str]:
    out = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            parts = name.split(".")
            where = f"{rel}:{node.lineno}"
            if (
                rel not in CLOCK_ALLOWED
                and len(parts) >= 2
                and (parts[-2], parts[-1]) in WALL_CLOCK
            ):
                out.append(f"{where}: wall-clock read {name}()")
            if rel not in CLOCK_ALLOWED and name in (
                "datetime.now",
                "datetime.datetime.now",
                "datetime.utcnow",
                "datetime.datetime.utcnow",
            ):
                out.append(f"{where}: wall-clock read {name}()")
            if (
                parts[0] in ("np", "numpy")
                and len(parts) == 3
                and parts[1] == "random"
                and parts[2] in NP_RANDOM
            ):
                out.append(f"{where}: unseeded/shared generator {name}()")
            if name in (
                "random.random",
                "random.randint",
                "random.choice",
                "random.shuffle",
                "random.seed",
                "random.uniform",
            ):
                out.append(f"{where}: stdlib random {name}()")
            if parts[0] in ("np", "numpy") and len(parts) == 2 and parts[1] in TRANSCENDENTAL:
                out.append(f"{where}: NumPy transcendental ufunc {name}()")
            if name in ("hash", "id"):
                out.append(f"{where}: {name}() is randomized per process")
            if parts[-1] in SORTS and (parts[0] in ("np", "numpy") or len(parts) >= 2):
                kinds = [k for k in node.keywords if k.arg == "kind"]
                stable = (
                    kinds
                    and isinstance(kinds[0].value, ast.Constant)
                    and kinds[0].value.value == "stable"
                )
                # list.sort(key=...) is Python's (always stable); NumPy's takes no key.
                python_list = parts[0] not in ("np", "numpy") and any(
                    k.arg == "key" for k in node.keywords
                )
                if not (stable or python_list):
                    out.append(f'{where}: {name}() without kind="stable"')
            for kw in node.keywords:
                if kw.arg == "fastmath" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    out.append(f"{where}: fastmath")
    return out


def test_state_code_is_tidy():
    found = []
    for d in STATE_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += violations(path.read_text(), rel)
    assert not found, "determinism hazards:\n" + "\n".join(found)


def test_the_tidy_rules_catch_each_hazard():
    """The canary of the tidy test: every banned form must be flagged."""
    bad = """
import time, numpy as np, numba
t = time.perf_counter()
g = np.random.default_rng()
y = np.exp(x)
order = np.argsort(v)
v.sort()
k = hash(x)
@numba.njit(fastmath=True)
def f(): pass
"""
    found = violations(bad, "engine/x.py")
    for needle in (
        "wall-clock",
        "unseeded",
        "transcendental",
        "argsort()",
        "v.sort()",
        "hash()",
        "fastmath",
    ):
        assert any(needle in f for f in found), (needle, found)
    assert violations("np.argsort(v, kind='stable')\n", "engine/x.py") == []


def test_pyproject_lists_every_package_under_norn():
    """A wheel must hold what an editable install sees: every folder with an __init__.py."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {
        "norn." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("engine", "actors", "rules", "bridge", "llm", "replays", "bench")
        for p in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert listed == found, f"add to pyproject: {sorted(found - listed)}; "\
        f"remove: {sorted(listed - found)}"
