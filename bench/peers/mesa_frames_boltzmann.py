"""mesa-frames' Boltzmann wealth model (its benchmark's concise Polars agent set).

Semantics: simultaneous within a step, like Norn's model: the agents with wealth > 0 are
selected, receivers are sampled with replacement from all agents, every selected agent
gives one unit and every receiver gets its count, all from the state at the start of the
step.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import polars as pl
from _common import measure, parse_args
from mesa_frames import AgentSetPolars, ModelDF


class MoneyAgents(AgentSetPolars):
    def __init__(self, n: int, model: ModelDF) -> None:
        super().__init__(model)
        self += pl.DataFrame(
            {"unique_id": pl.arange(n, eager=True), "wealth": pl.ones(n, eager=True)}
        )

    def step(self) -> None:
        self.do("give_money")

    def give_money(self) -> None:
        self.select(self.wealth > 0)
        receivers = self.agents.sample(n=len(self.active_agents), with_replacement=True)
        self["active", "wealth"] -= 1
        income = receivers.group_by("unique_id").len()
        self[income, "wealth"] += income["len"]


class MoneyModel(ModelDF):
    def __init__(self, n: int, seed: int) -> None:
        super().__init__(seed=seed)
        self.agents += MoneyAgents(n, self)

    def step(self) -> None:
        self.agents.do("step")


def wealth(model: MoneyModel) -> np.ndarray:
    """Every agent's wealth (polars keeps it as float64 from ``pl.ones``; values are whole)."""
    series = model.agents["wealth"].values()  # one Series per agent set
    return np.rint(np.concatenate([s.to_numpy() for s in series])).astype(np.int64)


def main() -> None:
    args = parse_args()
    measure(
        "mesa-frames",
        args,
        lambda n, seed: MoneyModel(n, seed),
        lambda m: m.step(),
        wealth,
        ("mesa-frames", "polars", "numpy", "pandas"),
    )


if __name__ == "__main__":
    main()
