"""The task contract: a task provides data and says how models for it are shaped and scored."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from automl.errors import ConfigError


@dataclass(frozen=True)
class TaskInfo:
    """What a builder needs to shape a model for the task."""

    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class ClassificationData:
    """Tensors of a train/validation split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


class Task(ABC):
    """Base class of tasks; register with ``@tasks.register(name)``."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigError(f"task {type(self).__name__} got unknown options {sorted(options)}")

    @property
    @abstractmethod
    def info(self) -> TaskInfo: ...

    def check(self) -> None:
        """Raise a :class:`ConfigError` for data that cannot be used, before a search starts rather than
        in every trial (default: nothing to check beyond the options)."""


class ClassificationTask(Task):
    """A supervised classification task scored by validation accuracy."""

    @abstractmethod
    def load(self) -> ClassificationData: ...
