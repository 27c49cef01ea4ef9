"""The worker side of a trial: call the objective (optionally isolated) and describe what happened.

Everything here runs where the executor puts it (this process, a local worker process, a Dask
worker) and returns a small, picklable :class:`Outcome`; only the driver writes the ledger.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from automl.errors import Infeasible
from automl.executors.isolation import Limits, TrialCrashed, TrialTimeout, run_isolated
from automl.progress import TrialMonitor
from automl.strategies.base import TrialState

ObjectiveFn = Callable[..., Any]


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one trial. ``crashed``: the process running it died (a retry
    elsewhere may succeed), as opposed to the candidate failing on its own terms."""

    state: TrialState
    metrics: Mapping[str, Any]
    error: str | None
    duration_s: float
    crashed: bool = False


@dataclass(frozen=True)
class TrialCall:
    """How to call the objective, under which limits. ``arity``: how many of (config, budget,
    trial number, trial info, trial monitor) it takes positionally, in that order (only automl's own
    estimator objective takes the monitor)."""

    objective: ObjectiveFn
    arity: int = 1
    limits: Limits = field(default_factory=Limits)


def describe_error(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _call(call: TrialCall, config: Mapping[str, Any], budget: float | None, number: int,
          info: Mapping[str, Any], monitor: TrialMonitor | None) -> Any:
    return call.objective(*(config, budget, number, info, monitor)[: call.arity])


def run_trial(call: TrialCall, config: Mapping[str, Any], budget: float | None, number: int,
              info: Mapping[str, Any], monitor: TrialMonitor | None = None) -> Outcome:
    """Evaluate one trial; every failure becomes an outcome carrying its reason, never an exception."""
    start = time.perf_counter()

    def outcome(state: TrialState, metrics: Mapping[str, Any], error: str | None, crashed: bool = False) -> Outcome:
        return Outcome(state, metrics, error, time.perf_counter() - start, crashed)

    try:
        if call.limits.active:
            raw = run_isolated(_call, (call, config, budget, number, info, monitor), call.limits)
        else:
            raw = _call(call, config, budget, number, info, monitor)
    except Infeasible as exc:
        return outcome(TrialState.INFEASIBLE, {}, str(exc))
    except TrialTimeout as exc:
        return outcome(TrialState.FAILED, {}, str(exc))
    except TrialCrashed as exc:
        return outcome(TrialState.FAILED, {}, str(exc), crashed=True)
    except Exception as exc:  # the candidate failed: record why, the search goes on
        return outcome(TrialState.FAILED, {}, describe_error(exc))
    return outcome(TrialState.COMPLETE, raw if isinstance(raw, Mapping) else {"__value__": raw}, None)
