"""What a user sees while a study runs: a live bar with done / running / failed, best so far and ETA,
one more bar per long phase inside a running trial (supernet pre-training, a teacher pool: steps, loss,
ETA), and a note when other processes keep the machine busy.

A trial's long phases report from wherever the trial runs (this process, a worker process) through
small JSON files in a progress folder (:class:`TrialMonitor`, written at most once a second); the
driver's :class:`ProgressWatcher` reads them and updates the reporter.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from automl.executors.threads import LoadMeter, ThreadPlan, apply_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseState:
    """One running phase as its trial last reported it."""

    trial: int
    phase: str
    done: int
    total: int
    loss: float | None
    started: float
    updated: float


class Reporter(Protocol):
    def start(self, total: int | None, done: int) -> None: ...

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None: ...

    def phases(self, states: Mapping[int, PhaseState]) -> None: ...

    def note(self, text: str) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    def start(self, total: int | None, done: int) -> None:
        pass

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None:
        pass

    def phases(self, states: Mapping[int, PhaseState]) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter:
    """Rich progress bars: the study's, and one per long phase of a running trial."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.description = description
        self.task_id: TaskID | None = None
        self.phase_tasks: dict[tuple[int, str], TaskID] = {}
        self.machine = ""
        self._lock = threading.Lock()

    def start(self, total: int | None, done: int) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(self.description, total=total, completed=done, info="")

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None:
        """``phase``: what the strategy is doing now (e.g. one-shot's supernet / search / standalone)."""
        if self.task_id is None:
            return
        description = f"{self.description} [{phase}]" if phase else self.description
        info = f"running {running} · failed {failed} · best {best}" + (f" · {self.machine}" if self.machine else "")
        with self._lock:
            self.progress.update(self.task_id, completed=done, description=description, info=info)

    def note(self, text: str) -> None:
        """A standing remark about the machine (e.g. that it is oversubscribed); '' clears it."""
        self.machine = text

    def phases(self, states: Mapping[int, PhaseState]) -> None:
        with self._lock:
            live = {(s.trial, s.phase) for s in states.values()}
            for key in [k for k in self.phase_tasks if k not in live]:
                self.progress.remove_task(self.phase_tasks.pop(key))
            for state in states.values():
                key = (state.trial, state.phase)
                info = f"loss {state.loss:.4g}" if state.loss is not None else ""
                if key not in self.phase_tasks:
                    self.phase_tasks[key] = self.progress.add_task(
                        f"  trial {state.trial}: {state.phase}", total=state.total, completed=state.done, info=info)
                else:
                    self.progress.update(self.phase_tasks[key], completed=state.done, total=state.total, info=info)

    def stop(self) -> None:
        with self._lock:
            for task in self.phase_tasks.values():
                self.progress.remove_task(task)
            self.phase_tasks.clear()
        self.progress.stop()


# -- the worker's side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialMonitor:
    """A trial's companion where it runs (picklable): long phases report their progress to ``folder``
    (None: nowhere) and keep the thread plan the driver chose in step with the machine's load."""

    trial: int
    folder: str | None = None
    plan: ThreadPlan | None = None
    write_every_s: float = 1.0
    recheck_every_s: float = 15.0

    def begin(self) -> None:
        """Apply the planned threads (call before training)."""
        if self.plan is not None:
            apply_threads(self.plan.threads)

    def phase(self, name: str) -> PhaseMonitor:
        return PhaseMonitor(self, name)


class PhaseMonitor:
    """One phase of a trial: :meth:`step` after every training step (it is cheap: it writes at most once
    a second and re-plans threads at most every ``recheck_every_s``)."""

    def __init__(self, trial: TrialMonitor, name: str) -> None:
        self.trial, self.name = trial, name
        self.started = time.time()
        self.last_write = 0.0
        self.last_check = time.monotonic()
        self.meter = LoadMeter(os.getpid()) if trial.plan is not None and trial.plan.other_load is not None else None
        if self.meter is not None:
            self.meter.sample()
        self.path = Path(trial.folder) / f"trial-{trial.trial}.json" if trial.folder else None
        self._warned = False

    def step(self, done: int, total: int, loss: float | None) -> None:
        now = time.monotonic()
        if self.meter is not None and now - self.last_check >= self.trial.recheck_every_s:
            self.last_check = now
            self._replan()
        if self.path is None:
            return
        if done < total and time.time() - self.last_write < self.trial.write_every_s:
            return
        self.last_write = time.time()
        if done >= total:
            self.path.unlink(missing_ok=True)
            return
        state = {"trial": self.trial.trial, "phase": self.name, "done": done, "total": total, "loss": loss,
                 "started": self.started, "updated": self.last_write}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(self.path)
        except OSError as exc:  # the progress line is a courtesy: training goes on without it
            if not self._warned:
                log.warning("cannot write progress to %s: %s", self.path, exc)
                self._warned = True

    def _replan(self) -> None:
        plan = self.trial.plan
        assert plan is not None and self.meter is not None
        other = self.meter.sample()
        if other is None:
            return
        threads = max(1, min(plan.cap, int(round(plan.usable - other))))
        apply_threads(threads)


# -- the driver's side ---------------------------------------------------------------------------------
def read_phases(folder: Path) -> dict[int, PhaseState]:
    """The phases reported in ``folder`` (files being replaced or half-written are skipped)."""
    states: dict[int, PhaseState] = {}
    if not folder.is_dir():
        return states
    for file in folder.glob("trial-*.json"):
        try:
            raw = json.loads(file.read_text())
            state = PhaseState(trial=int(raw["trial"]), phase=str(raw["phase"]), done=int(raw["done"]),
                               total=int(raw["total"]), loss=None if raw["loss"] is None else float(raw["loss"]),
                               started=float(raw["started"]), updated=float(raw["updated"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        states[state.trial] = state
    return states


class ProgressWatcher:
    """A driver thread that shows the phases reported to ``folder`` while trials run (inline ones too)."""

    def __init__(self, folder: Path, reporter: Reporter, interval: float = 0.5) -> None:
        self.folder, self.reporter, self.interval = folder, reporter, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="automl-progress", daemon=True)
        self.live: set[int] = set()

    def start(self) -> None:
        """Start watching; what a killed run left in the folder is removed first (one driver per study)."""
        for stale in self.folder.glob("trial-*.json") if self.folder.is_dir() else ():
            stale.unlink(missing_ok=True)
        self._thread.start()

    def set_running(self, trials: set[int]) -> None:
        """The trials running now: files of others (a killed run's leftovers) are not shown."""
        self.live = set(trials)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.reporter.phases({n: s for n, s in read_phases(self.folder).items() if n in self.live})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.reporter.phases({})
