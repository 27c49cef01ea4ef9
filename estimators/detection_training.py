"""Training and scoring loops for detectors, with optional G-DetKD distillation from a teacher.

Shared by the ``detnas`` estimator, ``automl distill`` and the detnas benchmark, so that a student is
trained the same way wherever it is trained.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import torch
from torch import nn

from automl.errors import ConfigError
from automl.tasks.detection import DetectionSplit, evaluate_detections
from estimators.regimes.gdetkd import GDetKD, GDetKDConfig, gt_rois, sample_rois

if TYPE_CHECKING:
    from search_spaces.detnas_detector import Detector

ROI_SOURCES = ("gt", "predicted")


@dataclass(frozen=True)
class DetRecipe:
    """How a detector is trained: AdamW with a linear warm-up then cosine decay, gradient-norm
    clipping, and non-finite steps skipped. The defaults were measured on ``shapes-detection`` (batch 8,
    64 px): AdamW at 3e-3 took a RetinaNet student to 0.21 mAP in 300 steps, where SGD (lr 0.02,
    momentum 0.9) reached 0.07 (a choice made on that measurement, not the papers' SGD recipe)."""

    steps: int
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    clip: float = 10.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.warmup < 0 or self.clip <= 0:
            raise ConfigError(f"detection recipe needs steps >= 0, batch_size >= 1, lr > 0, warmup >= 0 and "
                              f"clip > 0, got {self}")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        span = max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))


@dataclass(frozen=True)
class Distillation:
    """A teacher and the G-DetKD terms that distil it into the student. ``rois``: ``gt`` (ground-truth
    boxes as RoIs, the small-scale default) or ``predicted`` (the student's predictions matched to the
    ground truth, sampled 1:3 positive:negative: G-DetKD's RoIs for heterogeneous pairs)."""

    teacher: "Detector"
    config: GDetKDConfig = field(default_factory=GDetKDConfig)
    rois: str = "gt"

    def __post_init__(self) -> None:
        if self.rois not in ROI_SOURCES:
            raise ConfigError(f"distillation rois must be one of {', '.join(ROI_SOURCES)}, got {self.rois!r}")


@dataclass(frozen=True)
class TrainStats:
    """What a training run did: its wall-clock seconds, steps, skipped (non-finite) steps and the mean
    of every loss term over the last tenth of the run."""

    seconds: float
    steps: int
    skipped: int
    losses: Mapping[str, float]


def homogeneous(student: "Detector", teacher: "Detector") -> bool:
    """Both two-stage: G-DetKD then adds the class-probability KL and class-aware localisation terms."""
    return student.two_stage and teacher.two_stage


def make_distiller(student: "Detector", distillation: Distillation) -> GDetKD:
    teacher = distillation.teacher
    return GDetKD(distillation.config, student_channels=student.fpn_channels,
                  teacher_channels=teacher.fpn_channels, strides=student.strides,
                  teacher_strides=teacher.strides)


def train_detector(student: "Detector", split: DetectionSplit, recipe: DetRecipe, *, seed: int,
                   distillation: Distillation | None = None,
                   on_step: Callable[[int, Mapping[str, float]], None] | None = None) -> TrainStats:
    """Train ``student`` on ``split`` for ``recipe.steps`` steps (detection loss, plus the G-DetKD terms
    when a teacher is given). Batches and initialisation of the distiller follow ``seed`` alone; the
    caller's torch RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        distiller = make_distiller(student, distillation) if distillation is not None else None
        params = [p for p in student.parameters() if p.requires_grad]
        if distiller is not None:
            params += list(distiller.extra_parameters())
            distillation.teacher.eval()
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        rng = np.random.default_rng(seed)
        batches = _endless(split, recipe.batch_size, rng)
        history: list[dict[str, float]] = []
        skipped = 0
        start = time.perf_counter()
        student.train()
        for step in range(recipe.steps):
            images, boxes, labels = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr_at(step)
            features = student.features(images)
            terms = student.loss(images, boxes, labels, features=features)
            if distiller is not None:
                terms.update(_kd_terms(student, distillation, distiller, images, features, boxes))
            total = sum(v for k, v in terms.items() if "loss" in k or k.startswith("kd_"))
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(total):
                skipped += 1
                continue
            total.backward()
            nn.utils.clip_grad_norm_(params, recipe.clip)
            optimizer.step()
            values = {k: float(v.detach()) for k, v in terms.items() if "loss" in k or k.startswith("kd_")}
            values["total"] = float(total.detach())
            history.append(values)
            if on_step is not None:
                on_step(step, values)
        seconds = time.perf_counter() - start
    tail = history[-max(1, len(history) // 10):]
    means = {k: float(np.mean([h[k] for h in tail if k in h])) for k in (tail[0] if tail else {})}
    return TrainStats(seconds=seconds, steps=recipe.steps, skipped=skipped, losses=means)


def _kd_terms(student: "Detector", distillation: Distillation, distiller: GDetKD, images: torch.Tensor,
              features: tuple[torch.Tensor, ...], boxes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    teacher = distillation.teacher
    with torch.no_grad():
        teacher_features = teacher.features(images)
    if distillation.rois == "predicted":
        predicted = [b for b, _, _ in student.predict(images)]  # predict keeps the training mode
        rois = sample_rois(predicted, boxes)
    else:
        rois = gt_rois(boxes)
    extra: dict[str, torch.Tensor] = {}
    if homogeneous(student, teacher) and len(rois):
        extra["student_cls"], extra["student_reg"] = student.roi_outputs(features, rois)
        with torch.no_grad():
            extra["teacher_cls"], extra["teacher_reg"] = teacher.roi_outputs(teacher_features, rois)
    return distiller(features, teacher_features, rois, **extra)


def _endless(split: DetectionSplit, batch_size: int, rng: np.random.Generator):
    while True:
        yield from split.batches(batch_size, rng)


def evaluate_detector(detector: "Detector", split: DetectionSplit, batch_size: int = 32) -> dict[str, float]:
    """COCO mAP, AP50, ... of ``detector`` on ``split`` (pycocotools); ``predict`` keeps its train/eval mode."""
    predictions = []
    for images, _, _ in split.batches(batch_size, None):
        predictions.extend(detector.predict(images))
    return evaluate_detections(split, predictions)
