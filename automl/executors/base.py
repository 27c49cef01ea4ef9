"""The executor contract: ``submit(fn, *args) -> Future``, concurrent.futures-style, plus the few hooks
a loop needs to wait for results and tell time the executor's way (a simulated executor owns its clock)."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, wait
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

from automl.executors.devices import DeviceInventory, GpuPlacement, GpuRequest, LocalGpus, detect_devices


class Executor(ABC):
    """Runs trial functions somewhere (this process, local processes, a cluster)."""

    #: How many trials may run at once.
    slots: int = 1
    #: Whether trials run on this machine (its load then decides their torch threads).
    local: bool = True
    #: The GPUs trials here may be given (None: this machine's, detected when a study asks for GPUs).
    devices: DeviceInventory | None = None

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Start ``fn(*args)``; the future holds its return value or exception."""

    def wait(self, futures: Iterable[Future[Any]], timeout: float | None) -> set[Future[Any]]:
        """The futures among ``futures`` that are done, waiting up to ``timeout`` seconds for the first one
        (default: concurrent.futures' wait; an empty set means none finished in time)."""
        done, _ = wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)
        return done

    def now(self) -> float:
        """The executor's clock in seconds, which a search's ``timeout`` is measured on (default: real time)."""
        return time.monotonic()

    def restore(self, finished: Iterable[Mapping[str, Any]]) -> None:
        """Continue from a resumed study whose finished trials reported ``finished`` metrics (default:
        nothing to restore)."""

    def gpu_placement(self, share: Fraction) -> GpuPlacement:
        """How trials asking for ``share`` GPUs each get them (default: the driver allocates this machine's
        GPUs, :attr:`devices`); a ConfigError when they cannot run here."""
        return LocalGpus(self.devices if self.devices is not None else detect_devices(), share)

    def submit_placed(self, request: GpuRequest, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """:meth:`submit` for a trial holding ``request``'s GPUs (default: the driver already chose them; a
        cluster asks its scheduler for a worker where they are free)."""
        return self.submit(fn, *args)

    def shutdown(self, cancel: bool = False) -> None:
        """Release workers; with ``cancel`` do not wait for running work."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(cancel=exc[0] is not None)
