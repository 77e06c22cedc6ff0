"""Whole-world snapshots: every piece of state as named arrays, and back.

Names: ``table/<table>/<column>``, ``msg/<channel>/<field>`` (messages pending delivery),
``decisions/pending``. Meta: tick, seed, each table's high-water mark. A restored world
continues bit-identically; ``synctest`` and the snapshot tests prove it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from norn.engine.errors import SnapshotError


def capture(world) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    for tname, table in world.tables.items():
        for cname, col in table.state_arrays().items():
            arrays[f"table/{tname}/{cname}"] = col[: table.hwm].copy()
    for cname, ch in world.channels.items():
        for f, a in ch.pending().items():
            arrays[f"msg/{cname}/{f}"] = a.copy()
    arrays["decisions/pending"] = world.decisions.pending.copy()
    meta = {
        "tick": int(world.tick),
        "seed": int(world.seed),
        "hwm": {name: int(t.hwm) for name, t in world.tables.items()},
        "plugins": list(world.plugins),
    }
    return arrays, meta


def restore(world, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Load a capture into a world built from the same scenario (same tables and channels)."""
    if int(meta["seed"]) != world.seed:
        raise SnapshotError(f"snapshot seed {meta['seed']} != world seed {world.seed}")
    if list(meta["plugins"]) != list(world.plugins):
        raise SnapshotError(f"snapshot plugins {meta['plugins']} != world plugins {world.plugins}")
    for tname, table in world.tables.items():
        hwm = int(meta["hwm"][tname])
        cols = {}
        for cname, col in table.columns.items():
            key = f"table/{tname}/{cname}"
            if key not in arrays:
                raise SnapshotError(f"snapshot lacks {key}")
            full = np.empty_like(col)
            full[...] = table.specs[cname].fill
            full[:hwm] = arrays[key]
            cols[cname] = full
        table.restore_arrays(cols, hwm)
    for cname, ch in world.channels.items():
        ch.restore_pending({f: arrays[f"msg/{cname}/{f}"] for f, _ in ch.fields})
    world.decisions.pending = arrays["decisions/pending"].copy()
    world.tick = int(meta["tick"])
    resubmit_pending(world)
    for region in world.digest.regions:
        world.digest._rehash(region, full=True)


def resubmit_pending(world) -> None:
    """Hand every pending request to the resolver again, as submitted at its creation tick.

    The built-in resolver's in-flight work is a pure function of the pending requests, so
    this rebuilds it exactly after a restore.
    """
    pending = world.decisions.pending
    for created in np.unique(pending["created_tick"]):
        world.resolver.submit(int(created), pending[pending["created_tick"] == created])
