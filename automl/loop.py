"""The driver's search loop: strategy.ask -> executor.submit -> worker -> strategy.tell -> ledger.

The driver (this process) is the only writer of the ledger. On start it recovers the study: trials
left RUNNING by a dead driver are marked as such and re-run, the strategy is rebuilt from the
history. A trial whose process crashed is retried up to ``max_retries`` times; the failed attempt
stays in the ledger, marked re-queued, and does not count as a finished trial.
"""
from __future__ import annotations

import math
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from optuna.trial import TrialState as OptunaState

from automl.errors import AutomlError, ConfigError, StorageError
from automl.estimator import violated_constraints
from automl.executors import Executor
from automl.executors.devices import GpuPlacement, GpuRequest
from automl.executors.threads import ThreadPlan, ThreadPolicy
from automl.ledger import Ledger, Trial, trial_losses
from automl.progress import ProgressWatcher, Reporter, TrialMonitor
from automl.pruning import PrunerSpec, PruningContext
from automl.space import Budget, Config, Objective, SearchSpace
from automl.strategies.base import Observation, Proposal, Strategy, TrialState
from automl.worker import Outcome, TrialCall, run_trial

INTERRUPTED = "interrupted: the search was stopped while this trial ran; re-queued on resume"
HEARTBEAT_S = 10.0  # how often a running driver says it is alive


@dataclass
class _Running:
    trial_id: int
    number: int
    config: Config
    key: str
    budget: float | None
    info: dict[str, Any]
    gpus: GpuRequest | None = None  # the GPUs it holds until it ends


def _is_worker_death(exc: BaseException) -> bool:
    """A local worker process died, or Dask gave up on a task whose workers kept dying."""
    if isinstance(exc, BrokenProcessPool):
        return True
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(exc, distributed.KilledWorker)


@dataclass(frozen=True)
class SearchTarget:
    """What a search loop runs: the space, its ledger, the objectives and the multi-fidelity range."""

    space: SearchSpace
    ledger: Ledger
    objectives: tuple[Objective, ...]
    budget: Budget | None

    @property
    def study_name(self) -> str:
        return self.ledger.study_name

    def losses(self, trial: Trial) -> tuple[float, ...]:
        return trial_losses(self.objectives, trial)


@dataclass(frozen=True)
class TrialWatch:
    """How the loop watches trials: ``threads`` plans each trial's torch threads (None: trials keep the
    threads they have), ``progress`` is the folder long phases report to (None: no phase bars),
    ``pruner`` stops trials whose intermediate values are unpromising (None: no pruning)."""

    threads: ThreadPolicy | None = None
    progress: Path | None = None
    pruner: PrunerSpec | None = None


class SearchLoop:
    """One call of :meth:`Study.optimize`: owns the strategy, the executor and the trials in flight."""

    def __init__(self, study: SearchTarget, strategy: Strategy, call: TrialCall, executor: Executor,
                 reporter: Reporter, max_retries: int = 0, watch: TrialWatch | None = None,
                 gpus: GpuPlacement | None = None) -> None:
        self.study = study
        self.gpus = gpus  # how trials get their GPUs (None: no assignment); it caps the trials in flight
        self.ledger = study.ledger
        self.call = call
        self.executor = executor
        self.reporter = reporter
        self.max_retries = max_retries
        self.watch = watch or TrialWatch()
        self.running: dict[Future[Outcome], _Running] = {}
        # (candidate key, budget, estimator named by the strategy, replica) -> the trial that evaluated it
        self.results: dict[tuple[str, float | None, str | None, Any], Trial] = {}
        self.requeue: list[Trial] = []
        self.strategy = strategy
        self.plan: ThreadPlan | None = None
        self.watcher: ProgressWatcher | None = None
        self.enqueued: list[tuple[int, Config]] = []
        self.finished_now = 0
        self.done_total = 0
        self.failed = 0
        self.next_number = 0
        # A trial's slot is its place in the sequence an uninterrupted run would make: a re-run takes the
        # slot of the attempt it replaces, so strategies (asked and told by slot) and trial seeds see the
        # same numbers however often the search was killed.
        self.slot_of: dict[int, int] = {}  # ledger trial number -> slot
        self.holder: dict[int, int] = {}  # slot -> ledger number of its latest trial
        self.next_slot = 0
        self.best_value: float | None = None
        self.last_beat = 0.0
        self.claim = self.ledger.driver_claim()
        self.lost = False  # another driver took the study over: what runs here is no longer ours to record
        self.distributions = study.space.flatten()

    # -- recovery ---------------------------------------------------------------------------------
    def _beat(self, release: bool = False) -> None:
        """Say in the ledger that this driver is alive (``release``: that it has stopped)."""
        now = time.time()
        if release or now - self.last_beat >= HEARTBEAT_S:
            try:
                self.claim.beat(release=release)
            except StorageError:
                self.lost = True  # the trials in flight now belong to the driver that took over
                raise
            self.last_beat = now

    def _recover(self) -> int:
        """Requeue what a dead driver left running; rebuild the strategy; count finished trials."""
        self.claim.take()
        self.last_beat = time.time()
        trials = self.ledger.trials()
        for t in trials:
            if t.state is TrialState.RUNNING:
                self.ledger.finish(self.ledger.trial_id(t.number), TrialState.FAILED, {}, error=INTERRUPTED,
                                   requeued=True)
        trials = self.ledger.trials()
        started = {int(t.info["enqueued"]) for t in trials if "enqueued" in t.info}
        queued = self.ledger.study_attrs().get("enqueued", [])
        self.enqueued = [(i, c) for i, c in enumerate(queued) if i not in started]
        for t in trials:
            self._assign_slot(t.number, t.info)
            self.strategy.mark_seen(t.key)
        rerun = {t.info.get("requeue_of") for t in trials}
        self.requeue = [t for t in trials if t.requeued and t.number not in rerun]
        self.strategy.restore([self._observation(t) for t in trials if not t.requeued],
                              [self._observation(t) for t in self.requeue])
        for t in trials:
            if t.state is TrialState.COMPLETE:
                self.results.setdefault((t.key, t.budget, t.info.get("estimator"), t.info.get("replica")), t)
                self._track_best(t)
        self.failed = sum(t.state is TrialState.FAILED and not t.requeued for t in trials)
        self.next_number = len(trials)
        self.executor.restore(t.metrics for t in trials if not t.requeued)  # e.g. a simulated clock
        return sum(not t.requeued for t in trials)

    def _slot_for(self, info: Mapping[str, Any]) -> int:
        """A re-run's slot is the one of the attempt it replaces; any other trial takes the next slot."""
        rerun_of = info.get("requeue_of")
        return self.slot_of[rerun_of] if isinstance(rerun_of, int) and rerun_of in self.slot_of else self.next_slot

    def _assign_slot(self, number: int, info: Mapping[str, Any]) -> None:
        slot = self._slot_for(info)
        self.slot_of[number] = slot
        self.holder[slot] = number
        self.next_slot = max(self.next_slot, slot + 1)

    def _observation(self, t: Trial) -> Observation:
        losses = self.study.losses(t) if t.state is TrialState.COMPLETE and t.values else None
        return Observation(number=self.slot_of[t.number], config=dict(t.config), key=t.key, state=t.state,
                           losses=losses, budget=t.budget, info=t.info)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, n_trials: int | None, total_trials: int | None, timeout: float | None, own_executor: bool) -> None:
        finished_before = self._recover()
        target = n_trials if n_trials is not None else (
            max(0, total_trials - finished_before) if total_trials is not None else None)
        deadline = self.executor.now() + timeout if timeout is not None else None  # on the executor's clock
        self.reporter.start(None if target is None else finished_before + target, finished_before)
        self.done_total = finished_before
        watcher = ProgressWatcher(self.watch.progress, self.reporter) if self.watch.progress is not None else None
        if watcher is not None:
            watcher.start()
        if self.watch.threads is not None:
            self.watch.threads.start()
        self.watcher = watcher
        try:
            while True:
                exhausted = self._fill(target, deadline)
                if not self.running:
                    if exhausted or not self._more_wanted(target, deadline):
                        break
                    continue
                done = self.executor.wait(list(self.running), timeout=1.0)
                for future in done:
                    self._collect(future)
                self._beat()
        except BaseException:
            # Ctrl-C (or any crash of the driver): trials in flight are recorded as interrupted so
            # that the next run re-queues them; nothing finished is lost.
            for future, run in list(self.running.items()):
                future.cancel()
                if not self.lost:
                    self.ledger.finish(run.trial_id, TrialState.FAILED, {}, error=INTERRUPTED, requeued=True)
            self.running.clear()
            if own_executor:
                self.executor.shutdown(cancel=True)
            raise
        finally:
            if watcher is not None:
                watcher.stop()
            if self.watch.threads is not None:
                self.watch.threads.stop()
            self.reporter.stop()
            if not self.lost:
                self._beat(release=True)
        if own_executor:
            self.executor.shutdown()

    def _more_wanted(self, target: int | None, deadline: float | None) -> bool:
        if deadline is not None and self.executor.now() >= deadline:
            return False
        return target is None or self.finished_now + len(self.running) < target

    def _fill(self, target: int | None, deadline: float | None) -> bool:
        """Start trials while slots are free; True when the strategy has nothing more to propose."""
        slots = min(self.executor.slots, self.gpus.slots) if self.gpus is not None else self.executor.slots
        while len(self.running) < slots and self._more_wanted(target, deadline):
            info: dict[str, Any]
            if self.requeue:
                old = self.requeue.pop(0)
                config, budget, info = dict(old.config), old.budget, {**old.info, "requeue_of": old.number}
                info.pop("duplicate_of", None)
            elif self.enqueued:  # configs the user asked for come before the strategy's
                index, queued = self.enqueued.pop(0)
                config, budget, info = dict(queued), None, {"enqueued": index}
                self.strategy.mark_seen(self.study.space.key(config))
            else:
                proposal: Proposal | None = self.strategy.ask(self.next_slot)
                if proposal is None:
                    return not self.running
                config, budget, info = proposal.config, proposal.budget, dict(proposal.info)
                if isinstance(info.get("parent"), int):  # strategies name trials by slot; the ledger by number
                    info["parent"] = self.holder.get(info["parent"], info["parent"])
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
        previous = self.results.get((key, budget, info.get("estimator"), info.get("replica")))
        if previous is not None:
            info = {**info, "duplicate_of": previous.number}
        slot = self._slot_for(info)
        info = {k: v for k, v in info.items() if k not in ("slot", "devices")}
        if slot != self.next_number:  # seeds follow the slot (automl.estimator.EvalContext.trial_seed)
            info["slot"] = slot
        gpus = self.gpus.claim() if self.gpus is not None and previous is None else None
        if gpus is not None and gpus.ids is not None:  # chosen here: recorded as the trial starts
            info["devices"] = list(gpus.ids)
        trial_id, number = self.ledger.start(config, key, budget, study.space.flat_params(config),
                                             self.distributions, info)
        if number != self.next_number:
            raise AutomlError(f"another process is adding trials to study {study.study_name!r}; "
                              "one driver per study (use --workers for parallelism)")
        self.next_number = number + 1
        self._assign_slot(number, info)
        run = _Running(trial_id, number, config, key, budget, info, gpus)
        if previous is not None:  # the same candidate at the same budget: reuse, do not re-evaluate
            self._record(run, Outcome(TrialState.COMPLETE, dict(previous.metrics), None, 0.0))
            return
        self.plan = self.watch.threads.plan() if self.watch.threads is not None else None
        monitor = TrialMonitor(trial=number, folder=str(self.watch.progress) if self.watch.progress else None,
                               plan=self.plan)
        if self.watcher is not None:
            self.watcher.set_running({r.number for r in self.running.values()} | {number})
        try:
            if gpus is None:
                future = self.executor.submit(run_trial, self.call, config, budget, number, info, monitor,
                                              self._pruning())
            else:
                future = self.executor.submit_placed(gpus, run_trial, self.call, config, budget, number, info,
                                                     monitor, self._pruning(), gpus)
        except BaseException:  # Ctrl-C inside an inline trial: record it as interrupted, then stop
            self.ledger.finish(trial_id, TrialState.FAILED, {}, error=INTERRUPTED, requeued=True)
            self._release(run)
            raise
        self.running[future] = run
        self._report()

    def _pruning(self) -> PruningContext | None:
        """What the worker's pruner reads: the trials finished so far (Optuna's records)."""
        if self.watch.pruner is None:
            return None
        finished = self.ledger.storage.get_all_trials(self.ledger.study_id, deepcopy=False,
                                                      states=(OptunaState.COMPLETE, OptunaState.PRUNED))
        if self.study.objectives[0].direction == "max":
            return PruningContext(self.watch.pruner, "maximize", finished)
        return PruningContext(self.watch.pruner, "minimize", finished)

    def _release(self, run: _Running) -> None:
        """Give back the GPUs ``run`` held (it ended: finished, failed, crashed or re-queued)."""
        if run.gpus is not None and self.gpus is not None:
            self.gpus.release(run.gpus)

    def _collect(self, future: Future[Outcome]) -> None:
        run = self.running.pop(future)
        self._release(run)
        if self.watcher is not None:
            self.watcher.set_running({r.number for r in self.running.values()})
        try:
            outcome: Outcome = future.result()
        except Exception as exc:  # the executor could not run it: say why, the search goes on
            if _is_worker_death(exc):
                outcome = Outcome(TrialState.FAILED, {}, f"the worker process died (killed, out of memory or "
                                  f"crashed): {type(exc).__name__}: {exc}", 0.0, crashed=True)
            else:
                outcome = Outcome(TrialState.FAILED, {}, f"the executor failed to run the trial: "
                                  f"{type(exc).__name__}: {exc}", 0.0)
        if outcome.devices and run.info.get("devices") != list(outcome.devices):  # chosen by a Dask worker
            run.info = {**run.info, "devices": list(outcome.devices)}
            self.ledger.set_info(run.trial_id, run.info)
        attempt = int(run.info.get("attempt", 0))
        if outcome.crashed and attempt < self.max_retries:
            error = f"{outcome.error}; retrying (attempt {attempt + 2} of {self.max_retries + 1})"
            self.ledger.finish(run.trial_id, TrialState.FAILED, {}, error=error, duration_s=outcome.duration_s,
                               requeued=True)
            self.requeue.append(Trial(number=run.number, config=run.config, key=run.key, state=TrialState.FAILED,
                                      values=None, budget=run.budget, info={**run.info, "attempt": attempt + 1},
                                      requeued=True))
            self._report()
            return
        self._record(run, outcome)

    def _record(self, run: _Running, outcome: Outcome) -> None:
        state, metrics, error = outcome.state, dict(outcome.metrics), outcome.error
        if state is TrialState.COMPLETE:
            state, metrics, error = self._check(metrics)
        self.ledger.finish(run.trial_id, state, metrics, error=error, duration_s=outcome.duration_s,
                           intermediate=outcome.intermediate)
        trial = Trial(number=run.number, config=run.config, key=run.key, state=state,
                      values={o.name: float(metrics[o.name]) for o in self.study.objectives}
                      if state is TrialState.COMPLETE else None,
                      metrics=metrics, budget=run.budget, error=error, duration_s=outcome.duration_s, info=run.info)
        if state is TrialState.COMPLETE:
            self.results.setdefault((run.key, run.budget, run.info.get("estimator"), run.info.get("replica")), trial)
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
            value = metrics.pop("__value__")
            metrics = {objectives[0].name: value, **metrics}  # with what an executor added (simulated times)
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
        if self.plan is not None:
            self.reporter.note(self.plan.describe())
        first = self.study.objectives[0].name
        best = "-" if self.best_value is None else f"{first}={self.best_value:.4g}"
        phases = {str(run.info["phase"]) for run in self.running.values() if run.info.get("phase") is not None}
        self.reporter.update(self.done_total, len(self.running), self.failed, best, phase="/".join(sorted(phases)))


