"""The Boltzmann wealth model as a Norn world: the peers' benchmark, through the engine.

Every agent with wealth > 0 gives one unit to an agent drawn uniformly from all agents
(itself included, as in mesa's and mesa-frames' benchmark models), every tick.

Update semantics are simultaneous: a gift sent in tick t is a message on the ``gift``
channel and is received in the deliver phase of tick t+1, so whether an agent can give in
a tick depends only on the state at the start of that tick, never on the order agents are
visited. Between ticks the gifts in flight are pending messages, part of the world's
state; total wealth is ``sum(wealth) + pending gifts`` and is conserved exactly.
``settled_wealth`` folds the gifts in flight back in, which is the state a one-step
simultaneous model (mesa-frames') shows after the same number of steps.

The model is written with the engine's general machinery only, so its speed is the
engine's: a table (``agent.wealth``), the counter RNG (``uniform_int`` keyed by seed, tick,
stream, agent slot, index 0), a channel filled through ``Channel.reserve`` views and
delivered by the engine's canonical sort, the inbox's per-destination counts, and the
two-level digest over the table and the pending messages. A gift carries no payload: it
is always exactly one unit, so the inbox count is the amount.

The give kernels run in parallel over blocks of agents with disjoint outputs: a first
pass lists each block's givers, a prefix sum places every block's messages, and a second
pass writes them in agent order, so the outbox is identical for any thread count.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from norn.engine.config import format_validation_error, unknown_keys_message
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream, uniform_int
from norn.engine.scenario import Model, Scenario
from norn.engine.table import Column
from norn.engine.world import World

S_GIVE = register_stream("boltzmann.give")

#: agents per block in the parallel give kernel; the result does not depend on it
BLOCK_ROWS = 1 << 14


class BoltzmannConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: int = Field(1000, ge=1, le=1 << 22)
    wealth: int = Field(1, ge=0, le=1 << 20)


@numba.njit(cache=True, nogil=True, parallel=True)
def take_gifts(
    alive: np.ndarray, wealth: np.ndarray, hwm: int, givers: np.ndarray, starts: np.ndarray
) -> int:
    """Every live agent with wealth > 0 gives one unit: its wealth drops now, and its slot
    is listed in ``givers`` (block b lists into its own rows from b * BLOCK_ROWS, so the
    branch-free write never leaves the block). starts[b] becomes the index of block b's
    first message; returns the number of gifts."""
    n_blocks = len(starts) - 1
    for b in numba.prange(n_blocks):
        lo = b * BLOCK_ROWS
        hi = min(lo + BLOCK_ROWS, hwm)
        c = lo
        for i in range(lo, hi):
            give = alive[i] & (wealth[i] > 0)
            givers[c] = i  # c <= i: a later giver overwrites a non-giver's entry
            wealth[i] -= give
            c += give
        starts[b + 1] = c - lo
    starts[0] = 0
    for b in range(n_blocks):
        starts[b + 1] += starts[b]
    return starts[n_blocks]


@numba.njit(cache=True, nogil=True, parallel=True)
def send_gifts(
    seed: np.uint64,
    tick: int,
    generation: np.ndarray,
    hwm: int,
    givers: np.ndarray,
    starts: np.ndarray,
    dst: np.ndarray,
    dst_gen: np.ndarray,
    src: np.ndarray,
    seq: np.ndarray,
) -> None:
    """Write the gifts as messages in giver order, each to a uniform slot in [0, hwm).

    Loops shaped for speed (measured at 1M agents): the receivers are drawn in a flat
    loop over the messages, which vectorizes the Philox rounds (a loop nested in the
    block loop does not); generations are gathered only if some slot was ever reused,
    since a random read per message costs more than the rest of the kernel. Every
    iteration writes only its own rows.
    """
    n_blocks = len(starts) - 1
    for b in numba.prange(n_blocks):
        lo = b * BLOCK_ROWS
        k0 = starts[b]
        for k in range(k0, starts[b + 1]):
            src[k] = givers[lo + k - k0]
    m = len(dst)
    for k in numba.prange(m):
        dst[k] = uniform_int(seed, tick, S_GIVE, src[k], 0, hwm)
    reused = False
    for i in range(hwm):
        reused |= generation[i] != 0
    if reused:
        for k in numba.prange(m):
            dst_gen[k] = generation[dst[k]]
            seq[k] = 0
    else:  # every generation is 0, so the gather would read zeros
        for k in numba.prange(m):
            dst_gen[k] = 0
            seq[k] = 0


@numba.njit(cache=True, nogil=True, parallel=True)
def add_counts(wealth: np.ndarray, offsets: np.ndarray) -> None:
    """wealth[d] += number of gifts delivered to d (``Inbox.counts()`` without a temporary)."""
    for d in numba.prange(len(offsets) - 1):  # each d writes only wealth[d]
        wealth[d] += offsets[d + 1] - offsets[d]


class BoltzmannPlugin:
    """Adds the ``agent`` table, the ``gift`` channel and the give/receive systems."""

    name = "boltzmann"

    def __init__(self, cfg: BoltzmannConfig) -> None:
        self.cfg = cfg

    def build(self, world: World) -> None:
        cfg = self.cfg
        agent = world.add_table("agent", [Column("wealth", np.int64)], cfg.agents)
        world.add_channel("gift", "agent", "agent", (), cfg.agents)
        agent.spawn(cfg.agents, wealth=np.full(cfg.agents, cfg.wealth, np.int64))
        n_blocks = -(-cfg.agents // BLOCK_ROWS)
        # scratch, rebuilt with the world and never part of its state
        world.provide("boltzmann", {
            "cfg": cfg,
            "starts": np.zeros(n_blocks + 1, dtype=np.int64),
            "givers": np.zeros(agent.capacity, dtype=np.int32),
        })
        world.add_system(
            "boltzmann.receive",
            "deliver",
            receive,
            reads=("in:gift",),
            writes=("agent.wealth",),
        )
        world.add_system(
            "boltzmann.give",
            "act",
            give,
            reads=("agent.alive", "agent.generation"),
            writes=("agent.wealth", "out:gift"),
        )


def receive(world: World) -> None:
    """Add each agent's gifts delivered this tick (the inbox count is the amount)."""
    agent = world.tables["agent"]
    inbox = world.channels["gift"].inbox
    if len(inbox):
        add_counts(agent["wealth"], inbox.offsets)
    stale = inbox.stale["src"]
    if len(stale):  # a receiver left before delivery: the unit goes back to its giver
        np.add.at(agent["wealth"], stale.astype(np.int64), 1)


def give(world: World) -> None:
    """Every agent with wealth > 0 sends one unit to a uniformly drawn agent."""
    agent = world.tables["agent"]
    scratch = world.resources["boltzmann"]
    hwm = agent.hwm
    starts = scratch["starts"]
    n = take_gifts(agent.alive, agent["wealth"], hwm, scratch["givers"], starts)
    rows = world.channels["gift"].reserve(int(n))
    send_gifts(
        world.stream_seed(),
        world.tick,
        agent["generation"],
        hwm,
        scratch["givers"],
        starts,
        rows["dst"],
        rows["dst_gen"],
        rows["src"],
        rows["seq"],
    )


def settled_wealth(world: World) -> np.ndarray:
    """Wealth per agent slot with the gifts in flight added to their receivers."""
    agent = world.tables["agent"]
    pending = world.channels["gift"].pending()
    w = agent["wealth"][: agent.hwm].copy()
    w += np.bincount(pending["dst"], minlength=agent.hwm)[: agent.hwm]
    return w


def total_wealth(world: World) -> int:
    """Conserved quantity: wealth held plus units in flight."""
    agent = world.tables["agent"]
    return int(agent["wealth"][: agent.hwm].sum()) + int(world.channels["gift"].count)


def gini(wealth: np.ndarray) -> float:
    """Gini coefficient of non-negative integer wealth (exact integer sums, then one divide)."""
    w = np.sort(np.asarray(wealth, dtype=np.int64), kind="stable")
    n = len(w)
    total = int(w.sum())
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.int64)
    weighted = int((ranks * w).sum())  # fits: n * total < 2**63 for the sizes used here
    return (2.0 * weighted) / (n * total) - (n + 1) / n


def parse_config(data: dict[str, Any], source: str) -> BoltzmannConfig:
    try:
        return BoltzmannConfig(**data.get("boltzmann", {}))
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, f"{source}: [boltzmann]", BoltzmannConfig)
        ) from None


def build_world(world: World, scenario: Scenario) -> None:
    """Build the Boltzmann world (the model's ``build_world``)."""
    allowed = ("name", "model", "boltzmann", "description")
    unknown = set(scenario.data) - set(allowed)
    if unknown:
        raise ConfigError(unknown_keys_message(scenario.source, unknown, allowed))
    world.add_plugin(BoltzmannPlugin(parse_config(scenario.data, scenario.source)))


def scenario_text(agents: int, wealth: int = 1) -> str:
    """A scenario TOML for ``agents`` agents (benchmarks build worlds of any size)."""
    return (
        'name = "boltzmann"\nmodel = "boltzmann"\n'
        f"[boltzmann]\nagents = {agents}\nwealth = {wealth}\n"
    )


#: The Boltzmann wealth model (entry point group ``norn.models``).
MODEL = Model("boltzmann", build_world)
