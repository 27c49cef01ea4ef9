"""The ``given`` strategy: evaluate a list of configs, each ``replicas`` times, then stop: what a
pipeline's ``train`` step runs (the incoming configs, trained at full budget over several seeds)."""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

from automl.errors import ConfigError
from automl.space.model import SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, strategies


@strategies.register("given")
class Given(Strategy):
    """Evaluates the given configs (option ``configs``), each ``replicas`` times (different trial seeds),
    at ``budget`` (default the study's maximum); ``info`` is attached to every trial."""

    plans_own_budget: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int, budget: Budget | None = None,
                 *, configs: Sequence[Mapping[str, Any]] = (), replicas: int = 1, at: float | None = None,
                 info: Mapping[str, Any] | None = None) -> None:
        super().__init__(space, objectives, seed, budget)
        if not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(f"given: replicas must be an integer >= 1, got {replicas!r}", field="replicas")
        for i, config in enumerate(configs):
            problems = space.problems(dict(config))
            if problems:
                raise ConfigError(f"given: configs[{i}] is not a config of the space: {'; '.join(problems)}",
                                  field="configs")
        self.configs = [dict(c) for c in configs]
        self.replicas, self.at, self.info = replicas, at, dict(info or {})
        self.asked = 0

    def ask(self, number: int) -> Proposal | None:
        if self.asked >= len(self.configs) * self.replicas:
            return None
        index, replica = divmod(self.asked, self.replicas)
        self.asked += 1
        return Proposal(self.configs[index], self.at, {**self.info, "given": index, "replica": replica})

    def tell(self, observation: Observation) -> None:
        """Nothing to learn: the list is fixed."""

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        super().restore(history, pending)
        self.asked = sum(1 for o in [*history, *pending] if "given" in o.info)
