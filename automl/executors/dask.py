"""Run trials on a Dask cluster: ``dask://HOST:PORT`` (an existing scheduler) or ``dask-local:N``
(a ``LocalCluster`` of N single-threaded worker processes on this machine).

Dask moves the trial function and its config to a worker and the outcome back; workers need no
shared filesystem. A worker that dies mid-trial has its task re-run on another worker by Dask's
scheduler (up to ``distributed.scheduler.allowed-failures`` times), so the trial is neither lost nor
counted twice; past that limit the trial's future fails with ``KilledWorker``.

With ``gpus_per_trial K`` each trial asks the scheduler for ``resources={"GPU": K}``, so it runs only on
a worker that declares GPUs (``dask worker --resources GPU=2``) with K free, and that worker picks its
devices (:mod:`automl.executors.dask_gpus`).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from fractions import Fraction
from typing import Any, Callable, Mapping

from automl.errors import ConfigError
from automl.executors.base import Executor
from automl.executors.devices import GPU_RESOURCE, GpuPlacement, GpuRequest, WorkerGpus, capacity, show_share


class DaskExecutor(Executor):
    """``resources``: what each worker of a local cluster declares (e.g. ``{"GPU": 2}``)."""

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 resources: Mapping[str, float] | None = None) -> None:
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
                dashboard_address=None, resources=dict(resources) if resources else None)
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

    def gpu_placement(self, share: Fraction) -> GpuPlacement:
        """Trials go where the scheduler finds ``share`` GPUs free; each worker chooses the devices."""
        from automl.executors.dask_gpus import GpuWorkerPlugin

        workers = list(self._client.scheduler_info()["workers"].values())
        declared = [float(w.get("resources", {}).get(GPU_RESOURCE, 0)) for w in workers]
        if not any(declared):
            raise ConfigError(f"--gpus-per-trial {show_share(share)}: no Dask worker declares a {GPU_RESOURCE} "
                              f"resource; start workers with `dask worker --resources {GPU_RESOURCE}=N`")
        if share > max(declared):
            raise ConfigError(f"--gpus-per-trial {show_share(share)}: asks for more GPUs per trial than any Dask "
                              f"worker declares (at most {GPU_RESOURCE}={max(declared):g})")
        self._client.register_plugin(GpuWorkerPlugin())
        slots = sum(min(int(w.get("nthreads", 1)), capacity(int(n), share)) for w, n in zip(workers, declared))
        return WorkerGpus(share, slots)

    def submit_placed(self, request: GpuRequest, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._submit(fn, args, request.resources)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._submit(fn, args, None)

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], resources: Mapping[str, float] | None
                ) -> Future[Any]:
        result: Future[Any] = Future()
        remote = self._client.submit(fn, *args, pure=False, resources=dict(resources) if resources else None)
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
