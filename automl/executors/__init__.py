"""Executors run trial functions: inline (this thread), local processes, or a Dask cluster."""
from automl.errors import ConfigError
from automl.executors.base import Executor
from automl.executors.inline import InlineExecutor
from automl.executors.processes import ProcessExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "make_executor"]


def make_executor(workers: int = 1, spec: str | None = None, threads: int | None = None) -> Executor:
    """``spec``: None/``local`` (inline for one worker, processes for more), ``dask://HOST:PORT``
    (an existing Dask scheduler) or ``dask-local:N`` (a LocalCluster of N worker processes).
    ``threads``: torch threads per local worker process (inline trials use the caller's setting)."""
    if spec is None or spec == "local":
        return InlineExecutor() if workers <= 1 else ProcessExecutor(workers, threads)
    from automl.executors.dask import DaskExecutor  # imported on demand: distributed is slow to import

    if spec.startswith("dask://"):
        return DaskExecutor(address="tcp://" + spec[len("dask://"):])
    if spec.startswith("dask-local"):
        _, _, count = spec.partition(":")
        if (count and not count.isdigit()) or count == "0":
            raise ConfigError(f"executor {spec!r}: expected dask-local:N with N >= 1 workers")
        return DaskExecutor(n_workers=int(count) if count else workers)
    raise ConfigError(f"unknown executor {spec!r}; expected local, dask://HOST:PORT or dask-local:N")
