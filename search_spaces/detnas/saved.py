"""Saved detnas detectors: one file holds a trained detector's config, weights, class names and image
size, so it can be rebuilt anywhere (``best_model.pt`` of a detnas search, ``automl distill``'s
``teacher.pt``/``student.pt``)::

    detector, saved = load_detector("automl-runs/detnas/best_model.pt")
    boxes, scores, labels = detector.predict(images)[0]      # images: float [B, 3, H, W] in 0..1
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import torch

from automl.errors import ConfigError
from automl.tasks.detection import DetectionInfo
from search_spaces.detnas.detector import Detector, build_detnas


def detector_bytes(detector: Detector, config: Mapping[str, Any], info: DetectionInfo,
                   **extra: Any) -> bytes:
    """The saved form of ``detector``: ``config`` (a detnas config, or just its ``model`` part), the
    weights, the task's class names and image size, and ``extra`` fields (e.g. the space's name)."""
    full = dict(config) if "model" in config else {"model": dict(config)}
    buffer = io.BytesIO()
    torch.save({"config": full, "state_dict": detector.state_dict(), "class_names": list(info.class_names),
                "image_size": list(info.image_size), **extra}, buffer)
    return buffer.getvalue()


def read_saved(data: bytes, source: str) -> dict[str, Any]:
    """The fields of a saved detector; anything else is a :class:`ConfigError` naming ``source``."""
    try:
        saved = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    except Exception as exc:
        raise ConfigError(f"{source}: not a model saved by automl ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or not {"config", "state_dict", "class_names", "image_size"} <= set(saved):
        raise ConfigError(f"{source}: not a model saved by automl (expected config, state_dict, class_names "
                          f"and image_size)")
    return saved


def load_detector(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """Rebuild a saved detector (in eval mode) and return it with the saved fields."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    saved = read_saved(path.read_bytes(), str(path))
    info = DetectionInfo(class_names=tuple(saved["class_names"]), image_size=tuple(saved["image_size"]))
    detector = build_detnas(saved["config"]["model"], info)
    try:
        detector.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"{path}: the saved weights do not fit the model its config describes: "
                          f"{str(exc).splitlines()[0]}") from None
    return detector.eval(), saved
