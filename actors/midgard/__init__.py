"""The Midgard model: a living slice of Rune-Midgarts built from a scenario.

``build_world`` validates the scenario (``schema``, which composes the kinds' own rule
schemas), expands a ``[generate]`` table into a synthetic world when there is one
(``generate``), derives the fixed geography and catalogues (``static``) and provides them
as named resources, adds the zeny ledger with its accounts, then the kinds: hazards,
factions, NPCs, economy, players and a commit-phase audit, each with its own rules; and
registers the model's own action checks (``actions``). The kinds never import this
package or each other. ``MODEL`` (entry point group ``norn.models``) names the hooks
``norn run`` and the bridge call: ``make_event_source`` (simulated players while no
bridge serves), ``summary`` (what happened, for the run report), ``bridge_view`` (map
names, bounds and kinds for the edge) and ``bridge_sync`` (what a joining map server must
mirror: ``sync``).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from norn.actors.bosses import BossPlugin
from norn.actors.bosses import describe as describe_bosses
from norn.actors.economy import EconomyPlugin
from norn.actors.emotion import EmotionPlugin
from norn.actors.faction import FactionPlugin
from norn.actors.hazard import H, HazardPlugin
from norn.actors.karma import KarmaPlugin
from norn.actors.memory import MemoryPlugin
from norn.actors.midgard.actions import add_checks
from norn.actors.midgard.events import make_event_source
from norn.actors.midgard.players import PlayersPlugin
from norn.actors.midgard.schema import Scenario as ScenarioSpec
from norn.actors.midgard.schema import validate
from norn.actors.midgard.static import Static, build_static
from norn.actors.midgard.sync import Mirror, bridge_sync
from norn.actors.npc import NpcPlugin
from norn.actors.quests import QuestPlugin
from norn.actors.quests import describe as describe_quests
from norn.actors.treasure import TreasurePlugin
from norn.actors.treasure import describe as describe_treasure
from norn.actors.worldevents import WorldEventPlugin
from norn.actors.worldevents import describe as describe_worldevents
from norn.engine.errors import require
from norn.engine.ledger import Ledger
from norn.engine.scenario import Model, Scenario
from norn.engine.world import World
from norn.rules.utility import STATE_MASK, STATE_NAMES

__all__ = ["MODEL", "audit", "bridge_sync", "bridge_view", "build_world", "load",
           "make_event_source", "summary"]

#: The zeny ledger's accounts, in the order of its columns (sources, then sinks).
SOURCES = ("birth", "wages", "player_purchase", "vending_tax")
SINKS = ("death", "player_sale", "quest_reward", "upkeep", "unclaimed")


def load(data: dict[str, Any], source: str) -> ScenarioSpec:
    """The validated scenario; a ``[generate]`` table is expanded first."""
    if "generate" in data:
        from norn.actors.midgard.generate import expand

        data = expand(data, source)
    return validate(data, source)


class AuditPlugin:
    """Checks the world's conservation law in the commit phase (cannot be stripped by -O)."""

    name = "midgard"
    resources = ("ledger",)

    def __init__(self, st: Static) -> None:
        self.every = st.spec.rules.audit_every_ticks

    def build(self, world: World) -> None:
        self.ledger = world.resource("ledger")
        world.add_system(
            "midgard.audit", "commit", self.audit, reads=(*self.ledger.reads(), "market.stock")
        )

    def audit(self, world: World) -> None:
        if not self.every or world.tick % self.every:
            return
        a = self.ledger.audit(world)
        require(
            a["difference"] == 0,
            f"zeny not conserved: held {a['held']} != expected {a['expected']}",
        )
        m = world.tables["market"]
        require(bool((m["stock"][: m.hwm] >= 0).all()), "negative market stock")


def build_world(world: World, scenario: Scenario) -> None:
    sc = load(scenario.data, scenario.source)
    st = build_static(sc, scenario.source)
    rules = sc.rules
    ar = rules.actions
    world.provide("midgard", st)  # the model's own view (summary, checks, tests)
    for name, obj in st.resources().items():
        world.provide(name, obj)
    if ar.action_log_ticks:
        world.keep_actions(ar.action_log_ticks, ar.action_log_per_tick_max)
    ledger = Ledger(sources=SOURCES, sinks=SINKS)
    world.add_plugin(ledger)
    world.add_plugin(HazardPlugin(rules.hazard, st.hazard_types(), st.initial_hazards(),
                                  broadcasts_max=ar.broadcasts_per_tick_max))
    world.add_plugin(FactionPlugin(rules.faction, reward_zeny_max=ar.reward_zeny_max,
                                   reward_amount_max=ar.reward_amount_max,
                                   broadcasts_max=ar.broadcasts_per_tick_max))
    world.add_plugin(KarmaPlugin(rules.karma))
    world.add_plugin(MemoryPlugin(rules.memory))
    world.add_plugin(EmotionPlugin(rules.emotion))
    world.add_plugin(NpcPlugin(rules.npc, st.populations(),
                               move_actions_max=ar.move_actions_per_tick_max,
                               say_actions_max=ar.say_actions_per_tick_max,
                               reannounce_max=ar.reannounce_per_tick_max))
    world.add_plugin(EconomyPlugin(rules.economy, price_actions_max=ar.price_actions_per_tick_max))
    world.add_plugin(PlayersPlugin(st))
    add_living_world(world, st)
    world.add_plugin(AuditPlugin(st))
    # npc.talk reads the reputation faction.deeds writes, both in ingest: the model that
    # composes the two kinds says who goes first (the order the name tie-break gave).
    world.order("faction.deeds", "npc.talk")
    if world.action_log is not None:  # both emit in ingest; re-announcements come last
        world.order("faction.deeds", "npc.reannounce")
    # karma, NPC memory and player emotion colour how NPCs answer players (npc.talk reads
    # all three, memory reads karma); karma's announcements come after the other ingest
    # actions
    world.order("karma.deeds", "memory.remember")
    world.order("memory.remember", "npc.talk")
    world.order("emotion.infer", "npc.talk")
    world.order("faction.deeds", "karma.deeds")
    if world.action_log is not None:
        world.order("npc.reannounce", "karma.deeds")
    order_living_world(world)
    add_checks(world, st)
    ledger.set_initial(world)


def add_living_world(world: World, st: Static) -> None:
    """Quests, bosses, treasure and world events, told which hazard types are monster
    surges (players' kills relieve them) and which are only weather, and whether players'
    emotion is inferred (quests then fit their difficulty, world events their pace)."""
    rules = st.spec.rules
    ar = rules.actions
    monster = (st.htype[:, H["kill_relief"]] > 0) & (st.htype[:, H["is_weather"]] == 0)
    weather = st.htype[:, H["is_weather"]] > 0
    loud = ar.broadcasts_per_tick_max
    felt = "emotion" in world.resources  # players' emotion sets quest targets, event pace
    world.add_plugin(QuestPlugin(rules.quests, monster_hazards=monster, weather_hazards=weather,
                                 broadcasts_max=loud, emotion=felt))
    world.add_plugin(BossPlugin(rules.bosses, monster_hazards=monster,
                                reward_zeny_max=ar.reward_zeny_max,
                                stock_max=rules.economy.stock_max, broadcasts_max=loud))
    world.add_plugin(TreasurePlugin(rules.treasure, reward_amount_max=ar.reward_amount_max,
                                    broadcasts_max=loud))
    events = WorldEventPlugin(rules.worldevents, monster_hazards=monster, broadcasts_max=loud,
                              emotion=felt)
    world.add_plugin(events)
    world.provide("mirror", Mirror(events.m))  # the join sync's reader (bridge_sync)


def order_living_world(world: World) -> None:
    """The living world's systems run in each phase after the other plugins' systems whose
    state they share (they follow the faction's deeds, karma, the economy's tick, the NPCs'
    answers), in a fixed order among themselves."""
    chains = {
        "ingest": ("quests.progress", "bosses.ingest", "treasure.dig", "worldevents.ingest"),
        "act": ("quests.scan", "bosses.spawn", "treasure.bury", "worldevents.advance"),
        "apply": ("quests.voice",),
    }
    systems = {s.name: s for s in world.schedule.systems}

    def touches(a: str, b: str) -> bool:
        ta, _, ca = a.partition(".")
        tb, _, cb = b.partition(".")
        return a == b or (ta == tb and "*" in (ca, cb) and bool(ca) and bool(cb))

    for phase, chain in chains.items():
        mine = [systems[n] for n in chain]
        for other in world.schedule.systems:
            if other.phase != phase or other.name in chain or other.plugin == "engine":
                continue
            shared = any(touches(w, x) for m in mine for w in other.writes
                         for x in (*m.reads, *m.writes)) or any(
                touches(r, w) for m in mine for r in other.reads for w in m.writes)
            if shared:
                world.order(other.name, chain[0])
        for first, then in pairwise(chain):
            world.order(first, then)


def audit(world: World) -> dict[str, int]:
    """held, expected (initial + sources - sinks) and their difference."""
    return world.resource("ledger").audit(world)


def bridge_view(world: World) -> dict[str, Any]:
    """What the bridge edge needs to validate events and actions (``WorldView`` keywords)."""
    st: Static = world.resources["midgard"]
    ar = st.spec.rules.actions
    return {
        "map_names": st.map_names,
        "map_sizes": tuple((int(w), int(h)) for w, h in zip(st.width, st.height, strict=True)),
        "reward_zeny_max": ar.reward_zeny_max,
        "reward_amount_max": ar.reward_amount_max,
        "kinds": world.kinds,
    }


def _row(world: World, table: str) -> dict[str, Any]:
    t = world.tables[table]
    return {c: t[c][0] for c in t.specs if c not in ("alive", "generation")}


def summary(world: World) -> dict[str, Any]:
    """What happened in the run, in words and numbers, for the run report."""
    st: Static = world.resources["midgard"]
    out: dict[str, Any] = {}
    npc = world.tables["npc"]
    live = npc.live_slots()
    ns = _row(world, "npc_stats")
    states = np.bincount(npc["state"][live] & STATE_MASK, minlength=len(STATE_NAMES))
    out["npcs"] = (
        f"{len(live)} alive; {int(ns['fled'])} fled hazards or conflict, {int(ns['died'])} died, "
        f"{int(ns['born'])} born, {int(ns['warps'])} warps taken; now "
        + ", ".join(f"{n} {c}" for n, c in zip(STATE_NAMES, states.tolist(), strict=True) if c)
    )
    ms = _row(world, "market_stats")
    m = world.tables["market"]
    n = len(st.market_map)
    price = m["price"][:n].astype(np.int64)
    base = st.item_price[st.market_item]
    change = price / base - 1.0
    movers = np.argsort(-np.abs(change), kind="stable")[:5]
    out["prices"] = (
        f"{int(ms['price_rises'])} rises, {int(ms['price_falls'])} falls; biggest moves: "
        + "; ".join(
            f"{st.item_names[st.market_item[k]]} in {st.map_names[st.market_map[k]]} "
            f"{int(base[k])}->{int(price[k])}z ({change[k]:+.0%})"
            for k in movers
            if change[k] != 0
        )
    )
    out["trade"] = (
        f"NPCs bought {int(ms['npc_bought'])} and sold {int(ms['npc_sold'])} units "
        f"({int(ns['orders'])} orders, {int(ms['refused'])} refused); players bought "
        f"{int(ms['player_bought'])} and sold {int(ms['player_sold'])}; "
        f"hazards destroyed {int(ms['stock_lost'])} units of stock"
    )
    hs = _row(world, "hazard_stats")
    started, ended = hs["started"], hs["ended"]
    hz = world.tables["hazard"]
    hl = hz.live_slots()
    strongest = hl[np.argsort(-hz["intensity"][hl], kind="stable")[:5]]
    out["hazards"] = (
        f"{int(started.sum())} started ("
        + ", ".join(f"{st.htype_names[k]} {int(v)}" for k, v in enumerate(started) if v)
        + f"), {int(ended.sum())} ended, {int(hs['spread'])} by spreading, "
        f"{len(hl)} active"
        + (
            ": "
            + ", ".join(
                f"{st.htype_names[hz['type'][h]]} on {st.map_names[hz['map'][h]]} "
                f"{float(hz['intensity'][h]):.2f}"
                for h in strongest
            )
            if len(hl)
            else ""
        )
    )
    terr = world.tables["territory"]
    owner = terr["owner"][: st.n_maps]
    owned = np.bincount(owner[owner >= 0], minlength=st.n_factions)
    owned0 = world.tables["faction"]["owned0"][: st.n_factions]
    delta = owned.astype(np.int64) - owned0
    order = np.argsort(-np.abs(delta), kind="stable")[:6]
    fs = _row(world, "faction_stats")
    out["factions"] = (
        f"{int(fs['conflicts'])} conflicts, {int(fs['takeovers'])} takeovers, "
        f"{int((terr['contested'][: st.n_maps] == 1).sum())} maps contested now; "
        + "; ".join(
            f"{st.faction_names[f]} holds {int(owned[f])} maps ({int(delta[f]):+d})"
            for f in order
        )
    )
    d = world.decisions.counters
    out["decisions"] = (
        f"{int(ns['pondered'])} behaviour near-ties and {int(ns['talks'])} player talks "
        f"escalated; resolver {d['resolved']}, deadline fallback {d['deadline']}, "
        f"invalid {d['invalid']}; {int(ns['quests_started'])} quests offered, "
        f"{int(fs['rewards'])} rewards paid ({int(fs['reward_zeny'])} zeny)"
    )
    a = audit(world)
    led = _row(world, "ledger")
    sources, sinks = world.resource("ledger").accounts(world)
    out["zeny"] = (
        f"held {a['held']} = initial {int(led['initial'])} + sources "
        + str(sources)
        + " - sinks "
        + str(sinks)
        + (" (conserved)" if a["difference"] == 0 else f" (OFF BY {a['difference']})")
    )
    ps = _row(world, "player_stats")
    pl = world.tables["player"]
    online = int((pl["online"][: pl.hwm][pl.alive[: pl.hwm]] == 1).sum())
    out["players"] = f"{pl.count} known, {online} online, {int(ps['logins'])} logins"
    out["karma"] = _karma_summary(world)
    out["memory"] = _memory_summary(world, st)
    out["emotion"] = _emotion_summary(world, st)
    out["player_trade"] = _player_trade_summary(world, st)
    rules = st.spec.rules
    out["quests"] = describe_quests(world)
    out["bosses"] = describe_bosses(world, rules.bosses)
    out["treasure"] = describe_treasure(world)
    out["world_events"] = describe_worldevents(world, rules.worldevents)
    return out


def _karma_summary(world: World) -> str:
    """Karma extremes and what karma did to shop prices."""
    t = world.tables["karma"]
    live = t.live_slots()
    ks = _row(world, "karma_stats")
    if not len(live):
        return "no character has earned karma yet"
    v = t["value"][live]

    def who(s: int) -> str:
        deeds = [f"{int(t[c][s])} {c}" for c in ("kills", "deaths", "quests", "trades", "vends")
                 if t[c][s]]
        if t["gouges"][s]:
            deeds.append(f"{int(t['gouges'][s])} gouging sales")
        return f"char {int(t['char_id'][s])} {float(t['value'][s]):+.0f} ({', '.join(deeds)})"

    high = [who(s) for s in live[np.argsort(-v, kind="stable")[:3]] if t["value"][s] > 0]
    low = [who(s) for s in live[np.argsort(v, kind="stable")[:3]] if t["value"][s] < 0]
    pct = t["price_pct"][live]
    ms = _row(world, "market_stats")
    return (
        f"{len(live)} characters; highest: {'; '.join(high) or 'none above 0'}; lowest: "
        f"{'; '.join(low) or 'none below 0'}; {int(ks['announced'])} karma notices sent to "
        f"the game server (shop prices now {int(pct.min()):+d}% to {int(pct.max()):+d}%), "
        f"{int(ms['karma_priced'])} shop purchases and sales priced by karma"
    )


def _memory_summary(world: World, st: Static) -> str:
    """What NPCs remember: relationships, their warmest and coldest."""
    a = world.tables["affinity"]
    live = a.live_slots()
    live = live[a["key"][live] >= 0]
    mem = world.tables["memory"]
    n_mem = int((mem["key"][mem.live_slots()] >= 0).sum())
    ms = _row(world, "memory_stats")
    head = (
        f"NPCs remember {len(live)} relationships ({len(np.unique(a['npc'][live]))} NPCs, "
        f"{len(np.unique(a['char_id'][live]))} characters) and {n_mem} meetings "
        f"({int(ms['talks'])} talks, {int(ms['trades'])} shop trades, {int(ms['quests'])} "
        f"quests in all; {int(ms['overwritten'])} old memories overwritten, "
        f"{int(ms['forgotten'])} relationships faded, {int(ms['gone'])} with NPCs gone)"
    )
    if not len(live):
        return head
    npc = world.tables["npc"]

    def pair(r: int) -> str:
        s = int(a["npc"][r]) & 0xFFFFFFFF
        counts = ", ".join(f"{int(a[c][r])} {c}" for c in ("talks", "trades", "quests")
                           if a[c][r])
        return (f"{st.faction_names[npc['faction'][s]]} NPC #{s} on {st.map_names[npc['map'][s]]}"
                f" and char {int(a['char_id'][r])} {float(a['value'][r]):+.2f} ({counts})")

    v = a["value"][live]
    warm = live[np.argsort(-v, kind="stable")[:2]]
    cold = live[np.argsort(v, kind="stable")[:2]]
    out = head + "; warmest: " + "; ".join(pair(r) for r in warm if a["value"][r] > 0)
    cold = [pair(r) for r in cold if a["value"][r] < 0]
    return out + ("; coldest: " + "; ".join(cold) if cold else "")


def _emotion_summary(world: World, st: Static) -> str:
    """How players feel, map by map (the busiest maps): how many feel mostly what."""
    from norn.rules.emotion import MOODS

    em = world.tables["emotion_map"]
    n = st.n_maps
    count = em["online"][:n]
    if not count.sum():
        return "no character online"
    dom = em["dominant"][:n]
    e = world.tables["emotion"]
    live = e.live_slots()
    on = live[e["online"][live] == 1]
    eased = int((e["difficulty"][on] < 0.9).sum())
    total = dom.sum(axis=0)

    def spread(row: np.ndarray) -> str:
        k = np.argsort(-row, kind="stable")
        return ", ".join(f"{int(row[j])} {MOODS[j]}" for j in k if row[j])

    maps = [m for m in np.argsort(-count, kind="stable")[:6] if count[m]]
    return (
        f"{int(count.sum())} online: {spread(total)}; by map: "
        + "; ".join(f"{st.map_names[m]} {spread(dom[m])} (pace {float(em['pace'][m]):.2f})"
                    for m in maps)
        + f"; {eased} frustrated low-level characters to be offered easier problems"
    )


def _player_trade_summary(world: World, st: Static) -> str:
    """Trades and vending between players, and the markets they pushed."""
    ms = _row(world, "market_stats")
    m = world.tables["market"]
    n = len(st.market_map)
    units = m["p2p_units"][:n]
    head = (
        f"{int(ms['player_trades'])} trades and {int(ms['player_vends'])} vending purchases "
        f"between players ({int(ms['p2p_units'])} units, {int(ms['p2p_zeny'])} zeny; "
        f"{int(ms['vending_tax'])} zeny of vending tax to town markets)"
    )
    top = [k for k in np.argsort(-units, kind="stable")[:4] if units[k]]
    if not top:
        return head
    base = st.item_price[st.market_item]
    return head + "; busiest: " + "; ".join(
        f"{st.item_names[st.market_item[k]]} in {st.map_names[st.market_map[k]]} "
        f"{int(units[k])} units, adding net "
        f"{'demand' if m['p2p_net'][k] >= 0 else 'supply'} {abs(int(m['p2p_net'][k]))} "
        f"(price {int(base[k])}->{int(m['price'][k])}z, "
        f"{int(m['price'][k]) / int(base[k]) - 1:+.0%})"
        for k in top
    )


#: The Midgard model (entry point group ``norn.models``).
MODEL = Model("midgard", build_world, make_event_source=make_event_source, summary=summary,
              bridge_view=bridge_view, bridge_sync=bridge_sync)
