"""The worker side of a trial: call the objective (optionally isolated) and describe what happened.

Everything here runs where the executor puts it (this process, a local worker process, a Dask
worker) and returns a small, picklable :class:`Outcome`; only the driver writes the ledger.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from automl.errors import ConfigError, Infeasible
from automl.executors.devices import GpuRequest, trial_devices, visible_devices_env
from automl.executors.isolation import Limits, TrialCrashed, TrialTimeout, run_isolated
from automl.executors.simulated import COST_METRIC
from automl.progress import TrialMonitor
from automl.pruning import Pruned, PruningContext, TrialHandle
from automl.strategies.base import TrialState

ObjectiveFn = Callable[..., Any]


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one trial. ``crashed``: the process running it died (a retry
    elsewhere may succeed), as opposed to the candidate failing on its own terms. ``intermediate``: the
    values the objective reported, by step."""

    state: TrialState
    metrics: Mapping[str, Any]
    error: str | None
    duration_s: float
    crashed: bool = False
    intermediate: Mapping[int, float] = field(default_factory=dict)
    budget: float | None = None  # the trial's budget: its simulated cost when it reports none
    devices: tuple[str, ...] = ()  # the GPUs the trial ran on (CUDA_VISIBLE_DEVICES entries)

    def simulated_cost(self) -> float | None:
        """Seconds the trial would have taken (:mod:`automl.executors.simulated`): its ``cost_seconds``, else
        its budget; a trial that did not complete and says neither took no time; None: a completed trial
        that says neither."""
        reported = self.metrics.get(COST_METRIC)
        if reported is not None:
            try:
                return float(reported)
            except (TypeError, ValueError):
                raise ConfigError(f"a trial's {COST_METRIC} must be a number of seconds, got {reported!r}") from None
        if self.budget is not None:
            return float(self.budget)
        return None if self.state is TrialState.COMPLETE else 0.0

    def simulated(self, start_s: float, end_s: float, worker: int) -> Outcome:
        """This outcome as run on simulated ``worker`` from ``start_s`` to ``end_s``: the times join its
        metrics (``sim_start_s``, ``sim_end_s``, ``sim_worker``) and its duration is the simulated one."""
        placed = {**self.metrics, "sim_start_s": start_s, "sim_end_s": end_s, "sim_worker": worker}
        return replace(self, metrics=placed, duration_s=end_s - start_s)


@dataclass(frozen=True)
class TrialCall:
    """How to call the objective, under which limits. With ``handle``, the objective is called as
    ``objective(config, trial)`` with the trial's :class:`~automl.pruning.TrialHandle` (an objective
    whose second parameter is named ``trial``, and automl's own estimator objective); otherwise with
    the first ``arity`` of (config, budget, trial number, trial info), positionally."""

    objective: ObjectiveFn
    arity: int = 1
    limits: Limits = field(default_factory=Limits)
    handle: bool = False


def describe_error(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _call(call: TrialCall, config: Mapping[str, Any], handle: TrialHandle) -> tuple[bool, Any, dict[int, float]]:
    """``(pruned, returned value, intermediate values)``: what travels back, also from an isolated child."""
    try:
        if call.handle:
            raw = call.objective(config, handle)
        else:
            raw = call.objective(*(config, handle.budget, handle.number, handle.info)[: call.arity])
    except Pruned:
        return True, None, dict(handle.intermediate)
    return handle.stopped, raw, dict(handle.intermediate)


def run_trial(call: TrialCall, config: Mapping[str, Any], budget: float | None, number: int,
              info: Mapping[str, Any], monitor: TrialMonitor | None = None,
              pruning: PruningContext | None = None, gpus: GpuRequest | None = None) -> Outcome:
    """Evaluate one trial; every failure becomes an outcome carrying its reason, never an exception.
    With ``gpus`` it runs in a child process of its own that sees only its devices (a reused worker
    that has initialised CUDA could not switch devices)."""
    start = time.perf_counter()
    handle = TrialHandle(number, budget, info, monitor, pruning)
    devices: tuple[str, ...] = ()

    def outcome(state: TrialState, metrics: Mapping[str, Any], error: str | None, crashed: bool = False,
                intermediate: Mapping[int, float] | None = None) -> Outcome:
        return Outcome(state, metrics, error, time.perf_counter() - start, crashed, dict(intermediate or {}),
                       budget=budget, devices=devices)

    try:
        with trial_devices(gpus) as devices:
            if call.limits.active or devices:
                env = visible_devices_env(devices) if devices else None
                pruned, raw, intermediate = run_isolated(_call, (call, config, handle), call.limits, env)
            else:
                pruned, raw, intermediate = _call(call, config, handle)
    except Infeasible as exc:
        return outcome(TrialState.INFEASIBLE, {}, str(exc))
    except TrialTimeout as exc:
        return outcome(TrialState.FAILED, {}, str(exc), intermediate=handle.intermediate)
    except TrialCrashed as exc:
        return outcome(TrialState.FAILED, {}, str(exc), crashed=True)
    except Exception as exc:  # the candidate failed: record why, the search goes on
        return outcome(TrialState.FAILED, {}, describe_error(exc), intermediate=handle.intermediate)
    if pruned:
        last = max(intermediate) if intermediate else None
        where: dict[str, Any] = {} if last is None else {"pruned_at_step": last, "last_value": intermediate[last]}
        return outcome(TrialState.PRUNED, where, f"pruned at step {last}" if last is not None else "pruned",
                       intermediate=intermediate)
    metrics: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {"__value__": raw}
    return outcome(TrialState.COMPLETE, metrics, None, intermediate=intermediate)
