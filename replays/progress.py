"""Progress of long replay commands on a terminal: ticks done, rate and time left.

Replays of long runs take minutes; a designer should see that it moves. The bar goes to
stderr, only on a terminal and never under ``--json`` (scripts read stdout, CI logs stay
clean). Commands hand ``Progress.update`` to the replay loop as its callback.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    """``with Progress(enabled, label) as p: replay(..., progress=p.update)``."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self._prog: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._prog = Bar(
                TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )
            self._task = self._prog.add_task(self.label, total=None, rate="")
            self._prog.start()
        return self

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` ticks replayed (the loop calls this every tick or so)."""
        if self._prog is None:
            return
        task = self._prog.tasks[0]
        speed = task.speed
        rate = f"{speed:,.0f} ticks/s" if speed else ""
        self._prog.update(self._task, completed=done, total=total, rate=rate)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._prog is not None:
            self._prog.stop()
