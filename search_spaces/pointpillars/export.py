"""Exporting a PointPillars trial (``automl export``): the BEV network, and the whole detector as ``.pt``.

Pillar voxelisation (mmcv's ``Voxelization`` op, whose output size depends on the points) and the
head's box decoding and rotated NMS do not go through ``torch.export``. What exports (``model.pt2`` and
ONNX) is the tensor part from the pillar pseudo-image on: ``SECOND`` backbone -> ``SECONDFPN`` -> the
head's raw outputs; its input is the ``[N, C, ny, nx]`` pseudo-image that the pillar encoder scatters.
The loadable whole detector (config + weights, :mod:`search_spaces.pointpillars.saved`) is written
beside it as ``detector.pt``::

    from search_spaces.pointpillars.saved import load_pillars
    detector, saved = load_pillars("exported/detector.pt")
    boxes, scores, labels = detector.predict([points])[0]

:func:`load_bev` is the export's loader (``automl.load_model``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl.artifacts import model_artifact
from automl.components import construct
from automl.errors import ConfigError
from automl.export import ExportRequest, ExportSource
from automl.registry import exporters
from automl.tasks.base import tasks
from automl.tasks.detection3d import Detection3DTask
from automl.training.seeding import trial_seed
from search_spaces.pointpillars.detector import PillarsDetector
from search_spaces.pointpillars.saved import load_pillars, read_saved, rebuild

DETECTOR_FILE = "detector.pt"


class BevNetwork(nn.Module):
    """The exportable part of a PointPillars detector: ``forward(pseudo_image)`` runs the 2-D backbone,
    the FPN and the head; :meth:`pseudo_image` makes its input from points. The whole detector stays at
    :attr:`detector`."""

    def __init__(self, detector: PillarsDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, pseudo_image: torch.Tensor) -> Any:
        model = self.detector.model
        features = model.neck(model.backbone(pseudo_image))
        return model.bbox_head(features)

    @torch.no_grad()
    def pseudo_image(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """The pillar encoder's ``[B, C, ny, nx]`` output for a batch of ``points[N, D]`` frames."""
        model = self.detector.model
        voxels = self.detector._inputs(frames, training=False)["inputs"]["voxels"]
        features = model.voxel_encoder(voxels["voxels"], voxels["num_points"], voxels["coors"])
        image: torch.Tensor = model.middle_encoder(features, voxels["coors"], len(frames))
        return image


def export_pointpillars(request: ExportRequest) -> ExportSource:
    """The ``pointpillars`` exporter: the trial's kept detector (``<key>.model.pt``), as its BEV network."""
    name = model_artifact(request.trial.key)
    data = request.read_kept(name, "the detection3d estimator keeps each candidate's detector under <key>.model.pt "
                                   "in the study's checkpoint store")
    saved = read_saved(data, name)
    detector = rebuild(saved, name)
    task_name = request.space.task if request.space is not None and request.space.task else saved.get("task")
    if not task_name:
        raise ConfigError(f"{name}: the kept detector names no task, so no validation frames can be read")
    task_options = dict(request.space.task_options) if request.space is not None else dict(saved["task_options"])
    task = construct(tasks.get(str(task_name)), task_options, kind="task", name=str(task_name))
    if not isinstance(task, Detection3DTask):
        raise ConfigError(f"task {task_name!r} is not a 3-D detection task; the pointpillars exporter needs one")
    module = BevNetwork(detector).eval()
    frames = [f.points for f in task.load().val.frames[:request.examples]]
    inputs = module.pseudo_image(frames)
    _, channels, ny, nx = inputs.shape
    space = request.space
    training: dict[str, object] = {
        "estimator": space.estimator if space is not None else "detection3d",
        "seed": trial_seed(request.study_seed, request.trial.number) if request.study_seed is not None else None,
        "study_seed": request.study_seed, "budget": request.trial.budget,
    }
    if space is not None:
        training["estimator_options"] = dict(space.estimator_options)
    return ExportSource(
        module=module, inputs=inputs,
        input={"name": "pseudo_image", "dtype": "float32", "shape": ["N", int(channels), int(ny), int(nx)],
               "description": f"float32 [N, {channels}, {ny}, {nx}] pillar pseudo-image (BevNetwork.pseudo_image of "
                              f"float32 [P, {detector.point_dim}] points); classes {', '.join(detector.class_names)}"},
        output=f"the {detector.head} head's raw outputs (class scores and box regressions per BEV cell)",
        weights_file=DETECTOR_FILE, weights=data,
        weights_holds="the whole detector: config, weights, task info (search_spaces.pointpillars.saved.load_pillars; "
                      ".predict([points]) gives boxes [cx, cy, cz, l, w, h, yaw], scores, labels)",
        builder="pointpillars", config=dict(saved["config"]), task=str(task_name), task_options=task_options,
        family=task.family, training=training, task_resolved=task.options(),
        loader="search_spaces.pointpillars.export:load_bev",
        note=f"pointpillars: exported the BEV network (pseudo-image -> backbone -> FPN -> {detector.head} head); "
             f"pillar voxelisation (mmcv) and box decoding + rotated NMS do not export, so the whole detector is "
             f"written as {DETECTOR_FILE} (search_spaces.pointpillars.saved.load_pillars)")


def load_bev(path: str | Path) -> BevNetwork:
    """The exported module of a pointpillars export (``detector.pt``), in eval mode."""
    detector, _ = load_pillars(path)
    return BevNetwork(detector).eval()


exporters.add("pointpillars", export_pointpillars)
