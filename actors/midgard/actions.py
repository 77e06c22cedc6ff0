"""World actions leave only through this gate: each batch is checked against the rules.

The rules clamp what they produce (a price into its band, a reward under its cap); this
gate then asserts the result before the action enters the tick's buffer, and the same
``check`` runs over emitted batches in the tests, so a bound is checked on both sides of
the boundary (STYLE habit, TigerBeetle's paired assertions). A failed check is a bug in
the rules: the tick stops naming the system.
"""

from __future__ import annotations

import numpy as np

from norn.actors.midgard.schema import WEATHER_CODES
from norn.actors.midgard.static import Static
from norn.engine.actions import ActionBatch


class InvalidAction(ValueError):
    """A rule produced an action outside its bounds."""


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _cell_problem(st: Static, m: np.ndarray, x: np.ndarray, y: np.ndarray) -> str | None:
    m = m.astype(np.int64)
    bad = (m < 0) | (m >= st.n_maps)
    if bad.any():
        return f"map_id {int(m[_first(bad)])} unknown"
    x = x.astype(np.int64)
    y = y.astype(np.int64)
    out = (x < 0) | (y < 0) | (x >= st.width[m]) | (y >= st.height[m])
    if out.any():
        k = _first(out)
        return f"cell ({int(x[k])}, {int(y[k])}) outside {st.map_names[int(m[k])]}"
    cells = st.walk[st.walk_off[m] + y * st.width[m] + x]
    if (cells == 0).any():
        k = _first(cells == 0)
        return f"cell ({int(x[k])}, {int(y[k])}) on {st.map_names[int(m[k])]} is not walkable"
    return None


def check(st: Static, kind: str, cols: dict[str, np.ndarray]) -> str | None:
    """The first way the batch breaks the rules' bounds, or None."""
    rules = st.spec.rules
    if kind in ("spawn_npc", "move_npc"):
        if (cols["npc_id"] < 0).any():
            return "negative npc_id"
        return _cell_problem(st, cols["map_id"], cols["x"], cols["y"])
    if kind == "despawn_npc":
        return "negative npc_id" if (cols["npc_id"] < 0).any() else None
    if kind in ("npc_say", "broadcast"):
        if kind == "broadcast":
            m = cols["map_id"].astype(np.int64)
            bad = (m < -1) | (m >= st.n_maps)
            if bad.any():
                return f"map_id {int(m[_first(bad)])} unknown"
        empty = np.char.str_len(cols["text"]) == 0
        return "empty text" if empty.any() else None
    if kind == "set_price":
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
    if kind == "set_weather":
        m = cols["map_id"].astype(np.int64)
        if ((m < 0) | (m >= st.n_maps)).any():
            return "map_id unknown"
        if not np.isin(cols["weather"], list(WEATHER_CODES.values())).all():
            return "weather code unknown"
        return None if np.isin(cols["on"], (0, 1)).all() else "on must be 0 or 1"
    if kind == "set_hazard":
        m = cols["map_id"].astype(np.int64)
        if ((m < 0) | (m >= st.n_maps)).any():
            return "map_id unknown"
        t = cols["hazard_type"].astype(np.int64)
        if ((t < 0) | (t >= st.n_htypes)).any():
            return "hazard_type unknown"
        it = cols["intensity"]
        if not ((it >= 0) & (it <= rules.hazard.intensity_max)).all():
            return "intensity outside [0, rules.hazard.intensity_max]"
        return None if np.isin(cols["on"], (0, 1)).all() else "on must be 0 or 1"
    if kind == "start_quest":
        if not np.isin(cols["quest_id"], st.quest_ids).all():
            return "quest_id unknown"
        return "char_id 0" if (cols["char_id"] == 0).any() else None
    if kind == "give_reward":
        z = cols["zeny"].astype(np.int64)
        a = cols["amount"].astype(np.int64)
        if ((z < 0) | (z > rules.actions.reward_zeny_max)).any():
            return f"zeny outside [0, reward_zeny_max={rules.actions.reward_zeny_max}]"
        if ((a < 0) | (a > rules.actions.reward_amount_max)).any():
            return f"amount outside [0, reward_amount_max={rules.actions.reward_amount_max}]"
        known = np.isin(cols["item_id"], st.item_ids) | ((cols["item_id"] == 0) & (a == 0))
        return None if known.all() else "item_id unknown"
    return f"unknown action kind {kind!r}"


def emit(world: object, kind: str, **cols: np.ndarray) -> None:
    """Check a batch of ``kind`` actions against the rules, then queue it for this tick."""
    st: Static = world.resources["midgard"]
    from norn.engine.actions import ACTION_SCHEMAS

    typed = {}
    for name, dt in ACTION_SCHEMAS[kind]:
        if name not in cols:
            raise InvalidAction(f"{kind}: missing column {name!r}")
        raw = np.atleast_1d(np.asarray(cols[name]))
        dt = np.dtype(dt)
        if dt.kind in "iu" and raw.size and raw.dtype.kind in "iu":
            info = np.iinfo(dt)
            if int(raw.min()) < info.min or int(raw.max()) > info.max:
                raise InvalidAction(f"{kind}.{name}: value outside {dt} range")
        typed[name] = np.ascontiguousarray(raw, dtype=dt)
    if len(typed) != len(cols):
        raise InvalidAction(f"{kind}: unknown columns {sorted(set(cols) - set(typed))}")
    n = {len(v) for v in typed.values()}
    if n == {0}:
        return
    problem = check(st, kind, typed)
    if problem is not None:
        raise InvalidAction(f"{kind}: {problem}")
    world.actions.add(kind, **typed)


def check_batch(st: Static, batch: ActionBatch) -> list[str]:
    """Every rule violation in an emitted batch (empty when all actions are valid)."""
    problems = []
    for kind, cols in batch.kinds.items():
        p = check(st, kind, {k: v for k, v in cols.items() if k != "action_id"})
        if p is not None:
            problems.append(f"tick {batch.tick} {kind}: {p}")
        ids = cols["action_id"]
        if len(ids) and (ids >> 24 != batch.tick).any():
            problems.append(f"tick {batch.tick} {kind}: action id from another tick")
    return problems
