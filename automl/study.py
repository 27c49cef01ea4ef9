"""The search loop: strategy.ask -> executor.submit -> objective/estimator -> strategy.tell -> ledger.

The driver (this process) is the only writer of the ledger; workers only compute. A study resumes
from its ledger: finished trials are kept, trials cut off by a crash or kill are re-run, and the
strategy is rebuilt from the history.
"""
from __future__ import annotations

import inspect
import math
import secrets
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from automl.errors import AutomlError, ConfigError, Infeasible
from automl.estimator import EvalContext, violated_constraints
from automl.executors import Executor, make_executor
from automl.ledger import Ledger, Trial, at_highest_budget, open_storage
from automl.progress import Reporter, SilentReporter
from automl.registry import estimators, strategies
from automl.space import Budget, Config, Objective, SearchSpace, load_space
from automl.strategies.base import Observation, Proposal, Strategy, TrialState
from automl.strategies.pareto import pareto_front

ObjectiveFn = Callable[..., Any]
_INTERRUPTED = "interrupted: the search was stopped while this trial ran; re-queued on resume"


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one trial."""

    state: TrialState
    metrics: Mapping[str, Any]
    error: str | None
    duration_s: float


def _describe_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_trial(objective: ObjectiveFn, config: Config, budget: float | None, number: int,
              takes_budget: bool, takes_number: bool) -> Outcome:
    """Evaluate one trial; a failure becomes a FAILED outcome carrying its message, not a crash."""
    start = time.perf_counter()
    try:
        args: list[Any] = [config]
        if takes_budget:
            args.append(budget)
        if takes_number:
            args.append(number)
        raw = objective(*args)
        state = TrialState.COMPLETE
        error = None
    except Infeasible as exc:
        return Outcome(TrialState.INFEASIBLE, {}, str(exc), time.perf_counter() - start)
    except Exception as exc:  # the trial failed: record why, the search goes on
        return Outcome(TrialState.FAILED, {}, _describe_error(exc), time.perf_counter() - start)
    return Outcome(state, raw if isinstance(raw, Mapping) else {"__value__": raw}, error, time.perf_counter() - start)


@dataclass(frozen=True)
class EstimatorObjective:
    """The objective of a space with a task: evaluate each candidate with the space's estimator."""

    space: SearchSpace
    seed: int
    workdir: Path | None = None

    def __call__(self, config: Config, budget: float | None, number: int) -> Mapping[str, float]:
        estimator = estimators.get(self.space.estimator)(**self.space.estimator_options)
        ctx = EvalContext(space=self.space, seed=self.seed, trial_number=number, workdir=self.workdir)
        return estimator.evaluate(self.space.candidate(config), budget, ctx).all_metrics()


class Study:
    """A search of one space, recorded in a ledger. Create with :func:`create_study`."""

    def __init__(self, space: SearchSpace, ledger: Ledger, strategy: str, strategy_options: Mapping[str, Any],
                 seed: int, objectives: Sequence[Objective], budget: Budget | None,
                 workdir: Path | None = None) -> None:
        self.space = space
        self.workdir = workdir
        self.ledger = ledger
        self.strategy_name = strategy
        self.strategy_options = dict(strategy_options)
        self.seed = seed
        self.objectives = tuple(objectives)
        self.budget = budget
        # Fail at creation, not mid-search, on an unknown strategy or options it cannot take.
        self._new_strategy()

    @property
    def study_name(self) -> str:
        return self.ledger.study_name

    def _new_strategy(self) -> Strategy:
        cls = strategies.get(self.strategy_name)
        return cls(self.space, self.objectives, self.seed, self.budget, **self.strategy_options)

    # -- results ----------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        return self.ledger.trials()

    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state is TrialState.COMPLETE]

    def losses(self, trial: Trial) -> tuple[float, ...]:
        assert trial.values is not None
        return tuple(o.sign * trial.values[o.name] for o in self.objectives)

    @property
    def best_trials(self) -> list[Trial]:
        """The Pareto front of completed trials at the highest budget evaluated (with one objective:
        the best trial(s))."""
        done = at_highest_budget(self.completed())
        if not done:
            return []
        front = [done[i] for i in pareto_front([self.losses(t) for t in done])]
        return sorted(front, key=lambda t: (self.losses(t), t.number))

    @property
    def best(self) -> Trial:
        """The best completed trial (with several objectives: the front's best in the first one)."""
        front = self.best_trials
        if not front:
            raise AutomlError(f"study {self.study_name!r} has no completed trial yet")
        return front[0]

    # -- the loop ---------------------------------------------------------------------------------
    def optimize(self, objective: ObjectiveFn | None = None, n_trials: int | None = None,
                 timeout: float | None = None, n_workers: int = 1, *, executor: Executor | None = None,
                 reporter: Reporter | None = None, total_trials: int | None = None) -> None:
        """Run trials until ``n_trials`` more have finished (or the study holds ``total_trials``
        finished ones, or ``timeout`` seconds pass, or the strategy has nothing more to propose).

        ``objective(config)`` returns a float or a dict of named metrics; it may also take the trial's
        budget as a second argument. Without ``objective`` the space's estimator evaluates each trial.
        """
        if n_trials is None and total_trials is None and timeout is None:
            raise ConfigError("optimize needs n_trials, total_trials or timeout (otherwise it would never stop)")
        if n_trials is not None and n_trials < 0 or n_workers < 1:
            raise ConfigError(f"n_trials must be >= 0 and n_workers >= 1, got {n_trials}, {n_workers}")
        if objective is None:
            if self.space.task is None:
                raise ConfigError(f"space {self.space.name!r} has no task: pass an objective function")
            objective = EstimatorObjective(self.space, self.seed, self.workdir)
            takes_budget, takes_number = True, True
        else:
            takes_budget, takes_number = _arity(objective)
        run = _Run(self, objective, takes_budget, takes_number, executor or make_executor(n_workers),
                   reporter or SilentReporter())
        run.loop(n_trials, total_trials, timeout, own_executor=executor is None)


def _arity(objective: ObjectiveFn) -> tuple[bool, bool]:
    try:
        params = [p for p in inspect.signature(objective).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False, False
    return len(params) >= 2, len(params) >= 3


class _Run:
    """One call of :meth:`Study.optimize`: owns the strategy and the in-flight trials."""

    def __init__(self, study: Study, objective: ObjectiveFn, takes_budget: bool, takes_number: bool,
                 executor: Executor, reporter: Reporter) -> None:
        self.study = study
        self.ledger = study.ledger
        self.objective = objective
        self.takes_budget = takes_budget
        self.takes_number = takes_number
        self.executor = executor
        self.reporter = reporter
        self.running: dict[Future, tuple[int, int, Config, str, float | None, dict[str, Any]]] = {}
        self.results: dict[tuple[str, float | None], Trial] = {}
        self.requeue: list[Trial] = []
        self.strategy = study._new_strategy()
        self.finished_now = 0
        self.failed = 0
        self.next_number = 0
        self.best_value: float | None = None

    def _recover(self) -> int:
        """Turn trials left RUNNING by a dead driver into interrupted ones; rebuild the strategy."""
        trials = self.ledger.trials()
        for t in trials:
            if t.state is TrialState.RUNNING:
                self.ledger.finish(self.ledger.trial_id(t.number), TrialState.FAILED, {},
                                   error=_INTERRUPTED, interrupted=True)
        trials = self.ledger.trials()
        requeued = {t.info.get("requeue_of") for t in trials}
        self.requeue = [t for t in trials if (t.interrupted or t.state is TrialState.RUNNING)
                        and t.number not in requeued]
        history = [self._observation(t) for t in trials if not t.interrupted]
        self.strategy.restore(history, [self._observation(t) for t in self.requeue])
        for t in trials:
            if t.state is TrialState.COMPLETE:
                self.results.setdefault((t.key, t.budget), t)
        self.failed = sum(t.state is TrialState.FAILED and not t.interrupted for t in trials)
        self.next_number = len(trials)
        for t in trials:
            if t.state is TrialState.COMPLETE:
                self._track_best(t)
        return sum(not t.interrupted for t in trials)

    def _observation(self, t: Trial) -> Observation:
        losses = self.study.losses(t) if t.state is TrialState.COMPLETE and t.values else None
        return Observation(number=t.number, config=dict(t.config), key=t.key, state=t.state,
                           losses=losses, budget=t.budget, info=t.info)

    def loop(self, n_trials: int | None, total_trials: int | None, timeout: float | None, own_executor: bool) -> None:
        finished_before = self._recover()
        target = n_trials if n_trials is not None else (
            max(0, total_trials - finished_before) if total_trials is not None else None)
        deadline = time.monotonic() + timeout if timeout is not None else None
        self.reporter.start(None if target is None else finished_before + target, finished_before)
        self.done_total = finished_before
        try:
            while True:
                exhausted = self._fill(target, deadline)
                if not self.running:
                    if exhausted or not self._more_wanted(target, deadline):
                        break
                    continue
                done, _ = wait(list(self.running), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    self._collect(future)
        except BaseException:
            # Ctrl-C (or any crash of the driver): trials in flight are recorded as interrupted so
            # that the next run re-queues them; nothing finished is lost.
            for future, (trial_id, *_rest) in list(self.running.items()):
                future.cancel()
                self.ledger.finish(trial_id, TrialState.FAILED, {}, error=_INTERRUPTED, interrupted=True)
            self.running.clear()
            if own_executor:
                self.executor.shutdown(cancel=True)
            raise
        finally:
            self.reporter.stop()
        if own_executor:
            self.executor.shutdown()

    def _more_wanted(self, target: int | None, deadline: float | None) -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return target is None or self.finished_now + len(self.running) < target

    def _fill(self, target: int | None, deadline: float | None) -> bool:
        """Start trials while slots are free; True when the strategy has nothing more to propose."""
        while len(self.running) < self.executor.slots and self._more_wanted(target, deadline):
            info: dict[str, Any]
            if self.requeue:
                old = self.requeue.pop(0)
                config, budget, info = dict(old.config), old.budget, {**old.info, "requeue_of": old.number}
                info.pop("duplicate_of", None)
            else:
                proposal: Proposal | None = self.strategy.ask(self.next_number)
                if proposal is None:
                    return not self.running
                config, budget, info = proposal.config, proposal.budget, dict(proposal.info)
            self._start(config, budget, info)
        return False

    def _start(self, config: Config, budget: float | None, info: dict[str, Any]) -> None:
        study = self.study
        study.space.validate(config)
        if budget is not None and study.budget is not None and not study.budget.min <= budget <= study.budget.max:
            raise ConfigError(f"budget {budget} is outside the declared range "
                              f"[{study.budget.min}, {study.budget.max}] of {study.budget.name!r}")
        if budget is None and study.budget is not None:
            budget = study.budget.max
        key = study.space.key(config)
        expected = self.next_number
        previous = self.results.get((key, budget))
        if previous is not None:
            info = {**info, "duplicate_of": previous.number}
        trial_id, number = self.ledger.start(config, key, budget, study.space.flat_params(config),
                                             self._distributions, info)
        if number != expected:
            raise AutomlError(f"another process is adding trials to study {study.study_name!r}; "
                              "one driver per study (use --workers for parallelism)")
        self.next_number = number + 1
        if previous is not None:  # the same candidate at the same budget: reuse, do not re-evaluate
            outcome = Outcome(TrialState.COMPLETE, dict(previous.metrics), None, 0.0)
            self._record(trial_id, number, config, key, budget, info, outcome)
            return
        try:
            future = self.executor.submit(run_trial, self.objective, config, budget, number,
                                          self.takes_budget, self.takes_number)
        except BaseException:  # Ctrl-C inside an inline trial: record it as interrupted, then stop
            self.ledger.finish(trial_id, TrialState.FAILED, {}, error=_INTERRUPTED, interrupted=True)
            raise
        self.running[future] = (trial_id, number, config, key, budget, info)
        self._report()

    @property
    def _distributions(self) -> Mapping[str, Any]:
        cached = getattr(self, "_dist_cache", None)
        if cached is None:
            cached = self._dist_cache = self.study.space.flatten()
        return cached

    def _collect(self, future: Future) -> None:
        trial_id, number, config, key, budget, info = self.running.pop(future)
        try:
            outcome: Outcome = future.result()
        except BrokenProcessPool as exc:
            outcome = Outcome(TrialState.FAILED, {}, f"the worker process died (killed, out of memory or crashed): {exc}", 0.0)
        self._record(trial_id, number, config, key, budget, info, outcome)

    def _record(self, trial_id: int, number: int, config: Config, key: str, budget: float | None,
                info: Mapping[str, Any], outcome: Outcome) -> None:
        state, metrics, error = outcome.state, dict(outcome.metrics), outcome.error
        if state is TrialState.COMPLETE:
            state, metrics, error = self._check(metrics)
        self.ledger.finish(trial_id, state, metrics, error=error, duration_s=outcome.duration_s)
        trial = Trial(number=number, config=config, key=key, state=state,
                      values={o.name: float(metrics[o.name]) for o in self.study.objectives}
                      if state is TrialState.COMPLETE else None,
                      metrics=metrics, budget=budget, error=error, duration_s=outcome.duration_s, info=info)
        if state is TrialState.COMPLETE:
            self.results.setdefault((key, budget), trial)
            self._track_best(trial)
        if state is TrialState.FAILED:
            self.failed += 1
        self.finished_now += 1
        self.done_total += 1
        self.strategy.tell(self._observation(trial))
        self._report()

    def _check(self, metrics: dict[str, Any]) -> tuple[TrialState, dict[str, Any], str | None]:
        objectives = self.study.objectives
        if "__value__" in metrics:
            if len(objectives) != 1:
                return (TrialState.FAILED, {}, f"the objective returned one number, but the study has "
                        f"{len(objectives)} objectives ({', '.join(o.name for o in objectives)}): return a dict")
            metrics = {objectives[0].name: metrics.pop("__value__")}
        for o in objectives:
            value = metrics.get(o.name)
            if value is None:
                return TrialState.FAILED, metrics, f"the objective returned no {o.name!r} (got {sorted(metrics)})"
            try:
                number = float(value)
            except (TypeError, ValueError):
                return TrialState.FAILED, metrics, f"{o.name!r} is {value!r}, not a number"
            if not math.isfinite(number):
                return TrialState.FAILED, metrics, f"{o.name!r} is {number} (not finite)"
        try:
            violated = violated_constraints(self.study.space, metrics, require_all=True)
        except ConfigError as exc:
            return TrialState.FAILED, metrics, str(exc)
        if violated:
            return TrialState.INFEASIBLE, metrics, "; ".join(violated)
        return TrialState.COMPLETE, metrics, None

    def _track_best(self, trial: Trial) -> None:
        """The best value of the first objective so far, for the progress line."""
        first = self.study.objectives[0]
        value = trial.values[first.name]  # type: ignore[index]
        if self.best_value is None or first.sign * value < first.sign * self.best_value:
            self.best_value = value

    def _report(self) -> None:
        first = self.study.objectives[0].name
        best = "-" if self.best_value is None else f"{first}={self.best_value:.4g}"
        self.reporter.update(self.done_total, len(self.running), self.failed, best)


def create_study(space: SearchSpace | str | Path, strategy: str | None = None, storage: str | None = None,
                 study_name: str | None = None, seed: int | None = None, direction: str = "minimize",
                 strategy_options: Mapping[str, Any] | None = None,
                 budget: Mapping[str, float] | Budget | None = None, workdir: str | Path | None = None) -> Study:
    """Create a study, or resume the one of that name in ``storage``.

    ``space``: a :class:`SearchSpace`, a registered name or a YAML/NNI-JSON path. ``storage``: an
    SQLAlchemy URL (``sqlite:///runs.db``) or None for memory. ``study_name`` defaults to the space's
    name, so the same call resumes. ``seed`` defaults to the resumed study's seed, else a random one.
    ``direction`` applies when the space declares no objectives (the objective returns one number).
    ``budget`` overrides the space's multi-fidelity range. ``workdir`` is where estimators keep
    checkpoints (a candidate promoted to a larger budget continues from its checkpoint).
    """
    space = load_space(space)
    if space.objectives:
        objectives = space.objectives
    else:
        if direction not in ("minimize", "maximize", "min", "max"):
            raise ConfigError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        objectives = (Objective("value", direction[:3]),)
    budget_obj = _budget(budget) if budget is not None else space.budget
    strategy_name = strategy or space.defaults.strategy
    options = dict(space.defaults.options if strategy is None or strategy == space.defaults.strategy else {})
    options.update(strategy_options or {})
    strategies.get(strategy_name)  # an unknown name fails before anything is written
    ledger = Ledger(open_storage(storage), study_name or space.name, objectives, attrs={
        "space_fingerprint": space.fingerprint, "space_name": space.name, "space_source": space.source or "",
        "seed": seed if seed is not None else secrets.randbelow(2**31), "strategy": strategy_name,
    })
    stored_seed = ledger.study_attrs().get("seed")
    return Study(space, ledger, strategy_name, options, int(seed if seed is not None else stored_seed),
                 objectives, budget_obj, Path(workdir) if workdir is not None else None)


def _budget(raw: Mapping[str, float] | Budget) -> Budget:
    if isinstance(raw, Budget):
        return raw
    try:
        lo, hi = float(raw["min"]), float(raw["max"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"budget must be {{'min': number, 'max': number[, 'name': str]}}, got {raw!r}") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"budget needs 0 < min <= max, got min={lo}, max={hi}")
    return Budget(name=str(raw.get("name", "budget")), min=lo, max=hi)
