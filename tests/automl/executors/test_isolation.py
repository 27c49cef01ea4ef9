"""Trials run under limits in a child process: a timed-out trial is stopped together with what it forked."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from automl.executors.isolation import Limits, TrialTimeout, run_isolated


def _spawn_and_hang(pid_file: str) -> None:
    child = subprocess.Popen(["sleep", "300"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(300)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_timed_out_trial_takes_the_processes_it_forked_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    try:
        run_isolated(_spawn_and_hang, (str(pid_file),), Limits(timeout_s=3))
    except TrialTimeout:
        pass
    else:
        raise AssertionError("the trial should have timed out")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the shell command the trial started still runs"


def _spawn_and_return(pid_file: str) -> int:
    child = subprocess.Popen(["sleep", "300"])
    Path(pid_file).write_text(str(child.pid))
    return 7


def test_a_finished_trial_leaves_no_process_behind(tmp_path):
    pid_file = tmp_path / "child.pid"
    assert run_isolated(_spawn_and_return, (str(pid_file),), Limits(timeout_s=30)) == 7
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
