"""The 2-D detection family's contract: images with boxes, scored by COCO mAP.

A detection task yields a train, a validation and optionally a test :class:`DetectionSplit`: image
tensors of one size per split, boxes as ``xyxy`` pixels in that (possibly resized) frame, labels
``0..C-1``, and the split's ground truth as a ``pycocotools`` :class:`~pycocotools.coco.COCO` object
rebuilt in the same frame, so :func:`automl.tasks.coco_eval.evaluate_detections` scores predictions
with the reference COCOeval code.
COCO-format files are read by :mod:`automl.tasks.coco_format`.
"""
from __future__ import annotations

import contextlib
import io
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import Task, TaskInfo


@dataclass(frozen=True)
class DetectionInfo(TaskInfo):
    """What a detector builder needs: ``DetectionInfo(class_names, image_size)`` with ``image_size``
    ``(H, W)``; ``input_shape == (3, H, W)`` and ``num_classes == len(class_names)`` are derived."""

    input_shape: tuple[int, ...] = field(init=False)
    num_classes: int = field(init=False)
    class_names: tuple[str, ...]
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        size = tuple(int(s) for s in self.image_size)
        if not names:
            raise ConfigError("a detection task needs at least one class")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"image_size must be (H, W) with positive sides, got {self.image_size!r}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "input_shape", (3, size[0], size[1]))
        object.__setattr__(self, "num_classes", len(names))


def parse_image_size(value: object, *, minimum: int, task: str) -> tuple[int, int]:
    """A task's ``image_size`` option, ``N`` or ``[H, W]`` of whole numbers >= ``minimum``, as ``(H, W)``;
    anything else is a :class:`ConfigError` naming the task and the field."""
    sides = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(sides, (list, tuple)) and len(sides) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= minimum for s in sides)):
        raise ConfigError(f"{task}: image_size must be an integer >= {minimum} or [H, W] of such, got {value!r}",
                          field="image_size")
    return int(sides[0]), int(sides[1])


@dataclass(frozen=True)
class DetectionSplit:
    """One split: per-image tensors plus its COCO ground truth (treat as read-only: tasks cache it).

    ``images[i]``: float32 ``[3, H, W]`` in 0..1 (one size for the whole split); ``boxes[i]``: float32
    ``[n, 4]`` ``xyxy`` pixels of the training objects (crowd regions left out); ``labels[i]``: int64
    ``[n]`` in ``0..C-1``; ``image_ids[i]``: the COCO image id; ``coco``: the ground truth of exactly these
    images in the same pixel frame (crowd regions included, as COCO evaluates them);
    ``category_ids[label]``: the COCO category id of a label; ``attributes[i]``: the image record's
    extra fields (e.g. ``{"period": "night", "weather": "rainy"}``), empty when not known.
    """

    images: list[torch.Tensor]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    image_ids: list[int]
    coco: Any  # pycocotools.coco.COCO (typed loosely: pycocotools ships no type information)
    category_ids: tuple[int, ...]
    attributes: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the split's images."""
        if not self.images:
            raise ValueError("an empty split has no image size")
        return int(self.images[0].shape[1]), int(self.images[0].shape[2])

    def batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
        """``(images[B, 3, H, W], boxes, labels)`` batches over the split, shuffled when ``rng`` is given
        (in order otherwise); the last batch holds the remainder."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self.images)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for start in range(0, n, batch_size):
            idx = [int(i) for i in order[start:start + batch_size]]
            yield (torch.stack([self.images[i] for i in idx]), [self.boxes[i] for i in idx],
                   [self.labels[i] for i in idx])

    def subset(self, indices: Sequence[int]) -> DetectionSplit:
        """The images at ``indices`` (in that order) with their ground truth rebuilt to hold only them,
        e.g. a fixed subsample of a large validation split for quick scoring."""
        idx = [int(i) for i in indices]
        keep = {self.image_ids[i] for i in idx}
        if len(keep) != len(idx):
            raise ValueError("subset indices must be distinct")
        dataset = self.coco.dataset
        gt = make_coco({
            "images": [self.coco.imgs[self.image_ids[i]] for i in idx],
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in keep],
            "categories": list(dataset["categories"]),
        })
        return DetectionSplit(
            images=[self.images[i] for i in idx], boxes=[self.boxes[i] for i in idx],
            labels=[self.labels[i] for i in idx], image_ids=[self.image_ids[i] for i in idx], coco=gt,
            category_ids=self.category_ids,
            attributes=[self.attributes[i] for i in idx] if self.attributes else [],
        )


@dataclass(frozen=True)
class DetectionData:
    """The train and validation splits of a detection task and, when it has one, its test split: held
    out of every search (no image of it is a train or validation image); estimators score it only when
    the trial asks for it (a pipeline's ``train`` step, :attr:`automl.estimator.EvalContext.scores_test`)."""

    train: DetectionSplit
    val: DetectionSplit
    test: DetectionSplit | None = None

    @property
    def has_test(self) -> bool:
        return self.test is not None

    def without_test(self) -> DetectionData:
        """The same data without its test split (what a search trial is handed)."""
        return DetectionData(train=self.train, val=self.val)


class DetectionTask(Task):
    """Base class of detection tasks (register with ``@tasks.register(name)``)."""

    family: ClassVar[str] = "detection"
    metrics: ClassVar[Mapping[str, str]] = {"mAP": "max", "AP50": "max", "AP75": "max", "AP_small": "max",
                                            "AP_medium": "max", "AP_large": "max"}

    @property
    @abstractmethod
    def info(self) -> DetectionInfo:
        """Cheap (no image loading): spaces read it at load time."""

    @abstractmethod
    def load(self) -> DetectionData:
        """The splits (tasks cache them per process: every trial loads them)."""

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, *self.info.input_shape)

    def check(self) -> None:
        """Read (and cache) the splits: a broken annotation file or a missing image is reported once,
        before the search starts."""
        self.load()


def make_coco(dataset: dict[str, Any]) -> Any:
    """A pycocotools COCO object over an in-memory dataset (its index built silently)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"info": {}, "licenses": [], **dataset}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
