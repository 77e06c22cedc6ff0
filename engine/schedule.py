"""The tick's one ordered list of phases, and every system in them, the engine's included.

A system is a plain function ``fn(world) -> None`` registered with its phase and the state
it reads and writes, named ``table.column``, ``table.*`` (every column), ``in:channel`` /
``out:channel`` (messages), or any other resource name. The engine's own work (drain the
inputs, deliver messages, submit and settle decisions, the spawn/despawn sync, number the
actions, digest) is systems too (``engine/systems.py``), holding the ``first`` or ``last``
slot of their phase, so ``step`` is one loop over this list and nothing runs outside it.

At start-up the schedule refuses an unknown phase, undeclared state, and two systems of
one phase without a declared order where one writes what the other reads or writes: the
outcome would hang on the tie-break by name, which nobody chose. An order is declared with
``after`` on the later system or, when neither plugin should know the other, by the model
that composes them (``Schedule.order``). Within a phase, systems run first-slot, then the
plugins' in topological order of their ``after`` edges (ties broken by name, so
registration order never matters), then last-slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from norn.engine.errors import ScheduleError

PHASES: tuple[str, ...] = ("ingest", "deliver", "act", "decide", "apply", "emit", "commit")

#: The slots a system may hold in its phase, in run order; "" is the plugins' middle.
SLOTS: tuple[str, ...] = ("first", "", "last")

#: Only the engine's own systems may hold a first or last slot (a plugin that ran before
#: the inputs are drained or after the digest would see or leave a half-made tick).
SLOT_OWNER = "engine"


@dataclass(frozen=True)
class System:
    """One named step of the tick: ``fn(world)`` with what it reads and writes.

    ``marks_own_writes``: the system marks the rows it wrote itself (``World.mark_rows``,
    ``World.chunk_mask``), so the engine does not mark its declared columns whole.
    """

    name: str
    phase: str
    fn: Callable[..., None]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    plugin: str = "engine"
    slot: str = ""
    marks_own_writes: bool = False


def _overlaps(a: str, b: str) -> bool:
    if a == b:
        return True
    ta, _, ca = a.partition(".")
    tb, _, cb = b.partition(".")
    return ta == tb and "*" in (ca, cb) and bool(ca) and bool(cb)


@dataclass
class Schedule:
    systems: list[System] = field(default_factory=list)
    _orders: list[tuple[str, str]] = field(default_factory=list)
    _ordered: dict[str, list[System]] | None = None

    def add(self, system: System) -> None:
        if system.phase not in PHASES:
            raise ScheduleError(
                f"system {system.name!r}: unknown phase {system.phase!r}; "
                f"phases are {', '.join(PHASES)}"
            )
        if system.slot not in SLOTS:
            raise ScheduleError(
                f"system {system.name!r}: unknown slot {system.slot!r}; slots are "
                f"'first', '' and 'last'"
            )
        if system.slot and system.plugin != SLOT_OWNER:
            raise ScheduleError(
                f"system {system.name!r} of plugin {system.plugin!r}: only the engine's "
                f"systems hold a {system.slot!r} slot; order a plugin's system with 'after'"
            )
        if any(s.name == system.name for s in self.systems):
            raise ScheduleError(f"system {system.name!r} registered twice")
        self.systems.append(system)
        self._ordered = None

    def order(self, first: str, then: str) -> None:
        """Declare that system ``then`` runs after ``first`` (both of one phase).

        For a model that composes plugins which do not know each other: the order is the
        model's to choose, so it is declared there, not inside either plugin.
        """
        self._orders.append((first, then))
        self._ordered = None

    def build(self, known: set[str]) -> dict[str, list[System]]:
        """Validate and order every phase; ``known`` names the declarable state."""
        ordered: dict[str, list[System]] = {}
        by_name = {s.name: s for s in self.systems}
        for s in self.systems:
            for dep in s.after:
                if dep not in by_name:
                    raise ScheduleError(f"system {s.name!r}: 'after' names unknown system {dep!r}")
            for w in (*s.writes, *s.reads):
                if not _known(w, known):
                    raise ScheduleError(f"system {s.name!r}: declares unknown state {w!r}")
        deps: dict[str, set[str]] = {s.name: set(s.after) for s in self.systems}
        for first, then in self._orders:
            for name in (first, then):
                if name not in by_name:
                    raise ScheduleError(
                        f"order({first!r}, {then!r}): no system named {name!r}"
                    )
            if by_name[first].phase != by_name[then].phase:
                raise ScheduleError(
                    f"order({first!r}, {then!r}): they run in different phases "
                    f"({by_name[first].phase}, {by_name[then].phase}); phases are ordered already"
                )
            deps[then].add(first)
        for phase in PHASES:
            members = sorted((s for s in self.systems if s.phase == phase), key=lambda s: s.name)
            order = _toposort(phase, members, deps)
            _check_conflicts(phase, order, deps)
            ordered[phase] = order
        self._ordered = ordered
        return ordered

    def phase(self, name: str) -> list[System]:
        if self._ordered is None:
            raise ScheduleError("schedule used before build()")
        return self._ordered[name]

    def describe(self) -> str:
        """The schedule as text; tests pin it so a change is a reviewed diff."""
        if self._ordered is None:
            raise ScheduleError("schedule used before build()")
        lines = []
        for phase in PHASES:
            lines.append(f"{phase}:")
            for s in self._ordered[phase]:
                slot = f" ({s.slot})" if s.slot else ""
                lines.append(f"  {s.name} [{s.plugin}]{slot}")
                if s.reads:
                    lines.append(f"    reads:  {', '.join(s.reads)}")
                if s.writes:
                    lines.append(f"    writes: {', '.join(s.writes)}")
                if s.marks_own_writes:
                    lines.append("    marks:  its own written rows")
                after = sorted(d for d, t in self._orders if t == s.name)
                if s.after or after:
                    lines.append(f"    after:  {', '.join((*s.after, *after))}")
        return "\n".join(lines) + "\n"


def _known(name: str, known: set[str]) -> bool:
    if name in known:
        return True
    table, _, col = name.partition(".")
    return col == "*" and any(k.startswith(table + ".") for k in known)


def _toposort(phase: str, members: list[System], deps: dict[str, set[str]]) -> list[System]:
    """Slot by slot; inside one, the name-smallest system whose predecessors have run."""
    rank = {s.name: SLOTS.index(s.slot) for s in members}
    for s in members:
        for d in deps[s.name]:
            if d in rank and rank[d] > rank[s.name]:
                raise ScheduleError(
                    f"phase {phase}: system {s.name!r} cannot run after {d!r}, which holds "
                    f"the {SLOTS[rank[d]]!r} slot"
                )
    done: list[System] = []
    placed: set[str] = set()
    for r in range(len(SLOTS)):
        remaining = [s for s in members if rank[s.name] == r]  # name-sorted
        while remaining:
            ready = [s for s in remaining if all(d in placed or d not in rank
                                                 for d in deps[s.name])]
            if not ready:
                cycle = ", ".join(s.name for s in remaining)
                raise ScheduleError(
                    f"phase {phase}: 'after' constraints form a cycle among {cycle}"
                )
            nxt = ready[0]  # ties break by name
            done.append(nxt)
            placed.add(nxt.name)
            remaining.remove(nxt)
    return done


def _check_conflicts(phase: str, order: list[System], deps: dict[str, set[str]]) -> None:
    """Refuse two unordered systems where one writes what the other reads or writes."""
    before: dict[str, set[str]] = {}
    for i, s in enumerate(order):
        preds = {p.name for p in order[:i] if p.slot != s.slot}  # slots are ordered
        for d in deps[s.name]:
            preds |= {d} | before.get(d, set())
        before[s.name] = preds
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if a.name in before[b.name] or b.name in before[a.name]:
                continue
            for wa in a.writes:
                for wb in b.writes:
                    if _overlaps(wa, wb):
                        raise ScheduleError(
                            f"phase {phase}: systems {a.name!r} and {b.name!r} both write "
                            f"{wa!r} with no declared order; add after=({a.name!r},) to one"
                        )
            for reader, writer in ((a, b), (b, a)):
                for r in reader.reads:
                    for w in writer.writes:
                        if _overlaps(r, w):
                            raise ScheduleError(
                                f"phase {phase}: system {reader.name!r} reads {r!r}, which "
                                f"{writer.name!r} writes ({w!r}), with no declared order, so "
                                f"the tie-break by name decides what it sees; add "
                                f"after=({writer.name!r},) to {reader.name!r} or "
                                f"after=({reader.name!r},) to {writer.name!r}, or order them "
                                f"in the model (World.order)"
                            )
