"""The ask/tell contract every search strategy implements.

A strategy is pure and seeded: the proposal for trial ``number`` depends only on the seed, the number
and the observations told so far, so a resumed study (history replayed through :meth:`restore`)
proposes what an uninterrupted one would have.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from automl.errors import ConfigError
from automl.registry import Registry
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective

#: trial info of a strategy whose trials continue each other's training state (PBT): such a trial keeps its state
#: per trial and starts from its ``parent``'s (:attr:`automl.estimator.EvalContext.parent_trial`)
CONTINUES = "continues"


class TrialState(str, enum.Enum):
    """Lifecycle of a trial as the ledger records it."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INFEASIBLE = "infeasible"  # rejected by a hard constraint before (or instead of) training
    PRUNED = "pruned"  # stopped early by the study's pruner (its intermediate values are recorded)

    @property
    def finished(self) -> bool:
        return self is not TrialState.RUNNING


@dataclass(frozen=True)
class Proposal:
    """What a strategy asks to evaluate next: a config and, for multi-fidelity strategies, a budget."""

    config: Config
    budget: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """A finished (or still pending) trial as strategies see it.

    ``losses`` are the objective values turned so that smaller is better (``None`` unless COMPLETE).
    """

    number: int
    config: Config
    key: str
    state: TrialState
    losses: tuple[float, ...] | None = None
    budget: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class: implement :meth:`ask` and :meth:`tell`; register with ``@strategies.register(name)``."""

    #: Parameter node types this strategy cannot search (checked at start-up, naming the parameter).
    unsupported: ClassVar[tuple[type, ...]] = ()
    #: True when the strategy ends the search itself (``automl search`` then needs no --trials).
    plans_own_budget: ClassVar[bool] = False
    #: True when trials continue earlier trials' training state (info ``continues``, PBT): a study then needs an
    #: estimator that can checkpoint (``Estimator.can_checkpoint``)
    continues_checkpoints: ClassVar[bool] = False
    #: The fewest objectives the strategy optimises (its constructor refuses fewer; the conformance suite
    #: gives it a problem with that many).
    min_objectives: ClassVar[int] = 1

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, **options: Any) -> None:
        if options:
            raise ConfigError(f"{type(self).__name__} got unknown options {sorted(options)}")
        for kind in self.unsupported:
            paths = space.has(kind)
            if paths:
                raise ConfigError(
                    f"strategy {type(self).__name__} cannot search {kind.__name__.lower()} parameters; "
                    f"space {space.name!r} has one at {paths[0]!r}"
                )
        self.space = space
        self.objectives = tuple(objectives)
        self.seed = int(seed)
        self.budget = budget  # the multi-fidelity range trials may be given (None: one fidelity)
        self._seen: set[str] = set()

    def rng(self, number: int, attempt: int = 0) -> np.random.Generator:
        """The random stream for trial ``number``: independent of what other trials drew."""
        return np.random.default_rng([self.seed, number, attempt])

    @abstractmethod
    def ask(self, number: int) -> Proposal | None:
        """The proposal for trial ``number``, or None when the strategy must wait for results."""

    @abstractmethod
    def tell(self, observation: Observation) -> None:
        """Learn from a finished trial."""

    def mark_seen(self, key: str) -> None:
        """A candidate the study evaluated without this strategy proposing it (an enqueued config): not
        to be proposed again."""
        self._seen.add(key)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        """Rebuild state from the ledger: finished trials in order, then those still to be re-run."""
        for observation in history:
            self._seen.add(observation.key)
            self.tell(observation)
        for observation in pending:
            self._seen.add(observation.key)

    def novel(self, make: Callable[[np.random.Generator], Config], number: int, tries: int = 50) -> Config:
        """A config from ``make`` whose key has not been proposed yet (after ``tries`` it gives up and
        returns the last one: the study then records the duplicate without re-evaluating it)."""
        config: Config = {}
        for attempt in range(tries):
            config = make(self.rng(number, attempt))
            key = self.space.key(config)
            if key not in self._seen:
                self._seen.add(key)
                return config
        return config


#: search strategies by name (entry-point group ``automl.strategies``)
strategies: Registry[type[Strategy]] = Registry("strategies", "strategy")
