"""A tidy test (TigerBeetle): state code may not use what breaks determinism.

Banned in engine/, actors/ and rules/: wall-clock reads (allowed only in engine/clock.py,
whose values never reach state), unseeded or shared random generators, ``fastmath``, sorts
without ``kind="stable"``, NumPy transcendental ufuncs (SIMD-dispatch dependent results),
and ``hash()``/``id()`` (randomized per process).

The import rules: an actor kind imports only the engine, the rules and itself (a model's
package may also import the kinds it composes), rules import only the engine, the engine
imports nothing above it; every actor package imports alone. Each rule set has a canary.
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


# -- import rules: who may import whom --------------------------------------------------------
# An actor kind (actors/<kind>/) imports only the engine, the shared rules and itself; a
# model's package (registered in pyproject's norn.models) may also import the kinds it
# composes, never another model. rules/ imports only the engine; engine/ imports nothing
# above it. What kinds share is a resource or a message, never an import.

def _model_packages() -> set[str]:
    import tomllib

    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    return {v.split(":")[0].split(".")[2] for v in eps["norn.models"].values()}


def _imports(source: str, rel: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every ``norn`` import in ``source`` (relative ones
    resolved against ``rel``), lazy ones inside functions included."""
    pkg = ["norn", *Path(rel).with_suffix("").parts]
    if pkg[-1] == "__init__":
        pkg = pkg[:-1]
    else:
        pkg = pkg[:-1]  # a module's package
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
    return [(line, m) for line, m in out if m == "norn" or m.startswith("norn.")]


def import_violations(source: str, rel: str, models: set[str]) -> list[str]:
    parts = Path(rel).parts
    top = parts[0]
    out = []
    for line, mod in _imports(source, rel):
        target = mod.split(".")
        where = f"{rel}:{line}: imports {mod}"
        if len(target) < 2:
            out.append(f"{where} (import a subpackage, not norn itself)")
            continue
        if top == "engine" and target[1] != "engine":
            out.append(f"{where} (the engine imports nothing above it)")
        elif top == "rules" and target[1] not in ("engine", "rules"):
            out.append(f"{where} (rules import only the engine)")
        elif top == "actors" and len(parts) > 2:
            me = parts[1]
            if target[1] in ("engine", "rules"):
                continue
            if target[1] != "actors" or len(target) < 3:
                out.append(f"{where} (actors import only the engine, rules and kinds)")
            elif target[2] == me:
                continue
            elif me not in models:
                out.append(f"{where} (kind {me!r} imports another actor package; share a "
                           "resource or send a message)")
            elif target[2] in models:
                out.append(f"{where} (model {me!r} imports another model)")
    return out


def test_import_rules_hold():
    models = _model_packages()
    found = []
    for top in ("engine", "rules", "actors"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += import_violations(path.read_text(), rel, models)
    assert not found, "import rules broken:\n" + "\n".join(found)


def test_the_import_rules_catch_each_violation():
    """The canary of the import rules: each forbidden import is flagged, allowed ones not."""
    models = {"midgard", "toy"}
    bad = {
        "actors/npc/__init__.py": "from norn.actors.midgard.static import Static\n",
        "actors/npc/kernels.py": "from ..faction import reputation_of\n",
        "actors/economy/x.py": "def f():\n    import norn.actors.faction\n",
        "actors/midgard/__init__.py": "from norn.actors.toy import ToyPlugin\n",
        "actors/faction/__init__.py": "from norn.bridge.view import WorldView\n",
        "engine/world.py": "from norn.bridge.protocol import pack\n",
        "engine/x.py": "import norn.replays.verify\n",
        "rules/spread.py": "from norn.actors.hazard import HazardPlugin\n",
    }
    for rel, src in bad.items():
        assert import_violations(src, rel, models), (rel, src)
    good = {
        "actors/npc/__init__.py": "from norn.actors.npc import kernels\nfrom . import schema\n"
                                  "from norn.engine.world import World\nimport numpy\n",
        "actors/midgard/__init__.py": "from norn.actors.npc import NpcPlugin\n"
                                      "from .static import Static\n",
        "rules/grid.py": "from norn.engine.rng import uniform\nfrom norn.rules import x\n",
        "engine/world.py": "from norn.engine.kinds import Kinds\nfrom . import limits\n",
    }
    for rel, src in good.items():
        assert import_violations(src, rel, models) == [], (rel, src)


def test_every_actor_package_imports_alone():
    """``import norn.actors.<kind>`` in a fresh interpreter, for every kind and model (no
    partially initialised module from an import cycle)."""
    import subprocess
    import sys

    names = sorted(p.parent.name for p in (ROOT / "actors").glob("*/__init__.py"))
    procs = {
        n: subprocess.Popen([sys.executable, "-c", f"import norn.actors.{n}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in names
    }
    failed = {}
    for n, p in procs.items():
        _, err = p.communicate(timeout=300)
        if p.returncode:
            failed[n] = err.strip().splitlines()[-1]
    assert {"npc", "economy", "faction", "hazard", "midgard"} <= set(names)
    assert not failed, failed
