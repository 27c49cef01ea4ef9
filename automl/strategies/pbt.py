"""Population-based training (Jaderberg et al. 2017), asynchronous as in Ray Tune's and Syne Tune's PBT.

A population of members trains in steps of ``interval`` budget units (every member through the same grid of
budgets). When a member's trial finishes below the maximum budget it is ranked against the results the
population has at that budget (Ray Tune and Syne Tune rank latest results, which with fewer workers than
members favours whoever trained longest): in the bottom quantile it exploits (takes the config and the
checkpoint at that budget of a member drawn from the top quantile) and explores (each hyperparameter
resampled from the space, or multiplied by a perturbation factor / moved to a neighbouring numeric choice,
kept inside the space's bounds); otherwise it continues its own checkpoint. Workers never wait: a member is
ranked against whoever has reached its budget. Each trial's info records its
lineage (``member``, ``generation``, ``parent``: the trial whose checkpoint it starts from, and after an
exploit ``exploited``: the donor member, ``explored``: ``{path: [before, after]}``), and the state is rebuilt
from those records on resume. The search ends when every member has reached the maximum budget.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from automl.errors import ConfigError
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Bool, Budget, Categorical, Float, Group, Int, Leaf, Objective
from automl.strategies.base import CONTINUES, Observation, Proposal, Strategy, TrialState, strategies
from automl.strategies.mo_ranking import promotion_order

#: the kinds of parameter PBT may change between steps
EXPLORABLE = (Float, Int, Categorical, Bool)
#: ``train.*`` leaves the default leaves alone: they fix how a budget maps to optimiser steps, which a
#: continued checkpoint has already counted (an explicit ``hyperparameters`` list may still name them)
FIXED_DURING_TRAINING = ("batch_size", "epochs")
#: the config part whose leaves PBT explores by default
TRAIN_PART = "train"


@dataclass(frozen=True)
class _Trial:
    """One step of a member: the config and budget it trained to, its losses (None while it runs)."""

    slot: int
    config: Config
    budget: float
    losses: tuple[float, ...] | None

    @property
    def healthy(self) -> bool:
        """Finished with finite losses (so it left a checkpoint to continue)."""
        return self.losses is not None and all(math.isfinite(x) for x in self.losses)


def _lookup(config: Config, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _assign(config: Config, path: str, value: Any) -> None:
    *head, last = path.split(".")
    target = config
    for part in head:
        target = target[part]
    target[last] = value


def explorable_leaves(space: SearchSpace, under: str | None = None) -> list[tuple[str, Leaf]]:
    """(dotted path, node) of the numeric and categorical parameters reachable through groups (not inside
    repeats or graphs), below the group ``under`` when given."""
    out: list[tuple[str, Leaf]] = []

    def walk(node: Group, prefix: str) -> None:
        for name, child in node.children:
            if isinstance(child, Group):
                walk(child, f"{prefix}{name}.")
            elif isinstance(child, EXPLORABLE):
                out.append((f"{prefix}{name}", child))

    root = space.root
    if under is not None:
        child = root.child_map().get(under)
        if not isinstance(child, Group):
            return []
        walk(child, f"{under}.")
    else:
        walk(root, "")
    return out


@strategies.register("pbt")
class PBT(Strategy):
    """Asynchronous population-based training. Options: ``population`` (default 8), ``interval`` (budget units
    between perturbations; default a quarter of the budget range, whole for whole-numbered budgets),
    ``quantile`` (truncation fraction, default 0.25), ``resample_probability`` (0.25), ``perturb_factors``
    ([0.8, 1.2]) and ``hyperparameters`` (config paths PBT may change; default the ``train.*`` numeric and
    categorical leaves but batch_size and epochs, or every such leaf of a space without a ``train`` part)."""

    plans_own_budget = True
    continues_checkpoints = True

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, population: int = 8, interval: float | None = None,
                 quantile: float = 0.25, resample_probability: float = 0.25,
                 perturb_factors: Sequence[float] = (0.8, 1.2), hyperparameters: Sequence[str] | None = None,
                 **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, **options)
        if budget is None or not budget.max > budget.min:
            raise ConfigError("strategy pbt needs a budget range with max > min: declare `budget:` in the space "
                              "or pass budget={'min': ..., 'max': ...} to create_study")
        if not isinstance(population, int) or isinstance(population, bool) or population < 2:
            raise ConfigError(f"pbt: population must be an integer >= 2, got {population!r}", field="population")
        if not isinstance(quantile, (int, float)) or not 0 <= quantile <= 0.5:
            raise ConfigError(f"pbt: quantile must be in [0, 0.5], got {quantile!r}", field="quantile")
        if not isinstance(resample_probability, (int, float)) or not 0 <= resample_probability <= 1:
            raise ConfigError(f"pbt: resample_probability must be in [0, 1], got {resample_probability!r}",
                              field="resample_probability")
        factors = list(perturb_factors) if isinstance(perturb_factors, (list, tuple)) else []
        if not factors or not all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in factors):
            raise ConfigError(f"pbt: perturb_factors must be a non-empty list of numbers > 0, got {perturb_factors!r}",
                              field="perturb_factors")
        self.min_budget, self.max_budget = float(budget.min), float(budget.max)
        span = self.max_budget - self.min_budget
        if interval is None:
            whole = self.min_budget.is_integer() and self.max_budget.is_integer()
            interval = max(1.0, float(round(span / 4))) if whole else span / 4
        if not isinstance(interval, (int, float)) or not 0 < interval:
            raise ConfigError(f"pbt: interval must be a number > 0 (budget units), got {interval!r}", field="interval")
        self.population_size = population
        self.interval = float(interval)
        self.quantile = float(quantile)
        self.resample_probability = float(resample_probability)
        self.perturb_factors = tuple(float(f) for f in factors)
        self.hyperparameters = self._hyperparameters(space, hyperparameters)
        steps = int(math.ceil(span / self.interval - 1e-9))
        #: the budgets every member trains to in turn (its generations): min, min + interval, ..., max
        self.grid = [min(self.max_budget, self.min_budget + k * self.interval) for k in range(steps + 1)]
        self.members: dict[int, dict[int, _Trial]] = {}  # member -> generation (grid step) -> its trial

    # -- options ----------------------------------------------------------------------------------
    @staticmethod
    def _hyperparameters(space: SearchSpace, names: Sequence[str] | None) -> list[tuple[str, Leaf]]:
        leaves = explorable_leaves(space)
        if names is None:
            under = TRAIN_PART if isinstance(space.root.child_map().get(TRAIN_PART), Group) else None
            chosen = [(p, n) for p, n in explorable_leaves(space, under)
                      if under is None or p.rsplit(".", 1)[-1] not in FIXED_DURING_TRAINING]
            if not chosen:
                raise ConfigError(f"pbt: space {space.name!r} has no numeric or categorical "
                                  f"{TRAIN_PART + '.* ' if under else ''}parameter to explore; name them with "
                                  "the `hyperparameters` option", field="hyperparameters")
            return chosen
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ConfigError(f"pbt: hyperparameters must be a non-empty list of config paths, got {names!r}",
                              field="hyperparameters")
        known = dict(leaves)
        out = []
        for name in names:
            if name not in known:
                raise ConfigError(f"pbt: hyperparameter {name!r} is not a numeric or categorical parameter of "
                                  f"space {space.name!r} outside repeats and graphs (those are: "
                                  f"{', '.join(known) or 'none'})", field="hyperparameters")
            out.append((str(name), known[name]))
        return out

    # -- ask/tell ---------------------------------------------------------------------------------
    def ask(self, number: int) -> Proposal | None:
        for member in range(self.population_size):
            if member not in self.members:  # the population first starts, member by member
                config = self.novel(self.space.sample, number)
                return self._propose(member, 0, number, config, {})
        ready = []
        for member, trials in self.members.items():
            step = max(trials)
            if trials[step].losses is not None and step < len(self.grid) - 1:
                ready.append((step, member))
        for step, member in sorted(ready):  # the least trained first: the population moves on together
            proposal = self._step(member, step, number)
            if proposal is not None:
                return proposal
        return None

    def _step(self, member: int, step: int, number: int) -> Proposal | None:
        """The next trial of a member whose trial at grid step ``step`` finished: exploit and explore, or
        continue its own checkpoint."""
        own = self.members[member][step]
        donor = self._donor(member, step, number)
        if donor is None:
            if not own.healthy:
                return None  # nothing to continue and no one to copy yet
            return self._propose(member, step + 1, number, copy.deepcopy(own.config), {"parent": own.slot})
        source = self.members[donor][step]
        config = self.novel(lambda rng: self._explore(source.config, rng), number)
        explored = {path: [_lookup(source.config, path), _lookup(config, path)] for path, _ in self.hyperparameters
                    if _lookup(source.config, path) != _lookup(config, path)}
        return self._propose(member, step + 1, number, config,
                             {"parent": source.slot, "exploited": donor, "explored": explored})

    def _propose(self, member: int, step: int, number: int, config: Config, info: dict[str, Any]) -> Proposal:
        budget = self.grid[step]
        self.members.setdefault(member, {})[step] = _Trial(number, config, budget, None)
        # every PBT trial is its own replica: its result depends on the checkpoint it continues, not only on
        # its config, so the study never reuses another trial's result for it
        return Proposal(config, budget=budget, info={"member": member, "generation": step, CONTINUES: True,
                                                     "replica": f"pbt-{member}-{step}", **info})

    def tell(self, observation: Observation) -> None:
        self._place(observation, finished=True)

    def _place(self, observation: Observation, finished: bool) -> None:
        info = observation.info
        if "member" not in info or "generation" not in info or observation.budget is None:
            return  # a trial from elsewhere (an enqueued config): only marked seen
        losses: tuple[float, ...] | None = None
        if finished:
            complete = observation.state is TrialState.COMPLETE and observation.losses
            losses = tuple(observation.losses) if complete and observation.losses else \
                (math.inf,) * max(1, len(self.objectives))
        self.members.setdefault(int(info["member"]), {})[int(info["generation"])] = _Trial(
            observation.number, dict(observation.config), float(observation.budget), losses)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        super().restore(history, ())
        for observation in pending:
            self._seen.add(observation.key)
            self._place(observation, finished=False)

    # -- exploit ----------------------------------------------------------------------------------
    def _donor(self, member: int, step: int, number: int) -> int | None:
        """The top-quantile member ``member`` copies after grid step ``step``, or None when it continues its
        own checkpoint. It is ranked against the results the population has at the same budget (every member
        passes through the same grid), so that a member is never judged against one that merely trained
        longer; a member whose trial failed copies one whenever some member has a checkpoint there."""
        ranked: list[tuple[int, tuple[float, ...]]] = []
        for m, trials in sorted(self.members.items()):
            losses = trials[step].losses if step in trials else None
            if losses is not None:
                ranked.append((m, losses))
        order = [ranked[i][0] for i in promotion_order([r[1] for r in ranked], [r[0] for r in ranked])]
        size = int(math.ceil(len(order) * self.quantile))
        if size > len(order) / 2:
            size = len(order) // 2
        healthy = [m for m in order if m != member and self.members[m][step].healthy]
        top = [m for m in order[:size] if m in healthy]
        own = self.members[member][step].healthy
        if not own and not top:  # a failed member takes the best one there is
            top = healthy[:1]
        if not top or (own and member not in order[len(order) - size:]):
            return None
        rng = np.random.default_rng([self.seed, number, 10**6])
        return top[int(rng.integers(0, len(top)))]

    # -- explore ----------------------------------------------------------------------------------
    def _explore(self, config: Config, rng: np.random.Generator) -> Config:
        """The donor's config with each active hyperparameter resampled or perturbed; conditional parameters
        the changes switch on are sampled, those they switch off dropped."""
        out = copy.deepcopy(config)
        for path, node in self.hyperparameters:
            value = _lookup(out, path)
            if value is not None:
                _assign(out, path, self._perturb(node, value, rng))
        return self.space.complete(out, rng)

    def _perturb(self, node: Leaf, value: Any, rng: np.random.Generator) -> Any:
        resample = rng.random() < self.resample_probability
        if isinstance(node, Float):
            if resample:
                return node.sample(rng)
            factor = self.perturb_factors[int(rng.integers(0, len(self.perturb_factors)))]
            new = min(node.high, max(node.low, float(value) * factor))
            if node.step:
                new = min(node.high, node.low + round((new - node.low) / node.step) * node.step)
            return float(new)
        if isinstance(node, Int):
            if resample:
                return node.sample(rng)
            factor = self.perturb_factors[int(rng.integers(0, len(self.perturb_factors)))]
            snapped = node.low + round((float(value) * factor - node.low) / node.step) * node.step
            return int(min(node.high, max(node.low, snapped)))
        if isinstance(node, Categorical) and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                 for c in node.choices) and not resample:
            ordered = sorted(node.choices)  # numeric choices have an order: move to a neighbour (Ray Tune)
            index = ordered.index(value) if value in ordered else 0
            index = min(len(ordered) - 1, max(0, index + (1 if rng.random() < 0.5 else -1)))
            return copy.deepcopy(ordered[index])
        return node.sample(rng)  # other choices have no order: resampled (Syne Tune)
