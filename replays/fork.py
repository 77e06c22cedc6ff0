"""What-if forks: a new run that starts from a recorded run's state at tick T.

``fork(parent, at=T, out=NEW, ...)`` seeks the parent to T, builds the world again from the
parent's scenario with any ``--set`` changes (``rules.economy.price_band_min=0.8``) and
``--seed``, restores the parent's state into it, and runs on: every tick takes the
parent's recorded inputs for that tick (less the ``--drop``ped ones) plus the injected GM
events (``--inject 'admin_hazard map=payon type=plague intensity=0.8'``). Decisions are
settled afresh by the built-in resolver (the parent's choices were about another world).
Past the parent's last tick, the scenario's own event source feeds it, as ``norn run``.

The fork is a normal run directory: a journal whose header names its parent, the fork
tick and what changed (``fork``), and whose first snapshot is the state it started from
(a changed seed or scenario cannot rebuild it from tick 0), so ``verify``, ``show``,
``diff`` and the rest read it like any run.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from norn.engine import state
from norn.engine.config import make_config
from norn.engine.errors import ConfigError, UserError
from norn.engine.inputs import InputBatch
from norn.engine.kinds import Kinds
from norn.engine.recorder import SNAPSHOT_DIR, Recorder
from norn.engine.runner import build_world, make_header, run
from norn.engine.scenario import Scenario, load_model, parse_scenario
from norn.engine.world import World
from norn.replays.labels import Vocabulary
from norn.replays.session import Replay

#: The input source of a fork's injected events (a live run's GM commands use ``gm``).
FORK_SOURCE = "fork"


# -- --set: scenario parameters ------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A TOML value (``0.8``, ``true``, ``[1, 2]``, ``"x"``); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_sets(scenario: Scenario, sets: list[str]) -> Scenario:
    """``scenario`` with each ``dotted.key=value`` changed; a key must exist already (a
    typo is an error naming it, not a silently ignored new key)."""
    if not sets:
        return scenario
    from norn.actors.midgard.tomlw import dumps

    data = tomllib.loads(scenario.text)
    for item in sets:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        path = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"--set {item!r}: the scenario has no "
                                  f"{'.'.join(path[:i + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or path[-1] not in node:
            raise ConfigError(f"--set {item!r}: the scenario has no {key.strip()!r}")
        node[path[-1]] = parse_value(raw.strip())
    return parse_scenario(dumps(data), scenario.source)


# -- --inject: GM events -------------------------------------------------------------------
@dataclass
class Injection:
    """One GM event: its kind, its columns (one row) and the tick it lands in (0: next)."""

    kind: str
    columns: dict[str, np.ndarray]
    tick: int = 0
    text: str = ""


def parse_inject(text: str, kinds: Kinds, vocab: Vocabulary) -> Injection:
    """``'admin_hazard map=payon type=plague intensity=0.8 [at=120]'`` as one event.

    Keys are the kind's fields, also without ``_id`` (``map`` for ``map_id``) and ``type``
    for its ``*_type`` field; names (maps, items, factions, hazard types) become ids
    through the world's vocabulary. Every field must be given.
    """
    words = shlex.split(text)
    if not words:
        raise UserError("--inject: empty; expected 'KIND key=value ...'")
    kind = words[0]
    spec = kinds.events.get(kind)
    if spec is None:
        raise UserError(f"--inject {text!r}: unknown event kind {kind!r}; kinds: "
                        f"{sorted(kinds.events)}")
    alias: dict[str, str] = {}
    for f in spec.fields:
        alias[f.name] = f.name
        if f.name.endswith("_id"):
            alias.setdefault(f.name[:-3], f.name)
        if f.name.endswith("_type"):
            alias.setdefault("type", f.name)
    by_name = {f.name: f for f in spec.fields}
    values: dict[str, Any] = {}
    tick = 0
    for w in words[1:]:
        key, eq, raw = w.partition("=")
        if not eq:
            raise UserError(f"--inject {text!r}: {w!r} is not key=value")
        if key in ("at", "tick"):
            tick = int(raw)
            continue
        name = alias.get(key)
        if name is None:
            raise UserError(f"--inject {text!r}: {kind} has no field {key!r}; fields: "
                            f"{[f.name for f in spec.fields]}")
        values[name] = _field_value(kind, by_name[name], raw, vocab, text)
    missing = [f.name for f in spec.fields if f.name not in values]
    if missing:
        raise UserError(f"--inject {text!r}: missing {missing}")
    cols = {f.name: np.asarray([values[f.name]], dtype=f.dtype) for f in spec.fields}
    return Injection(kind, cols, tick, text)


def _field_value(kind: str, f: Any, raw: str, vocab: Vocabulary, text: str) -> Any:
    voc = vocab.meaning(kind, f.name)
    if f.kind == "text":
        return raw.encode()
    if f.kind == "float":
        return float(raw)
    try:
        return int(raw)
    except ValueError:
        pass
    if voc == "item_id" and raw in vocab.names.get("item", ()):
        assert vocab.item_ids is not None
        return int(vocab.item_ids[vocab.names["item"].index(raw)])
    if voc == "map" or f.kind == "map":
        names = vocab.names.get("map", ())
    else:
        names = vocab.names.get(voc or "", ())
    if raw in names:
        return names.index(raw)
    raise UserError(f"--inject {text!r}: {f.name}={raw!r} is neither a number nor a known "
                    f"name{f' (known: {list(names)[:12]})' if names else ''}")


# -- --drop: recorded inputs left out --------------------------------------------------------
@dataclass
class Drop:
    """Recorded input batches to leave out: all conditions must hold (kind, source, ticks)."""

    kind: str | None = None
    source: str | None = None
    lo: int = 0
    hi: int = 1 << 62
    text: str = ""

    def matches(self, tick: int, batch: InputBatch) -> bool:
        return ((self.kind is None or batch.kind == self.kind)
                and (self.source is None or batch.source == self.source)
                and self.lo <= tick <= self.hi)


def parse_drop(text: str) -> Drop:
    """``'kind=npc_shop source=gen ticks=100..200'``; a bare word is a kind."""
    d = Drop(text=text)
    for w in shlex.split(text):
        key, eq, raw = w.partition("=")
        if not eq:
            key, raw = "kind", w
        if key == "kind":
            d.kind = raw
        elif key == "source":
            d.source = raw
        elif key in ("ticks", "tick"):
            lo, dots, hi = raw.partition("..")
            d.lo = int(lo) if lo else 0
            d.hi = int(hi) if dots and hi else (d.lo if not dots else 1 << 62)
        else:
            raise UserError(f"--drop {text!r}: unknown condition {key!r} (kind, source, ticks)")
    return d


# -- the fork --------------------------------------------------------------------------------
@dataclass
class ForkResult:
    out: Path
    parent: Path
    at: int
    last_tick: int
    ticks: int
    dropped_batches: int = 0
    injected: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "parent": str(self.parent), "at": self.at,
                "last_tick": self.last_tick, "ticks": self.ticks,
                "dropped_batches": self.dropped_batches, "injected": self.injected,
                "summary": self.summary}


def fork(
    parent_dir: str | Path, *, at: int, out: str | Path, sets: list[str] | None = None,
    injects: list[str] | None = None, drops: list[str] | None = None,
    seed: int | None = None, ticks: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ForkResult:
    """Run a what-if from ``parent_dir``'s tick ``at`` into the new run ``out``."""
    sets, injects, drops = sets or [], injects or [], drops or []
    with Replay(parent_dir) as parent:
        if at == parent.last_tick and not ticks:
            raise UserError(f"--at {at} is the parent's last tick: give --ticks to run on")
        src = parent.world_at(at)
        arrays, meta = state.capture(src)
        vocab = Vocabulary.of(src)
        kinds = src.kinds
        sc = parent.header["scenario"]
        scenario = apply_sets(parse_scenario(sc["text"], sc["source"]), sets)
        cfg = dict(parent.header["config"])
        n = ticks if ticks is not None else parent.last_tick - at
        if n < 1:
            raise UserError(f"the fork has no ticks to run (--at {at}, --ticks {ticks})")
        cfg.update(seed=cfg["seed"] if seed is None else seed, clock="fast",
                   ticks=at + n, lockstep_servers=())
        config = make_config(None, **cfg)
        injections = [parse_inject(t, kinds, vocab) for t in injects]
        drop_rules = [parse_drop(t) for t in drops]
        for inj in injections:
            inj.tick = inj.tick or at + 1
            if not at < inj.tick <= at + n:
                raise UserError(f"--inject {inj.text!r}: tick {inj.tick} is outside the fork's "
                                f"ticks {at + 1}..{at + n}")
        world = build_world(scenario, config)
        meta = {**meta, "seed": config.seed}
        state.restore(world, arrays, meta)
        header = make_header(scenario, config, world)
        header["fork"] = {
            "parent": str(Path(parent.dir).resolve()),
            "tick": at,
            "parent_digest": f"{src.digest.combine(at):016x}",
            "parent_scenario": parent.header["scenario"]["hash"],
            "parent_seed": parent.header["seed"],
            "snapshot": f"{SNAPSHOT_DIR}/tick-{at:09d}.arrow",
            "set": sets, "inject": injects, "drop": drops, "seed": seed,
        }
        recorder = Recorder.create(out, header, fsync=config.fsync,
                                   snapshot_every=config.snapshot_every)
        recorder.snapshot(world)
        recorder.writer.commit()
        result = ForkResult(Path(out), Path(parent.dir), at, at, n)
        feed = _feeder(world, parent, injections, drop_rules, result, scenario, config.seed)
        done = [0]

        def on_tick(_rec: Any) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], n)

        summary = run(world, config, recorder, ticks=n, before_tick=feed, on_tick=on_tick)
        recorder.close(world, summary.stopped)
    result.last_tick = world.tick
    result.summary = {"ticks": summary.ticks, "last_digest": f"{summary.last_digest:016x}",
                      "actions": summary.actions, "input_batches": summary.inputs}
    return result


def _feeder(world: World, parent: Replay, injections: list[Injection], drops: list[Drop],
            result: ForkResult, scenario: Scenario, seed: int) -> Callable[[int], None]:
    """Before each tick: the parent's batches of that tick (less drops) and injections."""
    source = None
    hook = load_model(scenario.model).make_event_source
    if hook is not None:
        source = hook(scenario.data, seed)
    seq = [0]

    def offer(batch: InputBatch) -> None:
        if not world.inputs.offer(batch):
            raise UserError(f"tick {world.tick + 1}: the fork's inputs exceed the input queue")

    def feed(tick: int) -> None:
        if tick <= parent.last_tick:
            for b in parent.record(tick).inputs:  # a loop over batches
                if any(d.matches(tick, b) for d in drops):
                    result.dropped_batches += 1
                    continue
                offer(InputBatch(b.source, b.seq, b.kind, dict(b.columns)))
        elif source is not None:
            for b in source(tick):
                offer(b)
        for inj in injections:
            if inj.tick == tick:
                offer(InputBatch(FORK_SOURCE, seq[0], inj.kind, inj.columns))
                seq[0] += 1
                result.injected += 1

    return feed
