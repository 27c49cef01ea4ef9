"""The task contract: a task provides data, says how models for it are shaped, and what it reports.

Tasks come in *families* (:data:`FAMILIES`), each with its own contract module that fixes the shape of
``info`` and of what ``load()`` returns: :mod:`automl.tasks.supervised`, :mod:`automl.tasks.text`,
:mod:`automl.tasks.detection`, :mod:`automl.tasks.detection3d`, :mod:`automl.tasks.episodic`,
:mod:`automl.tasks.environments`. Estimators and regimes declare the families they accept; the study
checks them once, when it is created.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from automl.components import reject_options
from automl.registry import Registry

#: family name -> what its tasks are
FAMILIES: Mapping[str, str] = {
    "supervised": "labelled examples (tensors) for classification",
    "text": "token sequences for masked-LM pre-training and classification",
    "detection": "images with 2-D boxes, scored by COCO mAP",
    "detection3d": "point clouds with 7-DoF 3-D boxes",
    "episodic": "N-way K-shot episodes from disjoint class pools",
    "environments": "examples grouped into named train/validation/test environments",
}


@dataclass(frozen=True)
class TaskInfo:
    """What a builder needs to shape a model for a task; each family's contract extends it. Cheap: made
    without loading any data."""


class Task(ABC):
    """Base class of tasks; register with ``@tasks.register(name)``.

    Options are the keyword arguments of ``__init__``, validated there (a bad value is a
    :class:`ConfigError`); an unknown option is refused when the task is built
    (:func:`automl.components.construct`)."""

    #: the family whose contract the task follows (a key of :data:`FAMILIES`)
    family: ClassVar[str]
    #: metric name -> ``"max"`` | ``"min"``: what scoring a model on this task reports
    metrics: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **options: Any) -> None:
        reject_options("task", type(self), options)

    @property
    @abstractmethod
    def info(self) -> TaskInfo:
        """Cheap (no data is loaded): spaces and builders read it."""

    @abstractmethod
    def load(self) -> Any:
        """The data, as the family's contract says; deterministic for the same options."""

    @abstractmethod
    def example_input(self) -> Any:
        """One input of batch size 1, as a model of this task takes it (cost measurement runs it)."""

    def check(self) -> None:
        """Raise a :class:`ConfigError` for data that cannot be used, before a search starts rather than
        in every trial (default: nothing to check beyond the options)."""

    def options(self) -> dict[str, Any]:
        """The task's options (default: its public attributes, which ``__init__`` sets from them)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def fingerprint(self) -> str:
        """A short, stable hash of the data this task yields (class and options), for caches keyed by
        data (a trained supernet or teacher). Tasks that read files override it to hash their contents."""
        blob = json.dumps({"task": f"{type(self).__module__}.{type(self).__qualname__}", "options": self.options()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: tasks by name (entry-point group ``automl.tasks``)
tasks: Registry[type[Task]] = Registry("tasks")
