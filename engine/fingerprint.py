"""The environment fingerprint recorded in a journal header (DESIGN §3).

``verify`` warns when it replays on a different one: float results can depend on library
versions and CPU features even when Norn's own rules are followed.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata


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
    }


def differences(recorded: dict, current: dict) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: recorded {recorded.get(key)!r}, now {current.get(key)!r}")
    return out
