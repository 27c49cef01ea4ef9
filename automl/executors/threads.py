"""How many torch threads a trial gets: chosen from the load actually on the machine, never above the
usable cores divided by the concurrent trials.

Measured here (2 cores, autobert, 200 pre-training steps, 2 trials): on an idle machine torch's default
threads took 25 s and one thread 33 s; beside one busy process the default took 56-72 s and one thread
28-33 s. Threads beyond the free cores cost far more than they gain, so the policy gives each trial
``round(free cores / concurrent trials)`` threads, between 1 and ``usable cores // concurrent trials``,
where the free cores are the usable ones minus what *other* processes (not this search) keep busy.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; the machine's count where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one trial: ``threads`` now, at most ``cap``; ``other_load`` is the cores other
    processes kept busy when it was decided (None: not measured, e.g. a fixed ``--threads``)."""

    threads: int
    cap: int
    other_load: float | None = None
    usable: int = 1

    @property
    def oversubscribed(self) -> bool:
        """Other processes leave less than one free core per thread of ours."""
        return self.other_load is not None and self.usable - self.other_load < self.threads - 0.25

    def describe(self, concurrent: int = 1) -> str:
        """A short note for the progress line ('' when the machine is as free as assumed)."""
        if self.other_load is None or self.other_load < 0.5:
            return ""
        busy = f"other processes use {self.other_load:.1f} of {self.usable} cores"
        per = f"{self.threads} thread{'s' if self.threads > 1 else ''}/trial"
        return f"oversubscribed: {busy}, {per}" if self.oversubscribed else f"machine busy: {busy}, {per}"


def choose_threads(usable: int, concurrent: int, other_load: float) -> ThreadPlan:
    """The thread policy (module docstring) as a pure function of what was measured."""
    cap = max(1, usable // max(1, concurrent))
    free = max(0.0, usable - max(0.0, other_load))
    threads = max(1, min(cap, int(round(free / max(1, concurrent)))))
    return ThreadPlan(threads=threads, cap=cap, other_load=max(0.0, other_load), usable=usable)


class LoadMeter:
    """The CPU (in cores) that processes outside ``ours`` keep busy, from the system's and our process
    tree's CPU times between two readings."""

    def __init__(self, pid: int | None = None) -> None:
        self.process = psutil.Process(pid)
        self._last: tuple[float, float, float] | None = None
        self._lock = threading.Lock()

    def _own_seconds(self) -> float:
        total = 0.0
        for proc in [self.process, *self._children()]:
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):  # a child that just ended
                continue
            total += times.user + times.system
        return total

    def _children(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = self.process.children(recursive=True)
            return children
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []

    def sample(self) -> float | None:
        """Cores busy outside our tree since the previous sample (None on the first call)."""
        with self._lock:
            now = time.monotonic()
            system = psutil.cpu_times()
            busy: float = sum(getattr(system, field, 0.0) for field in ("user", "system", "nice", "irq", "softirq"))
            own = self._own_seconds()
            last, self._last = self._last, (now, busy, own)
            if last is None or now - last[0] < 0.05:
                return None
            other: float = ((busy - last[1]) - (own - last[2])) / (now - last[0])
            return max(0.0, other)


class ThreadPolicy:
    """The driver's side: samples the load in the background and plans each trial's threads."""

    def __init__(self, concurrent: int, *, fixed: int | None = None, interval: float = 2.0) -> None:
        self.concurrent, self.fixed, self.interval = max(1, concurrent), fixed, interval
        self.usable = usable_cores()
        self.meter = LoadMeter()
        self.load = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if fixed is None:
            self.meter.sample()
            time.sleep(0.1)
            self.load = self.meter.sample() or 0.0

    def start(self) -> None:
        if self.fixed is None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="automl-load", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            value = self.meter.sample()
            if value is not None:  # a smoothed estimate: one busy burst must not halve every trial
                self.load = 0.5 * self.load + 0.5 * value

    def stop(self) -> None:
        self._stop.set()

    def plan(self) -> ThreadPlan:
        if self.fixed is not None:
            return ThreadPlan(threads=self.fixed, cap=self.fixed, other_load=None, usable=self.usable)
        return choose_threads(self.usable, self.concurrent, self.load)


def apply_threads(threads: int) -> None:
    """Set torch's intra-op threads (torch is imported by whoever trains)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
