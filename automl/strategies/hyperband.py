"""Multi-fidelity schedulers: successive halving, Hyperband (synchronous) and ASHA (asynchronous),
each composed with a searcher; ``bohb`` is Hyperband with the KDE searcher.

Scheduler state is derived from the observations alone (each trial's ``info`` records its bracket
iteration and rung), so a resumed study rebuilds brackets mid-way and continues them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from automl.errors import ConfigError
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies
from automl.strategies.kde import KDESearcher
from automl.strategies.searchers import RandomSearcher, Searcher


@dataclass(frozen=True)
class Rung:
    """``n`` configurations evaluated at ``budget``."""

    n: int
    budget: float


def max_brackets(min_budget: float, max_budget: float, eta: float) -> int:
    """s_max + 1: the number of distinct brackets (Li et al. 2017: s_max = floor(log_eta(R)))."""
    return int(math.floor(math.log(max_budget / min_budget) / math.log(eta) + 1e-9)) + 1


def bracket(s: int, min_budget: float, max_budget: float, eta: float) -> list[Rung]:
    """The rungs of Hyperband's bracket ``s``: n = ceil((s_max+1)/(s+1) * eta^s) configs at R*eta^-s."""
    s_max = max_brackets(min_budget, max_budget, eta) - 1
    n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s - 1e-9))
    return [Rung(n=int(math.floor(n * eta ** -i + 1e-9)), budget=max(min_budget, max_budget / eta ** (s - i)))
            for i in range(s + 1)]


def rung_budgets(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """ASHA's rung budgets: max * eta^-k for k = s_max..0 (smallest first)."""
    s_max = max_brackets(min_budget, max_budget, eta) - 1
    return [max(min_budget, max_budget / eta ** (s_max - k)) for k in range(s_max + 1)]


def _loss(observation: Observation) -> float:
    if observation.state is TrialState.COMPLETE and observation.losses:
        return observation.losses[0]
    return math.inf


@dataclass
class _Iteration:
    """One run of a bracket: which configs sit at which rung, with their losses once known."""

    index: int
    rungs: list[Rung]
    members: list[dict[str, tuple[Config, float | None, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.members = [{} for _ in self.rungs]

    def complete(self, k: int) -> bool:
        return len(self.members[k]) >= self.rungs[k].n and all(v[1] is not None for v in self.members[k].values())

    def promotable(self, k: int) -> list[tuple[str, Config]]:
        """The best rung[k+1].n configs of the finished rung ``k`` (ties broken by trial number)."""
        ranked = sorted(self.members[k].items(), key=lambda item: (item[1][1], item[1][2]))
        return [(key, config) for key, (config, _, _) in ranked[: self.rungs[k + 1].n]]

    def next_run(self) -> tuple[int, Config | None, str | None] | None:
        """(rung, config to promote or None for a new one, key) or None if waiting/finished."""
        if len(self.members[0]) < self.rungs[0].n:
            return 0, None, None
        for k in range(len(self.rungs) - 1):
            if not self.complete(k):
                return None
            for key, config in self.promotable(k):
                if key not in self.members[k + 1]:
                    return k + 1, config, key
        return None

    @property
    def finished(self) -> bool:
        return self.complete(len(self.rungs) - 1)


class _MultiFidelity(Strategy):
    """Shared set-up: a budget range, eta, the searcher."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, eta: float = 3, **options: Any) -> None:
        searcher_options = {k: options.pop(k) for k in list(options) if k in self.searcher_options}
        super().__init__(space, objectives, seed, budget, **options)
        if budget is None:
            raise ConfigError(f"strategy {self.name} needs a budget range: declare `budget:` in the space "
                              "or pass budget={'min': ..., 'max': ...} to create_study")
        if len(objectives) != 1:
            raise ConfigError(f"strategy {self.name} optimises one objective; the study has {len(objectives)}")
        if eta <= 1:
            raise ConfigError(f"eta must be > 1, got {eta}")
        if budget.max / budget.min < eta:
            raise ConfigError(f"budget range [{budget.min}, {budget.max}] is narrower than one eta={eta} step: "
                              "multi-fidelity needs max >= eta * min")
        self.eta = float(eta)
        self.min_budget, self.max_budget = float(budget.min), float(budget.max)
        self.searcher = self.make_searcher(space, **searcher_options)

    name: str = ""
    searcher_options: frozenset[str] = frozenset()

    def make_searcher(self, space: SearchSpace, **options: Any) -> Searcher:
        return RandomSearcher(space)

    def new_config(self, number: int) -> Config:
        return self.novel(self.searcher.suggest, number)

    def tell(self, observation: Observation) -> None:
        if observation.budget is not None:
            self.searcher.observe(observation.config, observation.budget, _loss(observation))


class _Synchronous(_MultiFidelity):
    """Brackets run to completion rung by rung; new iterations start when the open ones must wait."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iterations: dict[int, _Iteration] = {}

    def bracket_of(self, index: int) -> list[Rung]:
        raise NotImplementedError

    def _iteration(self, index: int) -> _Iteration:
        if index not in self.iterations:
            self.iterations[index] = _Iteration(index, self.bracket_of(index))
        return self.iterations[index]

    def ask(self, number: int) -> Proposal | None:
        for iteration in sorted(self.iterations.values(), key=lambda it: it.index):
            if iteration.finished:
                continue
            proposal = self._from(iteration, number)
            if proposal is not None:
                return proposal
        iteration = self._iteration(max(self.iterations, default=-1) + 1)
        return self._from(iteration, number)

    def _from(self, iteration: _Iteration, number: int) -> Proposal | None:
        run = iteration.next_run()
        if run is None:
            return None
        k, config, _ = run
        if config is None:
            config = self.new_config(number)
        key = self.space.key(config)
        iteration.members[k][key] = (config, None, number)
        return Proposal(config, budget=iteration.rungs[k].budget,
                        info={"iteration": iteration.index, "rung": k})

    def tell(self, observation: Observation) -> None:
        super().tell(observation)
        self._place(observation, _loss(observation))

    def _place(self, observation: Observation, loss: float | None) -> None:
        info = observation.info
        if "iteration" not in info:
            return  # a trial from another strategy in the same study: the searcher still learned from it
        iteration = self._iteration(int(info["iteration"]))
        iteration.members[int(info["rung"])][observation.key] = (observation.config, loss, observation.number)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        super().restore(history, ())
        for observation in pending:
            self._seen.add(observation.key)
            self._place(observation, None)


@strategies.register("hyperband")
class Hyperband(_Synchronous):
    """Hyperband (Li et al. 2017): successive-halving brackets s = s_max..0, cycled. Options: ``eta``."""

    name = "hyperband"

    def bracket_of(self, index: int) -> list[Rung]:
        s_max = max_brackets(self.min_budget, self.max_budget, self.eta) - 1
        return bracket(s_max - index % (s_max + 1), self.min_budget, self.max_budget, self.eta)


@strategies.register("successive-halving")
class SuccessiveHalving(_Synchronous):
    """Successive halving: the most aggressive Hyperband bracket, repeated. Options: ``eta``."""

    name = "successive-halving"

    def bracket_of(self, index: int) -> list[Rung]:
        s_max = max_brackets(self.min_budget, self.max_budget, self.eta) - 1
        return bracket(s_max, self.min_budget, self.max_budget, self.eta)


@strategies.register("bohb")
class BOHB(Hyperband):
    """BOHB (Falkner et al. 2018): Hyperband brackets, new configs from per-budget KDE models.
    Options: ``eta`` and the KDE's ``min_points_in_model``, ``top_n_percent``, ``num_samples``,
    ``random_fraction``, ``bandwidth_factor``, ``min_bandwidth``."""

    name = "bohb"
    searcher_options = frozenset({"min_points_in_model", "top_n_percent", "num_samples", "random_fraction",
                                  "bandwidth_factor", "min_bandwidth"})

    def make_searcher(self, space: SearchSpace, **options: Any) -> Searcher:
        return KDESearcher(space, **options)


@strategies.register("asha")
class ASHA(_MultiFidelity):
    """Asynchronous successive halving (Li et al. 2020): promote a config as soon as it is in the top
    1/eta of its rung, else start a new one at the lowest rung; workers never wait. Options: ``eta``."""

    name = "asha"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budgets = rung_budgets(self.min_budget, self.max_budget, self.eta)
        # rung -> key -> (config, loss or None while running, number)
        self.rungs: list[dict[str, tuple[Config, float | None, int]]] = [{} for _ in self.budgets]

    def ask(self, number: int) -> Proposal:
        for k in range(len(self.budgets) - 2, -1, -1):
            done = [(loss, n, key, config) for key, (config, loss, n) in self.rungs[k].items() if loss is not None]
            done.sort(key=lambda item: (item[0], item[1]))
            for loss, _, key, config in done[: int(len(done) // self.eta)]:
                if key not in self.rungs[k + 1] and math.isfinite(loss):
                    self.rungs[k + 1][key] = (config, None, number)
                    return Proposal(config, budget=self.budgets[k + 1], info={"rung": k + 1})
        config = self.new_config(number)
        self.rungs[0][self.space.key(config)] = (config, None, number)
        return Proposal(config, budget=self.budgets[0], info={"rung": 0})

    def tell(self, observation: Observation) -> None:
        super().tell(observation)
        self._place(observation, _loss(observation))

    def _place(self, observation: Observation, loss: float | None) -> None:
        if "rung" in observation.info:
            self.rungs[int(observation.info["rung"])][observation.key] = (observation.config, loss, observation.number)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        super().restore(history, ())
        for observation in pending:
            self._seen.add(observation.key)
            self._place(observation, None)
