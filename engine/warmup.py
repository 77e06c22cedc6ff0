"""Compile the kernels before the first tick: ``norn warmup``, and the compile line of a run.

numba compiles a kernel the first time it is called with given argument types and keeps
the machine code in its on-disk cache (every kernel is ``cache=True``: ``__pycache__``
beside the source, or ``NUMBA_CACHE_DIR``), so only a first run pays: about 35 s of CPU
for the default world here, spread over the cores (``engine/precompile.py``;
docs/benchmarks.md, ``norn bench startup``). Paying it during set-up instead of inside a
served run is what ``norn warmup`` is for (``make run`` and ``make test`` call it as a
visible step): it compiles the kernels ``engine/kernels.json`` lists (a served run's too),
then builds the scenario's world and steps it a few ticks with its own event source and
no journal, which calls every kernel the run will call with the same argument types, then
the paths a small world skips (the parallel digest rehash).

``CompileWatch`` counts numba's compiles as they happen; ``compile_notice`` turns them
into the "compiling kernels (first run only)" line a terminal shows while they last.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from numba.core import event as numba_event

from norn.engine import clock

#: ticks ``norn warmup`` steps by default: enough for orders, fills and decisions to flow
WARMUP_TICKS = 5


@dataclass
class CompileWatch:
    """Counts numba compiles (outermost only: a kernel's callees are part of it).

    ``on_change(watch)`` is called when a compile starts or ends (the compiling thread).
    """

    on_change: Callable[[CompileWatch], None] | None = None
    kernels: int = 0
    seconds: float = 0.0
    current: str = ""
    per_kernel: dict[str, float] = field(default_factory=dict)
    _depth: int = 0
    _t0: float = 0.0

    def _listener(self) -> numba_event.Listener:
        watch = self

        class _L(numba_event.Listener):
            def on_start(self, ev: numba_event.Event) -> None:
                if watch._depth == 0:
                    watch._t0 = clock.monotonic()
                    watch.current = _kernel_name(ev)
                    if watch.on_change is not None:
                        watch.on_change(watch)
                watch._depth += 1

            def on_end(self, ev: numba_event.Event) -> None:
                watch._depth -= 1
                if watch._depth == 0:
                    dt = clock.monotonic() - watch._t0
                    watch.seconds += dt
                    watch.kernels += 1
                    watch.per_kernel[watch.current] = watch.per_kernel.get(watch.current, 0) + dt
                    watch.current = ""
                    if watch.on_change is not None:
                        watch.on_change(watch)

        return _L()

    def __enter__(self) -> CompileWatch:
        self._l = self._listener()
        numba_event.register("numba:compile", self._l)
        return self

    def __exit__(self, *exc: object) -> None:
        numba_event.unregister("numba:compile", self._l)


def _kernel_name(ev: numba_event.Event) -> str:
    fn = getattr(ev.data.get("dispatcher"), "py_func", None)
    if fn is None:
        return "?"
    module = fn.__module__.removeprefix("norn.")
    return f"{module}.{fn.__qualname__}"


COMPILING = "compiling kernels (first run only)"


class CompileNotice:
    """The "compiling kernels (first run only)" line on a terminal, while numba compiles.

    Shown only when a compile happens (a warm cache shows nothing) and only on a terminal;
    ``attach(progress)`` moves the line into a rich ``Progress`` that is already live (the
    run's tick bar), since a terminal has one live display at a time.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.watch = CompileWatch(self._update)
        self._progress: Any = None
        self._task: Any = None
        self._own = False

    def _text(self) -> str:
        now = f" ({self.watch.current})" if self.watch.current else ""
        return f"{COMPILING}: {self.watch.kernels} compiled, {self.watch.seconds:.1f} s{now}"

    def _update(self, watch: CompileWatch) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._own = True
        if self._task is None:
            self._task = self._progress.add_task(self._text(), total=None)
        self._progress.update(self._task, description=self._text())

    def attach(self, progress: Any) -> None:
        """Show further compiles as a line of ``progress`` (already started)."""
        self._close_own()
        self._progress, self._task, self._own = progress, None, False

    def _close_own(self) -> None:
        if self._own and self._progress is not None:
            self._progress.stop()
        self._progress, self._task, self._own = None, None, False

    def __enter__(self) -> CompileNotice:
        self.watch.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.__exit__(*exc)
        if self._task is not None and not self._own:
            self._progress.remove_task(self._task)
        self._close_own()


@contextlib.contextmanager
def compile_notice(enabled: bool) -> Iterator[CompileNotice]:
    """``with compile_notice(not args.json) as notice:`` around a build and run."""
    notice = CompileNotice(enabled)
    with notice:
        yield notice


# -- warming the cache ------------------------------------------------------------------------
def warm(scenario: str | None = None, ticks: int = WARMUP_TICKS,
         watch: CompileWatch | None = None) -> dict[str, Any]:
    """Build ``scenario`` (default: the embedded world), step it ``ticks`` ticks with its
    own event source and no journal, then call the kernels a small world never reaches.

    Returns what was compiled: kernels, seconds, the slowest ones, and the wall time.
    """
    from norn.engine.config import make_config
    from norn.engine.precompile import prime
    from norn.engine.runner import build_world
    from norn.engine.scenario import load_model, load_scenario
    from norn.engine.tick import step

    t0 = clock.monotonic()
    own = watch is None
    watch = watch or CompileWatch()
    with contextlib.ExitStack() as stack:
        if own:
            stack.enter_context(watch)
        sc = load_scenario(scenario)
        primed = prime(sc.model)  # the known kernels ready first (a cold cache: every core)
        config = make_config(None, clock="fast", fsync=False, snapshot_every=0)
        world = build_world(sc, config)
        make_source = load_model(sc.model).make_event_source
        source = None
        if make_source is not None and sc.data is not None:
            source = make_source(sc.data, config.seed)
        for _ in range(ticks):
            if source is not None:
                for batch in source(world.tick + 1):
                    world.inputs.offer(batch)
            step(world)
        _warm_rare_paths()
    slowest = sorted(watch.per_kernel.items(), key=lambda kv: -kv[1])[:10]
    return {
        "scenario": sc.name,
        "ticks": ticks,
        "kernels_compiled": watch.kernels,
        "compile_s": round(watch.seconds, 3),
        "wall_s": round(clock.monotonic() - t0, 3),
        "slowest": {k: round(v, 3) for k, v in slowest},
        "cache": cache_location(),
        "ahead": primed,  # the known kernels, made ready first (on every core if cold)
    }


def _warm_rare_paths() -> None:
    """Kernels a small world does not call: the parallel rehash of a large digest."""
    import numpy as np

    from norn.engine.digest import hash_chunks

    words = np.zeros(64, dtype=np.uint64)
    hash_chunks(words, 8, np.arange(8, dtype=np.int64), np.zeros(8, dtype=np.uint64))


def cache_location() -> str:
    """Where numba keeps compiled kernels."""
    import numba

    return numba.config.CACHE_DIR or "__pycache__ beside each module"


# -- the command --------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``norn warmup``."""
    p = subparsers.add_parser(
        "warmup",
        help="compile the kernels now (first run only), so the first run starts ticking at once",
    )
    p.add_argument("--scenario", help="scenario TOML (default: the embedded Rune-Midgarts world)")
    p.add_argument("--ticks", type=int, default=WARMUP_TICKS,
                   help=f"ticks to step (default {WARMUP_TICKS})")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_warmup)


def cmd_warmup(args: argparse.Namespace) -> int:
    """Warm numba's cache for a scenario; say what it compiled."""
    from norn.engine.cli import print_json

    if args.ticks < 1:
        from norn.engine.errors import UserError

        raise UserError(f"--ticks must be at least 1, got {args.ticks}")
    if not args.json:
        print(f"norn warmup: {COMPILING} ...", file=sys.stderr, flush=True)
    with compile_notice(not args.json) as notice:
        result = warm(args.scenario, args.ticks, notice.watch)
    if args.json:
        print_json(result)
        return 0
    ahead = result["ahead"]
    if ahead and ahead["cold"]:
        more = max(0, result["kernels_compiled"] - ahead["compiled_here"])
        print(f"norn warmup: compiled {ahead['kernels']} known kernels on {ahead['jobs']} "
              f"processes in {ahead['wall_s']:.1f} s" + (f", then {more} more" if more else "")
              + f"; cached in {result['cache']}", file=sys.stderr)
    elif result["kernels_compiled"]:
        top = ", ".join(f"{k} {v:.1f} s" for k, v in list(result["slowest"].items())[:3])
        print(f"norn warmup: compiled {result['kernels_compiled']} kernels in "
              f"{result['compile_s']:.1f} s (slowest: {top}); cached in {result['cache']}",
              file=sys.stderr)
    else:
        print(f"norn warmup: every kernel was already compiled ({result['cache']}); "
              f"{result['wall_s']:.1f} s", file=sys.stderr)
    return 0
