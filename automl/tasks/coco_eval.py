"""COCO bbox metrics of a detector's predictions on a :class:`DetectionSplit`, computed by pycocotools'
reference COCOeval code."""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
import torch

from automl.tasks.detection import DetectionSplit

METRICS = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
#: COCO's object-size ranges (area in pixels^2 of the evaluated frame)
_AREA_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


Prediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def evaluate_detections(split: DetectionSplit, predictions: Sequence[Prediction], *,
                        max_dets: int = 100) -> dict[str, float]:
    """COCO bbox metrics of ``predictions`` on ``split`` with pycocotools' COCOeval (its prints silenced).

    ``predictions[i] = (boxes[n, 4] xyxy px, scores[n], labels[n] in 0..C-1)`` for ``split.images[i]``
    (tensors or arrays). At most ``max_dets`` detections per image count (the highest-scoring). Returns
    ``mAP`` (AP@[.5:.95]), ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``, each in 0..1;
    a metric whose objects do not exist in the split (COCO's -1, e.g. ``AP_large`` on 64x64 images) is
    NaN, so the keys are always the same. No detections at all score 0.0 (NaN where no such objects).
    """
    if len(predictions) != len(split.images):
        raise ValueError(f"got predictions for {len(predictions)} images, the split has {len(split.images)}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    results = []
    num_labels = len(split.category_ids)
    for i, (image_id, prediction) in enumerate(zip(split.image_ids, predictions)):
        boxes, scores, labels = (torch.as_tensor(t).detach().cpu() for t in prediction)
        boxes = boxes.double().reshape(-1, 4)
        scores = scores.double().reshape(-1)
        labels = labels.reshape(-1).long()
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"predictions[{i}]: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(f"predictions[{i}]: labels must be in 0..{num_labels - 1}")
        order = torch.argsort(scores, descending=True, stable=True)[:max_dets]
        for k in order.tolist():
            x0, y0, x1, y1 = boxes[k].tolist()
            results.append({"image_id": image_id, "category_id": split.category_ids[int(labels[k])],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[k])})
    if not results:
        return _no_detections(split)

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        dt = split.coco.loadRes(results)
        evaluator = COCOeval(split.coco, dt, iouType="bbox")
        evaluator.params.imgIds = list(split.image_ids)
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    params = evaluator.params
    area_index = {label: k for k, label in enumerate(params.areaRngLbl)}
    iou50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    iou75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else float("nan")

    every = area_index["all"]
    return {
        "mAP": mean(precision[:, :, :, every, 0]),
        "AP50": mean(precision[iou50, :, :, every, 0]),
        "AP75": mean(precision[iou75, :, :, every, 0]),
        "AP_small": mean(precision[:, :, :, area_index["small"], 0]),
        "AP_medium": mean(precision[:, :, :, area_index["medium"], 0]),
        "AP_large": mean(precision[:, :, :, area_index["large"], 0]),
    }


def _no_detections(split: DetectionSplit) -> dict[str, float]:
    """The metrics of an empty result, without COCOeval (which cannot load one): 0.0 where the split has
    (non-crowd) objects of that size, NaN where it has none -- what COCOeval gives for zero recall."""
    areas = [a["area"] for a in split.coco.dataset["annotations"] if not a.get("iscrowd", 0)]

    def score(low: float, high: float) -> float:
        return 0.0 if any(low <= a <= high for a in areas) else float("nan")

    overall = 0.0 if areas else float("nan")
    return {"mAP": overall, "AP50": overall, "AP75": overall,
            **{f"AP_{name}": score(*bounds) for name, bounds in _AREA_RANGES.items()}}
