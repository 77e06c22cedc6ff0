"""NPC memory (actors/memory): talks, shop trades and quests remembered and attributed as
the package docstring says, karma colouring affinity, every bound at exactly its ``*_max``
and one past with the documented eviction order, NPCs gone forgotten, fading, and what an
NPC then says; every tick under the invariants, synctest included."""

from __future__ import annotations

import numpy as np
import pytest

from norn.rules.memory import QUEST, TALK, TRADE
from tests.player_world import CHAR, actions, small_world, tick, town


def npcs_on(world, map_id: int, n: int) -> np.ndarray:
    """Handles of ``n`` live NPCs on ``map_id``."""
    t = world.tables["npc"]
    s = t.live_slots()
    s = s[t["map"][s] == map_id][:n]
    assert len(s) == n
    return t.handles(s)


def affinity(world, npc: int, char: int) -> float:
    return float(world.resources["memory"].affinity(world, np.array([npc]), np.array([char]))[0])


def ring(world, npc: int) -> np.ndarray:
    """The NPC's remembered (char, kind, tick) rows, oldest first."""
    m = world.tables["memory"]
    s = m.live_slots()
    s = s[(m["key"][s] >= 0) & (m["npc"][s] == npc)]
    s = s[np.lexsort((s, m["tick"][s]))]
    return np.stack([m["char_id"][s], m["kind"][s], m["tick"][s]], axis=1).astype(np.int64)


def test_talks_trades_and_quests_are_remembered_and_attributed():
    world, feed = small_world(karma={"quest_karma": 0.0})  # affinity without karma's share
    mr = world.resources["midgard"].spec.rules.memory
    st = world.resources["midgard"]
    home = int(st.market_map[0])
    a, b = npcs_on(world, home, 2)
    feed.login([CHAR, CHAR + 1], home)
    feed("npc_talk", char_id=[CHAR], npc_id=[a], text=b"Hello!")
    tick(world, synctest=True)
    feed("npc_talk", char_id=[CHAR], npc_id=[b], text=b"Hi")
    tick(world, synctest=True)
    item = int(st.item_ids[st.market_item[0]])
    # a shop on the map is a trade with the NPC talked to last there (b); a quest likewise
    # (anywhere); a character who talked to nobody is unattributed
    feed("npc_shop", char_id=[CHAR, CHAR + 1], map_id=home, item_id=item, amount=1, is_sell=0)
    feed("quest_done", char_id=[CHAR], quest_id=7001)
    tick(world, synctest=True)
    assert affinity(world, a, CHAR) == pytest.approx(mr.talk_affinity)
    want = mr.talk_affinity + mr.trade_affinity + mr.quest_affinity
    assert affinity(world, b, CHAR) == pytest.approx(want, rel=1e-6)
    assert ring(world, b)[:, 1].tolist() == [TALK, TRADE, QUEST]
    assert int(world.tables["memory_stats"]["unattributed"][0]) == 1
    recalled = world.resources["memory"].recalled(world, np.array([a, b]), np.array([CHAR] * 2))
    assert recalled.tolist() == [1, 3]


def test_bad_karma_makes_npcs_dislike_and_an_old_friend_is_greeted_as_one():
    world, feed = small_world(karma={"quest_karma": -200.0})
    st = world.resources["midgard"]
    spec = st.spec
    home = town(world)
    npc = npcs_on(world, home, 1)[0]
    feed.login([CHAR, CHAR + 1], home)
    feed("quest_done", char_id=[CHAR + 1], quest_id=7001)  # karma -200: the worst
    tick(world)
    tick(world)
    feed("npc_talk", char_id=[CHAR + 1], npc_id=[npc], text=b"Hello!")
    tick(world)
    kw = spec.rules.memory.karma_weight
    assert affinity(world, npc, CHAR + 1) == pytest.approx(
        spec.rules.memory.talk_affinity * (1 - kw), rel=1e-5)
    # a friend: affinity past recall_affinity, then a talk answered with a greeting
    a = world.tables["affinity"]
    row = world.resources["memory"].rows(world, np.array([npc]), np.array([CHAR + 1]))[0]
    a["value"][row] = -0.9  # a grudge for the wrongdoer
    feed("npc_talk", char_id=[CHAR], npc_id=[npc], text=b"Hello!")
    for _ in range(3):
        tick(world)
    a["value"][world.resources["memory"].rows(world, np.array([npc]), np.array([CHAR]))[0]] = 0.9
    said = []
    for who in (CHAR, CHAR + 1):
        feed("npc_talk", char_id=[who], npc_id=[npc], text=b"Hello again!")
        for _ in range(spec.rules.npc.decision_deadline_ticks + 2):
            tick(world)
            said += actions(world, "npc_say")["text"][actions(world, "npc_say")["npc_id"] == npc
                                                       ].tolist()
    recall = {s.encode() for s in spec.dialogue.recall}
    grudge = {s.encode() for s in spec.dialogue.grudge}
    assert recall & set(said) and grudge & set(said), said


@pytest.mark.parametrize("extra", [0, 1])
def test_an_npcs_ring_at_the_bound_and_one_past(extra):
    world, feed = small_world(memory={"memories_per_npc_max": 3})
    home = town(world)
    npc = npcs_on(world, home, 1)[0]
    chars = CHAR + np.arange(3 + extra)
    feed.login(chars, home)
    for c in chars:  # one talk a tick: the ring keeps the newest three
        feed("npc_talk", char_id=[c], npc_id=[npc], text=b"Hello!")
        tick(world)
    kept = ring(world, npc)
    assert kept[:, 0].tolist() == chars[extra:].tolist()
    assert int(world.tables["memory_stats"]["overwritten"][0]) == extra
    # one tick with more talks than the ring holds: only the newest are stored
    feed("npc_talk", char_id=np.full(4 + extra, CHAR), npc_id=npc, text=b"Hi")
    tick(world)
    assert len(ring(world, npc)) == 3
    assert int(world.tables["memory_stats"]["dropped"][0]) == 1 + extra


@pytest.mark.parametrize("extra", [0, 1])
def test_memories_max_at_the_bound_and_one_past(extra):
    world, feed = small_world(memory={"memories_max": 4})
    home = town(world)
    npcs = npcs_on(world, home, 4 + extra)
    feed.login([CHAR], home)
    for n in npcs:  # a talk a tick, each with another NPC
        feed("npc_talk", char_id=[CHAR], npc_id=[n], text=b"Hello!")
        tick(world)
    m = world.tables["memory"]
    held = m["npc"][m.live_slots()[m["key"][m.live_slots()] >= 0]]
    assert sorted(held.tolist()) == sorted(npcs[extra:].tolist())  # the world's oldest went
    assert int(world.tables["memory_stats"]["overwritten"][0]) == extra


@pytest.mark.parametrize("extra", [0, 1])
def test_relations_max_at_the_bound_and_one_past(extra):
    world, feed = small_world(memory={"relations_max": 3})
    home = town(world)
    npc = npcs_on(world, home, 1)[0]
    chars = CHAR + np.arange(4)
    feed.login(chars, home)
    feed("npc_talk", char_id=chars[:3], npc_id=npc, text=b"Hello!")
    feed("npc_talk", char_id=chars[:1], npc_id=npc, text=b"Hello!")  # CHAR: the strongest
    tick(world)
    feed("npc_talk", char_id=chars[2:3], npc_id=npc, text=b"Hello!")
    tick(world)  # CHAR + 1: weakest and longest untouched
    if extra:
        feed("npc_talk", char_id=chars[3:], npc_id=npc, text=b"Hello!")
        tick(world)
    a = world.tables["affinity"]
    live = a.live_slots()
    have = set(a["char_id"][live[a["key"][live] >= 0]].tolist())
    want = {CHAR, CHAR + 2, CHAR + 3} if extra else {CHAR, CHAR + 1, CHAR + 2}
    assert have == want
    assert int(world.tables["memory_stats"]["replaced"][0]) == extra
    # all rows in use in one tick: the newcomer is refused, not stored
    feed("npc_talk", char_id=np.append(chars, CHAR + 9), npc_id=npc, text=b"Hi")
    tick(world)
    assert int(world.tables["memory_stats"]["refused"][0]) >= 1


def test_npcs_gone_are_forgotten_and_relationships_fade():
    world, feed = small_world(memory={"decay_every_ticks": 2, "decay_per_tick": 0.25,
                                      "forget_below": 0.02})
    home = town(world)
    a, b = npcs_on(world, home, 2)
    feed.login([CHAR], home)
    feed("npc_talk", char_id=[CHAR, CHAR], npc_id=[a, b], text=b"Hello!")
    tick(world)
    npc = world.tables["npc"]
    npc.despawn(np.array([a]))  # a dies (as npc.act would bury it)
    npc.sync()
    tick(world)
    assert world.resources["memory"].recalled(world, np.array([a]), np.array([CHAR]))[0] == 0
    assert int(world.tables["memory_stats"]["gone"][0]) == 2  # its relationship and memory
    for _ in range(8):  # 0.1 * 0.5 per two ticks: below 0.02 after three decays
        tick(world)
    assert affinity(world, b, CHAR) == 0.0
    assert int(world.tables["memory_stats"]["forgotten"][0]) == 1
    assert len(ring(world, b)) == 1  # the memory stays until overwritten
