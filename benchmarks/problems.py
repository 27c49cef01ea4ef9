"""Problem definitions for ``benchmarks/strategies.py`` (a benchmark, not a test).

Three problems, each exposing the same small interface (:class:`Problem`):

* :class:`BBOBProblem` -- one noiseless BBOB function/dimension/instance from COCO (``cocoex``,
  package ``coco-experiment``), searched over ``[-5, 5]^d``; single fidelity; the measure is the
  regret ``f(x) - f_opt``.
* :class:`CountingOnes` -- the counting-ones problem of the BOHB paper (Falkner et al. 2018): 8
  categorical {0, 1} and 8 continuous [0, 1] parameters; at budget ``b`` each continuous parameter
  contributes the mean of ``b`` Bernoulli(x_i) draws; the measure is the normalised regret of the
  exact expectation.
* :class:`DigitsNAS` -- the registered ``digits-cnn`` space (a real CNN trained on sklearn's digits)
  with a budget of 1..9 epochs; the measure is validation accuracy.

Every evaluation returns an :class:`Evaluation`: the loss the strategy is told, the budget it cost (in
the problem's cost unit), the benchmark's measure of that evaluation, and whether it counts for the
incumbent (only evaluations at the maximum budget do).
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

import numpy as np

import automl
from automl.errors import Infeasible
from automl.space import SearchSpace

Config = dict[str, Any]


@dataclass(frozen=True)
class Evaluation:
    """One evaluation as the benchmark records it.

    ``loss``: what the strategy is told (smaller is better); ``cost``: budget spent (the problem's
    cost unit: evaluations for BBOB, full-budget equivalents otherwise); ``measure``: the
    benchmark's quality measure (true regret, or validation accuracy); ``final``: evaluated at the
    maximum budget, so it may become the incumbent; ``metrics``: what the study records;
    ``error``: an exception to re-raise after accounting (the trial then fails or is infeasible).
    """

    loss: float
    cost: float
    measure: float
    final: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: BaseException | None = None


class Problem(Protocol):
    """What a contender runner needs from a problem."""

    name: str
    space: SearchSpace
    #: the multi-fidelity range passed to ``create_study`` (None: single fidelity)
    budget: Mapping[str, float] | None
    #: True if a larger measure is better (accuracy), False for regrets
    higher_is_better: bool
    #: True: the study's own estimator evaluates trials (``study.optimize()`` without an objective)
    uses_estimator: bool

    def evaluate(self, config: Config, budget: float | None, number: int) -> Evaluation: ...


# -- BBOB (COCO) ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _in_directory(path: str) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class BBOBProblem:
    """A noiseless BBOB problem from ``cocoex`` (no observer: nothing is logged to disk).

    ``f_opt``: coco-experiment 2.8 does not expose ``final_target_fvalue1`` to Python any more (it is
    commented out in ``interface.pyx``; ``best_observed_fvalue1`` is only what was evaluated so far).
    ``Problem._best_parameter('print')`` writes the optimiser ``x_opt`` to
    ``._bbob_problem_best_parameter.txt`` in the working directory, so ``f_opt = f(x_opt)`` (done in
    a temporary directory). That value is checked to be BBOB's 2-decimal ``f_opt`` (BBOB rounds f_opt
    to 0.01); regrets are clipped at 0 against floating-point noise.
    """

    higher_is_better = False
    uses_estimator = False
    budget = None

    def __init__(self, function: int, dimension: int, instance: int) -> None:
        import cocoex

        self.function, self.dimension, self.instance = function, dimension, instance
        self._suite = cocoex.Suite("bbob", "", f"function_indices:{function} dimensions:{dimension} "
                                                f"instance_indices:{instance}")
        self._problem = self._suite[0]
        self.name = self._problem.id
        self.lower, self.upper = float(self._problem.lower_bounds[0]), float(self._problem.upper_bounds[0])
        self.x_opt, self.f_opt = self._optimum()
        self.names = [f"x{i}" for i in range(dimension)]
        self.space = automl.space_from_dict({
            "name": f"bbob-f{function:02d}-d{dimension:02d}",
            "space": {n: {"type": "float", "low": self.lower, "high": self.upper} for n in self.names},
        })

    def _optimum(self) -> tuple[np.ndarray, float]:
        with tempfile.TemporaryDirectory() as tmp, _in_directory(tmp):
            self._problem._best_parameter("print")
            x_opt = np.atleast_1d(np.loadtxt("._bbob_problem_best_parameter.txt"))
        f_opt = float(self._problem(x_opt))
        if abs(f_opt - round(f_opt, 2)) > 1e-6:
            raise RuntimeError(f"{self._problem.id}: f(x_opt) = {f_opt!r} is not a 2-decimal BBOB f_opt")
        return x_opt, round(f_opt, 2)

    def regret(self, x: np.ndarray) -> float:
        return max(0.0, float(self._problem(x)) - self.f_opt)

    def vector(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array([float(config[n]) for n in self.names])

    def evaluate(self, config: Config, budget: float | None = None, number: int = 0) -> Evaluation:
        regret = self.regret(self.vector(config))
        return Evaluation(loss=regret, cost=1.0, measure=regret, final=True)


# -- counting ones (Falkner et al. 2018) ------------------------------------------------------------
class CountingOnes:
    """Counting ones with ``n_cat`` categorical {0, 1} and ``n_cont`` continuous [0, 1] parameters.

    ``f(config, b) = -(sum_i c_i + sum_j mean of b Bernoulli(x_j) draws)``; optimum ``-(n_cat + n_cont)``.
    Regret (of the exact expectation): ``(n + f_true) / n`` with ``f_true = -(sum c + sum x)``, in [0, 1].

    Noise is seeded: the draws of an evaluation come from ``default_rng([run_seed, key, b])`` where
    ``key`` is the config's candidate key -- the same config at the same budget in the same run gets
    the same value, whichever strategy asks (common random numbers across contenders). The
    incremental variant (:meth:`incremental`, for Optuna's pruner) draws one stream per config,
    ``default_rng([run_seed, key])``, and reports the running mean of its first ``b`` draws.

    Cost unit: full-budget equivalents (``b / max_budget``); each evaluation costs its whole budget
    (no continuation), as in the BOHB paper.
    """

    higher_is_better = False
    uses_estimator = False

    def __init__(self, seed: int, n_cat: int = 8, n_cont: int = 8, min_budget: int = 9, max_budget: int = 729) -> None:
        self.seed = seed
        self.n_cat, self.n_cont = n_cat, n_cont
        self.min_budget, self.max_budget = min_budget, max_budget
        self.name = f"counting-ones-{n_cat}+{n_cont}"
        self.cat_names = [f"c{i}" for i in range(n_cat)]
        self.cont_names = [f"x{i}" for i in range(n_cont)]
        params: dict[str, Any] = {n: {"type": "categorical", "choices": [0, 1]} for n in self.cat_names}
        params.update({n: {"type": "float", "low": 0.0, "high": 1.0} for n in self.cont_names})
        self.space = automl.space_from_dict({"name": self.name, "space": params})
        self.budget = {"min": float(min_budget), "max": float(max_budget)}

    @property
    def n(self) -> int:
        return self.n_cat + self.n_cont

    def _key(self, config: Mapping[str, Any]) -> int:
        return int(self.space.key(dict(config)), 16)

    def true_regret(self, config: Mapping[str, Any]) -> float:
        total = sum(int(config[n]) for n in self.cat_names) + sum(float(config[n]) for n in self.cont_names)
        return (self.n - total) / self.n

    def evaluate(self, config: Config, budget: float | None, number: int = 0) -> Evaluation:
        b = int(round(budget if budget is not None else self.max_budget))
        x = np.array([float(config[n]) for n in self.cont_names])
        rng = np.random.default_rng([self.seed, self._key(config), b])
        noisy = rng.binomial(b, x) / b  # the mean of b Bernoulli(x_j) draws, per dimension
        f = -(sum(int(config[n]) for n in self.cat_names) + float(noisy.sum()))
        return Evaluation(loss=f, cost=b / self.max_budget, measure=self.true_regret(config),
                          final=b >= self.max_budget)

    def incremental(self, config: Mapping[str, Any], budgets: list[int]) -> Iterator[tuple[int, float]]:
        """(b, f at b) for the given increasing budgets, each the running mean over the same draws."""
        x = np.array([float(config[n]) for n in self.cont_names])
        ones = sum(int(config[n]) for n in self.cat_names)
        rng = np.random.default_rng([self.seed, self._key(config)])
        successes = np.zeros(self.n_cont)
        done = 0
        for b in budgets:
            successes += (rng.random((b - done, self.n_cont)) < x).sum(axis=0)
            done = b
            yield b, -(ones + float((successes / b).sum()))


# -- real NAS: digits-cnn ----------------------------------------------------------------------------
DIGITS_BUDGET_LINE = "budget: {name: epochs, min: 1, max: 8}"


def estimator_sees_study_budget() -> bool:
    """Whether the train estimator sizes its cosine schedule from the *study's* budget range (automl
    commit d895be4, 'Estimators see the study's budget range'); before it, only the space's own
    ``budget.max`` counted."""
    from automl.estimator import EvalContext

    return "budget" in getattr(EvalContext, "__dataclass_fields__", {})


def digits_space(max_epochs: int = 9) -> SearchSpace:
    """The registered ``digits-cnn`` space; the study overrides its budget to 1..``max_epochs`` epochs.

    With an automl older than d895be4 the override alone is not enough: the train estimator sized its
    cosine learning-rate schedule from the *space's* ``budget.max`` (8 in the registered file), so a
    candidate promoted 3 -> 9 epochs continued a schedule that had ended at epoch 8 and differed from a
    fresh 9-epoch run. There, the space is re-read with its budget line set to ``max_epochs``.
    """
    registered = automl.load_space("digits-cnn")
    if estimator_sees_study_budget():
        return registered
    text = Path(registered.source).read_text() if registered.source else None
    if text is None or DIGITS_BUDGET_LINE not in text:
        raise RuntimeError("digits-cnn.yaml changed: cannot find its budget line "
                           f"{DIGITS_BUDGET_LINE!r}; update benchmarks/problems.py")
    return automl.space_from_yaml(text.replace(DIGITS_BUDGET_LINE,
                                               f"budget: {{name: epochs, min: 1, max: {max_epochs}}}"),
                                  source=registered.source)


class DigitsNAS:
    """``digits-cnn`` evaluated by the space's own estimator (``train``): the study runs
    ``study.optimize()`` *without* an objective, with a checkpoint folder, so a promoted candidate
    continues from its checkpoint. The benchmark only watches each trial's outcome
    (:meth:`account`).

    Cost unit: full-budget equivalents = epochs actually trained (``metrics['epochs_trained']``) /
    ``max_epochs``. Infeasible candidates (params > 100,000) cost nothing. A trial whose training
    diverged is charged the epochs it was asked to train (it stopped at the first non-finite loss, so
    this is an upper bound; the runs report how many there were).
    """

    higher_is_better = True
    uses_estimator = True

    def __init__(self, seed: int, max_epochs: int = 9) -> None:
        self.seed = seed
        self.max_epochs = max_epochs
        self.space = digits_space(max_epochs)
        self.name = "digits-cnn"
        self.budget = {"min": 1.0, "max": float(max_epochs)}

    def evaluate(self, config: Config, budget: float | None, number: int) -> Evaluation:
        raise NotImplementedError("digits-cnn is evaluated by the study's estimator; see account()")

    def account(self, budget: float | None, state: str, metrics: Mapping[str, Any], error: str | None) -> Evaluation:
        """The benchmark's view of one estimator trial (``state``: complete | infeasible | failed)."""
        epochs = int(round(budget if budget is not None else self.max_epochs))
        if state == "complete":
            accuracy = float(metrics["accuracy"])
            return Evaluation(loss=-accuracy, cost=float(metrics["epochs_trained"]) / self.max_epochs,
                              measure=accuracy, final=int(metrics["epochs"]) >= self.max_epochs, metrics=metrics)
        if state == "infeasible":
            return Evaluation(loss=math.inf, cost=0.0, measure=0.0, final=False, error=Infeasible(error or ""))
        return Evaluation(loss=math.inf, cost=epochs / self.max_epochs, measure=0.0, final=False,
                          error=RuntimeError(error or "failed"))

    def epochs(self, config: Config, number: int) -> Iterator[tuple[int, float]]:
        """Train ``config`` from scratch epoch by epoch, yielding (epoch, validation accuracy) -- for
        Optuna's own pruning loop. Each epoch is the train estimator itself, continued from the previous
        epoch's checkpoint (an in-memory store), with the same seeding and the cosine schedule over
        ``max_epochs``, so the accuracy after epoch k is exactly the estimator's at budget k.
        Raises :class:`Infeasible` (before any training) for a model over the params constraint and
        ``FloatingPointError`` if training diverges."""
        import uuid

        from automl.artifacts import ArtifactStore
        from automl.estimator import EvalContext
        from automl.space.nodes import Budget
        from estimators.train import TrainEstimator

        store = ArtifactStore(f"memory://problems/{uuid.uuid4().hex}")
        candidate = self.space.candidate(config)
        budget = Budget("epochs", 1, self.max_epochs)
        try:
            for epoch in range(1, self.max_epochs + 1):
                ctx = EvalContext(self.space, self.seed, number, checkpoints=store, budget=budget)
                result = TrainEstimator().evaluate(candidate, epoch, ctx)
                yield epoch, float(result.metrics["accuracy"])
        finally:
            fs, path = store._fs()
            if fs.exists(path):
                fs.rm(path, recursive=True)
