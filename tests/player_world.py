"""A small generated Midgard world fed hand-made player events, for the tests of the kinds
that follow players (karma, memory, emotion, the players' economy)."""

from __future__ import annotations

import copy

import numpy as np

from norn.actors.midgard.generate import generate
from norn.actors.midgard.tomlw import dumps
from norn.engine.config import make_config
from norn.engine.inputs import InputBatch
from norn.engine.runner import build_world, synctest_step
from norn.engine.scenario import parse_scenario
from norn.engine.tick import step
from tests import player_invariants

CHAR = 150000  # the first character id the tests use


def small_world(seed: int = 5, **rules: dict):
    """A 6-map world with 60 NPCs and no simulated players; ``rules`` override rule
    sections key by key (``karma={"characters_max": 3}``)."""
    sc = generate(maps=6, npcs=60, markets=6, factions=2, hazards=0, seed=seed)
    data = copy.deepcopy(sc.data)
    for section, values in rules.items():
        data["rules"][section].update(values)
    sc = parse_scenario(dumps(data), f"test:{sc.name}")
    world = build_world(sc, make_config(None, seed=seed))
    return world, Feed(world)


class Feed:
    """Offers event batches to a world's input queue, one source, increasing seqs."""

    def __init__(self, world) -> None:
        self.world = world
        self.seq = 0

    def __call__(self, kind: str, **cols) -> None:
        schema = self.world.kinds.event_schemas[kind]
        n = max(np.size(v) for v in cols.values())  # scalars repeat
        typed = {c: np.ascontiguousarray(np.broadcast_to(np.asarray(cols[c]), (n,)), dtype=dt)
                 for c, dt in schema}
        assert self.world.inputs.offer(InputBatch("test", self.seq, kind, typed))
        self.seq += 1

    def login(self, chars, map_id: int, level: int = 10) -> None:
        chars = np.atleast_1d(chars)
        self("login", char_id=chars, account_id=chars + 1_000_000, map_id=map_id, x=10, y=10,
             base_level=level)


def tick(world, synctest: bool = False) -> None:
    """One tick, then every invariant of the kinds that follow players."""
    if synctest:
        synctest_step(world)
    else:
        step(world)
    problems = player_invariants.violations(world)
    assert not problems, f"tick {world.tick}: {problems}"


def actions(world, kind: str) -> dict[str, np.ndarray]:
    """The last tick's actions of ``kind`` (empty columns if none)."""
    batch = world.last_actions
    if batch is None or kind not in batch.kinds:
        return {n: np.empty(0, dt) for n, dt in world.kinds.action_schemas[kind]}
    return batch.kinds[kind]


def town(world) -> int:
    """A town map of the world (the first)."""
    return int(world.resources["midgard"].town_maps[0])


def field(world) -> int:
    """A map that is not a town."""
    st = world.resources["midgard"]
    return int(np.flatnonzero(~st.is_town)[0])
