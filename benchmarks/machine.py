"""What every benchmark records about where it ran: package versions, the CPU model, the git commit, and how
much CPU other processes took during a measurement (:class:`ForeignCpu`)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def version(dist: str) -> str:
    """The installed version of distribution ``dist``, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """The short commit of this checkout, noting uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' (uncommitted changes in the working tree)' if dirty else ''}"


class ForeignCpu:
    """CPU seconds used by processes other than this one and its children while a measurement runs: on a
    shared 2-core machine anything else running distorts the figures, so each measurement says how much.

    Start it before the measurement; :meth:`stop` returns ``cpu_s`` (other processes' CPU seconds),
    ``wall_s``, ``share`` (``cpu_s`` / (wall x CPUs)) and ``top`` (the up to 3 heaviest of them, >= 0.5 cpu-s).
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._before = self._snapshot()
        self._t0 = time.perf_counter()

    def _mine(self) -> set[int]:
        me = self._psutil.Process()
        return {me.pid, *(p.pid for p in me.children(recursive=True))}

    def _snapshot(self) -> dict[int, tuple[float, float]]:
        """pid -> (create time, user + system CPU seconds) of every process that is not ours."""
        mine, out = self._mine(), {}
        for proc in self._psutil.process_iter(["pid", "create_time", "cpu_times"]):
            info = proc.info
            if info["pid"] in mine or info["cpu_times"] is None:
                continue
            out[info["pid"]] = (info["create_time"], info["cpu_times"].user + info["cpu_times"].system)
        return out

    def stop(self) -> dict[str, Any]:
        """Other processes' CPU since construction (a process started meanwhile counts in full)."""
        wall = time.perf_counter() - self._t0
        after, used, top = self._snapshot(), 0.0, []
        for pid, (created, cpu) in after.items():
            start = self._before.get(pid)
            delta = cpu - start[1] if start is not None and start[0] == created else cpu
            if delta > 0:
                used += delta
                top.append((delta, pid))
        names = []
        for delta, pid in sorted(top, reverse=True)[:3]:
            if delta >= 0.5:
                try:
                    cmd = " ".join(self._psutil.Process(pid).cmdline())[:120]
                except self._psutil.Error:
                    cmd = "?"
                names.append(f"{pid} ({delta:.1f} cpu-s): {cmd}")
        return {"cpu_s": used, "wall_s": wall, "share": used / (wall * (os.cpu_count() or 1)), "top": names}
