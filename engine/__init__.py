"""Norn engine."""

from norn.engine import kernel_cache as _kernel_cache
from norn.engine import threads as _threads

_threads.configure()  # numba's threading layer and wait policy, before any kernel runs
_kernel_cache.configure()  # a cache folder per version of the state code (stale callees)
