"""Weight-sharing one-shot NAS on the digits spaces (a benchmark, not a test).

Three questions, each answered with the public API only (``SupernetEstimator``, ``TrainEstimator``,
``automl.create_study``):

1. **Ranking quality.** Train the space's supernet once (the ``supernet`` estimator's defaults:
   40 epochs, Adam, lr 0.005, uniform single-path sampling), then score ``N`` random architectures
   with inherited weights (sub-network extraction + BatchNorm recalibration) and train the same
   architectures stand-alone (``TrainEstimator``, the space's maximum budget, averaged over training
   seeds). The ``train`` part of every candidate is FIXED to one recipe (a supernet scores
   architectures, not training hyperparameters). Kendall tau-b and Spearman rho between the two
   scores; target tau >= 0.5. Variants: ``sampling="sandwich"``, ``finetune_steps=20``, and the
   default supernet trained with other seeds (how much tau depends on the supernet's seed).
2. **Cost.** Wall-clock of one ``SupernetEstimator.evaluate`` call on a cached supernet (median)
   against one stand-alone ``TrainEstimator.evaluate`` call (median); target >= 50x cheaper, judged on
   the per-candidate figure *excluding* the one-off supernet training. Amortised figures (training
   spread over N = 100 and N = 1,000 candidates) are shown too.
3. **Search at equal wall-clock** (``digits-cnn`` only). ``one-shot`` (supernet + evolutionary search
   with inherited weights + top-3 stand-alone finalists) takes T seconds, supernet training included;
   then regularized evolution with stand-alone training gets ``timeout=T``: once on the full space
   (training hyperparameters searched, as a user would) and once on the space with the ``train``
   part fixed to the same recipe (architecture-only, apples to apples). Compared on
   ``study.best.value`` (stand-alone validation accuracy at the space's maximum budget).

All timings are taken with ``torch.set_num_threads(1)`` (the machine has 2 cores; torch's default of
2 threads slows down 10-100x when another CPU-heavy process runs).

Writes ``benchmarks/results/supernet.md``, ``supernet.json`` and ``supernet_ranking.png``.

    .venv/bin/python benchmarks/supernet.py            # full run (about 10-15 min on 2 cores)
    .venv/bin/python benchmarks/supernet.py --quick    # a smoke run with tiny budgets (about 1 min)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
import numpy as np
import optuna
import torch
import yaml
from machine import cpu_model, git_commit, version
from scipy import stats

import automl
from automl.artifacts import ArtifactStore
from automl.errors import Infeasible
from automl.estimator import EvalContext, estimators
from automl.space.model import SearchSpace
from automl.tasks.base import tasks

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

TARGET_TAU = 0.5
TARGET_SPEEDUP = 50.0
# One training recipe for every candidate (within each space's ranges). A supernet cannot score these.
RECIPES: dict[str, dict[str, Any]] = {
    "digits-cnn": {"optimizer": "adam", "lr": 0.01, "batch_size": 64},
    "digits-mlp": {"optimizer": "adam", "lr": 0.01},
}


# ==================================================================================================
# Settings
# ==================================================================================================
@dataclass(frozen=True)
class Settings:
    quick: bool
    spaces: tuple[str, ...] = ("digits-cnn", "digits-mlp")
    n_candidates: int = 30
    candidate_seed: int = 12345  # the RNG that samples the ranking candidates
    standalone_seeds: tuple[int, ...] = (0, 1)  # training seeds averaged per candidate
    supernet_seed: int = 0  # the supernet the headline figures use
    extra_supernet_seeds: tuple[int, ...] = (1, 2)  # default supernet retrained: spread of tau
    supernet_options: Mapping[str, Any] = field(default_factory=dict)  # {} = the estimator's defaults
    finetune_steps: int = 20
    amortise_over: tuple[int, ...] = (100, 1000)
    search_space: str = "digits-cnn"
    search_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    search_trials: int = 200  # one-shot's default
    top_k: int = 3

    @staticmethod
    def make(quick: bool) -> Settings:
        if not quick:
            return Settings(quick=False)
        return Settings(quick=True, n_candidates=6, standalone_seeds=(0,), extra_supernet_seeds=(1,),
                        supernet_options={"epochs": 3}, search_seeds=(0,), search_trials=20, amortise_over=(100,))


# ==================================================================================================
# Helpers
# ==================================================================================================
def _task_data(space: SearchSpace):
    task = tasks.get(space.task)(**space.task_options)
    return task, task.load()


def fixed_train_space(name: str, recipe: Mapping[str, Any]) -> SearchSpace:
    """The space ``name`` with its ``train`` part replaced by constants (the recipe)."""
    space = automl.load_space(name)
    doc = yaml.safe_load(Path(space.source).read_text())
    doc["name"] = f"{name}-fixed-train"
    doc["space"]["train"] = {k: {"type": "constant", "value": v} for k, v in recipe.items()}
    return automl.space_from_yaml(yaml.safe_dump(doc, sort_keys=False), source=f"{space.source} (train fixed)")


def sample_candidates(space: SearchSpace, recipe: Mapping[str, Any], n: int, seed: int, store: ArtifactStore,
                      options: Mapping[str, Any], supernet_seed: int) -> tuple[list[dict[str, Any]], int]:
    """``n`` distinct random architectures that satisfy the space's constraints, train part = recipe.

    Feasibility is checked by the supernet estimator itself (it raises ``Infeasible`` from the
    extracted module's costs before scoring); the supernet in ``store`` must already be trained."""
    rng = np.random.default_rng(seed)
    estimator = estimators.get("supernet")(**options)
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    rejected = 0
    while len(out) < n:
        config = space.sample(rng)
        config["train"] = dict(recipe)
        problems = space.problems(config)
        if problems:
            raise RuntimeError(f"the fixed recipe is not valid in {space.name}: {problems}")
        key = space.key(config)
        if key in keys:
            continue
        try:
            estimator.evaluate(space.candidate(config), None, EvalContext(space, supernet_seed, 0, checkpoints=store))
        except Infeasible:
            rejected += 1
            continue
        keys.add(key)
        out.append(config)
    return out, rejected


def train_supernet(space: SearchSpace, options: Mapping[str, Any], seed: int,
                   root: Path) -> tuple[ArtifactStore, float]:
    """Train (and cache in a fresh store) the supernet; its wall-clock training time."""
    store = ArtifactStore(str(root))
    estimator = estimators.get("supernet")(**options)
    task, data = _task_data(space)
    start = time.perf_counter()
    _, trained_now, _ = estimator.supernet(space, task, data, seed, store)
    seconds = time.perf_counter() - start
    assert trained_now, "expected a fresh store"
    return store, seconds


def score_with_supernet(space: SearchSpace, candidates: Sequence[Mapping[str, Any]], options: Mapping[str, Any],
                        seed: int, store: ArtifactStore) -> tuple[list[float], list[float], list[float]]:
    """Inherited-weight accuracy of each candidate, the wall-clock of each ``evaluate`` call, and the
    estimator's own ``eval_seconds`` (extraction + costs + recalibration + fine-tuning + scoring)."""
    estimator = estimators.get("supernet")(**options)
    accs, walls, inner = [], [], []
    for i, config in enumerate(candidates):
        ctx = EvalContext(space, seed, i, checkpoints=store)
        start = time.perf_counter()
        result = estimator.evaluate(space.candidate(config), None, ctx)
        walls.append(time.perf_counter() - start)
        accs.append(float(result.metrics["accuracy"]))
        inner.append(float(result.metrics["eval_seconds"]))
    return accs, walls, inner


def train_standalone(space: SearchSpace, candidates: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                     epochs: int) -> tuple[list[list[float]], list[float]]:
    """Stand-alone validation accuracy per seed per candidate, and the wall-clock of every call."""
    estimator = estimators.get("train")()
    accs: list[list[float]] = []
    walls: list[float] = []
    for seed in seeds:
        row = []
        for i, config in enumerate(candidates):
            ctx = EvalContext(space, seed, i, checkpoints=None, budget=space.budget)
            start = time.perf_counter()
            try:
                result = estimator.evaluate(space.candidate(config), epochs, ctx)
                row.append(float(result.metrics["accuracy"]))
            except FloatingPointError:  # diverged: counts as chance-level
                row.append(float("nan"))
            walls.append(time.perf_counter() - start)
        accs.append(row)
    return accs, walls


def rank_stats(supernet: Sequence[float], standalone: Sequence[float]) -> dict[str, float]:
    tau = stats.kendalltau(supernet, standalone)  # tau-b (ties in either ranking are accounted for)
    rho = stats.spearmanr(supernet, standalone)
    s, a = np.asarray(supernet), np.asarray(standalone)
    order = np.argsort(-s, kind="stable")
    top3 = set(order[:3].tolist())
    true_top3 = set(np.argsort(-a, kind="stable")[:3].tolist())
    half = np.argsort(-a, kind="stable")[: len(a) // 2]  # the better half by stand-alone accuracy
    tau_half = stats.kendalltau(s[half], a[half])
    return {
        "kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
        "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue),
        "kendall_tau_better_half": float(tau_half.statistic),
        "standalone_of_supernet_top1": float(a[order[0]]),
        "best_standalone_of_supernet_top3": float(max(a[i] for i in top3)),
        "best_standalone_overall": float(a.max()),
        "top3_overlap": len(top3 & true_top3),
        "supernet_score_min": float(s.min()), "supernet_score_median": float(np.median(s)),
        "supernet_score_max": float(s.max()),
        "n_at_chance": int(np.sum(s <= 0.125)),
    }


# ==================================================================================================
# Parts 1 + 2: ranking and cost
# ==================================================================================================
def run_ranking(space_name: str, settings: Settings, work: Path, log) -> dict[str, Any]:
    space = automl.load_space(space_name)
    recipe = RECIPES[space_name]
    epochs = int(round(space.budget.max)) if space.budget is not None else 8
    options = dict(settings.supernet_options)
    out: dict[str, Any] = {"space": space_name, "recipe": recipe, "epochs": epochs, "variants": {}}

    log(f"[{space_name}] training the default supernet (seed {settings.supernet_seed}) ...")
    store, train_s = train_supernet(space, options, settings.supernet_seed, work / f"{space_name}-uniform")
    log(f"[{space_name}]   {train_s:.1f} s")
    candidates, rejected = sample_candidates(space, recipe, settings.n_candidates, settings.candidate_seed, store,
                                             options, settings.supernet_seed)
    out["candidates"] = candidates
    out["infeasible_rejected_while_sampling"] = rejected

    log(f"[{space_name}] stand-alone training of {len(candidates)} candidates x {len(settings.standalone_seeds)} "
        f"seeds, {epochs} epochs ...")
    sa_per_seed, sa_walls = train_standalone(space, candidates, settings.standalone_seeds, epochs)
    sa = np.nan_to_num(np.nanmean(np.asarray(sa_per_seed), axis=0), nan=0.1).tolist()
    out["standalone"] = {"per_seed": sa_per_seed, "mean": sa, "walls_s": sa_walls,
                         "median_wall_s": statistics.median(sa_walls),
                         "diverged": int(np.isnan(np.asarray(sa_per_seed)).sum())}
    if len(settings.standalone_seeds) >= 2:
        seed_tau = stats.kendalltau(sa_per_seed[0], sa_per_seed[1]).statistic
        out["standalone"]["tau_between_seeds_0_1"] = float(seed_tau)
    log(f"[{space_name}]   median {statistics.median(sa_walls):.3f} s per stand-alone training")

    def variant(label: str, opts: Mapping[str, Any], seed: int, store_: ArtifactStore, train_seconds: float) -> None:
        accs, walls, inner = score_with_supernet(space, candidates, opts, seed, store_)
        # time a second pass too: the first call of a store reads the file (cache miss)
        _, walls2, inner2 = score_with_supernet(space, candidates, opts, seed, store_)
        entry = {"options": dict(opts), "seed": seed, "train_s": train_seconds, "scores": accs,
                 "eval_walls_s": walls + walls2, "eval_inner_s": inner + inner2,
                 "median_eval_wall_s": statistics.median(walls + walls2),
                 "median_eval_inner_s": statistics.median(inner + inner2),
                 **rank_stats(accs, sa)}
        out["variants"][label] = entry
        log(f"[{space_name}]   {label}: tau {entry['kendall_tau']:.3f}, rho {entry['spearman_rho']:.3f}, "
            f"median eval {entry['median_eval_wall_s'] * 1000:.1f} ms")

    variant(f"uniform (default), seed {settings.supernet_seed}", options, settings.supernet_seed, store, train_s)
    ft = {**options, "finetune_steps": settings.finetune_steps}
    variant(f"uniform + finetune_steps={settings.finetune_steps}, seed {settings.supernet_seed}", ft,
            settings.supernet_seed, store, train_s)  # same cached supernet (the cache key ignores fine-tuning)
    log(f"[{space_name}] training the sandwich supernet ...")
    sw = {**options, "sampling": "sandwich"}
    sw_store, sw_s = train_supernet(space, sw, settings.supernet_seed, work / f"{space_name}-sandwich")
    variant(f"sandwich, seed {settings.supernet_seed}", sw, settings.supernet_seed, sw_store, sw_s)
    for seed in settings.extra_supernet_seeds:
        log(f"[{space_name}] training the default supernet with seed {seed} ...")
        st, s = train_supernet(space, options, seed, work / f"{space_name}-uniform-{seed}")
        variant(f"uniform (default), seed {seed}", options, seed, st, s)

    # cost (part 2), on the default supernet without fine-tuning
    head = out["variants"][f"uniform (default), seed {settings.supernet_seed}"]
    eval_s, sa_s = head["median_eval_wall_s"], out["standalone"]["median_wall_s"]
    out["cost"] = {
        "supernet_train_s": head["train_s"], "median_eval_s": eval_s,
        "median_eval_inner_s": head["median_eval_inner_s"], "median_standalone_s": sa_s,
        "speedup_per_candidate": sa_s / eval_s,
        "amortised": {str(n): {"per_candidate_s": head["train_s"] / n + eval_s,
                               "speedup": sa_s / (head["train_s"] / n + eval_s)} for n in settings.amortise_over},
        "break_even_candidates": head["train_s"] / max(sa_s - eval_s, 1e-12),
    }
    return out


def seeding_check(space_name: str, work: Path) -> dict[str, Any]:
    """Is a supernet trained "with seed 0" the same whatever the global torch RNG state was before?
    (Two 1-epoch trainings with seed 0, after ``torch.manual_seed(123)`` and ``torch.manual_seed(456)``.)"""
    space = automl.load_space(space_name)
    task, data = _task_data(space)
    estimator = estimators.get("supernet")(epochs=1)
    states = []
    for i, before in enumerate((123, 456)):
        torch.manual_seed(before)
        net, _, _ = estimator.supernet(space, task, data, 0, ArtifactStore(str(work / f"seeding-{i}")))
        states.append(net.state_dict())
    same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    return {"space": space_name, "same_weights": same}


# ==================================================================================================
# Part 3: search at equal wall-clock
# ==================================================================================================
def run_search(settings: Settings, work: Path, log) -> dict[str, Any]:
    name = settings.search_space
    recipe = RECIPES[name]
    fixed_space = fixed_train_space(name, recipe)
    runs: list[dict[str, Any]] = []
    for seed in settings.search_seeds:
        store = work / f"one-shot-{seed}"
        opts: dict[str, Any] = {"search_trials": settings.search_trials, "top_k": settings.top_k,
                                "fixed": {"train": dict(recipe)}}
        if settings.supernet_options:
            opts["supernet"] = dict(settings.supernet_options)
        start = time.perf_counter()
        study = automl.create_study(name, strategy="one-shot", seed=seed, strategy_options=opts, checkpoints=store)
        study.optimize(threads=torch.get_num_threads())
        T = time.perf_counter() - start
        trials = study.trials
        phase = lambda p, trials=trials: [t for t in trials if t.info.get("phase") == p]  # noqa: E731
        searched = [t for t in phase("search") if t.state is automl.TrialState.COMPLETE]
        search_scores = {t.key: t.value for t in searched}
        finals = [t for t in phase("standalone") if t.state is automl.TrialState.COMPLETE]
        sup = phase("supernet")[0]
        one_shot = {
            "wall_s": T, "best": study.best.value,
            "supernet_train_s": float(sup.metrics.get("supernet_train_seconds", float("nan"))),
            "n_search": len(searched), "n_search_infeasible": sum(t.state is automl.TrialState.INFEASIBLE
                                                                 for t in phase("search")),
            "median_search_trial_s": statistics.median(t.duration_s for t in searched if t.duration_s is not None),
            "finalists": [{"supernet_score": search_scores.get(t.key), "standalone": t.value,
                           "duration_s": t.duration_s} for t in finals],
            "best_supernet_score": max(search_scores.values()) if search_scores else None,
        }
        log(f"[search seed {seed}] one-shot: best {one_shot['best']:.4f} in {T:.1f} s "
            f"({one_shot['n_search']} searched, "
            f"finalists {[round(f['standalone'], 3) for f in one_shot['finalists']]})")
        row: dict[str, Any] = {"seed": seed, "one_shot": one_shot}
        for label, space in (("evolution", name), ("evolution (train fixed)", fixed_space)):
            start = time.perf_counter()
            evo = automl.create_study(space, strategy="evolution", seed=seed)
            evo.optimize(timeout=T, threads=torch.get_num_threads())
            wall = time.perf_counter() - start
            done = evo.completed()
            row[label] = {"wall_s": wall, "best": evo.best.value, "n_trials": len(done),
                          "n_infeasible": sum(t.state is automl.TrialState.INFEASIBLE for t in evo.trials),
                          "n_failed": sum(t.state is automl.TrialState.FAILED for t in evo.trials),
                          "median_trial_s": statistics.median(t.duration_s for t in done if t.duration_s is not None)}
            log(f"[search seed {seed}] {label}: best {row[label]['best']:.4f} in {wall:.1f} s ({len(done)} trials)")
        runs.append(row)
    summary = {}
    for label in ("one_shot", "evolution", "evolution (train fixed)"):
        bests = [r[label]["best"] for r in runs]
        summary[label] = {"median_best": statistics.median(bests), "min_best": min(bests), "max_best": max(bests),
                          "median_wall_s": statistics.median(r[label]["wall_s"] for r in runs)}
    for label in ("evolution", "evolution (train fixed)"):
        wins = sum(r["one_shot"]["best"] > r[label]["best"] for r in runs)
        ties = sum(r["one_shot"]["best"] == r[label]["best"] for r in runs)
        summary[label]["one_shot_wins_ties_losses"] = (wins, ties, len(runs) - wins - ties)
    n_val = len(_task_data(automl.load_space(name))[1].val_y)
    return {"space": name, "recipe": recipe, "runs": runs, "summary": summary, "n_val": n_val}


# ==================================================================================================
# Report
# ==================================================================================================
def machine_info() -> dict[str, Any]:
    cpu = cpu_model()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "versions": {p: version(p) for p in ("automl", "torch", "numpy", "scipy", "scikit-learn", "optuna")},
        "git": git_commit(),
    }


def plot(ranking: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ranking), figsize=(6.2 * len(ranking), 5.4), squeeze=False)
    markers = ["o", "s", "^", "x", "+", "v"]
    for ax, part in zip(axes[0], ranking):
        sa = part["standalone"]["mean"]
        for (label, v), m in zip(part["variants"].items(), markers):
            ax.scatter(sa, v["scores"], marker=m, s=30, alpha=0.75,
                       label=f"{label} (tau {v['kendall_tau']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"stand-alone val. accuracy ({part['epochs']} epochs, mean of "
                      f"{len(part['standalone']['per_seed'])} seeds)")
        ax.set_ylabel("supernet (inherited weights) val. accuracy")
        ax.set_title(f"{part['space']}: {len(sa)} random architectures, train part fixed")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def write_report(settings: Settings, info: Mapping[str, Any], ranking: Sequence[Mapping[str, Any]],
                 search: Mapping[str, Any] | None, elapsed_s: float, png: str,
                 seeding: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    L: list[str] = []
    verdicts: dict[str, Any] = {}
    L += ["# One-shot NAS (weight-sharing supernet) on the digits spaces", ""]
    L.append("A benchmark, not a test. Misses are reported as they are; nothing was tuned to pass (the supernet "
             "runs with the `supernet` estimator's defaults, the search strategies with theirs).")
    if settings.quick:
        L += ["", "**QUICK SMOKE RUN (`--quick`): tiny budgets (3-epoch supernets, 6 candidates, 1 seed), "
                  "not a result.**"]
    L += ["", "## Machine and run", ""]
    L.append(f"- Date: {info['date']}; total benchmark time {elapsed_s / 60:.1f} min")
    L.append(f"- Machine: {info['cpus']} CPUs ({info['cpu']}), {info['platform']}; no GPU used")
    L.append(f"- Python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    L.append(f"- automl git: {info['git']}")
    L.append("- `torch.set_num_threads(1)` for everything (2-core machine: torch's default 2 threads slows down "
             "10-100x when another CPU-heavy process runs); everything runs one after another in this one process, "
             "`n_workers=1`, in-memory ledgers, a fresh supernet store for every supernet trained (so every supernet "
             "training is timed, never loaded from an old cache).")
    L.append("- Reproduce: `.venv/bin/python benchmarks/supernet.py` (full), "
             "`.venv/bin/python benchmarks/supernet.py --quick` (smoke run, about a minute).")
    L += ["", "## Settings", ""]
    defaults = ("epochs 40, Adam, lr 0.005 cosine, batch 64, uniform single-path sampling, 8 BN-calibration "
                "batches, no fine-tuning")
    L.append(f"- Supernet: the `supernet` estimator's defaults "
             f"({settings.supernet_options or defaults}); "
             f"variants: `sampling=\"sandwich\"` (largest + smallest + 2 random paths per step), "
             f"`finetune_steps={settings.finetune_steps}` (same supernet), and the default supernet retrained with "
             f"seeds {list(settings.extra_supernet_seeds)}.")
    L.append(f"- Candidates: {settings.n_candidates} distinct random architectures per space (`space.sample`, RNG seed "
             f"{settings.candidate_seed}), resampled when they break the space's constraint (counted below); the "
             f"`train` part FIXED for all: " + "; ".join(f"`{k}`: `{json.dumps(v)}`" for k, v in RECIPES.items()
                                                         if k in settings.spaces) + ".")
    L.append(f"- Stand-alone score: `TrainEstimator` at the space's maximum budget (digits-cnn 8 epochs, digits-mlp "
             f"9 epochs), same fixed recipe, mean validation accuracy over training seeds "
             f"{list(settings.standalone_seeds)}. Supernet score: `SupernetEstimator.evaluate` (validation accuracy "
             f"of the extracted sub-network after BN recalibration), same validation split.")
    L.append("- Rank statistics: `scipy.stats.kendalltau` (tau-b: ties, e.g. several candidates at chance level in "
             "the supernet, are accounted for) and `scipy.stats.spearmanr`.")

    for part in ranking:
        name = part["space"]
        head_label = next(iter(part["variants"]))
        head = part["variants"][head_label]
        sa = part["standalone"]
        L += ["", f"## {name}", "", f"### Ranking quality ({name})", ""]
        L.append(f"{len(part['candidates'])} candidates ({part['infeasible_rejected_while_sampling']} infeasible draws "
                 f"rejected while sampling); stand-alone accuracy ranges "
                 f"{min(sa['mean']):.3f}-{max(sa['mean']):.3f} (median {statistics.median(sa['mean']):.3f}); "
                 f"{sa['diverged']} stand-alone trainings diverged.")
        if "tau_between_seeds_0_1" in sa:
            L.append(f"Noise ceiling: Kendall tau between the two stand-alone training seeds = "
                     f"{sa['tau_between_seeds_0_1']:.3f} (the stand-alone ranking itself is not perfectly "
                     f"reproducible).")
        L += ["", "| supernet | train (s) | Kendall tau (p) | Spearman rho (p) | tau, better half | supernet score "
                  "min / median / max | at chance (<= 0.125) | stand-alone of supernet's top-1 | best stand-alone in "
                  "supernet's top-3 / true best | top-3 overlap |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for label, v in part["variants"].items():
            L.append(f"| {label} | {v['train_s']:.1f} | {v['kendall_tau']:.3f} ({v['kendall_p']:.2g}) | "
                     f"{v['spearman_rho']:.3f} ({v['spearman_p']:.2g}) | {v['kendall_tau_better_half']:.3f} | "
                     f"{v['supernet_score_min']:.3f} / {v['supernet_score_median']:.3f} / "
                     f"{v['supernet_score_max']:.3f} | "
                     f"{v['n_at_chance']}/{len(v['scores'])} | {v['standalone_of_supernet_top1']:.3f} | "
                     f"{v['best_standalone_of_supernet_top3']:.3f} / {v['best_standalone_overall']:.3f} | "
                     f"{v['top3_overlap']}/3 |")
        L.append("")
        L.append("\"tau, better half\": Kendall tau among the half of the candidates with the higher stand-alone "
                 "accuracy (does the supernet separate good architectures from each other, not only good from "
                 "broken?). The finetune row reuses the default supernet (the cache key ignores fine-tuning).")
        ok = head["kendall_tau"] >= TARGET_TAU
        taus = [v["kendall_tau"] for k, v in part["variants"].items() if k.startswith("uniform (default)")]
        verdicts[f"{name}: tau >= {TARGET_TAU}"] = ok
        L += ["", f"**Verdict (tau >= {TARGET_TAU}, default supernet, seed {head['seed']}): {_met(ok)}** "
                  f"(tau = {head['kendall_tau']:.3f}; over the {len(taus)} default-supernet seeds tau = "
                  f"{', '.join(f'{t:.3f}' for t in taus)}, median {statistics.median(taus):.3f}).", ""]

        c = part["cost"]
        L += [f"### Cost ({name})", "",
              "| figure | seconds per candidate | stand-alone / this |", "|---|---|---|",
              f"| stand-alone training ({part['epochs']} epochs), median of {len(sa['walls_s'])} `TrainEstimator."
              f"evaluate` calls | {c['median_standalone_s']:.4f} | 1 |",
              f"| supernet score, median of {len(head['eval_walls_s'])} `SupernetEstimator.evaluate` calls on the "
              f"cached supernet (excl. training) | {c['median_eval_s']:.4f} | **{c['speedup_per_candidate']:.1f}x** |",
              f"| ... of which the estimator's own `eval_seconds` (extract, costs, BN recalibration, scoring) | "
              f"{c['median_eval_inner_s']:.4f} | {c['median_standalone_s'] / c['median_eval_inner_s']:.1f}x |"]
        for n, a in c["amortised"].items():
            L.append(f"| amortised over N = {n} candidates (supernet training {c['supernet_train_s']:.1f} s / N + "
                     f"median score) | {a['per_candidate_s']:.4f} | {a['speedup']:.1f}x |")
        ft = next((v for k, v in part["variants"].items() if "finetune" in k), None)
        if ft is not None:
            L.append(f"| supernet score with finetune_steps={settings.finetune_steps} (excl. training) | "
                     f"{ft['median_eval_wall_s']:.4f} | {c['median_standalone_s'] / ft['median_eval_wall_s']:.1f}x |")
        L.append("")
        L.append(f"Break-even: the supernet's training pays for itself after {c['break_even_candidates']:.0f} "
                 f"candidates (training time / (stand-alone - supernet score per candidate)).")
        ok = c["speedup_per_candidate"] >= TARGET_SPEEDUP
        verdicts[f"{name}: >= {TARGET_SPEEDUP:.0f}x cheaper per candidate (excl. supernet training)"] = ok
        L += ["", f"**Verdict (>= {TARGET_SPEEDUP:.0f}x cheaper, judged on the per-candidate median excluding the "
                  f"one-off supernet training): {_met(ok)}** ({c['speedup_per_candidate']:.1f}x; amortised: "
                  + ", ".join(f"N={n}: {a['speedup']:.1f}x" for n, a in c["amortised"].items()) + ").", ""]

    if search is not None:
        s = search["summary"]
        L += [f"## Search at equal wall-clock ({search['space']})", ""]
        L.append(f"Per seed: `one-shot` (`search_trials={settings.search_trials}`, `top_k={settings.top_k}`, "
                 f"`fixed={{train: {json.dumps(search['recipe'])}}}`, default supernet, fresh checkpoint folder so the "
                 f"supernet is trained inside the timed run) takes T seconds end to end (create_study + optimize); "
                 f"then `evolution` (the space's defaults: population 12, tournament 4) runs `optimize(timeout=T)` on "
                 f"the full space and on the space with `train` fixed to the same recipe. Value: `study.best.value` = "
                 f"stand-alone validation accuracy at 8 epochs (for one-shot, the best of its stand-alone finalists). "
                 f"Evolution's wall-clock can exceed T by one trial (the loop does not cut a running trial).")
        L += ["", "| seed | one-shot best | T (s) | supernet train (s) | searched | finalists: supernet score -> "
                  "stand-alone | evolution best | trials | wall (s) | evolution (train fixed) best | "
                  "trials | wall (s) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in search["runs"]:
            o, e, f = r["one_shot"], r["evolution"], r["evolution (train fixed)"]
            fin = ", ".join(f"{x['supernet_score']:.2f}->{x['standalone']:.3f}" for x in o["finalists"])
            L.append(f"| {r['seed']} | {o['best']:.4f} | {o['wall_s']:.1f} | {o['supernet_train_s']:.1f} | "
                     f"{o['n_search']} | {fin} | {e['best']:.4f} | {e['n_trials']} | {e['wall_s']:.1f} | "
                     f"{f['best']:.4f} | {f['n_trials']} | {f['wall_s']:.1f} |")
        L += ["", "| contender | median best | range over seeds | median wall (s) | one-shot wins / ties / losses |",
              "|---|---|---|---|---|"]
        for label, v in s.items():
            wtl = v.get("one_shot_wins_ties_losses")
            L.append(f"| {label.replace('one_shot', 'one-shot')} | {v['median_best']:.4f} | "
                     f"{v['min_best']:.4f}-{v['max_best']:.4f} | "
                     f"{v['median_wall_s']:.1f} | {'' if wtl is None else '%d / %d / %d' % tuple(wtl)} |")
        med_os = s["one_shot"]["median_best"]
        L.append("")
        rows = search["runs"]
        L.append(f"The validation split has {search['n_val']} images, so one image is "
                 f"{100 / search['n_val']:.2f} accuracy points. `study.best.value` is the best validation score among "
                 f"the candidates trained stand-alone (one-shot: its {settings.top_k} finalists; evolution: every "
                 f"trial), so it is optimistically biased, more so the more candidates a contender trains; there is "
                 f"no separate test split.")
        L.append("")
        L.append(f"Median search-phase trial of one-shot: "
                 f"{statistics.median(r['one_shot']['median_search_trial_s'] for r in rows) * 1000:.1f} ms (ledger "
                 f"`duration_s`, inherited weights); median evolution trial: "
                 f"{statistics.median(r['evolution']['median_trial_s'] for r in rows):.3f} s (full space), "
                 f"{statistics.median(r['evolution (train fixed)']['median_trial_s'] for r in rows):.3f} s "
                 f"(train fixed).")
        for label in ("evolution", "evolution (train fixed)"):
            diff = med_os - s[label]["median_best"]
            who = "one-shot" if diff > 0 else label if diff < 0 else "neither (tie)"
            paired = statistics.mean(r["one_shot"]["best"] - r[label]["best"] for r in rows) * 100
            outcome = (f"{who} wins by {abs(diff) * 100:.2f} accuracy points" if diff else
                       "tie (equal medians)")
            verdicts[f"{search['space']}: one-shot vs {label} at equal wall-clock"] = \
                f"{outcome} (median over {len(rows)} seeds; mean paired difference {paired:+.2f} points)"
            L += ["", f"**Verdict (one-shot vs {label}, equal wall-clock): {outcome} in the median over "
                      f"{len(rows)} seeds** (one-shot {med_os:.4f} vs {s[label]['median_best']:.4f}; per seed "
                      f"one-shot wins/ties/losses {'%d/%d/%d' % tuple(s[label]['one_shot_wins_ties_losses'])}; "
                      "mean paired difference one-shot minus "
                      f"{label}: {paired:+.2f} points)."]
    elif "digits-cnn" in settings.spaces:
        L += ["", "## Search at equal wall-clock", "", "Not run."]
    L += ["", "## Figure", "", f"![supernet score vs stand-alone score]({png})", "",
          "Each point is one candidate: x = stand-alone accuracy (mean over training seeds), y = its supernet score "
          "(one marker per supernet variant); the dashed line is y = x.", ""]
    L += ["## Notes", ""]
    L.append(f"- Seeding (checked in this run on {seeding['space']}): two supernets trained with seed 0 after "
             f"different global torch RNG states have "
             f"{'the SAME' if seeding['same_weights'] else 'DIFFERENT'} weights. "
             + ("" if seeding["same_weights"] else
                "`SupernetEstimator.supernet()` (estimators/supernet.py) builds - and so randomly initialises - the "
                "supernet from the global torch RNG before `train_supernet` calls `torch.manual_seed(seed)`; the "
                "cache key says 'seed s' but the weights depend on the process's RNG state (torch's initial seed is "
                "random per process). This benchmark works around it by calling `torch.manual_seed(seed)` before "
                "every supernet training and every one-shot study, so its own figures are reproducible; the fix "
                "belongs in the estimator (seed, e.g. inside `torch.random.fork_rng`, before building the supernet)."))
    for part in ranking:
        v = part["variants"][next(iter(part["variants"]))]
        L.append(f"- {part['space']}, default supernet (seed {v['seed']}): median supernet score "
                 f"{v['supernet_score_median']:.3f} (max {v['supernet_score_max']:.3f}) vs median stand-alone "
                 f"{statistics.median(part['standalone']['mean']):.3f} (max {max(part['standalone']['mean']):.3f}); "
                 f"{v['n_at_chance']}/{len(v['scores'])} candidates score at chance level (<= 0.125); Kendall tau "
                 f"over all candidates {v['kendall_tau']:.3f} vs {v['kendall_tau_better_half']:.3f} within the "
                 f"better half by stand-alone accuracy.")
    L.append("")
    L += ["## Verdicts", ""]
    for k, v in verdicts.items():
        L.append(f"- {k}: **{_met(v)}**" if isinstance(v, bool) else f"- {k}: **{v}**")
    L.append("")
    return "\n".join(L), verdicts


# ==================================================================================================
# Main
# ==================================================================================================
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run of everything (about a minute)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: benchmarks/results; with --quick a temporary folder)")
    parser.add_argument("--no-search", action="store_true", help="skip part 3 (search at equal wall-clock)")
    args = parser.parse_args(argv)
    settings = Settings.make(args.quick)
    out = args.out or (Path(tempfile.mkdtemp(prefix="supernet-quick-")) if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # 2-core machine: avoid OpenMP oversubscription (see the module docstring)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = machine_info()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="supernet-bench-") as tmp:
        work = Path(tmp)
        ranking = [run_ranking(name, settings, work, log) for name in settings.spaces]
        search = None if args.no_search else run_search(settings, work, log)
        seeding = seeding_check(settings.spaces[0], work)
    elapsed = time.perf_counter() - t0
    png = "supernet_ranking.png"
    plot(ranking, out / png)
    report, verdicts = write_report(settings, info, ranking, search, elapsed, png, seeding)
    (out / "supernet.md").write_text(report)
    payload = {"settings": asdict(settings), "machine": info, "elapsed_s": elapsed, "ranking": ranking,
               "search": search, "seeding_check": seeding, "verdicts": verdicts}
    (out / "supernet.json").write_text(json.dumps(payload, indent=1, default=str))
    log(f"wrote {out / 'supernet.md'}, supernet.json, {png}")
    for k, v in verdicts.items():
        print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
