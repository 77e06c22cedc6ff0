"""Player emotion (actors/emotion): the formulas of the package docstring restated and
checked against the kernel, difficulty for a frustrated low-level player, idle turning to
boredom, offline characters frozen, the per-map picture, and ``characters_max`` at the
bound and one past; every tick under the invariants, synctest included."""

from __future__ import annotations

import numpy as np
import pytest

from norn.rules.emotion import BORED, DIMENSIONS, ENGAGED, FRUSTRATED, MOODS
from tests.player_world import CHAR, field, small_world, tick, town


def s(z: float) -> float:
    return z / (1 + z)


def row(world, char: int) -> int:
    return int(world.resources["emotion"].rows(world, np.array([char]))[0])


def test_scores_follow_the_documented_formulas():
    world, feed = small_world()
    er = world.resources["midgard"].spec.rules.emotion
    f = field(world)
    feed.login([CHAR], f, level=10)
    feed.login([CHAR + 1], f, level=80)
    tick(world, synctest=True)
    for c in (CHAR, CHAR + 1):
        feed("player_death", char_id=[c], map_id=f, x=5, y=5)
        feed("mob_kill", char_id=[c, c], mob_id=1002, instance_id=0, map_id=f, x=5, y=5)
    tick(world, synctest=True)
    per_event = 3_600_000 / world.tick_ms / er.window_ticks  # one event's share of a rate
    deaths, kills = per_event, 2 * per_event
    t = world.tables["emotion"]
    r = row(world, CHAR)
    assert t["rates"][r, 0] == pytest.approx(deaths) and t["rates"][r, 1] == pytest.approx(kills)
    fd, fk = deaths / er.deaths_per_hour_ref, kills / er.kills_per_hour_ref
    want = np.zeros(len(DIMENSIONS))
    want[ENGAGED] = s(fk)  # not idle: it acted this tick
    want[FRUSTRATED] = s(fd)
    assert t["score"][r] == pytest.approx(want, abs=1e-6)
    ease = er.ease_max * want[FRUSTRATED] * (1 - 10 / er.low_level_ref)
    got = world.resources["emotion"].difficulty(world, np.array([CHAR, CHAR + 1, CHAR + 7]))
    assert got == pytest.approx([1 - ease, 1.0, 1.0], abs=1e-6)  # low level eased only
    # idle: no event for k ticks; rates decay, boredom grows
    k = 30
    for _ in range(k):
        tick(world)
    a = 1 / er.window_ticks
    fk = kills * (1 - a) ** k / er.kills_per_hour_ref
    idle = s(k / er.idle_ref_ticks)
    assert t["score"][r, BORED] == pytest.approx(idle * (1 - s(fk)), rel=1e-4)
    assert t["score"][r, ENGAGED] == pytest.approx(s(fk) * (1 - idle), rel=1e-4)


def test_offline_characters_are_frozen():
    world, feed = small_world()
    feed.login([CHAR], town(world))
    tick(world)
    feed("npc_talk", char_id=[CHAR], npc_id=[0], text=b"Hi")
    tick(world)
    feed("logout", char_id=[CHAR], account_id=[CHAR + 1_000_000])
    tick(world)
    t = world.tables["emotion"]
    r = row(world, CHAR)
    before = (t["rates"][r].copy(), t["score"][r].copy())
    for _ in range(5):
        tick(world)
    assert (t["rates"][r] == before[0]).all() and (t["score"][r] == before[1]).all()
    assert int(world.tables["emotion_map"]["online"].sum()) == 0


def test_the_per_map_picture():
    world, feed = small_world()
    er = world.resources["midgard"].spec.rules.emotion
    f, home = field(world), town(world)
    feed.login(CHAR + np.arange(3), f)
    feed.login(CHAR + 3 + np.arange(2), home)
    tick(world)
    feed("player_death", char_id=CHAR + np.arange(3), map_id=f, x=5, y=5)
    tick(world, synctest=True)
    em = world.tables["emotion_map"]
    assert em["online"][f] == 3 and em["online"][home] == 2
    assert em["dominant"][f, MOODS.index("frustrated")] == 3
    assert em["dominant"][home, MOODS.index("calm")] == 2  # nothing done yet
    t = world.tables["emotion"]
    fr = t["score"][[row(world, CHAR + i) for i in range(3)], FRUSTRATED]
    assert em["mean"][f, FRUSTRATED] == pytest.approx(fr.mean(), rel=1e-6)
    assert em["pace"][f] == pytest.approx(1 - fr.mean(), rel=1e-5) and em["pace"][f] < 1
    assert er.calm_below > 0


@pytest.mark.parametrize("extra", [0, 1])
def test_characters_max_at_the_bound_and_one_past(extra):
    world, feed = small_world(emotion={"characters_max": 3})
    feed.login(CHAR + np.arange(3 + extra), town(world))
    tick(world)
    stats = world.tables["emotion_stats"]
    assert world.tables["emotion"].count == 3 and int(stats["refused"][0]) == extra
    if extra:  # the longest-unseen offline character's row goes to the newcomer
        feed("logout", char_id=[CHAR + 1], account_id=[CHAR + 1_000_001])
        tick(world)
        feed("npc_talk", char_id=[CHAR + 3], npc_id=[0], text=b"Hi")
        tick(world)
        assert int(stats["evicted"][0]) == 1
        t = world.tables["emotion"]
        assert set(t["char_id"][t.live_slots()].tolist()) == {CHAR, CHAR + 2, CHAR + 3}
