"""Few-shot learning at CPU scale (../shared/PAPERS.md §8, issue 18): LeadNet against ProtoNet, concept
discovery, and encoder search (a benchmark, not a test).

1. LeadNet vs ProtoNet with the same encoder, recipe and training episodes, on ``glyphs-fewshot`` (labels
   follow one of four attributes, drawn per episode: LeadNet's ambiguous setting) and on ``digits-fewshot``
   (one concept: the control, where the gap should be near zero). Each model is trained on the base pool and
   scored on the **novel pool** (classes no training or choice saw) at 1 and 5 shots, ``eval_episodes``
   fixed episodes each (mean and 95% interval per seed, as FEAT/LeadNet report them), per seed.
2. Concept discovery: which concept space LeadNet's task affiliation picks (argmax_m t_m) per labelling
   attribute on the novel pool's 1-shot episodes, summed over seeds, and its mutual information (nats).
   Run at the paper's concept-term weight (1e-3) and at a larger one (0.1).
3. Search: ``automl search --space fewshot-glyphs`` (its random search, trials at 100-400 episodes), its best
   trial by validation accuracy retrained at ``episodes`` per seed, against the default encoder of part 1
   under the same learner and episodes, both scored on the novel pool.

Every run goes through ``automl.create_study`` with the ``given`` strategy (trial info ``test: true``), the
same route ``automl pipeline``'s train step takes.

    .venv/bin/python benchmarks/fewshot.py            # 3 seeds (about 30 min on an idle 2-core machine)
    .venv/bin/python benchmarks/fewshot.py --quick    # a smoke run
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
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import cpu_model, git_commit, version

import search_spaces
from automl.space.catalog import load_space
from automl.space.model import SearchSpace
from automl.study import create_study
from automl.tasks.glyphs_fewshot import CONCEPTS as ATTRIBUTES
from estimators.fewshot import mutual_information

RESULTS = Path(__file__).resolve().parent / "results"
#: part 1's encoder for each space (a point of the space: part 3's search competes with it)
DEFAULTS: dict[str, dict[str, Any]] = {
    "fewshot-glyphs": {"model": {"blocks": [{"channels": 32, "kernel": 3, "batchnorm": True, "pool": True}],
                                 "activation": "relu"}, "embedding": 64, "train": {"lr": 1e-3}},
    "fewshot-digits": {"model": {"layers": [{"width": 64, "activation": "relu"}], "dropout": 0.0},
                       "embedding": 64, "train": {"lr": 1e-3}},
}
LEARNERS: dict[str, dict[str, Any]] = {
    "protonet": {"name": "protonet", "temperature": 1.0},
    "leadnet": {"name": "leadnet", "concepts": 4, "temperature": 1.0},
}
#: LeadNet's published miniImageNet 5-way accuracies (ResNet-12; paper Table 2), the paper-scale reference
ANCHORS = {"leadnet": (67.32, 83.21), "protonet": (60.37, 78.02)}


@dataclass(frozen=True)
class Settings:
    seeds: int = 3
    episodes: int = 400
    eval_episodes: int = 1000
    search_trials: int = 12


QUICK = Settings(seeds=1, episodes=100, eval_episodes=20, search_trials=2)


def space_for(name: str | Path, settings: Settings) -> SearchSpace:
    """The registered space with the benchmark's number of evaluation episodes."""
    space = load_space(name)
    return dataclasses.replace(space, estimator_options={**space.estimator_options,
                                                         "eval_episodes": settings.eval_episodes})


def run_given(space: str | Path, configs: Sequence[Mapping[str, Any]], settings: Settings, root: Path,
              name: str) -> list[list[dict[str, Any]]]:
    """Each config trained ``settings.seeds`` times (trial seeds differ) at ``episodes`` and scored on the
    novel pool: per config, the metrics of each replica."""
    study = create_study(space_for(space, settings), strategy="given", storage=f"sqlite:///{root}/{name}.db",
                         study_name=name, seed=0,
                         strategy_options={"configs": [dict(c) for c in configs], "replicas": settings.seeds,
                                           "at": settings.episodes, "info": {"test": True}})
    study.optimize()
    out: list[list[dict[str, Any]]] = [[] for _ in configs]
    for trial in study.trials:
        if trial.error:
            raise RuntimeError(f"{name} trial {trial.number} failed: {trial.error}")
        out[int(trial.info["given"])].append(dict(trial.metrics))
    return out


def config(space: str, learner: str, **learner_options: Any) -> dict[str, Any]:
    return {**DEFAULTS[space], "learner": {**LEARNERS[learner], **learner_options}}


def summary(runs: Sequence[Mapping[str, Any]], shots: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Mean and sd over seeds of novel-pool accuracy per K, and each seed's own interval."""
    out: dict[str, Any] = {}
    for k in shots:
        values = [float(r[f"test_accuracy_{k}shot"]) for r in runs]
        out[f"{k}shot"] = {"mean": statistics.mean(values),
                           "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                           "per_seed": values,
                           "ci95_per_seed": [float(r[f"test_accuracy_{k}shot_ci95"]) for r in runs]}
    out["train_seconds"] = statistics.mean(float(r["train_seconds"]) for r in runs)
    return out


def part_learners(settings: Settings, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for space in ("fewshot-glyphs", "fewshot-digits"):
        runs = run_given(space, [config(space, "protonet"), config(space, "leadnet")], settings, root,
                         space.replace("fewshot-", "learners-"))
        out[space] = {"protonet": summary(runs[0]), "leadnet": summary(runs[1]), "raw": runs}
        for learner in ("protonet", "leadnet"):
            s = out[space][learner]
            print(f"{space} {learner}: 1-shot {s['1shot']['mean']:.3f} ± {s['1shot']['sd']:.3f}, "
                  f"5-shot {s['5shot']['mean']:.3f} ± {s['5shot']['sd']:.3f}", flush=True)
    return out


def concept_table(runs: Sequence[Mapping[str, Any]], concepts: int) -> np.ndarray:
    """Counts of (labelling attribute, picked concept space) on the novel pool, summed over seeds."""
    table = np.zeros((len(ATTRIBUTES), concepts))
    for metrics in runs:
        for a, attribute in enumerate(ATTRIBUTES):
            for m in range(concepts):
                table[a, m] += float(metrics.get(f"test_concepts/{attribute}/m{m}", 0.0))
    return table


def part_concepts(settings: Settings, root: Path, learners: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    paper = learners["fewshot-glyphs"]["raw"][1]
    variants = {"1e-3": paper}
    # the registered space does not search the concept-term weight: a copy that does holds the variant
    document = yaml.safe_load((Path(search_spaces.SPACES_DIR) / "fewshot-glyphs.yaml").read_text())
    document["space"]["learner"]["concept_weight"] = {"type": "float", "low": 1e-4, "high": 1.0, "log": True}
    variant = root / "fewshot-glyphs-weights.yaml"
    variant.write_text(yaml.safe_dump(document, sort_keys=False))
    heavier = run_given(variant, [config("fewshot-glyphs", "leadnet", concept_weight=0.1)], settings,
                        root, "concepts-0.1")[0]
    variants["0.1"] = heavier
    for weight, runs in variants.items():
        table = concept_table(runs, LEARNERS["leadnet"]["concepts"])
        out[weight] = {"table": table.tolist(), "mutual_information": mutual_information(table),
                       "per_seed_mi": [float(r.get("test_concept_mi", float("nan"))) for r in runs],
                       "accuracy": summary(runs)}
        print(f"concept weight {weight}: MI {out[weight]['mutual_information']:.4f} nats", flush=True)
    return out


def part_search(settings: Settings, root: Path) -> dict[str, Any]:
    study = create_study(space_for("fewshot-glyphs", settings), storage=f"sqlite:///{root}/search.db",
                         study_name="search", seed=0)
    started = time.perf_counter()
    study.optimize(n_trials=settings.search_trials)
    seconds = time.perf_counter() - started
    best = study.best
    # the default encoder under the searched learner: the comparison is of encoders and recipes
    default = {**DEFAULTS["fewshot-glyphs"], "learner": dict(best.config["learner"])}
    runs = run_given("fewshot-glyphs", [best.config, default], settings, root, "search-final")
    result = {"search_seconds": seconds, "trials": settings.search_trials, "best_trial": best.number,
              "best_val_accuracy": best.metrics["accuracy"], "config": best.config,
              "searched": summary(runs[0]), "default": summary(runs[1])}
    print(f"search: {seconds:.0f} s, trial {best.number} val {best.metrics['accuracy']:.3f}; novel 1-shot "
          f"searched {result['searched']['1shot']['mean']:.3f} vs default {result['default']['1shot']['mean']:.3f}",
          flush=True)
    return result


def _ms(s: Mapping[str, Any]) -> str:
    return f"{s['mean']:.3f} ± {s['sd']:.3f}"


def markdown(result: Mapping[str, Any]) -> str:
    s = result["settings"]
    lines = [
        "# Few-shot learning at CPU scale: LeadNet vs ProtoNet, concept discovery, encoder search",
        "",
        f"Measured {result['date']} on {result['machine']} (commit {result['commit']}), one run of "
        f"`benchmarks/fewshot.py`; {s['seeds']} seeds (trial seeds of one `given` study per comparison), "
        f"{s['episodes']} training episodes, every accuracy on the **novel pool** over {s['eval_episodes']} "
        "fixed episodes per K (5-way on glyphs, 3-way on digits, 5 queries per class). mean ± sd over seeds; "
        "the per-seed 95% intervals are in fewshot.json.",
        "",
        "## 1. LeadNet vs ProtoNet, same encoder and episodes",
        "",
        "| task | learner | 1-shot | 5-shot | mean 95% interval (1-shot) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for space, rows in result["learners"].items():
        for learner in ("protonet", "leadnet"):
            r = rows[learner]
            ci = statistics.mean(r["1shot"]["ci95_per_seed"])
            lines.append(f"| {space} | {learner} | {_ms(r['1shot'])} | {_ms(r['5shot'])} | ± {ci:.3f} | "
                         f"{r['train_seconds']:.0f} |")
    lines.append("")
    for space, rows in result["learners"].items():
        for k in ("1shot", "5shot"):
            gap = rows["leadnet"][k]["mean"] - rows["protonet"][k]["mean"]
            ci = statistics.mean(rows["leadnet"][k]["ci95_per_seed"] + rows["protonet"][k]["ci95_per_seed"])
            verdict = "ahead by more than the interval" if gap > ci else "not ahead by more than the interval"
            lines.append(f"- {space} {k.replace('shot', '-shot')}: LeadNet − ProtoNet = {gap:+.3f} "
                         f"(mean interval ± {ci:.3f}): {verdict}.")
    lines += ["", "Paper scale (miniImageNet 5-way, ResNet-12, paper Table 2; not claimed here): LeadNet "
              f"{ANCHORS['leadnet'][0]} / {ANCHORS['leadnet'][1]}, ProtoNet {ANCHORS['protonet'][0]} / "
              f"{ANCHORS['protonet'][1]} (1 / 5-shot, %).", "",
              "## 2. Concept discovery (novel pool, 1-shot episodes, summed over seeds)", ""]
    for weight, c in result["concepts"].items():
        table = np.asarray(c["table"])
        lines += [f"Concept-term weight {weight}: mutual information {max(c['mutual_information'], 0.0):.4f} nats "
                  f"(1-shot accuracy {_ms(c['accuracy']['1shot'])}).", "",
                  "| labels follow | " + " | ".join(f"space {m}" for m in range(table.shape[1])) + " |",
                  "|---|" + "---|" * table.shape[1]]
        for a, attribute in enumerate(ATTRIBUTES):
            lines.append(f"| {attribute} | " + " | ".join(f"{int(v)}" for v in table[a]) + " |")
        lines.append("")
    search = result["search"]
    lines += ["## 3. Encoder search (`fewshot-glyphs`, random search)", "",
              f"{search['trials']} trials in {search['search_seconds']:.0f} s; best trial {search['best_trial']} "
              f"(validation 1-shot {search['best_val_accuracy']:.3f}), learner "
              f"`{json.dumps(search['config']['learner'])}`.", "",
              "| encoder | novel 1-shot | novel 5-shot |", "|---|---|---|",
              f"| searched | {_ms(search['searched']['1shot'])} | {_ms(search['searched']['5shot'])} |",
              f"| default (part 1's) | {_ms(search['default']['1shot'])} | {_ms(search['default']['5shot'])} |",
              "", f"Whole run: {result['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (one seed, tiny budgets)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    torch.set_num_threads(2)
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        learners = part_learners(settings, root)
        concepts = part_concepts(settings, root, learners)
        search = part_search(settings, root)
    result = {"date": datetime.date.today().isoformat(), "machine": cpu_model(), "commit": git_commit(),
              "versions": {"torch": version("torch"), "pytorch-metric-learning": version("pytorch-metric-learning")},
              "settings": asdict(settings), "learners": learners, "concepts": concepts, "search": search,
              "seconds": time.perf_counter() - started}
    name = "fewshot_quick" if args.quick else "fewshot"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
