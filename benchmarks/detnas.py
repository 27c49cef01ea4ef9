"""Joint-DetNAS and G-DetKD at CPU scale (PAPERS.md §3 and §4): weight inheritance, the joint search
against the NAS -> prune -> KD pipeline, and G-DetKD's feature imitation (a benchmark, not a test).

Everything runs on the ``shapes-detection`` task (64x64 images, COCO mAP by pycocotools on its
validation split), with the ``detnas`` detectors (mmdet 3.3 heads over a searched backbone).

1. **Inheritance.** Per seed a parent is sampled from the ``detnas`` space (re-drawn until every kind
   of morph action is valid for it) and trained ``parent_steps`` on the detection loss alone (no KD,
   to isolate inheritance). For each action kind (add_block, remove_block, move_downsample, widen,
   narrow, prune; one instance each, chosen by the seed) the child config is made with
   ``apply_action``; (a) the *inherited* child gets the parent's weights (``inherit_weights``) and (b)
   the *scratch* child keeps the same fresh initialisation; both then train ``inherit_child_steps``
   with the same batches. Target: the median (over seeds) of the per-seed median difference
   inherited - scratch is > 0, and the inherited child wins most pairs.
2. **Joint search vs the pipeline at equal compute.** Per seed, two real studies (in-memory ledger,
   checkpoint store in a temporary folder). *Joint*: ``morphism-evolution`` on ``detnas`` with the
   ``detnas`` estimator (G-DetKD from a co-evolved sub-teacher of the elastic pool), ``trials``
   trials of which ``population`` random ones train ``init_steps`` and the morphed children
   ``child_steps``. *Pipeline*: (a) NAS: ``evolution`` over the student alone (a variant space in which
   every prune ratio is the constant 1.0 and there is no teacher; estimator options kd=none,
   ckd=false), every candidate trained ``init_steps`` from scratch (population half the NAS trials,
   tournament 2); (b) prune: the ``pipeline_members``
   best members of the NAS Pareto front (by mAP; topped up by the next best trials) are pruned to each
   ratio of ``pipeline_prune`` in every stage, inheriting the weights, and fine-tuned ``child_steps``;
   (c) fixed-teacher KD: each pruned student is fine-tuned ``child_steps`` more with G-DetKD (the
   estimator's SGFI + CKD) from one fixed teacher, the pool's largest sub-teacher, trained by phase 1
   of progressive shrinking only (so only that phase is counted). The NAS stage runs as many trials as
   leave room for (b) and (c) within the joint arm's student training steps (counted from the trials'
   ``steps`` metric). Score: hypervolume of each arm's Pareto front over all the students it
   evaluated, of (mAP max, latency min) with reference point (0, 1.1 x the largest latency of the
   seed over both arms), normalised to the box [0, best mAP of the seed] x [0, reference latency];
   the same on (mAP, FLOPs). Latency is re-measured at the end, one model at a time in one process,
   so that both arms are timed under the same load. Target: median joint HV > median pipeline HV.
3. **G-DetKD.** Per seed a wide Faster R-CNN teacher trains ``kd_teacher_steps``; then the same narrow
   RetinaNet student (the heterogeneous pair), from the same initialisation and with the same batches,
   trains ``kd_student_steps`` with: no KD; same-level feature MSE (``fixed``); SGFI; SGFI + CKD; and
   against a level-shifted teacher (its pyramid re-indexed one level coarser with
   ``level_shift(features, 1)``, strides doubled: P3-P5 against the student's P2-P4) with fixed
   imitation and with SGFI. RoIs are the ground-truth boxes. Targets: SGFI > fixed > none (medians);
   fixed-shifted < fixed; SGFI-shifted ~ SGFI, meaning that the median over seeds of the per-seed
   difference SGFI-shifted - SGFI lies within +- the seed spread of SGFI (max - min over seeds, at
   least 0.005 mAP). The SGFI level weights are read on the validation RoIs after training: their
   concentration (mean largest weight) and how often the top level is the stride-matched one (the
   teacher's assigned level, one level finer for the shifted teacher). With ``homogeneous`` a Faster
   R-CNN student is distilled too (none / fixed / SGFI / SGFI + CKD + class KL + localisation KD).

Every process uses ``torch.set_num_threads(1)``; ``--jobs`` runs independent jobs side by side (one
process each: a part-1 parent, each of its children, each arm of part 2 per seed, a part-3 teacher,
each of its students). The defaults were sized from one-thread step times measured on the 2-core
AMD EPYC machine: about 0.1 s per student step (0.04-0.17 s over the space), 0.4 s per teacher-pool
step, 0.65 s per step of part 3's teacher: about 3,700 process-seconds, 30-35 minutes with
``--jobs 2`` when nothing else runs. Each part is saved to ``detnas_part<N>.json`` in the results folder, and the
report is written from every part found there, so parts can be re-run alone.

    .venv/bin/python benchmarks/detnas.py --jobs 2                                    # full run, ~30-35 min
    .venv/bin/python benchmarks/detnas.py --quick --jobs 1 --results /tmp/detnas-quick  # smoke run, < 1 min
    .venv/bin/python benchmarks/detnas.py --parts 3 --jobs 2                          # one part
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
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
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository (estimators, search_spaces)
import numpy as np
import optuna
import torch
from machine import ForeignCpu, cpu_model, git_commit, version
from torch import nn

import automl
from automl.artifacts import ArtifactStore
from automl.estimator import (
    EvalContext,
    estimators,
)
from automl.space.model import Candidate, SearchSpace
from automl.tasks.base import tasks

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = (1, 2, 3)
NAME = "detnas"
#: the wide two-stage teacher and the narrow one-stage student of part 3 (``model`` parts of detnas configs)
KD_TEACHER = {"detector": "faster-rcnn", "stem": 32, "fpn_channels": 64,
              "stages": [{"depth": 2, "width": 64, "prune": 1.0}, {"depth": 2, "width": 128, "prune": 1.0},
                         {"depth": 2, "width": 256, "prune": 1.0}]}
KD_STUDENT = {"detector": "retinanet", "stem": 16, "fpn_channels": 32,
              "stages": [{"depth": 1, "width": 16, "prune": 1.0}, {"depth": 1, "width": 32, "prune": 1.0},
                         {"depth": 1, "width": 64, "prune": 1.0}]}
#: part 3's arms: name -> (G-DetKD feature mode, CKD, class KL + localisation KD, level-shifted teacher)
KD_ARMS: dict[str, tuple[str, bool, bool, bool]] = {
    "none": ("none", False, False, False),
    "fixed": ("fixed", False, False, False),
    "sgfi": ("sgfi", False, False, False),
    "sgfi+ckd": ("sgfi", True, False, False),
    "fixed-shifted": ("fixed", False, False, True),
    "sgfi-shifted": ("sgfi", False, False, True),
}
#: with ``homogeneous``: the same on a Faster R-CNN student (its pair with the teacher is homogeneous)
KD_ARMS_HOMOGENEOUS: dict[str, tuple[str, bool, bool, bool]] = {
    "frcnn:none": ("none", False, False, False),
    "frcnn:fixed": ("fixed", False, False, False),
    "frcnn:sgfi": ("sgfi", False, False, False),
    "frcnn:full": ("sgfi", True, True, False),
}
MORPH_KINDS = ("add_block", "remove_block", "move_downsample", "widen", "narrow", "prune")
MIN_TOLERANCE = 0.005  # mAP: the floor of part 3's "about equal" tolerance


@dataclass(frozen=True)
class Settings:
    """Every budget of the run (steps are optimiser steps of ``batch_size`` images)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    task: Mapping[str, Any] = field(default_factory=dict)  # shapes-detection options ({}: its defaults)
    batch_size: int = 8
    lr: float = 3e-3
    # 1. inheritance
    parent_steps: int = 200
    inherit_child_steps: int = 80
    parent_max_mflops: float = 150.0  # parents are re-drawn above this (keeps part 1's run time bounded)
    # 2. joint vs pipeline
    trials: int = 12
    population: int = 4
    init_steps: int = 200
    child_steps: int = 80
    teacher_steps: tuple[int, int, int] = (150, 60, 60)
    pipeline_members: int = 2
    pipeline_prune: tuple[float, ...] = (0.75, 0.5)
    latency_repeats: int = 30
    # 3. G-DetKD
    kd_teacher: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(KD_TEACHER))
    kd_student: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(KD_STUDENT))
    kd_teacher_steps: int = 300
    kd_student_steps: int = 250
    homogeneous: bool = False
    jobs: int = 1

    @classmethod
    def quick(cls, jobs: int) -> Settings:
        return cls(seeds=(0,), task={"train_images": 48, "val_images": 16}, batch_size=4,
                   parent_steps=8, inherit_child_steps=4, trials=4, population=2, init_steps=6, child_steps=3,
                   teacher_steps=(4, 2, 2), pipeline_members=1, pipeline_prune=(0.5,), latency_repeats=5,
                   kd_teacher_steps=8, kd_student_steps=4, jobs=jobs)

    def joint_steps(self) -> int:
        """The joint arm's planned student training steps (the pipeline's budget)."""
        return self.population * self.init_steps + (self.trials - self.population) * self.child_steps


def _init_worker() -> None:
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel(logging.WARNING)  # mmdet's per-parameter init messages


# -- shared helpers ---------------------------------------------------------------------------------
def _space_doc(settings: Settings, *, pipeline_nas: bool = False,
               estimator: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The registered ``detnas`` space's document with this run's task and estimator options; with
    ``pipeline_nas`` the student-only variant (prune fixed at 1.0, no teacher) the pipeline's NAS searches."""
    doc = copy.deepcopy(dict(automl.load_space("detnas").document))
    task = doc["task"] if isinstance(doc["task"], str) else doc["task"]["name"]
    doc["task"] = {"name": task, "options": dict(settings.task)}
    doc["estimator"] = {"name": "detnas", "options": dict(estimator or {})}
    if pipeline_nas:
        doc["name"] = "detnas-pipeline-nas"
        doc["space"]["model"]["stages"]["item"]["prune"] = 1.0
        doc["space"].pop("teacher")
    return doc


def _space(settings: Settings, **kwargs: Any) -> SearchSpace:
    return automl.space_from_dict(_space_doc(settings, **kwargs), source="benchmarks/detnas.py")


def _estimator_options(settings: Settings, **override: Any) -> dict[str, Any]:
    return {"init_steps": settings.init_steps, "child_steps": settings.child_steps, "batch_size": settings.batch_size,
            "lr": settings.lr, "teacher_steps": list(settings.teacher_steps), **override}


def _task(settings: Settings):
    space = _space(settings)
    task = tasks.get(space.task)(**space.task_options)
    return task, task.load()


def _recipe(settings: Settings, steps: int) -> Any:
    from estimators.detection_training import detection_recipe

    return detection_recipe(int(steps), settings.batch_size, settings.lr)


def _build(model_cfg: Mapping[str, Any], info: Any, init_seed: int) -> nn.Module:
    """A detnas detector whose fresh initialisation follows ``init_seed`` alone."""
    from automl.training.seeding import seeded
    from search_spaces.detnas.detector import build_detnas

    with seeded(init_seed):
        return build_detnas(model_cfg, info)


def _flops(model: nn.Module, info: Any) -> float:
    from estimators.cost import count_flops

    return float(count_flops(model, torch.zeros(1, *info.input_shape)))


def _describe(model_cfg: Mapping[str, Any]) -> str:
    stages = ", ".join(f"{s['depth']}x{s['width']}" + (f"@{s['prune']:g}" if s["prune"] != 1.0 else "")
                       for s in model_cfg["stages"])
    return f"stem {model_cfg['stem']}: {stages}"


def _seed_of(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16)


# -- 1. inheritance ---------------------------------------------------------------------------------
def inherit_parent(settings: Settings, seed: int, work: str) -> dict[str, Any]:
    """Sample and train a part-1 parent; returns its score and the child configs (one per action kind)."""
    from estimators.detection_training import evaluate_detector, train_detector
    from search_spaces.detnas.morph import apply_action, valid_actions

    space = _space(settings)
    task, data = _task(settings)
    rng = np.random.default_rng([seed, 1])
    for _draw in range(500):
        config = space.sample(rng)
        kinds = {a.name for a in valid_actions(space, config)}
        if set(MORPH_KINDS) <= kinds:
            mflops = _flops(_build(config["model"], task.info, 0), task.info) / 1e6
            if mflops <= settings.parent_max_mflops:
                break
    else:
        raise RuntimeError(f"no parent with every action kind valid under {settings.parent_max_mflops} MFLOPs "
                           f"in 500 draws (seed {seed})")
    parent = _build(config["model"], task.info, _seed_of("parent", seed))
    stats = train_detector(parent, data.train, _recipe(settings, settings.parent_steps), seed=_seed_of("ptrain", seed))
    score = evaluate_detector(parent, data.val)
    path = Path(work) / f"inherit-parent-{seed}.pt"
    torch.save({"config": config, "state_dict": parent.state_dict()}, path)
    children = []
    actions = valid_actions(space, config)
    for kind in MORPH_KINDS:
        of_kind = [a for a in actions if a.name == kind]
        action = of_kind[int(rng.integers(0, len(of_kind)))]
        child, description = apply_action(space, config, action)
        children.append({"kind": kind, "action": list(action), "description": description, "config": child})
    return {"seed": seed, "config": config, "draws": _draw + 1, "mflops": mflops, "mAP": score["mAP"],
            "AP50": score["AP50"], "train_seconds": stats.seconds, "skipped": stats.skipped, "path": str(path),
            "children": children}


def inherit_child(settings: Settings, seed: int, parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """One action's pair: the inherited child and the scratch child (same init, same batches)."""
    from estimators.detection_training import evaluate_detector, train_detector
    from search_spaces.detnas.detector import BACKBONE_PREFIX
    from search_spaces.detnas.inherit import inherit_weights

    task, data = _task(settings)
    saved = torch.load(parent["path"], weights_only=False)
    init_seed, train_seed = _seed_of("child-init", seed, child["kind"]), _seed_of("child-train", seed, child["kind"])
    recipe = _recipe(settings, settings.inherit_child_steps)
    out: dict[str, Any] = {"seed": seed, "kind": child["kind"], "description": child["description"],
                           "parent_mAP": parent["mAP"]}
    inherited = _build(child["config"]["model"], task.info, init_seed)
    report = inherit_weights(inherited, saved["state_dict"], saved["config"]["model"], child["config"]["model"],
                             prefix=BACKBONE_PREFIX)
    out["inherit_report"] = {"copied": report.copied, "sliced": report.sliced, "fresh": report.fresh,
                             "added_blocks": list(report.added_blocks)}
    out["inherited_at_0"] = evaluate_detector(inherited, data.val)["mAP"]
    stats = train_detector(inherited, data.train, recipe, seed=train_seed)
    out["inherited"] = evaluate_detector(inherited, data.val)["mAP"]
    out["inherited_loss"] = stats.tail(0.1).get("total")
    scratch = _build(child["config"]["model"], task.info, init_seed)
    stats = train_detector(scratch, data.train, recipe, seed=train_seed)
    out["scratch"] = evaluate_detector(scratch, data.val)["mAP"]
    out["scratch_loss"] = stats.tail(0.1).get("total")
    out["difference"] = out["inherited"] - out["scratch"]
    return out


def summarise_inheritance(parents: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    seeds = sorted({p["seed"] for p in parents})
    per_seed = {str(s): statistics.median(p["difference"] for p in pairs if p["seed"] == s) for s in seeds}
    per_kind = {}
    for kind in MORPH_KINDS:
        mine = [p for p in pairs if p["kind"] == kind]
        if mine:
            per_kind[kind] = {"median_inherited": statistics.median(p["inherited"] for p in mine),
                              "median_scratch": statistics.median(p["scratch"] for p in mine),
                              "median_difference": statistics.median(p["difference"] for p in mine),
                              "wins": sum(p["difference"] > 0 for p in mine), "pairs": len(mine)}
    wins = sum(p["difference"] > 0 for p in pairs)
    median = statistics.median(per_seed.values())
    return {"per_seed_median_difference": per_seed, "median_difference": median, "wins": wins, "pairs": len(pairs),
            "win_rate": wins / len(pairs), "per_kind": per_kind,
            "met": bool(median > 0 and wins > len(pairs) / 2)}


# -- 2. joint vs pipeline ---------------------------------------------------------------------------
def _trial_record(trial: Any, arm: str, stage: str) -> dict[str, Any]:
    m = dict(trial.metrics or {})
    return {"arm": arm, "stage": stage, "number": trial.number, "state": trial.state.name,
            "config": dict(trial.config), "key": trial.key, "origin": trial.info.get("origin"),
            "action": trial.info.get("action"), "parent": trial.info.get("parent"), "error": trial.error,
            **{k: m.get(k) for k in ("mAP", "AP50", "latency_ms", "flops", "params", "steps", "train_seconds",
                                     "inherited", "teacher_pool_seconds", "teacher_pool_cached")}}


def joint_arm(settings: Settings, seed: int, work: str) -> dict[str, Any]:
    """The joint search: morphism-evolution with the detnas estimator (KD from a co-evolved sub-teacher)."""
    space = _space(settings, estimator=_estimator_options(settings))
    store = Path(work) / f"joint-{seed}"
    study = automl.create_study(space, strategy="morphism-evolution", seed=seed, checkpoints=str(store),
                                strategy_options={"population": settings.population})
    start = time.perf_counter()
    study.optimize(n_trials=settings.trials, threads=1)
    records = [_trial_record(t, "joint", "search") for t in sorted(study.trials, key=lambda t: t.number)]
    pool = [r for r in records if r["teacher_pool_cached"] == 0.0]
    return {"arm": "joint", "seed": seed, "seconds": time.perf_counter() - start, "records": records,
            "student_steps": sum(r["steps"] or 0 for r in records if r["state"] == "COMPLETE"),
            "teacher_pool_steps": sum(settings.teacher_steps),
            "teacher_pool_seconds": pool[0]["teacher_pool_seconds"] if pool else None}


def _key(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


def pipeline_arm(settings: Settings, seed: int, work: str) -> dict[str, Any]:
    """NAS (student only, no KD) -> prune (inherit, fine-tune) -> fixed-teacher KD (fine-tune), within the
    joint arm's planned student steps."""
    nas_space = _space(settings, pipeline_nas=True, estimator=_estimator_options(settings, kd="none", ckd=False))
    phase1 = [settings.teacher_steps[0], 0, 0]
    kd_space = _space(settings, estimator=_estimator_options(settings, teacher_steps=phase1))
    store = Path(work) / f"pipeline-{seed}"
    budget = settings.joint_steps()
    post = settings.pipeline_members * len(settings.pipeline_prune) * 2 * settings.child_steps
    n_nas = max(2, (budget - post) // settings.init_steps)
    study = automl.create_study(nas_space, strategy="evolution", seed=seed, checkpoints=str(store),
                                strategy_options={"population": max(2, n_nas // 2), "tournament": 2})
    start = time.perf_counter()
    study.optimize(n_trials=n_nas, threads=1)
    records = [_trial_record(t, "pipeline", "nas") for t in sorted(study.trials, key=lambda t: t.number)]
    done = [r for r in records if r["state"] == "COMPLETE"]
    front = [done[i] for i in _front([(-r["mAP"], r["latency_ms"]) for r in done])]
    members = sorted(front, key=lambda r: -r["mAP"])[:settings.pipeline_members]
    members += sorted((r for r in done if r not in members), key=lambda r: -r["mAP"])[
        :settings.pipeline_members - len(members)]
    teacher_space = _space(settings)
    largest = {name: max(_choices(teacher_space, name)) for name in ("depth", "width")}
    ctx_store = ArtifactStore(str(store))
    prune_est = estimators.get("detnas")(**_estimator_options(settings, kd="none", ckd=False))
    kd_est = estimators.get("detnas")(**_estimator_options(settings, teacher_steps=phase1))
    number = n_nas
    for member in members:
        for ratio in settings.pipeline_prune:
            model = copy.deepcopy(member["config"]["model"])
            for stage in model["stages"]:
                stage["prune"] = ratio
            pruned = {"model": model}
            records.append(_evaluate(prune_est, nas_space, pruned, _key(pruned), member["key"], seed, number,
                                     ctx_store, "prune",
                                     f"prune all stages to {ratio:g} (from trial {member['number']})"))
            number += 1
            distilled = {"model": copy.deepcopy(model), "teacher": dict(largest)}
            records.append(_evaluate(kd_est, kd_space, distilled, _key(distilled), _key(pruned), seed, number,
                                     ctx_store, "kd", f"KD from the largest sub-teacher {largest}"))
            number += 1
    pool = [r for r in records if r["teacher_pool_cached"] == 0.0]
    return {"arm": "pipeline", "seed": seed, "seconds": time.perf_counter() - start, "records": records,
            "nas_trials": n_nas, "budget": budget, "members": [m["number"] for m in members],
            "student_steps": sum(r["steps"] or 0 for r in records if r["state"] == "COMPLETE"),
            "teacher_pool_steps": phase1[0],
            "teacher_pool_seconds": pool[0]["teacher_pool_seconds"] if pool else None}


def _choices(space: SearchSpace, name: str) -> list[Any]:
    node = space.root.child_map()["teacher"].child_map()[name]
    return list(getattr(node, "choices", None) or [node.value])


def _evaluate(estimator: Any, space: SearchSpace, config: Mapping[str, Any], key: str, parent_key: str, seed: int,
              number: int, store: ArtifactStore, stage: str, action: str) -> dict[str, Any]:
    ctx = EvalContext(space=space, seed=seed, trial_number=number, checkpoints=store,
                      info={"parent_key": parent_key, "action": action})
    result = estimator.evaluate(Candidate(dict(config), key), None, ctx)
    m = result.all_metrics()
    return {"arm": "pipeline", "stage": stage, "number": number, "state": "COMPLETE", "config": dict(config),
            "key": key, "origin": stage, "action": action, "parent": parent_key, "error": None,
            **{k: m.get(k) for k in ("mAP", "AP50", "latency_ms", "flops", "params", "steps", "train_seconds",
                                     "inherited", "teacher_pool_seconds", "teacher_pool_cached")}}


def _front(losses: Sequence[Sequence[float]]) -> list[int]:
    from automl.strategies.pareto import pareto_front

    return pareto_front(losses) if losses else []


def hypervolume(points: Sequence[tuple[float, float]], best: float, reference: float) -> float:
    """Area dominated by (mAP max, cost min) ``points`` inside [0, best] x [0, reference], over the box's area."""
    if best <= 0 or reference <= 0:
        return 0.0
    area, reached = 0.0, 0.0
    for cost, score in sorted((c, s) for s, c in points if c < reference and s > 0):
        if score > reached:
            area += (score - reached) * (reference - cost)
            reached = score
    return area / (best * reference)


def remeasure_latency(settings: Settings, runs: Sequence[Mapping[str, Any]], log: Callable[[str], None]) -> None:
    """Latency of every distinct student of part 2, measured here one model at a time (in place: ``latency``)."""
    from estimators.cost import measure_latency_ms

    task, _ = _task(settings)
    cache: dict[str, float] = {}
    for run in runs:
        for r in run["records"]:
            if r["state"] != "COMPLETE":
                continue
            key = json.dumps(r["config"]["model"], sort_keys=True)
            if key not in cache:
                model = _build(r["config"]["model"], task.info, 0)
                cache[key] = measure_latency_ms(model, task.example_input(), repeats=settings.latency_repeats)
            r["latency"] = cache[key]
    log(f"part 2: latency of {len(cache)} distinct students re-measured")


def summarise_search(settings: Settings, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    per_seed = []
    for seed in settings.seeds:
        arms = {r["arm"]: r for r in runs if r["seed"] == seed}
        done = {arm: [r for r in run["records"] if r["state"] == "COMPLETE" and r["mAP"] is not None]
                for arm, run in arms.items()}
        everything = [r for rs in done.values() for r in rs]
        if not everything:
            continue
        best = max(r["mAP"] for r in everything)
        row: dict[str, Any] = {"seed": seed}
        for cost, field_name in (("latency", "latency"), ("flops", "flops")):
            reference = 1.1 * max(r[field_name] for r in everything)
            for arm, rs in done.items():
                row[f"hv_{cost}_{arm}"] = hypervolume([(r["mAP"], r[field_name]) for r in rs], best, reference)
        for arm, run in arms.items():
            rs = done[arm]
            row[f"best_{arm}"] = max((r["mAP"] for r in rs), default=float("nan"))
            row[f"front_{arm}"] = [rs[i]["number"] for i in _front([(-r["mAP"], r["latency"]) for r in rs])]
            row[f"failed_{arm}"] = sum(r["state"] != "COMPLETE" for r in run["records"])
            row[f"evaluated_{arm}"] = len(run["records"])
            row[f"steps_{arm}"] = run["student_steps"]
            row[f"pool_steps_{arm}"] = run["teacher_pool_steps"]
            row[f"pool_seconds_{arm}"] = run["teacher_pool_seconds"]
            row[f"seconds_{arm}"] = run["seconds"]
        per_seed.append(row)
    out: dict[str, Any] = {"per_seed": per_seed}
    for cost in ("latency", "flops"):
        for arm in ("joint", "pipeline"):
            values = [r[f"hv_{cost}_{arm}"] for r in per_seed if f"hv_{cost}_{arm}" in r]
            out[f"median_hv_{cost}_{arm}"] = statistics.median(values) if values else float("nan")
        out[f"met_{cost}"] = bool(out[f"median_hv_{cost}_joint"] > out[f"median_hv_{cost}_pipeline"])
    out["met"] = out["met_latency"]
    return out


# -- 3. G-DetKD -------------------------------------------------------------------------------------
class ShiftedTeacher(nn.Module):
    """A teacher whose pyramid is re-indexed ``shift`` levels coarser (``level_shift``; strides x 2**shift),
    as if it were a P3-P5 detector against a P2-P4 student; it offers only features (no RoI head)."""

    two_stage = False

    def __init__(self, teacher: nn.Module, shift: int = 1) -> None:
        super().__init__()
        self.teacher, self.shift = teacher, int(shift)
        self.strides = tuple(int(s) * 2 ** self.shift for s in teacher.strides)
        self.fpn_channels = int(teacher.fpn_channels)

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from estimators.regimes.gdetkd import level_shift

        return tuple(level_shift(self.teacher.features(images), self.shift))


def kd_teacher(settings: Settings, seed: int, work: str) -> dict[str, Any]:
    """Train part 3's teacher of ``seed``; its weights go to ``work``."""
    from estimators.detection_training import evaluate_detector, train_detector

    task, data = _task(settings)
    teacher = _build(settings.kd_teacher, task.info, _seed_of("kd-teacher", seed))
    stats = train_detector(teacher, data.train, _recipe(settings, settings.kd_teacher_steps),
                           seed=_seed_of("kd-teacher-train", seed))
    score = evaluate_detector(teacher, data.val)
    path = Path(work) / f"kd-teacher-{seed}.pt"
    torch.save(teacher.state_dict(), path)
    return {"seed": seed, "mAP": score["mAP"], "AP50": score["AP50"], "seconds": stats.seconds,
            "skipped": stats.skipped, "mflops": _flops(teacher, task.info) / 1e6, "path": str(path)}


def kd_student(settings: Settings, seed: int, arm: str, teacher_path: str) -> dict[str, Any]:
    """One part-3 arm: the student trained from the shared init with the arm's distillation."""
    from estimators.detection_training import evaluate_detector, train_detector
    from estimators.regimes.distillation import GDetKDRegime
    from estimators.regimes.gdetkd_config import GDetKDConfig

    feature, ckd, head, shifted = {**KD_ARMS, **KD_ARMS_HOMOGENEOUS}[arm]
    student_cfg = dict(settings.kd_student)
    if arm.startswith("frcnn:"):
        student_cfg["detector"] = "faster-rcnn"
    task, data = _task(settings)
    teacher = _build(settings.kd_teacher, task.info, 0)
    teacher.load_state_dict(torch.load(teacher_path, weights_only=True))
    teacher.eval()
    guide: nn.Module = ShiftedTeacher(teacher, 1) if shifted else teacher
    student = _build(student_cfg, task.info, _seed_of("kd-student", seed, student_cfg["detector"]))
    regimes = []
    if feature != "none" or ckd or head:
        regimes.append(GDetKDRegime.of(guide, GDetKDConfig(feature=feature, ckd=ckd, cls_kl=head, loc=head)))
    stats = train_detector(student, data.train, _recipe(settings, settings.kd_student_steps),
                           seed=_seed_of("kd-student-train", seed), regimes=regimes)
    score = evaluate_detector(student, data.val)
    out = {"seed": seed, "arm": arm, "mAP": score["mAP"], "AP50": score["AP50"], "seconds": stats.seconds,
           "skipped": stats.skipped, "losses": stats.tail(0.1)}
    if feature == "sgfi" and regimes and regimes[0].distiller is not None:
        out["levels"] = level_weights(regimes[0].distiller, student, guide, data.val, shift=1 if shifted else 0)
    return out


@torch.no_grad()
def level_weights(distiller: Any, student: nn.Module, teacher: nn.Module, split: Any, shift: int) -> dict[str, Any]:
    """SGFI's level weights on ``split``'s ground-truth RoIs: mean largest weight, the share of RoIs whose
    top level is the stride-matched one (the teacher's assigned level + ``shift``) and the mean weight per
    student level."""
    from estimators.regimes.gdetkd import gt_rois

    distiller.eval()
    student.eval()
    top, matched, weights = [], [], []
    for images, boxes, _ in split.batches(32, None):
        rois = gt_rois(boxes)
        if not len(rois):
            continue
        distiller(student.features(images), teacher.features(images), rois)
        alpha = distiller.last_level_weights
        expected = (distiller.teacher_levels(rois) + shift).clamp(max=alpha.shape[1] - 1)
        top.append(alpha.max(dim=1).values)
        matched.append(alpha.argmax(dim=1) == expected)
        weights.append(alpha)
    if not top:
        return {}
    alpha = torch.cat(weights)
    return {"rois": int(alpha.shape[0]), "mean_max_weight": float(torch.cat(top).mean()),
            "matched_share": float(torch.cat(matched).float().mean()),
            "mean_weight_per_level": [float(v) for v in alpha.mean(dim=0)],
            "tau": float(distiller.tau)}


def summarise_kd(settings: Settings, teachers: Sequence[Mapping[str, Any]],
                 students: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    arms = [a for a in [*KD_ARMS, *KD_ARMS_HOMOGENEOUS] if any(s["arm"] == a for s in students)]
    score = {a: {str(s["seed"]): s["mAP"] for s in students if s["arm"] == a} for a in arms}  # str: JSON keys
    median = {a: statistics.median(v.values()) for a, v in score.items()}
    seeds = sorted(score["sgfi"]) if "sgfi" in score else []
    out: dict[str, Any] = {"mAP": score, "median": median,
                           "teacher_median": statistics.median(t["mAP"] for t in teachers)}
    if {"none", "fixed", "sgfi", "fixed-shifted", "sgfi-shifted"} <= set(arms):
        spread = max(score["sgfi"].values()) - min(score["sgfi"].values())
        tolerance = max(spread, MIN_TOLERANCE)
        shift_gap = statistics.median(score["sgfi-shifted"][s] - score["sgfi"][s] for s in seeds)
        fixed_gap = statistics.median(score["fixed-shifted"][s] - score["fixed"][s] for s in seeds)
        out.update(order_met=bool(median["sgfi"] > median["fixed"] > median["none"]),
                   sgfi_over_fixed=bool(median["sgfi"] > median["fixed"]),
                   fixed_over_none=bool(median["fixed"] > median["none"]),
                   fixed_shift_gap=fixed_gap, fixed_shift_met=bool(median["fixed-shifted"] < median["fixed"]),
                   sgfi_shift_gap=shift_gap, tolerance=tolerance, sgfi_shift_met=bool(abs(shift_gap) <= tolerance),
                   sgfi_degrades_less=bool(shift_gap > fixed_gap))
    if "sgfi+ckd" in median and "sgfi" in median:
        out["ckd_adds"] = bool(median["sgfi+ckd"] > median["sgfi"])
    if set(KD_ARMS_HOMOGENEOUS) <= set(arms):
        out["homogeneous_order_met"] = bool(median["frcnn:sgfi"] > median["frcnn:fixed"] > median["frcnn:none"])
        out["homogeneous_full_adds"] = bool(median["frcnn:full"] > median["frcnn:sgfi"])
    levels = {}
    for a in arms:
        mine = [s["levels"] for s in students if s["arm"] == a and s.get("levels")]
        if mine:
            levels[a] = {k: statistics.median(m[k] for m in mine) for k in ("mean_max_weight", "matched_share", "tau")}
            levels[a]["levels"] = len(mine[0]["mean_weight_per_level"])
    out["levels"] = levels
    return out


# -- orchestration ----------------------------------------------------------------------------------
@dataclass
class Job:
    """One process's work: ``fn(*args)``; ``then(result)`` returns the jobs it unlocks (run here)."""

    name: str
    part: int
    cost: float  # a rough size in training steps, to start the longest jobs first
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    then: Callable[[dict[str, Any]], list[Job]] | None = None


def plan(settings: Settings, parts: Sequence[int], work: str) -> list[Job]:
    jobs: list[Job] = []
    for seed in settings.seeds:
        if 1 in parts:
            def children(parent: dict[str, Any], seed: int = seed) -> list[Job]:
                return [Job(f"part 1 seed {seed} {c['kind']}", 1, 2 * settings.inherit_child_steps, inherit_child,
                            (settings, seed, parent, c)) for c in parent["children"]]

            jobs.append(Job(f"part 1 seed {seed} parent", 1, settings.parent_steps, inherit_parent,
                            (settings, seed, work), children))
        if 2 in parts:
            pool = sum(settings.teacher_steps) * 2.5  # a teacher-pool step costs about 2.5 student steps
            jobs.append(Job(f"part 2 seed {seed} joint", 2, settings.joint_steps() * 1.3 + pool, joint_arm,
                            (settings, seed, work)))
            jobs.append(Job(f"part 2 seed {seed} pipeline", 2, settings.joint_steps() * 1.1 + pool / 3, pipeline_arm,
                            (settings, seed, work)))
        if 3 in parts:
            arms = [*KD_ARMS, *(KD_ARMS_HOMOGENEOUS if settings.homogeneous else ())]

            def students(teacher: dict[str, Any], seed: int = seed, arms: list[str] = arms) -> list[Job]:
                return [Job(f"part 3 seed {seed} {arm}", 3,
                            settings.kd_student_steps * (1.0 if arm.endswith("none") else 2.0),
                            kd_student, (settings, seed, arm, teacher["path"])) for arm in arms]

            jobs.append(Job(f"part 3 seed {seed} teacher", 3, settings.kd_teacher_steps * 3, kd_teacher,
                            (settings, seed, work), students))
    return jobs


def run_jobs(settings: Settings, jobs: list[Job], log: Callable[[str], None]) -> list[tuple[Job, dict[str, Any]]]:
    """Run ``jobs`` (and those they unlock) ``settings.jobs`` at a time, the largest ready job first."""
    ready, done = list(jobs), []
    running: dict[Future, tuple[Job, float]] = {}
    with ProcessPoolExecutor(settings.jobs, initializer=_init_worker) as pool:
        while ready or running:
            while ready and len(running) < settings.jobs:
                job = max(ready, key=lambda j: j.cost)
                ready.remove(job)
                running[pool.submit(job.fn, *job.args)] = (job, time.perf_counter())
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, started = running.pop(future)
                result = future.result()  # a failed job stops the run with its error
                result["job_seconds"] = time.perf_counter() - started
                done.append((job, result))
                log(f"{job.name}: done in {result['job_seconds']:.0f}s")
                if job.then is not None:
                    ready.extend(job.then(result))
    return done


def machine_info(settings: Settings, foreign: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version(), "torch_threads": 1, "jobs": settings.jobs,
            "versions": {p: version(p) for p in ("automl", "torch", "mmdet", "mmcv", "mmengine", "pycocotools",
                                                 "numpy", "optuna")},
            "git": git_commit(), "foreign_cpu": dict(foreign or {})}


def execute(settings: Settings, parts: Sequence[int], log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    """Run ``parts``; returns each part's saved record."""
    with tempfile.TemporaryDirectory(prefix="detnas-bench-") as work:
        start, foreign = time.perf_counter(), ForeignCpu()
        done = run_jobs(settings, plan(settings, parts, work), log)
        other = foreign.stop()
        elapsed = time.perf_counter() - start
        machine = machine_info(settings, other)
        out: dict[int, dict[str, Any]] = {}
        by_part = {p: [(j, r) for j, r in done if j.part == p] for p in parts}
        for part, items in by_part.items():
            job_seconds = sum(r["job_seconds"] for _, r in items)
            base = {"part": part, "settings": asdict(settings), "elapsed_s": elapsed, "job_seconds": job_seconds,
                    "machine": machine}
            if part == 1:
                parents = [r for j, r in items if j.fn is inherit_parent]
                pairs = sorted((r for j, r in items if j.fn is inherit_child),
                               key=lambda r: (r["seed"], MORPH_KINDS.index(r["kind"])))
                out[1] = {**base, "parents": parents, "pairs": pairs, "summary": summarise_inheritance(parents, pairs)}
            elif part == 2:
                runs = sorted((r for _, r in items), key=lambda r: (r["seed"], r["arm"]))
                remeasure_latency(settings, runs, log)
                out[2] = {**base, "runs": runs, "summary": summarise_search(settings, runs)}
            else:
                teachers = sorted((r for j, r in items if j.fn is kd_teacher), key=lambda r: r["seed"])
                students = sorted((r for j, r in items if j.fn is kd_student), key=lambda r: (r["seed"], r["arm"]))
                out[3] = {**base, "teachers": teachers, "students": students,
                          "summary": summarise_kd(settings, teachers, students)}
    return out


# -- report -----------------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _within_noise(margins: Mapping[str, float], tolerance: float) -> str:
    """A note on the margins of a met ordering that are smaller than the seed spread (ties in effect)."""
    small = [f"{name} by {value:.4f}" for name, value in margins.items() if 0 < value < tolerance]
    return f" (but {', '.join(small)}: inside the seed spread {tolerance:.4f}, a tie)" if small else ""


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def report_inheritance(p: Mapping[str, Any]) -> list[str]:
    s, sm = p["settings"], p["summary"]
    lines = ["## 1. Weight inheritance", "",
             f"Parents trained {s['parent_steps']} steps (no KD); each child trained {s['inherit_child_steps']} steps "
             f"from the parent's weights (inherited) or from the same fresh initialisation (scratch), same batches. "
             f"Seeds {list(s['seeds'])}; {p['job_seconds'] / 60:.1f} process-minutes.", "",
             "| measure | value | target | verdict |", "|---|---|---|---|",
             f"| median over seeds of the per-seed median mAP difference, inherited - scratch | "
             f"{_f(sm['median_difference'], 4)} (per seed: "
             f"{', '.join(_f(v, 4) for v in sm['per_seed_median_difference'].values())}) | > 0 | "
             f"{_verdict(sm['median_difference'] > 0)} |",
             f"| pairs the inherited child wins | {sm['wins']}/{sm['pairs']} ({sm['win_rate']:.0%}) | most (> 50%) | "
             f"{_verdict(sm['wins'] > sm['pairs'] / 2)} |", "",
             "| action | inherited mAP (median) | scratch mAP (median) | difference (median) | inherited wins |",
             "|---|---|---|---|---|",
             *[f"| {k} | {_f(v['median_inherited'])} | {_f(v['median_scratch'])} | {_f(v['median_difference'], 4)} | "
               f"{v['wins']}/{v['pairs']} |" for k, v in sm["per_kind"].items()], "",
             "Per pair (mAP on the validation split; *at 0*: the inherited child before any training):", "",
             "| seed | parent (mAP) | action | inherited at 0 | inherited | scratch | difference "
             "| tensors copied/sliced/fresh |",
             "|---|---|---|---|---|---|---|---|"]
    parents = {q["seed"]: q for q in p["parents"]}
    for r in p["pairs"]:
        q, rep = parents[r["seed"]], r["inherit_report"]
        lines.append(f"| {r['seed']} | {_describe(q['config']['model'])} ({_f(q['mAP'])}) | {r['description']} | "
                     f"{_f(r['inherited_at_0'])} | {_f(r['inherited'])} | {_f(r['scratch'])} | "
                     f"{_f(r['difference'], 4)} | "
                     f"{rep['copied']}/{rep['sliced']}/{rep['fresh']} |")
    return lines + [""]


def report_search(p: Mapping[str, Any]) -> list[str]:
    s, sm = p["settings"], p["summary"]
    lines = ["## 2. Joint search vs the pipeline (NAS -> prune -> fixed-teacher KD)", "",
             f"Joint: `morphism-evolution`, {s['trials']} trials ({s['population']} random at {s['init_steps']} steps, "
             f"morphed children at {s['child_steps']} steps, KD from the co-evolved sub-teacher; the pool trained "
             f"{'/'.join(map(str, s['teacher_steps']))} steps by progressive shrinking). Pipeline: `evolution` over "
             f"the student alone (prune 1.0, no KD; population half its trials, tournament 2) for as many trials as "
             f"fit, then the {s['pipeline_members']} best "
             f"front members pruned to {', '.join(f'{r:g}' for r in s['pipeline_prune'])} in every stage "
             f"({s['child_steps']} steps each) and each fine-tuned {s['child_steps']} more with KD from the pool's "
             f"largest sub-teacher (pool phase 1 only: {s['teacher_steps'][0]} steps). "
             f"{p['job_seconds'] / 60:.1f} process-minutes.", "",
             "| measure | joint (median) | pipeline (median) | target | verdict |", "|---|---|---|---|---|",
             f"| hypervolume of (mAP, latency) | {_f(sm['median_hv_latency_joint'])} | "
             f"{_f(sm['median_hv_latency_pipeline'])} | joint > pipeline | {_verdict(sm['met_latency'])} |",
             f"| hypervolume of (mAP, FLOPs) | {_f(sm['median_hv_flops_joint'])} | "
             f"{_f(sm['median_hv_flops_pipeline'])} "
             f"| (also reported) | {_verdict(sm['met_flops'])} |", "",
             "| seed | arm | students evaluated (failed) | student steps | teacher-pool steps (s) | HV latency "
             "| HV FLOPs | "
             "best mAP | front (trial numbers) | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in sm["per_seed"]:
        for arm in ("joint", "pipeline"):
            if f"steps_{arm}" not in row:
                continue
            pool_s = row[f"pool_seconds_{arm}"]
            lines.append(f"| {row['seed']} | {arm} | {row[f'evaluated_{arm}']} ({row[f'failed_{arm}']}) | "
                         f"{row[f'steps_{arm}']:.0f} | {row[f'pool_steps_{arm}']} ({_f(pool_s, 0)}) | "
                         f"{_f(row.get(f'hv_latency_{arm}'))} | {_f(row.get(f'hv_flops_{arm}'))} | "
                         f"{_f(row[f'best_{arm}'])} | {', '.join(map(str, row[f'front_{arm}']))} | "
                         f"{row[f'seconds_{arm}']:.0f} |")
    lines += ["", "Latency: median of a batch-1 forward pass on one thread, re-measured after the searches. "
              "Hypervolumes are normalised to [0, best mAP of the seed] x [0, 1.1 x its largest cost].", ""]
    failures = [(r["seed"], x["arm"], x["number"], x["error"]) for r in p["runs"] for x in r["records"]
                if x["state"] != "COMPLETE"]
    if failures:
        lines += ["Failed evaluations:", "",
                  *[f"- seed {s_}, {a} trial {n}: {str(e).strip().splitlines()[-1] if e else '?'}"
                    for s_, a, n, e in failures], ""]
    return lines


def report_kd(p: Mapping[str, Any]) -> list[str]:
    s, sm = p["settings"], p["summary"]
    lines = ["## 3. G-DetKD: SGFI vs same-level imitation, and a level-shifted teacher", "",
             f"Teacher: Faster R-CNN {_describe(s['kd_teacher'])}, FPN {s['kd_teacher']['fpn_channels']}, "
             f"{s['kd_teacher_steps']} steps (mAP per seed: {', '.join(_f(t['mAP']) for t in p['teachers'])}). "
             f"Student: RetinaNet {_describe(s['kd_student'])}, FPN {s['kd_student']['fpn_channels']}, "
             f"{s['kd_student_steps']} steps from the same initialisation in every arm; RoIs = ground-truth boxes. "
             f"{p['job_seconds'] / 60:.1f} process-minutes.", ""]
    if "order_met" in sm:
        m = sm["median"]
        lines += ["| target | figures (median mAP over seeds) | verdict |", "|---|---|---|",
                  f"| SGFI > fixed > none | {_f(m['sgfi'])} / {_f(m['fixed'])} / {_f(m['none'])} | "
                  f"{_verdict(sm['order_met'])}{_kd_order_noise(sm)} |",
                  f"| shifted teacher: fixed degrades | fixed-shifted {_f(m['fixed-shifted'])} vs fixed "
                  f"{_f(m['fixed'])} "
                  f"(median per-seed change {_f(sm['fixed_shift_gap'], 4)}) | {_verdict(sm['fixed_shift_met'])} |",
                  f"| shifted teacher: SGFI about equal (median per-seed change within +-{_f(sm['tolerance'], 4)}, "
                  f"SGFI's seed spread) | SGFI-shifted {_f(m['sgfi-shifted'])} vs SGFI {_f(m['sgfi'])} (change "
                  f"{_f(sm['sgfi_shift_gap'], 4)}) | {_verdict(sm['sgfi_shift_met'])} |",
                  f"| (also reported) SGFI loses less than fixed under the shift | {_f(sm['sgfi_shift_gap'], 4)} vs "
                  f"{_f(sm['fixed_shift_gap'], 4)} | {_verdict(sm['sgfi_degrades_less'])} |"]
        if "ckd_adds" in sm:
            lines.append(f"| (also reported) CKD adds on top of SGFI | {_f(m['sgfi+ckd'])} vs {_f(m['sgfi'])} | "
                         f"{_verdict(sm['ckd_adds'])}"
                         f"{_within_noise({'SGFI+CKD over SGFI': m['sgfi+ckd'] - m['sgfi']}, sm['tolerance'])} |")
        if "homogeneous_order_met" in sm:
            lines += [f"| (also reported) Faster R-CNN student: SGFI > fixed > none | {_f(m['frcnn:sgfi'])} / "
                      f"{_f(m['frcnn:fixed'])} / {_f(m['frcnn:none'])} | {_verdict(sm['homogeneous_order_met'])} |",
                      f"| (also reported) Faster R-CNN student: + CKD, class KL, localisation KD add on top | "
                      f"{_f(m['frcnn:full'])} vs {_f(m['frcnn:sgfi'])} | {_verdict(sm['homogeneous_full_adds'])} |"]
        lines.append("")
    seeds = sorted({st["seed"] for st in p["students"]})
    lines += ["| arm | " + " | ".join(f"seed {x}" for x in seeds) + " | median |",
              "|---|" + "---|" * (len(seeds) + 1)]
    for arm, by_seed in sm["mAP"].items():
        cells = " | ".join(_f(by_seed.get(str(x))) for x in seeds)
        lines.append(f"| {arm} | {cells} | {_f(sm['median'][arm])} |")
    if sm["levels"]:
        lines += ["", "SGFI level weights on the validation RoIs after training (medians over seeds): the mean "
                  "largest weight (1/3 = uniform over the 3 levels, 1 = one level) and the share of RoIs whose top "
                  "level is the stride-matched one (chance ~1/3):", "",
                  "| arm | mean largest weight | top level = matched level | learned tau |", "|---|---|---|---|",
                  *[f"| {a} | {_f(v['mean_max_weight'])} | {v['matched_share']:.0%} | {_f(v['tau'])} |"
                    for a, v in sm["levels"].items()]]
    return lines + [""]


def plot(parts: Mapping[int, Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PARTS if p in parts]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.4), squeeze=False)
    for ax, part in zip(axes[0], panels):
        p = parts[part]
        if part == 1:
            pairs = p["pairs"]
            for i, kind in enumerate(MORPH_KINDS):
                ys = [r["difference"] for r in pairs if r["kind"] == kind]
                ax.scatter([i] * len(ys), ys, color="tab:blue")
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xticks(range(len(MORPH_KINDS)), MORPH_KINDS, rotation=30, ha="right")
            ax.set_ylabel("mAP inherited - scratch")
            ax.set_title("1. inheritance (one dot per seed)")
        elif part == 2:
            seed = p["settings"]["seeds"][0]
            for run, colour in ((r, "tab:red" if r["arm"] == "joint" else "tab:grey") for r in p["runs"]
                                if r["seed"] == seed):
                rs = [x for x in run["records"] if x["state"] == "COMPLETE" and x["mAP"] is not None]
                ax.scatter([x["latency"] for x in rs], [x["mAP"] for x in rs], color=colour, alpha=0.5, s=18)
                front = sorted((rs[i] for i in _front([(-x["mAP"], x["latency"]) for x in rs])),
                               key=lambda x: x["latency"])
                ax.step([x["latency"] for x in front], [x["mAP"] for x in front], where="post", color=colour,
                        label=run["arm"])
            ax.set_xlabel("latency ms (batch 1, 1 thread)")
            ax.set_ylabel("mAP")
            ax.set_title(f"2. fronts, seed {seed}")
            ax.legend()
        else:
            sm = p["summary"]
            arms = list(sm["mAP"])
            ax.bar(range(len(arms)), [sm["median"][a] for a in arms], color="tab:green", alpha=0.6)
            for i, a in enumerate(arms):
                ys = list(sm["mAP"][a].values())
                ax.scatter([i] * len(ys), ys, color="black", s=10)
            ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
            ax.set_ylabel("student mAP")
            ax.set_title("3. G-DetKD (bars: median; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _kd_order_noise(sm: Mapping[str, Any]) -> str:
    m = sm["median"]
    return _within_noise({"SGFI over fixed": m["sgfi"] - m["fixed"], "fixed over none": m["fixed"] - m["none"]},
                         sm["tolerance"])


def report(parts: Mapping[int, Mapping[str, Any]]) -> str:
    first = parts[min(parts)]
    lines = ["# Joint-DetNAS and G-DetKD at CPU scale", "",
             f"Produced by `benchmarks/detnas.py`. Task `shapes-detection` "
             f"({json.dumps(first['settings']['task']) if first['settings']['task'] else 'default options'}), "
             f"COCO mAP@[.5:.95] on its validation split; batch {first['settings']['batch_size']}, AdamW lr "
             f"{first['settings']['lr']}. Median of seeds {list(first['settings']['seeds'])}.", ""]
    runs: dict[tuple[str, float], list[int]] = {}  # parts saved by the same invocation share one line
    for part in sorted(parts):
        runs.setdefault((parts[part]["machine"]["date"], parts[part]["elapsed_s"]), []).append(part)
    for members in runs.values():
        pm = parts[members[0]]["machine"]
        fc = pm.get("foreign_cpu", {})
        lines.append(f"- part{'s' if len(members) > 1 else ''} {', '.join(map(str, members))}: run {pm['date']} on "
                     f"{pm['cpu']} ({pm['cpus']} CPUs, {pm['jobs']} process(es) side by side, 1 torch thread each), "
                     f"commit {pm['git']}, torch {pm['versions']['torch']}, mmdet {pm['versions']['mmdet']}; "
                     f"wall-clock {parts[members[0]]['elapsed_s'] / 60:.1f} min; other processes used "
                     f"{fc.get('share', float('nan')):.0%} of the CPUs meanwhile.")
    lines.append("")
    summary = ["| part | target | verdict |", "|---|---|---|"]
    if 1 in parts:
        sm = parts[1]["summary"]
        summary.append(f"| 1 | inherited child beats scratch child (median difference "
                       f"{_f(sm['median_difference'], 4)}, "
                       f"wins {sm['wins']}/{sm['pairs']}) | {_verdict(sm['met'])} |")
    if 2 in parts:
        sm = parts[2]["summary"]
        summary.append(f"| 2 | joint HV > pipeline HV on (mAP, latency): {_f(sm['median_hv_latency_joint'])} vs "
                       f"{_f(sm['median_hv_latency_pipeline'])} (FLOPs: {_f(sm['median_hv_flops_joint'])} vs "
                       f"{_f(sm['median_hv_flops_pipeline'])}) | {_verdict(sm['met'])} |")
    if 3 in parts and "order_met" in parts[3]["summary"]:
        sm = parts[3]["summary"]
        summary += [f"| 3 | SGFI > fixed > none | {_verdict(sm['order_met'])}{_kd_order_noise(sm)} |",
                    f"| 3 | level-shifted teacher: fixed degrades | {_verdict(sm['fixed_shift_met'])} |",
                    f"| 3 | level-shifted teacher: SGFI about equal | {_verdict(sm['sgfi_shift_met'])} |"]
    lines += ["## Summary", "", *summary, ""]
    if 1 in parts:
        lines += report_inheritance(parts[1])
    if 2 in parts:
        lines += report_search(parts[2])
    if 3 in parts:
        lines += report_kd(parts[3])
    lines += [f"![inheritance, fronts and G-DetKD arms]({NAME}.png)", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run of a few minutes)")
    parser.add_argument("--jobs", type=int, default=1, help="jobs run side by side (one process each)")
    parser.add_argument("--parts", default="1,2,3", help="comma-separated parts to run (1,2,3); the report "
                        "also includes the parts saved earlier in the results folder")
    parser.add_argument("--homogeneous", action="store_true", help="part 3 also distils a Faster R-CNN student "
                        "(the homogeneous pair: + class KL and localisation KD)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    parser.add_argument("--report-only", action="store_true", help="run nothing: rewrite the report from the part "
                        "files already in --results")
    args = parser.parse_args(argv)
    try:
        parts = sorted({int(p) for p in args.parts.split(",") if p.strip()})
    except ValueError:
        parser.error(f"--parts must be a comma-separated list of {PARTS}, got {args.parts!r}")
    if not parts or not set(parts) <= set(PARTS):
        parser.error(f"--parts must be a comma-separated list of {PARTS}, got {args.parts!r}")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    settings = Settings.quick(args.jobs) if args.quick else Settings(jobs=args.jobs)
    if args.homogeneous:
        settings = dataclasses.replace(settings, homogeneous=True)
    out: Path = args.results
    out.mkdir(parents=True, exist_ok=True)
    _init_worker()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    if not args.report_only:
        log(f"parts {parts}, seeds {list(settings.seeds)}, {settings.jobs} process(es); results to {out}")
        for part, record in execute(settings, parts, log).items():
            (out / f"{NAME}_part{part}.json").write_text(json.dumps(record, indent=1, default=str))
    saved = {p: json.loads((out / f"{NAME}_part{p}.json").read_text()) for p in PARTS
             if (out / f"{NAME}_part{p}.json").exists()}
    plot(saved, out / f"{NAME}.png")
    (out / f"{NAME}.md").write_text(report(saved))
    (out / f"{NAME}.json").write_text(json.dumps({str(p): v for p, v in saved.items()}, indent=1, default=str))
    log(f"wrote {out / (NAME + '.md')} (parts {sorted(saved)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
