"""Mesa's Boltzmann wealth model, as mesa-frames' benchmark writes it, on mesa 3.

Semantics (mesa's, not Norn's): each step the agents are shuffled and activated one by
one; an agent with wealth > 0 gives one unit to an agent chosen uniformly from all agents
(itself included), and the receiver can pass it on later in the same step (sequential,
in-place updates). Its Gini coefficient therefore settles higher (about 0.63) than the
simultaneous models' (about 0.58). The benchmark kept the agents in a plain list
(``random.choice`` on it is O(1)); mesa 3 reserves ``Model.agents``, so the list is
``agent_list`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mesa
from _common import measure, parse_args


class MoneyAgent(mesa.Agent):
    def __init__(self, model: mesa.Model) -> None:
        super().__init__(model)
        self.wealth = 1

    def step(self) -> None:
        if self.wealth > 0:
            other = self.random.choice(self.model.agent_list)
            other.wealth += 1
            self.wealth -= 1


class MoneyModel(mesa.Model):
    def __init__(self, n: int, seed: int) -> None:
        super().__init__(seed=seed)
        self.agent_list = [MoneyAgent(self) for _ in range(n)]

    def step(self) -> None:
        self.random.shuffle(self.agent_list)
        for agent in self.agent_list:
            agent.step()


def main() -> None:
    args = parse_args()
    measure(
        "mesa",
        args,
        lambda n, seed: MoneyModel(n, seed),
        lambda m: m.step(),
        lambda m: [a.wealth for a in m.agent_list],
        ("mesa", "numpy"),
    )


if __name__ == "__main__":
    main()
