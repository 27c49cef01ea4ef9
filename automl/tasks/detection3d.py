"""The 3-D detection family's contract: LiDAR point clouds with 7-DoF boxes.

A frame is ``points[N, D]`` (float32; the first three columns are x, y, z in metres, then e.g.
intensity) and its objects, ``boxes[n, 7]`` as ``(x, y, z, l, w, h, yaw)`` -- centre, length along the
heading, width, height, heading angle in radians about z -- with ``labels[n]`` in ``0..C-1``. A task
yields train and validation splits of frames (and a test split when it has one); a detector's input
for cost measurement is one frame's points as ``[1, N, D]``.

A task may also offer an *unlabeled* stream of frames (e.g. ONCE's raw splits, for semi-supervised
regimes): :meth:`Detection3DTask.unlabeled_frames` yields them lazily, in a seeded order, from any
position (``start``), with empty ``boxes [0, 7]`` and ``labels [0]``; :attr:`Detection3DTask.has_unlabeled`
says whether it has one.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Mapping

import torch

from automl.errors import ConfigError
from automl.tasks.base import Task, TaskInfo

BOX_DIM = 7


@dataclass(frozen=True)
class Detection3DInfo(TaskInfo):
    """What a 3-D detector builder needs: the class names, the point features ``point_dim``, the
    region of interest ``point_range = (x_min, y_min, z_min, x_max, y_max, z_max)`` in metres and the
    task's default pillar/voxel size ``voxel_size = (dx, dy, dz)`` in metres (a builder's own pillar
    size overrides it)."""

    class_names: tuple[str, ...]
    point_dim: int
    point_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float] = (0.2, 0.2, 8.0)

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ConfigError("a 3-D detection task needs at least one class")
        if self.point_dim < 3:
            raise ConfigError(f"points need at least x, y, z (point_dim >= 3), got {self.point_dim}")
        low, high = self.point_range[:3], self.point_range[3:]
        if len(self.point_range) != 6 or any(not h > lo for lo, h in zip(low, high)):
            raise ConfigError(f"point_range must be (x_min, y_min, z_min, x_max, y_max, z_max) with max > min, got "
                              f"{self.point_range!r}")
        if len(self.voxel_size) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                            or not math.isfinite(v) or v <= 0 for v in self.voxel_size):
            raise ConfigError(f"voxel_size must be (dx, dy, dz) in metres, each > 0, got {self.voxel_size!r}",
                              field="voxel_size")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Frame3D:
    """One LiDAR frame and its objects (checked on construction)."""

    frame_id: str
    points: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    attributes: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_frame(self.points, self.boxes, self.labels, where=self.frame_id)


def check_frame(points: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, *, where: str) -> None:
    """Raise ValueError naming ``where`` for a frame that does not follow the contract."""
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"{where}: points must be [N, D] with D >= 3, got {tuple(points.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != BOX_DIM:
        raise ValueError(f"{where}: boxes must be [n, 7] (x, y, z, l, w, h, yaw), got {tuple(boxes.shape)}")
    if len(labels) != len(boxes):
        raise ValueError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
    if len(boxes) and (not torch.isfinite(boxes).all() or (boxes[:, 3:6] <= 0).any()):
        raise ValueError(f"{where}: boxes must be finite with positive l, w, h")


def normalise_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Angles wrapped into [-pi, pi)."""
    return torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi


@dataclass(frozen=True)
class Detection3DSplit:
    """The frames of one split."""

    frames: tuple[Frame3D, ...]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Detection3DData:
    """Train and validation splits, and the test split when the task has one."""

    train: Detection3DSplit
    val: Detection3DSplit
    test: Detection3DSplit | None = None


class Detection3DTask(Task):
    """Base class of 3-D detection tasks (register with ``@tasks.register(name)``)."""

    family: ClassVar[str] = "detection3d"
    metrics: ClassVar[Mapping[str, str]] = {"mAP": "max"}
    #: points in the example input of cost measurement (a typical frame after range cropping)
    example_points: ClassVar[int] = 16384

    @property
    @abstractmethod
    def info(self) -> Detection3DInfo: ...

    @abstractmethod
    def load(self) -> Detection3DData: ...

    @property
    def has_unlabeled(self) -> bool:
        """Whether :meth:`unlabeled_frames` yields frames (default: no unlabeled stream)."""
        return False

    def unlabeled_frames(self, *, seed: int = 0, start: int = 0, limit: int | None = None) -> Iterator[Frame3D]:
        """The task's unlabeled frames, read lazily one at a time (never the whole stream in memory), in
        an order fixed by ``seed``; ``start`` skips the first ``start`` frames of that order (a consumer
        resumes at position ``start``) and ``limit`` stops after that many. Each frame has empty
        ``boxes [0, 7]`` and ``labels [0]`` and is never one of the labeled splits' frames. Default: a
        :class:`ConfigError` (the task has none)."""
        raise ConfigError(f"task {type(self).__name__} has no unlabeled frames (has_unlabeled is False)")

    def example_input(self) -> torch.Tensor:
        """``[1, example_points, point_dim]`` points spread uniformly over the point range (seeded)."""
        info = self.info
        generator = torch.Generator().manual_seed(0)
        low = torch.tensor(info.point_range[:3])
        high = torch.tensor(info.point_range[3:])
        xyz = low + (high - low) * torch.rand(self.example_points, 3, generator=generator)
        extra = torch.rand(self.example_points, info.point_dim - 3, generator=generator)
        return torch.cat([xyz, extra], dim=1)[None]
