"""Where numba keeps the compiled kernels: one folder per version of the state code.

numba's on-disk cache (every kernel is ``cache=True``) checks a kernel against its own
source file only. A kernel that calls a function of another module (``engine/rng.py``'s
draws, inlined into most kernels) keeps its old machine code after that module changes,
and would go on drawing the old way: a world that silently differs from its code. Keying
the cache folder by the state code's source hash (``fingerprint.source_hash``, the hash a
journal records) makes any change to it compile afresh. An operator's own
``NUMBA_CACHE_DIR`` wins (``describe`` says whose it is), and then clearing it after an
upgrade is theirs to do.

Folders of older versions stay until ``make clean`` (about 15 MB each).
"""

from __future__ import annotations

import os
import sys

from norn.engine.fingerprint import ROOT, source_hash

#: the folder holding a folder per source hash
CACHE_ROOT = ROOT / ".numba-cache"

_chosen: dict[str, str] = {}


def configure() -> None:
    """Point numba's cache at this code's folder, unless the environment names one.

    Idempotent. Must run before the first kernel is decorated (numba picks a kernel's cache
    folder then): ``norn.engine`` calls it when first imported. Child processes inherit the
    choice through the environment, so every process of a run shares one cache.
    """
    if _chosen:
        return
    if os.environ.get("NUMBA_CACHE_DIR"):
        _chosen["by"] = "environment"
    else:
        os.environ["NUMBA_CACHE_DIR"] = str(CACHE_ROOT / source_hash())
        _chosen["by"] = "norn"
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba read its environment already: tell it directly
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


def describe() -> dict[str, str]:
    """The cache folder in use and who chose it (norn or environment)."""
    return {"cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""), "by": _chosen.get("by", "")}
