"""Run each trial in the calling thread: deterministic, debuggable, the default for one worker."""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable

from automl.executors.base import Executor
from automl.executors.devices import DeviceInventory


class InlineExecutor(Executor):
    slots = 1

    def __init__(self, devices: DeviceInventory | None = None) -> None:
        self.devices = devices  # the GPUs trials may be given (None: this machine's)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future
