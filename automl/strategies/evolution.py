"""Regularized (aging) evolution, Real et al. 2019: tournament selection over a sliding population.

With several objectives the tournament winner is drawn from the sample's Pareto front.
Failed and infeasible trials stay in the population as the worst members, so that the search moves
away from them.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np

from automl.errors import ConfigError
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies
from automl.strategies.pareto import nondominated_ranks


@strategies.register("evolution")
class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution with tournament selection; Pareto tournaments with several
    objectives. Options: ``population`` (default 20) and ``tournament`` (sample size, default 5)."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, population: int = 20, tournament: int = 5,
                 **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, **options)
        if population < 2 or not 1 <= tournament <= population:
            raise ConfigError(f"evolution needs population >= 2 and 1 <= tournament <= population, "
                              f"got population={population}, tournament={tournament}")
        self.population_size = population
        self.tournament = tournament
        self.population: deque[Observation] = deque(maxlen=population)

    def ask(self, number: int) -> Proposal:
        if len(self.population) < self.population_size:
            return Proposal(self.novel(self.space.sample, number), info={"origin": "random"})
        parent = self._select(np.random.default_rng([self.seed, number, 10**6]))
        child = self.novel(lambda rng: self._mutate(parent.config, rng), number)
        return Proposal(child, info={"origin": "mutation", "parent": parent.number})

    def _mutate(self, config: Config, rng: np.random.Generator) -> Config:
        """One mutation of a parent (a subclass may bias it: op-evolution draws new ops by priority)."""
        return self.space.mutate(config, rng)

    def _select(self, rng: np.random.Generator) -> Observation:
        members = list(self.population)
        picks = rng.choice(len(members), size=self.tournament, replace=False)
        sample: list[Observation] = [members[i] for i in picks]
        worst = (float("inf"),) * max(1, len(self.objectives))
        losses = [m.losses if m.state is TrialState.COMPLETE and m.losses else worst for m in sample]
        ranks = nondominated_ranks(losses)
        best = [m for m, r in zip(sample, ranks) if r == 0]
        if len(self.objectives) <= 1:
            return min(best, key=lambda m: (m.losses or worst, m.number))
        return best[int(rng.integers(0, len(best)))]

    def tell(self, observation: Observation) -> None:
        self.population.append(observation)
