"""Norn engine."""

from norn.engine import threads as _threads

_threads.configure()  # numba's threading layer and wait policy, before any kernel runs
