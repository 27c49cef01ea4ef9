"""The ``gdetkd`` regime: G-DetKD distillation (:mod:`estimators.regimes.gdetkd`) from a teacher detector
on every training step of a detection student.

Options are :class:`~estimators.regimes.gdetkd.GDetKDConfig`'s (``feature``, ``ckd``, the weights, ...)
plus ``rois``: ``gt`` (ground-truth boxes as RoIs, the small-scale default) or ``predicted`` (the
student's predictions matched to the ground truth, sampled 1:3 positive:negative: G-DetKD's RoIs for
heterogeneous pairs). The teacher is given by code (the ``detnas`` estimator's teacher pool,
``automl distill``'s teacher), never by a space file. Homogeneous two-stage pairs add the class-KL and
localisation terms on both RoI heads' outputs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Protocol, Sequence

import torch
from torch import nn

from automl.errors import ConfigError
from automl.training.regime import Batch, FitRun, Regime, StepOutput, regimes
from estimators.regimes.gdetkd import GDetKD, gt_rois, sample_rois
from estimators.regimes.gdetkd_config import GDetKDConfig

ROI_SOURCES = ("gt", "predicted")


class DistillableDetector(Protocol):
    """What G-DetKD needs of a detector (:class:`search_spaces.detnas.detector.Detector` has it)."""

    # read-only members (a property or a plain attribute of the detector fits them)
    @property
    def two_stage(self) -> bool: ...

    @property
    def fpn_channels(self) -> int: ...

    @property
    def strides(self) -> Sequence[int]: ...

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def predict(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]: ...

    def roi_outputs(self, features: Sequence[torch.Tensor],
                    rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def eval(self) -> Any: ...


def homogeneous(student: DistillableDetector, teacher: DistillableDetector) -> bool:
    """Both two-stage: G-DetKD then adds the class-probability KL and class-aware localisation terms."""
    return student.two_stage and teacher.two_stage


def _split_options(options: Mapping[str, Any]) -> tuple[GDetKDConfig, str]:
    rest = dict(options)
    rois = rest.pop("rois", "gt")
    if rois not in ROI_SOURCES:
        raise ConfigError(f"rois must be one of {', '.join(ROI_SOURCES)}, got {rois!r}", field="rois")
    return GDetKDConfig.from_mapping(rest), str(rois)


@regimes.register("gdetkd")
class GDetKDRegime(Regime):
    """G-DetKD distillation from ``teacher`` (see the module docstring)."""

    families: ClassVar[frozenset[str] | None] = frozenset({"detection"})

    def __init__(self, *, teacher: DistillableDetector, **options: Any) -> None:
        super().__init__()
        self.config, self.rois = _split_options(options)
        self.teacher = teacher
        self.distiller: GDetKD | None = None
        self.student: DistillableDetector | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any], name: str) -> None:
        _split_options(options)

    @classmethod
    def of(cls, teacher: DistillableDetector, config: GDetKDConfig, rois: str = "gt") -> GDetKDRegime:
        """The regime for an already-built config."""
        return cls(teacher=teacher, rois=rois, **dataclasses.asdict(config))

    def start(self, run: FitRun) -> None:
        student: DistillableDetector = run.model  # type: ignore[assignment]
        self.student = student
        self.distiller = GDetKD(self.config, student_channels=student.fpn_channels,
                                teacher_channels=self.teacher.fpn_channels, strides=student.strides,
                                teacher_strides=self.teacher.strides)
        self.teacher.eval()

    def parameters(self) -> Sequence[nn.Parameter]:
        return self.distiller.extra_parameters() if self.distiller is not None else ()

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        assert self.distiller is not None and self.student is not None, "start() was not called"
        images, boxes, _ = batch
        features = output.outputs
        student, teacher = self.student, self.teacher
        with torch.no_grad():
            teacher_features = teacher.features(images)
        if self.rois == "predicted":
            predicted = [b for b, _, _ in student.predict(images)]  # predict keeps the training mode
            rois = sample_rois(predicted, boxes)
        else:
            rois = gt_rois(boxes)
        extra: dict[str, torch.Tensor] = {}
        if homogeneous(student, teacher) and len(rois):
            extra["student_cls"], extra["student_reg"] = student.roi_outputs(features, rois)
            with torch.no_grad():
                extra["teacher_cls"], extra["teacher_reg"] = teacher.roi_outputs(teacher_features, rois)
        terms: Mapping[str, torch.Tensor] = self.distiller(features, teacher_features, rois, **extra)
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {"distiller": self.distiller.state_dict() if self.distiller is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.distiller is not None and state.get("distiller") is not None:
            self.distiller.load_state_dict(state["distiller"])
