"""Scaling of automl's executors on one machine (a benchmark, not a test).

Two measurements, in one invocation:

1. **Throughput** of a search of CPU-bound trials with 1 and 2 local workers, for
   ``ProcessExecutor(1)`` / ``ProcessExecutor(2)`` and a Dask ``LocalCluster`` of 1 / 2 workers
   (``make_executor(spec="dask-local:N")``), plus the inline executor (trials in the driver) for
   reference. Each trial is a fixed amount of single-threaded numpy work (``tanh(M @ M)`` on a 64x64
   matrix, repeated), calibrated once in the driver to take about ``--trial-s`` seconds. BLAS/OpenMP
   threads are pinned to one: ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` are set at the top of this script,
   before numpy is imported and before any worker starts (workers inherit them), and the objective
   itself runs under ``threadpoolctl.threadpool_limits(1)``. So a worker uses one core whatever the
   executor does about threads (``ProcessExecutor(1)`` gives torch 2 threads; the objective does not
   use torch). Each executor is started and warmed up with ``2 x workers`` tiny trials first; that
   start-up (construction + warm-up) is reported separately and excluded from the throughput, which
   is ``trials / wall time of study.optimize(...)`` on a fresh in-memory study.

2. **Dispatch overhead** per trial with a no-op objective (returns 0.0 at once): inline,
   ``ProcessExecutor(2)``, ``dask-local:1`` and ``dask-local:2``, each with in-memory storage (``storage=None``) and
   with a fresh SQLite file, as (wall time of ``optimize``) / trials after a warm-up. A third row per
   executor times the executor alone (``executor.submit`` of a no-op with as many in flight as it has
   slots, no automl loop), which splits the per-trial cost into executor, loop and ledger shares.

Targets: >= 1.8x trials/s from 1 to 2 workers (each executor kind); Dask dispatch < 10 ms per trial
(automl loop, in-memory storage, dask-local:2).

Writes ``benchmarks/results/scaling.json`` (raw numbers) and ``scaling.md``.

    .venv/bin/python benchmarks/scaling.py          # full run (~5 minutes on 2 cores)
    .venv/bin/python benchmarks/scaling.py --quick  # a fast functional run (~1 minute)

Run it on an otherwise idle machine: a concurrent CPU-heavy process distorts the figures (the
script records the load average and any other ``benchmarks/`` process it sees).
"""
from __future__ import annotations

import os

# Before numpy (or anything that loads a BLAS) is imported, here and in every worker (inherited).
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
os.environ.update(THREAD_ENV)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import FIRST_COMPLETED, wait  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import automl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import ForeignCpu, cpu_model, version  # noqa: E402

from automl.executors import Executor, InlineExecutor, ProcessExecutor, make_executor  # noqa: E402
from automl.strategies.base import TrialState  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 1.8
TARGET_DASK_MS = 10.0
FOREIGN_MAX = 0.05  # other processes' share of the CPUs above which a run is flagged as disturbed
MATRIX = 64

SPACE_YAML = """
name: scaling
space:
  x: {type: float, low: 0, high: 1}
"""

FULL = {"trial_s": 0.8, "trials": 40, "repeats": 2, "dispatch_trials": 300, "dispatch_warmup": 20}
QUICK = {"trial_s": 0.25, "trials": 8, "repeats": 1, "dispatch_trials": 60, "dispatch_warmup": 6}


# -- the work --------------------------------------------------------------------------------------
def cpu_work(units: int, seed: float = 0.5) -> float:
    """``units`` steps of ``M <- tanh(0.1 * M @ M)`` on a 64x64 matrix, on one thread."""
    with threadpool_limits(limits=1):
        m = np.full((MATRIX, MATRIX), seed / MATRIX) + np.eye(MATRIX) * 0.5
        for _ in range(units):
            m = np.tanh((m @ m) * 0.1)
        return float(m.sum())


@dataclass(frozen=True)
class CpuObjective:
    """A CPU-bound trial of fixed work (travels to workers by value with cloudpickle)."""

    units: int

    def __call__(self, config: Any) -> float:
        return cpu_work(self.units, float(config["x"]))


def noop(config: Any) -> float:
    return 0.0


def noop_task() -> float:
    return 0.0


def calibrate(target_s: float) -> dict[str, Any]:
    """Units of work for a trial of about ``target_s`` seconds, measured here on one thread."""
    cpu_work(200)  # warm caches / BLAS
    probe = 2000
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        cpu_work(probe)
        rates.append(probe / (time.perf_counter() - t0))
    units = max(1, round(statistics.median(rates) * target_s))
    t0 = time.perf_counter()
    cpu_work(units)
    return {"units": units, "probe_units_per_s": rates, "check_s": time.perf_counter() - t0,
            "target_s": target_s}


# -- executors -------------------------------------------------------------------------------------
def new_executor(kind: str, workers: int) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        return make_executor(spec=f"dask-local:{workers}")
    raise ValueError(kind)


LABELS = {"inline": "inline (driver process)", "process": "ProcessExecutor", "dask": "Dask LocalCluster"}


def fresh_study(storage: str | None = None) -> automl.Study:
    return automl.create_study(automl.space_from_yaml(SPACE_YAML), strategy="random", storage=storage, seed=0)


def check_complete(study: automl.Study, n: int, what: str) -> list[float]:
    trials = study.trials
    bad = [t for t in trials if t.state is not TrialState.COMPLETE]
    if len(trials) != n or bad:
        detail = bad[0].error if bad else f"{len(trials)} trials"
        raise RuntimeError(f"{what}: expected {n} complete trials, got {len(trials) - len(bad)} ({detail})")
    return [float(t.duration_s or 0.0) for t in trials]


def start_and_warm(kind: str, workers: int, warm: Callable[..., Any],
                   warm_trials: int) -> tuple[Executor, dict[str, float]]:
    t0 = time.perf_counter()
    executor = new_executor(kind, workers)
    t1 = time.perf_counter()
    study = fresh_study()
    study.optimize(warm, n_trials=warm_trials, executor=executor)
    check_complete(study, warm_trials, f"{kind}:{workers} warm-up")
    t2 = time.perf_counter()
    return executor, {"construct_s": t1 - t0, "warmup_s": t2 - t1, "startup_s": t2 - t0}


def stop(executor: Executor) -> float:
    t0 = time.perf_counter()
    executor.shutdown()
    return time.perf_counter() - t0


# -- measurement 1: throughput ---------------------------------------------------------------------
def throughput_run(kind: str, workers: int, units: int, trials: int) -> dict[str, Any]:
    executor, startup = start_and_warm(kind, workers, CpuObjective(max(1, units // 100)), 2 * workers)
    try:
        study = fresh_study()
        meter = ForeignCpu()
        t0 = time.perf_counter()
        study.optimize(CpuObjective(units), n_trials=trials, executor=executor)
        wall = time.perf_counter() - t0
        foreign = meter.stop()
        durations = check_complete(study, trials, f"{kind}:{workers}")
    finally:
        shutdown_s = stop(executor)
    return {"executor": kind, "workers": workers, "trials": trials, "wall_s": wall, "trials_per_s": trials / wall,
            **startup, "shutdown_s": shutdown_s, "trial_durations_s": durations,
            "mean_trial_s": statistics.fmean(durations),
            # share of the wall time the workers spent inside trials
            "busy_fraction": sum(durations) / (wall * workers),
            "foreign_cpu": foreign, "loadavg_after": os.getloadavg()}


# -- measurement 2: dispatch overhead ------------------------------------------------------------
def raw_dispatch(executor: Executor, n: int) -> float:
    """Seconds for ``n`` no-op tasks through ``executor.submit`` alone, ``slots`` in flight."""
    pending: set[Any] = set()
    submitted = 0
    t0 = time.perf_counter()
    while submitted < n or pending:
        while submitted < n and len(pending) < executor.slots:
            pending.add(executor.submit(noop_task))
            submitted += 1
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
    return time.perf_counter() - t0


def dispatch_runs(kind: str, workers: int, n: int, warmup: int, tmp: Path) -> dict[str, Any]:
    executor, startup = start_and_warm(kind, workers, noop, warmup)
    out: dict[str, Any] = {"executor": kind, "workers": workers, "trials": n, **startup}
    try:
        raw_dispatch(executor, warmup)
        # A throw-away SQLite study first, so that the measured one does not pay for SQLAlchemy's
        # engine set-up and statement compilation.
        warm = fresh_study(f"sqlite:///{tmp / f'warmup-{kind}{workers}.db'}")
        warm.optimize(noop, n_trials=warmup, executor=executor)
        meter = ForeignCpu()
        wall = raw_dispatch(executor, n)
        out["executor_only"] = {"wall_s": wall, "ms_per_trial": wall / n * 1e3}
        for label, storage in (("memory", None), ("sqlite", f"sqlite:///{tmp / f'dispatch-{kind}{workers}.db'}")):
            study = fresh_study(storage)
            t0 = time.perf_counter()
            study.optimize(noop, n_trials=n, executor=executor)
            wall = time.perf_counter() - t0
            check_complete(study, n, f"{kind}:{workers} dispatch/{label}")
            out[label] = {"wall_s": wall, "ms_per_trial": wall / n * 1e3}
        out["foreign_cpu"] = meter.stop()
    finally:
        out["shutdown_s"] = stop(executor)
    return out


# -- environment -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    blas = [{k: info.get(k) for k in ("internal_api", "num_threads", "version")} for info in threadpool_info()]
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("automl", "dask", "distributed", "numpy", "torch", "cloudpickle",
                                            "optuna", "threadpoolctl")},
        "blas_driver": blas,
        "thread_env": THREAD_ENV,
    }


def other_benchmarks() -> list[str]:
    """Command lines of other running ``benchmarks/`` processes (they would steal CPU)."""
    try:
        import psutil
    except ImportError:
        return []
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if proc.info["pid"] not in mine and "benchmarks/" in cmd and "scaling.py" not in cmd:
            found.append(f"{proc.info['pid']}: {cmd}")
    return found


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name} {record.levelname}: {record.getMessage()}")


# -- report ----------------------------------------------------------------------------------------
def summarise(report: dict[str, Any]) -> None:
    runs = report["throughput"]["runs"]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["executor"], run["workers"]), []).append(run)
    summary = []
    for (kind, workers), rs in groups.items():
        summary.append({
            "executor": kind, "workers": workers, "trials": rs[0]["trials"], "repeats": len(rs),
            "wall_s": statistics.fmean(r["wall_s"] for r in rs),
            "trials_per_s": statistics.fmean(r["trials_per_s"] for r in rs),
            "trials_per_s_min": min(r["trials_per_s"] for r in rs),
            "trials_per_s_max": max(r["trials_per_s"] for r in rs),
            "startup_s": statistics.fmean(r["startup_s"] for r in rs),
            "shutdown_s": statistics.fmean(r["shutdown_s"] for r in rs),
            "mean_trial_s": statistics.fmean(r["mean_trial_s"] for r in rs),
            "busy_fraction": statistics.fmean(r["busy_fraction"] for r in rs),
        })
    for row in summary:
        base = next((s for s in summary if s["executor"] == row["executor"] and s["workers"] == 1), None)
        row["speedup"] = row["trials_per_s"] / base["trials_per_s"] if base and row["executor"] != "inline" else None
        # per-repeat speed-ups (repeat i at N workers over repeat i at 1 worker)
        ones = groups.get((row["executor"], 1), [])
        mine = groups[(row["executor"], row["workers"])]
        row["speedup_per_repeat"] = ([m["trials_per_s"] / o["trials_per_s"] for m, o in zip(mine, ones)]
                                     if row["executor"] != "inline" else [])
    report["throughput"]["summary"] = summary
    verdicts = {}
    for kind in ("process", "dask"):
        row = next(s for s in summary if s["executor"] == kind and s["workers"] == 2)
        verdicts[kind] = {"speedup": row["speedup"], "met": row["speedup"] >= TARGET_SPEEDUP,
                          "per_repeat": row["speedup_per_repeat"]}
    dask = next(d for d in report["dispatch"]["runs"] if d["executor"] == "dask" and d["workers"] == 2)
    verdicts["dask_dispatch"] = {"ms_per_trial": dask["memory"]["ms_per_trial"],
                                 "met": dask["memory"]["ms_per_trial"] < TARGET_DASK_MS}
    shares = [r["foreign_cpu"]["share"] for r in runs] + [d["foreign_cpu"]["share"] for d in report["dispatch"]["runs"]]
    verdicts["max_foreign_cpu_share"] = max(shares)
    verdicts["clean"] = max(shares) <= FOREIGN_MAX
    report["verdicts"] = verdicts


def render(report: dict[str, Any]) -> str:
    m, s, cal = report["machine"], report["settings"], report["calibration"]
    v = report["verdicts"]
    lines = [
        "# automl executor scaling: 1 vs 2 workers, and per-trial dispatch overhead",
        "",
        f"- Date: {report['date']}" + (" (**--quick run**: small settings, figures are indicative only)"
                                       if report["quick"] else ""),
        f"- Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}",
        f"- Versions: Python {m['python']}, automl {m['automl']}, dask {m['dask']}, distributed "
        f"{m['distributed']}, numpy {m['numpy']}, torch {m['torch']}, cloudpickle {m['cloudpickle']}, "
        f"optuna {m['optuna']}",
        f"- Threads: {', '.join(f'{k}=1' for k in m['thread_env'])} set before numpy is imported and "
        "inherited by every worker; the objective also runs under `threadpoolctl.threadpool_limits(1)`.",
        f"- Load average at start: {', '.join(f'{x:.2f}' for x in report['loadavg_start'])}; other "
        f"`benchmarks/` processes seen: {', '.join(report['other_benchmarks_seen']) or 'none'}",
        f"- Total benchmark time: {report['total_s']:.0f} s",
        f"- One-off, before any measurement: `import distributed` {report['import_distributed_s']:.2f} s; the "
        f"process's first `create_study` + `optimize` (2 no-op trials) {report['first_study_s']:.2f} s"
        + (" (it imports torch: the registry loads every strategy entry point on the first look-up, "
           "one-shot among them)" if report["torch_imported_by_first_study"] else "") + ".",
        "",
        "## Settings",
        "",
        f"- CPU-bound trial: {cal['units']} steps of `M <- tanh(0.1 * M @ M)` on a {MATRIX}x{MATRIX} float64 "
        f"matrix (single-threaded numpy), calibrated in the driver to about {s['trial_s']} s "
        f"(check run: {cal['check_s']:.3f} s).",
        f"- Throughput: {s['trials']} trials per configuration, {s['repeats']} repeat(s) each, a fresh "
        "in-memory study (`strategy=\"random\"`) per run, `study.optimize(objective, n_trials, executor=...)`. "
        "Each run starts a fresh executor and warms it up with 2 x workers tiny trials (~1% of the work); "
        "**start-up** = construction + warm-up, excluded from the wall time. Order per repeat: "
        + ", ".join(f"{k}:{w}" for k, w in report["throughput"]["order"]) + ".",
        f"- Dispatch: {s['dispatch_trials']} no-op trials (a module-level `noop(config) -> 0.0`) per row, on "
        f"one warm executor per executor kind (warmed up with {s['dispatch_warmup']} trials in memory, "
        f"{s['dispatch_warmup']} raw submits and {s['dispatch_warmup']} trials on a throw-away SQLite file); "
        "each SQLite row uses a fresh file in a temporary folder.",
        "",
        "## Throughput (CPU-bound trials)",
        "",
        "| executor | workers | trials | wall s | trials/s | speed-up vs 1 worker | start-up s | shutdown s "
        "| mean trial s (in worker) | workers busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]["summary"]:
        speed = "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"
        if len(row["speedup_per_repeat"]) > 1:
            speed += " (" + ", ".join(f"{x:.2f}" for x in row["speedup_per_repeat"]) + ")"
        tps = f"{row['trials_per_s']:.3f}"
        if row["repeats"] > 1:
            tps += f" ({row['trials_per_s_min']:.3f}-{row['trials_per_s_max']:.3f})"
        lines.append(f"| {LABELS[row['executor']]} | {row['workers']} | {row['trials']} | {row['wall_s']:.2f} "
                     f"| {tps} | {speed} | {row['startup_s']:.2f} | {row['shutdown_s']:.2f} "
                     f"| {row['mean_trial_s']:.3f} | {row['busy_fraction'] * 100:.1f}% |")
    lines += [
        "",
        "Figures are means over the repeats; the ranges of trials/s and the per-repeat speed-ups are in "
        "parentheses. \"mean trial s\" is the trial's own duration measured in the worker; \"workers busy\" is "
        "the sum of those durations over (wall x workers). The inline row runs the trials in the driver "
        "(`InlineExecutor`, what `n_workers=1` uses) and has no speed-up.",
        "",
        "Per run:",
        "",
        "| repeat | executor | workers | wall s | trials/s | construct s | warm-up s | mean trial s "
        "| other processes' CPU | load avg after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["throughput"]["runs"]:
        lines.append(f"| {run['repeat']} | {LABELS[run['executor']]} | {run['workers']} | {run['wall_s']:.2f} "
                     f"| {run['trials_per_s']:.3f} | {run['construct_s']:.2f} | {run['warmup_s']:.2f} "
                     f"| {run['mean_trial_s']:.3f} | {run['foreign_cpu']['share'] * 100:.1f}% "
                     f"| {run['loadavg_after'][0]:.2f} |")
    lines += [
        "",
        "\"other processes' CPU\": CPU time used during the timed run by processes outside this benchmark's "
        "own process tree, as a share of (wall x CPUs); above "
        f"{FOREIGN_MAX * 100:.0f}% the run was disturbed by something else on the machine.",
        "",
        "## Dispatch overhead (no-op trials)",
        "",
        "| executor | workers | executor only (ms/trial) | automl loop, in-memory (ms/trial) "
        "| automl loop, SQLite (ms/trial) | ledger share (SQLite - memory, ms) | start-up s | other processes' CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in report["dispatch"]["runs"]:
        lines.append(f"| {LABELS[d['executor']]} | {d['workers']} | {d['executor_only']['ms_per_trial']:.2f} "
                     f"| {d['memory']['ms_per_trial']:.2f} | {d['sqlite']['ms_per_trial']:.2f} "
                     f"| {d['sqlite']['ms_per_trial'] - d['memory']['ms_per_trial']:.2f} | {d['startup_s']:.2f} "
                     f"| {d['foreign_cpu']['share'] * 100:.1f}% |")
    lines += [
        "",
        "ms/trial = wall time / trials. \"executor only\": `executor.submit(noop)` with as many tasks in flight "
        "as the executor has slots, no automl loop (the executor's own round trip); \"automl loop\": "
        "`study.optimize(noop, n_trials, executor=...)` (strategy ask, ledger start/finish, outcome checks, "
        "strategy tell, plus the executor), with `storage=None` (Optuna in-memory storage) or a fresh SQLite file.",
        "",
    ]
    d1 = next((d for d in report["dispatch"]["runs"] if d["executor"] == "dask" and d["workers"] == 1), None)
    d2 = next(d for d in report["dispatch"]["runs"] if d["executor"] == "dask" and d["workers"] == 2)
    if d1 is not None:
        lines += [
            f"Dask's cost per trial is a round-trip latency, not CPU work: with one worker (one trial in flight) a "
            f"no-op trial takes {d1['executor_only']['ms_per_trial']:.1f} ms through the executor alone, with two "
            f"workers {d2['executor_only']['ms_per_trial']:.1f} ms (two in flight). automl's loop keeps exactly "
            "`executor.slots` trials in flight, so it sees about one round trip / slots per trial; distributed's "
            "`Client` batches its messages to the scheduler (`BatchedSend(interval=\"10ms\")` in "
            "`distributed/client.py`), which sets a floor of about 10 ms per round trip. The loop's own work "
            "(ask, ledger, tell) overlaps with the trials in flight, which is why \"automl loop, in-memory\" is "
            "close to \"executor only\" for the process and Dask executors.",
            "",
        ]
    lines += [
        "## Verdicts",
        "",
    ]
    for kind in ("process", "dask"):
        vk = v[kind]
        per = (" (per repeat: " + ", ".join(f"{x:.2f}x" for x in vk["per_repeat"]) + ")"
               if len(vk["per_repeat"]) > 1 else "")
        lines.append(f"- {LABELS[kind]} 1 -> 2 workers, target >= {TARGET_SPEEDUP}x: "
                     f"**{'met' if vk['met'] else 'missed'}**, {vk['speedup']:.2f}x{per}.")
    dd = v["dask_dispatch"]
    lines.append(f"- Dask dispatch (dask-local:2, automl loop, in-memory storage), "
                 f"target < {TARGET_DASK_MS:g} ms/trial: "
                 f"**{'met' if dd['met'] else 'missed'}**, {dd['ms_per_trial']:.2f} ms/trial.")
    if not v["clean"]:
        lines.append(f"- **Disturbed run**: other processes used up to {v['max_foreign_cpu_share'] * 100:.0f}% of the "
                     "CPUs during a measurement (see the per-run table); the figures above are not reliable.")
        culprits = sorted({name for r in report["throughput"]["runs"] + report["dispatch"]["runs"]
                           if r["foreign_cpu"]["share"] > FOREIGN_MAX for name in r["foreign_cpu"]["top"]})
        lines += [f"  - `{name}`" for name in culprits[:10]]
    if report["quick"]:
        lines.append("- These verdicts come from a `--quick` run (short measurements); the full run is the reference.")
    if report["log_messages"]:
        lines += ["", "## Warnings seen during the run", ""]
        lines += [f"- `{msg[:300]}`" for msg in report["log_messages"][:30]]
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        ".venv/bin/python benchmarks/scaling.py          # full run, writes this file and scaling.json",
        ".venv/bin/python benchmarks/scaling.py --quick  # fast functional run (short trials, few of them)",
        "```",
        "",
        "Run on an otherwise idle machine; on a 2-core machine any other CPU-heavy process lowers the "
        "2-worker figures first.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short trials, few of them: a fast functional run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for scaling.md / scaling.json")
    parser.add_argument("--trials", type=int, help="CPU-bound trials per configuration")
    parser.add_argument("--trial-s", type=float, help="target seconds per CPU-bound trial")
    parser.add_argument("--repeats", type=int, help="repeats of each throughput configuration")
    parser.add_argument("--dispatch-trials", type=int, help="no-op trials per dispatch row")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("trials", "trial_s", "repeats", "dispatch_trials"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per study
    collect = _Collect()
    logging.captureWarnings(True)
    for name in ("distributed", "dask", "py.warnings", "tornado", "asyncio"):
        logging.getLogger(name).addHandler(collect)
    warnings.simplefilter("default")

    started = time.perf_counter()
    others = other_benchmarks()
    if others:
        print("warning: other benchmarks are running and will distort the figures:\n  " + "\n  ".join(others),
              file=sys.stderr)
    report: dict[str, Any] = {
        "benchmark": "automl executor scaling (1 vs 2 workers) and dispatch overhead",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "settings": settings, "machine": machine(),
        "targets": {"speedup_min": TARGET_SPEEDUP, "dask_dispatch_ms_max": TARGET_DASK_MS},
        "loadavg_start": os.getloadavg(), "other_benchmarks_seen": others,
    }

    t0 = time.perf_counter()
    import distributed  # noqa: F401  (its import is slow; paid once here, not in the first start-up)
    report["import_distributed_s"] = time.perf_counter() - t0
    print(f"import distributed: {report['import_distributed_s']:.2f} s", flush=True)

    # The first study of a process pays one-off imports (registry entry points; before commit 94c8143
    # the first look-up loaded every strategy, importing torch through one-shot, ~1.2 s): paid here,
    # so that it is not counted as the first executor's start-up, and reported on its own.
    t0 = time.perf_counter()
    fresh_study().optimize(noop, n_trials=2)
    report["first_study_s"] = time.perf_counter() - t0
    report["torch_imported_by_first_study"] = "torch" in sys.modules
    print(f"first study in this process: {report['first_study_s']:.2f} s", flush=True)

    cal = calibrate(settings["trial_s"])
    report["calibration"] = cal
    print(f"calibration: {cal['units']} units ~ {cal['check_s']:.3f} s per trial", flush=True)

    order = [("inline", 1), ("process", 1), ("process", 2), ("dask", 1), ("dask", 2)]
    runs = []
    for repeat in range(settings["repeats"]):
        for kind, workers in order:
            if kind == "inline" and repeat > 0:
                continue  # the reference row once is enough
            run = throughput_run(kind, workers, cal["units"], settings["trials"])
            run["repeat"] = repeat + 1
            runs.append(run)
            print(f"[{repeat + 1}] {kind}:{workers}  wall {run['wall_s']:.2f} s  {run['trials_per_s']:.3f} trials/s  "
                  f"start-up {run['startup_s']:.2f} s  mean trial {run['mean_trial_s']:.3f} s  "
                  f"busy {run['busy_fraction'] * 100:.1f}%  others {run['foreign_cpu']['share'] * 100:.1f}% CPU",
                  flush=True)
    report["throughput"] = {"order": order, "runs": runs}

    dispatch = []
    with tempfile.TemporaryDirectory(prefix="automl-scaling-") as tmp:
        for kind, workers in (("inline", 1), ("process", 2), ("dask", 1), ("dask", 2)):
            d = dispatch_runs(kind, workers, settings["dispatch_trials"], settings["dispatch_warmup"], Path(tmp))
            dispatch.append(d)
            print(f"dispatch {kind}:{workers}  executor only {d['executor_only']['ms_per_trial']:.2f} ms  "
                  f"memory {d['memory']['ms_per_trial']:.2f} ms  sqlite {d['sqlite']['ms_per_trial']:.2f} ms/trial",
                  flush=True)
    report["dispatch"] = {"runs": dispatch}

    report["total_s"] = time.perf_counter() - started
    report["log_messages"] = collect.messages
    report["other_benchmarks_seen_end"] = other_benchmarks()
    summarise(report)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    markdown = render(report)
    (args.out / "scaling.md").write_text(markdown)
    verdict_start = markdown.index("## Verdicts")
    print(markdown[verdict_start:markdown.index("## ", verdict_start + 3)])
    print(f"wrote {args.out / 'scaling.md'} and {args.out / 'scaling.json'} ({report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
