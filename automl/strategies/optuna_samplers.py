"""Optuna's samplers behind the ask/tell contract: ``tpe``, ``cmaes`` and ``nsga2``.

Each strategy keeps a private in-memory Optuna study whose objectives are our ``losses`` (all
minimised). :meth:`~OptunaSampler.ask` asks that study for a trial and suggests the space's flat
parameters (:meth:`SearchSpace.flatten`) *define-by-run*: only the parameters that are active in the
config being built are suggested, in declaration order, so a conditional parameter whose condition
is false, or a repeat's item beyond the drawn length, never reaches the sampler. The Optuna trial's
parameters are then exactly ``space.flat_params(config)``; that is what makes a resumed study the
same as an uninterrupted one (see below). The options of a strategy are passed to the sampler's
constructor (``n_startup_trials``, ``multivariate``, ``group``... for ``tpe``; ``population_size``,
``mutation_prob``, ``crossover_prob``... for ``nsga2``; ``sigma0``, ``popsize``, ``n_startup_trials``,
``use_separable_cma``, ``with_margin``... for ``cmaes``); ``seed`` comes from the study.

How outcomes are told: a COMPLETE trial with its losses; a FAILED one as ``FAIL`` (ignored by every
sampler); an INFEASIBLE one as ``PRUNED``: TPE ranks pruned trials without intermediate values below
every completed one, so it learns to avoid that region; CMA-ES and NSGA-II ignore pruned trials as
they do failed ones. (Optuna's constraint support needs the objective values of infeasible trials,
which an infeasible observation does not carry.)

Determinism and resume. Optuna samplers carry a random state that advances with every sample, so
before each ask the study's sampler is replaced by a fresh one seeded from ``(seed, trial number)``.
All three keep their search state in the study's trials: TPE in their params and values; CMA-ES and
NSGA-II also in system attributes written when a trial is asked (CMA-ES: the generation and the
pickled optimizer; NSGA-II: the trial's generation, and each generation's parents in a study
attribute). A trial this strategy did not ask itself (the whole history on :meth:`restore`, a trial
the study re-queued after an interruption or a crash, a trial whose config differs from the proposal) is
*replayed*: it is added to the Optuna study as a new trial with its recorded parameters, and for
CMA-ES and NSGA-II the sampler seeded for its number runs its relative sampling on it (the sample is
discarded, the system attributes it writes are kept), exactly as when that trial was first asked. So
with one worker (each trial told before the next is asked) a study resumed from its ledger proposes
what an uninterrupted one would have, for all three samplers. With several workers, a trial asked
while others were running is replayed as if they had finished, so the continuation is a valid but
not identical search. (Trials are numbered by slot: a crashed or interrupted trial's re-run is
asked and told under its attempt's number, see :mod:`automl.loop`.)

A sampler may propose a config that was already evaluated (likely in small discrete spaces); it is
returned anyway and the study records it as a duplicate of the earlier trial, with the earlier
result, without evaluating it again.
"""
from __future__ import annotations

import inspect
import logging
import math
import warnings
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, CmaEsSampler, NSGAIISampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState as OptunaState

from automl.errors import ConfigError
from automl.space.graph import Graph
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Bool, Budget, Categorical, Normal, Objective, Repeat
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies

_SAMPLER_STREAM = 0x5A3D  # keeps the sampler seeds apart from the streams of Strategy.rng


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's experimental and deprecation warnings for the calls inside (they are shown,
    if at all, once at start-up, when the options are checked)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextmanager
def _no_info_from(logger_name: str) -> Iterator[None]:
    """Drop the INFO lines of one Optuna logger for the calls inside (the global logging setup is
    left as it is)."""
    logger, only_warnings = logging.getLogger(logger_name), _WarningsOnly()
    logger.addFilter(only_warnings)
    try:
        yield
    finally:
        logger.removeFilter(only_warnings)


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unexpected distribution {dist!r} for {name!r}")  # flatten() makes only these three


def _contains(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (TypeError, ValueError):
        return False


class OptunaSampler(Strategy):
    """Base of the strategies that delegate to an Optuna sampler (subclasses set ``sampler_class``)."""

    #: The registered name, for messages.
    strategy_name: ClassVar[str] = ""
    #: The Optuna sampler class, called as ``sampler_class(seed=..., **options)`` (``BaseSampler``
    #: itself takes no seed, so the type says only what the call needs).
    sampler_class: ClassVar[Callable[..., BaseSampler]]
    #: Graphs have no flat view; normal leaves have no Optuna distribution (unbounded), so a sampler
    #: could only leave them random.
    unsupported: ClassVar[tuple[type, ...]] = (Graph, Normal)
    #: Options set unless the user sets them.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Whether the sampler writes search state into a trial's system attributes when the trial is
    #: asked (then trials this strategy did not ask are replayed through its relative sampling).
    replays_relative: ClassVar[bool] = False

    # positional-only, so that an option called "seed" reaches _check_options instead of a TypeError
    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, /, **options: Any) -> None:
        try:
            super().__init__(space, objectives, seed, budget)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (strategies 'random' and 'evolution' search every parameter type)") from None
        self._check_space()
        self.options = {**self.defaults, **options}
        self._check_options(options)
        self._distributions = space.flatten()
        n_objectives = max(1, len(self.objectives))
        with _quiet(), _no_info_from(InMemoryStorage.__module__):  # "A new study created in memory..."
            self._study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=self._sampler(0))
        self._asked: dict[int, tuple[optuna.Trial, Proposal]] = {}

    # -- start-up checks --------------------------------------------------------------------------
    def _check_space(self) -> None:
        """Reject what this sampler cannot search, naming the parameter (beyond ``unsupported``)."""

    def _check_options(self, options: Mapping[str, Any]) -> None:
        name, sampler = self.strategy_name, self.sampler_class.__name__
        accepted = sorted(p for p in inspect.signature(self.sampler_class.__init__).parameters
                          if p not in ("self", "seed"))
        if "seed" in options:
            raise ConfigError(f"strategy {name!r} takes its seed from the study (create_study(seed=...) or "
                              "--seed), not from the option 'seed'")
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"strategy {name!r} got unknown options {unknown}; {sampler} accepts {accepted}")
        try:
            with warnings.catch_warnings():  # deprecation warnings about an option are shown here, once
                warnings.simplefilter("ignore", ExperimentalWarning)
                self.sampler_class(seed=0, **self.options)
        except TypeError as exc:
            raise ConfigError(f"strategy {name!r}: {sampler} rejected the options {dict(options)}: {exc}; "
                              f"it accepts {accepted}") from None
        except ValueError as exc:
            raise ConfigError(f"strategy {name!r}: invalid options {dict(options)}: {exc}") from None

    # -- the sampler --------------------------------------------------------------------------------
    def _sampler(self, number: int) -> BaseSampler:
        """A sampler seeded for trial ``number`` alone: what it proposes does not depend on how many
        samples earlier samplers drew."""
        seed = int(np.random.default_rng([self.seed, number, _SAMPLER_STREAM]).integers(2**31 - 1))
        return self.sampler_class(seed=seed, **self.options)

    # -- ask/tell -------------------------------------------------------------------------------------
    def ask(self, number: int) -> Proposal:
        if number in self._asked:  # asked again before being told: the same proposal
            return self._asked[number][1]
        with _quiet():
            self._study.sampler = self._sampler(number)
            trial = self._study.ask()
            config = self._suggest_active(trial, number)
        proposal = Proposal(config)
        self._seen.add(self.space.key(config))
        self._asked[number] = (trial, proposal)
        return proposal

    def _suggest_active(self, trial: optuna.Trial, number: int) -> Config:
        """Suggest the flat parameters that are active, in declaration order, and return the config.

        Whether a parameter is active depends only on values declared before it, so: complete the
        config from what is decided so far, suggest the first active parameter not yet decided, and
        repeat until every active parameter came from the sampler.
        """
        params: dict[str, Any] = {}
        while True:
            config = self.space.unflatten(params, self.rng(number))
            undecided = next((name for name in self.space.flat_params(config)
                              if name in self._distributions and name not in params), None)
            if undecided is None:
                return config
            params[undecided] = _suggest(trial, undecided, self._distributions[undecided])

    def tell(self, observation: Observation) -> None:
        if observation.state is TrialState.RUNNING:
            return
        self._seen.add(observation.key)
        asked = self._asked.pop(observation.number, None)  # a re-run is told under its attempt's number
        with _quiet():
            if asked is not None and self.space.key(asked[1].config) == observation.key:
                trial = asked[0]
            else:
                if asked is not None:  # this number was evaluated with another config: drop the proposal
                    self._study.tell(asked[0], state=OptunaState.FAIL)
                trial = self._replay(observation)
            state, values = self._outcome(observation)
            self._study.tell(trial, values, state=state)

    def _outcome(self, observation: Observation) -> tuple[OptunaState, list[float] | None]:
        losses = observation.losses
        if (observation.state is TrialState.COMPLETE and losses is not None
                and len(losses) == len(self._study.directions) and all(math.isfinite(v) for v in losses)):
            return OptunaState.COMPLETE, [float(v) for v in losses]
        if observation.state in (TrialState.INFEASIBLE, TrialState.PRUNED):
            return OptunaState.PRUNED, None
        return OptunaState.FAIL, None

    def _replay(self, observation: Observation) -> optuna.Trial:
        """Add a trial this strategy did not ask, as if it had asked it: its recorded parameters, and
        the system attributes the sampler seeded for its number writes when a trial is asked."""
        params = {name: value for name, value in self.space.flat_params(observation.config).items()
                  if name in self._distributions and _contains(self._distributions[name], value)}
        waiting = optuna.trial.create_trial(
            state=OptunaState.WAITING, params=params,
            distributions={name: self._distributions[name] for name in params})
        self._study.sampler = self._sampler(observation.number)
        self._study.add_trial(waiting)
        trial = self._study.ask()  # takes the waiting trial; runs the sampler's before_trial
        if self.replays_relative and any(not self._distributions[name].single() for name in params):
            trial.relative_params  # noqa: B018 -- evaluated for the state the sampler records
        return trial


@strategies.register("tpe")
class TPE(OptunaSampler):
    """Tree-structured Parzen Estimator (:class:`optuna.samplers.TPESampler`).

    Searches every flat parameter type (float, int, categorical, bool, repeats); with several
    objectives it is MOTPE. Options go to ``TPESampler`` (e.g. ``n_startup_trials`` (default 10),
    ``multivariate``, ``group``, ``n_ei_candidates``).
    """

    strategy_name = "tpe"
    sampler_class = TPESampler


@strategies.register("cmaes")
class CmaEs(OptunaSampler):
    """CMA-ES (:class:`optuna.samplers.CmaEsSampler`, needs the ``cmaes`` package).

    One objective; float and int parameters only (categorical, bool and repeat parameters are
    rejected at start-up: use ``tpe``). A parameter behind a condition is outside CMA-ES's fixed
    search space and is sampled at random when active. Options go to ``CmaEsSampler`` (e.g.
    ``sigma0``, ``popsize``, ``n_startup_trials``, ``use_separable_cma``, ``with_margin``).
    """

    strategy_name = "cmaes"
    sampler_class = CmaEsSampler
    defaults = {"warn_independent_sampling": False}
    replays_relative = True

    def _check_space(self) -> None:
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("strategy 'cmaes' needs the 'cmaes' package (pip install cmaes)") from None
        for kind, what in ((Categorical, "categorical"), (Bool, "bool"), (Repeat, "repeat")):
            paths = self.space.has(kind)
            if paths:
                raise ConfigError(
                    f"strategy 'cmaes' searches float and int parameters only; space {self.space.name!r} has a "
                    f"{what} parameter at {paths[0]!r} (use strategy 'tpe', which searches every flat "
                    "parameter type)")
        if len(self.objectives) > 1:
            raise ConfigError(f"strategy 'cmaes' optimises one objective, the study has {len(self.objectives)} "
                              f"({', '.join(o.name for o in self.objectives)}); use 'nsga2' or 'tpe'")


@strategies.register("nsga2")
class NSGA2(OptunaSampler):
    """NSGA-II (:class:`optuna.samplers.NSGAIISampler`), for several objectives (one works too).

    The first ``population_size`` (default 50) completed trials are random; each later generation
    is bred from the elite of the previous one. Options go to ``NSGAIISampler`` (e.g.
    ``population_size``, ``mutation_prob``, ``crossover_prob``, ``swapping_prob``).
    """

    strategy_name = "nsga2"
    sampler_class = NSGAIISampler
    replays_relative = True
