"""The saved format of a PointPillars detector (``<key>.model.pt`` in a study's checkpoint store, and
``detector.pt`` in an export): its config, weights and the task info it was built for, so it rebuilds
anywhere mmdet3d is installed::

    from search_spaces.pointpillars.saved import load_pillars
    detector, saved = load_pillars("exported/detector.pt")
    boxes, scores, labels = detector.predict([points])[0]  # points float32 [N, 4]; boxes [cx, cy, cz, l, w, h, yaw]
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import torch

from automl.errors import ConfigError
from automl.tasks.detection3d import Detection3DInfo
from search_spaces.pointpillars.detector import PillarsDetector, build_pointpillars

FORMAT = "automl-pointpillars-1"


def detector_bytes(detector: PillarsDetector, config: Mapping[str, Any], info: Detection3DInfo, *,
                   space: str | None, task: str | None, task_options: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "config": dict(config), "state_dict": detector.state_dict(),
                "class_names": list(info.class_names), "point_dim": info.point_dim,
                "point_range": list(info.point_range), "voxel_size": list(info.voxel_size), "space": space,
                "task": task, "task_options": dict(task_options)}, buffer)
    return buffer.getvalue()


def read_saved(data: bytes, source: str) -> dict[str, Any]:
    """The saved dict; a file in another format is a ConfigError naming ``source``."""
    try:
        saved = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    except Exception as exc:  # torch.load raises many types on a corrupt file: say which file
        raise ConfigError(f"{source}: not a saved PointPillars detector ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ConfigError(f"{source}: not a saved PointPillars detector (format {FORMAT!r} expected)")
    return saved


def saved_info(saved: Mapping[str, Any]) -> Detection3DInfo:
    return Detection3DInfo(class_names=tuple(saved["class_names"]), point_dim=int(saved["point_dim"]),
                           point_range=tuple(float(v) for v in saved["point_range"]),  # type: ignore[arg-type]
                           voxel_size=tuple(float(v) for v in saved["voxel_size"]))  # type: ignore[arg-type]


def rebuild(saved: Mapping[str, Any], source: str) -> PillarsDetector:
    """The detector a saved dict describes, weights loaded, in eval mode."""
    config = saved["config"]
    detector = build_pointpillars(config.get("model", config), saved_info(saved))
    try:
        detector.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"{source}: the weights do not fit the detector its config describes: "
                          f"{str(exc).splitlines()[0]}") from None
    return detector.eval()


def load_pillars(path: str | Path) -> tuple[PillarsDetector, dict[str, Any]]:
    """A saved detector (``detector.pt`` of an export, or a study's ``<key>.model.pt``) and its saved dict."""
    saved = read_saved(Path(path).read_bytes(), str(path))
    return rebuild(saved, str(path)), saved
