"""Exporting a detnas trial (``automl export``): the student's backbone + FPN.

The detnas estimator keeps each candidate's whole detector in its own saved format
(:mod:`search_spaces.detnas.saved`, ``<key>.model.pt`` in the study's checkpoint store). What exports
with ``torch.export`` and ONNX is the tensor part: the input normalisation, the searched backbone and
the FPN, whose outputs are the feature maps at strides 4, 8, 16. mmdet's post-processing (the head's
box decoding, score thresholds and NMS over per-image ``DetDataSample``\\ s) does not export, so the
export says so in one line and writes the loadable whole detector as ``detector.pt`` beside the
programs::

    from search_spaces.detnas.saved import load_detector
    detector, saved = load_detector("exported/detector.pt")
    boxes, scores, labels = detector.predict(images)[0]

:func:`load_features` is the export's loader (``automl.load_model``): the exported module, with the
whole detector at its ``detector`` attribute.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from automl.artifacts import model_artifact
from automl.components import construct
from automl.errors import ConfigError
from automl.export import ExportRequest, ExportSource
from automl.registry import exporters
from automl.tasks.base import tasks
from automl.tasks.detection import DetectionInfo, DetectionTask
from automl.training.seeding import trial_seed
from search_spaces.detnas.detector import PIXEL_MEAN, PIXEL_STD, Detector, build_detnas
from search_spaces.detnas.saved import load_detector, read_saved

#: the file the whole detector (detnas's saved format) is written to in the export folder
DETECTOR_FILE = "detector.pt"


class DetectorFeatures(nn.Module):
    """The exportable part of a detnas detector: ``forward(images)`` normalises the images and returns the
    FPN's feature maps, one per level; the whole detector stays at :attr:`detector`."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.detector.features(images)


def export_detnas(request: ExportRequest) -> ExportSource:
    """The ``detnas`` exporter: the trial's kept detector, as its backbone + FPN."""
    name = model_artifact(request.trial.key)
    data = request.read_kept(name, "the detnas estimator keeps each candidate's detector under <key>.model.pt in "
                                   "the study's checkpoint store")
    saved = read_saved(data, name)
    info = DetectionInfo(class_names=tuple(saved["class_names"]), image_size=tuple(saved["image_size"]))
    model_cfg = saved["config"].get("model", saved["config"])
    detector = build_detnas(model_cfg, info)
    try:
        detector.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"{name}: the kept weights do not fit the detector its config describes: "
                          f"{str(exc).splitlines()[0]}") from None
    detector.eval()

    space = request.space
    task_name = space.task if space is not None and space.task else saved.get("task")
    if not task_name:
        raise ConfigError(f"{name}: the kept detector names no task, and the study's space cannot be rebuilt to "
                          "read its validation images")
    task_options = dict(space.task_options) if space is not None else {}
    task = construct(tasks.get(str(task_name)), task_options, kind="task", name=str(task_name))
    if not isinstance(task, DetectionTask):
        raise ConfigError(f"task {task_name!r} is not a detection task; the detnas exporter needs one")
    val = task.load().val
    images = torch.stack(list(val.images[:request.examples]))
    height, width = info.image_size
    strides = ", ".join(str(s) for s in detector.strides)
    shapes = ", ".join(f"[N, {detector.fpn_channels}, {height // s}, {width // s}]" for s in detector.strides)
    training: dict[str, object] = {
        "estimator": space.estimator if space is not None else "detnas",
        "seed": trial_seed(request.study_seed, request.trial.number) if request.study_seed is not None else None,
        "study_seed": request.study_seed, "budget": request.trial.budget,
        "inherited_from": request.trial.info.get("parent_key"), "morph": request.trial.info.get("action"),
    }
    if space is not None:
        training["estimator_options"] = dict(space.estimator_options)
        training["regimes"] = [{"name": n, "options": dict(o)} for n, o in space.regimes]
    return ExportSource(
        module=DetectorFeatures(detector).eval(), inputs=images,
        input={"name": "input", "dtype": "float32", "shape": ["N", 3, height, width],
               "description": f"float32 [N, 3, {height}, {width}] RGB images, values in 0..1 (normalised inside "
                              f"the model: (x - {PIXEL_MEAN}) / {PIXEL_STD}); classes {', '.join(info.class_names)}"},
        output=f"the FPN's feature maps at strides {strides}: float32 {shapes}",
        weights_file=DETECTOR_FILE, weights=data,
        weights_holds="the whole detector in detnas's saved format: config, weights, class names, image size "
                      "(search_spaces.detnas.saved.load_detector; .predict(images) gives boxes, scores, labels)",
        builder="detnas", config=dict(saved["config"]), task=str(task_name), task_options=task_options,
        family=task.family, training=training, task_resolved=task.options(),
        loader="search_spaces.detnas.export:load_features",
        note=f"detnas: exported the backbone + FPN only (features at strides {strides}); the {detector.kind} head's "
             f"box decoding and NMS (mmdet post-processing) do not export, so the whole detector is written as "
             f"{DETECTOR_FILE} (search_spaces.detnas.saved.load_detector)")


def load_features(path: str | Path) -> DetectorFeatures:
    """The exported module of a detnas export (``detector.pt``), in eval mode; ``.detector`` is the whole
    detector."""
    detector, _ = load_detector(path)
    return DetectorFeatures(detector).eval()


# added rather than decorated, so that ``export_detnas`` keeps its signature for its callers
exporters.add("detnas", export_detnas)
