"""Multi-fidelity schedulers: successive halving, Hyperband (synchronous) and ASHA (asynchronous),
each composed with a searcher; ``bohb`` is Hyperband with the KDE searcher.

With several objectives a rung promotes by non-dominated sorting, crowding distance, then trial number
(:func:`automl.strategies.mo_ranking.promotion_order`; with one objective that is the best loss first);
``mo-asha`` and ``mo-hyperband`` are ASHA and Hyperband that insist on two or more objectives.

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
from automl.strategies.mo_ranking import promotion_order
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


Losses = tuple[float, ...]


def _losses(observation: Observation, n_objectives: int) -> Losses:
    """The observation's losses; infinity in every objective unless it completed."""
    if observation.state is TrialState.COMPLETE and observation.losses:
        return tuple(float(x) for x in observation.losses)
    return (math.inf,) * n_objectives


def _ranked(entries: dict[str, tuple[Config, Losses | None, int]]) -> list[tuple[str, Config, Losses]]:
    """A rung's finished entries, best first (:func:`promotion_order`)."""
    done = [(key, config, losses, n) for key, (config, losses, n) in entries.items() if losses is not None]
    order = promotion_order([d[2] for d in done], [d[3] for d in done])
    return [(done[i][0], done[i][1], done[i][2]) for i in order]


@dataclass
class _Iteration:
    """One run of a bracket: which configs sit at which rung, with their losses once known."""

    index: int
    rungs: list[Rung]
    members: list[dict[str, tuple[Config, Losses | None, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.members = [{} for _ in self.rungs]

    def complete(self, k: int) -> bool:
        return len(self.members[k]) >= self.rungs[k].n and all(v[1] is not None for v in self.members[k].values())

    def promotable(self, k: int) -> list[tuple[str, Config]]:
        """The best rung[k+1].n configs of the finished rung ``k`` (:func:`promotion_order`)."""
        return [(key, config) for key, config, _ in _ranked(self.members[k])[: self.rungs[k + 1].n]]

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
    """Shared set-up: a budget range, eta, the searcher; any number of objectives (at least
    ``min_objectives``)."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, eta: float = 3, **options: Any) -> None:
        searcher_options = {k: options.pop(k) for k in list(options) if k in self.searcher_options}
        super().__init__(space, objectives, seed, budget, **options)
        if budget is None:
            raise ConfigError(f"strategy {self.name} needs a budget range: declare `budget:` in the space "
                              "or pass budget={'min': ..., 'max': ...} to create_study")
        if len(objectives) < self.min_objectives:
            names = ", ".join(o.name for o in objectives)
            raise ConfigError(f"{self.name} needs a space with two or more objectives; the study has {len(objectives)} "
                              f"({names}): declare more under `objectives:` (automl search --objective NAME=max|min, "
                              f"create_study(objectives=...)), or use {self.single_objective_variant}")
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
    #: what a single-objective study should use instead (named by the error of a ``min_objectives`` > 1 variant)
    single_objective_variant: str = ""

    def make_searcher(self, space: SearchSpace, **options: Any) -> Searcher:
        return RandomSearcher(space)

    def new_config(self, number: int) -> Config:
        return self.novel(self.searcher.suggest, number)

    def losses(self, observation: Observation) -> Losses:
        return _losses(observation, len(self.objectives))

    def tell(self, observation: Observation) -> None:
        if observation.budget is not None:
            self.searcher.observe(observation.config, observation.budget, self.losses(observation))


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
        self._place(observation, self.losses(observation))

    def _place(self, observation: Observation, losses: Losses | None) -> None:
        info = observation.info
        if "iteration" not in info:
            return  # a trial from another strategy in the same study: the searcher still learned from it
        iteration = self._iteration(int(info["iteration"]))
        iteration.members[int(info["rung"])][observation.key] = (observation.config, losses, observation.number)

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
        # rung -> key -> (config, losses or None while running, number)
        self.rungs: list[dict[str, tuple[Config, Losses | None, int]]] = [{} for _ in self.budgets]
        self._ranking: dict[int, list[tuple[str, Config, Losses]]] = {}  # rung -> ranked, until it changes

    def _set(self, k: int, key: str, entry: tuple[Config, Losses | None, int]) -> None:
        self.rungs[k][key] = entry
        self._ranking.pop(k, None)

    def ask(self, number: int) -> Proposal:
        for k in range(len(self.budgets) - 2, -1, -1):
            if k not in self._ranking:
                self._ranking[k] = _ranked(self.rungs[k])
            ranked = self._ranking[k]
            for key, config, losses in ranked[: int(len(ranked) // self.eta)]:
                if key not in self.rungs[k + 1] and all(math.isfinite(x) for x in losses):
                    self._set(k + 1, key, (config, None, number))
                    return Proposal(config, budget=self.budgets[k + 1], info={"rung": k + 1})
        config = self.new_config(number)
        self._set(0, self.space.key(config), (config, None, number))
        return Proposal(config, budget=self.budgets[0], info={"rung": 0})

    def tell(self, observation: Observation) -> None:
        super().tell(observation)
        self._place(observation, self.losses(observation))

    def _place(self, observation: Observation, losses: Losses | None) -> None:
        if "rung" in observation.info:
            self._set(int(observation.info["rung"]), observation.key, (observation.config, losses, observation.number))

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        super().restore(history, ())
        for observation in pending:
            self._seen.add(observation.key)
            self._place(observation, None)


@strategies.register("mo-asha")
class MOASHA(ASHA):
    """Multi-objective ASHA (Schmucker et al. 2021, Syne Tune's MOASHA): ASHA whose rungs promote the top
    1/eta by non-dominated sorting and crowding distance; needs two or more objectives. Options: ``eta``."""

    name = "mo-asha"
    min_objectives = 2
    single_objective_variant = "asha"


@strategies.register("mo-hyperband")
class MOHyperband(Hyperband):
    """Multi-objective Hyperband: synchronous brackets whose rungs promote by non-dominated sorting and
    crowding distance; needs two or more objectives. Options: ``eta``."""

    name = "mo-hyperband"
    min_objectives = 2
    single_objective_variant = "hyperband"
