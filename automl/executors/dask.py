"""Run trials on a Dask cluster: ``dask://HOST:PORT`` (an existing scheduler) or ``dask-local:N``
(a ``LocalCluster`` of N single-threaded worker processes on this machine).

Dask moves the trial function and its config to a worker and the outcome back; workers need no
shared filesystem. A worker that dies mid-trial has its task re-run on another worker by Dask's
scheduler (up to ``distributed.scheduler.allowed-failures`` times), so the trial is neither lost nor
counted twice; past that limit the trial's future fails with ``KilledWorker``.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Callable

from automl.errors import ConfigError
from automl.executors.base import Executor


class DaskExecutor(Executor):
    def __init__(self, address: str | None = None, n_workers: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("the dask executor needs dask[distributed]: pip install 'dask[distributed]'") from None
        # distributed leaves its Client, LocalCluster and futures unannotated: they are handled as Any
        self._cluster: Any = None
        self._config: Any = None
        self._client: Any
        if address is None:
            import dask

            # Non-daemonic workers may start the child processes that per-trial limits need. Nannies
            # read this setting whenever they (re)start a worker, so it holds until shutdown.
            self._config = dask.config.set({"distributed.worker.daemon": False})
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n_workers or 1, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None)
            self._client = Client(self._cluster)  # type: ignore[no-untyped-call]
        else:
            try:
                self._client = Client(address, timeout=10)  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.slots = max(1, sum(w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values()))
        self.local = self._cluster is not None
        self._futures: set[Any] = set()
        self._lock = threading.Lock()  # the set is also changed by distributed's callback thread

    @property
    def client(self) -> Any:
        return self._client

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        result: Future[Any] = Future()
        remote = self._client.submit(fn, *args, pure=False)
        with self._lock:
            self._futures.add(remote)

        def done(remote_future: Any) -> None:
            with self._lock:
                self._futures.discard(remote_future)
            if remote_future.cancelled():
                result.cancel()
                return
            try:
                result.set_result(remote_future.result())
            except BaseException as exc:  # delivered to the study through the future
                result.set_exception(exc)

        remote.add_done_callback(done)
        return result

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            pending = list(self._futures)
        if cancel and pending:
            self._client.cancel(pending)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None
