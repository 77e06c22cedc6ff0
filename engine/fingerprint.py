"""The environment fingerprint recorded in a journal header (DESIGN §3).

``verify`` warns when it replays on a different one: float results can depend on library
versions and CPU features even when Norn's own rules are followed, and a run recorded
before the state code changed diverges for that reason alone (``source`` tells which).

``source`` hashes the state code only: every module of ``STATE_PACKAGES`` except the
declared ``NOT_STATE`` ones (the command line, config loading, printing, messages), so
editing a help text or an error message does not make ``verify`` warn that the code
changed. A module belongs in ``NOT_STATE`` only if no tick's result can depend on it;
``tests/test_fingerprint.py`` keeps the list true to the files.
"""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata
from pathlib import Path

import xxhash

#: The packages whose code decides world state: a change in them can change a replay.
STATE_PACKAGES = ("engine", "actors", "rules")
#: Modules inside them that cannot change a replay, each with the reason: not hashed.
NOT_STATE: dict[str, str] = {
    "engine/cli.py": "the norn dispatcher: parsing, printing, exit codes",
    "engine/commands.py": "norn run: options, the run directory, the printed report",
    "engine/config.py": "loading and validating the run config; a replay uses the values "
    "journaled in the header, every field of them",
    "engine/errors.py": "exception classes and their messages",
    "engine/fingerprint.py": "this fingerprint",
    "engine/clock.py": "the wall clock, for metrics and pacing only (never read in a tick)",
    "engine/observe.py": "logging setup and the probes metrics read; nothing a tick reads",
    "engine/metrics.py": "norn run's log options, Prometheus endpoint and health checks",
    "engine/precompile.py": "compiles kernels ahead of their first call, into numba's cache "
    "(the machine code is the one the first call would compile)",
}
ROOT = Path(__file__).resolve().parents[1]


def state_sources(root: Path = ROOT) -> list[Path]:
    """The state code's Python files under ``root``, in hashing order (``NOT_STATE`` left out)."""
    return [
        path
        for pkg in STATE_PACKAGES
        for path in sorted((root / pkg).rglob("*.py"))
        if path.relative_to(root).as_posix() not in NOT_STATE
    ]


@functools.cache
def source_hash(root: Path = ROOT) -> str:
    """xxh3 of the state code's Python sources (paths and bytes, in sorted order)."""
    h = xxhash.xxh3_64()
    for path in state_sources(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def all_cpu_flags() -> list[str]:
    """Every flag the CPU reports (x86 ``flags``, Arm ``Features``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


#: SIMD features that can change float results: the journal fingerprint records these.
SIMD_FLAGS = frozenset(
    {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "neon", "asimd"}
)


def cpu_flags() -> list[str]:
    return [f for f in all_cpu_flags() if f in SIMD_FLAGS]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "libs": {n: package_version(n) for n in ("numpy", "numba", "llvmlite", "msgpack", "pyzmq")},
        "norn": package_version("norn"),
        "source": source_hash(),
    }


def differences(recorded: dict, current: dict) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: recorded {recorded.get(key)!r}, now {current.get(key)!r}")
    return out
