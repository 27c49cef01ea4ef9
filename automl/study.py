"""Studies: ``create_study`` and :class:`Study`, the user-facing handle on a search and its ledger.

The loop itself is in :mod:`automl.loop`, the worker side of a trial in :mod:`automl.worker`.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from automl.artifacts import ArtifactStore
from automl.components import construct
from automl.errors import AutomlError, ConfigError, RegistryError
from automl.estimator import EvalContext
from automl.evaluation import EvaluationSetup, prepare_evaluation
from automl.executors import Executor, check_executor_spec, make_executor
from automl.executors.devices import parse_share
from automl.executors.isolation import Limits
from automl.executors.threads import ThreadPolicy
from automl.ledger import Ledger, Trial, comparable, open_storage, trial_losses
from automl.loop import SearchLoop, SearchTarget, TrialWatch
from automl.progress import Reporter, SilentReporter
from automl.pruning import PrunerSpec, TrialHandle, parse_pruner
from automl.selection import BestValue, Selection, make_selection
from automl.space import Budget, Config, Objective, SearchSpace, load_space
from automl.strategies.base import Strategy, TrialState, strategies
from automl.strategies.pareto import pareto_front
from automl.worker import ObjectiveFn, TrialCall


@dataclass(frozen=True)
class EstimatorObjective:
    """The objective of a space with a task: evaluate each candidate with the space's estimator."""

    space: SearchSpace
    setup: EvaluationSetup
    seed: int
    checkpoints: ArtifactStore | None = None
    budget: Budget | None = None

    def __call__(self, config: Config, trial: TrialHandle) -> Mapping[str, float]:
        info = trial.info
        # a strategy may name another estimator for a trial (one-shot: the supernet, then stand-alone)
        estimator = self.setup.make_estimator(info.get("estimator"), info.get("estimator_options"))
        if trial.monitor is not None:
            trial.monitor.begin()
        ctx = EvalContext(space=self.space, seed=self.seed, trial_number=trial.number, checkpoints=self.checkpoints,
                          budget=self.budget, info=info, task=self.setup.task, regimes=self.setup.regimes,
                          metric_sets=self.setup.metric_sets,
                          monitor=trial.monitor, trial=trial)
        return estimator.evaluate(self.space.candidate(config), trial.budget, ctx).all_metrics()


class Study:
    """A search of one space, recorded in a ledger. Create with :func:`create_study`."""

    def __init__(self, space: SearchSpace, ledger: Ledger, strategy: str, strategy_options: Mapping[str, Any],
                 seed: int, objectives: Sequence[Objective], budget: Budget | None,
                 checkpoints: ArtifactStore | None = None, setup: EvaluationSetup | None = None,
                 pruner: PrunerSpec | None = None, selection: Selection | None = None,
                 executor: str | None = None) -> None:
        self.space = space
        self.checkpoints = checkpoints
        self.ledger = ledger
        self.strategy_name = strategy
        self.strategy_options = dict(strategy_options)
        self.seed = seed
        self.objectives = tuple(objectives)
        self.budget = budget
        self.setup = setup if setup is not None else prepare_evaluation(space)
        self.pruner = pruner
        #: the rule that chooses :attr:`best` (:mod:`automl.selection`)
        self.selection = selection if selection is not None else BestValue()
        #: where :meth:`optimize` runs trials without an ``executor`` (a :func:`make_executor` spec; None: local)
        self.executor_spec = executor

    @property
    def study_name(self) -> str:
        return self.ledger.study_name

    def new_strategy(self) -> Strategy:
        """A fresh strategy of the study's kind (the loop rebuilds its state from the ledger)."""
        return make_strategy(self.strategy_name, self.space, self.objectives, self.seed, self.budget,
                             self.strategy_options)

    def enqueue(self, config: Mapping[str, Any], *, once: bool = False) -> None:
        """Evaluate ``config`` before anything the strategy proposes (a warm start from a previous study or
        a published architecture); missing values are not filled in: the config must be complete and valid.
        Kept in the ledger, so a resumed study still evaluates it once. ``once``: skip a config that is
        already enqueued or evaluated."""
        problems = self.space.problems(dict(config))
        if problems:
            raise ConfigError("cannot enqueue an invalid config: " + "; ".join(problems))
        queued = list(self.ledger.study_attrs().get("enqueued", []))
        if once and (dict(config) in queued or any(t.config == config for t in self.trials)):
            return
        queued.append(dict(config))
        self.ledger.set_study_attr("enqueued", queued)

    # -- results ----------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        return self.ledger.trials()

    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state is TrialState.COMPLETE]

    def losses(self, trial: Trial) -> tuple[float, ...]:
        return trial_losses(self.objectives, trial)

    @property
    def best_trials(self) -> list[Trial]:
        """The Pareto front of the comparable completed trials (:func:`automl.ledger.comparable`; with
        one objective: the best trial(s))."""
        done = comparable(self.completed())
        if not done:
            return []
        front = [done[i] for i in pareto_front([self.losses(t) for t in done])]
        return sorted(front, key=lambda t: (self.losses(t), t.number))

    @property
    def best(self) -> Trial:
        """The trial the study's selection rule chooses among the comparable completed ones (by default the
        best first objective; with several objectives: the front's best in the first one)."""
        done = comparable(self.completed())
        if not done:
            raise AutomlError(f"study {self.study_name!r} has no completed trial yet")
        chosen = self.selection.pick(done, self.objectives)
        if chosen is None:
            raise AutomlError(f"study {self.study_name!r}: no completed trial reports a finite "
                              f"{', '.join(type(self.selection).needs)}, which selection "
                              f"{self.space.selection[0]!r} chooses by{type(self.selection).hint}")
        return chosen

    # -- the loop ---------------------------------------------------------------------------------
    def optimize(self, objective: ObjectiveFn | None = None, n_trials: int | None = None,
                 timeout: float | None = None, n_workers: int = 1, *, executor: Executor | None = None,
                 reporter: Reporter | None = None, total_trials: int | None = None, max_retries: int = 0,
                 trial_timeout: float | None = None, max_memory_mb: int | None = None,
                 threads: int | None = None, progress_dir: str | Path | None = None,
                 gpus_per_trial: float = 0) -> None:
        """Run trials until ``n_trials`` more have finished (or the study holds ``total_trials``
        finished ones, or ``timeout`` seconds pass, or the strategy has nothing more to propose).

        ``objective(config)`` returns a float or a dict of named metrics; it may also take the trial's
        budget as a second argument. Without ``objective`` the space's estimator evaluates each trial.
        ``executor`` overrides ``n_workers`` (e.g. a Dask executor); without it trials run where the study's
        ``executor`` spec says, on ``n_workers`` workers (with ``simulated``, ``timeout`` is in simulated
        seconds). ``trial_timeout`` and
        ``max_memory_mb`` run each trial in its own child process under those limits; a trial whose
        process dies is retried up to ``max_retries`` times.
        With the space's estimator, ``threads`` fixes each trial's torch threads (default: chosen from
        the machine's load, :mod:`automl.executors.threads`) and long phases of a trial report their
        progress to ``progress_dir`` (shown by a rich ``reporter``). An objective whose second parameter
        is named ``trial`` gets a :class:`~automl.pruning.TrialHandle` (``trial.report(value, step)``,
        ``trial.should_stop()``) instead of the budget, for the study's pruner.
        ``gpus_per_trial`` K > 0 gives each trial K GPUs (a share below 1, or whole GPUs) that it alone sees
        (``CUDA_VISIBLE_DEVICES``, in a child process of its own), never more trials at once than the GPUs
        hold; the ledger records them as the trial's ``info["devices"]`` (:mod:`automl.executors.devices`).
        """
        if n_trials is None and total_trials is None and timeout is None and not strategies.get(
                self.strategy_name).plans_own_budget:
            raise ConfigError("optimize needs n_trials, total_trials or timeout (otherwise it would never stop)")
        if (n_trials is not None and n_trials < 0) or n_workers < 1 or max_retries < 0:
            raise ConfigError(f"n_trials and max_retries must be >= 0 and n_workers >= 1, "
                              f"got {n_trials}, {max_retries}, {n_workers}")
        if (trial_timeout is not None and trial_timeout <= 0) or (max_memory_mb is not None and max_memory_mb <= 0):
            raise ConfigError(f"trial_timeout and max_memory_mb must be positive, got {trial_timeout}, {max_memory_mb}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        share = parse_share(gpus_per_trial)
        runner = executor or make_executor(n_workers, self.executor_spec)
        try:
            gpus = runner.gpu_placement(share) if share else None
        except BaseException:
            if executor is None:
                runner.shutdown(cancel=True)
            raise
        concurrent = min(runner.slots, gpus.slots) if gpus is not None else runner.slots
        watch = TrialWatch(pruner=self.pruner)
        if objective is None:
            if self.space.task is None and not self.setup.taskless:
                raise ConfigError(f"space {self.space.name!r} has no task: pass an objective function")
            check_objective_metrics(self.space, self.setup)
            objective = EstimatorObjective(self.space, self.setup, self.seed, self.checkpoints, self.budget)
            call = TrialCall(objective, 2, Limits(trial_timeout, max_memory_mb), handle=True)
            plan_threads = (runner.local or threads) and not self.setup.taskless  # a benchmark function: no torch
            watch = TrialWatch(threads=ThreadPolicy(concurrent, fixed=threads) if plan_threads else None,
                               progress=Path(progress_dir) if progress_dir is not None else None, pruner=self.pruner)
        else:
            arity, wants_trial = _arity(objective)
            call = TrialCall(objective, arity, Limits(trial_timeout, max_memory_mb), handle=wants_trial)
        target = SearchTarget(self.space, self.ledger, self.objectives, self.budget)
        loop = SearchLoop(target, self.new_strategy(), call, runner, reporter or SilentReporter(), max_retries, watch,
                          gpus)
        loop.run(n_trials, total_trials, timeout, own_executor=executor is None)


def make_strategy(name: str, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                  budget: Budget | None, options: Mapping[str, Any]) -> Strategy:
    """A registered strategy, with a clear error for options it cannot take."""
    return construct(strategies.get(name), options, kind="strategy", name=name,
                     args=(space, objectives, seed, budget))


def _arity(objective: ObjectiveFn) -> tuple[int, bool]:
    """How many positional arguments (config, budget, number, info) ``objective`` takes, and whether it
    takes ``(config, trial)``: a second parameter named ``trial`` gets the trial's handle."""
    try:
        params = [p for p in inspect.signature(objective).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return 1, False
    return max(1, min(len(params), 4)), len(params) == 2 and params[1].name == "trial"


def create_study(space: SearchSpace | str | Path, strategy: str | None = None, storage: str | None = None,
                 study_name: str | None = None, seed: int | None = None, direction: str = "minimize",
                 strategy_options: Mapping[str, Any] | None = None,
                 budget: Mapping[str, float] | Budget | None = None, checkpoints: str | Path | None = None,
                 regimes: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
                 pruner: str | Mapping[str, Any] | PrunerSpec | None = None, trust_code: bool = False,
                 selection: str | Mapping[str, Any] | None = None, executor: str | None = None,
                 objectives: Mapping[str, str] | None = None) -> Study:
    """Create a study, or resume the one of that name in ``storage``.

    ``space``: a :class:`SearchSpace`, a registered name or a YAML/NNI-JSON path. ``storage``: an
    SQLAlchemy URL (``sqlite:///runs.db``) or None for memory. ``study_name`` defaults to the space's
    name, so the same call resumes. ``seed`` defaults to the resumed study's seed, else a random one.
    ``direction`` applies when the space declares no objectives (the objective returns one number).
    ``budget`` overrides the space's multi-fidelity range. ``checkpoints`` (a folder or an fsspec URL
    such as ``s3://bucket/run``) is where estimators keep training state, so that a candidate
    promoted to a larger budget continues from its checkpoint; None: always train from scratch.
    ``regimes`` (``[(name, options), ...]``) replaces the space's training regimes. ``pruner`` (a name
    such as ``median`` or ``asha``, ``{name, options}``, default the space's ``search.pruner``) stops
    trials early on the intermediate values their objective reports (single-objective studies).
    ``selection`` (``expansion``, ``oracle``, ``{name, options}``; default the space's ``selection``, else
    ``best-value``) is the rule :attr:`Study.best` chooses by (:mod:`automl.selection`); like a regime it is
    part of the study (the estimator computes what the rule reads).
    ``objectives`` (``{"accuracy": "max", "latency_ms": "min"}``) replaces the space's objectives: another study
    (it changes the fingerprint); a metric the space's estimator declares it never reports is refused.
    ``executor`` is where :meth:`Study.optimize` runs trials by default: ``local`` (the default),
    ``simulated`` (in simulated time: :mod:`automl.executors.simulated`), ``dask://HOST:PORT`` or ``dask-local:N``.
    ``trust_code`` lets a space file given by path import the code it names (``builder:
    "package.module:function"``); without it such a file is refused (:mod:`automl.space.trust`).

    Everything the evaluation needs is checked here, before anything is written: the task and its
    options, the estimator's options and task family, the regimes' options (one ConfigError naming
    the file, line and option).
    """
    check_executor_spec(executor)
    space = load_space(space, trust_code=trust_code)
    setup = prepare_evaluation(space, regimes)
    if regimes is not None:  # a different regime is a different study: it changes the fingerprint
        listed = [{"name": name, "options": dict(options)} for name, options in regimes]
        space = dataclasses.replace(space, regimes=tuple((n, dict(o)) for n, o in regimes),
                                    document={**space.document, "regime": listed})
    if selection is not None:  # what the estimator computes for the rule is part of the study: the fingerprint
        chosen = (selection, {}) if isinstance(selection, str) else _named_selection(selection)
        space = dataclasses.replace(space, selection=chosen, document={
            **space.document, "selection": chosen[0] if not chosen[1] else {"name": chosen[0], "options": chosen[1]}})
    if objectives is not None:  # other objectives are another study: they change the fingerprint
        chosen_objectives = _objectives(objectives)
        space = dataclasses.replace(space, objectives=chosen_objectives, document={
            **space.document, "objectives": {o.name: o.direction for o in chosen_objectives}})
        check_objective_metrics(space, setup)
    if space.objectives:
        study_objectives = space.objectives
    else:
        if direction not in ("minimize", "maximize", "min", "max"):
            raise ConfigError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        study_objectives = (Objective("value", direction[:3]),)
    budget_obj = _budget(budget) if budget is not None else space.budget
    strategy_name = strategy or space.defaults.strategy
    options = dict(space.defaults.options if strategy is None or strategy == space.defaults.strategy else {})
    options.update(strategy_options or {})
    _check_continues(strategy_name, space, setup)
    make_strategy(strategy_name, space, study_objectives, seed or 0, budget_obj, options)  # fails before writing
    rule = _selection(space, study_objectives, from_space=selection is None)
    _check_selection_metrics(space, setup, rule)
    pruner_spec = parse_pruner(pruner if pruner is not None else space.defaults.pruner)
    if pruner_spec is not None:
        if len(study_objectives) > 1:
            raise ConfigError(f"a pruner stops trials on one objective; this study has {len(study_objectives)} "
                              f"({', '.join(o.name for o in study_objectives)})", field="pruner")
        pruner_spec.build()  # an unknown pruner or a bad option fails here
    attrs = {"space_fingerprint": space.fingerprint, "space_name": space.name, "space_source": space.source or "",
             "seed": seed if seed is not None else secrets.randbelow(2**31), "strategy": strategy_name}
    if checkpoints is not None:  # where trained models are kept: what ``automl export`` reads
        attrs["checkpoints"] = str(checkpoints)
    # the space itself, so that a reader of the ledger (export, a resumed pipeline) rebuilds exactly it
    attrs["space_document"] = {"document": json.loads(json.dumps(space.document, default=str)),
                               "source": space.source}
    ledger = Ledger(open_storage(storage), study_name or space.name, study_objectives, attrs=attrs)
    stored_seed = int(ledger.study_attrs()["seed"])
    return Study(space, ledger, strategy_name, options, seed if seed is not None else stored_seed,
                 study_objectives, budget_obj,
                 ArtifactStore(str(checkpoints)) if checkpoints is not None else None, setup, pruner_spec, rule,
                 executor)


def _check_continues(strategy: str, space: SearchSpace, setup: EvaluationSetup) -> None:
    """That a strategy whose trials continue each other's checkpoints (pbt) has an estimator that checkpoints
    (a space without a task or estimator is searched with an objective function, which keeps its own state)."""
    if not strategies.get(strategy).continues_checkpoints or (setup.task is None and not setup.taskless):
        return
    from automl.estimator import estimators

    if not estimators.get(setup.estimator).can_checkpoint:
        raise ConfigError(f"{strategy} continues trials from checkpoints; estimator {setup.estimator!r} cannot "
                          "checkpoint")


def _named_selection(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or set(raw) - {"name", "options"} \
            or not isinstance(raw.get("options", {}), Mapping):
        raise ConfigError(f"selection must be a name or {{name, options}}, got {raw!r}", field="selection")
    return raw["name"], dict(raw.get("options", {}))


def _check_selection_metrics(space: SearchSpace, setup: EvaluationSetup, rule: Selection) -> None:
    """That the space's estimator reports what the rule reads, for the space's task (a study with its own
    objective function reports them itself)."""
    if setup.task is None or not type(rule).needs:
        return
    from automl.estimator import estimators

    reported = estimators.get(setup.estimator).selection_metrics.get(setup.task.family, frozenset())
    missing = [m for m in type(rule).needs if m not in reported]
    trained_on = getattr(setup.task.info, "train", None)  # a multi-environment task's training environments
    if not missing and "variation" in type(rule).needs and trained_on is not None and len(trained_on) < 2:
        raise space.error(("selection",) if "selection" in space.document else (),
                          f"selection {space.selection[0]!r} measures how features vary across training environments; "
                          f"task {space.task!r} trains on one ({', '.join(trained_on)})")
    if missing:
        raise space.error(("selection",) if "selection" in space.document else (),
                          f"selection {space.selection[0]!r} reads {', '.join(missing)}, which estimator "
                          f"{setup.estimator!r} does not report for {setup.task.family} tasks")


def _objectives(raw: Mapping[str, str]) -> tuple[Objective, ...]:
    """``{"accuracy": "max", "latency_ms": "min"}`` as objectives (``maximize``/``minimize`` too)."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"objectives must be a non-empty mapping metric: max|min, got {raw!r}", field="objectives")
    out = []
    for name, direction in raw.items():
        if not isinstance(name, str) or not name or direction not in ("max", "min", "maximize", "minimize"):
            raise ConfigError(f"objective {name!r}: expected a metric name and 'max' or 'min', got {direction!r}",
                              field="objectives")
        out.append(Objective(name, direction[:3]))
    return tuple(out)


def check_objective_metrics(space: SearchSpace, setup: EvaluationSetup) -> None:
    """That the space's estimator reports every objective, where it declares what it reports
    (``Estimator.reports``); metric sets and regimes with metrics of their own may add any name, so with
    those nothing is checked. A study with its own objective function reports what it likes."""
    if setup.task is None:
        return
    from automl.estimator import estimators
    from automl.training.regime import Regime

    reported = estimators.get(setup.estimator).reports
    if reported is None or setup.metric_sets or any(spec.cls().metrics is not Regime.metrics
                                                     for spec in setup.regimes):
        return
    missing = [o.name for o in space.objectives if o.name not in reported]
    if missing:
        raise ConfigError(f"{missing[0]!r} is not a metric estimator {setup.estimator!r} reports (it reports "
                          f"{', '.join(sorted(reported))})", field="objectives")


def _selection(space: SearchSpace, objectives: Sequence[Objective], from_space: bool) -> Selection:
    """The study's checked selection rule; an error points at the space's ``selection:`` when it came from there."""
    name, options = space.selection
    try:
        return make_selection(name, options, objectives)
    except (ConfigError, RegistryError) as exc:
        if not from_space:
            raise ConfigError(f"selection {name!r}: {getattr(exc, 'message', exc)}", field="selection") from None
        field_ = getattr(exc, "field", None)
        where: tuple[str, ...] = ("selection",) if isinstance(space.document.get("selection"), str) or \
            field_ in (None, "selection") else ("selection", "options", field_)
        raise space.error(where, getattr(exc, "message", str(exc))) from None


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
