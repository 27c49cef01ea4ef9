"""Executors run trial functions: inline (this thread), local processes, a Dask cluster, or in simulated time."""
from automl.errors import ConfigError
from automl.executors.base import Executor
from automl.executors.inline import InlineExecutor
from automl.executors.processes import ProcessExecutor
from automl.executors.simulated import SimulatedExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "SimulatedExecutor", "check_executor_spec",
           "make_executor"]

SPECS = "local, simulated, dask://HOST:PORT or dask-local:N"


def check_executor_spec(spec: str | None) -> None:
    """Raise a ConfigError for an executor spec :func:`make_executor` would refuse, without starting anything."""
    if spec is None or spec in ("local", "simulated") or spec.startswith("dask://"):
        return
    if spec.startswith("dask-local"):
        _, colon, count = spec.partition(":")
        if spec == "dask-local" or (colon and count.isdigit() and int(count) >= 1):
            return
        raise ConfigError(f"executor {spec!r}: expected dask-local:N with N >= 1 workers")
    raise ConfigError(f"unknown executor {spec!r}; expected {SPECS}")


def make_executor(workers: int = 1, spec: str | None = None, threads: int | None = None) -> Executor:
    """``spec``: None/``local`` (inline for one worker, processes for more), ``simulated`` (``workers``
    simulated workers on a simulated clock, :mod:`automl.executors.simulated`), ``dask://HOST:PORT`` (an
    existing Dask scheduler) or ``dask-local:N`` (a LocalCluster of N worker processes).
    ``threads``: torch threads per local worker process (inline trials use the caller's setting)."""
    check_executor_spec(spec)
    if spec is None or spec == "local":
        return InlineExecutor() if workers <= 1 else ProcessExecutor(workers, threads)
    if spec == "simulated":
        return SimulatedExecutor(workers)
    from automl.executors.dask import DaskExecutor  # imported on demand: distributed is slow to import

    if spec.startswith("dask://"):
        return DaskExecutor(address="tcp://" + spec[len("dask://"):])
    _, _, count = spec.partition(":")
    return DaskExecutor(n_workers=int(count) if count else workers)
