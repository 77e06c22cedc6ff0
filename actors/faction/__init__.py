"""Faction actors: influence per (faction, map), sparse reputation per (faction, player),
diplomacy, and treasuries.

Influence grows with a faction's share of the NPCs on a map and with deeds (players' kills
on maps it holds), decays everywhere, spreads along warps and is eroded by hazards
(``rules/spread.py``). A map is held by the faction with the most influence above
``own_min``; two hostile factions close to each other make it contested, which raises a
conflict there that NPCs flee and that makes some hazards likelier. Reputation rows exist
only for (faction, player) pairs that did something, bounded by
``reputation_entries_max``. Quest rewards are paid from the quest-giver's treasury, which
the markets of its towns fill with taxes.

Resources read: ``geography``, ``factions``, ``quests``, ``dialogue`` (``conflict``,
``takeover``), ``ledger`` (treasuries hold zeny; rewards are the ``quest_reward`` sink).
Provides ``reputation`` (a ``rules.reputation.Reputation`` over its table) for kinds that
weigh a player's standing.
"""

from __future__ import annotations

import numba
import numpy as np

from norn.actors.faction.schema import FactionRules
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules import spread as sp
from norn.rules.grouping import add_at, unique_inverse
from norn.rules.reputation import Reputation
from norn.rules.tables import lookup, room

STAT_COLUMNS = (
    "conflicts",
    "takeovers",
    "kills",
    "quests",
    "rewards",
    "reward_zeny",
    "reputation_dropped",
    "talks",
    "updates",
)


@numba.njit(cache=True, nogil=True)
def pay_rewards(quest_faction, base_zeny, rep, rep_max, bonus, zeny_max, treasury, out):
    """Rewards in event order, each capped by ``zeny_max`` and by what the treasury holds."""
    total = 0
    for e in range(len(quest_faction)):
        f = quest_faction[e]
        r = max(np.float64(rep[e]), 0.0) / rep_max
        z = np.int64(base_zeny[e] * (1.0 + bonus * r))
        z = min(min(z, zeny_max), treasury[f])
        z = max(z, 0)
        treasury[f] -= z
        out[e] = z
        total += z
    return total


class FactionPlugin:
    name = "faction"
    resources = ("geography", "factions", "quests", "dialogue", "ledger")

    def __init__(
        self, rules: FactionRules, *, reward_zeny_max: int, reward_amount_max: int,
        broadcasts_max: int,
    ) -> None:
        self.rules = rules
        self.reward_zeny_max = reward_zeny_max
        self.reward_amount_max = reward_amount_max
        self.broadcasts_max = broadcasts_max

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.fac = fac_info = world.resource("factions")
        self.quests = world.resource("quests")
        self.dialogue = world.resource("dialogue")
        self.ledger = world.resource("ledger")
        fr = self.rules
        F = fac_info.n
        n_maps = geo.n_maps
        world.consumes("mob_kill", "npc_talk", "quest_done")
        world.emits("give_reward", "broadcast")
        terr = world.add_table(
            "territory",
            [
                Column("influence", np.float32, (F,)),
                Column("deeds", np.float32, (F,)),
                Column("owner", np.int16, (), -1),
                Column("contested", np.uint8),
                Column("conflict", np.float32),
            ],
            n_maps,
        )
        infl = np.zeros((n_maps, F), dtype=np.float32)
        infl[fac_info.home, np.arange(F)] = fac_info.influence0
        owner = np.full(n_maps, -1, np.int16)
        contested = np.zeros(n_maps, np.uint8)
        scratch = np.zeros(n_maps, np.float32)
        e = np.empty(n_maps, np.int64)
        sp.contest(
            infl, fac_info.diplomacy0, fr.own_min, fr.contest_min, fr.contest_margin,
            fr.hostile_below, owner, contested, scratch, 0.0, e, e.copy(), e.copy(), e.copy(),
        )
        terr.spawn(n_maps, influence=infl, owner=owner, contested=contested)
        fac = world.add_table(
            "faction",
            [
                Column("treasury", np.int64),
                Column("diplomacy", np.float32, (F,)),
                Column("owned0", np.int32),
            ],
            F,
        )
        fac.spawn(
            F,
            treasury=fac_info.treasury0.astype(np.int64),
            diplomacy=fac_info.diplomacy0,
            owned0=np.bincount(owner[owner >= 0], minlength=F).astype(np.int32),
        )
        world.add_table(
            "reputation",
            [Column("faction", np.int16), Column("char_id", np.uint32), Column("value", np.int32)],
            fr.reputation_entries_max,
        )
        stats = world.add_table("faction_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        world.provide("reputation", Reputation("reputation", fr.reputation_max))
        self.reputation = world.resources["reputation"]
        self.ledger.holds("faction.treasury")
        self.ledger.uses(sinks=("quest_reward",))
        world.add_system(
            "faction.deeds",
            "ingest",
            self.deeds,
            reads=("events", "npc.faction", "territory.owner"),
            writes=(
                "territory.deeds",
                "reputation.value",
                "faction.treasury",
                "ledger.sinks",
                "faction_stats.*",
                "actions",
            ),
            after=("hazard.ingest",),
            marks_own_writes=True,  # most ticks bring no deed: nothing to rehash
        )
        world.add_system(
            "faction.update",
            "act",
            self.update,
            reads=("npc.map", "npc.faction", "hazard_map.shift"),
            writes=(
                "territory.*",
                "faction.diplomacy",
                "faction_stats.*",
                "actions",
            ),
            after=("hazard.update",),
            marks_own_writes=True,  # it runs every every_ticks ticks: rehash only then
        )

    # -- ingest: deeds, reputation, rewards -------------------------------------------------
    def deeds(self, world: World) -> None:
        fr = self.rules
        quests = self.quests
        n_maps = self.geo.n_maps
        stats = world.tables["faction_stats"]
        terr = world.tables["territory"]
        facs: list[np.ndarray] = []
        chars: list[np.ndarray] = []
        deltas: list[np.ndarray] = []
        kills = world.events["mob_kill"]
        if len(kills["char_id"]):
            # one pass over the kills (issue 16): each on a held map is a deed of its owner
            k_fac, k_char = _kill_deeds(kills["map_id"], kills["char_id"],
                                        terr["owner"][:n_maps], terr["deeds"],
                                        world.chunk_mask("territory"), world.chunk_rows)
            stats["kills"][0] += len(kills["map_id"])
            facs.append(k_fac)
            chars.append(k_char)
            deltas.append(np.full(len(k_fac), fr.reputation_per_kill, np.int64))
        talk = world.events["npc_talk"]
        if len(talk["char_id"]):
            npc = world.tables["npc"]
            cur = npc.is_current(talk["npc_id"])
            slots = (talk["npc_id"][cur] & 0xFFFFFFFF).astype(np.int64)
            facs.append(npc["faction"][slots].astype(np.int64))
            chars.append(talk["char_id"][cur].astype(np.int64))
            deltas.append(np.full(len(slots), fr.reputation_per_talk, np.int64))
            stats["talks"][0] += len(slots)
        done = world.events["quest_done"]
        if len(done["char_id"]):
            q = lookup(quests.ids, done["quest_id"].astype(np.int64))
            ok = q >= 0
            q = q[ok]
            ch = done["char_id"][ok].astype(np.int64)
            qf = quests.faction[q]
            rep = self.reputation.of(world, qf, ch)
            out = np.zeros(len(q), dtype=np.int64)
            total = pay_rewards(
                qf, quests.zeny[q], rep, float(fr.reputation_max), fr.reward_reputation_bonus,
                self.reward_zeny_max, world.tables["faction"]["treasury"], out,
            )
            self.ledger.book(world, sink="quest_reward", amount=int(total))
            world.mark_rows("faction", 0, world.tables["faction"].hwm)
            world.mark_rows("ledger", 0, world.tables["ledger"].hwm)
            amount = np.minimum(quests.amount[q], self.reward_amount_max)
            item = np.where(amount > 0, quests.item[q], 0)
            amount = np.where(item > 0, amount, 0)
            give = (out > 0) | (amount > 0)
            if give.any():
                world.emit(
                    "give_reward",
                    char_id=ch[give],
                    item_id=item[give],
                    amount=amount[give],
                    zeny=out[give],
                )
            stats["quests"][0] += len(q)
            stats["rewards"][0] += int(give.sum())
            stats["reward_zeny"][0] += int(total)
            facs.append(qf)
            chars.append(ch)
            deltas.append(np.full(len(q), fr.reputation_per_quest, np.int64))
        if facs:
            cat = np.concatenate
            self._reputation(world, cat(facs), cat(chars), cat(deltas))
        if facs or len(kills["char_id"]):
            world.mark_rows("faction_stats", 0, 1)

    def _reputation(self, world: World, facs, chars, deltas) -> None:
        """Add deltas to (faction, char) rows, creating rows while there is room."""
        fr = self.rules
        keys = (facs.astype(np.int64) << 32) | chars.astype(np.int64)
        uk, inv = unique_inverse(keys)
        total = np.zeros(len(uk), dtype=np.int64)
        add_at(total, inv, deltas)
        t = world.tables["reputation"]
        live = t.live_slots()
        live_keys = (t["faction"][live].astype(np.int64) << 32) | t["char_id"][live].astype(
            np.int64
        )
        at = lookup(live_keys, uk)
        have = at >= 0
        s = live[at[have]]
        _mark_slots(world, "reputation", s)
        t["value"][s] = np.clip(
            t["value"][s].astype(np.int64) + total[have], -fr.reputation_max, fr.reputation_max
        )
        new = np.flatnonzero(~have)
        k = min(len(new), room(t))
        if k:
            nk = uk[new[:k]]
            t.spawn(
                k,
                faction=(nk >> 32).astype(np.int16),
                char_id=(nk & 0xFFFFFFFF).astype(np.uint32),
                value=np.clip(total[new[:k]], -fr.reputation_max, fr.reputation_max),
            )
        world.tables["faction_stats"]["reputation_dropped"][0] += len(new) - k
        world.mark_rows("faction_stats", 0, 1)

    # -- act: influence, owners, contests, diplomacy -----------------------------------------
    def update(self, world: World) -> None:
        geo = self.geo
        fr = self.rules
        if world.tick % fr.every_ticks:
            return
        for table in ("territory", "faction", "faction_stats"):
            world.mark_rows(table, 0, world.tables[table].hwm)
        dt = float(fr.every_ticks)
        F = self.fac.n
        n = geo.n_maps
        npc = world.tables["npc"]
        heads = np.empty((n, F), dtype=np.int64)
        sp.presence(npc.hwm, npc.alive, npc["map"], npc["faction"], F, heads)
        terr = {c: a[:n] for c, a in world.tables["territory"].columns.items()}
        scratch = np.empty((n, F), dtype=np.float64)
        sp.influence_step(
            terr["influence"], terr["deeds"], heads, geo.adj_off, geo.adj,
            world.tables["hazard_map"]["shift"], dt, fr.growth_per_tick, fr.decay_per_tick,
            fr.spread_per_tick, fr.deed_influence, fr.influence_max, scratch,
        )
        conflict = terr["conflict"]
        conflict *= np.float32(max(1.0 - dt * fr.conflict_decay_per_tick, 0.0))
        fac = world.tables["faction"]
        dip = fac["diplomacy"][:F]
        out_new = np.empty(n, np.int64)
        out_a = np.empty(n, np.int64)
        out_b = np.empty(n, np.int64)
        out_take = np.empty(n, np.int64)
        before = terr["owner"].copy()
        n_new, n_take = sp.contest(
            terr["influence"], dip, fr.own_min, fr.contest_min, fr.contest_margin,
            fr.hostile_below, terr["owner"], terr["contested"], conflict, fr.conflict_start,
            out_new, out_a, out_b, out_take,
        )
        rec = np.float32(min(dt * fr.diplomacy_recovery_per_tick, 1.0))
        dip += rec * (self.fac.diplomacy0 - dip)
        stats = world.tables["faction_stats"]
        stats["updates"][0] += 1
        cap = self.broadcasts_max
        fnames = np.array([s.encode() for s in self.fac.names], dtype="S48")
        mnames = np.array([s.encode() for s in geo.map_names], dtype="S16")
        if n_new:
            a, b = out_a[:n_new], out_b[:n_new]
            np.subtract.at(dip, (a, b), np.float32(fr.diplomacy_drop))
            np.subtract.at(dip, (b, a), np.float32(fr.diplomacy_drop))
            np.clip(dip, -1.0, 1.0, out=dip)
            stats["conflicts"][0] += n_new
            k = min(n_new, cap)
            if k:
                maps = out_new[:k]
                lines = self.dialogue["conflict"]
                text = np.char.add(
                    np.char.add(np.char.add(fnames[a[:k]], b" and "), fnames[b[:k]]),
                    np.char.add(
                        np.char.add(b" clash over ", mnames[maps]),
                        np.char.add(b": ", lines[(maps + world.tick) % len(lines)]),
                    ),
                )
                world.emit("broadcast", map_id=maps, text=text)
        if n_take:
            stats["takeovers"][0] += n_take
            maps = out_take[:n_take]
            loud = maps[geo.is_town[maps]][:cap]  # towns changing hands are news everywhere
            if len(loud):
                lines = self.dialogue["takeover"]
                text = np.char.add(
                    np.char.add(fnames[terr["owner"][loud]], b" takes "),
                    np.char.add(
                        np.char.add(mnames[loud], b" from "),
                        np.char.add(
                            np.char.add(fnames[before[loud]], b": "),
                            lines[(loud + world.tick) % len(lines)],
                        ),
                    ),
                )
                world.emit("broadcast", map_id=np.full(len(loud), -1), text=text)


@numba.njit(cache=True, nogil=True)
def _kill_deeds(map_id, char_id, owner_of, deeds, mask, chunk_rows):  # pragma: no cover
    """Kills on held maps: ``deeds[map, owner] += 1`` in event order (as ``np.add.at``),
    their chunks marked; returns (owner, char) of each, in event order."""
    n = len(map_id)
    facs = np.empty(n, np.int64)
    chars = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        m = np.int64(map_id[i])
        if m < 0 or m >= len(owner_of):
            continue
        o = np.int64(owner_of[m])
        if o < 0:
            continue
        if o >= deeds.shape[1]:
            raise IndexError("a territory's owner is not a faction")
        deeds[m, o] += np.float32(1.0)
        mask[m // chunk_rows] = True
        facs[k] = o
        chars[k] = char_id[i]
        k += 1
    return facs[:k], chars[:k]


def _mark_slots(world: World, table: str, slots: np.ndarray) -> None:
    """The digest chunks of ``slots`` of ``table`` were written (a system marking its own)."""
    if len(slots):
        world.chunk_mask(table)[np.asarray(slots, np.int64) // world.chunk_rows] = True
