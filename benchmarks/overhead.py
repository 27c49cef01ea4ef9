"""Per-trial orchestration overhead of automl against plain Optuna ask/tell (a benchmark, not a test).

Each contender runs N trials (default 1,000) of a no-op objective over the same 3-parameter space
(float, int, categorical) on its own fresh SQLite file, all in this one process:

* ``optuna/random``   -- ``study.ask()``, three ``suggest_*``, ``study.tell(trial, 0.0)``, with
  ``RandomSampler`` (the apples-to-apples baseline: automl's ``random`` does no modelling either);
* ``automl/random`` and ``automl/evolution`` -- ``automl.create_study(...).optimize(lambda c: 0.0)``,
  the full public loop: strategy ask, validation, ledger start, inline execution, outcome checks,
  ledger finish, strategy tell.

automl is timed from outside, without touching the library: a reporter passed to ``optimize``
records ``time.perf_counter()`` each time the count of finished trials goes up (``_Run`` calls
``reporter.update`` right after a trial's outcome is written to the ledger), so the interval between
two updates is one trial's full cost: ask + ledger writes + tell. The first interval starts at
``reporter.start``, called once the run has read the ledger. Optuna is timed per ask/suggest/tell
iteration with the same clock.

Before measuring, each contender runs a short warm-up on a throw-away database so that no one pays
for SQLAlchemy's statement compilation or first imports alone.

Targets: automl's mean per-trial cost <= 1.2x Optuna RandomSampler's, and a flat per-trial cost as
the study grows (mean of the last 100 trials <= 1.2x the mean of the first 100).

Writes ``benchmarks/results/overhead.json`` (raw per-trial timings) and ``overhead.md`` (the table).

    .venv/bin/python benchmarks/overhead.py               # 1,000 trials per contender
    .venv/bin/python benchmarks/overhead.py --trials 200  # a quick run
    .venv/bin/python benchmarks/overhead.py --profile 300 # also cProfile automl/random (300 trials)
"""
from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import optuna

import automl

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model, version

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.2  # automl mean ms/trial <= 1.2 x Optuna RandomSampler's
TARGET_GROWTH = 1.2  # mean of the last window <= 1.2 x mean of the first window
WARMUP_TRIALS = 20
RUNTIME_BUDGET_S = 180  # what a full run should take on a laptop-class machine

SPACE_YAML = """
name: overhead3
space:
  x: {type: float, low: -5, high: 5}
  y: {type: int, low: 0, high: 100}
  z: {type: categorical, choices: [a, b, c]}
"""
CHOICES = ["a", "b", "c"]


def noop(config: Any) -> float:
    return 0.0


# -- contenders ------------------------------------------------------------------------------------
class _Clock:
    """A reporter that timestamps each trial as it is recorded (only when ``done`` increases)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self._done = 0

    def start(self, total: int | None, done: int) -> None:
        self._done = done
        self.stamps = [time.perf_counter()]

    def update(self, done: int, running: int, failed: int, best: str, phase: str = "") -> None:
        if done > self._done:
            now = time.perf_counter()
            # One stamp per finished trial (with one inline worker ``done`` rises by exactly one).
            self.stamps.extend([now] * (done - self._done))
            self._done = done

    def stop(self) -> None:
        pass


def run_automl(strategy: str, storage: str, n: int) -> dict[str, Any]:
    space = automl.space_from_yaml(SPACE_YAML)
    t0 = time.perf_counter()
    study = automl.create_study(space, strategy=strategy, storage=storage, seed=0)
    t1 = time.perf_counter()
    clock = _Clock()
    study.optimize(noop, n_trials=n, reporter=clock)
    t2 = time.perf_counter()
    per_trial = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
    if len(per_trial) != n:
        raise RuntimeError(f"automl/{strategy}: expected {n} trial timings, got {len(per_trial)}")
    return {"per_trial_s": per_trial, "setup_s": t1 - t0, "loop_wall_s": t2 - t1}


def run_optuna(storage: str, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    study = optuna.create_study(storage=storage, study_name="overhead3", direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    t1 = time.perf_counter()
    per_trial = []
    for _ in range(n):
        start = time.perf_counter()
        trial = study.ask()
        config = {"x": trial.suggest_float("x", -5, 5), "y": trial.suggest_int("y", 0, 100),
                  "z": trial.suggest_categorical("z", CHOICES)}
        study.tell(trial, noop(config))
        per_trial.append(time.perf_counter() - start)
    t2 = time.perf_counter()
    return {"per_trial_s": per_trial, "setup_s": t1 - t0, "loop_wall_s": t2 - t1}


CONTENDERS: list[tuple[str, str, Callable[[str, int], dict[str, Any]]]] = [
    ("optuna", "random", run_optuna),
    ("automl", "random", lambda storage, n: run_automl("random", storage, n)),
    ("automl", "evolution", lambda storage, n: run_automl("evolution", storage, n)),
]


# -- summary ---------------------------------------------------------------------------------------
def summarise(per_trial_s: list[float], window: int) -> dict[str, float]:
    ms = [t * 1e3 for t in per_trial_s]
    first, last = ms[:window], ms[-window:]
    return {
        "first_mean_ms": statistics.fmean(first),
        "last_mean_ms": statistics.fmean(last),
        "overall_mean_ms": statistics.fmean(ms),
        "first_median_ms": statistics.median(first),
        "last_median_ms": statistics.median(last),
        "overall_median_ms": statistics.median(ms),
        "growth_last_over_first": statistics.fmean(last) / statistics.fmean(first),
    }


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "sqlalchemy": version("SQLAlchemy"),
        "torch": version("torch"),
        "automl": automl.__version__,
    }


def render(report: dict[str, Any]) -> tuple[str, str]:
    """(the plain table for the terminal, the whole markdown document)."""
    n, w = report["trials"], report["window"]
    base = report["results"]["optuna/random"]["summary"]
    header = (f"| tool | strategy | first {w} (ms/trial) | last {w} (ms/trial) | overall (ms/trial) "
              f"| last/first | ratio to Optuna random (overall) | ratio (first {w}) | ratio (last {w}) |")
    rows = [header, "|" + "---|" * 9]
    for name, res in report["results"].items():
        s = res["summary"]
        tool, strategy = name.split("/")
        rows.append(
            f"| {tool} | {strategy} | {s['first_mean_ms']:.2f} | {s['last_mean_ms']:.2f} "
            f"| {s['overall_mean_ms']:.2f} | {s['growth_last_over_first']:.2f} "
            f"| {s['overall_mean_ms'] / base['overall_mean_ms']:.2f}x "
            f"| {s['first_mean_ms'] / base['first_mean_ms']:.2f}x | {s['last_mean_ms'] / base['last_mean_ms']:.2f}x |")
    table = "\n".join(rows)

    medians = ["| tool/strategy | median first | median last | median overall | setup (s) | loop wall (s) |",
               "|---|---|---|---|---|---|"]
    for name, res in report["results"].items():
        s = res["summary"]
        medians.append(f"| {name} | {s['first_median_ms']:.2f} | {s['last_median_ms']:.2f} "
                       f"| {s['overall_median_ms']:.2f} | {res['setup_s']:.3f} | {res['loop_wall_s']:.2f} |")

    verdicts = []
    for name, v in report["verdicts"].items():
        ratio_ok = "met" if v["ratio_ok"] else "**MISSED**"
        flat_ok = "met" if v["flat_ok"] else "**MISSED**"
        verdicts.append(
            f"- `{name}`: overhead target (<= {TARGET_RATIO}x Optuna) {ratio_ok}: {v['ratio']:.2f}x overall "
            f"({v['ratio_first']:.2f}x on the first {w}, {v['ratio_last']:.2f}x on the last {w}). "
            f"Flatness target (last {w} <= {TARGET_GROWTH}x first {w}) {flat_ok}: "
            f"{v['first_mean_ms']:.2f} -> {v['last_mean_ms']:.2f} ms/trial ({v['growth']:.2f}x).")
    o = base
    verdicts.append(f"- `optuna/random` for reference: {o['first_mean_ms']:.2f} -> {o['last_mean_ms']:.2f} "
                    f"ms/trial ({o['growth_last_over_first']:.2f}x).")
    all_met = all(v["ratio_ok"] and v["flat_ok"] for v in report["verdicts"].values())
    m = report["machine"]
    medians_md, verdicts_md = "\n".join(medians), "\n".join(verdicts)
    runtime_note = ""
    if report["total_s"] > RUNTIME_BUDGET_S:
        runtime_note = (f" (over the ~{RUNTIME_BUDGET_S // 60} min budget meant for this benchmark: the time goes "
                        "to the automl contenders, whose per-trial cost grows with the study -- see Targets)")
    md = f"""# automl orchestration overhead vs plain Optuna

Per-trial cost of the search loop with a no-op objective over a 3-parameter space (float, int,
categorical), {n} trials per contender, each on its own fresh SQLite file in a temp dir, all in one
process on one machine (contenders run one after another: {", ".join(report["order"])}; each first ran
{report["warmup_trials"]} warm-up trials on a throw-away database).

- Date: {report["date"]}
- Machine: {m["cpu_count"]} CPUs ({m["cpu_model"]}), {m["platform"]}
- Versions: Python {m["python"]}, Optuna {m["optuna"]}, SQLAlchemy {m["sqlalchemy"]}, \
torch {m["torch"]}, automl {m["automl"]}
- Total benchmark time: {report["total_s"]:.0f} s{runtime_note}

## What is timed

- **optuna/random**: one `study.ask()` + `suggest_float/int/categorical` + `study.tell(trial, 0.0)`
  with `RandomSampler(seed=0)` on `RDBStorage` (SQLite) -- timed per iteration.
- **automl/random**, **automl/evolution**: `automl.create_study(space, strategy=..., storage="sqlite:///...",
  seed=0).optimize(lambda config: 0.0, n_trials={n})` -- the full public loop (strategy ask, config
  validation, ledger start, inline run, outcome checks, ledger finish, strategy tell). Timed from
  outside by a `reporter` that stamps `time.perf_counter()` each time a trial has been recorded; one
  trial = the interval between two stamps. Study creation is excluded from both (shown as "setup").

## Results (mean ms/trial)

{table}

Medians and totals:

{medians_md}

## Targets

{"All targets met." if all_met else "Targets **not met** (figures below; the benchmark was not adjusted to pass)."}

{verdicts_md}

## Reproduce

```
.venv/bin/python benchmarks/overhead.py             # {report["default_trials"]} trials per contender, \
writes this file and overhead.json
.venv/bin/python benchmarks/overhead.py --trials 200 # quick run
.venv/bin/python benchmarks/overhead.py --profile 300 # also print a cProfile of automl/random (300 trials)
```

Raw per-trial timings (seconds) are in `overhead.json`.
"""
    return table, md


def profile(n: int) -> str:
    with tempfile.TemporaryDirectory(prefix="automl-overhead-profile-") as tmp:
        space = automl.space_from_yaml(SPACE_YAML)
        study = automl.create_study(space, strategy="random", storage=f"sqlite:///{tmp}/profile.db", seed=0)
        prof = cProfile.Profile()
        prof.enable()
        study.optimize(noop, n_trials=n)
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per contender (default 1000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for overhead.md / overhead.json")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile automl/random over N trials and print the top costs")
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error("--trials must be >= 2")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    window = min(100, args.trials // 2)

    began = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="automl-overhead-") as tmp:
        for tool, strategy, run in CONTENDERS:
            name = f"{tool}/{strategy}"
            run(f"sqlite:///{tmp}/warmup-{tool}-{strategy}.db", WARMUP_TRIALS)
            gc.collect()
            print(f"running {name}: {args.trials} trials ...", file=sys.stderr, flush=True)
            res = run(f"sqlite:///{tmp}/{tool}-{strategy}.db", args.trials)
            res["summary"] = summarise(res["per_trial_s"], window)
            print(f"  {res['summary']['overall_mean_ms']:.2f} ms/trial overall "
                  f"({res['loop_wall_s']:.1f} s)", file=sys.stderr, flush=True)
            results[name] = res
    total = time.perf_counter() - began

    base = results["optuna/random"]["summary"]
    verdicts = {}
    for name, res in results.items():
        if not name.startswith("automl/"):
            continue
        s = res["summary"]
        ratio = s["overall_mean_ms"] / base["overall_mean_ms"]
        verdicts[name] = {
            "ratio": ratio,
            "ratio_first": s["first_mean_ms"] / base["first_mean_ms"],
            "ratio_last": s["last_mean_ms"] / base["last_mean_ms"],
            "ratio_ok": ratio <= TARGET_RATIO,
            "first_mean_ms": s["first_mean_ms"],
            "last_mean_ms": s["last_mean_ms"],
            "growth": s["growth_last_over_first"],
            "flat_ok": s["growth_last_over_first"] <= TARGET_GROWTH,
        }
    report = {
        "benchmark": "automl orchestration overhead vs Optuna ask/tell",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "trials": args.trials,
        "default_trials": parser.get_default("trials"),
        "window": window,
        "warmup_trials": WARMUP_TRIALS,
        "order": [f"{t}/{s}" for t, s, _ in CONTENDERS],
        "targets": {"ratio_max": TARGET_RATIO, "growth_max": TARGET_GROWTH},
        "total_s": total,
        "results": results,
        "verdicts": verdicts,
    }
    table, md = render(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "overhead.md").write_text(md)
    print(table)
    for name, v in verdicts.items():
        print(f"{name}: {v['ratio']:.2f}x Optuna ({'met' if v['ratio_ok'] else 'MISSED'} <= {TARGET_RATIO}x), "
              f"last/first {v['growth']:.2f} ({'met' if v['flat_ok'] else 'MISSED'} <= {TARGET_GROWTH})")
    print(f"wrote {args.out / 'overhead.md'} and {args.out / 'overhead.json'} ({total:.0f} s)")
    if args.profile:
        print(profile(args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
