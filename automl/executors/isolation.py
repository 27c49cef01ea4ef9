"""Run one trial in a child process with a wall-clock timeout and a memory limit.

The child is forked from a forkserver that has already imported torch and automl, so starting it
costs milliseconds, not an import. A child that exceeds its time is killed; one that allocates more
than its memory limit beyond what it started with (``RLIMIT_AS``) fails with MemoryError or is killed;
one that dies by a signal (segfault, OOM killer) is reported as a crash. The child leads its own process
group, and the whole group is killed when the trial ends, so processes the trial forked (a shell
command, data-loader workers) do not outlive it. Whatever happens, the caller gets an answer, and the
worker process that called survives. ``env`` is set in the child before the trial runs, so a GPU trial's
``CUDA_VISIBLE_DEVICES`` holds before torch initialises CUDA there (the forkserver never initialises it).
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Mapping

import cloudpickle


class TrialCrashed(Exception):
    """The process running a trial died (signal, out of memory): a retry may succeed elsewhere."""


class TrialTimeout(Exception):
    """The trial ran past its time limit and was killed."""


@dataclass(frozen=True)
class Limits:
    """Per-trial limits; None means unlimited."""

    timeout_s: float | None = None
    memory_mb: int | None = None

    @property
    def active(self) -> bool:
        return self.timeout_s is not None or self.memory_mb is not None


def _get_context() -> Any:
    """The forkserver context (one server per process, started on first use, torch preloaded)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "automl.study"])
    return ctx


def _address_space_bytes() -> int | None:
    """This process's virtual size (Linux), or None where /proc is not available."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _child(conn: Connection, payload: bytes, memory_mb: int | None, env: Mapping[str, str]) -> None:
    os.setpgid(0, 0)  # its own process group: the parent kills the trial together with what it forked
    os.environ.update(env)
    if memory_mb is not None:
        # The limit is on memory the trial adds: torch alone maps gigabytes of address space.
        limit = (_address_space_bytes() or 0) + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        fn, args = cloudpickle.loads(payload)
        result = fn(*args)
        conn.send_bytes(cloudpickle.dumps(("ok", result)))
    except MemoryError:
        conn.send_bytes(cloudpickle.dumps(("oom", None)))
    except BaseException as exc:  # handed back to the parent, which re-raises it there
        conn.send_bytes(cloudpickle.dumps(("error", exc)))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits,
                 env: Mapping[str, str] | None = None) -> Any:
    """``fn(*args)`` in a child process under ``limits``, with ``env`` added to its environment; raises
    TrialTimeout or TrialCrashed."""
    if multiprocessing.current_process().daemon:
        raise RuntimeError("per-trial limits run each trial in a child process, which a daemonic worker cannot "
                           "start: run Dask workers with DASK_DISTRIBUTED__WORKER__DAEMON=False")
    ctx = _get_context()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, cloudpickle.dumps((fn, args)), limits.memory_mb, dict(env or {})),
                          daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(limits.timeout_s):
            _kill_group(process)
            raise TrialTimeout(f"the trial ran longer than its limit of {limits.timeout_s:g} s and was stopped")
        try:
            status, value = cloudpickle.loads(receive.recv_bytes())
        except EOFError:  # the child died before it could answer
            process.join()
            raise TrialCrashed(_death(process.exitcode, limits)) from None
    finally:
        receive.close()
        _kill_group(process)
    if status == "oom":
        raise TrialCrashed(f"the trial ran out of memory (limit {limits.memory_mb} MB)")
    if status == "error":
        raise value
    return value


def _kill_group(process: Any) -> None:
    """Kill every process left in the trial's group (the child, still a zombie until joined, keeps its
    pid and so its group id from being reused), then the child itself, and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # no such group: the child had not made it yet
        pass
    if process.is_alive():
        process.kill()
    process.join()


def _death(exitcode: int | None, limits: Limits) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the trial's process was killed by {name}{hint}"
    memory = f" (memory limit {limits.memory_mb} MB)" if limits.memory_mb else ""
    return f"the trial's process exited with code {exitcode} before reporting{memory}"
