"""Compile a cold kernel cache on every core: each process compiles its share of the kernels.

numba compiles one kernel at a time in a process (a global compiler lock), so a first run
of the default world spent about 25 s on one core of two (``norn bench startup``), the NPC
step alone about 14 s. What to compile is known before the run: the kernels the run calls
from Python and their argument types, listed in ``engine/kernels.json`` (written by
``python -m norn.engine.precompile --write`` from a run of ``norn warmup``'s ticks; a test
fails when it no longer matches what that run calls). On a cold cache, ``prime()`` hands
shares of it (balanced by each kernel's measured compile seconds) to child processes and
compiles one share itself; each writes numba's cache, and the run's first call of a kernel
another process compiled loads it from there.

Only the cost changes: a kernel compiled from its listed signature is the one the first
call would have compiled (same types, same flags), so nothing a run computes depends on it.
Whatever the list misses (another scenario's kernels, a signature it lacks, a share whose
process failed) is compiled at first call as before. ``NORN_COMPILE_JOBS=1`` turns it off.
"""

from __future__ import annotations

import argparse
import base64
import functools
import importlib
import importlib.util
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba

from norn.engine import clock

#: the kernels a run of the default world calls from Python, with their argument types
MANIFEST = Path(__file__).with_name("kernels.json")
#: environment override of the number of compiling processes (1: this one only; 0: none
#: ahead, every kernel compiles or loads at its first call)
JOBS_ENV = "NORN_COMPILE_JOBS"
#: a share's process gets this long before the run goes on without it (it compiles what
#: is missing at first call)
SHARE_TIMEOUT_S = 600.0

_log = logging.getLogger("norn.engine.precompile")


@dataclass(frozen=True)
class Kernel:
    """One kernel of the manifest: where it is defined, its signatures, its compile cost."""

    module: str
    qualname: str
    types: tuple[str, ...]     # each signature as numba prints it (compared by the test)
    pickled: tuple[str, ...]   # the same signatures, pickled numba types (base64)
    cost_s: float              # measured compile seconds (balances the shares)

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


def read_manifest(path: Path = MANIFEST, model: str | None = None) -> list[Kernel] | None:
    """The manifest's kernels; None when it is absent, unreadable or, given ``model``,
    listed for another model's world: then a run compiles at first call. (Written by
    another numba version, its types may not load: ``compile_share`` says which.)"""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or (model is not None and doc.get("model") != model):
        return None
    try:
        return [Kernel(k["module"], k["qualname"], tuple(k["types"]), tuple(k["pickled"]),
                       float(k["cost_s"])) for k in doc["kernels"]]
    except (KeyError, TypeError, ValueError):
        return None


def dispatcher(kernel: Kernel) -> Any:
    """The numba dispatcher ``kernel`` names (importing its module)."""
    obj: Any = importlib.import_module(kernel.module)
    return functools.reduce(getattr, kernel.qualname.split("."), obj)


def shares(kernels: Sequence[Kernel], jobs: int) -> list[list[int]]:
    """Indexes of ``kernels`` split into ``jobs`` shares of about equal compile seconds
    (longest first, each to the lightest share): the slowest kernel bounds the wall time."""
    loads = [0.0] * jobs
    out: list[list[int]] = [[] for _ in range(jobs)]
    for i in sorted(range(len(kernels)), key=lambda i: (-kernels[i].cost_s, i)):
        j = min(range(jobs), key=lambda j: (loads[j], j))
        out[j].append(i)
        loads[j] += kernels[i].cost_s
    return [s for s in out if s]


def compile_share(kernels: Sequence[Kernel], indexes: Sequence[int]) -> int:
    """Compile the listed kernels for their signatures (numba caches each); how many. One
    that cannot be (a manifest of another numba version whose types do not load, a kernel
    renamed since) is logged and left to compile at first call."""
    n = 0
    for i in indexes:
        k = kernels[i]
        try:
            disp = dispatcher(k)
            for blob in k.pickled:
                disp.compile(pickle.loads(base64.b64decode(blob)))
                n += 1
        except Exception as exc:
            _log.warning("%s: not compiled ahead (%s: %s); it compiles at first call "
                         "(python -m norn.engine.precompile --write renews the list)",
                         k.name, type(exc).__name__, exc)
    return n


def cache_is_cold(kernels: Sequence[Kernel]) -> bool:
    """Whether numba's cache folder lacks the costliest of ``kernels`` (a fresh clone, a
    new version of the state code, an empty ``NUMBA_CACHE_DIR``). Kernels declared with
    their signature compile when their module is imported, so an empty folder is no test."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder or not kernels:
        return False  # kernels cache beside their sources: not ours to judge
    top = max(kernels, key=lambda k: k.cost_s)
    spec = importlib.util.find_spec(top.module)
    if spec is None or spec.origin is None:
        return False
    # numba's index file: <its module's file stem>.<qualname>-<line>.py<ver>.nbi
    stem = Path(spec.origin).stem
    return not any(Path(folder).glob(f"*/{stem}.{top.qualname}-*.nbi"))


def default_jobs() -> int:
    """``NORN_COMPILE_JOBS``, else the cores this process may use."""
    raw = os.environ.get(JOBS_ENV)
    if raw:
        try:
            jobs = int(raw)
        except ValueError:
            jobs = -1
        if jobs < 0:
            from norn.engine.errors import UserError

            raise UserError(f"{JOBS_ENV} must be a whole number of processes, got {raw!r}")
        return jobs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def prime(model: str, jobs: int | None = None,
          manifest: Path = MANIFEST) -> dict[str, Any] | None:
    """Before building a world of ``model``, have the manifest's kernels ready in this
    process: on a cold cache compiled on ``jobs`` processes (this one and ``jobs - 1``
    children), then the children's loaded from the cache here; on a warm one loaded. So a
    paced run's first ticks neither compile nor load (a load takes milliseconds a kernel:
    the first tick of ``make run`` was 117 ms of 100). None: no manifest for this model
    (another model's world shares some kernels, not enough to pay for the rest). A child
    that fails or runs out of time costs its share's compile here (logged)."""
    jobs = default_jobs() if jobs is None else jobs
    kernels = read_manifest(manifest, model) if jobs > 0 else None
    if not kernels:
        return None
    t0 = clock.monotonic()
    if jobs < 2 or not cache_is_cold(kernels):
        ready = compile_share(kernels, range(len(kernels)))  # loaded (compiled if missing)
        return {"jobs": 1, "kernels": len(kernels), "ready_here": ready, "cold": False,
                "wall_s": round(clock.monotonic() - t0, 3)}
    parts = shares(kernels, jobs)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "norn.engine.precompile", "--manifest", str(manifest),
             "--share", ",".join(map(str, part))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for part in parts[1:]
    ]
    compiled = compile_share(kernels, parts[0])
    failed = 0
    for child, part in zip(children, parts[1:], strict=True):
        left = max(1.0, SHARE_TIMEOUT_S - (clock.monotonic() - t0))
        try:
            _, err = child.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
            err = f"no end within {SHARE_TIMEOUT_S:.0f} s"
        if child.returncode != 0:
            failed += 1
            why = (err or "").strip().splitlines()[-1:] or [f"exit {child.returncode}"]
            _log.warning("a compiling process failed (%s); its %d kernels compile here",
                         why[0], len(part))
    for part in parts[1:]:  # the children's kernels, from the cache (or compiled here)
        compile_share(kernels, part)
    return {"jobs": len(parts), "kernels": len(kernels), "compiled_here": compiled,
            "failed_shares": failed, "cold": True, "wall_s": round(clock.monotonic() - t0, 3)}


# -- writing and checking the manifest ---------------------------------------------------------
def called_kernels() -> list[tuple[str, str, list[Any]]]:
    """(module, qualname, signatures) of every norn kernel this process has compiled or
    loaded: after ``norn warmup``'s ticks on a warm cache, the kernels a run calls from
    Python (a callee compiled inside its caller is not among them)."""
    from numba.core.dispatcher import Dispatcher

    found = []
    for name, mod in sorted(sys.modules.items()):
        if not name.startswith("norn.") or mod is None:
            continue
        for attr, obj in sorted(vars(mod).items()):
            if (isinstance(obj, Dispatcher) and obj.signatures
                    and obj.py_func.__module__ == name and obj.py_func.__qualname__ == attr
                    and obj._can_compile):  # not one declared with its signature: that
                found.append((name, attr, list(obj.signatures)))  # compiles on import
    return found


#: the demo ``make run`` runs, shorter: a served world with a simulated map server (player
#: events, action results) calls kernels the warmup's own event source does not reach
DEMO = ("run", "--ticks", "100", "--tick-ms", "50", "--sim-players", "200", "--llm",
        "default", "--no-fsync", "--json", "--replace", "--out")


def _warm_and_list(costs: bool) -> dict[str, Any]:
    """Child of ``--write``: the warmup's ticks of the default world, then the demo; the
    kernels they called."""
    import contextlib
    import io

    from norn.engine.cli import main as norn_main
    from norn.engine.scenario import load_scenario
    from norn.engine.warmup import CompileWatch, warm

    with CompileWatch() as watch:
        warm(watch=watch)
        with tempfile.TemporaryDirectory(prefix="norn-demo-") as tmp, \
                contextlib.redirect_stdout(io.StringIO()):
            rc = norn_main([*DEMO, str(Path(tmp) / "run")])
        if rc != 0:
            raise RuntimeError(f"the demo run failed (exit {rc})")
    out = []
    for module, qualname, sigs in called_kernels():
        short = f"{module.removeprefix('norn.')}.{qualname}"
        out.append({"module": module, "qualname": qualname,
                    "types": [str(s) for s in sigs],
                    "pickled": [base64.b64encode(pickle.dumps(s)).decode() for s in sigs],
                    "cost_s": round(watch.per_kernel.get(short, 0.0), 3) if costs else 0.0})
    return {"numba": numba.__version__, "model": load_scenario(None).model, "kernels": out,
            "compiled": watch.kernels}


def _child(cache: Path | None, costs: bool) -> dict[str, Any]:
    env = {**os.environ, JOBS_ENV: "0"}  # nothing ahead: what the run itself calls
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    proc = subprocess.run([sys.executable, "-m", "norn.engine.precompile", "--list",
                           "--costs" if costs else "--no-costs"],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"listing the kernels failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def called_on(cache: Path | None = None) -> dict[str, Any]:
    """What a run of the default world calls, listed by a child process on ``cache`` (None:
    this process's), warm: a callee compiled inside its caller is listed only by a process
    that compiled, so on a cold cache a second child lists it again."""
    first = _child(cache, costs=False)
    return _child(cache, costs=False) if first["compiled"] else first


def write_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """Measure each kernel's compile on an empty cache, list what a warm run calls, write
    ``path``: the kernels of the warm run, with the cold run's costs."""
    with tempfile.TemporaryDirectory(prefix="norn-kernels-") as tmp:
        cold = _child(Path(tmp), costs=True)   # compiles everything: the costs
        warm = called_on(Path(tmp))            # loads from the cache: what a run calls
    cost = {(k["module"], k["qualname"]): k["cost_s"] for k in cold["kernels"]}
    for k in warm["kernels"]:
        k["cost_s"] = cost.get((k["module"], k["qualname"]), 0.0)
    del warm["compiled"]
    path.write_text(json.dumps(warm, indent=1) + "\n")
    return warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m norn.engine.precompile",
                                     description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--share", help="compile these manifest entries (comma-separated)")
    group.add_argument("--list", action="store_true",
                       help="run the warmup's ticks, print the kernels called (JSON)")
    group.add_argument("--write", action="store_true", help=f"rewrite {MANIFEST.name}")
    parser.add_argument("--costs", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    if args.share is not None:
        kernels = read_manifest(args.manifest)
        if kernels is None:
            print(f"{args.manifest}: absent, unreadable or of another numba version",
                  file=sys.stderr)
            return 2
        compile_share(kernels, [int(i) for i in args.share.split(",") if i])
        return 0
    if args.list:
        print(json.dumps(_warm_and_list(args.costs)))
        return 0
    doc = write_manifest(args.manifest)
    total = sum(k["cost_s"] for k in doc["kernels"])
    print(f"wrote {args.manifest}: {len(doc['kernels'])} kernels, {total:.1f} s of compile",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
