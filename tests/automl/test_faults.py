"""Fault tolerance with real components: a Dask LocalCluster, killed worker processes, trials that
raise, hang, exhaust memory or crash. Every test is bounded in time and cleans up after itself."""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import automl
from automl.executors import ProcessExecutor, make_executor
from automl.strategies.base import TrialState

SPACE = automl.space_from_yaml("""
name: faults
space:
  x: {type: float, low: 0.0, high: 1.0}
  mode: {type: categorical, choices: [ok]}
""")


@pytest.fixture(scope="module")
def dask_executor():
    executor = make_executor(spec="dask-local:2")
    yield executor
    executor.shutdown()


def slow_objective(pid_dir: str, seconds: float):
    def objective(config):
        Path(pid_dir, f"{os.getpid()}-{config['x']:.12f}").write_text(str(os.getpid()))
        time.sleep(seconds)
        return config["x"]

    return objective


def kill_first_worker(pid_dir: Path, timeout: float = 60) -> int:
    """Wait until some trial reports its worker's pid, then SIGKILL that worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(pid_dir.iterdir())
        if files:
            pid = int(files[0].read_text())
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError("no trial started")


def test_dask_search_completes(dask_executor):
    assert dask_executor.slots == 2
    study = automl.create_study(SPACE, strategy="random", seed=0)
    study.optimize(lambda c: (c["x"] - 0.3) ** 2, n_trials=12, executor=dask_executor)
    assert len(study.trials) == 12 and all(t.state is TrialState.COMPLETE for t in study.trials)


def test_dask_worker_killed_mid_trial_is_rerun_not_lost(dask_executor, tmp_path):
    study = automl.create_study(SPACE, strategy="random", seed=1, storage=f"sqlite:///{tmp_path}/l.db")
    killer = threading.Thread(target=kill_first_worker, args=(tmp_path / "pids",))
    (tmp_path / "pids").mkdir()
    killer.start()
    study.optimize(slow_objective(str(tmp_path / "pids"), 1.0), n_trials=4, executor=dask_executor)
    killer.join()
    trials = study.trials
    assert len(trials) == 4 and all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.key for t in trials}) == 4  # each finished trial recorded once
    # the killed trial really ran twice: once on the dead worker, once elsewhere
    runs = Counter_by_x(tmp_path / "pids")
    assert max(runs.values()) == 2


def Counter_by_x(pid_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in pid_dir.iterdir():
        x = f.name.split("-", 1)[1]
        counts[x] = counts.get(x, 0) + 1
    return counts


def test_local_worker_killed_mid_trial_is_retried(tmp_path):
    (tmp_path / "pids").mkdir()
    study = automl.create_study(SPACE, strategy="random", seed=2)
    killer = threading.Thread(target=kill_first_worker, args=(tmp_path / "pids",))
    killer.start()
    study.optimize(slow_objective(str(tmp_path / "pids"), 1.0), n_trials=4, executor=ProcessExecutor(2),
                   max_retries=2)
    killer.join()
    trials = study.trials
    finished = [t for t in trials if not t.requeued]
    assert len(finished) == 4 and all(t.state is TrialState.COMPLETE for t in finished)
    retried = [t for t in trials if t.requeued]
    assert retried and all("worker process died" in t.error and "retrying" in t.error for t in retried)
    assert {t.key for t in retried} <= {t.key for t in finished}


def test_raising_hanging_and_memory_hungry_candidates_fail_readably(dask_executor):
    def objective(config):
        if config["mode"] == "raise":
            raise ValueError("bad candidate")
        if config["mode"] == "hang":
            time.sleep(60)
        if config["mode"] == "memory":
            hog = bytearray(2 * 1024**3)  # 2 GB against a 300 MB limit
            return float(len(hog))
        return 1.0

    space = automl.space_from_yaml("""
name: modes
space:
  mode: {type: categorical, choices: [ok, raise, hang, memory]}
""")
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(objective, n_trials=4, executor=dask_executor, trial_timeout=3, max_memory_mb=300)
    by_mode = {t.config["mode"]: t for t in study.trials}
    assert set(by_mode) == {"ok", "raise", "hang", "memory"}
    assert by_mode["ok"].state is TrialState.COMPLETE
    assert by_mode["raise"].state is TrialState.FAILED and "ValueError: bad candidate" in by_mode["raise"].error
    assert by_mode["hang"].state is TrialState.FAILED and "longer than its limit of 3 s" in by_mode["hang"].error
    assert by_mode["memory"].state is TrialState.FAILED and "out of memory (limit 300 MB)" in by_mode["memory"].error


def test_segfaulting_candidate_is_retried_then_failed():
    def objective(config):
        ctypes.string_at(0)  # segmentation fault
        return 0.0

    study = automl.create_study(SPACE, strategy="random", seed=0)
    study.optimize(objective, n_trials=1, trial_timeout=30, max_retries=1)
    trials = study.trials
    assert len(trials) == 2
    assert trials[0].requeued and "SIGSEGV" in trials[0].error and "retrying (attempt 2 of 2)" in trials[0].error
    assert not trials[1].requeued and trials[1].state is TrialState.FAILED and "SIGSEGV" in trials[1].error
    assert trials[1].info["requeue_of"] == 0


def test_a_second_driver_is_refused_while_the_first_is_alive(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    first = automl.create_study(SPACE, strategy="random", seed=0, storage=url)
    started = threading.Event()

    def objective(config):
        started.set()
        time.sleep(3)
        return 0.0

    thread = threading.Thread(target=first.optimize, args=(objective,), kwargs={"n_trials": 1})
    thread.start()
    started.wait(10)
    held = first.ledger.driver_claim().current()
    assert held is not None and held.pid == os.getpid() and held.beat > 0
    second = automl.create_study(SPACE, strategy="random", storage=url)
    with pytest.raises(automl.StorageError, match="being run by another driver"):
        second.optimize(lambda c: 0.0, n_trials=1)
    thread.join()


def test_a_driver_that_finished_releases_the_study(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    first = automl.create_study(SPACE, strategy="random", seed=0, storage=url)
    first.optimize(lambda c: 0.0, n_trials=1)
    held = first.ledger.driver_claim().current()
    assert held is not None and held.beat == 0.0  # released
    automl.create_study(SPACE, strategy="random", storage=url).optimize(lambda c: 0.0, n_trials=1)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_worker_processes_take_the_torch_threads_they_are_given():
    executor = ProcessExecutor(1, threads=1)
    try:
        assert executor.submit(_torch_threads).result(timeout=120) == 1
    finally:
        executor.shutdown()


def _race_for_the_study(url: str, barrier, results) -> None:
    study = automl.create_study(SPACE, strategy="random", seed=0, storage=url)
    barrier.wait()
    try:
        study.optimize(lambda c: time.sleep(1.5) or 0.0, n_trials=1)
        results.put("ran")
    except automl.StorageError as exc:
        results.put(f"refused: {exc}")


def _released_together(target, url: str, processes: int = 4) -> list[str]:
    """Run ``target(url, barrier, results)`` in fresh processes released at one moment; their answers."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return outcomes


def test_two_drivers_starting_at_the_same_moment_cannot_both_run_the_study(tmp_path):
    """The claim is one compare-and-set in the database: of drivers released together, one runs."""
    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/race{attempt}.db"
        automl.create_study(SPACE, strategy="random", seed=0, storage=url)  # the schema exists beforehand
        outcomes = _released_together(_race_for_the_study, url)
        assert outcomes.count("ran") == 1, outcomes
        assert all("being run by another driver" in o for o in outcomes if o != "ran"), outcomes
        study = automl.create_study(SPACE, strategy="random", storage=url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE]


def _create_concurrently(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        automl.create_study(SPACE, strategy="random", seed=0, storage=url)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_drivers_creating_the_same_new_ledger_at_once_all_succeed(tmp_path):
    assert _released_together(_create_concurrently, f"sqlite:///{tmp_path}/new.db") == ["ok"] * 4
