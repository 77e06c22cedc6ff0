"""The Midgard model's own action checks, registered once with the world.

Every kind's generic bounds (dtype ranges, declared bounds and codes, known maps, walkable
cells) are checked by the engine from the kind's one declaration (``engine/rathena.py``,
``World.emit``). What only this model knows is checked here: a price inside its market's
band, a hazard type and intensity this world has, a quest it offers (its own or the quest
kind's), a reward under its caps and of an item it knows, a boss from its boss lists. The
rules clamp what they produce; these checks assert the result before the action enters the
tick's buffer, and the same checks run over emitted batches in the tests
(``World.check_actions``), so a bound is checked on both sides of the boundary
(TigerBeetle's paired assertions). A failed check is a bug in the rules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from norn.actors.midgard.static import Static
from norn.actors.quests import quest_ids
from norn.engine.actions import ActionBatch
from norn.engine.kinds import InvalidAction
from norn.engine.world import World

__all__ = ["InvalidAction", "add_checks", "check_batch", "emit"]

Check = Callable[[dict[str, np.ndarray]], "str | None"]


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def checks(st: Static) -> dict[str, Check]:
    """This model's checks by action kind (each returns the first problem, or None)."""
    rules = st.spec.rules

    def set_price(cols: dict[str, np.ndarray]) -> str | None:
        k = cols["market_id"].astype(np.int64)
        bad = (k < 0) | (k >= len(st.market_map))
        if bad.any():
            return f"market_id {int(k[_first(bad)])} unknown"
        if (cols["map_id"] != st.market_map[k]).any():
            return "map_id is not the market's town"
        if (cols["item_id"] != st.item_ids[st.market_item[k]]).any():
            return "item_id is not the market's item"
        p = cols["price_zeny"].astype(np.int64)
        out = (p < st.market_lo[k]) | (p > st.market_hi[k])
        if out.any():
            j = _first(out)
            return (
                f"price {int(p[j])} of market {int(k[j])} outside its band "
                f"[{int(st.market_lo[k[j]])}, {int(st.market_hi[k[j]])}]"
            )
        return None

    def set_hazard(cols: dict[str, np.ndarray]) -> str | None:
        t = cols["hazard_type"].astype(np.int64)
        if ((t < 0) | (t >= st.n_htypes)).any():
            return "hazard_type unknown"
        if (cols["intensity"] > rules.hazard.intensity_max).any():
            return "intensity outside [0, rules.hazard.intensity_max]"
        return None

    offered = np.concatenate([st.quest_ids, quest_ids(rules.quests)])  # the scenario's, Norn's

    def start_quest(cols: dict[str, np.ndarray]) -> str | None:
        return None if np.isin(cols["quest_id"], offered).all() else "quest_id unknown"

    bosses = [m.id for m in (*rules.bosses.surge_mobs, *rules.bosses.war_mobs)]

    def spawn_monster(cols: dict[str, np.ndarray]) -> str | None:
        return None if np.isin(cols["mob_id"], bosses).all() else "mob_id is not a boss mob"

    def give_reward(cols: dict[str, np.ndarray]) -> str | None:
        z = cols["zeny"].astype(np.int64)
        a = cols["amount"].astype(np.int64)
        if (z > rules.actions.reward_zeny_max).any():
            return f"zeny outside [0, reward_zeny_max={rules.actions.reward_zeny_max}]"
        if (a > rules.actions.reward_amount_max).any():
            return f"amount outside [0, reward_amount_max={rules.actions.reward_amount_max}]"
        known = np.isin(cols["item_id"], st.item_ids) | ((cols["item_id"] == 0) & (a == 0))
        return None if known.all() else "item_id unknown"

    return {"set_price": set_price, "set_hazard": set_hazard, "start_quest": start_quest,
            "give_reward": give_reward, "spawn_monster": spawn_monster}


def add_checks(world: World, st: Static) -> None:
    """Register this model's checks with ``world`` (once, at build)."""
    for kind, check in checks(st).items():
        world.add_action_check(kind, check, "midgard")


def emit(world: World, kind: str, **cols: np.ndarray) -> None:
    """``world.emit``: check a batch of ``kind`` actions, then queue it for this tick."""
    world.emit(kind, **cols)


def check_batch(world: World, batch: ActionBatch) -> list[str]:
    """Every rule violation in an emitted batch (empty when all actions are valid)."""
    return world.check_actions(batch)
