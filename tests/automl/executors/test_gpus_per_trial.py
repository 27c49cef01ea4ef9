"""One trial per GPU (``--gpus-per-trial K``) on a fake device inventory, on CPU: which devices a trial gets,
that no device holds more trials than it can, that the loop runs no more trials than the GPUs hold, that a
trial's own process sees only its devices, what the ledger records, the refusals, and Dask placement."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import pytest

import automl
from automl import cli
from automl.errors import ConfigError
from automl.executors import Executor, ProcessExecutor
from automl.executors.devices import DeviceInventory, GpuAllocator, LocalGpus, capacity, parse_share
from automl.ledger import Ledger, open_storage
from automl.strategies.base import TrialState

SPACE = automl.space_from_yaml("""
name: gpus
objectives: {loss: min}
space:
  x: {type: float, low: 0.0, high: 1.0}
""")


# -- the allocator ------------------------------------------------------------------------------------
def test_one_gpu_per_trial_hands_out_each_device_once_and_takes_it_back():
    gpus = GpuAllocator(DeviceInventory.fake(4))
    taken = [gpus.try_acquire(Fraction(1)) for _ in range(4)]
    assert taken == [("0",), ("1",), ("2",), ("3",)]
    assert gpus.try_acquire(Fraction(1)) is None  # all four are busy
    gpus.release(("2",), Fraction(1))
    assert gpus.try_acquire(Fraction(1)) == ("2",)


def test_half_a_gpu_puts_two_trials_on_a_device_before_opening_the_next():
    gpus = GpuAllocator(DeviceInventory.fake(4))
    taken = [gpus.try_acquire(Fraction(1, 2)) for _ in range(8)]
    assert taken == [("0",), ("0",), ("1",), ("1",), ("2",), ("2",), ("3",), ("3",)]
    assert gpus.try_acquire(Fraction(1, 2)) is None
    gpus.release(("1",), Fraction(1, 2))
    assert gpus.try_acquire(Fraction(1, 2)) == ("1",)
    assert gpus.try_acquire(Fraction(1)) is None  # no device is whole free


def test_two_gpus_per_trial_take_two_free_devices():
    gpus = GpuAllocator(DeviceInventory.fake(4))
    assert gpus.try_acquire(Fraction(2)) == ("0", "1")
    assert gpus.try_acquire(Fraction(2)) == ("2", "3")
    assert gpus.try_acquire(Fraction(2)) is None
    gpus.release(("0", "1"), Fraction(2))
    assert gpus.try_acquire(Fraction(1, 2)) == ("0",)
    assert gpus.try_acquire(Fraction(2)) is None  # device 0 is shared now: only 1 is whole free


def test_capacity_is_the_trials_the_devices_hold_at_once():
    assert [capacity(4, parse_share(k)) for k in (1, 0.5, 2, 0.4, 0.25, 3)] == [4, 8, 2, 8, 16, 1]


def test_a_waiting_trial_gets_the_device_another_one_gives_back():
    gpus = GpuAllocator(DeviceInventory.fake(1))
    assert gpus.acquire(Fraction(1)) == ("0",)
    got: list[tuple[str, ...]] = []
    waiter = threading.Thread(target=lambda: got.append(gpus.acquire(Fraction(1), timeout=30)))
    waiter.start()
    gpus.release(("0",), Fraction(1))
    waiter.join()
    assert got == [("0",)]


@pytest.mark.parametrize("value, message", [
    (-1, "must be >= 0"), (1.5, r"share of one GPU \(0 < K < 1\) or whole GPUs"), ("two", "must be a number"),
    (float("nan"), "must be >= 0")])
def test_bad_gpu_counts_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_share(value)


def test_a_machine_without_enough_gpus_is_refused():
    with pytest.raises(ConfigError, match=r"no CUDA GPUs \(torch.cuda.device_count\(\) == 0\); use --gpus-per-trial 0"):
        LocalGpus(DeviceInventory(()), Fraction(1, 2))
    with pytest.raises(ConfigError, match="more GPUs per trial than this machine has: 2 GPUs"):
        LocalGpus(DeviceInventory.fake(2), Fraction(3))


# -- searches on fake GPUs ----------------------------------------------------------------------------
class CountingThreads(Executor):
    """Trials on threads of this process (a GPU trial still runs in a child process of its own), counting how
    many run at once."""

    def __init__(self, slots: int, devices: DeviceInventory) -> None:
        self.slots, self.devices = slots, devices
        self.pool = ThreadPoolExecutor(slots)
        self.lock = threading.Lock()
        self.active = self.most = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        def run() -> Any:
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                return fn(*args)
            finally:
                with self.lock:
                    self.active -= 1

        return self.pool.submit(run)

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def device_objective(folder: str, seconds: float = 0.25, per_worker: bool = False):
    """Reports what the trial's process sees: its CUDA_VISIBLE_DEVICES (as a bit mask), its pid, and the most
    trials it saw on one of its devices at once (each trial marks its devices with a file while it runs;
    ``per_worker``: devices are per Dask worker, told apart by the forkserver that started the trial)."""
    def objective(config):
        visible = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
        group = str(os.getppid()) if per_worker else "machine"
        mine = Path(folder, f"{group}_{'.'.join(visible)}_{os.getpid()}")
        mine.write_text("")
        time.sleep(seconds)
        sharing = max(sum(1 for p in Path(folder).iterdir()
                          if p.name.split("_")[0] == group and d in p.name.split("_")[1].split("."))
                      for d in visible)
        mine.unlink()
        return {"loss": config["x"], "mask": sum(2 ** int(d) for d in visible), "pid": os.getpid(),
                "sharing": sharing}

    return objective


def _mask(trial) -> int:
    return sum(2 ** int(d) for d in trial.info["devices"])


@pytest.mark.parametrize("share, gpus, slots, most, per_gpu", [
    (1, 4, 8, 4, 1),  # 4 GPUs, K=1, 8 workers: 4 trials at once
    (0.5, 1, 4, 2, 2),  # two trials share the one GPU
    (2, 4, 4, 2, 1)])  # two trials of two GPUs each
def test_trials_run_on_their_own_devices_never_more_than_the_gpus_hold(tmp_path, share, gpus, slots, most, per_gpu):
    executor = CountingThreads(slots, DeviceInventory.fake(gpus))
    study = automl.create_study(SPACE, strategy="random", seed=0)
    (tmp_path / "marks").mkdir()
    try:
        study.optimize(device_objective(str(tmp_path / "marks")), n_trials=most + 1, executor=executor,
                       gpus_per_trial=share)
    finally:
        executor.shutdown()
    trials = study.trials
    assert len(trials) == most + 1 and all(t.state is TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert executor.most == most  # 8 slots, but only as many trials at once as the GPUs hold
    assert max(t.metrics["sharing"] for t in trials) == per_gpu  # a device never held more
    for t in trials:
        assert len(t.info["devices"]) == max(1, int(share))
        assert t.metrics["mask"] == _mask(t)  # the trial's process saw exactly the devices the ledger records
        assert t.metrics["pid"] != os.getpid()  # in a child process of its own: CUDA could not be set up yet


def test_devices_come_back_from_crashed_and_failed_trials(tmp_path):
    marks = tmp_path / "attempts"
    marks.mkdir()

    def objective(config):
        attempt = marks / f"{config['x']:.12f}"
        if not attempt.exists():  # every trial's first attempt dies
            attempt.write_text("")
            os._exit(3)
        if config["x"] < 0.5:
            raise ValueError("a candidate that fails")
        return config["x"]

    executor = CountingThreads(2, DeviceInventory.fake(1))
    study = automl.create_study(SPACE, strategy="random", seed=1)
    try:
        study.optimize(objective, n_trials=4, executor=executor, gpus_per_trial=1, max_retries=1)
    finally:
        executor.shutdown()
    finished = [t for t in study.trials if not t.requeued]
    assert len(finished) == 4 and all(t.info["devices"] == ["0"] for t in study.trials)
    assert sum(t.requeued for t in study.trials) == 4  # each crash gave its device back for the retry


@pytest.mark.slow  # two worker processes, each with its forkserver, import torch: ~30 s on 2 busy cores
def test_worker_processes_give_each_trial_its_device(tmp_path):
    executor = ProcessExecutor(3, threads=1, devices=DeviceInventory.fake(2))
    study = automl.create_study(SPACE, strategy="random", seed=2)
    (tmp_path / "marks").mkdir()
    try:
        study.optimize(device_objective(str(tmp_path / "marks"), seconds=0.5), n_trials=4, executor=executor,
                       gpus_per_trial=1)
    finally:
        executor.shutdown()
    trials = study.trials
    assert all(t.state is TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert {tuple(t.info["devices"]) for t in trials} == {("0",), ("1",)}
    assert max(t.metrics["sharing"] for t in trials) == 1
    assert all(t.metrics["mask"] == _mask(t) for t in trials)


def test_the_report_shows_the_devices(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/l.db"
    study = automl.create_study(SPACE, strategy="random", seed=3, storage=storage)
    executor = CountingThreads(2, DeviceInventory.fake(2))
    try:
        study.optimize(lambda c: c["x"], n_trials=2, executor=executor, gpus_per_trial=0.5)
    finally:
        executor.shutdown()
    assert cli.main(["report", "--study", "gpus", "--storage", storage, "--output", str(tmp_path)]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "loss (min)" in line)
    assert "gpus" in header
    assert all(t.info["devices"] == ["0"] for t in study.trials)  # two halves of device 0


# -- the command line's refusals ------------------------------------------------------------------------
def _search(tmp_path: Path, *flags: str) -> list[str]:
    return ["search", "--space", "digits-mlp", "--trials", "1", "--storage", f"sqlite:///{tmp_path}/l.db",
            "--output", str(tmp_path), *flags]


@pytest.mark.parametrize("count, visible, flag, message", [
    (0, None, "1", "error: this machine has no CUDA GPUs (torch.cuda.device_count() == 0); use --gpus-per-trial 0"),
    (2, None, "4", "error: --gpus-per-trial 4: asks for more GPUs per trial than this machine has: 2 GPUs "
                   "(torch.cuda.device_count())"),
    (2, "5,7", "3", "this machine has: 2 GPUs (CUDA_VISIBLE_DEVICES=5,7)"),
    (2, None, "-1", "error: --gpus-per-trial must be >= 0 (0: no GPU assignment), got -1"),
    (2, None, "1.5", "error: --gpus-per-trial 1.5: a trial gets a share of one GPU (0 < K < 1) or whole GPUs"),
])
def test_the_cli_refuses_gpus_it_cannot_give(tmp_path, capsys, monkeypatch, count, visible, flag, message):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert cli.main(_search(tmp_path, "--gpus-per-trial", flag)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "l.db").exists()  # refused before the study is written


# -- Dask: workers that declare GPUs ---------------------------------------------------------------------
@pytest.mark.slow
def test_dask_places_trials_on_workers_that_declare_gpus_and_records_their_devices(tmp_path, monkeypatch):
    from automl.executors.dask import DaskExecutor

    executor = DaskExecutor(n_workers=2, resources={"GPU": 2})
    asked: list[Any] = []
    submit = executor.client.submit

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("resources"))
        return submit(*args, **kwargs)

    monkeypatch.setattr(executor.client, "submit", recording)
    try:
        study = automl.create_study(SPACE, strategy="random", seed=4, storage=f"sqlite:///{tmp_path}/l.db")
        (tmp_path / "marks").mkdir()
        study.optimize(device_objective(str(tmp_path / "marks"), per_worker=True), n_trials=4, executor=executor,
                       gpus_per_trial=1)
    finally:
        executor.shutdown()
    trials = Ledger.load(open_storage(f"sqlite:///{tmp_path}/l.db"), "gpus").trials()
    assert all(t.state is TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert all(t.info["devices"] in (["0"], ["1"]) and t.metrics["mask"] == _mask(t) for t in trials)
    assert max(t.metrics["sharing"] for t in trials) == 1
    assert asked == [{"GPU": 1.0}] * 4  # what each trial asked the scheduler for


class FakeScheduler:
    """What a Dask client tells of its workers: one worker with ``nthreads`` threads declaring ``resources``."""

    def __init__(self, nthreads: int, resources: dict[str, float]) -> None:
        self.info = {"workers": {"tcp://w:1": {"nthreads": nthreads, "resources": resources}}}
        self.plugins: list[Any] = []

    def scheduler_info(self) -> dict[str, Any]:
        return self.info

    def register_plugin(self, plugin: Any) -> None:
        self.plugins.append(plugin)


def _dask(nthreads: int, resources: dict[str, float]) -> Any:
    from automl.executors.dask import DaskExecutor

    executor = object.__new__(DaskExecutor)  # no cluster: the placement reads only what the scheduler tells
    executor._client = FakeScheduler(nthreads, resources)
    return executor


def test_dask_placement_follows_what_the_workers_declare():
    executor = _dask(4, {"GPU": 2})
    assert executor.gpu_placement(Fraction(1, 2)).slots == 4  # 4 halves on 2 GPUs, 4 threads
    assert executor.gpu_placement(Fraction(1)).slots == 2
    assert executor._client.plugins  # each worker gets the allocator that picks its devices
    with pytest.raises(ConfigError, match=r"more GPUs per trial than any Dask worker declares \(at most GPU=2\)"):
        executor.gpu_placement(Fraction(3))
    with pytest.raises(ConfigError, match=r"no Dask worker declares a GPU resource; start workers with "
                                          r"`dask worker --resources GPU=N`"):
        _dask(4, {}).gpu_placement(Fraction(1))
