"""Run trials in simulated time (``--executor simulated``): each trial runs at once, in this process, and
says what it *would* have cost; the executor places it on the earliest-free of N simulated workers and
hands results back in the order they would finish on a real cluster of N workers.

A trial's cost is its ``cost_seconds`` metric, else its budget (a trial at 9 epochs costs 9 s); a
completed trial with neither cannot be placed in time. ``wait`` never sleeps: it advances the clock to
the next finish. Ties finish in submission order, so the same seed gives the same schedule. Each result
learns when and where it ran (``sim_start_s``, ``sim_end_s``, ``sim_worker``); a resumed study continues
the clock from the latest ``sim_end_s`` in its ledger. Unlike Syne Tune's simulator backend, the real
time the strategy spends deciding is not added to the clock: runs are exactly reproducible.
"""
from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

from automl.errors import AutomlError, ConfigError
from automl.executors.base import Executor

if TYPE_CHECKING:
    from automl.executors.devices import GpuPlacement

#: the metric a trial reports its simulated cost in
COST_METRIC = "cost_seconds"
NO_COST = "the simulated executor needs each trial's cost: report `cost_seconds` or give the space a budget"


class MissingCost(AutomlError):
    """A trial reported no usable cost, so it has no place in simulated time."""


@runtime_checkable
class SimulatedResult(Protocol):
    """What a trial function returns for the simulated executor to place it (:class:`automl.worker.Outcome`)."""

    def simulated_cost(self) -> float | None:
        """Seconds the trial would have taken; None when it reports none (then it cannot be placed)."""

    def simulated(self, start_s: float, end_s: float, worker: int) -> Any:
        """This result, recording that it ran on simulated ``worker`` from ``start_s`` to ``end_s``."""


def reported_cost(result: Any) -> float | None:
    """A result's simulated cost (None: it reports none)."""
    return result.simulated_cost() if isinstance(result, SimulatedResult) else None


@dataclass
class _Pending:
    end_s: float
    order: int
    start_s: float
    worker: int
    result: Any


class SimulatedExecutor(Executor):
    """N simulated workers on a simulated clock that starts at 0 (or where a resumed study left it)."""

    def __init__(self, workers: int = 1, cost: Callable[[Any], float | None] = reported_cost) -> None:
        if workers < 1:
            raise ConfigError(f"the simulated executor needs at least one worker, got {workers}")
        self.slots = workers
        self._cost = cost
        self._clock = 0.0
        self._free_at = [0.0] * workers
        self._pending: dict[Future[Any], _Pending] = {}
        self._submitted = 0
        self._costed = 0  # trials that reported a cost: before the first, a missing one is the objective's fault

    @property
    def clock(self) -> float:
        """Simulated seconds since the study started."""
        return self._clock

    def now(self) -> float:
        return self._clock

    def restore(self, finished: Iterable[Mapping[str, Any]]) -> None:
        ends = [float(m["sim_end_s"]) for m in finished if isinstance(m.get("sim_end_s"), (int, float))]
        if ends:
            self._clock = max(self._clock, *ends)
            self._free_at = [max(t, self._clock) for t in self._free_at]
            self._costed += len(ends)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)  # a trial function that raised took no simulated time
            return future
        cost = self._checked_cost(result)
        if cost is None:
            future.set_exception(MissingCost(NO_COST))
            return future
        worker = min(range(self.slots), key=lambda w: (self._free_at[w], w))
        start = max(self._clock, self._free_at[worker])
        self._free_at[worker] = start + cost
        self._pending[future] = _Pending(start + cost, self._submitted, start, worker, result)
        self._submitted += 1
        return future

    def _checked_cost(self, result: Any) -> float | None:
        cost = self._cost(result)
        if cost is None:
            if self._costed == 0:  # the objective reports no cost at all: the whole study cannot run
                raise ConfigError(NO_COST)
            return None
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
            raise ConfigError(f"a trial's {COST_METRIC} must be a non-negative number of seconds, got {cost!r}")
        self._costed += 1
        return float(cost)

    def wait(self, futures: Iterable[Future[Any]], timeout: float | None) -> set[Future[Any]]:
        """The future among ``futures`` that finishes first in simulated time, after moving the clock to its
        finish (those that are done already, such as failures, come first); never sleeps."""
        given = list(futures)
        done = {f for f in given if f.done()}
        if done:
            return done
        waiting = [f for f in given if f in self._pending]
        if not waiting:
            return set()
        first = min(waiting, key=lambda f: (self._pending[f].end_s, self._pending[f].order))
        entry = self._pending.pop(first)
        self._clock = max(self._clock, entry.end_s)
        result = entry.result
        if isinstance(result, SimulatedResult):
            result = result.simulated(entry.start_s, entry.end_s, entry.worker)
        first.set_result(result)
        return {first}

    def gpu_placement(self, share: Fraction) -> GpuPlacement:
        raise ConfigError("GPUs per trial do not apply to the simulated executor: its trials report what they "
                          "would cost instead of running on devices")

    def shutdown(self, cancel: bool = False) -> None:
        for future in self._pending:  # results no one waited for: their time never came
            future.cancel()
        self._pending.clear()
