"""GPUs on Dask workers: the scheduler places a trial on a worker with ``resources={"GPU": K}`` free
(workers declare theirs: ``dask worker --resources GPU=2``), and this worker plugin picks which of the
worker's devices the trial gets, so that two trials on one worker never share a device beyond its
capacity. Imported only where distributed is (a Dask executor, a Dask worker).
"""
from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from automl.errors import ConfigError
from automl.executors.devices import DASK_PLUGIN_NAME, GPU_RESOURCE, DeviceInventory, GpuAllocator

PLUGIN_NAME = DASK_PLUGIN_NAME


def worker_inventory(declared: float) -> DeviceInventory:
    """The devices behind a worker's declared ``GPU`` resource: the first of its ``CUDA_VISIBLE_DEVICES``
    when that is set, else ``0..n-1``. Dask resources are declarations: the worker is trusted on its count."""
    count = int(declared)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in (visible or "").split(",") if name.strip()]
    if visible is not None and names:
        if len(names) < count:
            raise ConfigError(f"this Dask worker declares {GPU_RESOURCE}={declared:g} but its "
                              f"CUDA_VISIBLE_DEVICES={visible} names {len(names)} devices")
        return DeviceInventory(tuple(names[:count]), source=f"worker resource {GPU_RESOURCE}={declared:g}, "
                               f"CUDA_VISIBLE_DEVICES={visible}")
    return DeviceInventory(tuple(str(i) for i in range(count)), source=f"worker resource {GPU_RESOURCE}={declared:g}")


class GpuWorkerPlugin(WorkerPlugin):
    """Gives each Dask worker one allocator over the devices its ``GPU`` resource declares."""

    idempotent = True  # a second study on the same cluster keeps the allocator (and what it has handed out)
    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.allocator: GpuAllocator | None = None

    def setup(self, worker: Any) -> None:
        self.allocator = GpuAllocator(worker_inventory(float(worker.state.total_resources.get(GPU_RESOURCE, 0))))

