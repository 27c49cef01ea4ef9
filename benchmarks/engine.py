"""The search engine in simulated time (a benchmark, not a test).

Every contender runs through the same backend: ``create_study(..., executor="simulated")`` and
``study.optimize(n_workers=8)``, so each trial reports what it would cost (``cost_seconds``) and finishes in
simulated-time order on 8 simulated workers, exactly as asynchronous schedulers see results on a cluster.

1. **Anytime performance** on three offline benchmarks: the tabulated ``nb201-digits-table`` (729 cells, 1..9
   epochs, costs = the table's measured training seconds; minimise validation loss, since validation accuracy
   on the 360-image split is saturated: 14 distinct values at the top) and the
   multi-fidelity Hartmann 3 and 6 functions (``mf-hartmann3``/``mf-hartmann6``, fidelity 1..100, cost 5..100 s).
   Contenders: ``random`` and ``tpe`` (Optuna's TPE sampler behind our contract; every trial at the maximum
   budget), ``asha``, ``bohb``, ``hyperband`` and ``pbt`` (population 8; it explores the space's parameters).
   Regret of the incumbent (best result at the maximum budget finished so far) over simulated time, the
   median over seeds; the simulated time to reach a target (random's median final regret), as a speed-up
   over random.
2. **Multi-objective**: ``mo-asha`` against ``nsga2`` and ``random`` at equal simulated time, the hypervolume
   of the front of maximum-budget results over simulated time, on ``nb201-digits-table`` with ``loss: min,
   flops: min`` (low fidelities say little there: Kendall tau 0.19 between 1 and 9 epochs) and on a pair of
   conflicting multi-fidelity Hartmann 3 objectives (x and 1 - x; low fidelities informative).
3. **Simulated vs real**: ASHA on the Hartmann 3 function with costs of 0.1..2 s, once on 2 real worker
   processes (the objective sleeps its cost) and once on 2 simulated workers (it does not): the trial
   sequence (each trial's config and budget) and the final best should agree.
4. **PBT on real training**: ``pbt`` (population 8) against 8 random configs on ``digits-cnn`` at equal epochs.

Writes ``benchmarks/results/engine.md``, ``engine.json`` and ``engine.png``.

    .venv/bin/python benchmarks/engine.py            # the full benchmark (50 seeds)
    .venv/bin/python benchmarks/engine.py --quick    # 3 seeds, a smoke run
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py

import numpy as np
import optuna
import torch
from machine import cpu_model, git_commit, version

import automl
from estimators.hartmann import fidelity_cost, mf_hartmann
from search_spaces.nb201_table import load_nas_table

RESULTS = Path(__file__).resolve().parent / "results"
WORKERS = 8


@dataclass(frozen=True)
class Problem:
    """One benchmark: a registered space, the objective it is scored by and its optimum, a simulated-time
    limit per run and the options a contender needs there (PBT's explorable parameters)."""

    name: str
    space: str
    metric: str
    higher: bool
    optimum: float
    limit_s: float
    pbt_hyperparameters: tuple[str, ...]
    objectives: Mapping[str, str] | None = None  # instead of the space's

    def regret(self, value: float) -> float:
        return self.optimum - value if self.higher else value - self.optimum


def problems() -> dict[str, Problem]:
    table = load_nas_table()
    edges = tuple(f"model.{e}" for e in table.metadata["edges"])
    return {
        # validation loss, not accuracy: the 360-image split gives accuracy 14 distinct top values (saturated)
        "nb201": Problem("nb201", "nb201-digits-table", "loss", False, float(table.val_loss[:, -1].min()),
                         4.0, edges, {"loss": "min"}),
        "hartmann3": Problem("hartmann3", "mf-hartmann3", "value", False, -3.86278, 600.0,
                             tuple(f"X_{i}" for i in range(3))),
        "hartmann6": Problem("hartmann6", "mf-hartmann6", "value", False, -3.32237, 600.0,
                             tuple(f"X_{i}" for i in range(6))),
    }


SINGLE = ("random", "tpe", "asha", "bohb", "hyperband", "pbt")
MULTI = ("random", "nsga2", "mo-asha")


@dataclass
class Run:
    """One contender's run: each finished trial as (simulated end, budget, values by objective)."""

    problem: str
    strategy: str
    seed: int
    trials: list[tuple[float, float | None, dict[str, float]]] = field(default_factory=list)
    wall_s: float = 0.0
    max_budget: float = 0.0


def run_study(problem: Problem, strategy: str, seed: int, objectives: Mapping[str, str] | None = None,
              checkpoints: str | None = None, objective: Callable[..., Mapping[str, float]] | None = None) -> Run:
    """One simulated study (by the space's estimator, or ``objective``); trials that finish after the limit are
    left out (they were still running)."""
    options: dict[str, Any] = {}
    if strategy == "pbt":
        options = {"hyperparameters": list(problem.pbt_hyperparameters)}
    start = time.perf_counter()
    study = automl.create_study(problem.space, strategy=strategy, storage=None, seed=seed, executor="simulated",
                                strategy_options=options or None, objectives=objectives or problem.objectives,
                                checkpoints=checkpoints)
    study.optimize(objective, timeout=problem.limit_s, n_workers=WORKERS)
    run = Run(problem.name, strategy, seed, wall_s=time.perf_counter() - start,
              max_budget=float(study.budget.max) if study.budget is not None else 0.0)
    for t in study.trials:
        end = t.metrics.get("sim_end_s")
        if t.values is None or end is None or end > problem.limit_s:
            continue
        run.trials.append((float(end), t.budget, {k: float(v) for k, v in t.values.items()}))
    run.trials.sort(key=lambda item: item[0])
    return run


def incumbent_curve(run: Run, problem: Problem) -> list[tuple[float, float]]:
    """(simulated time, regret of the best maximum-budget result so far), at each improvement."""
    curve: list[tuple[float, float]] = []
    best = math.inf
    for end, budget, values in run.trials:
        if budget is not None and budget < run.max_budget:
            continue
        regret = problem.regret(values[problem.metric])
        if regret < best:
            best = regret
            curve.append((end, best))
    return curve


def value_at(curve: Sequence[tuple[float, float]], t: float, worst: float) -> float:
    value = worst
    for x, y in curve:
        if x > t:
            break
        value = y
    return value


def time_to(curve: Sequence[tuple[float, float]], target: float) -> float:
    return next((x for x, y in curve if y <= target + 1e-12), math.inf)


def hypervolume_2d(points: Sequence[tuple[float, float]], ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """The area dominated by ``points`` (both coordinates minimised) inside the box up to ``ref``."""
    inside = sorted((a, b) for a, b in points if a < ref[0] and b < ref[1])
    area, floor = 0.0, ref[1]
    for a, b in inside:  # by the first coordinate: each point adds the strip below the lowest second so far
        if b < floor:
            area += (ref[0] - a) * (floor - b)
            floor = b
    return area


@dataclass(frozen=True)
class MultiProblem:
    """A two-objective benchmark: a problem (space, limit), its objectives, how a result maps into the unit
    square whose far corner is the hypervolume's reference point, and the objective function if not the
    space's estimator."""

    name: str
    problem: Problem
    objectives: Mapping[str, str]
    normalise: Callable[[Mapping[str, float]], tuple[float, float]]
    objective: Callable[..., Mapping[str, float]] | None = None
    description: str = ""


HARTMANN3_MIN = -3.86278


def hartmann_pair(config: dict[str, Any], budget: float) -> dict[str, float]:
    """Two conflicting multi-fidelity objectives: Hartmann 3 at ``x`` and at the mirrored ``1 - x`` (their minima
    lie at opposite corners), at fidelity ``budget``, costing what one mf-hartmann3 evaluation costs."""
    x = tuple(float(config[f"X_{i}"]) for i in range(3))
    return {"f1": mf_hartmann(x, budget), "f2": mf_hartmann(tuple(1.0 - v for v in x), budget),
            "cost_seconds": 100.0 * fidelity_cost(budget, 100.0)}


def multi_problems(single: Mapping[str, Problem]) -> list[MultiProblem]:
    table = load_nas_table()
    flops_max, loss_max = float(table.flops.max()), float(table.val_loss[:, -1].max())
    shift = -HARTMANN3_MIN

    def hartmann_unit(v: Mapping[str, float]) -> tuple[float, float]:
        return (v["f1"] + shift) / shift, (v["f2"] + shift) / shift

    return [
        MultiProblem("nb201 (loss, flops)", single["nb201"], {"loss": "min", "flops": "min"},
                     lambda v: (v["loss"] / loss_max, v["flops"] / flops_max),
                     description="validation loss and flops at 9 epochs, each divided by the table's largest"),
        MultiProblem("hartmann3 pair (f1, f2)", single["hartmann3"], {"f1": "min", "f2": "min"}, hartmann_unit,
                     hartmann_pair, description="Hartmann 3 at x and at 1 - x, each shifted by its minimum and "
                     "divided by it (0 at the minimum, 1 at value 0); a promotion pays a full evaluation"),
    ]


def hv_curve(run: Run, normalise: Callable[[Mapping[str, float]], tuple[float, float]]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    curve: list[tuple[float, float]] = []
    for end, budget, values in run.trials:
        if budget is not None and budget < run.max_budget:
            continue
        points.append(normalise(values))
        curve.append((end, hypervolume_2d(points)))
    return curve


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


# -- 3. simulated vs real ---------------------------------------------------------------------------
def _jitter(config: Mapping[str, Any]) -> float:
    """A fixed factor in [1, 1.5) per config, so that no two trials cost the same (ties would make the real
    run's order a matter of scheduling noise)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).digest()
    return 1.0 + 0.5 * int.from_bytes(digest[:4], "little") / 2**32


FULL_COST_S = 2.0  # simulated vs real: seconds of a top-fidelity evaluation


def _timed(config: dict[str, Any], budget: float, sleep: bool) -> dict[str, float]:
    """Hartmann 3 at fidelity ``budget`` that costs 0.1..2 s (x its config's jitter): slept in a real run,
    only reported in a simulated one."""
    cost = FULL_COST_S * fidelity_cost(budget, 100.0) * _jitter(config)
    if sleep:
        time.sleep(cost)
    return {"value": mf_hartmann(tuple(config[f"X_{i}"] for i in range(3)), budget), "cost_seconds": cost}


def timed_hartmann(config: dict[str, Any], budget: float) -> dict[str, float]:
    return _timed(config, budget, sleep=True)


def simulated_hartmann(config: dict[str, Any], budget: float) -> dict[str, float]:
    return _timed(config, budget, sleep=False)


def sim_vs_real(trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sequences = {}
    for kind in ("real", "simulated"):
        start = time.perf_counter()
        study = automl.create_study("mf-hartmann3", strategy="asha", storage=None, seed=7,
                                    executor="simulated" if kind == "simulated" else None)
        study.optimize(timed_hartmann if kind == "real" else simulated_hartmann, n_trials=trials, n_workers=2)
        done = sorted(study.trials, key=lambda t: t.number)
        sequences[kind] = [(t.key, t.budget) for t in done]
        best = study.best
        out[kind] = {"wall_s": time.perf_counter() - start, "best_value": best.values["value"],  # type: ignore[index]
                     "best_trial": best.number, "best_budget": best.budget,
                     "cost_sum_s": sum(t.metrics.get("cost_seconds", 0.0) for t in done)}
    same = [a == b for a, b in zip(sequences["real"], sequences["simulated"])]
    out["trials"] = trials
    out["same_proposals"] = sum(same)
    out["first_divergence"] = same.index(False) if False in same else None
    out["same_best"] = out["real"]["best_trial"] == out["simulated"]["best_trial"]
    return out


# -- 4. PBT on real training -------------------------------------------------------------------------
def pbt_vs_random(seeds: int, population: int = 8) -> dict[str, Any]:
    """PBT against random search on ``digits-cnn`` trained for real at equal epochs: ``population`` members
    each trained to the maximum budget (PBT: in steps, copying and perturbing) vs ``population`` random
    configs trained to it; the best validation accuracy at the maximum budget."""
    rows: dict[str, list[dict[str, float]]] = {"random": [], "pbt": []}
    for seed in range(seeds):
        for strategy in rows:
            with tempfile.TemporaryDirectory() as ckpt:
                start = time.perf_counter()
                study = automl.create_study("digits-cnn", strategy=strategy, storage=None, seed=seed, checkpoints=ckpt,
                                            strategy_options={"population": population} if strategy == "pbt" else None)
                study.optimize(n_trials=population if strategy == "random" else None)
                top = max(t.budget or 0.0 for t in study.completed())
                rows[strategy].append({
                    "best_accuracy": max(t.values["accuracy"] for t in study.completed()  # type: ignore[index]
                                         if t.budget == top),
                    "epochs_trained": sum(t.metrics.get("epochs_trained", 0.0) for t in study.trials),
                    "trials": len(study.trials), "wall_s": time.perf_counter() - start})
        log(f"pbt vs random, seed {seed}: pbt {rows['pbt'][-1]['best_accuracy']:.4f}, "
            f"random {rows['random'][-1]['best_accuracy']:.4f}")
    return {"population": population, "seeds": seeds, "runs": rows,
            "median": {s: {k: median([r[k] for r in rs]) for k in rs[0]} for s, rs in rows.items()},
            "pbt_wins": sum(p["best_accuracy"] > r["best_accuracy"] for p, r in zip(rows["pbt"], rows["random"]))}


# -- the report -------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def summarise_single(runs: Sequence[Run], problem: Problem, grid: np.ndarray) -> dict[str, Any]:
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.strategy, []).append(r)
    worst = problem.regret(0.0) if problem.higher else 5.0
    curves = {s: [incumbent_curve(r, problem) for r in rs] for s, rs in by.items()}
    finals = {s: [value_at(c, problem.limit_s, worst) for c in cs] for s, cs in curves.items()}
    target = median(finals["random"])
    out: dict[str, Any] = {"target_regret": target, "limit_s": problem.limit_s, "strategies": {}}
    fine = np.linspace(0, problem.limit_s, 401)

    def median_time_to(cs: Sequence[Sequence[tuple[float, float]]]) -> float:
        """When the median incumbent (over seeds) first reaches the target, on a 400-step grid."""
        return next((float(t) for t in fine if median([value_at(c, float(t), worst) for c in cs]) <= target + 1e-12),
                    math.inf)

    random_ttt = median_time_to(curves["random"])
    for s, cs in curves.items():
        ttt = [time_to(c, target) for c in cs]
        med_ttt = median_time_to(cs)
        out["strategies"][s] = {
            "final_regret_median": median(finals[s]),
            "final_regret_q25_q75": [float(np.quantile(finals[s], 0.25)), float(np.quantile(finals[s], 0.75))],
            "time_to_target_median_s": med_ttt,
            "reached": sum(math.isfinite(x) for x in ttt), "seeds": len(ttt),
            "speedup_vs_random": random_ttt / med_ttt if math.isfinite(med_ttt) and med_ttt > 0 else 0.0,
            "curve": [median([value_at(c, float(t), worst) for c in cs]) for t in grid],
            "trials_median": median([len(r.trials) for r in by[s]]),
            "sim_used_median_s": median([r.trials[-1][0] if r.trials else 0.0 for r in by[s]]),
            "wall_ms_per_trial": 1000 * sum(r.wall_s for r in by[s]) / max(1, sum(len(r.trials) for r in by[s])),
        }
    return out


def summarise_multi(runs: Sequence[Run], mp: MultiProblem, grid: np.ndarray) -> dict[str, Any]:
    limit_s = mp.problem.limit_s
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.strategy, []).append(r)
    curves = {s: [hv_curve(r, mp.normalise) for r in rs] for s, rs in by.items()}
    finals = {s: [value_at(c, limit_s, 0.0) for c in cs] for s, cs in curves.items()}
    rnd = median(finals["random"])
    out: dict[str, Any] = {"limit_s": limit_s, "description": mp.description, "strategies": {}}
    for s, cs in curves.items():
        out["strategies"][s] = {
            "hv_final_median": median(finals[s]),
            "hv_q25_q75": [float(np.quantile(finals[s], 0.25)), float(np.quantile(finals[s], 0.75))],
            "hv_ratio_to_random": median(finals[s]) / rnd if rnd > 0 else math.nan,
            "wins_over_random": sum(a > b for a, b in zip(finals[s], finals["random"])),
            "seeds": len(finals[s]),
            "curve": [median([value_at(c, float(t), 0.0) for c in cs]) for t in grid],
        }
    return out


def plot(single: Mapping[str, Any], multi: Mapping[str, Any], grids: Mapping[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(single) + len(multi)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for ax, (name, summary) in zip(axes, single.items()):
        for s, row in summary["strategies"].items():
            ax.plot(grids[name], np.maximum(row["curve"], 1e-5), label=s)
        ax.set_yscale("log")
        ax.set_title(f"{name}: median regret, {WORKERS} simulated workers")
        ax.set_xlabel("simulated seconds")
        ax.legend(fontsize=8)
    for ax, (name, summary) in zip(axes[len(single):], multi.items()):
        for s, row in summary["strategies"].items():
            ax.plot(grids[name], row["curve"], label=s)
        ax.set_title(f"{name}: median hypervolume")
        ax.set_xlabel("simulated seconds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(x: float, spec: str = "{:.3g}") -> str:
    if isinstance(x, float) and math.isinf(x):
        return "not reached"
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return spec.format(x)


def write_report(result: Mapping[str, Any], out: Path) -> None:
    info = result["machine"]
    lines = ["# The search engine in simulated time", "",
             "A benchmark, not a test. Every contender runs through the same simulated backend "
             f"(`executor=\"simulated\"`, {WORKERS} simulated workers): each trial reports its cost and results "
             "arrive in simulated-time order. Defaults throughout; nothing tuned per contender. "
             "Medians over seeds.", "",
             "## Machine and run", "",
             f"- Date: {result['date']}; total benchmark time {result['total_min']:.1f} min (wall)",
             f"- Machine: {info['cpus']} CPUs ({info['cpu']}), {info['platform']}",
             f"- Python {info['python']}; automl {info['automl']}, optuna {info['optuna']}, numpy {info['numpy']}, "
             f"torch {info['torch']}",
             f"- automl git: {result['git']}",
             f"- Seeds: {result['seeds']} per contender and problem; in-memory storage.",
             "- Reproduce: `.venv/bin/python benchmarks/engine.py` (full), `--quick` (3 seeds).", "",
             "## 1. Anytime performance (single objective)", "",
             "Regret = incumbent - optimum (nb201: validation loss above the table's lowest at 9 epochs; Hartmann: "
             "the value above the global minimum). The incumbent is the best result at the maximum budget finished by "
             "then; trials still running at the limit do not count. Target = random search's median final regret. "
             "'Time to target' = when the median incumbent over seeds first reaches it (400-step grid); 'reached' = "
             "seeds whose own incumbent reaches it within the limit; 'speed-up' = random's time to the target / the "
             "contender's (0: its median never reaches it).", ""]
    for name, summary in result["single"].items():
        lines += [f"### {name} (limit {summary['limit_s']:g} simulated s, target regret "
                  f"{_fmt(summary['target_regret'], '{:.4g}')})", "",
                  "| strategy | final regret (median) | q25-q75 | time to target (s) | reached | speed-up vs random "
                  "| trials/run | simulated s used | wall ms/trial |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s, row in summary["strategies"].items():
            q = row["final_regret_q25_q75"]
            lines.append(f"| {s} | {_fmt(row['final_regret_median'], '{:.4g}')} | {q[0]:.3g}-{q[1]:.3g} | "
                         f"{_fmt(row['time_to_target_median_s'])} | {row['reached']}/{row['seeds']} | "
                         f"{row['speedup_vs_random']:.2f}x | {row['trials_median']:.0f} | "
                         f"{row['sim_used_median_s']:.3g} | {row['wall_ms_per_trial']:.1f} |")
        lines.append("")
    lines += ["## 2. Multi-objective: MO-ASHA vs NSGA-II vs random", "",
              "Hypervolume of the front of maximum-budget results at the limit, in the unit square of each problem's "
              "normalised objectives (reference point (1, 1); higher is better); 'seeds above random': paired by "
              "seed.", ""]
    for name, multi in result["multi"].items():
        lines += [f"### {name}, limit {multi['limit_s']:g} simulated s", "", f"Objectives: {multi['description']}.",
                  "", "| strategy | hypervolume (median) | q25-q75 | ratio to random | seeds above random |",
                  "|---|---|---|---|---|"]
        for s, row in multi["strategies"].items():
            q = row["hv_q25_q75"]
            lines.append(f"| {s} | {row['hv_final_median']:.4f} | {q[0]:.4f}-{q[1]:.4f} | "
                         f"{row['hv_ratio_to_random']:.3f} | {row['wins_over_random']}/{row['seeds']} |")
        lines.append("")
    sim = result["sim_vs_real"]
    lines += ["", "## 3. Simulated vs real (ASHA, Hartmann 3, 2 workers)", "",
              f"- {sim['trials']} trials; costs 0.1..2 s per trial (x a fixed per-config factor in [1, 1.5), so that "
              "no two trials tie).",
              f"- Real run (2 worker processes, each trial sleeps its cost): {sim['real']['wall_s']:.1f} s wall; "
              f"simulated run: {sim['simulated']['wall_s']:.2f} s wall.",
              f"- Same proposal (config and budget) at the same trial number: {sim['same_proposals']}/{sim['trials']}"
              + (f"; the first difference at trial {sim['first_divergence']}" if sim['first_divergence'] is not None
                 else "") + ".",
              f"- Final best: real trial {sim['real']['best_trial']} ({sim['real']['best_value']:.4f}), "
              f"simulated trial {sim['simulated']['best_trial']} ({sim['simulated']['best_value']:.4f}): "
              f"{'the same' if sim['same_best'] else 'different'}.", ""]
    pbt = result["pbt_real"]
    med = pbt["median"]
    lines += ["## 4. PBT on real training (digits-cnn, equal epochs)", "",
              f"PBT (population {pbt['population']}, its defaults: steps of 2 epochs to 8, truncation 0.25, perturb "
              f"0.8/1.2, resample 0.25, exploring `train.*`) against {pbt['population']} random configs each "
              f"trained to 8 epochs, {pbt['seeds']} seeds, inline, real training on this machine; best validation "
              "accuracy at 8 epochs.", "",
              "| strategy | best accuracy (median) | epochs trained (median) | trials | wall s (median) |",
              "|---|---|---|---|---|"]
    for s, row in med.items():
        lines.append(f"| {s} | {row['best_accuracy']:.4f} | {row['epochs_trained']:.0f} | {row['trials']:.0f} | "
                     f"{row['wall_s']:.1f} |")
    lines += ["", f"PBT's best beats random's in {pbt['pbt_wins']}/{pbt['seeds']} seeds. Per seed (pbt / random): "
              + ", ".join(f"{p['best_accuracy']:.4f} / {r['best_accuracy']:.4f}"
                          for p, r in zip(pbt["runs"]["pbt"], pbt["runs"]["random"])) + ".", ""]
    lines += ["## Observations", ""] + [f"- {o}" for o in result["observations"]] + [
        "", "![anytime curves](engine.png)", ""]
    out.write_text("\n".join(lines))


def observations(result: Mapping[str, Any]) -> list[str]:
    notes = []
    for name, summary in result["single"].items():
        rows = summary["strategies"]
        best = min(rows, key=lambda s: rows[s]["final_regret_median"])
        fastest = max(rows, key=lambda s: rows[s]["speedup_vs_random"])
        notes.append(f"{name}: lowest median final regret: {best} ({rows[best]['final_regret_median']:.4g} vs random "
                     f"{rows['random']['final_regret_median']:.4g}); fastest to random's final level: {fastest} "
                     f"({rows[fastest]['speedup_vs_random']:.2f}x).")
    for name, multi in result["multi"].items():
        rows = multi["strategies"]
        notes.append(f"{name}: mo-asha's median hypervolume is {rows['mo-asha']['hv_ratio_to_random']:.3f}x "
                     f"random's (above it in {rows['mo-asha']['wins_over_random']}/{rows['mo-asha']['seeds']} seeds) "
                     f"and nsga2's {rows['nsga2']['hv_ratio_to_random']:.3f}x.")
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds: a smoke run")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = 3 if args.quick else args.seeds
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("automl").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    began = time.perf_counter()
    commit = git_commit()  # of the code that runs, before anything is written
    probs = problems()
    grids: dict[str, np.ndarray] = {}
    single: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, problem in probs.items():
            runs = []
            for strategy in SINGLE:
                t0 = time.perf_counter()
                for seed in range(seeds):
                    ckpt = str(Path(scratch) / f"{name}-{strategy}-{seed}")  # continued trials pay only the rest
                    runs.append(run_study(problem, strategy, seed, checkpoints=ckpt))
                log(f"{name} {strategy}: {seeds} seeds in {time.perf_counter() - t0:.1f} s")
            grids[name] = np.linspace(0, problem.limit_s, 41)
            single[name] = summarise_single(runs, problem, grids[name])
            raw[name] = [{"strategy": r.strategy, "seed": r.seed, "trials": r.trials} for r in runs]
        multi: dict[str, Any] = {}
        for mp in multi_problems(probs):
            multi_runs = []
            for strategy in MULTI:
                t0 = time.perf_counter()
                for seed in range(seeds):
                    ckpt = str(Path(scratch) / f"multi-{mp.problem.name}-{strategy}-{seed}")
                    multi_runs.append(run_study(mp.problem, strategy, seed, objectives=mp.objectives,
                                                checkpoints=ckpt, objective=mp.objective))
                log(f"{mp.name} {strategy}: {seeds} seeds in {time.perf_counter() - t0:.1f} s")
            grids[mp.name] = np.linspace(0, mp.problem.limit_s, 41)
            multi[mp.name] = summarise_multi(multi_runs, mp, grids[mp.name])
    log("simulated vs real")
    sim = sim_vs_real(12 if args.quick else 40)
    log("pbt vs random on real training")
    pbt_real = pbt_vs_random(1 if args.quick else 5)
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": commit, "seeds": seeds, "workers": WORKERS,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
                    "python": platform.python_version(), "automl": version("automl"), "optuna": version("optuna"),
                    "numpy": version("numpy"), "torch": version("torch")},
        "single": single, "multi": multi, "sim_vs_real": sim, "pbt_real": pbt_real,
    }
    result["observations"] = observations(result)
    result["total_min"] = (time.perf_counter() - began) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    plot(single, multi, grids, args.out / "engine.png")
    write_report(result, args.out / "engine.md")
    (args.out / "engine.json").write_text(json.dumps({**result, "runs": raw}, default=float))
    log(f"wrote {args.out / 'engine.md'} ({result['total_min']:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
