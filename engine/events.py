"""Game events as the engine sees them: one column schema per event kind.

Kinds are declared once (``engine/kinds.py``); rAthena's protocol-v1 vocabulary is in
``engine/rathena.py`` and a world's own registry is ``World.kinds``. The names below are
protocol v1's schemas, derived from that declaration, for code that speaks only v1 (the
reference client, the simulators, the input queue's default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from norn.engine import rathena
from norn.engine.kinds import TEXT_DTYPE, Schema

if TYPE_CHECKING:
    from norn.engine.inputs import InputBatch

__all__ = ["EVENT_KINDS", "EVENT_KIND_IDS", "EVENT_SCHEMAS", "TEXT_DTYPE", "empty_columns",
           "group_events"]

#: kind -> ordered (field, dtype) pairs of protocol v1. The order is the wire's column order.
EVENT_SCHEMAS: dict[str, Schema] = {k.name: k.schema for k in rathena.EVENT_KINDS}
EVENT_KINDS: tuple[str, ...] = tuple(EVENT_SCHEMAS)
EVENT_KIND_IDS: dict[str, int] = {k: i for i, k in enumerate(EVENT_KINDS)}


def empty_columns(kind: str, schemas: dict[str, Schema] = EVENT_SCHEMAS) -> dict[str, np.ndarray]:
    """Zero-length columns of ``kind``: what a system reads when no such event came."""
    return {name: np.empty(0, dtype=dt) for name, dt in schemas[kind]}


def group_events(
    batches: list[InputBatch], schemas: dict[str, Schema] = EVENT_SCHEMAS
) -> dict[str, dict[str, np.ndarray]]:
    """This tick's batches concatenated per kind, every kind of ``schemas`` present.

    A loop over batches, never over events; kinds keep their registry order.
    """
    parts: dict[str, list[InputBatch]] = {}
    for b in batches:
        parts.setdefault(b.kind, []).append(b)
    grouped = {}
    for kind, schema in schemas.items():
        bs = parts.get(kind)
        if not bs:
            grouped[kind] = {name: np.empty(0, dtype=dt) for name, dt in schema}
        else:
            grouped[kind] = {
                name: np.concatenate([b.columns[name] for b in bs]) for name, _ in schema
            }
    return grouped
