"""NPC memory and relationships: who an NPC has met, how it feels about them, what it
remembers, all bounded and forgotten in a fixed order.

Two sparse tables, keyed by ``npc slot << 32 | char_id`` (``rules.memory``):

- ``affinity``: one row per (NPC, character) pair that met, at most ``relations_max``:
  ``value`` in [-1, 1], counts of talks, trades and quests, when they last talked and
  last met. A full table gives the weakest relationship's row (|affinity| smallest, then
  the longest untouched, then the lowest slot) to a new pair; with nothing to give, the
  new pair is refused and counted.
- ``memory``: a ring of remembered events per NPC (``kind`` talk, trade or quest, the
  tick, the affinity it brought): each NPC keeps its last ``memories_per_npc_max`` (its
  oldest is overwritten), all NPCs together at most ``memories_max`` (the world's oldest
  memory, lowest slot first, makes room). Ties go to the lowest slot, so eviction is a
  pure function of the tables.

Each tick (ingest), rows whose NPC is gone (died, its slot reused) are forgotten first.
Then the tick's meetings, in event order: an ``npc_talk`` is a talk with its NPC; an
``npc_shop`` purchase or sale is a trade with the NPC the character talked to last on
that map, a ``quest_done`` a quest with the NPC it talked to last anywhere, both within
``attribution_ticks`` (else unattributed, counted). A meeting moves affinity by
``talk_affinity``, ``trade_affinity`` or ``quest_affinity`` times ``1 + karma_weight *
karma / karma_max`` of the character (the ``karma`` resource), summed per pair and clamped
to [-1, 1]. Every ``decay_every_ticks`` affinity is multiplied by ``1 - decay_per_tick *
decay_every_ticks``, and a relationship below ``forget_below`` is forgotten (its ring
memories stay until overwritten).

Provides ``memory`` (a ``rules.memory.Memory``): NPCs read affinity when they choose how
to answer a player (greet, trade, refuse, quest) and which line to say (an old friend is
greeted as one, a disliked character told so). Resources read: ``karma``.
"""

from __future__ import annotations

import numpy as np

from norn.actors.memory.schema import MemoryRules
from norn.engine.table import SLOT_MASK, Column
from norn.engine.world import World
from norn.rules.keyed import claim
from norn.rules.memory import MEMORY_KINDS, QUEST, TALK, TRADE, Memory, pair_keys
from norn.rules.tables import room

__all__ = ["STAT_COLUMNS", "MemoryPlugin"]

STAT_COLUMNS = (
    "talks",  # meetings remembered, by kind
    "trades",
    "quests",
    "unattributed",  # a shop event or finished quest with no recent talk partner
    "refused",  # new relationships refused: the table full, nothing weaker to give
    "replaced",  # relationships evicted for new ones
    "overwritten",  # ring memories overwritten (an NPC's own oldest, or the world's)
    "dropped",  # memories never stored (over an NPC's ring in one tick, or no room)
    "forgotten",  # relationships faded below forget_below
    "gone",  # rows removed because their NPC is gone
)
INT32_MAX = 2**31 - 1
NEVER = -(2**31)


def _latest(keys: np.ndarray, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``keys`` and, for each, the index of its latest ``when`` (ties: the
    lowest index)."""
    order = np.lexsort((np.arange(len(keys)), -when.astype(np.int64), keys))
    k = keys[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    return k[first], order[first]


def _rank_in_groups(groups: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal (sorted) ``groups``."""
    n = len(groups)
    start = np.ones(n, bool)
    start[1:] = groups[1:] != groups[:-1]
    first = np.flatnonzero(start)
    return np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))


class MemoryPlugin:
    name = "memory"
    resources = ("karma",)

    def __init__(self, rules: MemoryRules) -> None:
        self.rules = rules
        self.base = np.array([rules.talk_affinity, rules.trade_affinity, rules.quest_affinity])

    def build(self, world: World) -> None:
        self.karma = world.resource("karma")
        mr = self.rules
        world.consumes("npc_talk", "npc_shop", "quest_done")
        world.add_table(
            "affinity",
            [
                Column("key", np.int64, (), -1),
                Column("npc", np.int64),
                Column("char_id", np.uint32),
                Column("value", np.float32),
                Column("talks", np.int32),
                Column("trades", np.int32),
                Column("quests", np.int32),
                Column("talked", np.int32, (), NEVER),
                Column("last", np.int32),
            ],
            mr.relations_max,
        )
        world.add_table(
            "memory",
            [
                Column("key", np.int64, (), -1),
                Column("npc", np.int64),
                Column("char_id", np.uint32),
                Column("kind", np.uint8),
                Column("tick", np.int32),
                Column("delta", np.float32),
            ],
            mr.memories_max,
        )
        stats = world.add_table("memory_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.provide("memory", Memory("affinity", "memory"))
        world.add_system(
            "memory.remember",
            "ingest",
            self.remember,
            reads=("events", "npc.alive", "npc.generation", "npc.map", "karma.*"),
            writes=("affinity.*", "memory.*", "memory_stats.*"),
        )

    # -- ingest ------------------------------------------------------------------------------
    def remember(self, world: World) -> None:
        mr = self.rules
        stats = world.tables["memory_stats"]
        self._forget_gone(world)
        npcs, chars, kinds = self._meetings(world)
        if len(npcs):
            for k, col in enumerate(MEMORY_KINDS):  # three kinds
                stats[col + "s"][0] += int((kinds == k).sum())
            delta = self.base[kinds] * (
                1.0 + mr.karma_weight * self.karma.norm(world, chars)
            )
            self._relate(world, npcs, chars, kinds, delta)
            self._ring(world, npcs, chars, kinds, delta)
        if world.tick % mr.decay_every_ticks == 0:
            self._decay(world)

    def _forget_gone(self, world: World) -> None:
        """Rows of NPCs no longer alive (or whose slot holds another NPC) are dropped."""
        npc = world.tables["npc"]
        for name in ("affinity", "memory"):  # two tables
            t = world.tables[name]
            live = t.live_slots()
            live = live[t["key"][live] >= 0]
            gone = live[~npc.is_current(t["npc"][live])]
            if len(gone):
                t["key"][gone] = -1  # never matches again, even before the sync point
                t.despawn(t.handles(gone))
                world.tables["memory_stats"]["gone"][0] += len(gone)

    def _meetings(self, world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(NPC handle, character, kind) of the tick's meetings, in event order by kind."""
        ev = world.events
        npc = world.tables["npc"]
        stats = world.tables["memory_stats"]
        talk = ev["npc_talk"]
        th = talk["npc_id"].astype(np.int64)
        cur = npc.is_current(th)
        th, tc = th[cur], talk["char_id"][cur].astype(np.int64)
        npcs, chars, kinds = [th], [tc], [np.full(len(th), TALK, np.int64)]
        shop, done = ev["npc_shop"], ev["quest_done"]
        if len(shop["char_id"]) or len(done["char_id"]):
            aff = world.tables["affinity"]
            live = aff.live_slots()
            live = live[(aff["key"][live] >= 0)
                        & (aff["talked"][live] >= world.tick - self.rules.attribution_ticks)]
            cn = np.concatenate([aff["npc"][live], th])
            cc = np.concatenate([aff["char_id"][live].astype(np.int64), tc])
            ct = np.concatenate([aff["talked"][live], np.full(len(th), world.tick, np.int32)])
            cm = npc["map"][cn & SLOT_MASK].astype(np.int64)
            s_who = shop["char_id"].astype(np.int64)
            q_who = done["char_id"].astype(np.int64)
            for who, q, kind, cand in (  # a shop: on its map; a quest: anywhere
                (s_who, (s_who << 16) | shop["map_id"].astype(np.int64), TRADE, (cc << 16) | cm),
                (q_who, q_who, QUEST, cc),
            ):
                if not len(who) or not len(cand):
                    stats["unattributed"][0] += len(who)
                    continue
                uk, ui = _latest(cand, ct)
                at = np.minimum(np.searchsorted(uk, q), len(uk) - 1)
                hit = uk[at] == q
                stats["unattributed"][0] += int((~hit).sum())
                npcs.append(cn[ui[at[hit]]])
                chars.append(who[hit])
                kinds.append(np.full(int(hit.sum()), kind, np.int64))
        return np.concatenate(npcs), np.concatenate(chars), np.concatenate(kinds)

    def _relate(self, world: World, npcs, chars, kinds, delta) -> None:
        """Affinity of each pair met: claimed, moved, counted."""
        t = world.tables["affinity"]
        stats = world.tables["memory_stats"]
        keys = pair_keys(npcs, chars)
        uk, first, inv = np.unique(keys, return_index=True, return_inverse=True)

        def weakest() -> np.ndarray:  # |affinity| smallest, longest untouched, lowest slot
            live = t.live_slots()
            live = live[t["key"][live] >= 0]
            return live[np.lexsort((live, t["last"][live], np.abs(t["value"][live])))]

        cl = claim(t, "key", uk, weakest)
        stats["refused"][0] += cl.refused
        stats["replaced"][0] += cl.evicted
        fresh = cl.fresh & (cl.rows >= 0)
        t["npc"][cl.rows[fresh]] = npcs[first[fresh]]
        t["char_id"][cl.rows[fresh]] = chars[first[fresh]]
        ok = cl.rows >= 0
        rows = cl.rows[ok]
        total = np.bincount(inv, weights=delta, minlength=len(uk))[ok]
        t["value"][rows] = np.clip(t["value"][rows] + total, -1.0, 1.0).astype(np.float32)
        for k, col in ((TALK, "talks"), (TRADE, "trades"), (QUEST, "quests")):
            n = np.bincount(inv[kinds == k], minlength=len(uk))[ok]
            t[col][rows] = np.minimum(t[col][rows].astype(np.int64) + n, INT32_MAX)
            if k == TALK:
                t["talked"][rows[n > 0]] = world.tick
        t["last"][rows] = world.tick

    def _ring(self, world: World, npcs, chars, kinds, delta) -> None:
        """Store the meetings in the NPCs' rings: the newest ``memories_per_npc_max`` of
        an NPC's tick, over its own oldest, then free rows, then the world's oldest."""
        mr = self.rules
        t = world.tables["memory"]
        stats = world.tables["memory_stats"]
        K = mr.memories_per_npc_max
        slot = npcs & SLOT_MASK
        n = len(npcs)
        order = np.lexsort((-np.arange(n), slot))  # by NPC, newest first
        keep = np.sort(order[_rank_in_groups(slot[order]) < K], kind="stable")
        dropped = n - len(keep)
        npcs, chars, kinds, delta, slot = (a[keep] for a in (npcs, chars, kinds, delta, slot))
        touched, g_new = np.unique(slot, return_inverse=True)
        G = len(touched)
        m = np.bincount(g_new, minlength=G)
        live = t.live_slots()
        live = live[t["key"][live] >= 0]
        lslot = t["npc"][live] & SLOT_MASK
        has = np.isin(lslot, touched)
        own = live[has]
        g_own = np.searchsorted(touched, lslot[has])
        need = np.maximum(np.bincount(g_own, minlength=G) + m - K, 0)
        o = np.lexsort((own, t["tick"][own], g_own))  # by NPC, oldest first
        own, g_own = own[o], g_own[o]
        own = own[_rank_in_groups(g_own) < need[g_own]]  # grouped by NPC, need[g] each
        target = np.full(len(npcs), -1, np.int64)
        nb = np.lexsort((np.arange(len(npcs)), g_new))  # the new, by NPC, in event order
        to_own = _rank_in_groups(g_new[nb]) < need[g_new[nb]]
        target[nb[to_own]] = own
        overwritten = len(own)
        rest = np.flatnonzero(target < 0)
        free = min(len(rest), room(t))
        if free:
            target[rest[:free]] = t.spawn(free) & SLOT_MASK
        left = rest[free:]
        if len(left):  # the world's oldest memories make room
            others = live[~np.isin(live, own)]
            others = others[np.lexsort((others, t["tick"][others]))][: len(left)]
            target[left[: len(others)]] = others
            overwritten += len(others)
            dropped += len(left) - len(others)
        ok = target >= 0
        r = target[ok]
        t["key"][r] = pair_keys(npcs[ok], chars[ok])
        t["npc"][r] = npcs[ok]
        t["char_id"][r] = chars[ok]
        t["kind"][r] = kinds[ok]
        t["tick"][r] = world.tick
        t["delta"][r] = delta[ok]
        stats["overwritten"][0] += overwritten
        stats["dropped"][0] += dropped

    def _decay(self, world: World) -> None:
        """Affinity fades; relationships below ``forget_below`` are forgotten."""
        mr = self.rules
        t = world.tables["affinity"]
        live = t.live_slots()
        live = live[t["key"][live] >= 0]
        if not len(live):
            return
        factor = np.float32(max(1.0 - mr.decay_per_tick * mr.decay_every_ticks, 0.0))
        t["value"][live] *= factor
        faded = live[np.abs(t["value"][live]) < mr.forget_below]
        if len(faded):
            t["key"][faded] = -1
            t.despawn(t.handles(faded))
            world.tables["memory_stats"]["forgotten"][0] += len(faded)
