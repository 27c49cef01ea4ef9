"""Estimator ``detection3d``: train a PointPillars detector (the ``pointpillars`` builder, which the space must
name) on a ``detection3d`` task and score it with ONCE's official metric on the validation split.

The config's ``model`` part goes to the builder, its ``train`` part sets ``lr`` and ``epochs`` (passes
over the labelled training frames; a study budget, in steps, overrides them). Reported: ``mAP``
(``AP_mean/overall``) and every official key (``AP_Vehicle/0-30m``, ...), params, FLOPs and measured
latency (voxelisation + network, batch of one), training seconds. A pipeline's ``train`` step (trial
info ``test``) also scores the test split (``test_mAP``, ...); no search trial is handed it.

``semi: pseudo-label`` is the semi-supervised regime of the ONCE benchmark: a teacher trained on the
labelled frames labels ``unlabeled`` frames of the task's raw stream at ``pseudo_threshold``, then a
student (freshly initialised, the same steps) trains on labelled + pseudo-labelled frames and is the
trial's model. ``label_fraction`` keeps a seeded fraction of the labelled training frames (the same
frames in every trial of a study), for label-scarce studies.
"""
from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from automl.artifacts import model_artifact
from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.space.model import Candidate
from automl.tasks.detection3d import Detection3DTask, Frame3D
from automl.training.seeding import seeded
from estimators.cost import model_costs
from estimators.detection3d_training import (
    detection3d_recipe,
    pseudo_labelled,
    score_detector3d,
    train_detector3d,
)
from search_spaces.pointpillars.detector import PillarsDetector, build_pointpillars
from search_spaces.pointpillars.saved import detector_bytes

SEMI = ("none", "pseudo-label")


def _fraction(name: str, value: Any, *, closed_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (0.0 <= value if closed_low else 0.0 < value) and value <= 1.0):
        interval = f"{'[' if closed_low else '('}0, 1]"
        raise ConfigError(f"detection3d: {name} must be in {interval}, got {value!r}", field=name)
    return float(value)


@estimators.register("detection3d")
class Detection3DEstimator(Estimator):
    """Options: ``steps`` (when the config's ``train`` part names no ``epochs``; default 400),
    ``batch_size`` (4), ``lr`` (2e-3, when ``train.lr`` is not searched), ``label_fraction`` (1.0),
    ``semi`` (``none`` | ``pseudo-label``), ``pseudo_threshold`` (0.5), ``unlabeled`` (raw frames the
    teacher labels, 200)."""

    families: ClassVar[frozenset[str]] = frozenset({"detection3d"})

    def __init__(self, steps: int = 400, batch_size: int = 4, lr: float = 2e-3, label_fraction: float = 1.0,
                 semi: str = "none", pseudo_threshold: float = 0.5, unlabeled: int = 200) -> None:
        super().__init__()
        for name, value in (("steps", steps), ("batch_size", batch_size), ("unlabeled", unlabeled)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"detection3d: {name} must be an integer >= 1, got {value!r}", field=name)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"detection3d: lr must be a number > 0, got {lr!r}", field="lr")
        if semi not in SEMI:
            raise ConfigError(f"detection3d: semi must be one of {', '.join(SEMI)}, got {semi!r}", field="semi")
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)
        self.label_fraction = _fraction("label_fraction", label_fraction)
        self.pseudo_threshold = _fraction("pseudo_threshold", pseudo_threshold, closed_low=True)
        self.semi, self.unlabeled = semi, int(unlabeled)

    def labelled(self, frames: tuple[Frame3D, ...], seed: int) -> list[Frame3D]:
        """The labelled training frames a study uses: all, or a ``label_fraction`` drawn with the study's seed."""
        if self.label_fraction >= 1.0:
            return list(frames)
        count = max(1, int(round(self.label_fraction * len(frames))))
        chosen = np.sort(np.random.default_rng(seed).choice(len(frames), count, replace=False))
        return [frames[int(i)] for i in chosen]

    def train_options(self, train_cfg: Mapping[str, Any], labelled: int) -> tuple[int, float]:
        """(steps, lr) from the config's ``train`` part and the estimator's options."""
        lr = train_cfg.get("lr", self.lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"expected a number > 0, got {lr!r}", field="train.lr")
        epochs = train_cfg.get("epochs")
        if epochs is None:
            return self.steps, float(lr)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"expected an integer >= 1, got {epochs!r}", field="train.epochs")
        return int(epochs) * math.ceil(labelled / self.batch_size), float(lr)

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        task = ctx.require_task(Detection3DTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        if ctx.space.builder not in (None, "pointpillars"):
            raise ConfigError(f"detection3d trains the pointpillars builder's detectors, got builder "
                              f"{ctx.space.builder!r}", source=ctx.space.source, field="builder")
        info = task.info
        config = candidate.config
        model_cfg = config.get("model", config)
        with seeded(ctx.trial_seed):
            detector = build_pointpillars(model_cfg, info)
        costs = model_costs(detector, task.example_input(), latency=True)
        ctx.check_constraints(costs)

        data = task.load()
        frames = self.labelled(data.train.frames, ctx.seed)
        steps, lr = self.train_options(config.get("train", {}), len(frames))
        if budget is not None:
            steps = int(round(budget))
        recipe = detection3d_recipe(steps, self.batch_size, lr)
        stats = train_detector3d(detector, frames, recipe, seed=ctx.trial_seed, point_range=info.point_range,
                                 monitor=ctx.phase("training"))
        metrics: dict[str, float] = {"labelled_frames": float(len(frames)), "steps": float(stats.steps),
                                     "skipped_steps": float(stats.skipped)}
        seconds = stats.seconds
        if self.semi == "pseudo-label":
            detector, extra = self.pseudo_label(detector, frames, data.val.frames, task, model_cfg, recipe, ctx)
            metrics.update(extra)
            seconds += extra["student_seconds"] + extra["pseudo_label_seconds"]
        metrics["train_seconds"] = seconds
        metrics.update(score_detector3d(detector, data.val.frames, info.class_names))
        if ctx.scores_test and data.test is not None:  # held out of every search: only a pipeline's train step
            test = score_detector3d(detector, data.test.frames, info.class_names)
            metrics.update({f"test_{k}": v for k, v in test.items()})
        if ctx.checkpoints is not None:
            space = ctx.space
            ctx.checkpoints.write_bytes(model_artifact(candidate.key), detector_bytes(
                detector, config, info, space=space.name, task=space.task, task_options=dict(space.task_options)))
        return Result(metrics=metrics, cost=costs)

    def pseudo_label(self, teacher: PillarsDetector, frames: list[Frame3D], val: Sequence[Frame3D],
                     task: Detection3DTask, model_cfg: Mapping[str, Any], recipe: Any, ctx: EvalContext
                     ) -> tuple[PillarsDetector, dict[str, float]]:
        """The pseudo-labelling round: the teacher labels the raw stream, a fresh student trains on both."""
        info = task.info
        started = time.perf_counter()
        raw = list(task.unlabeled_frames(seed=ctx.seed, limit=self.unlabeled))
        pseudo, boxes = pseudo_labelled(teacher, raw, self.pseudo_threshold)
        labelling = time.perf_counter() - started
        teacher_scores = score_detector3d(teacher, val, info.class_names)
        with seeded(ctx.trial_seed):
            student = build_pointpillars(model_cfg, info)
        stats = train_detector3d(student, frames + pseudo, recipe, seed=ctx.trial_seed, point_range=info.point_range,
                                 monitor=ctx.phase("student"))
        return student, {"teacher_mAP": teacher_scores["mAP"], "pseudo_frames": float(len(pseudo)),
                         "pseudo_boxes": float(boxes), "pseudo_label_seconds": labelling,
                         "student_seconds": stats.seconds}
