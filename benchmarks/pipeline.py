"""Does staging pay? The nas -> hpo -> train pipeline against one flat search over the joint space, at
equal total compute, on ``digits-cnn`` (a benchmark, not a test).

Both arms are automl pipelines run by :func:`automl.pipeline.run_pipeline`, one per seed:

* **staged**: ``nas`` (regularized evolution over the architecture, the training recipe fixed to
  Adam at lr 0.01, batch 64) -> ``hpo`` (TPE over the training recipe of each of the nas step's top 3
  architectures) -> ``train`` (the best, at the full budget, with ``seeds`` seeds);
* **flat**: one search of the joint space (architecture and recipe together, regularized evolution)
  -> the same ``train`` step.

Equal compute: every search trial trains at the space's full budget (8 epochs), and the flat search
gets exactly as many trials as the staged arm's two searches together. The score is the final model's
test accuracy (the train step's mean over its seeds; the test split is seen by no search), median over
the seeds. Writes ``benchmarks/results/pipeline.md`` and ``pipeline.json``.

    .venv/bin/python benchmarks/pipeline.py            # 3 seeds, 24 + 3 x 8 trials vs 48
    .venv/bin/python benchmarks/pipeline.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model, git_commit, version

from automl.pipeline import pipeline_status, run_pipeline

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    seeds: tuple[int, ...] = (0, 1, 2)
    nas_trials: int = 24
    top_k: int = 3
    hpo_trials: int = 8
    train_seeds: int = 3

    @property
    def flat_trials(self) -> int:
        return self.nas_trials + self.top_k * self.hpo_trials


QUICK = Settings(seeds=(0,), nas_trials=3, top_k=2, hpo_trials=2, train_seeds=2)


def staged(settings: Settings, seed: int) -> dict[str, Any]:
    return {"name": f"staged-{seed}", "seed": seed, "steps": {
        "nas": {"space": "digits-cnn", "strategy": "evolution", "trials": settings.nas_trials,
                "fix": {"train": {"lr": 0.01, "optimizer": "adam", "batch_size": 64}}},
        "hpo": {"from": "nas", "top_k": settings.top_k, "search": "train", "strategy": "tpe",
                "trials": settings.hpo_trials},
        "train": {"from": "hpo", "top_k": 1, "seeds": settings.train_seeds, "budget": "max"}}}


def flat(settings: Settings, seed: int) -> dict[str, Any]:
    return {"name": f"flat-{seed}", "seed": seed, "steps": {
        "search": {"space": "digits-cnn", "strategy": "evolution", "trials": settings.flat_trials},
        "train": {"from": "search", "top_k": 1, "seeds": settings.train_seeds, "budget": "max"}}}


def run_arm(doc: dict[str, Any], storage: str, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    studies = run_pipeline(doc, storage=storage, output=out, threads=1)
    seconds = time.perf_counter() - start
    status = pipeline_status(doc["name"], storage)
    best = status["train"]["outputs"][0]
    search_trials = sum(len(s.trials) for step, group in studies.items() if step != "train" for s in group)
    return {"arm": doc["name"].split("-")[0], "seed": doc["seed"], "seconds": seconds,
            "search_trials": search_trials, "val_accuracy": best["metrics"]["accuracy"],
            "val_std": best["std"].get("accuracy", 0.0), "test_accuracy": best["metrics"]["test_accuracy"],
            "test_std": best["std"].get("test_accuracy", 0.0), "config": best["config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    settings = QUICK if args.quick else Settings()
    torch.set_num_threads(1)
    out = args.out or (Path(tempfile.mkdtemp(prefix="pipeline-quick-")) if args.quick else RESULTS)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        storage = f"sqlite:///{work}/ledger.db"
        for seed in settings.seeds:
            for make in (staged, flat):
                row = run_arm(make(settings, seed), storage, Path(work) / "runs")
                print(f"{row['arm']:6} seed {seed}: test {row['test_accuracy']:.4f} ± {row['test_std']:.4f} "
                      f"(val {row['val_accuracy']:.4f}), {row['search_trials']} search trials, "
                      f"{row['seconds']:.0f} s", flush=True)
                rows.append(row)
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "commit": git_commit(),
              "cpu": cpu_model(), "torch": version("torch"), "optuna": version("optuna"), "quick": args.quick,
              "settings": asdict(settings), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    (out / "pipeline.md").write_text(render(report))
    print(render(report))


def render(report: dict[str, Any]) -> str:
    s = report["settings"]
    rows = report["rows"]
    median = {arm: statistics.median(r["test_accuracy"] for r in rows if r["arm"] == arm) for arm in ("staged", "flat")}
    lines = ["# Staged pipeline vs one flat search (digits-cnn)", "",
             f"{report['date']} · commit {report['commit']} · {report['cpu']} · torch {report['torch']} · "
             f"optuna {report['optuna']}" + (" · **QUICK SMOKE RUN, not a result**" if report["quick"] else ""), "",
             f"- staged: nas ({s['nas_trials']} trials, evolution, recipe fixed) -> hpo (TPE, {s['hpo_trials']} trials "
             f"for each of the top {s['top_k']}) -> train (the best, {s['train_seeds']} seeds, full budget)",
             f"- flat: one evolution search of the joint space ({s['nas_trials'] + s['top_k'] * s['hpo_trials']} "
             f"trials: the same compute, every trial at the full 8 epochs) -> the same train step",
             "- score: the final model's test accuracy (mean over the train step's seeds; no search sees the test "
             "split); the table's last row is the median over the seeds", "",
             "| seed | staged test acc | staged val acc | flat test acc | flat val acc |", "|---|---|---|---|---|"]
    for seed in s["seeds"]:
        a = next(r for r in rows if r["arm"] == "staged" and r["seed"] == seed)
        b = next(r for r in rows if r["arm"] == "flat" and r["seed"] == seed)
        lines.append(f"| {seed} | {a['test_accuracy']:.4f} ± {a['test_std']:.4f} | {a['val_accuracy']:.4f} | "
                     f"{b['test_accuracy']:.4f} ± {b['test_std']:.4f} | {b['val_accuracy']:.4f} |")
    lines.append(f"| median | {median['staged']:.4f} | | {median['flat']:.4f} | |")
    diff = median["staged"] - median["flat"]
    spread = max(r["test_std"] for r in rows)
    verdict = ("staging pays" if diff > spread else "staging costs" if diff < -spread else
               "no difference beyond the seed spread")
    lines += ["", f"**Verdict: {verdict}** (median difference {diff:+.4f}; the largest std over a train step's seeds "
              f"is {spread:.4f}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
