"""A conserved quantity (zeny): where it is held, and the named ways it enters and leaves.

The model creates the ledger with its accounts, the named ``sources`` and ``sinks`` in a
fixed order (their order is the ``ledger`` table's column layout), adds it as a plugin
and so provides it as the resource ``"ledger"``. A kind that holds the quantity declares
each holding once (``holds("npc.wallet")``, or ``holds("msg:order.escrow_zeny")`` for
amounts travelling in messages) and the accounts it books to (``uses(sources=...)``);
``book`` records what enters or leaves. ``audit`` checks ``held == initial + sources -
sinks`` by summing the declared holdings: no list of where zeny lives is written anywhere
else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from norn.engine.errors import DefinitionError, require
from norn.engine.table import Column

if TYPE_CHECKING:
    from norn.engine.world import World


class Ledger:
    """The ledger plugin and resource. State is its one-row ``table``; this object is config."""

    name = "ledger"

    def __init__(
        self, *, sources: tuple[str, ...], sinks: tuple[str, ...], table: str = "ledger",
        unit: str = "zeny",
    ) -> None:
        for what, names in (("sources", sources), ("sinks", sinks)):
            if len(set(names)) != len(names) or not all(names):
                raise DefinitionError(f"ledger {what} must be distinct names: {names}")
        self.sources = tuple(sources)
        self.sinks = tuple(sinks)
        self.table = table
        self.unit = unit
        self.holdings: list[str] = []
        self.holders: dict[str, str] = {}  # holding -> plugin that declared it
        self._src = {n: i for i, n in enumerate(sources)}
        self._snk = {n: i for i, n in enumerate(sinks)}
        self._world: World | None = None

    # -- plugin --------------------------------------------------------------------------
    def build(self, world: World) -> None:
        t = world.add_table(
            self.table,
            [
                Column("initial", np.int64),
                Column("sources", np.int64, (len(self.sources),)),
                Column("sinks", np.int64, (len(self.sinks),)),
            ],
            1,
        )
        t.spawn(1)
        world.provide("ledger", self)
        self._world = world

    # -- declarations (build time) -------------------------------------------------------
    def holds(self, *where: str, by: str = "") -> None:
        """Declare holdings: ``table.column`` or ``msg:channel.field`` (integer amounts)."""
        world = self._require_world()
        for w in where:
            if w in self.holders:
                raise DefinitionError(f"ledger: {w!r} declared twice (by {self.holders[w]!r})")
            arr = self._array(world, w)
            if arr.dtype.kind not in "iu":
                raise DefinitionError(f"ledger: holding {w!r} is {arr.dtype}, not an integer")
            self.holdings.append(w)
            self.holders[w] = by or world.building or "?"

    def uses(self, *, sources: tuple[str, ...] = (), sinks: tuple[str, ...] = ()) -> None:
        """Check that the accounts a kind books to exist (an error names the kind)."""
        who = self._require_world().building or "?"
        for n in sources:
            if n not in self._src:
                raise DefinitionError(
                    f"plugin {who!r} books to ledger source {n!r}, not one of {self.sources}"
                )
        for n in sinks:
            if n not in self._snk:
                raise DefinitionError(
                    f"plugin {who!r} books to ledger sink {n!r}, not one of {self.sinks}"
                )

    def reads(self) -> tuple[str, ...]:
        """What an audit system reads: the ledger and every holding (channels as ``out:``)."""
        out = [f"{self.table}.*"]
        for w in self.holdings:
            if w.startswith("msg:"):
                r = "out:" + w[4:].partition(".")[0]
                if r not in out:
                    out.append(r)
            else:
                out.append(w)
        return tuple(out)

    # -- run time --------------------------------------------------------------------------
    def book(
        self, world: World, *, source: str | None = None, sink: str | None = None, amount: int
    ) -> None:
        """Record ``amount`` entering (``source``) or leaving (``sink``) the world."""
        require(amount >= 0, f"ledger: negative amount {amount}")
        led = world.tables[self.table]
        if source is not None:
            led["sources"][0, self._src[source]] += amount
        if sink is not None:
            led["sinks"][0, self._snk[sink]] += amount

    def held(self, world: World) -> int:
        """Everything held now, amounts in flight included (dead rows hold 0)."""
        total = 0
        for w in self.holdings:
            if w.startswith("msg:"):
                total += int(self._array(world, w).sum())
            else:
                table, _, col = w.partition(".")
                t = world.tables[table]
                total += int(t[col][: t.hwm].sum())
        return total

    def set_initial(self, world: World) -> None:
        """Book what the world starts with (after every holder spawned its rows)."""
        total = 0
        for w in self.holdings:
            if w.startswith("msg:"):
                total += int(self._array(world, w).sum())
            else:  # build time: spawned rows are reserved, not yet below hwm
                table, _, col = w.partition(".")
                total += int(world.tables[table][col].sum())
        world.tables[self.table]["initial"][0] = total

    def audit(self, world: World) -> dict[str, int]:
        """held, expected (initial + sources - sinks) and their difference."""
        led = world.tables[self.table]
        expected = (int(led["initial"][0]) + int(led["sources"][0].sum())
                    - int(led["sinks"][0].sum()))
        held = self.held(world)
        return {"held": held, "expected": expected, "difference": held - expected}

    def accounts(self, world: World) -> tuple[dict[str, int], dict[str, int]]:
        """Sources and sinks booked so far, by name."""
        led = world.tables[self.table]
        return (
            {k: int(v) for k, v in zip(self.sources, led["sources"][0], strict=True)},
            {k: int(v) for k, v in zip(self.sinks, led["sinks"][0], strict=True)},
        )

    # -- helpers -----------------------------------------------------------------------------
    def _require_world(self) -> World:
        if self._world is None:
            raise DefinitionError("ledger: add it to the world (add_plugin) before declaring")
        return self._world

    @staticmethod
    def _array(world: World, where: str) -> np.ndarray:
        if where.startswith("msg:"):
            ch, _, f = where[4:].partition(".")
            if ch not in world.channels or f not in dict(world.channels[ch].fields):
                raise DefinitionError(f"ledger: no channel field {where!r}")
            return world.channels[ch].pending()[f]
        table, _, col = where.partition(".")
        if table not in world.tables or col not in world.tables[table].columns:
            raise DefinitionError(f"ledger: no column {where!r}")
        return world.tables[table][col]
