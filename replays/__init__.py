"""Norn replays: designers' tools over recorded runs (docs/designers.md).

``norn.replays.open(run)`` opens a run directory for notebooks: ``.at(tick)`` is the world
at that tick as Arrow tables (``.table("npc")``, ``.to_pandas("market")``), ``.events()``,
``.actions()`` and ``.decisions()`` what happened. The ``norn replay`` commands
(``cli.py``) are built on the same object.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from norn.replays.session import Replay


def open(run: str | Path) -> Replay:
    """Open the run directory ``run`` for seeking and reading (it shadows the builtin
    inside this package only: the designers' spelling is ``replays.open``)."""
    from norn.replays.session import Replay

    return Replay(run)


__all__ = ["open"]
