"""Training and scoring of 3-D detectors (:class:`~search_spaces.pointpillars.detector.PillarsDetector`):
the episode stream with OpenPCDet's standard augmentation, the fit step, ONCE scoring, pseudo-labelling.

Shared by the ``detection3d`` estimator and ``benchmarks/once.py``, so a detector is trained the same
way wherever it is trained.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from automl.tasks.detection3d import Frame3D, normalise_yaw
from automl.tasks.once_eval import annos_from_arrays, evaluate
from automl.training.fit import FitResult, StepMonitor, fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.streams import EpochStream
from search_spaces.pointpillars.detector import PillarsDetector

#: global augmentation of a training frame (OpenPCDet's ONCE PointPillars: flip x, rotation, scaling)
ROTATION = math.pi / 4
SCALE = (0.95, 1.05)

Batch = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def detection3d_recipe(steps: int, batch_size: int = 4, lr: float = 2e-3) -> Recipe:
    """AdamW with a warm-up and cosine decay, gradient clipping at 10 (OpenPCDet clips at 10 as well),
    non-finite steps skipped."""
    return Recipe(steps=steps, lr=lr, optimizer="adamw", weight_decay=0.01, schedule="warmup-cosine",
                  warmup=min(20, steps // 10), clip=10.0, nonfinite="skip", batch_size=batch_size)


def in_range(boxes: torch.Tensor, point_range: Sequence[float]) -> torch.Tensor:
    """Which boxes have their centre inside the x-y range (OpenPCDet's training-time range filter)."""
    return ((boxes[:, 0] >= point_range[0]) & (boxes[:, 0] < point_range[3]) & (boxes[:, 1] >= point_range[1])
            & (boxes[:, 1] < point_range[4]))


def augment(frame: Frame3D, rng: np.random.Generator, point_range: Sequence[float]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training view of ``frame``: a random flip about the x axis, a rotation about z in
    ±``ROTATION`` and a scaling in ``SCALE``, applied to points and boxes alike; points and boxes that
    leave the range are dropped."""
    points, boxes, labels = frame.points.clone(), frame.boxes.clone(), frame.labels.clone()
    if rng.random() < 0.5:
        points[:, 1] = -points[:, 1]
        boxes[:, 1], boxes[:, 6] = -boxes[:, 1], -boxes[:, 6]
    angle = float(rng.uniform(-ROTATION, ROTATION))
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=points.dtype)
    points[:, :2] = points[:, :2] @ rotation.T
    boxes[:, :2] = boxes[:, :2] @ rotation.T
    boxes[:, 6] = normalise_yaw(boxes[:, 6] + angle)
    scale = float(rng.uniform(*SCALE))
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    low, high = torch.tensor(point_range[:3]), torch.tensor(point_range[3:])
    points = points[((points[:, :3] >= low) & (points[:, :3] < high)).all(dim=1)]
    keep = in_range(boxes, point_range)
    return points, boxes[keep], labels[keep]


def frame_batches(frames: Sequence[Frame3D], batch_size: int, seed: int, point_range: Sequence[float],
                  augmented: bool = True) -> EpochStream[Batch]:
    """Epochs over ``frames`` shuffled and augmented by a numpy generator of ``seed``."""
    rng = np.random.default_rng(seed)

    def take(index: np.ndarray) -> Batch:
        views = []
        for i in index:
            frame = frames[int(i)]
            if augmented:
                views.append(augment(frame, rng, point_range))
            else:
                keep = in_range(frame.boxes, point_range)
                views.append((frame.points, frame.boxes[keep], frame.labels[keep]))
        return [v[0] for v in views], [v[1] for v in views], [v[2] for v in views]

    return EpochStream(len(frames), batch_size, take, rng)


def detection3d_step(detector: Any, batch: Batch) -> StepOutput:
    points, boxes, labels = batch
    return StepOutput(detector.loss(points, boxes, labels))


def train_detector3d(detector: PillarsDetector, frames: Sequence[Frame3D], recipe: Recipe, *, seed: int,
                     point_range: Sequence[float], monitor: StepMonitor | None = None) -> FitResult:
    """Train ``detector`` on ``frames`` for ``recipe.steps`` steps; batches follow ``seed`` alone."""
    if not frames:
        raise ValueError("no training frames")
    stream = frame_batches(frames, recipe.batch_size, seed, point_range)
    return fit(detector, stream, recipe, detection3d_step, seed=seed, monitor=monitor)


def predict_frames(detector: PillarsDetector, frames: Sequence[Frame3D], batch_size: int = 8,
                   score_thr: float = 0.1) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The detector's boxes, scores and labels on each frame."""
    out = []
    for start in range(0, len(frames), batch_size):
        out.extend(detector.predict([f.points for f in frames[start:start + batch_size]], score_thr=score_thr))
    return out


def ground_truth(frames: Sequence[Frame3D], class_names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """The official evaluation's ground-truth annos of ``frames``."""
    return [annos_from_arrays([class_names[int(i)] for i in f.labels], f.boxes.numpy()) for f in frames]


def prediction_annos(detector: PillarsDetector, frames: Sequence[Frame3D], class_names: Sequence[str],
                     batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """The official evaluation's prediction annos of the detector on ``frames`` (score threshold 0.1,
    OpenPCDet's ``SCORE_THRESH``)."""
    return [annos_from_arrays([class_names[int(i)] for i in labels], boxes.numpy(), scores.numpy())
            for boxes, scores, labels in predict_frames(detector, frames, batch_size)]


def score_detector3d(detector: PillarsDetector, frames: Sequence[Frame3D], class_names: Sequence[str],
                     batch_size: int = 8) -> dict[str, float]:
    """ONCE's official AP (:func:`automl.tasks.once_eval.evaluate`) of the detector on ``frames``, with
    ``mAP`` = ``AP_mean/overall``."""
    preds = prediction_annos(detector, frames, class_names, batch_size)
    result = evaluate(ground_truth(frames, class_names), preds)
    return {"mAP": float(result["AP_mean/overall"]), **{k: float(v) for k, v in result.items()}}


def pseudo_labelled(detector: PillarsDetector, frames: Sequence[Frame3D], threshold: float,
                    batch_size: int = 8) -> tuple[list[Frame3D], int]:
    """``frames`` labelled by the detector's detections with score >= ``threshold`` (the teacher's
    pseudo-labels), and how many boxes that gave."""
    out, boxes_total = [], 0
    predictions = predict_frames(detector, frames, batch_size, score_thr=threshold)
    for frame, (boxes, scores, labels) in zip(frames, predictions):
        keep = (scores >= threshold) & (boxes[:, 3:6] > 0).all(dim=1)
        boxes_total += int(keep.sum())
        out.append(Frame3D(frame_id=frame.frame_id, points=frame.points, boxes=boxes[keep].float(),
                           labels=labels[keep].long(), attributes={**frame.attributes, "pseudo": True}))
    return out, boxes_total
