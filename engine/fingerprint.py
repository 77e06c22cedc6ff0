"""The environment fingerprint recorded in a journal header (DESIGN §3).

``verify`` warns when it replays on a different one: float results can depend on library
versions and CPU features even when Norn's own rules are followed.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    keep = (
                        "sse4_2",
                        "avx",
                        "avx2",
                        "fma",
                        "avx512f",
                        "avx512dq",
                        "avx512bw",
                        "avx512vl",
                        "neon",
                        "asimd",
                    )
                    return sorted(f for f in flags if f in keep)
    except OSError:
        pass
    return []


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
        "libs": {n: _version(n) for n in ("numpy", "numba", "llvmlite", "msgpack", "pyzmq")},
        "norn": _version("norn"),
    }


def differences(recorded: dict, current: dict) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: recorded {recorded.get(key)!r}, now {current.get(key)!r}")
    return out
