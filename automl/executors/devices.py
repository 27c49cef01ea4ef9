"""Which GPUs a trial may use (``--gpus-per-trial K``): the machine's device inventory, an allocator that
hands each starting trial its devices and takes them back when it ends, and the placements executors offer.

``K`` is a share of one GPU (``0 < K < 1``: ``floor(1/K)`` trials share a device, as in Ray Tune, so 0.5
puts two trials on each GPU and 0.4 also two) or a whole number of GPUs (``K = 1, 2, ...``); ``1.5`` is
refused, since no trial can use half of its second device. A trial sees only its devices: its process is
started with ``CUDA_VISIBLE_DEVICES`` set to them (:mod:`automl.worker`), so ``cuda:0`` is its first.
Locally the driver allocates (:class:`LocalGpus`); on Dask the scheduler places trials by worker
resources and each worker allocates among its own devices (:mod:`automl.executors.dask_gpus`).
"""
from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Mapping

from automl.errors import ConfigError

#: the resource name trials ask Dask for (``dask worker --resources GPU=2``)
GPU_RESOURCE = "GPU"
NO_GPUS = ("this machine has no CUDA GPUs (torch.cuda.device_count() == 0); use --gpus-per-trial 0")


def parse_share(value: float | int | str | Fraction) -> Fraction:
    """``K`` checked: a finite number >= 0, below 1 (a share of one GPU) or whole (that many GPUs)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--gpus-per-trial must be a number of GPUs, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0 (0: no GPU assignment), got {value}")
    share = Fraction(value) if isinstance(value, Fraction) else Fraction(str(value)).limit_denominator(10**6)
    if share > 1 and share.denominator != 1:
        raise ConfigError(f"--gpus-per-trial {value}: a trial gets a share of one GPU (0 < K < 1) or whole GPUs "
                          f"(1, 2, ...), not {value}")
    if share > 0 and 1 / share > 1024:
        raise ConfigError(f"--gpus-per-trial {value}: at most 1024 trials may share one GPU")
    return share


def show_share(share: Fraction) -> str:
    """``K`` as a user wrote it (0.5, 2)."""
    return f"{float(share):g}"


def per_device(share: Fraction) -> int:
    """How many trials of a fractional ``share`` fit on one device."""
    return math.floor(1 / share)


def dask_share(share: Fraction) -> float:
    """The GPU resource a trial asks Dask for: ``K``, a fraction rounded up to ``1/floor(1/K)`` so that the
    scheduler's count of a worker's GPUs matches how many trials its devices hold (0.4 -> 0.5)."""
    return float(share) if share >= 1 else 1.0 / per_device(share)


def capacity(devices: int, share: Fraction) -> int:
    """How many trials asking for ``share`` GPUs each can run at once on ``devices`` GPUs."""
    return devices * per_device(share) if share < 1 else devices // int(share)


@dataclass(frozen=True)
class DeviceInventory:
    """The GPUs trials may be given, as ``CUDA_VISIBLE_DEVICES`` entries (indices, or UUIDs where the
    parent's ``CUDA_VISIBLE_DEVICES`` names them so); ``source`` says where the list came from."""

    ids: tuple[str, ...]
    source: str = "given"

    @classmethod
    def fake(cls, count: int) -> DeviceInventory:
        """``count`` pretend GPUs ``0..count-1`` (the assignment logic tested on CPU)."""
        return cls(tuple(str(i) for i in range(count)), source=f"{count} fake GPUs")

    def describe(self) -> str:
        return f"{len(self.ids)} GPU{'s' if len(self.ids) != 1 else ''} ({self.source})"

    def check(self, share: Fraction) -> None:
        """One clear error when trials asking for ``share`` GPUs each cannot run here at all."""
        if share == 0:
            return
        if not self.ids:
            raise ConfigError(NO_GPUS)
        if share > len(self.ids):
            raise ConfigError(f"--gpus-per-trial {show_share(share)}: asks for more GPUs per trial than this machine "
                              f"has: {self.describe()}")


def detect_devices() -> DeviceInventory:
    """The CUDA GPUs this process may use, counted by torch (through NVML where it can, without
    initialising CUDA) and named as in ``CUDA_VISIBLE_DEVICES`` when that is set."""
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [name.strip() for name in visible.split(",") if name.strip()][:count]
        return DeviceInventory(tuple(names), source=f"CUDA_VISIBLE_DEVICES={visible}")
    return DeviceInventory(tuple(str(i) for i in range(count)), source="torch.cuda.device_count()")


@dataclass(frozen=True)
class GpuRequest:
    """What one trial is given: ``share`` GPUs, on devices ``ids`` chosen by the driver, or ``ids`` None:
    the Dask worker that runs it chooses among its own."""

    share: Fraction
    ids: tuple[str, ...] | None = None

    @property
    def resources(self) -> dict[str, float]:
        """What the trial asks a Dask scheduler for."""
        return {GPU_RESOURCE: dask_share(self.share)}


class GpuAllocator:
    """Hands out devices of an inventory without over-subscribing any (capacity 1 per device): a whole
    number of free devices, or a share of the fullest device that still has room (shares pack, leaving
    whole devices free). Thread-safe; :meth:`acquire` waits for room, :meth:`try_acquire` does not."""

    def __init__(self, inventory: DeviceInventory) -> None:
        self.inventory = inventory
        self._used: dict[str, Fraction] = {device: Fraction(0) for device in inventory.ids}
        self._room = threading.Condition()

    def used(self) -> Mapping[str, Fraction]:
        """Each device's taken capacity (0 to 1)."""
        with self._room:
            return dict(self._used)

    def try_acquire(self, share: Fraction) -> tuple[str, ...] | None:
        """The devices for one trial asking for ``share``, now taken; None when they are not free."""
        with self._room:
            return self._take(share)

    def acquire(self, share: Fraction, timeout: float | None = None) -> tuple[str, ...]:
        """Like :meth:`try_acquire`, waiting until the devices are free (TimeoutError after ``timeout``)."""
        self.inventory.check(share)
        with self._room:
            taken = self._room.wait_for(lambda: self._take(share), timeout)
        if taken is None:
            raise TimeoutError(f"no {show_share(share)} GPU free after {timeout} s")
        return taken

    def release(self, ids: tuple[str, ...], share: Fraction) -> None:
        """Give back what :meth:`acquire` handed out for one trial."""
        amount = share if share < 1 else Fraction(1)
        with self._room:
            for device in ids:
                self._used[device] = max(Fraction(0), self._used[device] - amount)
            self._room.notify_all()

    def _take(self, share: Fraction) -> tuple[str, ...] | None:
        if share >= 1:
            free = [device for device, used in self._used.items() if used == 0][: int(share)]
            if len(free) < share:
                return None
            for device in free:
                self._used[device] = Fraction(1)
            return tuple(free)
        fits = [device for device, used in self._used.items() if used + share <= 1]
        if not fits:
            return None
        device = max(fits, key=lambda d: self._used[d])  # the fullest that has room; ties: the first
        self._used[device] += share
        return (device,)


class GpuPlacement(ABC):
    """How an executor gives trials their GPUs: ``slots`` is how many trials fit at once."""

    share: Fraction
    slots: int

    @abstractmethod
    def claim(self) -> GpuRequest:
        """The GPUs of a trial about to start (the loop starts no more than ``slots`` at once)."""

    def release(self, request: GpuRequest) -> None:
        """The trial of ``request`` has ended (finished, failed, crashed or re-queued)."""


class LocalGpus(GpuPlacement):
    """This machine's GPUs, allocated by the driver: trials start only while their devices are free, so
    the loop runs at most :func:`capacity` trials at once (4 GPUs, K=1: 4 trials, even with 8 workers)."""

    def __init__(self, inventory: DeviceInventory, share: Fraction) -> None:
        inventory.check(share)
        self.inventory, self.share = inventory, share
        self.allocator = GpuAllocator(inventory)
        self.slots = capacity(len(inventory.ids), share)

    def claim(self) -> GpuRequest:
        ids = self.allocator.try_acquire(self.share)
        if ids is None:  # the loop keeps at most `slots` trials running, each holding its devices until released
            raise RuntimeError(f"no free GPU for a trial: {dict(self.allocator.used())}")
        return GpuRequest(self.share, ids)

    def release(self, request: GpuRequest) -> None:
        if request.ids is not None:
            self.allocator.release(request.ids, request.share)


class WorkerGpus(GpuPlacement):
    """GPUs that the workers of a cluster hold: the driver asks the scheduler for ``share`` GPUs per trial
    and the worker that runs it chooses which of its devices."""

    def __init__(self, share: Fraction, slots: int) -> None:
        self.share, self.slots = share, max(1, slots)

    def claim(self) -> GpuRequest:
        return GpuRequest(self.share)


@contextmanager
def trial_devices(request: GpuRequest | None) -> Iterator[tuple[str, ...]]:
    """The devices a trial runs on, held while it runs: none without a request, the driver's choice, or
    one the Dask worker running it makes now among its own devices (released when the trial ends)."""
    if request is None:
        yield ()
        return
    if request.ids is not None:
        yield request.ids
        return
    allocator = _dask_worker_allocator()  # only a Dask worker gets requests without ids
    ids = allocator.acquire(request.share)
    try:
        yield ids
    finally:
        allocator.release(ids, request.share)


#: the name under which :mod:`automl.executors.dask_gpus` registers its plugin on each Dask worker
DASK_PLUGIN_NAME = "automl-gpus"


def _dask_worker_allocator() -> GpuAllocator:
    """The allocator of the Dask worker running the calling task (the plugin's, found by name so that this
    module does not import the plugin's)."""
    from distributed import get_worker

    allocator = getattr(get_worker().plugins.get(DASK_PLUGIN_NAME), "allocator", None)
    if not isinstance(allocator, GpuAllocator):
        raise ConfigError("this Dask worker has no automl GPU allocator (the executor registers it when a study "
                          "runs with gpus_per_trial > 0)")
    return allocator


def visible_devices_env(ids: tuple[str, ...]) -> dict[str, str]:
    """The environment that shows a trial only its devices."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
