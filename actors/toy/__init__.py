"""The toy world: a small model that exercises every engine seam.

Walkers wander a square field, give coins to each other (messages, delivered next tick),
ponder when two choices are nearly equal (decision requests to the resolver), are
despawned and respawned (generations), react to login events, and announce themselves
(world actions). It is the engine's own test and demo model, independent of the
Rune-Midgarts world, and it holds no state outside its tables.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from norn.engine.config import format_validation_error, unknown_keys_message
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream, uniform, uniform_int
from norn.engine.scenario import Model, Scenario
from norn.engine.table import Column
from norn.engine.world import World

S_WANDER = register_stream("toy.wander")
S_GIVE = register_stream("toy.give")
S_CHURN = register_stream("toy.churn")

DECISION_REST = 1


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    walkers: int = Field(1000, ge=1, le=1 << 22)
    capacity: int = Field(1200, ge=1, le=1 << 22)
    field_size: float = Field(256.0, gt=0)
    coins: int = Field(10, ge=0, le=1_000_000)
    step_size: float = Field(1.5, gt=0)
    churn_every: int = Field(10, ge=1)
    churn_count: int = Field(5, ge=0)
    ponder_margin: float = Field(0.02, ge=0, le=1)
    deadline_ticks: int = Field(3, ge=1, le=600)


@numba.njit(cache=True, nogil=True)
def wander_kernel(seed, tick, alive, x, y, mood, resting, step_size, size):
    for i in range(len(x)):
        if not alive[i] or resting[i]:
            continue
        dx = (uniform(seed, tick, S_WANDER, i, 0) - 0.5) * 2.0 * step_size
        dy = (uniform(seed, tick, S_WANDER, i, 1) - 0.5) * 2.0 * step_size
        x[i] = min(max(x[i] + np.float32(dx), np.float32(0.0)), np.float32(size))
        y[i] = min(max(y[i] + np.float32(dy), np.float32(0.0)), np.float32(size))
        mood[i] = np.float32(0.95) * mood[i] + np.float32(
            0.05 * uniform(seed, tick, S_WANDER, i, 2)
        )


@numba.njit(cache=True, nogil=True)
def give_kernel(seed, tick, alive, generation, coins, hwm, dst, dst_gen, src):
    """Each walker with coins gives one to a uniformly chosen slot; returns the count."""
    n = 0
    for i in range(hwm):
        if alive[i] and coins[i] > 0:
            j = uniform_int(seed, tick, S_GIVE, i, 0, hwm)
            if alive[j] and j != i:
                coins[i] -= 1
                dst[n] = j
                dst_gen[n] = generation[j]
                src[n] = i
                n += 1
    return n


def _receive(world: World) -> None:
    t = world.tables["walker"]
    inbox = world.channels["gift"].inbox
    if len(inbox):
        t["coins"][:] += inbox.sum("amount")
    lost = inbox.stale["amount"]
    if len(lost):  # the receiver left before delivery: the coins go to the world's sink
        world.tables["bank"]["sunk"][0] += int(lost.sum())


def _wander(world: World) -> None:
    t = world.tables["walker"]
    cfg: ToyConfig = world.resources["toy"]
    wander_kernel(
        world.stream_seed(),
        world.tick,
        t.alive,
        t["x"],
        t["y"],
        t["mood"],
        t["resting"],
        cfg.step_size,
        cfg.field_size,
    )


def _give(world: World) -> None:
    t = world.tables["walker"]
    ch = world.channels["gift"]
    rows = ch.reserve(t.hwm)
    n = give_kernel(
        world.stream_seed(),
        world.tick,
        t.alive,
        t["generation"],
        t["coins"],
        t.hwm,
        rows["dst"],
        rows["dst_gen"],
        rows["src"],
    )
    rows["seq"][:n] = 0
    rows["amount"][:n] = 1
    ch.release(t.hwm - n)


def _ponder(world: World) -> None:
    """Walkers whose rest/go utilities are within the margin ask the resolver."""
    t = world.tables["walker"]
    cfg: ToyConfig = world.resources["toy"]
    slots = t.live_slots()
    mood = t["mood"][slots]
    go, rest = mood, np.float32(1.0) - mood
    close = np.abs(go - rest) < cfg.ponder_margin
    close &= t["pondering"][slots] == 0
    s = slots[close]
    if not len(s):
        return
    ctx = np.stack([go[close], rest[close]], axis=1)
    options = np.tile(np.array([[0, 1]], dtype=np.int16), (len(s), 1))
    world.decisions.request(
        world.tick, DECISION_REST, t.handles(s), options, 2, 0, ctx, cfg.deadline_ticks
    )
    t["pondering"][s] = 1


def _apply_decisions(world: World) -> None:
    t = world.tables["walker"]
    applied = world.decisions.applied
    mine = applied[applied["kind"] == DECISION_REST]
    if not len(mine):
        return
    current = t.is_current(mine["actor"])  # the actor may have been despawned meanwhile
    slots = (mine["actor"][current] & 0xFFFFFFFF).astype(np.int64)
    t["resting"][slots] = mine["option"][current].astype(np.uint8)
    t["pondering"][slots] = 0


def _churn(world: World) -> None:
    """Every few ticks a few walkers leave and newcomers arrive (spawn/despawn, ids)."""
    cfg: ToyConfig = world.resources["toy"]
    if world.tick % cfg.churn_every or not cfg.churn_count:
        return
    t = world.tables["walker"]
    live = t.live_slots()
    k = min(cfg.churn_count, len(live))
    if k:
        from norn.engine.rng import uniform_int_array

        pick = uniform_int_array(
            world.seed, world.tick, S_CHURN, np.arange(k, dtype=np.int64), len(live)
        )
        leaving = np.unique(live[pick])
        # coins of leavers go to the world's sink so the total stays accountable
        world.tables["bank"]["sunk"][0] += int(t["coins"][leaving].sum())
        t["coins"][leaving] = 0
        t.despawn(t.handles(leaving))
        world.actions.add("despawn_npc", npc_id=t.handles(leaving))
    room = t.declared_capacity - t.count - k
    born = min(cfg.churn_count, max(room, 0))
    if born:
        pos = np.float32(cfg.field_size / 2)
        handles = t.spawn(
            born,
            x=np.full(born, pos, np.float32),
            y=np.full(born, pos, np.float32),
            coins=np.full(born, cfg.coins, np.int64),
            mood=np.full(born, 0.5, np.float32),
        )
        world.tables["bank"]["minted"][0] += born * cfg.coins
        world.actions.add(
            "spawn_npc",
            npc_id=handles,
            map_id=np.zeros(born, np.int16),
            x=np.full(born, int(pos), np.int16),
            y=np.full(born, int(pos), np.int16),
            sprite=np.full(born, 111, np.int16),
        )


def _greet(world: World) -> None:
    """Players who log in get a broadcast; their count is kept in the bank row."""
    logins = world.events["login"]
    n = len(logins["char_id"])
    if n:
        world.tables["bank"]["logins"][0] += n
        world.tables["bank"]["levels"][0] += int(logins["base_level"].astype(np.int64).sum())
        world.actions.add(
            "broadcast",
            map_id=logins["map_id"],
            text=np.full(n, b"Welcome to the toy field", dtype="S255"),
        )


class ToyPlugin:
    name = "toy"

    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg

    def build(self, world: World) -> None:
        cfg = self.cfg
        world.provide("toy", cfg)
        world.consumes("login")
        world.emits("spawn_npc", "despawn_npc", "broadcast")
        walker = world.add_table(
            "walker",
            [
                Column("x", np.float32),
                Column("y", np.float32),
                Column("coins", np.int64),
                Column("mood", np.float32, (), 0.5),
                Column("resting", np.uint8),
                Column("pondering", np.uint8),
            ],
            cfg.capacity,
        )
        bank = world.add_table(
            "bank",
            [
                Column("minted", np.int64),
                Column("sunk", np.int64),
                Column("logins", np.int64),
                Column("levels", np.int64),
            ],
            1,
        )
        world.add_channel("gift", "walker", "walker", (("amount", np.int64),), walker.capacity)
        # initial population: deterministic positions on a grid
        n = cfg.walkers
        side = int(np.ceil(np.sqrt(n)))
        idx = np.arange(n)
        walker.spawn(
            n,
            x=((idx % side) * cfg.field_size / side).astype(np.float32),
            y=((idx // side) * cfg.field_size / side).astype(np.float32),
            coins=np.full(n, cfg.coins, np.int64),
        )
        bank.spawn(1, minted=np.array([n * cfg.coins], np.int64))
        world.add_system(
            "toy.greet",
            "ingest",
            _greet,
            reads=("events",),
            writes=("bank.logins", "bank.levels", "actions"),
        )
        world.add_system(
            "toy.receive",
            "deliver",
            _receive,
            reads=("in:gift",),
            writes=("walker.coins", "bank.sunk"),
        )
        world.add_system(
            "toy.wander",
            "act",
            _wander,
            reads=("walker.resting",),
            writes=("walker.x", "walker.y", "walker.mood"),
        )
        world.add_system(
            "toy.give", "act", _give, writes=("walker.coins", "out:gift"), after=("toy.wander",)
        )
        world.add_system(
            "toy.ponder",
            "act",
            _ponder,
            reads=("walker.mood",),
            writes=("walker.pondering", "decisions"),
            after=("toy.wander",),
        )
        world.add_system(
            "toy.apply_rest",
            "apply",
            _apply_decisions,
            reads=("decisions",),
            writes=("walker.resting", "walker.pondering"),
        )
        world.add_system(
            "toy.churn",
            "apply",
            _churn,
            writes=("walker.*", "bank.sunk", "bank.minted", "actions"),
            after=("toy.apply_rest",),
        )


def parse_config(data: dict[str, Any], source: str) -> ToyConfig:
    try:
        return ToyConfig(**data.get("toy", {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{source}: [toy]", ToyConfig)) from None


def build_world(world: World, scenario: Scenario) -> None:
    allowed = ("name", "model", "toy", "description")
    unknown = set(scenario.data) - set(allowed)
    if unknown:
        raise ConfigError(unknown_keys_message(scenario.source, unknown, allowed))
    world.add_plugin(ToyPlugin(parse_config(scenario.data, scenario.source)))


def login_batches(seed: int, tick: int, source: str = "gen") -> list:
    """A deterministic trickle of login events for tests and the toy demo."""
    from norn.engine.inputs import InputBatch

    if tick % 3:
        return []
    n = 1 + (seed + tick) % 4
    base = 150000 + tick * 10
    cols = {
        "char_id": np.arange(base, base + n, dtype=np.uint32),
        "account_id": np.arange(2000000 + tick * 10, 2000000 + tick * 10 + n, dtype=np.uint32),
        "map_id": np.zeros(n, np.int16),
        "x": np.full(n, 10, np.int16),
        "y": np.full(n, 12, np.int16),
        "base_level": ((np.arange(n) + tick) % 99 + 1).astype(np.int16),
    }
    return [InputBatch(source, tick, "login", cols)]


def make_event_source(data: dict[str, Any], seed: int):
    """Events for ``norn run`` when no bridge is serving: the deterministic login trickle."""
    return lambda tick: login_batches(seed, tick)


#: The toy model (entry point group ``norn.models``).
MODEL = Model("toy", build_world, make_event_source=make_event_source)
