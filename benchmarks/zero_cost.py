"""Zero-cost proxies on the tabulated ``nb201-digits`` benchmark (a benchmark, not a test).

1. **Ranking.** Every cell of the table (729 cells, 261 distinct networks) is scored at initialisation by
   each zero-cost estimator (``synflow``, ``snip``, ``grad-norm``, ``jacob-cov``, ``params``, ``flops``),
   through the estimators' public ``evaluate`` exactly as a study calls them, with several initialisation
   seeds. Kendall tau-b (``scipy.stats.kendalltau``) and Spearman rho against the table's validation
   accuracy at its largest budget (9 epochs), over all cells (many are copies: every cell without a path
   from input to output is the all-``none`` network, at chance), over the distinct networks, and over the
   better half of those (does a proxy tell good networks from the best, which is what a search needs).
   Plus each proxy's compute time per cell (the score alone and the whole ``evaluate`` call: build, costs,
   score).
2. **Search.** In simulated time, training costs from the table (its cumulative training seconds to 9
   epochs, CPU time), proxy costs as measured (CPU time of the whole estimator call): "prefilter 10x
   with the best proxy, train the top 10%" (score ``10 M`` random cells, train the best ``M``, best-proxy
   first) against plain regularized evolution (``automl.strategies.evolution``, the space's population
   12 / tournament 4), random search, and evolution warm-started by the proxy (its initial population the
   proxy's top 12 of 120 random cells, as a pipeline's ``from: prefilter`` step enqueues them). Over many
   seeds: the median simulated time each needs to reach a target validation accuracy, and the speed-up
   over evolution at equal accuracy; every proxy in the prefilter and warm-start roles.

All timings with ``torch.set_num_threads(1)`` (the table's training seconds were measured on one thread too).
Writes ``benchmarks/results/zero_cost.md`` and ``zero_cost.json``.

    .venv/bin/python benchmarks/zero_cost.py             # full run (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/zero_cost.py --quick     # one seed, 10 simulation seeds (about 2 minutes)
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
import numpy as np
import torch
from machine import ForeignCpu, cpu_model, git_commit, version
from scipy import stats

import automl
from automl.estimator import EvalContext, estimators
from automl.space.model import SearchSpace
from automl.strategies.base import Observation, TrialState
from automl.strategies.evolution import RegularizedEvolution
from automl.tasks.base import Task
from estimators.zero_cost import PROXIES
from search_spaces.nb201 import cell_config, cell_ops
from search_spaces.nb201_table import NasTable, load_nas_table

SPACE = "nb201-digits"
RESULTS = Path(__file__).resolve().parent / "results"
#: the networks each prefilter trains (it scores 10x as many) and the warm start's population
TRAINED = (10, 20, 50)
POPULATION = 12


# -- 1. ranking ----------------------------------------------------------------------------------------
def cell_configs(space: SearchSpace, table: NasTable) -> list[dict[str, Any]]:
    """Each table row as a config of the space (its constant training recipe included)."""
    recipe = space.sample(np.random.default_rng(0)).get("train", {})
    return [{"model": cell_config(ops), "train": dict(recipe)} for ops in table.ops]


def score_cells(space: SearchSpace, configs: Sequence[Mapping[str, Any]], seeds: Sequence[int]
                ) -> dict[str, dict[str, np.ndarray]]:
    """Per proxy: ``score``, ``proxy_seconds`` (the score alone, wall-clock: the estimator's metric) and
    ``evaluate_seconds`` (the whole call, CPU seconds of this process), each an array (seed, cell). Cell ``i``
    of study seed ``s`` is trial ``i``: the model's initialisation follows the trial seed as in a study, the
    minibatch the study seed."""
    task = EvalContext(space, 0, 0).require_task(Task)  # type: ignore[type-abstract]
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in PROXIES:
        estimator = estimators.get(name)()
        arrays = {k: np.zeros((len(seeds), len(configs))) for k in ("score", "proxy_seconds", "evaluate_seconds")}
        for s, seed in enumerate(seeds):
            for i, config in enumerate(configs):
                ctx = EvalContext(space, seed=seed, trial_number=i, task=task)
                start = time.process_time()  # CPU time, as the table's training seconds: immune to other load
                metrics = estimator.evaluate(space.candidate(dict(config)), None, ctx).metrics
                arrays["evaluate_seconds"][s, i] = time.process_time() - start
                arrays["score"][s, i] = metrics[name]
                arrays["proxy_seconds"][s, i] = metrics["proxy_seconds"]
        out[name] = arrays
        print(f"  {name}: {np.median(arrays['evaluate_seconds']) * 1000:.1f} ms per cell", flush=True)
    return out


def correlations(scores: dict[str, dict[str, np.ndarray]], table: NasTable) -> dict[str, Any]:
    """Kendall tau-b and Spearman rho of every proxy and seed against the largest budget's validation
    accuracy, over three sets of cells; mean and std over seeds."""
    accuracy = table.val_accuracy[:, -1].astype(float)
    distinct = np.flatnonzero(table.representative == np.arange(len(table)))
    better_half = distinct[accuracy[distinct] >= np.median(accuracy[distinct])]
    subsets = {"all cells": np.arange(len(table)), "distinct networks": distinct,
               "distinct networks, better half": better_half}
    out: dict[str, Any] = {"subsets": {k: int(len(v)) for k, v in subsets.items()}, "proxies": {}}
    for name, arrays in scores.items():
        row: dict[str, Any] = {}
        for label, rows in subsets.items():
            taus = [float(stats.kendalltau(seed_scores[rows], accuracy[rows]).statistic) for seed_scores in
                    arrays["score"]]
            rhos = [float(stats.spearmanr(seed_scores[rows], accuracy[rows]).statistic) for seed_scores in
                    arrays["score"]]
            row[label] = {"tau": statistics.fmean(taus), "tau_std": statistics.pstdev(taus), "taus": taus,
                          "rho": statistics.fmean(rhos)}
        row["proxy_ms"] = float(np.median(arrays["proxy_seconds"]) * 1000)
        row["evaluate_ms"] = float(np.median(arrays["evaluate_seconds"]) * 1000)
        top = _top_share(arrays["score"], accuracy, distinct)
        row["top10_precision"] = top
        out["proxies"][name] = row
    return out


def _top_share(scores: np.ndarray, accuracy: np.ndarray, rows: np.ndarray) -> float:
    """Mean over seeds of the share of the proxy's top 10% of ``rows`` that are in the true top 10%."""
    k = max(1, len(rows) // 10)
    truth = set(rows[np.argsort(-accuracy[rows], kind="stable")[:k]].tolist())
    shares = [len(truth & set(rows[np.argsort(-s[rows], kind="stable")[:k]].tolist())) / k for s in scores]
    return statistics.fmean(shares)


# -- 2. search in simulated time ---------------------------------------------------------------------------
Curve = list[tuple[float, float]]  # (simulated seconds, best validation accuracy so far) after each training


class Simulation:
    """Search methods over the table: each trained cell costs its tabulated training seconds, each scored
    cell its measured proxy seconds."""

    def __init__(self, space: SearchSpace, table: NasTable, configs: Sequence[Mapping[str, Any]],
                 proxy: np.ndarray, proxy_cost: np.ndarray) -> None:
        self.space, self.table, self.configs = space, table, configs
        self.accuracy = table.val_accuracy[:, -1].astype(float)
        self.cost = table.train_seconds[:, -1].astype(float)
        self.proxy, self.proxy_cost = proxy, proxy_cost  # (proxy seed, cell)

    def row(self, config: Mapping[str, Any]) -> int:
        return self.table.row(cell_ops(config["model"]))

    def _trained(self, rows: Sequence[int], start: float = 0.0) -> Curve:
        curve, clock, best = [], start, -math.inf
        for r in rows:
            clock += self.cost[r]
            best = max(best, self.accuracy[r])
            curve.append((clock, best))
        return curve

    def random(self, seed: int, trials: int) -> Curve:
        rng = np.random.default_rng([seed, 1])
        return self._trained(rng.permutation(len(self.table))[:trials].tolist())

    def prefilter(self, seed: int, trained: int, factor: int = 10) -> Curve:
        """Score ``factor * trained`` random cells with the proxy, train the best ``trained``, best first."""
        rng = np.random.default_rng([seed, 2])
        scored = rng.choice(len(self.table), size=min(len(self.table), factor * trained), replace=False)
        p = seed % len(self.proxy)
        order = scored[np.argsort(-self.proxy[p, scored], kind="stable")]
        return self._trained(order[:trained].tolist(), start=float(self.proxy_cost[p, scored].sum()))

    def evolution(self, seed: int, trials: int, warm: int = 0, factor: int = 10, population: int = 12,
                  tournament: int = 4) -> Curve:
        """Regularized evolution for ``trials`` trainings; with ``warm``, its first ``warm`` trainings are the
        proxy's top ``warm`` of ``factor * warm`` random cells (enqueued, as a pipeline step hands them on)."""
        strategy = RegularizedEvolution(self.space, self.space.objectives, seed, None, population=population,
                                        tournament=tournament)
        start, queued = 0.0, []
        if warm:
            rng = np.random.default_rng([seed, 3])
            scored = rng.choice(len(self.table), size=factor * warm, replace=False)
            p = seed % len(self.proxy)
            queued = [self.configs[r] for r in scored[np.argsort(-self.proxy[p, scored], kind="stable")][:warm]]
            start = float(self.proxy_cost[p, scored].sum())
        rows = []
        for number in range(trials):
            if queued:
                config = dict(queued.pop(0))
                strategy.mark_seen(self.space.key(config))
            else:
                config = strategy.ask(number).config
            r = self.row(config)
            rows.append(r)
            strategy.tell(Observation(number, config, self.space.key(config), TrialState.COMPLETE,
                                      losses=(-self.accuracy[r],)))
        return self._trained(rows, start=start)


def time_to(curve: Curve, target: float) -> float:
    """The simulated seconds at which ``curve`` first reaches ``target`` (inf if it never does)."""
    return next((t for t, best in curve if best >= target - 1e-9), math.inf)


def simulate(space: SearchSpace, table: NasTable, configs: Sequence[Mapping[str, Any]],
             scores: Mapping[str, Mapping[str, np.ndarray]], best: str, seeds: int, trials: int) -> dict[str, Any]:
    """Every method over ``seeds`` seeds, the prefilters and the warm start once per proxy; targets: the best
    proxy's prefilters' median final accuracies and accuracy quantiles of the distinct networks; per target
    and method the median time to it and the speed-up over evolution."""
    sims = {name: Simulation(space, table, configs, a["score"], a["evaluate_seconds"]) for name, a in scores.items()}
    plain = sims[best]
    curves: dict[str, dict[str, list[Curve]]] = {"": {
        "evolution": [plain.evolution(s, trials) for s in range(seeds)],
        "random": [plain.random(s, trials) for s in range(seeds)]}}
    for name, sim in sims.items():
        curves[name] = {f"prefilter {10 * m} -> train {m}": [sim.prefilter(s, m) for s in range(seeds)]
                        for m in TRAINED}
        curves[name]["evolution, proxy warm start"] = [sim.evolution(s, trials, warm=POPULATION)
                                                       for s in range(seeds)]
    distinct = np.flatnonzero(table.representative == np.arange(len(table)))
    values = np.sort(plain.accuracy[distinct])[::-1]
    targets: dict[str, float] = {f"median final of prefilter {10 * m} -> train {m}": statistics.median(
        c[-1][1] for c in curves[best][f"prefilter {10 * m} -> train {m}"]) for m in TRAINED}
    for share in (0.10, 0.05, 0.02, 0.01):
        targets[f"top {share:.0%} of networks"] = float(values[max(0, int(len(values) * share) - 1)])

    def at(target: float, runs: list[Curve], base: float) -> dict[str, float]:
        median = statistics.median(time_to(c, target) for c in runs)
        return {"median_seconds": median, "reached": sum(time_to(c, target) < math.inf for c in runs) / len(runs),
                "speedup": base / median if math.isfinite(median) and math.isfinite(base) else
                (math.inf if math.isfinite(median) else 0.0)}

    merged: dict[float, str] = {}  # validation accuracy moves in steps of one example: targets coincide
    for label, target in targets.items():
        merged[target] = f"{merged[target]} = {label}" if target in merged else label
    rows = []
    for target, label in sorted(merged.items()):
        base = statistics.median(time_to(c, target) for c in curves[""]["evolution"])
        methods = {n: at(target, runs, base) for n, runs in curves[""].items()}
        methods.update({n: at(target, runs, base) for n, runs in curves[best].items()})
        per_proxy = {p: {n: at(target, runs, base) for n, runs in curves[p].items()} for p in sims}
        rows.append({"target": label, "accuracy": target, "methods": methods, "per_proxy": per_proxy})
    finals = {n: {"median_best": statistics.median(c[-1][1] for c in runs),
                  "median_seconds": statistics.median(c[-1][0] for c in runs), "trained": len(runs[0])}
              for group in ("", best) for n, runs in curves[group].items()}
    first_seed = scores[best]["score"][0]
    top_row = int(np.argmax(first_seed))
    top = {"cell": table.keys[top_row], "accuracy": float(plain.accuracy[top_row]),
           "rank": int(1 + np.sum(plain.accuracy[distinct] > plain.accuracy[top_row])), "of": int(len(distinct)),
           "best": float(values[0])}
    return {"seeds": seeds, "evolution_trials": trials, "targets": rows, "finals": finals, "top_scored": top,
            "mean_train_seconds": float(plain.cost.mean()),
            "mean_proxy_seconds": {p: float(sim.proxy_cost.mean()) for p, sim in sims.items()}}


# -- report -------------------------------------------------------------------------------------------------
def _cell(result: Mapping[str, float], show_speedup: bool = True) -> str:
    t, share, up = result["median_seconds"], result["reached"], result["speedup"]
    if not math.isfinite(t):
        return f"not reached ({share:.0%})"
    speed = "" if not show_speedup else ", evolution never" if not math.isfinite(up) else f", {up:.1f}x"
    return f"{t:.0f} s ({share:.0%}){speed}"


def _speedup(result: Mapping[str, float]) -> str:
    up = result["speedup"]
    return "-" if not math.isfinite(result["median_seconds"]) else "inf" if not math.isfinite(up) else f"{up:.1f}x"


def render(report: Mapping[str, Any]) -> str:
    r, sim, best = report["ranking"], report["search"], report["best_proxy"]
    subsets = list(r["subsets"])
    lines = [
        "# Zero-cost proxies on the tabulated nb201-digits benchmark", "",
        f"{report['when']} · commit {report['commit']} · {report['cpu']} · {report['cpus']} cores · torch "
        f"{report['torch']} · 1 torch thread · `{report['command']}`", "",
        f"Table: {report['table']['source']} ({report['table']['cells']} cells, {report['table']['trained']} distinct "
        f"networks, validation accuracy after {report['table']['budget']} epochs; 1 validation example = "
        f"{report['table']['val_step']:.4f}). Proxies scored through the estimators with "
        f"{len(report['proxy_seeds'])} initialisation seeds ({', '.join(map(str, report['proxy_seeds']))}), one "
        "minibatch of 64 training examples per seed. Kendall tau-b, mean ± std over seeds (Spearman rho in "
        "brackets). Larger score = predicted better for every proxy.", "",
        "| proxy | " + " | ".join(f"tau, {s} ({r['subsets'][s]})" for s in subsets)
        + " | top-10% precision | proxy ms/cell | evaluate CPU ms/cell |",
        "|---|" + "---|" * (len(subsets) + 3),
    ]
    for name, row in r["proxies"].items():
        cells = " | ".join(f"{row[s]['tau']:+.3f} ± {row[s]['tau_std']:.3f} ({row[s]['rho']:+.2f})" for s in subsets)
        lines.append(f"| {name} | {cells} | {row['top10_precision']:.2f} | {row['proxy_ms']:.1f} | "
                     f"{row['evaluate_ms']:.1f} |")
    mean_proxy = sim["mean_proxy_seconds"][best] * 1000
    lines += ["", "'evaluate CPU ms' is the whole estimator call (build the model, count params/FLOPs, draw the "
              "minibatch, score) in CPU time, as the table's training seconds are; 'proxy ms' the score alone, "
              "wall-clock (the estimator's `proxy_seconds`); medians over cells and seeds. top-10% precision: the "
              "share of the proxy's top 10% of distinct networks that are in the true top 10%.", "",
              f"## Search in simulated time (best proxy by tau over distinct networks: {best})", "",
              f"{sim['seeds']} seeds, one worker. Costs: a training is the table's training seconds to "
              f"{report['table']['budget']} epochs (mean {sim['mean_train_seconds']:.2f} s), a proxy score its "
              f"measured evaluate CPU time (mean {mean_proxy:.1f} ms for {best}). Evolution (population {POPULATION}, "
              "tournament 4) "
              f"and random search: {sim['evolution_trials']} trainings; warm start: the proxy's top {POPULATION} of "
              f"{10 * POPULATION} random cells, then evolution. Median simulated seconds to reach each target (share "
              "of seeds that reach it within their trainings), and the speed-up over plain evolution at that accuracy "
              "(evolution's median time / the method's).", ""]
    names = list(sim["targets"][0]["methods"])
    lines += ["| target (val accuracy) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in sim["targets"]:
        cells = [_cell(row["methods"][n], show_speedup=n != "evolution") for n in names]
        lines.append(f"| {row['target']}: {row['accuracy']:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "| method | trainings | median best val accuracy | median simulated seconds |", "|---|---|---|---|"]
    for n, f in sim["finals"].items():
        lines.append(f"| {n} | {f['trained']} | {f['median_best']:.4f} | {f['median_seconds']:.0f} |")
    chosen = [row for row in sim["targets"] if "top 5%" in row["target"] or "top 1%" in row["target"]]
    proxy_methods = list(chosen[0]["per_proxy"][best])
    short = {m: m.replace("prefilter ", "").replace(" -> train ", "->").replace("evolution, proxy warm start", "warm")
             for m in proxy_methods}
    lines += ["", "Every proxy in the same roles: speed-up over plain evolution at the accuracy of the top 5% and "
              "of the top 1% of networks (`100->10`: prefilter 100, train 10; `warm`: evolution warm-started; '-': "
              "the method's median seed does not reach it).", "",
              "| proxy | " + " | ".join(f"{short[m]} @ {row['accuracy']:.4f}" for row in chosen for m in proxy_methods)
              + " |", "|---|" + "---|" * (len(chosen) * len(proxy_methods))]
    for p in r["proxies"]:
        lines.append(f"| {p} | " + " | ".join(_speedup(row["per_proxy"][p][m]) for row in chosen
                                                for m in proxy_methods) + " |")
    lines += ["", "## Reading", "", *report["notes"], ""]
    return "\n".join(lines)


def notes(ranking: Mapping[str, Any], best: str, sim: Mapping[str, Any]) -> list[str]:
    """What the figures say, written from them (so a rerun's text follows its numbers)."""
    proxies = ranking["proxies"]
    half = "distinct networks, better half"
    out = []
    weak = [n for n, r in proxies.items() if abs(r["distinct networks"]["tau"]) < 0.2]
    if weak:
        out.append(f"- {', '.join(weak)}: no useful correlation with trained accuracy at our scale (|tau| < 0.2 over "
                   "the distinct networks).")
    gradient = max(("synflow", "snip", "grad-norm", "jacob-cov"), key=lambda n: proxies[n]["distinct networks"]["tau"])
    best_half = max(r[half]["tau"] for r in proxies.values())
    out.append(f"- Best proxy over the distinct networks: {best} (tau "
               f"{proxies[best]['distinct networks']['tau']:+.3f}); best of the gradient-based ones: {gradient} "
               f"({proxies[gradient]['distinct networks']['tau']:+.3f}). Among the better half of the networks the "
               f"best tau is {best_half:+.3f}"
               + (": the proxies sort weak networks from good ones better than good ones from the best."
                  if best_half < proxies[best]["distinct networks"]["tau"] - 0.1 else ".")
               + " The best proxy was chosen on the table it is then judged on.")
    first = sim["targets"][0]
    for row in sim["targets"]:
        if "median final of prefilter 100 " in row["target"]:
            first = row
    pre, rnd = first["methods"]["prefilter 100 -> train 10"], first["methods"]["random"]
    out.append(f"- At the accuracy that prefiltering 100 cells with {best} and training the top 10 reaches in its "
               f"median seed ({first['accuracy']:.4f}), it needs {pre['median_seconds']:.0f} simulated seconds "
               f"against {first['methods']['evolution']['median_seconds']:.0f} s for plain regularized evolution: "
               f"{_speedup(pre)} (random search: {_speedup(rnd)}, {rnd['median_seconds']:.0f} s).")
    train = sim["mean_train_seconds"]
    overhead = ", ".join(f"{p} {10 * c / train:.2f}" for p, c in sim["mean_proxy_seconds"].items())
    out.append(f"- Training is cheap here (mean {train:.2f} CPU s per cell to 9 epochs), so a proxy's own cost is not "
               "negligible: scoring the 10 cells a prefilter looks at per trained cell costs, in trainings: "
               f"{overhead}. Where a training takes minutes, the same scores cost next to nothing beside it.")
    top = sim["top_scored"]
    out.append(f"- {best}'s top-scored cell ({top['cell']}) reaches validation accuracy {top['accuracy']:.4f}, rank "
               f"{top['rank']} of {top['of']} distinct networks (the best reaches {top['best']:.4f}).")
    out.append("- A prefilter trains a fixed number of cells, so a target above what its best-scored cells reach is "
               "'not reached' for it while evolution keeps searching: a proxy buys time to a good cell, not the best.")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one proxy seed and 10 simulation seeds")
    parser.add_argument("--table", default=None, help="the NAS table (default benchmarks/data/nb201-digits.npz)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = load_nas_table(args.table)
    space = automl.load_space(SPACE)
    configs = cell_configs(space, table)
    seeds = [0] if args.quick else [0, 1, 2]
    foreign = ForeignCpu()
    started = time.perf_counter()
    print(f"scoring {len(configs)} cells x {len(seeds)} seeds x {len(PROXIES)} proxies", flush=True)
    scores = score_cells(space, configs, seeds)
    ranking = correlations(scores, table)
    scoring_seconds = time.perf_counter() - started
    best = max(ranking["proxies"], key=lambda n: ranking["proxies"][n]["distinct networks"]["tau"])
    print(f"simulating (best proxy: {best})", flush=True)
    search = simulate(space, table, configs, scores, best, seeds=10 if args.quick else 100, trials=200)
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "commit": git_commit(),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "torch": version("torch"), "python": platform.python_version(),
        "table": {"source": str(Path(table.source).name), "cells": len(table),
                  "trained": int(table.metadata.get("trained_cells", 0)), "budget": int(table.budgets[-1]),
                  "built": table.metadata.get("built"),
                  "val_step": 1.0 / len(EvalContext(space, 0, 0).require_task(Task).load().val_y)},  # type: ignore
        "command": "python benchmarks/zero_cost.py" + (" --quick" if args.quick else ""),
        "proxy_seeds": seeds, "ranking": ranking, "best_proxy": best, "search": search,
        "scoring_seconds": scoring_seconds, "foreign_cpu": foreign.stop(),
        "per_cell_scores": {name: np.round(a["score"], 6).tolist() for name, a in scores.items()},
    }
    report["notes"] = notes(ranking, best, search)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "zero_cost.json").write_text(json.dumps(_jsonable(report), indent=1))
    (args.out / "zero_cost.md").write_text(render(report))
    print(render(report))


def _jsonable(value: Any) -> Any:
    """``value`` with infinities (a target never reached) as None, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    main()
