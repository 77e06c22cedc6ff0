"""The Boltzmann wealth model as a Norn world: the peers' benchmark, through the engine.

Every agent with wealth > 0 gives one unit to an agent drawn uniformly from all agents
(itself included, as in mesa's and mesa-frames' benchmark models), every tick.

Update semantics are simultaneous: a gift sent in tick t is a message on the ``gift``
channel, delivered in tick t+1 and added to its receiver's wealth before anyone gives in
t+1, so whether an agent can give in a tick depends only on the state at the start of that
tick (with the gifts delivered to it), never on the order agents are visited. Between
ticks the gifts in flight are pending messages, part of the world's state; total wealth
is ``sum(wealth) + pending gifts`` and is conserved exactly.
``settled_wealth`` folds the gifts in flight back in, which is the state a one-step
simultaneous model (mesa-frames') shows after the same number of steps.

The model is written with the engine's general machinery only, so its speed is the
engine's: a table (``agent.wealth``), the counter RNG (``uniform_index`` keyed by seed,
tick, stream, agent slot, index 0), a channel filled through ``Channel.reserve`` views and
delivered by the engine's canonical sort, the inbox's per-destination counts, and the
two-level digest over the table and the pending messages. A gift carries no payload: it
is always exactly one unit, so the inbox count is the amount.

One system, ``boltzmann.give`` in the act phase, reads the inbox and writes the outbox:
receiving and giving read and write the same wealth column, so they are one pass over
the agents (issue 16: a separate receive system in the deliver phase cost a second pass
over 16 MB and a second parallel launch). A first kernel runs in parallel over blocks of
agents with disjoint outputs: it adds each agent's gifts, lists each block's givers and
draws their receivers; a prefix sum places every block's messages, and a second kernel,
on the calling thread, copies them into the outbox in agent order, so the outbox is
identical for any thread count.

Draws: ``uniform_index`` (multiply-shift) since issue 16; before, ``uniform_int``
(modulo), whose 64-bit division was a fifth of the tick. The two give different
receivers, so Boltzmann digests and final wealth changed with it (the model's update
semantics and statistics did not).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from norn.engine.config import format_validation_error, unknown_keys_message
from norn.engine.errors import ConfigError
from norn.engine.rng import register_stream, uniform_index
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
    seed: np.uint64,
    tick: int,
    alive: np.ndarray,
    wealth: np.ndarray,
    counts: np.ndarray,
    received: bool,
    generation: np.ndarray,
    hwm: int,
    givers: np.ndarray,
    drawn: np.ndarray,
    starts: np.ndarray,
    gen_or: np.ndarray,
) -> int:
    """Receive, give and draw, in one parallel pass over blocks of agents.

    wealth[i] += the gifts delivered to i (the inbox's ``counts``, when ``received``);
    then every live agent with wealth > 0 gives one unit: its wealth drops now, its slot
    is listed in ``givers`` and its receiver, uniform in [0, hwm), in ``drawn`` (block b
    lists into its own rows from b * BLOCK_ROWS, so the branch-free write never leaves
    the block). gen_or[b] is the OR of block b's generations (nonzero once a slot was
    reused). starts[b] becomes the index of block b's first message; returns the number
    of gifts. Integer adds only, and every block writes only its own rows: the result is
    the same for any thread count.

    The draws are a separate loop over the block's givers, so that it vectorizes the
    Philox rounds (``uniform_index`` is inlined); the giver loop itself cannot, since its
    write position depends on the rows before.
    """
    n_blocks = len(starts) - 1
    for b in numba.prange(n_blocks):
        lo = b * BLOCK_ROWS
        hi = min(lo + BLOCK_ROWS, hwm)
        c = lo
        g = np.uint32(0)
        if received:
            for i in range(lo, hi):
                w = wealth[i] + counts[i]
                give = alive[i] & (w > 0)
                givers[c] = i  # c <= i: a later giver overwrites a non-giver's entry
                wealth[i] = w - give
                c += give
                g |= generation[i]
        else:
            for i in range(lo, hi):
                w = wealth[i]
                give = alive[i] & (w > 0)
                givers[c] = i
                wealth[i] = w - give
                c += give
                g |= generation[i]
        gv = givers[lo:c]  # views from 0: a loop over them vectorizes (one over
        dv = drawn[lo:c]  # range(lo, c) of the whole arrays did not: 7 ms against 2.7)
        for j in range(c - lo):
            dv[j] = uniform_index(seed, tick, S_GIVE, gv[j], 0, hwm)
        starts[b + 1] = c - lo
        gen_or[b] = g
    starts[0] = 0
    for b in range(n_blocks):
        starts[b + 1] += starts[b]
    return starts[n_blocks]


@numba.njit(cache=True, nogil=True)
def send_gifts(
    generation: np.ndarray,
    reused: bool,
    givers: np.ndarray,
    drawn: np.ndarray,
    starts: np.ndarray,
    dst: np.ndarray,
    dst_gen: np.ndarray,
    src: np.ndarray,
    seq: np.ndarray,
) -> None:
    """Write the gifts as messages in giver order: every block's givers and receivers
    copied as whole slices (memory copies, on the calling thread: no fork-join).
    Generations are gathered only if some slot was ever reused, since a random read
    per message costs more than the rest of the kernel."""
    n_blocks = len(starts) - 1
    for b in range(n_blocks):
        lo = b * BLOCK_ROWS
        k0 = starts[b]
        m = starts[b + 1] - k0
        src[k0 : k0 + m] = givers[lo : lo + m]
        dst[k0 : k0 + m] = drawn[lo : lo + m]
    if reused:
        for k in range(len(dst)):
            dst_gen[k] = generation[dst[k]]
    else:  # every generation is 0, so the gather would read zeros
        dst_gen[:] = 0
    seq[:] = 0


class BoltzmannPlugin:
    """Adds the ``agent`` table, the ``gift`` channel and the ``boltzmann.give`` system."""

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
            "gen_or": np.zeros(n_blocks, dtype=np.uint32),
            "givers": np.zeros(agent.capacity, dtype=np.int32),
            "drawn": np.zeros(agent.capacity, dtype=np.int32),
        })
        world.add_system(
            "boltzmann.give",
            "act",
            give,
            reads=("agent.alive", "agent.generation", "in:gift"),
            writes=("agent.wealth", "out:gift"),
        )


def give(world: World) -> None:
    """Add each agent's gifts delivered this tick (the inbox count is the amount), then
    every agent with wealth > 0 sends one unit to a uniformly drawn agent."""
    agent = world.tables["agent"]
    scratch = world.resources["boltzmann"]
    inbox = world.channels["gift"].inbox
    wealth = agent["wealth"]
    stale = inbox.stale["src"]
    if len(stale):  # a receiver left before delivery: the unit goes back to its giver
        np.add.at(wealth, stale.astype(np.int64), 1)
    hwm = agent.hwm
    starts = scratch["starts"]
    gen_or = scratch["gen_or"]
    generation = agent["generation"]
    n = take_gifts(world.stream_seed(), world.tick, agent.alive, wealth, inbox.counts(),
                   len(inbox) > 0, generation, hwm, scratch["givers"], scratch["drawn"],
                   starts, gen_or)
    rows = world.channels["gift"].reserve(int(n))
    send_gifts(generation, bool(gen_or.any()), scratch["givers"], scratch["drawn"], starts,
               rows["dst"], rows["dst_gen"], rows["src"], rows["seq"])


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
