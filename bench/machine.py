"""What machine a result came from, and how fast its memory is.

Every result file carries ``machine_info()`` so a figure is never read without its
machine, and ``triad_bandwidth()`` (a STREAM-style triad in numba) so figures from
different machines can be compared as a fraction of what the memory can move.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from norn.engine import threads
from norn.engine.fingerprint import (
    all_cpu_flags as cpu_flags,  # all flags: SIMD width moves figures
)
from norn.engine.fingerprint import cpu_model
from norn.engine.fingerprint import package_version as _version

ROOT = Path(__file__).resolve().parents[1]

#: libraries whose versions change what the figures mean
LIBRARIES = (
    "numpy",
    "numba",
    "llvmlite",
    "msgpack",
    "pyzmq",
    "xxhash",
    "crc32c",
    "pyarrow",
    "pydantic",
    "psutil",
    "pytest-benchmark",
)

#: environment variables that change how numba's threads behave
THREAD_ENV = (
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
)


#: Paths left out of the source tree's hash and of its dirty check: what cannot change a
#: figure (the result files themselves, so committing one run's file does not make the next
#: run dirty; the docs generated from them; the tests). A glob on the path from the root.
SOURCE_EXCLUDED = ("bench/results/*", "docs/*", "tests/*", "*.md")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _excluded(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pat) for pat in SOURCE_EXCLUDED)


def source_tree(root: Path = ROOT) -> dict[str, Any]:
    """The commit, whether the sources differ from it, and a hash of the sources on disk.

    The sources are the tracked files plus untracked ones git does not ignore, less
    ``SOURCE_EXCLUDED``. ``source_hash`` is a SHA-256 over every source's path and the
    bytes on disk now (a symlink: its target), so two runs with the same hash ran the same
    code whatever their commits (a commit that changed only docs or tests keeps the hash),
    and a dirty tree is still identified. ``dirty``: a source differs from the commit
    (modified, staged, deleted, or untracked); ``dirty_paths`` names them (first 50).
    """
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return {"commit": "unknown", "dirty": None, "source_hash": None}
    tracked = (_git(root, "ls-files", "-z") or "").split("\0")
    untracked = (_git(root, "ls-files", "-z", "--others", "--exclude-standard") or "").split("\0")
    changed = (_git(root, "diff", "--name-only", "-z", "HEAD") or "").split("\0")
    paths = sorted({p for p in tracked + untracked if p and not _excluded(p)})
    h = hashlib.sha256()
    for rel in paths:
        f = root / rel
        if f.is_symlink():
            data = b"symlink:" + os.readlink(f).encode()
        elif f.is_file():
            data = f.read_bytes()
        else:
            data = b"<missing>"  # deleted from the working tree, or a submodule
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    untracked_set = {p for p in untracked if p}
    dirty_paths = sorted({p for p in changed if p and not _excluded(p)}
                         | {p for p in untracked_set if not _excluded(p)})
    return {
        "commit": head.strip(),
        "dirty": bool(dirty_paths),
        "dirty_count": len(dirty_paths),
        "dirty_paths": dirty_paths[:50],
        "source_hash": "sha256:" + h.hexdigest(),
        "source_files": len(paths),
        "excluded": list(SOURCE_EXCLUDED),
    }


def git_commit() -> dict[str, Any]:
    """The commit the figures were measured at, whether the tree had local changes, and
    the hash of the sources (``source_tree``)."""
    return source_tree()


@numba.njit(cache=True, nogil=True, parallel=True)
def _warm_threads(out: np.ndarray) -> None:
    for i in numba.prange(len(out)):
        out[i] = numba.get_thread_id()


def numba_threads() -> dict[str, Any]:
    """The threading layer numba actually chose (only known after a parallel kernel ran),
    the wait policy, and whether Norn or the environment chose them (engine/threads.py)."""
    _warm_threads(np.zeros(64, dtype=np.int64))
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "unknown"
    chosen = threads.describe()
    return {
        "layer": layer,
        "threads": int(numba.get_num_threads()),
        "wait_policy": chosen["wait_policy"],
        "chosen_by": chosen["chosen_by"],
    }


def memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover
        return None


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, memory, library versions, numba threads, git commit."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(memory_bytes() / 2**30, 2),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "libraries": {name: _version(name) for name in LIBRARIES},
        "numba": numba_threads(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "git": git_commit(),
    }


def describe(machine: dict[str, Any]) -> str:
    """One line naming the machine, for the head of every human table."""
    nb = machine.get("numba", {})
    git = machine.get("git", {})
    commit = str(git.get("commit", "unknown"))[:10] + ("+DIRTY" if git.get("dirty") else "")
    if git.get("source_hash"):
        commit += f" (sources {str(git['source_hash']).removeprefix('sha256:')[:12]})"
    return (
        f"{machine.get('cpu')} | {machine.get('logical_cores')} cores | "
        f"{machine.get('memory_gib')} GiB | numpy {machine['libraries'].get('numpy')} "
        f"numba {machine['libraries'].get('numba')} ({nb.get('layer')}, "
        f"wait {nb.get('wait_policy') or 'default'}, {nb.get('threads')} threads) | "
        f"commit {commit}"
    )


# -- memory bandwidth ---------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, parallel=True)
def _triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, scalar: float) -> None:
    for i in numba.prange(len(a)):  # each i writes only a[i]
        a[i] = b[i] + scalar * c[i]


def triad_bandwidth(elements: int = 1 << 25, repeat: int = 10) -> dict[str, Any]:
    """STREAM triad ``a = b + s * c`` over float64 arrays, all numba threads.

    Bytes per pass are counted as STREAM does: 24 per element (two reads, one write),
    not counting the write-allocate read. The best pass is the bandwidth (STREAM's rule);
    the median is kept to show the noise. The default 3 x 256 MiB is far beyond any cache.
    """
    a = np.zeros(elements)
    b = np.ones(elements)
    c = np.full(elements, 2.0)
    _triad(a, b, c, 3.0)  # compile and fault every page in, outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _triad(a, b, c, 3.0)
        times.append(time.perf_counter() - t0)
    if not np.all(a == 7.0):
        raise AssertionError("triad kernel computed a wrong result")
    nbytes = 24 * elements
    best = min(times)
    return {
        "kernel": "a[i] = b[i] + s * c[i] (float64, numba prange)",
        "elements": elements,
        "bytes_per_pass": nbytes,
        "repeat": repeat,
        "gb_per_s": round(nbytes / best / 1e9, 3),
        "gb_per_s_median": round(nbytes / float(np.median(times)) / 1e9, 3),
    }


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this process's own
    address space. Not ``ru_maxrss``: Linux carries that across fork and exec, so a worker
    started by a large parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# -- other processes' load: this machine may be shared -------------------------------------
def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class LoadMeter:
    """CPU used by other processes while a measurement ran, in cores (0 = a quiet machine).

    Figures taken while others used the cores are slower and noisier (a parallel kernel
    waits for its slowest thread), so every case reports this next to its figures.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.busy0 = _busy_seconds()
        self.own0 = _own_seconds()

    def other_cores(self) -> float | None:
        busy = _busy_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        other = (busy - self.busy0) - (_own_seconds() - self.own0)
        return round(max(other, 0.0) / wall, 3) if wall > 0 else None


def wait_for_quiet(
    max_wait_s: float, threshold_cores: float = 0.25, window_s: float = 1.0
) -> float:
    """Wait (up to ``max_wait_s``) until other processes use < ``threshold_cores``.

    Returns the other load of the last window. A benchmark on a shared machine cannot make
    others stop; it can start when they pause, and it reports what it saw either way.
    """
    deadline = time.perf_counter() + max_wait_s
    while True:
        meter = LoadMeter()
        time.sleep(window_s)
        load = meter.other_cores()
        if load is None or load < threshold_cores or time.perf_counter() >= deadline:
            return load if load is not None else 0.0
