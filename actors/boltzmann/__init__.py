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
over 16 MB and a second parallel launch). One kernel, parallel over blocks of agents
with disjoint outputs, counts each block's givers, places every block's messages with a
prefix sum, then adds each agent's gifts, lists the block's givers and draws their
receivers straight into the outbox rows ``Channel.reserve`` handed out, in agent order,
so the outbox is identical for any thread count.

Draws: ``uniform_index`` (multiply-shift) since issue 16; before, ``uniform_int``
(modulo), whose 64-bit division was a fifth of the tick. The two give different
receivers, so Boltzmann digests and final wealth changed with it (the model's update
semantics and statistics did not).

State layout: ``agent.wealth`` is int32 whenever agents x initial wealth fits in int32
(``wealth_dtype``; the 1M-agent benchmark's does), else int64. Since issue 16; before it
was always int64, so the digests of such Boltzmann runs changed with it (the wealth
values did not).
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
    fresh: bool,
    hwm: int,
    starts: np.ndarray,
    gen_or: np.ndarray,
    dst: np.ndarray,
    dst_gen: np.ndarray,
    src: np.ndarray,
    seq: np.ndarray,
) -> int:
    """Receive, give and draw, straight into the outbox, in two parallel passes over
    blocks of agents.

    Pass 1 counts each block's givers (live agents with wealth + gifts > 0) and ORs its
    generations (gen_or[b], nonzero once a slot was reused), unless ``fresh`` (the
    table knows slots [0, hwm) alive and never reused: ``Table.all_fresh``); a prefix sum turns the
    counts into ``starts``, each block's first message. Pass 2: wealth[i] += the gifts
    delivered to i (the inbox's ``counts``, when ``received``); every giver's wealth drops
    by one and its slot is written to ``src`` from starts[b] on, in agent order; then its
    receiver, uniform in [0, hwm), to ``dst``, its generation to ``dst_gen`` and 0 to
    ``seq``. ``dst``.. ``seq`` are the outbox rows ``Channel.reserve`` handed out (at least
    the number of givers). Returns the number of gifts. Integer adds only, and every block
    writes only its own rows: the result is the same for any thread count.

    Writing the outbox in place costs a second read of wealth and counts (pass 1),
    streaming and parallel; before, the givers and receivers went to scratch arrays and a
    serial kernel copied them into the outbox (issue 16: 1.3-2.3 ms of a 1M tick). The
    draws are a separate loop over the block's givers, so that it vectorizes the Philox
    rounds (``uniform_index`` is inlined); the giver loop itself cannot, since its write
    position depends on the rows before, and it stops at the block's last giver.
    """
    n_blocks = len(starts) - 1
    # Every loop runs over views of the block from 0: loops over range(lo, hi) of the
    # whole arrays did not vectorize (pass 1: 8 ms against 0.7; the draws: 7 against 2.7)
    for b in numba.prange(n_blocks):
        lo = b * BLOCK_ROWS
        hi = min(lo + BLOCK_ROWS, hwm)
        av = alive[lo:hi]
        wv = wealth[lo:hi]
        c = 0
        if received:
            cv = counts[lo:hi]
            for i in range(hi - lo):
                c += np.int64(av[i]) & np.int64(wv[i] + cv[i] > 0)
        else:
            for i in range(hi - lo):
                c += np.int64(av[i]) & np.int64(wv[i] > 0)
        g = np.uint32(0)
        if not fresh:  # else every generation is known to be 0: 4 MB not read at 1M
            gv = generation[lo:hi]
            for i in range(hi - lo):
                g |= gv[i]
        starts[b + 1] = c
        gen_or[b] = g
    starts[0] = 0
    reused = False
    for b in range(n_blocks):
        starts[b + 1] += starts[b]
        reused |= gen_or[b] != 0
    for b in numba.prange(n_blocks):
        lo = b * BLOCK_ROWS
        hi = min(lo + BLOCK_ROWS, hwm)
        k0 = starts[b]
        m = starts[b + 1] - k0
        av = alive[lo:hi]
        wv = wealth[lo:hi]
        sv = src[k0 : k0 + m]
        dv = dst[k0 : k0 + m]
        k = 0
        i = 0
        if received:
            cv = counts[lo:hi]
            while k < m:  # the block's givers: all m are found before i reaches hi - lo
                w = wv[i] + cv[i]
                give = av[i] & (w > 0)
                sv[k] = lo + i  # k < m: a later giver overwrites a non-giver's entry
                wv[i] = w - give
                k += give
                i += 1
            for r in range(i, hi - lo):  # no giver left: only receive
                wv[r] += cv[r]
        else:
            while k < m:
                w = wv[i]
                give = av[i] & (w > 0)
                sv[k] = lo + i
                wv[i] = w - give
                k += give
                i += 1
        for j in range(m):
            dv[j] = uniform_index(seed, tick, S_GIVE, sv[j], 0, hwm)
        ev = dst_gen[k0 : k0 + m]
        qv = seq[k0 : k0 + m]
        if reused:  # a random read per message: only once some slot was reused
            for j in range(m):
                ev[j] = generation[dv[j]]
        else:  # every generation is 0
            for j in range(m):
                ev[j] = 0
        for j in range(m):
            qv[j] = 0
    return starts[n_blocks]


def wealth_dtype(cfg: BoltzmannConfig) -> type:
    """int32 when the total wealth fits (no agent can hold more than all of it, gifts in
    flight included), else int64. Issue 16: half the bytes for the give pass to read and
    write and the digest to hash (the 1M-agent default: 4 MB instead of 8 a tick)."""
    return np.int32 if cfg.agents * cfg.wealth <= np.iinfo(np.int32).max else np.int64


class BoltzmannPlugin:
    """Adds the ``agent`` table, the ``gift`` channel and the ``boltzmann.give`` system."""

    name = "boltzmann"

    def __init__(self, cfg: BoltzmannConfig) -> None:
        self.cfg = cfg

    def build(self, world: World) -> None:
        cfg = self.cfg
        dtype = wealth_dtype(cfg)
        agent = world.add_table("agent", [Column("wealth", dtype)], cfg.agents)
        world.add_channel("gift", "agent", "agent", (), cfg.agents)
        agent.spawn(cfg.agents, wealth=np.full(cfg.agents, cfg.wealth, dtype))
        n_blocks = -(-cfg.agents // BLOCK_ROWS)
        # scratch, rebuilt with the world and never part of its state
        world.provide("boltzmann", {
            "cfg": cfg,
            "starts": np.zeros(n_blocks + 1, dtype=np.int64),
            "gen_or": np.zeros(n_blocks, dtype=np.uint32),
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
    channel = world.channels["gift"]
    rows = channel.reserve(hwm)  # at most one gift per agent; the unused rows go back
    n = take_gifts(world.stream_seed(), world.tick, agent.alive, wealth, inbox.counts(),
                   len(inbox) > 0, agent["generation"], agent.all_fresh(hwm), hwm,
                   scratch["starts"],
                   scratch["gen_or"], rows["dst"], rows["dst_gen"], rows["src"], rows["seq"])
    channel.release(hwm - int(n))


def settled_wealth(world: World) -> np.ndarray:
    """Wealth per agent slot with the gifts in flight added to their receivers."""
    agent = world.tables["agent"]
    pending = world.channels["gift"].pending()
    w = agent["wealth"][: agent.hwm].astype(np.int64)
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
