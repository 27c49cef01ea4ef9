"""Executors run trial functions: inline (this thread) or local processes."""
from automl.executors.base import Executor
from automl.executors.inline import InlineExecutor
from automl.executors.processes import ProcessExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "make_executor"]


def make_executor(workers: int) -> Executor:
    """Inline for one worker, local processes for more."""
    return InlineExecutor() if workers <= 1 else ProcessExecutor(workers)
