"""The supervised-classification family's contract: labelled tensors, scored by accuracy and loss."""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Mapping

import torch

from automl.tasks.base import Task, TaskInfo


@dataclass(frozen=True)
class ClassificationInfo(TaskInfo):
    """What a classifier builder needs: the shape of one input (without the batch dimension) and the
    number of classes."""

    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class ClassificationData:
    """Tensors of a train/validation split and, when the task has one, a test split: held out of every
    search (estimators score it only in a final evaluation, a pipeline's ``train`` step)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    @property
    def has_test(self) -> bool:
        return self.test_x is not None and self.test_y is not None

    def without_test(self) -> ClassificationData:
        """The same data without its test split (what a search trial is handed)."""
        return replace(self, test_x=None, test_y=None)


class ClassificationTask(Task):
    """A supervised classification task scored by validation accuracy (and cross-entropy)."""

    family: ClassVar[str] = "supervised"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min"}

    @property
    @abstractmethod
    def info(self) -> ClassificationInfo: ...

    @abstractmethod
    def load(self) -> ClassificationData: ...

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, *self.info.input_shape)
