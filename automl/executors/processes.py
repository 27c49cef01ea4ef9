"""Run trials in local worker processes (``--workers N``).

Workers are started with the ``spawn`` method (safe with torch's threads) and each gets
``cpu_count // N`` torch threads (or ``threads``) so that N workers share the machine instead of
oversubscribing it.
Functions travel as cloudpickle payloads, so closures and lambdas work as objectives. A worker that
dies (segfault, OOM kill) fails only the trials it held; the pool is rebuilt for the next ones.
With ``gpus_per_trial`` the driver picks each trial's devices (``devices``: the GPUs to hand out, None:
this machine's) and the worker runs the trial in a child process that sees only them.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

import cloudpickle

from automl.executors.base import Executor
from automl.executors.devices import DeviceInventory


def _init_worker(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


def _call(payload: bytes) -> Any:
    fn, args = cloudpickle.loads(payload)
    return fn(*args)


class ProcessExecutor(Executor):
    def __init__(self, workers: int, threads: int | None = None, devices: DeviceInventory | None = None) -> None:
        if workers < 1 or (threads is not None and threads < 1):
            raise ValueError(f"workers and threads must be >= 1, got workers={workers}, threads={threads}")
        self.slots = workers
        self._threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)
        self._pool: ProcessPoolExecutor | None = None
        self.devices = devices  # the GPUs trials may be given (None: this machine's)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.slots,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._threads,),
            )
        return self._pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        payload = cloudpickle.dumps((fn, args))
        try:
            return self._ensure_pool().submit(_call, payload)
        except BrokenProcessPool:
            self._pool = None  # a worker died: start a fresh pool for the trials that follow
            return self._ensure_pool().submit(_call, payload)

    def shutdown(self, cancel: bool = False) -> None:
        if self._pool is not None:
            if cancel:
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None
