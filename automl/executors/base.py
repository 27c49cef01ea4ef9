"""The executor contract: ``submit(fn, *args) -> Future``, concurrent.futures-style."""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any, Callable


class Executor(ABC):
    """Runs trial functions somewhere (this process, local processes, a cluster)."""

    #: How many trials may run at once.
    slots: int = 1
    #: Whether trials run on this machine (its load then decides their torch threads).
    local: bool = True

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Start ``fn(*args)``; the future holds its return value or exception."""

    def shutdown(self, cancel: bool = False) -> None:
        """Release workers; with ``cancel`` do not wait for running work."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(cancel=exc[0] is not None)
