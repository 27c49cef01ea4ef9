"""Out-of-distribution at CPU scale (../shared/PAPERS.md §9-§10, issue 17): OoD-Bench's shift measures and
the expansion-function model selection against DomainBed's rules (a benchmark, not a test).

1. Shift measures on three cases, ``seeds`` trials each (OoD-Bench's recipe, ``automl.ood_shift``):
   an i.i.d. control (``force_iid`` on colored-digits), ``rotated-digits`` (diversity shift expected) and
   ``colored-digits`` (correlation shift expected; also at OoD-Bench's own +90%/+80% vs -90% split), with
   OoD-Bench's anchors beside them for shape.
2. Model selection on ``colored-digits``, ``rotated-digits`` and ``gaussian-envs``: per seed, a pool of
   candidates produced by ``automl search`` (three studies, ``erm``/``irm``/``vrex``, each searching the
   learning rate, weight decay, width, epochs and the regime's own penalty options; ``selection:
   expansion`` so every trial reports v(h)); the test-environment accuracy of each rule's pick over the
   pooled candidates (training-domain validation = ``best-value``, ``expansion``, and the test-domain
   ``oracle``), and the Spearman correlation of −v(h) with test-environment accuracy.
3. Cost: the criterion's seconds per candidate (v(h) on the train-domain validation features).

    .venv/bin/python benchmarks/ood.py            # 5 seeds (about 25 min on an idle 2-core machine)
    .venv/bin/python benchmarks/ood.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model, git_commit, version

from automl.ledger import Trial
from automl.ood_shift import ShiftRecipe, measure, summary
from automl.selection import OOD_ACCURACY, ORACLE_ACCURACY, VARIATION, make_selection
from automl.space import Objective
from automl.strategies.base import TrialState
from automl.study import create_study
from automl.tasks.base import tasks

RESULTS = Path(__file__).resolve().parent / "results"
#: OoD-Bench (Ye et al., CVPR 2022, Table 1): diversity / correlation shift, the paper-scale reference
ANCHORS = {"Colored MNIST": (0.0013, 0.5468), "PACS": (0.6715, 0.0338)}
SHIFT_CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (task, task options, recipe options)
    "i.i.d. (colored-digits, force_iid)": ("colored-digits", {}, {"force_iid": True}),
    "rotated-digits": ("rotated-digits", {}, {}),
    "colored-digits": ("colored-digits", {}, {}),
    "colored-digits, +90%/+80% vs -90%": ("colored-digits", {"correlations": [0.9, 0.8, 0.1]}, {}),
}
#: part 2's tasks: the two the issue names, and gaussian-envs, where each (environment, class) group of the
#: train-domain validation split holds ~100 points instead of ~15-45 (v(h)'s KDEs need them)
SELECTION_TASKS = ("colored-digits", "rotated-digits", "gaussian-envs")
REGIMES = ("erm", "irm", "vrex")
#: the regimes' searched options (DomainBed's ranges; the anneal steps scaled to these short runs)
REGIME_SPACE: dict[str, dict[str, Any]] = {
    "erm": {},
    "irm": {"penalty_weight": {"type": "float", "low": 1.0e-1, "high": 1.0e5, "log": True},
            "anneal_steps": {"type": "int", "low": 1, "high": 100, "log": True}},
    "vrex": {"penalty_weight": {"type": "float", "low": 1.0e-1, "high": 1.0e5, "log": True},
             "anneal_steps": {"type": "int", "low": 1, "high": 100, "log": True}},
}
RULES = ("best-value", "expansion", "oracle")
#: v(h)'s informativeness threshold: the paper's (each candidate's ``max_informativeness`` is recorded, so
#: the results show how many candidates have a coordinate that reaches it)
INFO_THRESHOLD = 0.3
#: what the results file keeps of each candidate
DETAIL = ("accuracy", VARIATION, ORACLE_ACCURACY, OOD_ACCURACY, "max_informativeness", "informative_coordinates")


@dataclass(frozen=True)
class Settings:
    seeds: int = 5
    trials_per_regime: int = 10
    shift_seeds: int = 5


QUICK = Settings(seeds=1, trials_per_regime=2, shift_seeds=1)


def part_shift(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case, (task_name, task_options, recipe_options) in SHIFT_CASES.items():
        started = time.perf_counter()
        task = tasks.get(task_name)(**task_options)
        results = measure(task, ShiftRecipe(**recipe_options), seeds=settings.shift_seeds, name=task_name)
        legacy = measure(task, ShiftRecipe(**recipe_options, legacy=True), seeds=settings.shift_seeds, name=task_name)
        out[case] = {"measures": summary(results), "legacy": summary(legacy),
                     "per_seed": [asdict(r) for r in results], "seconds": time.perf_counter() - started}
        d, c = out[case]["measures"]["diversity"], out[case]["measures"]["correlation"]
        print(f"shift {case}: diversity {d[0]:.4f} ± {d[1]:.4f}, correlation {c[0]:.4f} ± {c[1]:.4f}", flush=True)
    return out


def pool_space(task: str, regime: str, seed: int) -> dict[str, Any]:
    """The search space of one regime's study on ``task`` (the task's data deal seeded by ``seed``)."""
    options = {"deal_seed": seed} if task == "rotated-digits" else {"seed": seed}
    doc: dict[str, Any] = {
        "name": f"ood-pool-{task}-{regime}", "task": {"name": task, "options": options}, "builder": "mlp",
        "regime": regime, "selection": {"name": "expansion", "options": {"info_threshold": INFO_THRESHOLD}},
        "objectives": {"accuracy": "max"},
        "space": {
            "model": {"layers": {"type": "repeat", "min": 2, "max": 2,
                                 "item": {"width": {"type": "int", "low": 32, "high": 128, "log": True},
                                          "activation": "relu"}},
                      "dropout": 0.0},
            "train": {"lr": {"type": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True},
                      "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
                      "batch_size": 64,
                      "epochs": {"type": "categorical", "choices": [5, 10, 20]}},
        },
    }
    if REGIME_SPACE[regime]:
        doc["space"]["regime"] = REGIME_SPACE[regime]
    return doc


def run_pool(task: str, seed: int, settings: Settings, root: Path) -> list[tuple[str, Trial]]:
    """The pooled completed trials of the three regimes' studies (seed ``seed``), each with its regime."""
    pool: list[tuple[str, Trial]] = []
    for regime in REGIMES:
        path = root / f"{task}-{regime}-{seed}.yaml"
        path.write_text(yaml.safe_dump(pool_space(task, regime, seed), sort_keys=False))
        study = create_study(str(path), strategy="random", seed=seed, storage=f"sqlite:///{root}/pool.db",
                             study_name=f"{task}-{regime}-{seed}")
        study.optimize(total_trials=settings.trials_per_regime)
        failed = [t for t in study.trials if t.state is not TrialState.COMPLETE]
        if failed:
            raise RuntimeError(f"{task} {regime}: trial {failed[0].number} did not complete: {failed[0].error}")
        pool += [(regime, t) for t in study.trials]
    return pool


def picks(pool: Sequence[tuple[str, Trial]]) -> dict[str, dict[str, Any]]:
    """Each rule's pick over the pooled trials (numbered afresh in pool order, so every rule breaks ties the
    same way): its regime, validation and test-environment accuracy."""
    objectives = (Objective("accuracy", "max"),)
    trials = [dataclasses.replace(t, number=i) for i, (_, t) in enumerate(pool)]
    out = {}
    for rule in RULES:
        chosen = make_selection(rule, {}, objectives).pick(trials, objectives)
        assert chosen is not None
        out[rule] = {"candidate": chosen.number, "regime": pool[chosen.number][0],
                     "accuracy": float(chosen.metrics["accuracy"]), VARIATION: float(chosen.metrics[VARIATION]),
                     ORACLE_ACCURACY: float(chosen.metrics[ORACLE_ACCURACY]),
                     OOD_ACCURACY: float(chosen.metrics[OOD_ACCURACY])}
    return out


def part_selection(settings: Settings, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in SELECTION_TASKS:
        per_seed = []
        for seed in range(settings.seeds):
            started = time.perf_counter()
            pairs = run_pool(task, seed, settings, root)
            pool = [t for _, t in pairs]
            variation = [float(t.metrics[VARIATION]) for t in pool]
            ood = [float(t.metrics[OOD_ACCURACY]) for t in pool]
            finite = [i for i, v in enumerate(variation) if v == v]
            rho = float(spearmanr([-variation[i] for i in finite], [ood[i] for i in finite]).statistic) \
                if len(finite) >= 3 else float("nan")
            chosen = picks(pairs)
            per_seed.append({
                "seed": seed, "candidates": len(pool), "spearman": rho, "picks": chosen,
                "nan_variation": len(pool) - len(finite),
                "qualify_at_0.2": sum(float(t.metrics["max_informativeness"]) >= 0.2 for t in pool),
                "pool_mean_ood_accuracy": float(np.mean(ood)), "pool_max_ood_accuracy": float(np.max(ood)),
                "variation_seconds": [float(t.metrics["variation_seconds"]) for t in pool],
                "train_seconds": [float(t.metrics["train_seconds"]) for t in pool],
                "seconds": time.perf_counter() - started,
                "candidates_detail": [{"regime": r, "config": t.config, **{k: t.metrics[k] for k in DETAIL}}
                                      for r, t in pairs],
            })
            print(f"{task} seed {seed}: " + ", ".join(f"{r} {chosen[r][OOD_ACCURACY]:.3f}" for r in RULES)
                  + f"; spearman {rho:.3f}; {per_seed[-1]['seconds']:.0f}s", flush=True)
        out[task] = {"per_seed": per_seed, "mean": {
            r: statistics.mean(s["picks"][r][OOD_ACCURACY] for s in per_seed) for r in RULES},
            "spearman_mean": statistics.mean(s["spearman"] for s in per_seed),
            "variation_seconds_mean": statistics.mean(v for s in per_seed for v in s["variation_seconds"]),
            "train_seconds_mean": statistics.mean(v for s in per_seed for v in s["train_seconds"])}
    return out


def _pm(pair: Sequence[float]) -> str:
    return f"{pair[0]:.4f} ± {pair[1]:.4f}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Out-of-distribution: shift measures and model selection (`benchmarks/ood.py`)", "",
        f"{meta['date']} · commit {meta['commit']} · {meta['cpu']} · torch {meta['torch']} · one run, "
        f"{meta['settings']['seeds']} seeds for selection, {meta['settings']['shift_seeds']} for shift · "
        f"{meta['seconds'] / 60:.1f} min in all", "",
        "## 1. Shift measures (OoD-Bench's recipe: environment classifier, KDEs, Monte-Carlo integrals)", "",
        "| case | diversity | correlation | legacy diversity | legacy correlation | classifier accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for case, r in result["shift"].items():
        m, legacy = r["measures"], r["legacy"]
        lines.append(f"| {case} | {_pm(m['diversity'])} | {_pm(m['correlation'])} | {_pm(legacy['diversity'])} | "
                     f"{_pm(legacy['correlation'])} | {m['accuracy'][0]:.3f} |")
    for name, (d, c) in ANCHORS.items():
        lines.append(f"| *OoD-Bench {name} (paper, legacy formulas)* | | | *{d}* | *{c}* | |")
    lines += ["", "## 2. Model selection: test-environment accuracy of each rule's pick", ""]
    lines += ["| task | candidates per seed | training-domain validation | expansion | test-domain oracle | "
              "pool mean | Spearman(−v(h), test acc) |", "|---|---|---|---|---|---|---|"]
    for task, r in result["selection"].items():
        seeds = r["per_seed"]
        lines.append(f"| {task} | {seeds[0]['candidates']} | {r['mean']['best-value']:.3f} | "
                     f"{r['mean']['expansion']:.3f} | {r['mean']['oracle']:.3f} | "
                     f"{statistics.mean(s['pool_mean_ood_accuracy'] for s in seeds):.3f} | {r['spearman_mean']:.3f} |")
    lines += ["", "Per seed (test-environment accuracy of the pick; Spearman):", ""]
    for task, r in result["selection"].items():
        for s in r["per_seed"]:
            lines.append(f"- {task} seed {s['seed']}: " + ", ".join(
                f"{rule} {s['picks'][rule][OOD_ACCURACY]:.3f} ({s['picks'][rule]['regime']}, val "
                f"{s['picks'][rule]['accuracy']:.3f})" for rule in RULES)
                + f"; Spearman {s['spearman']:.3f}")
    lines += ["", f"v(h) at informativeness threshold {INFO_THRESHOLD} (candidates with no coordinate at it have "
              "NaN v(h) and are left out of the expansion rule, as the reference does):", ""]
    for task, r in result["selection"].items():
        seeds = r["per_seed"]
        lines.append(f"- {task}: NaN v(h) in {sum(s['nan_variation'] for s in seeds)} of "
                     f"{sum(s['candidates'] for s in seeds)} candidates; at 0.2, "
                     f"{sum(s['qualify_at_0.2'] for s in seeds)} would have an informative coordinate")
    lines += ["", "## 3. Cost", ""]
    for task, r in result["selection"].items():
        lines.append(f"- {task}: v(h) {r['variation_seconds_mean']:.2f} s per candidate, against "
                     f"{r['train_seconds_mean']:.2f} s of training")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (one seed, tiny pools)")
    parser.add_argument("--part", choices=["shift", "selection", "all"], default="all")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.part in ("shift", "all"):
        result["shift"] = part_shift(settings)
    if args.part in ("selection", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            result["selection"] = part_selection(settings, Path(tmp))
    result["meta"] = {"date": datetime.date.today().isoformat(), "commit": git_commit(), "cpu": cpu_model(),
                      "torch": version("torch"), "scipy": version("scipy"), "settings": asdict(settings),
                      "seconds": time.perf_counter() - started}
    name = "ood_quick" if args.quick else "ood"
    if args.part != "all":
        name += f"_{args.part}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    if args.part == "all":
        (RESULTS / f"{name}.md").write_text(markdown(result))
    print(f"wrote {RESULTS / name}.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
