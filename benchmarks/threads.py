"""Torch threads per trial: the load-aware policy against torch's default threads and one thread, on an
idle machine and beside a busy process (a benchmark, not a test).

Each arm runs ``automl search`` on the ``autobert`` space with a short BIWS estimator (``pretrain_steps``
200 by default, as measured in the issue that asked for the policy) for 2 trials, in a fresh output
folder (so every arm trains its own supernet), and is timed from outside:

* ``default``  -- ``--threads N`` with N = this process's usable cores: torch's own default threads;
* ``one``      -- ``--threads 1``;
* ``policy``   -- no ``--threads``: automl chooses from the load (``automl.executors.threads``).

Conditions: ``idle``, and ``busy``, beside one other process that keeps one core busy (a numpy matrix
product loop with one thread). Each condition runs the three arms ``--repeats`` times, interleaved, and
the table shows each arm's median (every run is in ``threads.json``). Targets: in each condition the
policy's median is within 10% of the better fixed choice's.

    .venv/bin/python benchmarks/threads.py            # both conditions, all arms
    .venv/bin/python benchmarks/threads.py --quick    # 20 pre-training steps (a smoke run)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import REPO, ForeignCpu, cpu_model, git_commit, version

RESULTS = Path(__file__).resolve().parent / "results"
AUTOML = str(Path(sys.executable).parent / "automl")
TARGET = 1.10  # policy time <= 1.10 x the better fixed choice
NOTE = re.compile(r"(?:machine busy|oversubscribed): other processes use [\d.]+ of \d+ cores, \d+ threads?/trial")
BUSY = ("import numpy as np\nrng = np.random.default_rng(0)\na = rng.random((400, 400))\n"
        "while True:\n    a = np.tanh(a @ a / 400.0)\n")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def space_file(folder: Path, pretrain_steps: int, finetune_steps: int) -> Path:
    """The registered autobert space with a shorter BIWS pre-training."""
    spec = yaml.safe_load((REPO / "search_spaces" / "autobert.yaml").read_text())
    spec["name"] = "autobert-threads"
    spec["estimator"] = {"name": "biws", "options": {"pretrain_steps": pretrain_steps,
                                                     "finetune_steps": finetune_steps}}
    path = folder / "autobert-threads.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_arm(arm: str, space: Path, trials: int) -> dict[str, Any]:
    """One timed search in a fresh folder; its wall-clock seconds and what it printed about the machine."""
    with tempfile.TemporaryDirectory() as work:
        command = [AUTOML, "search", "--space", str(space), "--trials", str(trials), "--seed", "0"]
        if arm == "default":
            command += ["--threads", str(usable_cores())]
        elif arm == "one":
            command += ["--threads", "1"]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["COLUMNS"] = "250"  # the progress line in full (it carries the policy's note)
        foreign = ForeignCpu()
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=3600)
        seconds = time.perf_counter() - start
        other = foreign.stop()
    if result.returncode != 0:
        raise RuntimeError(f"{arm}: automl search failed:\n{result.stderr[-2000:]}")
    notes = sorted(set(NOTE.findall(result.stderr)))
    return {"arm": arm, "seconds": seconds, "foreign_cpu": other, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 pre-training steps: a smoke run")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each arm per condition (default 2)")
    parser.add_argument("--conditions", default="idle,busy")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    steps, finetune = (20, 20) if args.quick else (200, 200)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        space = space_file(Path(folder), steps, finetune)
        for condition in args.conditions.split(","):
            busy = None
            if condition == "busy":
                busy = subprocess.Popen([sys.executable, "-c", BUSY], env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                           "OPENBLAS_NUM_THREADS": "1"})
                time.sleep(3.0)  # let the policy's load meter see it
            try:
                for repeat in range(args.repeats):
                    for arm in ("default", "one", "policy"):
                        row = {"condition": condition, "repeat": repeat, **run_arm(arm, space, args.trials)}
                        print(f"{condition:5} {arm:8} {row['seconds']:7.1f} s  {row['notes']}", flush=True)
                        rows.append(row)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "commit": git_commit(), "cpu": cpu_model(), "usable_cores": usable_cores(),
              "torch": version("torch"), "pretrain_steps": steps, "finetune_steps": finetune, "trials": args.trials,
              "repeats": args.repeats, "rows": rows}
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "threads.json").write_text(json.dumps(report, indent=2))
        (args.out / "threads.md").write_text(render(report))
    print(render(report))


def render(report: dict[str, Any]) -> str:
    lines = ["# Torch threads per trial: load-aware policy vs fixed choices", "",
             f"{report['date']} · commit {report['commit']} · {report['cpu']} · {report['usable_cores']} usable cores "
             f"· torch {report['torch']}", "",
             f"`automl search --space autobert` with BIWS pre-training of {report['pretrain_steps']} steps and "
             f"fine-tuning of {report['finetune_steps']}, {report['trials']} trials, each arm in a fresh folder. "
             f"`busy`: beside one process that keeps a core busy. Median of {report['repeats']} interleaved runs "
             f"per arm (all runs in brackets). Target: the policy within {TARGET:.2f}x of the better fixed choice "
             f"in each condition.", "",
             "| condition | default threads | 1 thread | policy | policy / best fixed | target | policy's note |",
             "|---|---|---|---|---|---|---|"]
    for condition in dict.fromkeys(r["condition"] for r in report["rows"]):
        runs = {arm: [r["seconds"] for r in report["rows"] if r["condition"] == condition and r["arm"] == arm]
                for arm in ("default", "one", "policy")}
        median = {arm: statistics.median(values) for arm, values in runs.items()}
        ratio = median["policy"] / min(median["default"], median["one"])
        notes = sorted({n for r in report["rows"] if r["condition"] == condition and r["arm"] == "policy"
                        for n in r["notes"]})
        cells = {arm: f"{median[arm]:.1f} s ({', '.join(f'{v:.1f}' for v in runs[arm])})" for arm in runs}
        lines.append(f"| {condition} | {cells['default']} | {cells['one']} | {cells['policy']} | {ratio:.2f}x | "
                     f"{'met' if ratio <= TARGET else 'MISSED'} | {'; '.join(notes) or '-'} |")
    lines += ["", "Other processes' CPU during each arm (besides the busy process itself): see threads.json "
              "(`foreign_cpu`).", ""]
    lines += [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
