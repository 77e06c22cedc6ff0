"""The default world's systems that mark their own writes mark every row they write, and
commit then rehashes only what changed (issue 10, digest by chunk).

Synctest rehashes every region from scratch each tick and stops naming any column written
outside the rows its system marked; here it runs with the world's own players (kills,
talks, quests, shop events) and admin hazard commands (one updating a hazard, one starting
another), so every marking path of npc.act, npc.receive, faction.deeds, faction.update
and hazard.ingest is taken.
"""

from __future__ import annotations

import numpy as np

from norn.engine import digest as digest_mod
from norn.engine.config import make_config
from norn.engine.inputs import InputBatch
from norn.engine.runner import build_world, synctest_step
from norn.engine.scenario import load_model, load_scenario

TICKS = 40


def _world():
    sc = load_scenario(None)
    config = make_config(None, clock="fast", fsync=False)
    world = build_world(sc, config)
    return world, load_model(sc.model).make_event_source(sc.data, config.seed)


def _admin(world, seq: int, map_name: str, kind: str, intensity: float) -> InputBatch:
    st = world.resources["midgard"]
    cols = {
        "map_id": np.array([st.map_id(map_name)], np.int16),
        "hazard_type": np.array([st.htype_names.index(kind)], np.int16),
        "intensity": np.array([intensity], np.float32),
    }
    return InputBatch("admin", seq, "admin_hazard", cols)


def test_synctest_finds_no_write_outside_the_marked_rows(monkeypatch):
    world, source = _world()
    rehashed: dict[int, set[str]] = {}
    real = digest_mod.Digest.commit

    def seen(self, tick):  # the table regions marked written when each commit rehashes
        if self is world.digest:  # (not synctest's own digests)
            flags, owner = self._layout()
            hot = np.unique(owner[np.flatnonzero(flags)]).tolist()
            rehashed.setdefault(tick, set()).update(self.regions[i].key for i in hot)
        return real(self, tick)

    monkeypatch.setattr(digest_mod.Digest, "commit", seen)
    kinds: set[str] = set()
    for _ in range(TICKS):
        tick = world.tick + 1
        for batch in source(tick):
            kinds.add(batch.kind)
            assert world.inputs.offer(batch)
        if tick == 12:
            assert world.inputs.offer(_admin(world, 0, "izlude", "storm", 0.9))
        if tick == 15:
            assert world.inputs.offer(_admin(world, 1, "izlude", "storm", 0.4))  # update it
        synctest_step(world)  # raises naming any column written outside its marks
    assert {"mob_kill", "npc_talk", "quest_done", "npc_shop"} <= kinds
    hz = world.tables["hazard_stats"]
    assert hz["admin"][0] == 2 and hz["kills"][0] > 0
    fs = world.tables["faction_stats"]
    assert fs["talks"][0] > 0 and fs["quests"][0] > 0 and fs["updates"][0] == TICKS // 10
    # faction.update runs on every 10th tick: territory is rehashed then, not between
    every = {t for t, keys in rehashed.items() if "territory.influence" in keys}
    assert every >= {10, 20, 30, 40} and not every & {11, 13, 17, 23}
