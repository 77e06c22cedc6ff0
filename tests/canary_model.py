"""A deliberately non-deterministic model: the canary that proves ``verify`` catches divergence.

From tick 5 on, one system draws from a shared, unseeded generator in shuffled entity
order and writes the draws into ``walker.mood``. A replay draws different numbers.
"""

from __future__ import annotations

import numpy as np

from norn.actors.toy import ToyConfig, ToyPlugin
from norn.engine.scenario import Model

CANARY_TICK = 5


def _canary(world) -> None:
    if world.tick < CANARY_TICK:
        return
    t = world.tables["walker"]
    slots = t.live_slots()
    rng = np.random.default_rng()  # shared, unseeded: exactly what the tidy rules forbid
    order = rng.permutation(slots)
    t["mood"][order] = rng.random(len(order)).astype(np.float32)


def build_world(world, scenario) -> None:
    world.add_plugin(ToyPlugin(ToyConfig(walkers=200, capacity=250)))
    world.add_system(
        "canary.shuffle",
        "act",
        _canary,
        writes=("walker.mood",),
        after=("toy.wander",),
        plugin="canary",
    )
    world.order("canary.shuffle", "toy.ponder")  # ponder reads the mood it writes


MODEL = Model("canary", build_world)
