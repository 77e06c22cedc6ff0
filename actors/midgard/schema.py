"""The Midgard scenario format, validated by pydantic, and its cross-reference checks.

A scenario is data about a slice of rAthena's world (maps with cell grids and warps, towns
with markets, items with rAthena ids, factions, NPC populations, hazard types) plus every
tunable rule number under ``[rules]``. Rule numbers have no defaults here on purpose: the
scenario file is the one place a designer reads and changes them, so no tunable hides in
code. Bounds (``ge``/``le``) are validation, not tuning.

Errors name the path the way a designer reads it, ``maps[3].warps[1].to: unknown map
'prontra'``, and become one ``ConfigError`` (exit code 2).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from norn.actors.bosses.schema import BossRules
from norn.actors.economy.schema import EconomyRules
from norn.actors.emotion.schema import EmotionRules
from norn.actors.faction.schema import FactionRules
from norn.actors.hazard.schema import HazardRules
from norn.actors.karma.schema import KarmaRules
from norn.actors.memory.schema import MemoryRules
from norn.actors.midgard import limits as lim
from norn.actors.npc.schema import NpcRules
from norn.actors.quests.schema import QuestRules
from norn.actors.treasure.schema import TreasureRules
from norn.actors.worldevents.schema import WorldEventRules
from norn.engine import limits as engine_limits
from norn.engine.config import format_validation_error
from norn.engine.errors import ConfigError
from norn.engine.rathena import WEATHER_CODES
from norn.rules.schema import Frac, Rate, TickRange, Zeny

Ticks = Annotated[int, Field(ge=1, le=1_000_000)]


class Strict(BaseModel):
    """The scenario's data classes (``rules.schema.Strict``'s config: unknown keys fail)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- rules ------------------------------------------------------------------------------
class ActionRules(Strict):
    """Caps on what the world asks of the game server, and how long it remembers it.

    ``action_log_ticks`` ticks of spawn/move/say/price actions (at most
    ``action_log_per_tick_max`` a tick) are kept as state so failed results have
    consequences (an NPC a server says is not there is re-announced, at most
    ``reannounce_per_tick_max`` a tick; a refused price is reverted); 0 keeps none, and
    results are then only journaled.
    """

    reward_zeny_max: Zeny
    reward_amount_max: Annotated[int, Field(ge=0, le=lim.item_stack_max)]
    move_actions_per_tick_max: Annotated[int, Field(ge=0, le=1 << 17)]
    say_actions_per_tick_max: Annotated[int, Field(ge=0, le=1 << 16)]
    broadcasts_per_tick_max: Annotated[int, Field(ge=0, le=1 << 12)]
    price_actions_per_tick_max: Annotated[int, Field(ge=0, le=1 << 17)]
    action_log_ticks: Annotated[int, Field(ge=0, le=engine_limits.action_log_ticks_max)]
    action_log_per_tick_max: Annotated[int, Field(ge=1, le=engine_limits.action_log_rows_max)]
    reannounce_per_tick_max: Annotated[int, Field(ge=0, le=1 << 16)]


class PlayerRules(Strict):
    """The player table's bound and the deterministic event generator's rates."""

    players_max: Annotated[int, Field(ge=1, le=lim.players_max)]
    simulated: Annotated[int, Field(ge=0, le=lim.players_max)]
    session_ticks: TickRange
    offline_ticks: TickRange
    move_chance: Frac
    kill_chance: Frac
    talk_chance: Frac
    shop_chance: Frac
    quest_chance: Frac
    level_chance: Frac
    shop_qty_max: Annotated[int, Field(ge=1, le=lim.item_stack_max)]
    shop_sell_share: Frac
    town_bias: Frac
    waypoint_ticks: Ticks
    char_id_base: Annotated[int, Field(ge=1, le=2**31)]
    account_id_base: Annotated[int, Field(ge=1, le=2**31)]
    mob_ids: Annotated[list[Annotated[int, Field(ge=1, le=2**31 - 1)]], Field(min_length=1)]
    # deaths (off towns, twice as likely for the clumsiest player, never for the most
    # skilled), trades and vending between players (a greedy vendor asks up to
    # 0.7 + vend_markup_max times the base price), idle (AFK) session halves, and the
    # few NPCs a player keeps talking to
    death_chance: Frac
    trade_chance: Frac
    vend_chance: Frac
    vend_markup_max: Annotated[float, Field(ge=0.0, le=100.0)]
    afk_share: Frac
    talk_favourites: Annotated[int, Field(ge=1, le=64)]
    # the calendar (a daily reset every day_ticks; the War of Emperium from tick woe_at
    # into each woe_every_ticks, for woe_ticks), digging where a player stands, and boss
    # hunts on maps that are not towns (the map's boss mob, spawn id 0)
    day_ticks: Ticks
    woe_every_ticks: Ticks
    woe_at: Annotated[int, Field(ge=0, le=1_000_000)]
    woe_ticks: Ticks
    dig_chance: Frac
    mvp_chance: Frac


class Rules(Strict):
    audit_every_ticks: Annotated[int, Field(ge=0, le=1_000_000)]
    npc: NpcRules
    economy: EconomyRules
    faction: FactionRules
    hazard: HazardRules
    actions: ActionRules
    players: PlayerRules
    karma: KarmaRules
    memory: MemoryRules
    emotion: EmotionRules
    quests: QuestRules
    bosses: BossRules
    treasure: TreasureRules
    worldevents: WorldEventRules


# -- world data -------------------------------------------------------------------------
class Warp(Strict):
    x: Annotated[int, Field(ge=0, lt=lim.map_side_max)]
    y: Annotated[int, Field(ge=0, lt=lim.map_side_max)]
    to: str
    to_x: Annotated[int, Field(ge=0, lt=lim.map_side_max)]
    to_y: Annotated[int, Field(ge=0, lt=lim.map_side_max)]


class Walk(Strict):
    """Walkability as rules (border, blocked rectangles, noise) or an explicit mask.

    ``mask`` rows are strings, ``.`` walkable and ``#`` blocked, row 0 at y = 0; when
    given it replaces the rules. rAthena's real grids live in .gat files the engine does
    not read; these rules give cell grids of the same shape and role.
    """

    border: Annotated[int, Field(ge=0, le=256)] = 0
    blocks: list[tuple[int, int, int, int]] = []
    noise: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    mask: list[str] | None = None
    # a real grid, compactly: base64 of the zlib-compressed bits (1 walkable; row 0 at
    # y = 0; numpy packbits, little bit order), as ``norn scenario import`` writes it from
    # rAthena's map cache (``decode_cells``); when given it replaces the rules and mask
    cells: str | None = None


class MapSpec(Strict):
    name: Annotated[str, Field(min_length=1)]
    width: Annotated[int, Field(ge=1, le=lim.map_side_max)]
    height: Annotated[int, Field(ge=1, le=lim.map_side_max)]
    walk: Walk = Walk()
    warps: Annotated[list[Warp], Field(max_length=lim.warps_per_map_max)] = []


class ItemSpec(Strict):
    id: Annotated[int, Field(ge=1, le=lim.item_id_max)]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    price_zeny: Annotated[int, Field(ge=1, le=lim.zeny_max)]
    # what an NPC shop pays for one (rAthena's item database ``Sell``); absent: rAthena's
    # default, price_zeny // 2. Prices never go below its shop-exploit floor
    # (rules.pricing.exploit_floor: sell x 1.24 / 0.75, rounded up)
    sell_zeny: Annotated[int, Field(ge=0, le=lim.zeny_max)] | None = None
    use: Literal["food", "potion", "luxury"]
    relief: Frac


class MarketItem(Strict):
    item: Annotated[int, Field(ge=1, le=lim.item_id_max)]
    stock: Annotated[int, Field(ge=0, le=lim.item_stack_max)]


class TownSpec(Strict):
    map: str
    cash_zeny: Zeny
    market: Annotated[list[MarketItem], Field(min_length=1, max_length=lim.markets_per_town_max)]


class FactionSpec(Strict):
    name: Annotated[str, Field(min_length=1, max_length=48)]
    home: str
    sprite: Annotated[int, Field(ge=0, le=32767)]
    influence: Annotated[float, Field(ge=0.0, le=1e6)]
    treasury_zeny: Zeny


class Relation(Strict):
    a: str
    b: str
    value: Annotated[float, Field(ge=-1.0, le=1.0)]


class PopulationSpec(Strict):
    map: str
    count: Annotated[int, Field(ge=0, le=lim.npcs_max)]
    faction: str
    home: str | None = None
    wallet_zeny: tuple[Zeny, Zeny]
    area: tuple[int, int, int, int] | None = None


class HazardType(Strict):
    name: Annotated[str, Field(min_length=1, max_length=24)]
    kind: Literal["hazard", "weather"]
    weather: str | None = None
    fear: Annotated[float, Field(ge=0.0, le=100.0)]
    hurt: Annotated[float, Field(ge=0.0, le=100.0)]
    mood: Annotated[float, Field(ge=-1.0, le=1.0)]
    supply_loss: Rate
    influence_shift: Rate
    start_chance: Rate
    starts_on: Literal["any", "town", "field"]
    start_intensity: tuple[Frac, Frac]
    grow_ticks: Annotated[int, Field(ge=0, le=100_000)]
    grow_per_tick: Rate
    decay_per_tick: Rate
    end_below: Frac
    spread_chance: Rate
    spread_factor: Frac
    spread_min: Frac
    conflict_boost: Annotated[float, Field(ge=0.0, le=100.0)]
    kill_relief: Rate


class QuestSpec(Strict):
    id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    faction: str
    reward_zeny: Zeny
    reward_item: Annotated[int, Field(ge=0, le=lim.item_id_max)]
    reward_amount: Annotated[int, Field(ge=0, le=lim.item_stack_max)]


class InitialHazard(Strict):
    map: str
    type: str
    intensity: Frac


class Dialogue(Strict):
    greet: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    trade: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    quest: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    refuse: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    hazard: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    conflict: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    takeover: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    recall: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]
    grudge: Annotated[list[str], Field(min_length=1, max_length=lim.dialogue_lines_max)]


class WorldSpec(Strict):
    terrain_seed: Annotated[int, Field(ge=0, lt=2**32)]


class Scenario(Strict):
    name: str
    model: Literal["midgard"]
    description: str = ""
    world: WorldSpec
    rules: Rules
    items: Annotated[list[ItemSpec], Field(min_length=1, max_length=lim.items_max)]
    maps: Annotated[list[MapSpec], Field(min_length=1, max_length=lim.maps_max)]
    towns: Annotated[list[TownSpec], Field(min_length=1, max_length=lim.towns_max)]
    factions: Annotated[list[FactionSpec], Field(min_length=1, max_length=lim.factions_max)]
    relations: list[Relation] = []
    populations: Annotated[list[PopulationSpec], Field(max_length=lim.populations_max)] = []
    hazard_types: Annotated[
        list[HazardType], Field(min_length=1, max_length=lim.hazard_types_max)
    ]
    quests: Annotated[list[QuestSpec], Field(max_length=lim.quests_max)] = []
    initial_hazards: Annotated[list[InitialHazard], Field(max_length=lim.hazards_max)] = []
    dialogue: Dialogue


def encode_cells(walkable) -> str:
    """``Walk.cells`` text for a (height, width) bool grid."""
    import base64
    import zlib

    import numpy as np

    bits = np.packbits(np.asarray(walkable, np.bool_).reshape(-1), bitorder="little")
    return base64.b64encode(zlib.compress(bits.tobytes(), 9)).decode()


def decode_cells(text: str, width: int, height: int):
    """The (width x height) uint8 walkability (1 walkable, row 0 at y = 0) of ``Walk.cells``;
    ValueError when it is not that many cells."""
    import base64
    import binascii
    import zlib

    import numpy as np

    try:
        raw = zlib.decompress(base64.b64decode(text.encode(), validate=True))
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"not base64 of zlib data: {exc}") from None
    if len(raw) != (width * height + 7) // 8:
        raise ValueError(f"{len(raw) * 8} cells' bits, map has {width}x{height}")
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    return bits[: width * height].astype(np.uint8)


# -- errors -----------------------------------------------------------------------------
class ScenarioError(ConfigError):
    """A scenario value is wrong; the message names its path."""


def fail(source: str, path: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: {path}: {message}")


def validate(data: dict[str, Any], source: str) -> Scenario:
    """Parse ``data`` (a TOML document) and check every cross reference."""
    try:
        sc = Scenario(**data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source, Scenario)) from None
    check_references(sc, source)
    return sc


def check_references(sc: Scenario, source: str) -> None:
    """Names that must refer to something, sizes that must fit, duplicates."""
    map_ix: dict[str, int] = {}
    for i, m in enumerate(sc.maps):
        if len(m.name.encode()) > lim.map_name_bytes_max:
            raise fail(source, f"maps[{i}].name", f"{m.name!r} is longer than 11 characters")
        if m.name in map_ix:
            raise fail(source, f"maps[{i}].name", f"duplicate map {m.name!r}")
        map_ix[m.name] = i
    cells = sum(m.width * m.height for m in sc.maps)
    if cells > lim.map_cells_max:
        raise fail(source, "maps", f"{cells} cells in all exceed map_cells_max={lim.map_cells_max}")
    for i, m in enumerate(sc.maps):
        for j, w in enumerate(m.warps):
            p = f"maps[{i}].warps[{j}]"
            if w.to not in map_ix:
                raise fail(source, f"{p}.to", f"unknown map {w.to!r}")
            if w.x >= m.width or w.y >= m.height:
                raise fail(source, p, f"cell ({w.x}, {w.y}) outside {m.name} {m.width}x{m.height}")
            dst = sc.maps[map_ix[w.to]]
            if w.to_x >= dst.width or w.to_y >= dst.height:
                raise fail(
                    source,
                    p,
                    f"arrival ({w.to_x}, {w.to_y}) outside {dst.name} {dst.width}x{dst.height}",
                )
        if m.walk.mask is not None:
            if len(m.walk.mask) != m.height:
                raise fail(
                    source, f"maps[{i}].walk.mask", f"{len(m.walk.mask)} rows, map has {m.height}"
                )
            for r, row in enumerate(m.walk.mask):
                if len(row) != m.width or set(row) - {".", "#"}:
                    raise fail(
                        source,
                        f"maps[{i}].walk.mask[{r}]",
                        f"must be {m.width} characters of '.' and '#'",
                    )
        if m.walk.cells is not None:
            try:
                decode_cells(m.walk.cells, m.width, m.height)
            except ValueError as exc:
                raise fail(source, f"maps[{i}].walk.cells", str(exc)) from None
        for b, (x0, y0, x1, y1) in enumerate(m.walk.blocks):
            if not (0 <= x0 <= x1 < m.width and 0 <= y0 <= y1 < m.height):
                raise fail(source, f"maps[{i}].walk.blocks[{b}]", "rectangle outside the map")
    item_ids: dict[int, int] = {}
    for i, it in enumerate(sc.items):
        if it.id in item_ids:
            raise fail(source, f"items[{i}].id", f"duplicate item id {it.id}")
        item_ids[it.id] = i
        sell = it.price_zeny // 2 if it.sell_zeny is None else it.sell_zeny
        if (sell * 124 + 74) // 75 > lim.zeny_max:  # rules.pricing.exploit_floor
            raise fail(source, f"items[{i}].sell_zeny",
                       f"{sell} puts the shop-exploit floor (x 1.24 / 0.75) above "
                       f"zeny_max={lim.zeny_max}")
    seen_towns: set[str] = set()
    for i, t in enumerate(sc.towns):
        if t.map not in map_ix:
            raise fail(source, f"towns[{i}].map", f"unknown map {t.map!r}")
        if t.map in seen_towns:
            raise fail(source, f"towns[{i}].map", f"map {t.map!r} already has a town")
        seen_towns.add(t.map)
        ids: set[int] = set()
        for j, mi in enumerate(t.market):
            if mi.item not in item_ids:
                raise fail(source, f"towns[{i}].market[{j}].item", f"unknown item id {mi.item}")
            if mi.item in ids:
                raise fail(source, f"towns[{i}].market[{j}].item", f"duplicate item {mi.item}")
            if mi.stock > sc.rules.economy.stock_max:
                raise fail(
                    source,
                    f"towns[{i}].market[{j}].stock",
                    f"{mi.stock} exceeds rules.economy.stock_max={sc.rules.economy.stock_max}",
                )
            ids.add(mi.item)
    fac_ix: dict[str, int] = {}
    for i, f in enumerate(sc.factions):
        if f.name in fac_ix:
            raise fail(source, f"factions[{i}].name", f"duplicate faction {f.name!r}")
        fac_ix[f.name] = i
        if f.home not in map_ix:
            raise fail(source, f"factions[{i}].home", f"unknown map {f.home!r}")
        if f.influence > sc.rules.faction.influence_max:
            raise fail(source, f"factions[{i}].influence", "exceeds rules.faction.influence_max")
        if f.treasury_zeny > sc.rules.economy.treasury_max:
            raise fail(source, f"factions[{i}].treasury_zeny", "exceeds rules.economy.treasury_max")
    for i, r in enumerate(sc.relations):
        for key in ("a", "b"):
            if getattr(r, key) not in fac_ix:
                raise fail(source, f"relations[{i}].{key}", f"unknown faction {getattr(r, key)!r}")
    total = 0
    for i, p in enumerate(sc.populations):
        if p.map not in map_ix:
            raise fail(source, f"populations[{i}].map", f"unknown map {p.map!r}")
        if p.faction not in fac_ix:
            raise fail(source, f"populations[{i}].faction", f"unknown faction {p.faction!r}")
        if p.home is not None and p.home not in seen_towns:
            raise fail(source, f"populations[{i}].home", f"{p.home!r} is not a town")
        if p.wallet_zeny[1] < p.wallet_zeny[0]:
            raise fail(source, f"populations[{i}].wallet_zeny", "max must be >= min")
        if p.area is not None:
            m = sc.maps[map_ix[p.map]]
            x0, y0, x1, y1 = p.area
            if not (0 <= x0 <= x1 < m.width and 0 <= y0 <= y1 < m.height):
                raise fail(source, f"populations[{i}].area", f"rectangle outside {m.name}")
        total += p.count
    if total > lim.npcs_max:
        raise fail(source, "populations", f"{total} NPCs exceed npcs_max={lim.npcs_max}")
    type_ix: dict[str, int] = {}
    for i, h in enumerate(sc.hazard_types):
        if h.name in type_ix:
            raise fail(source, f"hazard_types[{i}].name", f"duplicate hazard type {h.name!r}")
        type_ix[h.name] = i
        if h.weather is not None and h.weather not in WEATHER_CODES:
            raise fail(
                source,
                f"hazard_types[{i}].weather",
                f"unknown weather {h.weather!r}; one of {sorted(WEATHER_CODES)}",
            )
        if h.kind == "weather" and h.weather is None:
            raise fail(source, f"hazard_types[{i}].weather", "a weather type needs a weather")
        if h.start_intensity[1] < h.start_intensity[0]:
            raise fail(source, f"hazard_types[{i}].start_intensity", "max must be >= min")
        if h.start_intensity[1] > sc.rules.hazard.intensity_max:
            raise fail(
                source, f"hazard_types[{i}].start_intensity", "exceeds rules.hazard.intensity_max"
            )
    for i, q in enumerate(sc.quests):
        if q.faction not in fac_ix:
            raise fail(source, f"quests[{i}].faction", f"unknown faction {q.faction!r}")
        if q.reward_item and q.reward_item not in item_ids:
            raise fail(source, f"quests[{i}].reward_item", f"unknown item id {q.reward_item}")
        if q.reward_zeny > sc.rules.actions.reward_zeny_max:
            raise fail(source, f"quests[{i}].reward_zeny", "exceeds rules.actions.reward_zeny_max")
        if q.reward_amount > sc.rules.actions.reward_amount_max:
            raise fail(
                source, f"quests[{i}].reward_amount", "exceeds rules.actions.reward_amount_max"
            )
    if len(sc.initial_hazards) > sc.rules.hazard.hazards_max:
        raise fail(source, "initial_hazards", "more entries than rules.hazard.hazards_max")
    for i, h in enumerate(sc.initial_hazards):
        if h.map not in map_ix:
            raise fail(source, f"initial_hazards[{i}].map", f"unknown map {h.map!r}")
        if h.type not in type_ix:
            raise fail(source, f"initial_hazards[{i}].type", f"unknown hazard type {h.type!r}")
        if h.intensity > sc.rules.hazard.intensity_max:
            raise fail(source, f"initial_hazards[{i}].intensity", "exceeds intensity_max")
    for k in ("greet", "trade", "quest", "refuse", "hazard", "conflict", "takeover", "recall",
              "grudge"):
        for j, line in enumerate(getattr(sc.dialogue, k)):
            if len(line.encode()) > 200:
                raise fail(source, f"dialogue.{k}[{j}]", "longer than 200 bytes")
    r = sc.rules
    if r.economy.stock_max > r.economy.item_stack_max:
        raise fail(source, "rules.economy.stock_max", "exceeds rules.economy.item_stack_max")
    if r.players.simulated > r.players.players_max:
        raise fail(source, "rules.players.simulated", "exceeds rules.players.players_max")
    if r.npc.wallet_birth_zeny[1] < r.npc.wallet_birth_zeny[0]:
        raise fail(source, "rules.npc.wallet_birth_zeny", "max must be >= min")
    check_living_world(sc, source)


def check_living_world(sc: Scenario, source: str) -> None:
    """Quests, bosses, treasure and world events: caps within the actions' caps, quest ids
    apart from the scenario's own quests, the War of Emperium inside its cycle."""
    r = sc.rules
    ar = r.actions
    q = r.quests
    if q.reward_zeny_max > ar.reward_zeny_max:
        raise fail(source, "rules.quests.reward_zeny_max", "exceeds rules.actions.reward_zeny_max")
    if q.reward_amount_max > ar.reward_amount_max:
        raise fail(source, "rules.quests.reward_amount_max",
                   "exceeds rules.actions.reward_amount_max")
    ids = set(range(q.quest_id_base, q.quest_id_base + 4))
    for i, quest in enumerate(sc.quests):
        if quest.id in ids:
            raise fail(source, f"quests[{i}].id", "is one of rules.quests' own quest ids "
                       f"(quest_id_base {q.quest_id_base} .. +3)")
    if r.bosses.bounty_zeny > ar.reward_zeny_max:
        raise fail(source, "rules.bosses.bounty_zeny", "exceeds rules.actions.reward_zeny_max")
    for j, loot in enumerate(r.treasure.loot):
        if loot.amount_max > ar.reward_amount_max:
            raise fail(source, f"rules.treasure.loot[{j}].amount_max",
                       "exceeds rules.actions.reward_amount_max")
    if r.players.woe_ticks >= r.players.woe_every_ticks:
        raise fail(source, "rules.players.woe_ticks", "must be shorter than woe_every_ticks")
