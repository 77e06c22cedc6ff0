"""A small generated Rune-Midgarts for the living world's tests: events go in by hand, every
tick runs under synctest (snapshot, step, restore, step again: state all in tables,
writes all declared) and every invariant is checked after it."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from norn.actors.midgard.generate import generate
from norn.actors.midgard.tomlw import dumps
from norn.engine.config import make_config
from norn.engine.inputs import InputBatch
from norn.engine.runner import build_world, synctest_step
from norn.engine.scenario import parse_scenario
from tests.test_world_invariants import violations

CHAR = 150000


def small_world(seed: int = 3, markets: int = 12, **rules: dict[str, Any]):
    """A world of 12 maps and few NPCs (one town per 64 markets), no simulated players;
    ``rules`` update sections of ``[rules]`` (``quests={"problems_max": 2}``)."""
    sc = generate(maps=12, npcs=120, markets=markets, factions=2, hazards=0, seed=seed,
                  players=0)
    data = copy.deepcopy(sc.data)
    for section, values in rules.items():
        data["rules"][section].update(values)
    sc = parse_scenario(dumps(data), "living-test.toml")
    return build_world(sc, make_config(None, seed=seed, fsync=False, snapshot_every=0))


class Feed:
    """Events for the next tick, as a map server would send them."""

    def __init__(self, world) -> None:
        self.world = world
        self.seq = 0

    def __call__(self, kind: str, **cols: Any) -> None:
        schema = self.world.kinds.event_schemas[kind]
        typed = {n: np.ascontiguousarray(np.atleast_1d(cols[n]), dtype=dt) for n, dt in schema}
        self.seq += 1
        assert self.world.inputs.offer(InputBatch("test", self.seq, kind, typed))


def tick(world, n: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Step ``n`` ticks under synctest, invariants checked; the actions of all of them."""
    seen: dict[str, list[dict[str, np.ndarray]]] = {}
    for _ in range(n):
        synctest_step(world)
        problems = violations(world)
        assert not problems, f"tick {world.tick}: {problems}"
        for kind, cols in world.last_actions.kinds.items():
            seen.setdefault(kind, []).append(cols)
    return {k: {c: np.concatenate([b[c] for b in v]) for c in v[0]} for k, v in seen.items()}


def field_maps(world) -> np.ndarray:
    return np.flatnonzero(~world.resources["geography"].is_town)


def walkable_cell(world, m: int) -> tuple[int, int]:
    """The first walkable cell of map ``m`` from its middle outwards (a test's spot)."""
    geo = world.resources["geography"]
    w, h = int(geo.width[m]), int(geo.height[m])
    grid = geo.walk[geo.walk_off[m]: geo.walk_off[m] + w * h].reshape(h, w)
    ys, xs = np.nonzero(grid)
    k = int(np.argmin((xs - w // 2) ** 2 + (ys - h // 2) ** 2))
    return int(xs[k]), int(ys[k])


def login(feed: Feed, world, chars: list[int], m: int) -> None:
    x, y = walkable_cell(world, m)
    n = len(chars)
    feed("login", char_id=chars, account_id=[c + 1_000_000 for c in chars],
         map_id=[m] * n, x=[x] * n, y=[y] * n, base_level=[10] * n)
