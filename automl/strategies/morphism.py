"""Pareto-front evolution by network morphism (Joint-DetNAS's search loop, PAPERS.md §3).

The first ``population`` trials are random individuals (trained from scratch by the estimator), and so
is any later trial asked for while no trial has completed yet. After that, each trial picks a parent
uniformly from the current Pareto front of the completed trials and applies one morph: the space's
builder's own morphism when it registers one (``automl.morphisms``, e.g. detnas: add/remove a block,
move a downsampling position, widen/narrow, prune, and with probability ``teacher_p`` a new
sub-teacher), else one generic mutation of the space. The proposal
names its parent's trial number and candidate key (``info``: ``parent``, ``parent_key``, ``action``),
so an estimator can start the child from the parent's weights instead of from scratch.

The front is over all completed trials, not an aging window: a morph never loses the best students
found so far (a choice; regularized evolution's aging is the alternative). Everything is recomputed
from the observations told, so a resumed study proposes what an uninterrupted one would have.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from automl.errors import ConfigError
from automl.registry import morphisms
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies
from automl.strategies.pareto import pareto_front

Morph = Callable[..., tuple[Config, str]]


@strategies.register("morphism-evolution")
class MorphismEvolution(Strategy):
    """Joint-DetNAS search: children are one network morph of a parent drawn from the Pareto front and
    inherit its weights. Options: ``population`` (random initial individuals, default 4) and
    ``teacher_p`` (probability that a morph also changes the teacher, default 0.3; passed to the
    builder's morphism)."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, population: int = 4, teacher_p: float = 0.3,
                 **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, **options)
        if population < 1:
            raise ConfigError(f"morphism-evolution needs population >= 1, got {population}")
        if not 0.0 <= teacher_p <= 1.0:
            raise ConfigError(f"morphism-evolution: teacher_p must be in [0, 1], got {teacher_p}")
        self.population = int(population)
        self.teacher_p = float(teacher_p)
        registered = morphisms.find(space.builder) if space.builder is not None else None
        self._morph: Morph | None = registered
        self.completed: list[Observation] = []

    def ask(self, number: int) -> Proposal:
        front = self.front()
        if number < self.population or not front:  # no parent yet (all running or failed): a random one
            return Proposal(self.novel(self.space.sample, number), info={"origin": "random"})
        select = np.random.default_rng([self.seed, number, 10**6])
        parent = front[int(select.integers(0, len(front)))]
        action = ""
        config: Config = parent.config
        for attempt in range(50):
            config, action = self._apply(parent.config, self.rng(number, attempt))
            key = self.space.key(config)
            if key not in self._seen:
                self._seen.add(key)
                break
        return Proposal(config, info={"origin": "morph", "parent": parent.number, "parent_key": parent.key,
                                      "action": action})

    def _apply(self, config: Config, rng: np.random.Generator) -> tuple[Config, str]:
        if self._morph is not None:
            return self._morph(self.space, config, rng, teacher_p=self.teacher_p)
        return self.space.mutate(config, rng), "mutate"

    def front(self) -> list[Observation]:
        """The completed trials that no other completed trial dominates, in trial order."""
        done = [(o, o.losses) for o in self.completed if o.losses is not None]
        return [done[i][0] for i in sorted(pareto_front([losses for _, losses in done]))] if done else []

    def tell(self, observation: Observation) -> None:
        if observation.state is TrialState.COMPLETE and observation.losses is not None:
            self.completed.append(observation)
