"""G-DetKD on a chosen (teacher, student) pair: what ``automl distill`` runs (PAPERS.md §4).

A detector is named by a spec: ``KIND`` (``faster-rcnn``, ``retinanet``, ``fcos``) with the role's
default backbone, ``KIND:STEM:D,D,D:W,W,W[:P,P,P]`` (stem channels, blocks per stage, stage widths,
optional prune ratios), or the path of a saved model (``best_model.pt`` of a detnas search, or a
``teacher.pt``/``student.pt`` written here), whose weights are then loaded. A teacher without weights is
trained first. Two-stage -> two-stage pairs are homogeneous (feature imitation + CKD + class KL +
class-aware localisation); any other pair is heterogeneous (feature imitation + CKD).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from automl.errors import ConfigError
from automl.tasks.detection import DetectionData, DetectionInfo
from automl.training.recipe import Recipe
from automl.training.seeding import seeded
from estimators.detection_training import evaluate_detector, train_detector
from estimators.regimes.distillation import GDetKDRegime, homogeneous
from estimators.regimes.gdetkd_config import GDetKDConfig
from search_spaces.detnas.detector import DETECTOR_KINDS, Detector, build_detnas
from search_spaces.detnas.saved import detector_bytes, read_saved

#: default backbones when a spec names only the detector kind: a wide teacher and a narrow student
DEFAULT_BACKBONES: Mapping[str, Mapping[str, Any]] = {
    "teacher": {"stem": 32, "fpn_channels": 64,
                "stages": [{"depth": 2, "width": w, "prune": 1.0} for w in (64, 128, 256)]},
    "student": {"stem": 16, "fpn_channels": 32,
                "stages": [{"depth": 1, "width": w, "prune": 1.0} for w in (16, 32, 64)]},
}
_SPEC = re.compile(r"^(?P<kind>[a-z-]+)(:(?P<stem>\d+):(?P<depths>[\d,]+):(?P<widths>[\d,]+)(:(?P<prunes>[\d.,]+))?)?$")


@dataclass(frozen=True)
class DetectorSpec:
    """A detector to build (``model`` is a detnas ``model`` config) and, for a saved model, its weights."""

    model: Mapping[str, Any]
    state_dict: Mapping[str, torch.Tensor] | None = None
    source: str = ""

    @property
    def kind(self) -> str:
        return str(self.model["detector"])

    def build(self, info: DetectionInfo) -> Detector:
        detector = build_detnas(self.model, info)
        if self.state_dict is not None:
            try:
                detector.load_state_dict(self.state_dict)
            except RuntimeError as exc:
                raise ConfigError(f"{self.source}: the saved weights do not fit the model they describe "
                                  f"(trained for another task?): {str(exc).splitlines()[0]}") from None
        return detector


def parse_spec(text: str, role: str, info: DetectionInfo) -> DetectorSpec:
    """A :class:`DetectorSpec` from a command-line spec (see the module docstring); ``role`` is
    ``teacher`` or ``student`` and picks the default backbone."""
    if text.endswith(".pt") or Path(text).is_file():
        return _saved_spec(Path(text), role, info)
    match = _SPEC.match(text)
    if match is None:
        raise ConfigError(f"--{role}: expected KIND, KIND:STEM:D,D,D:W,W,W[:P,P,P] or a saved .pt model, got {text!r}")
    kind = match["kind"]
    if kind not in DETECTOR_KINDS:
        raise ConfigError(f"--{role}: unknown detector {kind!r}; expected one of {', '.join(DETECTOR_KINDS)}")
    model = {"detector": kind, **DEFAULT_BACKBONES[role]}
    if match["stem"]:
        depths = [int(d) for d in match["depths"].split(",")]
        widths = [int(w) for w in match["widths"].split(",")]
        prunes = [float(p) for p in match["prunes"].split(",")] if match["prunes"] else [1.0] * len(depths)
        if not len(depths) == len(widths) == len(prunes) == 3:
            raise ConfigError(f"--{role}: {text!r} must give 3 depths, 3 widths (and 3 prune ratios)")
        if min(depths) < 1 or min(widths) < 1 or not all(0 < p <= 1 for p in prunes):
            raise ConfigError(f"--{role}: {text!r}: depths and widths must be >= 1 and prune ratios in (0, 1]")
        model.update(stem=int(match["stem"]), stages=[{"depth": d, "width": w, "prune": p}
                                                      for d, w, p in zip(depths, widths, prunes)])
    return DetectorSpec(model=model, source=text)


def _saved_spec(path: Path, role: str, info: DetectionInfo) -> DetectorSpec:
    if not path.is_file():
        raise ConfigError(f"--{role}: no such file {str(path)!r}")
    saved = read_saved(path.read_bytes(), f"--{role} {path}")
    if list(saved["class_names"]) != list(info.class_names):
        raise ConfigError(f"--{role}: {path} was trained for classes {saved['class_names']}, "
                          f"the task has {list(info.class_names)}")
    return DetectorSpec(model=saved["config"]["model"], state_dict=saved["state_dict"], source=str(path))


@dataclass(frozen=True)
class DistillReport:
    """The outcome of one distillation run; ``baseline`` is the same student trained without a teacher
    (with ``compare``)."""

    teacher_kind: str
    student_kind: str
    homogeneous: bool
    teacher: Mapping[str, float]
    student: Mapping[str, float]
    baseline: Mapping[str, float] | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    head_transfer: int = 0  # RoI-head tensors copied from the teacher (homogeneous pairs)

    def as_json(self) -> dict[str, Any]:
        return {"teacher_kind": self.teacher_kind, "student_kind": self.student_kind,
                "homogeneous": self.homogeneous, "head_transfer": self.head_transfer,
                "teacher": dict(self.teacher), "student": dict(self.student),
                "baseline": dict(self.baseline) if self.baseline is not None else None,
                "seconds": dict(self.seconds)}


def transfer_roi_head(teacher: Detector, student: Detector) -> int:
    """G-DetKD's head transfer for homogeneous two-stage pairs: every RoI-head tensor of the teacher
    whose shape the student's matches initialises it (with different FPN widths the first layer
    differs and keeps its own init). Returns how many tensors were copied."""
    prefix = "model.roi_head."
    source = {k: v for k, v in teacher.state_dict().items() if k.startswith(prefix)}
    copied = 0
    with torch.no_grad():
        for key, tensor in student.state_dict(keep_vars=True).items():
            if key in source and source[key].shape == tensor.shape:
                tensor.copy_(source[key])
                copied += 1
    return copied


def distill(teacher_spec: DetectorSpec, student_spec: DetectorSpec, data: DetectionData, info: DetectionInfo, *,
            teacher_recipe: Recipe, student_recipe: Recipe, kd: GDetKDConfig, rois: str = "gt",
            seed: int = 0, compare: bool = False, out_dir: Path | None = None,
            on_phase: Callable[[str], None] | None = None) -> DistillReport:
    """Train (or load) the teacher, then train the student with G-DetKD from it (homogeneous pairs first
    get the teacher's RoI head where shapes match) and, with ``compare``, the same student from the same
    initialisation without KD or head transfer; score all on the validation split.
    With ``out_dir``, ``teacher.pt``, ``student.pt`` and ``report.json`` are written there."""
    say = on_phase or (lambda _: None)
    seconds: dict[str, float] = {}
    with seeded(seed):
        teacher = teacher_spec.build(info)
    if teacher_spec.state_dict is None:
        say(f"training the teacher ({teacher_spec.kind}, {teacher_recipe.steps} steps)")
        seconds["teacher"] = train_detector(teacher, data.train, teacher_recipe, seed=seed).seconds
    teacher_scores = evaluate_detector(teacher, data.val)
    teacher.eval()

    with seeded(seed + 1):
        student = student_spec.build(info)
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    transferred = transfer_roi_head(teacher, student) if homogeneous(student, teacher) else 0
    if transferred:
        say(f"head transfer: {transferred} RoI-head tensors of the teacher initialise the student's")
    say(f"distilling into the student ({student_spec.kind}, {student_recipe.steps} steps)")
    regime = GDetKDRegime.of(teacher, kd, rois)
    stats = train_detector(student, data.train, student_recipe, seed=seed + 2, regimes=[regime])
    seconds["student"] = stats.seconds
    student_scores = evaluate_detector(student, data.val)
    baseline_scores = None
    if compare:
        say("training the same student without a teacher (--compare)")
        baseline = student_spec.build(info)
        baseline.load_state_dict(initial)
        seconds["baseline"] = train_detector(baseline, data.train, student_recipe, seed=seed + 2).seconds
        baseline_scores = evaluate_detector(baseline, data.val)
    report = DistillReport(teacher_spec.kind, student_spec.kind, homogeneous(student, teacher), teacher_scores,
                           student_scores, baseline_scores, seconds, transferred)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, detector, spec in (("teacher", teacher, teacher_spec), ("student", student, student_spec)):
            path = out_dir / f"{name}.pt"
            path.with_suffix(".tmp").write_bytes(detector_bytes(detector, spec.model, info))
            path.with_suffix(".tmp").replace(path)
        (out_dir / "report.json").write_text(json.dumps(report.as_json(), indent=2))
    return report
