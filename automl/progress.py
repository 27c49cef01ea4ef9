"""What a user sees while a study runs: a live bar with done / running / failed, best so far and ETA."""
from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter(Protocol):
    def start(self, total: int | None, done: int) -> None: ...

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    def start(self, total: int | None, done: int) -> None:
        pass

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter:
    """A rich progress bar (plain periodic lines when the output is not a terminal)."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]} · failed {task.fields[failed]} · best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.description = description
        self.task_id: int | None = None

    def start(self, total: int | None, done: int) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(self.description, total=total, completed=done,
                                              running=0, failed=0, best="-")

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None:
        """``phase``: what the strategy is doing now (e.g. one-shot's supernet / search / standalone)."""
        if self.task_id is not None:
            description = f"{self.description} [{phase}]" if phase else self.description
            self.progress.update(self.task_id, completed=done, running=running, failed=failed, best=best,
                                 description=description)

    def stop(self) -> None:
        self.progress.stop()
