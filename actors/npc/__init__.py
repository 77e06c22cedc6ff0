"""NPC actors: position, behaviour, needs, traits, faction, wallet and mood of every NPC.

One parallel kernel (``kernels.npc_step``) runs the tier-1 rules over the population; each
NPC is updated every ``rules.npc.update_every_ticks`` ticks with its rates scaled to match
(time slicing: a K-th of the population per tick), and a sequential pass turns the flags
of the updated NPCs into orders, deaths, decision requests and actions. Near-ties between
the two best behaviours, and players talking to an NPC, are escalated as decision requests
(DESIGN §5); their results come back in the apply phase.
Dead NPCs (harmed by hazards) are replaced after ``respawn_delay_ticks`` by newcomers of
the same faction, so the population lives on and slots are reused under new generations.

Resources read: ``geography``, ``items``, ``markets``, ``factions``, ``quests``,
``dialogue``, ``reputation`` (the faction kind's), ``karma``, ``memory`` and ``emotion``
(how an NPC answers a player: its karma, their past, how the player feels; an old friend
is greeted with a ``recall`` line, a disliked player refused with a ``grudge`` line) and
``ledger`` (wallets hold zeny). When
the world keeps an action log, an NPC a game server says is not there is re-announced
(``npc.reannounce``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from norn.actors.npc import kernels as kern
from norn.actors.npc.schema import NpcRules
from norn.engine.rathena import ResultReason
from norn.engine.rng import register_stream, uniform_array, uniform_int_array
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.emotion import FRUSTRATED
from norn.rules.tables import lookup, room
from norn.rules.utility import (
    FLEE,
    IDLE,
    SETUP,
    STATE_MASK,
    TALK,
    utility_vector,
)

DECISION_BEHAVIOUR = 10
DECISION_TALK = 11
TALK_GREET, TALK_TRADE, TALK_REFUSE, TALK_QUEST = range(4)
TALK_LINES = ("greet", "trade", "refuse", "quest")

S_POP = register_stream("npc.population")
POPULATE_CHUNK = 1 << 16
S_BIRTH = register_stream("npc.birth")

STAT_COLUMNS = (
    "fled",
    "died",
    "born",
    "warps",
    "wages",
    "orders",
    "greets",
    "pondered",
    "ponder_over",
    "behaviour_applied",
    "talks",
    "talks_stale",
    "talks_applied",
    "quests_started",
    "unclaimed_fills",
)


@dataclass(frozen=True)
class Populations:
    """The NPCs a world starts with, one entry per group: ``count`` NPCs of ``faction`` on
    map ``map``, at home on ``home`` (-1: the nearest town, else their map), placed in
    ``area`` (x0, y0, x1, y1; x1 = -1: the whole map), wallets in [wallet_lo, wallet_hi]."""

    map: np.ndarray
    faction: np.ndarray
    home: np.ndarray
    area: np.ndarray  # (groups, 4) int64
    wallet_lo: np.ndarray
    wallet_hi: np.ndarray
    count: np.ndarray


def _traits(seed: int, tick: int, stream: int, ids: np.ndarray) -> np.ndarray:
    out = np.empty((len(ids), 4), dtype=np.uint8)
    for k in range(4):  # four trait columns
        out[:, k] = uniform_int_array(seed, tick, stream, ids, 256, index=10 + k)
    return out


class NpcPlugin:
    name = "npc"
    resources = (
        "geography", "items", "markets", "factions", "quests", "dialogue", "reputation",
        "karma", "memory", "emotion", "ledger",
    )

    def __init__(
        self, rules: NpcRules, populations: Populations, *, move_actions_max: int,
        say_actions_max: int, reannounce_max: int,
    ) -> None:
        self.rules = rules
        self.populations = populations
        self.move_actions_max = move_actions_max
        self.say_actions_max = say_actions_max
        self.reannounce_max = reannounce_max
        self.P = kern.params(rules, utility_vector(rules.utility))

    def _fallback_cells(self) -> None:
        """A walkable fallback cell per map: its first warp's cell, else its first open cell."""
        geo = self.geo
        fx = np.zeros(geo.n_maps, np.int64)
        fy = np.zeros(geo.n_maps, np.int64)
        for m in range(geo.n_maps):  # build time, once per map
            if geo.warp_off[m + 1] > geo.warp_off[m]:
                fx[m] = geo.warp_x[geo.warp_off[m]]
                fy[m] = geo.warp_y[geo.warp_off[m]]
            else:
                c = int(np.argmax(geo.walk[geo.walk_off[m] : geo.walk_off[m + 1]]))
                fx[m], fy[m] = c % geo.width[m], c // geo.width[m]
        self.fx, self.fy = fx, fy

    # -- build --------------------------------------------------------------------------
    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.items = world.resource("items")
        self.markets = world.resource("markets")
        self.factions = world.resource("factions")
        self.quests = world.resource("quests")
        self.dialogue = world.resource("dialogue")
        self.reputation = world.resource("reputation")
        self.karma = world.resource("karma")
        self.memory = world.resource("memory")
        self.emotion = world.resource("emotion")
        self.ledger = world.resource("ledger")
        self._fallback_cells()
        self.geo_view = kern.Geography(*(getattr(geo, f) for f in kern.Geography._fields))
        nr = self.rules
        world.consumes("npc_talk")
        world.emits("move_npc", "npc_say", "despawn_npc", "start_quest", "spawn_npc")
        pops = self.populations
        counts = pops.count.astype(np.int64)
        n = int(counts.sum())
        capacity = max(n + nr.capacity_headroom, 1)
        t = world.add_table(
            "npc",
            [
                Column("map", np.int16),
                Column("x", np.int16),
                Column("y", np.int16),
                Column("state", np.uint8),
                Column("mind", np.uint8),
                Column("timer", np.uint16),
                Column("via", np.int8, (), -1),
                Column("goal", np.int16),
                Column("home", np.int16),
                Column("faction", np.int16),
                Column("needs", np.float32, (4,)),
                Column("traits", np.uint8, (4,)),
                Column("mood", np.float32),
                Column("hp", np.uint8),
                Column("wallet", np.int64),
                Column("carry_item", np.int16, (), -1),
                Column("carry_qty", np.int16),
            ],
            capacity,
        )
        site = world.add_table(
            "npc_site",
            [
                Column("missing", np.int32),
                Column("due", np.int32),
                Column("faction", np.int16),
                Column("alarm_tick", np.int64, (), -(1 << 40)),
            ],
            geo.n_maps,
        )
        site.spawn(geo.n_maps)
        talks_max = nr.decision_requests_per_tick_max * (nr.decision_deadline_ticks + 2) + 1
        world.add_table(
            "conversation",
            [Column("request_id", np.int64), Column("char_id", np.uint32), Column("npc", np.int64)],
            talks_max,
        )
        stats = world.add_table("npc_stats", [Column(c, np.int64) for c in STAT_COLUMNS], 1)
        stats.spawn(1)
        if n:
            self._populate(world, t, pops, counts, n)
        self.ledger.holds("npc.wallet")
        self.ledger.uses(sources=("birth", "wages"), sinks=("death", "unclaimed"))
        # scratch, rewritten whole every tick before it is read (never state)
        self.scratch = kern.StepScratch(
            flags=np.zeros(t.capacity, dtype=np.uint16),
            ponder_options=np.zeros((t.capacity, 2), dtype=np.int8),
            ponder_utilities=np.zeros((t.capacity, 2), dtype=np.float32),
        )
        fixed = ("alive", "generation", "traits", "home", "faction")  # written at spawn only
        npc_cols = tuple(f"npc.{c}" for c in t.specs if c not in fixed)
        world.add_system(
            "npc.talk",
            "ingest",
            self.talk,
            reads=("events", "npc.*", "reputation.*", "hazard_map.danger", "karma.*",
                   "affinity.*", "emotion.*"),
            writes=("decisions", "conversation.request_id", "npc_stats.*"),
        )
        world.add_system(
            "npc.receive",
            "deliver",
            self.receive,
            reads=("in:fill",),
            writes=(
                "npc.wallet",
                "npc.needs",
                "npc.carry_item",
                "npc.carry_qty",
                "npc.mind",
                "npc.state",
                "ledger.sinks",
                "npc_stats.*",
            ),
            after=("economy.clear",),
            marks_own_writes=True,
        )
        world.add_system(
            "npc.act",
            "act",
            self.act,
            reads=("hazard_map.*", "territory.conflict", "market.*", "player.*"),
            writes=(
                *npc_cols,
                "out:order",
                "decisions",
                "actions",
                "ledger.sources",
                "ledger.sinks",
                "npc_site.*",
                "npc_stats.*",
            ),
            after=("faction.update",),
            marks_own_writes=True,
        )
        world.add_system(
            "npc.decide",
            "apply",
            self.decide,
            reads=("decisions", "conversation.*", "affinity.*"),
            writes=("npc.state", "npc.mind", "npc_stats.*", "actions"),
        )
        world.add_system(
            "npc.respawn",
            "apply",
            self.respawn,
            reads=("territory.owner",),
            writes=("npc_site.*", "ledger.sources", "npc_stats.*", "actions"),
            after=("npc.decide",),
        )
        log = world.action_log
        if log is not None:
            log.track("spawn_npc", "move_npc", "npc_say")
            world.consumes("action_result")
            world.add_system(
                "npc.reannounce",
                "ingest",
                self.reannounce,
                reads=("events", "action_log.*", "npc.map", "npc.x", "npc.y", "npc.faction"),
                writes=("actions",),
                after=("action_log.match",),
            )

    def _populate(self, world: World, t, pops: Populations, counts: np.ndarray, n: int) -> None:
        """The scenario's populations, expanded with draws keyed by the run seed."""
        geo = self.geo
        nr = self.rules
        maps = pops.map.astype(np.int64)
        facs = pops.faction.astype(np.int64)
        near = geo.nearest_town[maps]
        homes = pops.home.astype(np.int64)
        homes = np.where(homes >= 0, homes, np.where(near >= 0, near, maps))
        area = pops.area.astype(np.int64).reshape(-1, 4).copy()
        whole = area[:, 2] < 0
        area[whole, 2] = geo.width[maps[whole]] - 1
        area[whole, 3] = geo.height[maps[whole]] - 1
        w_lo = pops.wallet_lo.astype(np.int64)
        w_hi = pops.wallet_hi.astype(np.int64)
        entry = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        seed = world.seed
        # in chunks, so a million NPCs do not need a dozen million-long temporaries at once
        for lo in range(0, n, POPULATE_CHUNK):  # a few dozen chunks at build time
            hi = min(lo + POPULATE_CHUNK, n)
            k = hi - lo
            e = entry[lo:hi]
            ids = np.arange(lo, hi, dtype=np.int64)
            mp = maps[e]
            xs = np.empty(k, np.int64)
            ys = np.empty(k, np.int64)
            kern.place_population(
                np.uint64(seed), 0, self.geo_view, mp, area[e, 0], area[e, 1], area[e, 2],
                area[e, 3], self.fx[mp], self.fy[mp], lo, xs, ys,
            )
            span = (w_hi - w_lo + 1)[e].astype(np.float64)
            draw = uniform_array(seed, 0, S_POP, ids, 1)
            wallet = w_lo[e] + np.floor(draw * span).astype(np.int64)
            scale = np.array([1.0, 0.6, 0.8, 0.4], np.float32)
            needs = (uniform_array(seed, 0, S_POP, ids, 2)[:, None] * 0.5).astype(np.float32)
            idle_max = int(self.P.durations[IDLE, 1])
            timer = uniform_int_array(seed, 0, S_POP, ids, idle_max + 1, index=3)
            t.spawn(
                k,
                map=mp,
                x=xs,
                y=ys,
                state=np.full(k, IDLE, np.uint8),
                timer=timer,
                home=homes[e],
                goal=homes[e],
                faction=facs[e],
                needs=needs * scale,
                traits=_traits(seed, 0, S_POP, ids),
                mood=np.zeros(k, np.float32),
                hp=np.full(k, nr.hp_max, np.uint8),
                wallet=wallet,
            )

    # -- ingest: players talking to NPCs ----------------------------------------------------
    def talk(self, world: World) -> None:
        ev = world.events["npc_talk"]
        if not len(ev["char_id"]):
            return
        nr = self.rules
        t = world.tables["npc"]
        stats = world.tables["npc_stats"]
        cur = t.is_current(ev["npc_id"])
        stats["talks_stale"][0] += int((~cur).sum())
        conv = world.tables["conversation"]
        k = min(int(cur.sum()), nr.decision_requests_per_tick_max, room(conv))
        handles = ev["npc_id"][cur][:k]
        chars = ev["char_id"][cur][:k]
        if not k:
            return
        s = (handles & 0xFFFFFFFF).astype(np.int64)
        W = nr.talk
        mood = t["mood"][s].astype(np.float64)
        fac = t["faction"][s].astype(np.int64)
        rep = self.reputation.of(world, fac, chars) / float(self.reputation.value_max)
        danger = world.tables["hazard_map"]["danger"][t["map"][s]].astype(np.float64)
        on_town = self.geo.is_town[t["map"][s]].astype(np.float64)
        carrying = (t["carry_qty"][s] > 0).astype(np.float64)
        karma = self.karma.norm(world, chars)
        aff = self.memory.affinity(world, handles, chars)
        frustrated = self.emotion.of(world, chars)[:, FRUSTRATED].astype(np.float64)
        util = np.stack(
            [
                W.greet + W.greet_mood * mood + W.greet_karma * karma + W.greet_affinity * aff,
                W.trade * on_town + W.trade_goods * carrying + W.trade_affinity * aff,
                W.refuse - W.refuse_mood * mood + W.refuse_danger * danger
                - W.refuse_karma * karma - W.refuse_affinity * aff,
                W.quest + W.quest_reputation * rep + W.quest_karma * karma
                + W.quest_frustrated * frustrated,
            ],
            axis=1,
        )
        has_quests = np.diff(self.quests.by_faction_off)[fac] > 0
        ctx = np.zeros((k, 11), np.float32)
        ctx[:, :4] = util
        ctx[:, 4] = mood
        ctx[:, 5] = rep
        ctx[:, 6] = danger
        ctx[:, 7] = on_town
        ctx[:, 8] = karma
        ctx[:, 9] = aff
        ctx[:, 10] = frustrated
        options = np.tile(np.arange(4, dtype=np.int16), (k, 1))
        ids = world.decisions.request(
            world.tick,
            DECISION_TALK,
            handles,
            options,
            np.where(has_quests, 4, 3),
            TALK_GREET,
            ctx,
            nr.decision_deadline_ticks,
            said=ev["text"][cur][:k],  # what the player said: a resolver may answer it
        )
        conv.spawn(k, request_id=ids, char_id=chars, npc=handles)
        stats["talks"][0] += k

    # -- deliver: fills from the markets -------------------------------------------------------
    def receive(self, world: World) -> None:
        inbox = world.channels["fill"].inbox
        items = self.items
        t = world.tables["npc"]
        if len(inbox):
            goods = kern.Goods(self.markets.off, self.markets.item, self.markets.key,
                               world.tables["market"]["price"], items.price, items.use,
                               items.relief, items.n, items.stack_max)
            kern.receive_fills(
                inbox["dst"], inbox["zeny"], inbox["qty"], inbox["item"], inbox["side"],
                kern.npc_columns(t.columns), goods, world.chunk_rows, world.chunk_mask("npc"),
            )
        for table in ("npc_stats", "ledger"):  # npc rows: the chunks receive_fills wrote
            world.mark_rows(table, 0, world.tables[table].hwm)
        lost = inbox.stale["zeny"]
        if len(lost):  # the NPC died while its order was in flight
            self.ledger.book(world, sink="unclaimed", amount=int(lost.sum()))
            world.tables["npc_stats"]["unclaimed_fills"][0] += len(lost)

    # -- act: the population kernel ------------------------------------------------------------
    def act(self, world: World) -> None:
        geo, items, mk = self.geo, self.items, self.markets
        nr = self.rules
        t = world.tables["npc"]
        cols = kern.npc_columns(t.columns)
        pl = world.tables["player"]
        online = np.flatnonzero(pl.alive[: pl.hwm] & (pl["online"][: pl.hwm] == 1))
        pm = pl["map"][online].astype(np.int64)
        order = np.argsort(pm, kind="stable")
        p_off = np.zeros(geo.n_maps + 1, np.int64)
        np.cumsum(np.bincount(pm, minlength=geo.n_maps)[: geo.n_maps], out=p_off[1:])
        hm = world.tables["hazard_map"]
        seed = world.stream_seed()
        sig = kern.MapSignals(
            danger=hm["danger"],
            harm=np.empty(geo.n_maps, np.int64),
            alarm_tick=world.tables["npc_site"]["alarm_tick"],
            mood=hm["mood"],
            conflict=world.tables["territory"]["conflict"],
            players_off=p_off,
            players_x=pl["x"][online][order].astype(np.int64),
            players_y=pl["y"][online][order].astype(np.int64),
            active=(np.diff(p_off) > 0).astype(np.uint8),
        )
        kern.map_signals(
            seed, world.tick, hm["danger"], hm["prev_danger"], hm["hurt"], nr.alarm_danger,
            nr.hurt_hp_per_tick, nr.update_every_ticks, sig.harm, sig.alarm_tick,
        )
        m = world.tables["market"]
        goods = kern.Goods(mk.off, mk.item, mk.key, m["price"], items.price, items.use,
                           items.relief, items.n, items.stack_max)
        kern.npc_step(seed, world.tick, t.hwm, self.P, cols, self.geo_view, goods, sig,
                      self.scratch, world.chunk_rows, world.chunk_mask("npc"))
        ch = world.channels["order"]
        cap = ch.capacity - ch.count  # the channel holds a tick's orders at most
        rows = ch.reserve(cap)
        orders = kern.OrderRows(*(rows[f] for f in kern.OrderRows._fields))
        lists = kern.SlotLists(
            ponder=np.empty(nr.decision_requests_per_tick_max, np.int64),
            moved=np.empty(self.move_actions_max, np.int64),
            greet=np.empty(self.say_actions_max, np.int64),
        )
        cheapest = np.empty(geo.n_maps * 3, np.int64)
        kern.cheapest_markets(mk.map, mk.item, items.use, m["stock"], m["price"], cheapest)
        done = kern.npc_collect(t.hwm, self.P, self.scratch, cols, goods, cheapest, sig.active,
                                orders, lists)
        # npc rows: only the chunks npc_step updated (collect writes only rows it flagged);
        # the small tables whole
        for table in ("npc_site", "npc_stats", "ledger"):
            world.mark_rows(table, 0, world.tables[table].hwm)
        n_o = done.orders
        rows["dst_gen"][:n_o] = 0  # markets are never despawned
        rows["seq"][:n_o] = 0  # one order per NPC per tick
        ch.release(cap - n_o)
        stats = world.tables["npc_stats"]
        stats["orders"][0] += n_o
        stats["fled"][0] += done.fled
        stats["warps"][0] += done.warped
        stats["ponder_over"][0] += done.ponder_over
        wages = done.paid * nr.wage_zeny
        if wages:
            self.ledger.book(world, source="wages", amount=wages)
            stats["wages"][0] += wages
        if done.died:  # the dead carry F_DIED alone
            self._bury(world, np.flatnonzero(self.scratch.flags[: t.hwm] == kern.F_DIED))
        if done.ponder:
            self._ponder(world, lists.ponder[: done.ponder])
        if done.moved:
            s = lists.moved[: done.moved]
            # An NPC that took a warp arrives on a map whose game server may never have shown
            # it (another server hosts the map it left): it is announced there whole, sprite
            # and all, with spawn_npc (a server already showing it moves it); a walk within
            # a map is a move_npc.
            warped = (self.scratch.flags[s] & kern.F_WARPED) != 0
            if warped.any():
                w = s[warped]
                world.emit("spawn_npc", npc_id=t.handles(w), map_id=cols.map[w], x=cols.x[w],
                           y=cols.y[w],
                           sprite=self.factions.sprite[t["faction"][w].astype(np.int64)])
            s = s[~warped]
            if len(s):
                world.emit("move_npc", npc_id=t.handles(s), map_id=cols.map[s], x=cols.x[s],
                           y=cols.y[s])
        if done.greet:
            s = lists.greet[: done.greet]
            lines = self.dialogue["greet"]
            world.emit("npc_say", npc_id=t.handles(s), text=lines[(s + world.tick) % len(lines)])
            stats["greets"][0] += done.greet

    def _bury(self, world: World, slots: np.ndarray) -> None:
        """NPCs whose hp reached 0: their zeny leaves the world; a newcomer will follow."""
        t = world.tables["npc"]
        nr = self.rules
        self.ledger.book(world, sink="death", amount=int(t["wallet"][slots].sum()))
        t["wallet"][slots] = 0
        t["carry_qty"][slots] = 0
        t["carry_item"][slots] = -1
        site = world.tables["npc_site"]
        home = t["home"][slots].astype(np.int64)
        np.add.at(site["missing"], home, 1)
        site["due"][home] = world.tick + nr.respawn_delay_ticks
        site["faction"][home] = t["faction"][slots]
        handles = t.handles(slots)
        t.despawn(handles)
        world.emit("despawn_npc", npc_id=handles)
        world.tables["npc_stats"]["died"][0] += len(slots)

    def _ponder(self, world: World, slots: np.ndarray) -> None:
        """Near-ties go to the decision tiers: options are the two best behaviours."""
        t = world.tables["npc"]
        nr = self.rules
        n = len(slots)
        ctx = np.zeros((n, 12), np.float32)
        ctx[:, :2] = self.scratch.ponder_utilities[slots]
        ctx[:, 2:6] = t["needs"][slots]
        ctx[:, 6] = world.tables["hazard_map"]["danger"][t["map"][slots]]
        ctx[:, 7] = world.tables["territory"]["conflict"][t["map"][slots]]
        ctx[:, 8] = t["mood"][slots]
        ctx[:, 9] = t["hp"][slots] / float(nr.hp_max)
        ctx[:, 10] = np.minimum(t["wallet"][slots] / max(nr.wallet_max, 1), 1.0)
        ctx[:, 11] = t["state"][slots] & STATE_MASK
        world.decisions.request(
            world.tick,
            DECISION_BEHAVIOUR,
            t.handles(slots),
            self.scratch.ponder_options[slots].astype(np.int16),
            2,
            0,
            ctx,
            nr.decision_deadline_ticks,
        )
        world.tables["npc_stats"]["pondered"][0] += n

    # -- apply: decision results -------------------------------------------------------------
    def decide(self, world: World) -> None:
        applied = world.decisions.applied
        if not len(applied):
            return
        t = world.tables["npc"]
        stats = world.tables["npc_stats"]
        beh = applied[applied["kind"] == DECISION_BEHAVIOUR]
        if len(beh):
            cur = t.is_current(beh["actor"])
            s = (beh["actor"][cur] & 0xFFFFFFFF).astype(np.int64)
            opt = beh["option"][cur]
            waiting = (t["mind"][s] & kern.PONDER) != 0  # an alarm may have overtaken it
            s, opt = s[waiting], opt[waiting]
            t["state"][s] = (opt.astype(np.uint8) & STATE_MASK) | SETUP
            t["mind"][s] &= ~np.uint8(kern.PONDER)
            stats["behaviour_applied"][0] += len(s)
        is_talk = applied["kind"] == DECISION_TALK
        talk, said = applied[is_talk], world.decisions.applied_text[is_talk]
        if not len(talk):
            return
        conv = world.tables["conversation"]
        live = conv.live_slots()
        at = lookup(conv["request_id"][live], talk["request_id"])
        rows = live[at[at >= 0]]
        talk, said = talk[at >= 0], said[at >= 0]
        chars = conv["char_id"][rows]
        conv.despawn(conv.handles(rows))
        cur = t.is_current(talk["actor"])
        talk, chars, said = talk[cur], chars[cur], said[cur]
        s = (talk["actor"] & 0xFFFFFFFF).astype(np.int64)
        fleeing = (t["state"][s] & STATE_MASK) == FLEE
        t["state"][s[~fleeing]] = TALK | SETUP
        t["mind"][s] &= ~np.uint8(kern.PONDER)
        opt = talk["option"].astype(np.int64)
        text = np.empty(len(s), dtype=self.dialogue["greet"].dtype)
        for k, name in enumerate(TALK_LINES):  # four answer kinds
            sel = opt == k
            lines = self.dialogue[name]
            text[sel] = lines[talk["request_id"][sel] % len(lines)]
        # an NPC that remembers the player: an old friend's greeting, or a grudge
        aff = self.memory.affinity(world, talk["actor"], chars)
        near = self.rules.talk.recall_affinity
        for k, name, sel in ((TALK_GREET, "recall", aff >= near),
                             (TALK_REFUSE, "grudge", aff <= -near)):
            sel &= opt == k
            lines = self.dialogue[name]
            text[sel] = lines[talk["request_id"][sel] % len(lines)]
        # A resolver's own reply (journaled, guardrailed) replaces the canned line.
        text = np.where(said != b"", said, text.astype(said.dtype))
        world.emit("npc_say", npc_id=talk["actor"], text=text)
        stats["talks_applied"][0] += len(s)
        q = opt == TALK_QUEST
        if q.any():
            fac = t["faction"][s[q]].astype(np.int64)
            lo = self.quests.by_faction_off[fac]
            cnt = self.quests.by_faction_off[fac + 1] - lo
            ok = cnt > 0
            pick = lo[ok] + talk["request_id"][q][ok] % cnt[ok]
            world.emit("start_quest", char_id=chars[q][ok], quest_id=self.quests.by_faction[pick])
            stats["quests_started"][0] += int(ok.sum())

    def respawn(self, world: World) -> None:
        """Newcomers replace the dead on their home map once the delay has passed."""
        site = world.tables["npc_site"]
        geo = self.geo
        nr = self.rules
        missing = site["missing"][: geo.n_maps]
        ready = np.flatnonzero((missing > 0) & (site["due"][: geo.n_maps] <= world.tick))
        if not len(ready):
            return
        t = world.tables["npc"]
        per = missing[ready].astype(np.int64)
        total = min(int(per.sum()), nr.respawn_per_tick_max, room(t))
        if total <= 0:
            return
        take = np.minimum(per, np.maximum(total - (np.cumsum(per) - per), 0))
        maps = np.repeat(ready, take)
        missing[ready] -= take.astype(np.int32)
        n = len(maps)
        ids = np.arange(n, dtype=np.int64)
        seed = world.seed
        xs = np.empty(n, np.int64)
        ys = np.empty(n, np.int64)
        zero = np.zeros(n, np.int64)
        kern.place_population(
            np.uint64(seed), world.tick, self.geo_view, maps, zero, zero, geo.width[maps] - 1,
            geo.height[maps] - 1, self.fx[maps], self.fy[maps], 0, xs, ys,
        )
        lo, hi = nr.wallet_birth_zeny
        wallet = lo + np.floor(uniform_array(seed, world.tick, S_BIRTH, ids, 1) * (hi - lo + 1))
        wallet = wallet.astype(np.int64)
        fac = site["faction"][maps].astype(np.int64)
        handles = t.spawn(
            n,
            map=maps,
            x=xs,
            y=ys,
            state=np.full(n, IDLE, np.uint8),
            home=maps,
            goal=maps,
            faction=fac,
            traits=_traits(seed, world.tick, S_BIRTH, ids),
            hp=np.full(n, nr.hp_max, np.uint8),
            wallet=wallet,
        )
        self.ledger.book(world, source="birth", amount=int(wallet.sum()))
        world.emit(
            "spawn_npc",
            npc_id=handles,
            map_id=maps,
            x=xs,
            y=ys,
            sprite=self.factions.sprite[fac],
        )
        world.tables["npc_stats"]["born"][0] += n

    # -- ingest: NPCs a game server says are not there -----------------------------------
    def reannounce(self, world: World) -> None:
        """An NPC a game server answered ``not_here`` for (to a spawn, a move or a line) is
        announced again where it is now: a ``spawn_npc``, once per NPC, lowest handles
        first, at most ``reannounce_per_tick_max`` a tick. NPCs gone since are skipped."""
        failed = world.action_log.failed(
            world, ("spawn_npc", "move_npc", "npc_say"), (int(ResultReason.NOT_HERE),)
        )
        if not len(failed) or not self.reannounce_max:
            return
        t = world.tables["npc"]
        handles = np.unique(failed.key)
        handles = handles[t.is_current(handles)][: self.reannounce_max]
        if not len(handles):
            return
        s = (handles & 0xFFFFFFFF).astype(np.int64)
        world.emit(
            "spawn_npc",
            npc_id=handles,
            map_id=t["map"][s],
            x=t["x"][s],
            y=t["y"][s],
            sprite=self.factions.sprite[t["faction"][s].astype(np.int64)],
        )
