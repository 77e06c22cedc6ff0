"""The tick's one ordered list of phases, and the systems registered into them.

A system is a plain function ``fn(world) -> None`` registered with its phase and the state
it reads and writes, named ``table.column``, ``table.*`` (every column), ``in:channel`` /
``out:channel`` (messages), or any other resource name. At start-up the schedule refuses an
unknown phase, a write to undeclared state, and two systems of one phase writing the same
thing without a declared order (``after``). Within a phase, systems run in topological order
of ``after``, ties broken by name, so registration order never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from norn.engine.errors import ScheduleError

PHASES: tuple[str, ...] = ("ingest", "deliver", "act", "decide", "apply", "emit", "commit")

#: What the engine itself does in each phase, around the plugins' systems (engine/tick.py).
ENGINE_STEPS: dict[str, str] = {
    "ingest": "engine (first): drain the input queue into this tick's events",
    "deliver": "engine (first): deliver every channel in canonical order",
    "act": "",
    "decide": "engine (first): submit new decision requests to the resolver",
    "apply": "engine (first): settle due results and deadlines; (last): spawn/despawn sync",
    "emit": "engine (last): number the tick's actions and hand them to the sinks",
    "commit": "engine (last): chunk digest; the runner then journals and snapshots",
}


@dataclass(frozen=True)
class System:
    name: str
    phase: str
    fn: Callable[..., None]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    plugin: str = "engine"


def _overlaps(a: str, b: str) -> bool:
    if a == b:
        return True
    ta, _, ca = a.partition(".")
    tb, _, cb = b.partition(".")
    return ta == tb and "*" in (ca, cb) and bool(ca) and bool(cb)


@dataclass
class Schedule:
    systems: list[System] = field(default_factory=list)
    _ordered: dict[str, list[System]] | None = None

    def add(self, system: System) -> None:
        if system.phase not in PHASES:
            raise ScheduleError(
                f"system {system.name!r}: unknown phase {system.phase!r}; "
                f"phases are {', '.join(PHASES)}"
            )
        if any(s.name == system.name for s in self.systems):
            raise ScheduleError(f"system {system.name!r} registered twice")
        self.systems.append(system)
        self._ordered = None

    def build(self, known: set[str]) -> dict[str, list[System]]:
        """Validate and order every phase; ``known`` names the writable state."""
        ordered: dict[str, list[System]] = {}
        names = {s.name for s in self.systems}
        for s in self.systems:
            for dep in s.after:
                if dep not in names:
                    raise ScheduleError(f"system {s.name!r}: 'after' names unknown system {dep!r}")
            for w in (*s.writes, *s.reads):
                if not _known(w, known):
                    raise ScheduleError(f"system {s.name!r}: declares unknown state {w!r}")
        for phase in PHASES:
            members = sorted((s for s in self.systems if s.phase == phase), key=lambda s: s.name)
            order = _toposort(phase, members)
            _check_conflicts(phase, order)
            ordered[phase] = order
        self._ordered = ordered
        return ordered

    def phase(self, name: str) -> list[System]:
        if self._ordered is None:
            raise ScheduleError("schedule used before build()")
        return self._ordered[name]

    def describe(self) -> str:
        """The schedule as text; a test pins it so a change is a reviewed diff."""
        if self._ordered is None:
            raise ScheduleError("schedule used before build()")
        lines = []
        for phase in PHASES:
            lines.append(f"{phase}:")
            if ENGINE_STEPS[phase]:
                lines.append(f"  - {ENGINE_STEPS[phase]}")
            for s in self._ordered[phase]:
                lines.append(f"  {s.name} [{s.plugin}]")
                if s.reads:
                    lines.append(f"    reads:  {', '.join(s.reads)}")
                if s.writes:
                    lines.append(f"    writes: {', '.join(s.writes)}")
                if s.after:
                    lines.append(f"    after:  {', '.join(s.after)}")
        return "\n".join(lines) + "\n"


def _known(name: str, known: set[str]) -> bool:
    if name in known:
        return True
    table, _, col = name.partition(".")
    return col == "*" and any(k.startswith(table + ".") for k in known)


def _toposort(phase: str, members: list[System]) -> list[System]:
    by_name = {s.name: s for s in members}
    done: list[System] = []
    placed: set[str] = set()
    remaining = list(members)
    while remaining:
        ready = [s for s in remaining if all(d in placed or d not in by_name for d in s.after)]
        if not ready:
            cycle = ", ".join(s.name for s in remaining)
            raise ScheduleError(f"phase {phase}: 'after' constraints form a cycle among {cycle}")
        nxt = ready[0]  # members are name-sorted, so ties break by name
        done.append(nxt)
        placed.add(nxt.name)
        remaining.remove(nxt)
    return done


def _check_conflicts(phase: str, order: list[System]) -> None:
    before: dict[str, set[str]] = {}
    for s in order:
        preds = set(s.after)
        for d in s.after:
            preds |= before.get(d, set())
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
