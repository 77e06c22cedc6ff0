"""Problems and quests: the world finds its own problems and offers them as quests.

A **problem** is read off the world's state every ``scan_every_ticks``: a monster surge
(*hunt*), a hazard that will not end (*relief*), a market short of an item (*supply*), a
contested map (*defend*). It has a place (where to act), a giver (the faction holding the
map, else its nearest town: its treasury pays), a severity and a reward, capped by the
rules (zeny at most ``reward_zeny_max``, within rAthena's signed 32 bits; items at most
``reward_amount_max``, within a 30,000 stack). Its offer is voiced once through the
decision seam: a request of kind ``DECISION_OFFER`` whose options are the pitches (plea,
bounty, warning); a resolver may write the line (``TEXT``), else the chosen pitch's
template is filled; the line is broadcast on the problem's place.

Online players standing where a problem is are offered its **quest** (``start_quest``
with ``quest_id_base`` + the kind); each keeps one Norn quest at a time. In a world that
infers players' emotion (the ``emotion`` resource, when the model passes ``emotion=True``)
a quest's target is the kind's times the player's ``difficulty`` (a frustrated low-level
player is offered an easier one; at least 1). Progress comes
from the game's events, joined to the quest by character: ``mob_kill`` on the place
(hunt, defend), ``npc_shop`` sales to the place's shops and ``trade``s of the wanted goods
(supply: the market's item; relief: any potion), and ``quest_done`` with the quest's id
from a server that tracks the objective itself. A quest that reaches its target is paid
from the giver's treasury through the ledger (sink ``quest_reward``; never more than the
treasury holds) with ``give_reward``, in slot order. A problem pays at most
``finishers_per_day_max`` quests a day (``daily_reset`` starts a new day); it is solved
when its cause is gone and dropped after ``problem_ttl_ticks``.

Tables: ``problem``, ``quest`` (players' open quests), ``quest_stats`` and ``quest_log``
(the last happenings, for the summary). Invariants: rewards on rows and in actions within
their caps; a player holds at most one Norn quest.

Resources read: ``geography``, ``items``, ``markets``, ``factions``, ``ledger``. The model
says which hazard types are monster surges and which are only weather.
"""

from __future__ import annotations

import numpy as np

from norn.actors.quests.schema import PITCHES, QuestKind, QuestRules
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream, uniform_array
from norn.engine.table import Column
from norn.engine.world import World
from norn.rules.calendar import DAILY_RESET
from norn.rules.catalogue import USE_CODES
from norn.rules.history import History
from norn.rules.places import pay_from
from norn.rules.tables import lookup, room
from norn.rules.texts import fill

__all__ = ["DECISION_OFFER", "KIND_NAMES", "QuestPlugin", "quest_ids"]

S_OFFER = register_stream("quests.offer")
#: The decision kind of a quest offer (``llm/usecases.py``: ``KIND_QUEST_OFFER``).
DECISION_OFFER = 20
HUNT, RELIEF, SUPPLY, DEFEND = range(4)
KIND_NAMES = ("hunt", "relief", "supply", "defend")
#: What ``quest_log`` records.
FOUND, FINISHED, SOLVED, DROPPED = range(4)
LOG_ROWS = 32
POTION = USE_CODES["potion"]
STAT_COLUMNS = ("offers", "quests_expired", "paid_zeny", "paid_items", "short_paid", "voiced",
                "voiced_by_resolver", "days", "capped_today")


def quest_ids(rules: QuestRules) -> np.ndarray:
    """The quest ids this kind offers, by kind (the server's quest database entries)."""
    return rules.quest_id_base + np.arange(len(KIND_NAMES), dtype=np.int64)


class QuestPlugin:
    name = "quests"
    resources = ("geography", "items", "markets", "factions", "ledger")

    def __init__(self, rules: QuestRules, *, monster_hazards: np.ndarray,
                 weather_hazards: np.ndarray, broadcasts_max: int, emotion: bool = False
                 ) -> None:
        self.rules = rules
        if emotion:  # the world infers players' emotion: a quest's target follows it
            self.resources = (*self.resources, "emotion")
        self.monster = np.asarray(monster_hazards, np.bool_)
        self.weather = np.asarray(weather_hazards, np.bool_)
        self.broadcasts_max = broadcasts_max
        self.kinds: tuple[QuestKind, ...] = (rules.hunt, rules.relief, rules.supply,
                                             rules.defend)
        self.log = History("quest_log", ("kind", "map", "faction", "what"), LOG_ROWS)

    def build(self, world: World) -> None:
        self.geo = geo = world.resource("geography")
        self.items = items = world.resource("items")
        self.markets = world.resource("markets")
        self.factions = world.resource("factions")
        self.ledger = world.resource("ledger")
        self.emotion = world.resource("emotion") if "emotion" in self.resources else None
        qr = self.rules
        for name, k in zip(KIND_NAMES, self.kinds, strict=True):
            if k.reward_item and items.index(np.array([k.reward_item]))[0] < 0:
                raise ConfigError(f"rules.quests.{name}.reward_item: unknown item id "
                                  f"{k.reward_item}")
        self.target = np.array([k.target for k in self.kinds], np.int64)
        self.base_zeny = np.array([k.reward_zeny for k in self.kinds], np.float64)
        self.reward_item = np.array([k.reward_item for k in self.kinds], np.int64)
        self.reward_amount = np.minimum(np.array([k.reward_amount for k in self.kinds]),
                                        qr.reward_amount_max).astype(np.int64)
        self.reward_item = np.where(self.reward_amount > 0, self.reward_item, 0)
        self.reward_amount = np.where(self.reward_item > 0, self.reward_amount, 0)
        self.texts = np.array([[t.encode() for t in k.texts] for k in self.kinds], "S255")
        self.map_names = np.array([n.encode() for n in geo.map_names], "S16")
        self.fac_names = np.array([n.encode() for n in self.factions.names], "S48")
        self.item_names = np.array([b"potions", *(n.encode() for n in items.names)], "S64")
        world.consumes("mob_kill", "npc_shop", "trade", "quest_done", DAILY_RESET)
        world.emits("start_quest", "give_reward", "broadcast")
        world.add_table(
            "problem",
            [
                Column("kind", np.uint8),
                Column("map", np.int16, (), -1),  # where the trouble is
                Column("place", np.int16, (), -1),  # where to act
                Column("item", np.int16, (), -1),  # supply: the item's catalogue index
                Column("market", np.int32, (), -1),
                Column("hazard", np.int64, (), -1),
                Column("faction", np.int16, (), -1),
                Column("severity", np.float32),
                Column("reward_zeny", np.int32),
                Column("reward_item", np.int32),
                Column("reward_amount", np.int32),
                Column("pitch", np.int16, (), -1),
                Column("born", np.int32),
                Column("expires", np.int32),
                Column("takers", np.int32),
                Column("finished", np.int32),
                Column("today", np.int32),
                Column("gone", np.uint8),
            ],
            qr.problems_max,
        )
        world.add_table(
            "quest",
            [
                Column("char_id", np.uint32),
                Column("problem", np.int64, (), -1),
                Column("kind", np.uint8),
                Column("place", np.int16),
                Column("item", np.int16, (), -1),
                Column("quest_id", np.int32),
                Column("progress", np.int32),
                Column("target", np.int32),
                Column("faction", np.int16),
                Column("reward_zeny", np.int32),
                Column("reward_item", np.int32),
                Column("reward_amount", np.int32),
                Column("deadline", np.int32),
                Column("gone", np.uint8),
            ],
            qr.quests_max,
        )
        n = len(KIND_NAMES)
        stats = world.add_table(
            "quest_stats",
            [Column("found", np.int64, (n,)), Column("solved", np.int64, (n,)),
             Column("dropped", np.int64, (n,)), Column("finished", np.int64, (n,)),
             *(Column(c, np.int64) for c in STAT_COLUMNS)],
            1,
        )
        stats.spawn(1)
        self.log.build(world)
        self.ledger.uses(sinks=("quest_reward",))
        world.add_system(
            "quests.progress", "ingest", self.progress,
            reads=("events", "quest.*", "problem.*"),
            writes=("quest.*", "problem.*", "quest_stats.*", "quest_log.*", "faction.treasury",
                    "ledger.sinks", "actions"),
        )
        felt = (f"{self.emotion.table}.*",) if self.emotion is not None else ()
        world.add_system(
            "quests.scan", "act", self.scan,
            reads=("problem.*", "quest.*", "hazard.*", "market.stock", "market.target",
                   "territory.owner", "territory.contested", "territory.conflict", "player.*",
                   *felt),
            writes=("problem.*", "quest.*", "quest_stats.*", "quest_log.*", "decisions",
                    "actions"),
        )
        world.add_system(
            "quests.voice", "apply", self.voice, reads=("decisions", "problem.*"),
            writes=("problem.pitch", "quest_stats.*", "actions"),
        )

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _here(t) -> np.ndarray:
        live = t.live_slots()
        return live[t["gone"][live] == 0]

    def _record(self, world: World, slots: np.ndarray, what: int) -> None:
        p = world.tables["problem"]
        self.log.record(world, kind=p["kind"][slots], map=p["map"][slots],
                        faction=p["faction"][slots], what=np.full(len(slots), what))

    def _lines(self, world: World, slots: np.ndarray, pitch: np.ndarray) -> np.ndarray:
        """The template line of each problem for the given pitch, filled."""
        p = world.tables["problem"]
        kind = p["kind"][slots].astype(np.int64)
        return fill(self.texts[kind, pitch], len(slots),
                    faction=self.fac_names[np.maximum(p["faction"][slots], 0)],
                    map=self.map_names[p["place"][slots]],
                    item=self.item_names[p["item"][slots].astype(np.int64) + 1],
                    target=self.target[kind], zeny=p["reward_zeny"][slots])

    # -- ingest: progress and rewards --------------------------------------------------------
    def progress(self, world: World) -> None:
        ev = world.events
        stats = world.tables["quest_stats"]
        if len(ev["daily_reset"]["day"]):
            p = world.tables["problem"]
            p["today"][: p.hwm] = 0
            stats["days"][0] += 1
        q = world.tables["quest"]
        act = self._here(q)
        if not len(act):
            return
        chars = q["char_id"][act].astype(np.int64)
        rows: list[np.ndarray] = []
        gain: list[np.ndarray] = []

        def join(who: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at = lookup(chars, who.astype(np.int64))
            return at >= 0, act[np.maximum(at, 0)]

        kills = ev["mob_kill"]
        if len(kills["char_id"]):
            ok, r = join(kills["char_id"])
            kind = q["kind"][r]
            ok &= ((kind == HUNT) | (kind == DEFEND)) & (q["place"][r] == kills["map_id"])
            rows.append(r[ok])
            gain.append(np.ones(int(ok.sum()), np.int64))
        index = self.items.index
        shop = ev["npc_shop"]
        if len(shop["char_id"]):
            ok, r = join(shop["char_id"])
            it = index(shop["item_id"])
            ok &= (shop["is_sell"] == 1) & (q["place"][r] == shop["map_id"]) & self._wanted(
                q, r, it)
            rows.append(r[ok])
            gain.append(shop["amount"][ok].astype(np.int64))
        trade = ev["trade"]
        if len(trade["char_id"]):
            ok, r = join(trade["char_id"])
            it = index(trade["item_id"])
            ok &= (trade["amount"] > 0) & self._wanted(q, r, it)
            rows.append(r[ok])
            gain.append(trade["amount"][ok].astype(np.int64))
        done = ev["quest_done"]
        if len(done["char_id"]):
            ok, r = join(done["char_id"])
            ok &= q["quest_id"][r] == done["quest_id"]  # the server tracked it: complete
            rows.append(r[ok])
            gain.append(q["target"][r[ok]].astype(np.int64))
        if not rows:
            return
        r = np.concatenate(rows)
        if not len(r):
            return
        prog = q["progress"][: q.hwm].astype(np.int64)
        np.add.at(prog, r, np.concatenate(gain))
        touched = np.unique(r)
        q["progress"][touched] = np.minimum(prog[touched], q["target"][touched])
        self._pay(world, touched[q["progress"][touched] >= q["target"][touched]])

    def _wanted(self, q, r: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Whether the goods are what quest row ``r`` asks for (supply: its item; relief:
        any potion)."""
        kind = q["kind"][r]
        known = item_index >= 0
        potion = known & (self.items.use[np.maximum(item_index, 0)] == POTION)
        return ((kind == SUPPLY) & known & (q["item"][r] == item_index)) | (
            (kind == RELIEF) & potion)

    def _pay(self, world: World, slots: np.ndarray) -> None:
        """Quests done: pay from the giver's treasury (in slot order), count, forget."""
        if not len(slots):
            return
        q = world.tables["quest"]
        p = world.tables["problem"]
        stats = world.tables["quest_stats"]
        # a problem pays at most finishers_per_day_max quests a day (in slot order)
        prob = q["problem"][slots]
        cur = p.is_current(prob)
        ps = np.where(cur, prob & 0xFFFFFFFF, -1).astype(np.int64)
        order = np.argsort(ps, kind="stable")
        sorted_ps = ps[order]
        start = np.r_[0, np.flatnonzero(np.diff(sorted_ps)) + 1]
        rank = np.empty(len(slots), np.int64)
        rank[order] = np.arange(len(slots)) - np.repeat(start, np.diff(np.r_[start,
                                                                            len(slots)]))
        today = np.where(cur, p["today"][np.maximum(ps, 0)], 0)
        allowed = ~cur | (today + rank < self.rules.finishers_per_day_max)
        stats["capped_today"][0] += int((~allowed).sum())
        zeny = np.where(allowed, q["reward_zeny"][slots], 0).astype(np.int64)
        paid = np.zeros(len(slots), np.int64)
        total = pay_from(q["faction"][slots].astype(np.int64), zeny,
                         world.tables["faction"]["treasury"], paid)
        self.ledger.book(world, sink="quest_reward", amount=int(total))
        amount = np.where(allowed, q["reward_amount"][slots], 0)
        item = np.where(amount > 0, q["reward_item"][slots], 0)
        give = (paid > 0) | (amount > 0)
        if give.any():
            world.emit("give_reward", char_id=q["char_id"][slots][give], item_id=item[give],
                       amount=amount[give], zeny=paid[give])
        stats["paid_zeny"][0] += int(total)
        stats["paid_items"][0] += int(amount.sum())
        stats["short_paid"][0] += int((paid < zeny).sum())
        kinds = q["kind"][slots].astype(np.int64)
        np.add.at(stats["finished"][0], kinds, 1)
        c = ps[cur]
        np.add.at(p["finished"], c, 1)
        np.add.at(p["today"], c, 1)
        np.subtract.at(p["takers"], c, 1)
        self.log.record(world, kind=kinds, map=q["place"][slots], faction=q["faction"][slots],
                        what=np.full(len(slots), FINISHED))
        q["gone"][slots] = 1
        q.despawn(q.handles(slots))

    # -- act: problems come and go, quests are offered ---------------------------------------
    def scan(self, world: World) -> None:
        qr = self.rules
        tick = world.tick
        q = world.tables["quest"]
        stats = world.tables["quest_stats"]
        act = self._here(q)
        late = act[q["deadline"][act] <= tick]
        if len(late):
            p = world.tables["problem"]
            prob = q["problem"][late]
            cur = p.is_current(prob)
            np.subtract.at(p["takers"], (prob[cur] & 0xFFFFFFFF).astype(np.int64), 1)
            stats["quests_expired"][0] += len(late)
            q["gone"][late] = 1
            q.despawn(q.handles(late))
        if tick % qr.scan_every_ticks == 0:
            self._settle(world)
            self._find(world)
        if tick % qr.offer_every_ticks == 0:
            self._offer(world)

    def _settle(self, world: World) -> None:
        """Problems whose cause is gone are solved; old ones are dropped."""
        p = world.tables["problem"]
        stats = world.tables["quest_stats"]
        here = self._here(p)
        if not len(here):
            return
        kind = p["kind"][here]
        gone_cause = np.zeros(len(here), np.bool_)
        hz = world.tables["hazard"]
        on_hazard = (kind == HUNT) | (kind == RELIEF)
        gone_cause |= on_hazard & ~hz.is_current(p["hazard"][here])
        m = world.tables["market"]
        mk = np.maximum(p["market"][here], 0)
        stock = m["stock"][mk].astype(np.float64)
        target = m["target"][mk].astype(np.float64)
        gone_cause |= (kind == SUPPLY) & (stock >= min(2 * self.rules.short_stock_share, 1.0)
                                          * target)
        terr = world.tables["territory"]
        gone_cause |= (kind == DEFEND) & (terr["contested"][p["map"][here]] == 0)
        old = ~gone_cause & (p["expires"][here] <= world.tick)
        for mask, what, col in ((gone_cause, SOLVED, "solved"), (old, DROPPED, "dropped")):
            s = here[mask]
            if len(s):
                np.add.at(stats[col][0], p["kind"][s].astype(np.int64), 1)
                self._record(world, s, what)
                p["gone"][s] = 1
                p.despawn(p.handles(s))

    def _find(self, world: World) -> None:
        """New problems from the world's state, voiced through the decision seam."""
        qr = self.rules
        geo = self.geo
        n_maps = geo.n_maps
        hz = world.tables["hazard"]
        hl = hz.live_slots()
        typ = hz["type"][hl].astype(np.int64)
        inten = hz["intensity"][hl].astype(np.float64)
        surge = self.monster[typ] & (inten >= qr.surge_intensity_min)
        stuck = ~self.monster[typ] & ~self.weather[typ] & (hz["age"][hl] >= qr.stuck_hazard_ticks)
        m = world.tables["market"]
        mk = self.markets
        stock = m["stock"][: mk.n].astype(np.float64)
        target = m["target"][: mk.n].astype(np.float64)
        short = np.flatnonzero((target > 0) & (stock < qr.short_stock_share * target))
        terr = world.tables["territory"]
        contested = np.flatnonzero(terr["contested"][:n_maps] == 1)
        hmap = hz["map"][hl].astype(np.int64)
        town_of = geo.nearest_town
        parts = [  # kind, map, place, item, market, hazard, severity
            (HUNT, hmap[surge], hmap[surge], -1, -1, hz.handles(hl[surge]), inten[surge]),
            (RELIEF, hmap[stuck], town_of[hmap[stuck]], -1, -1, hz.handles(hl[stuck]),
             inten[stuck]),
            (SUPPLY, mk.map[short], mk.map[short], mk.item[short], short, -1,
             1.0 - stock[short] / np.maximum(qr.short_stock_share * target[short], 1.0)),
            (DEFEND, contested, contested, -1, -1, -1,
             terr["conflict"][contested].astype(np.float64)),
        ]
        cols = [np.concatenate([np.broadcast_to(np.asarray(part[j]), (len(part[1]),))
                                .astype(np.float64 if j == 6 else np.int64) for part in parts])
                for j in range(7)]
        kind, where, place, item, market, hazard, severity = cols
        owner = terr["owner"][:n_maps].astype(np.int64)
        town = town_of[where]
        giver = np.where(owner[where] >= 0, owner[where],
                         np.where(town >= 0, owner[np.maximum(town, 0)], -1))
        giver = np.where(kind == DEFEND, owner[where], giver)  # the holder defends its map
        ok = (place >= 0) & (giver >= 0)
        p = world.tables["problem"]
        held = np.concatenate([self._here(p), p.reserved_slots()])
        key = (kind << 40) | (where << 20) | (item + 1)
        have = ((p["kind"][held].astype(np.int64) << 40) | (p["map"][held].astype(np.int64)
                                                            << 20) | (p["item"][held] + 1))
        ok &= ~np.isin(key, have)
        idx = np.flatnonzero(ok)
        _, first = np.unique(key[idx], return_index=True)
        idx = idx[np.sort(first, kind="stable")]
        k = min(len(idx), qr.problems_per_scan_max, room(p))
        idx = idx[:k]
        if not k:
            return
        kind, where, place, item, market, hazard, severity, giver = (
            a[idx] for a in (kind, where, place, item, market, hazard, severity, giver))
        severity = np.clip(severity, 0.0, 1.0)
        zeny = np.minimum(np.floor(self.base_zeny[kind] * (1.0 + qr.severity_bonus * severity)),
                          qr.reward_zeny_max).astype(np.int64)
        tick = world.tick
        handles = p.spawn(
            k, kind=kind, map=where, place=place, item=item, market=market, hazard=hazard,
            faction=giver, severity=severity, reward_zeny=zeny,
            reward_item=self.reward_item[kind], reward_amount=self.reward_amount[kind],
            born=np.full(k, tick), expires=np.full(k, tick + qr.problem_ttl_ticks),
        )
        stats = world.tables["quest_stats"]
        np.add.at(stats["found"][0], kind, 1)
        slots = handles & 0xFFFFFFFF
        self._record(world, slots, FOUND)
        # the offer's voice: a request whose options are the pitches, the rules' choice as
        # fallback, the filled template as prompt material for a resolver that writes
        share = zeny / max(qr.reward_zeny_max, 1)
        errand = (kind == RELIEF) | (kind == SUPPLY)
        util = np.stack([0.3 + 0.4 * errand, 0.2 + 0.6 * share,
                         severity * (~errand)], axis=1)
        fallback = np.argmax(util, axis=1)
        ctx = np.zeros((k, 8), np.float32)
        ctx[:, :3] = util
        ctx[:, 3] = severity
        ctx[:, 4] = share
        ctx[:, 5] = kind
        ctx[:, 6] = geo.is_town[place]
        ctx[:, 7] = self.target[kind]
        world.decisions.request(
            tick, DECISION_OFFER, handles,
            np.tile(np.arange(len(PITCHES), dtype=np.int16), (k, 1)), len(PITCHES), fallback,
            ctx, qr.offer_deadline_ticks, said=self._lines(world, slots, fallback),
        )

    def _offer(self, world: World) -> None:
        """Online players where an open problem is get its quest, one each."""
        qr = self.rules
        p = world.tables["problem"]
        q = world.tables["quest"]
        here = self._here(p)
        room_q = min(room(q), qr.offers_per_tick_max)
        if not len(here) or room_q <= 0:
            return
        seats = np.minimum(qr.takers_max - p["takers"][here],
                           qr.finishers_per_day_max - p["today"][here])
        here = here[seats > 0]
        if not len(here):
            return
        # one problem per place: the oldest (lowest slot) with a free seat
        order = np.argsort(p["place"][here], kind="stable")
        by_place = here[order]
        _, first = np.unique(p["place"][by_place], return_index=True)
        chosen = by_place[first]
        at_map = np.full(self.geo.n_maps, -1, np.int64)
        at_map[p["place"][chosen].astype(np.int64)] = chosen
        pl = world.tables["player"]
        live = pl.live_slots()
        live = live[pl["online"][live] == 1]
        prob = at_map[pl["map"][live].astype(np.int64)]
        chars = pl["char_id"][live].astype(np.int64)
        busy = q["char_id"][np.concatenate([self._here(q), q.reserved_slots()])]
        want = (prob >= 0) & ~np.isin(chars, busy.astype(np.int64))
        prob, chars = prob[want], chars[want]
        if not len(prob):
            return
        # who gets a seat: a fair draw among the players there (keyed by character and tick)
        luck = uniform_array(world.stream_seed(), world.tick, S_OFFER, chars, 0)
        order = np.lexsort((chars, luck, prob))
        prob, chars = prob[order], chars[order]
        start = np.r_[0, np.flatnonzero(np.diff(prob)) + 1]
        rank = np.arange(len(prob)) - np.repeat(start, np.diff(np.r_[start, len(prob)]))
        seat = np.minimum(qr.takers_max - p["takers"][prob],
                          qr.finishers_per_day_max - p["today"][prob])
        take = np.flatnonzero(rank < seat)[:room_q]
        if not len(take):
            return
        prob, chars = prob[take], chars[take]
        k = len(prob)
        kind = p["kind"][prob].astype(np.int64)
        ids = quest_ids(qr)[kind]
        target = self.target[kind]
        if self.emotion is not None:  # a frustrated low-level player gets an easier one
            ease = self.emotion.difficulty(world, chars).astype(np.float64)
            target = np.maximum(np.ceil(target * np.clip(ease, 0.0, 1.0)), 1).astype(np.int64)
        q.spawn(k, char_id=chars, problem=p.handles(prob), kind=kind, place=p["place"][prob],
                item=p["item"][prob], quest_id=ids, target=target,
                faction=p["faction"][prob], reward_zeny=p["reward_zeny"][prob],
                reward_item=p["reward_item"][prob], reward_amount=p["reward_amount"][prob],
                deadline=np.full(k, world.tick + qr.quest_ttl_ticks))
        np.add.at(p["takers"], prob, 1)
        world.emit("start_quest", char_id=chars, quest_id=ids)
        world.tables["quest_stats"]["offers"][0] += k

    # -- apply: the offers' voice ------------------------------------------------------------
    def voice(self, world: World) -> None:
        applied = world.decisions.applied
        if not len(applied):
            return
        mine = applied["kind"] == DECISION_OFFER
        if not mine.any():
            return
        res, said = applied[mine], world.decisions.applied_text[mine]
        p = world.tables["problem"]
        cur = p.is_current(res["actor"])
        res, said = res[cur], said[cur]
        if not len(res):
            return
        slots = (res["actor"] & 0xFFFFFFFF).astype(np.int64)
        pitch = res["option"].astype(np.int64)
        p["pitch"][slots] = pitch
        text = np.where(said != b"", said, self._lines(world, slots, pitch).astype(said.dtype))
        loud = np.arange(min(len(slots), self.broadcasts_max))
        world.emit("broadcast", map_id=p["place"][slots][loud], text=text[loud])
        stats = world.tables["quest_stats"]
        stats["voiced"][0] += len(slots)
        stats["voiced_by_resolver"][0] += int((said != b"").sum())

    def history(self, world: World) -> dict[str, np.ndarray]:
        return self.log.recent(world)


def describe(world: World) -> str:
    """Problems and quests of the run, in words: for the model's summary."""
    st = world.tables["quest_stats"]
    geo = world.resources["geography"]
    fac = world.resources["factions"]
    found, solved, dropped, finished = (st[c][0] for c in ("found", "solved", "dropped",
                                                           "finished"))

    def by_kind(v: np.ndarray) -> str:
        return ", ".join(f"{KIND_NAMES[k]} {int(n)}" for k, n in enumerate(v) if n) or "none"

    p = world.tables["problem"]
    live = p.live_slots()
    open_ = "; ".join(
        f"{KIND_NAMES[int(p['kind'][s])]} on {geo.map_names[int(p['place'][s])]} for the "
        f"{fac.names[int(p['faction'][s])]} ({int(p['takers'][s])} on it, "
        f"{int(p['finished'][s])} done, {int(p['reward_zeny'][s])}z)" for s in live[:4])
    return (f"{int(found.sum())} problems found ({by_kind(found)}), {int(solved.sum())} solved, "
            f"{int(dropped.sum())} dropped; {int(st['offers'][0])} quests offered "
            f"({int(st['voiced'][0])} offers voiced, {int(st['voiced_by_resolver'][0])} in the "
            f"resolver's words), {int(finished.sum())} finished ({by_kind(finished)}), "
            f"{int(st['quests_expired'][0])} ran out; {int(st['paid_zeny'][0])} zeny and "
            f"{int(st['paid_items'][0])} items paid from faction treasuries"
            + (f" ({int(st['short_paid'][0])} paid short)" if st["short_paid"][0] else "") +
            f"; {len(live)} open{': ' + open_ if open_ else ''}")
