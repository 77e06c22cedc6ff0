"""Invariants of the kinds that follow players: karma, NPC memory, player emotion and the
players' side of the economy, restated from the scenario's rules (not by calling the
kinds' own code), checked after every tick by the world tests (``violations``).
"""

from __future__ import annotations

import numpy as np

from norn.rules.emotion import DIMENSIONS

INT32_MAX = 2**31 - 1


def _unique(values: np.ndarray) -> bool:
    return len(np.unique(values)) == len(values)


def karma_violations(world) -> list[str]:
    kr = world.resources["midgard"].spec.rules.karma
    t = world.tables["karma"]
    live = t.live_slots()
    out = []
    v = t["value"][live]
    if not np.isfinite(v).all() or (np.abs(v) > kr.karma_max).any():
        out.append("karma outside [-karma_max, karma_max] or not finite")
    if not _unique(t["char_id"][live]):
        out.append("two karma rows for one character")
    if t.count + len(t.reserved_slots()) > kr.characters_max:
        out.append("more karma rows than characters_max")
    pct = t["price_pct"][live].astype(np.int64)
    if (np.abs(pct) > kr.price_pct_max).any() or (pct % kr.price_pct_step).any():
        out.append("price change outside +-price_pct_max or off its step")
    for c in ("kills", "deaths", "quests", "trades", "vends", "gouges"):
        if (t[c][live] < 0).any():
            out.append(f"negative karma count {c}")
    if (t["online"][live] > 1).any():
        out.append("karma online flag not 0 or 1")
    return out


def memory_violations(world) -> list[str]:
    mr = world.resources["midgard"].spec.rules.memory
    npc = world.tables["npc"]
    out = []
    a = world.tables["affinity"]
    live = a.live_slots()
    live = live[a["key"][live] >= 0]
    v = a["value"][live]
    if not np.isfinite(v).all() or (np.abs(v) > 1).any():
        out.append("affinity outside [-1, 1] or not finite")
    key = ((a["npc"][live] & 0xFFFFFFFF) << 32) | a["char_id"][live].astype(np.int64)
    if (key != a["key"][live]).any():
        out.append("affinity key is not (npc slot, char_id)")
    if not _unique(key):
        out.append("two affinity rows for one (NPC, character)")
    if a.count + len(a.reserved_slots()) > mr.relations_max:
        out.append("more relationships than relations_max")

    def stale(handles: np.ndarray) -> bool:
        """An NPC gone before this tick (one that died in this tick may still be named)."""
        s = handles & 0xFFFFFFFF
        lag = npc["generation"][s].astype(np.int64) - (handles >> 32)
        return bool(((lag < 0) | (lag > 1) | ((lag == 1) & npc.alive[s])).any())

    if stale(a["npc"][live]):
        out.append("a relationship with an NPC gone before this tick")
    m = world.tables["memory"]
    ml = m.live_slots()
    ml = ml[m["key"][ml] >= 0]
    if m.count + len(m.reserved_slots()) > mr.memories_max:
        out.append("more memories than memories_max")
    held = np.concatenate([ml, m.reserved_slots()])
    per_npc = np.unique(m["npc"][held] & 0xFFFFFFFF, return_counts=True)[1]
    if len(per_npc) and per_npc.max() > mr.memories_per_npc_max:
        out.append("an NPC remembers more than memories_per_npc_max events")
    if (m["kind"][ml] > 2).any() or (m["tick"][ml] > world.tick).any():
        out.append("a memory of an unknown kind or from the future")
    if not np.isfinite(m["delta"][ml]).all():
        out.append("a memory's affinity change is not finite")
    if stale(m["npc"][ml]):
        out.append("a memory of an NPC gone before this tick")
    return out


def emotion_violations(world) -> list[str]:
    st = world.resources["midgard"]
    er = st.spec.rules.emotion
    t = world.tables["emotion"]
    live = t.live_slots()
    out = []
    s = t["score"][live]
    if not np.isfinite(s).all() or (s < 0).any() or (s >= 1).any():
        out.append("emotion score outside [0, 1)")
    d = t["difficulty"][live]
    if not np.isfinite(d).all() or (d < 1 - er.ease_max - 1e-6).any() or (d > 1).any():
        out.append("difficulty outside [1 - ease_max, 1]")
    r = t["rates"][live]
    if not np.isfinite(r).all() or (r < 0).any():
        out.append("negative or non-finite behaviour rate")
    if not _unique(t["char_id"][live]):
        out.append("two emotion rows for one character")
    if t.count + len(t.reserved_slots()) > er.characters_max:
        out.append("more emotion rows than characters_max")
    mp = t["map"][live].astype(np.int64)
    if ((mp < -1) | (mp >= st.n_maps)).any():
        out.append("emotion row on an unknown map")
    em = world.tables["emotion_map"]
    n = st.n_maps
    held = np.concatenate([live, t.reserved_slots()])
    on = held[(t["online"][held] == 1) & (t["map"][held] >= 0)]
    want = np.bincount(t["map"][on].astype(np.int64), minlength=n)[:n]
    if (em["online"][:n] != want).any():
        out.append("emotion_map.online is not the online characters per map")
    if (em["dominant"][:n].sum(axis=1) != em["online"][:n]).any():
        out.append("a map's emotion distribution does not add up to its online characters")
    if em["dominant"].shape[1] != len(DIMENSIONS) + 1:
        out.append("emotion distribution is not one count per emotion and calm")
    mean, pace = em["mean"][:n], em["pace"][:n]
    if (mean < 0).any() or (mean > 1).any() or (pace < 0).any() or (pace > 2).any():
        out.append("per-map mean emotion outside [0, 1] or pace outside [0, 2]")
    return out


def player_economy_violations(world) -> list[str]:
    st = world.resources["midgard"]
    m = world.tables["market"]
    n = len(st.market_map)
    out = []
    if (m["p2p_units"][:n] < 0).any() or (m["p2p_zeny"][:n] < 0).any():
        out.append("negative player trade volume")
    if (m["demand"][:n] < 0).any() or (m["supply"][:n] < 0).any():
        out.append("negative market demand or supply")
    return out


def violations(world) -> list[str]:
    """Every broken invariant of karma, memory, emotion and the players' economy."""
    return (karma_violations(world) + memory_violations(world) + emotion_violations(world)
            + player_economy_violations(world))


def set_karma_violations(world, cols: dict[str, np.ndarray], tick: int) -> list[str]:
    """The rules for ``set_karma`` actions, stated again from the scenario."""
    kr = world.resources["midgard"].spec.rules.karma
    out = []
    c, k, p = cols["char_id"], cols["karma"].astype(np.int64), cols["price_pct"].astype(np.int64)
    if ((c < 1) | (c > INT32_MAX)).any():
        out.append(f"tick {tick} set_karma: char_id outside [1, int32 max]")
    if (np.abs(k) > kr.karma_max).any():
        out.append(f"tick {tick} set_karma: karma outside +-karma_max")
    if (np.abs(p) > kr.price_pct_max).any() or (p % kr.price_pct_step).any():
        out.append(f"tick {tick} set_karma: price_pct outside +-price_pct_max or off its step")
    if len(c) > kr.announce_per_tick_max or not _unique(c):
        out.append(f"tick {tick} set_karma: over announce_per_tick_max or a character twice")
    t = world.tables["karma"]
    if not np.isin(c, t["char_id"][t.live_slots()]).all():
        out.append(f"tick {tick} set_karma: a character without karma")
    return out
