"""The environments family's contract: labelled examples grouped into named environments (domains),
each playing a role: ``train`` (models learn from them), ``val`` (model selection) or ``test`` (held
out: the out-of-distribution measurement; no search step sees them).

A task names every environment it has (:attr:`EnvironmentsInfo.environments`) and takes the roles as
options (:func:`assign_roles` checks them). Environments are made from records with an attribute
(``group_records(records, "period")``, the generic form of a ``where`` filter) or by transforming
data (rotating digits by an environment's angle).
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from automl.errors import ConfigError
from automl.tasks.base import Task
from automl.tasks.supervised import ClassificationInfo

ROLES = ("train", "val", "test")


def role_of(holder: Any, name: str) -> tuple[str, ...]:
    """The environments ``holder`` (an info or the data) puts in role ``name``."""
    if name not in ROLES:
        raise ConfigError(f"unknown role {name!r}; expected one of {', '.join(ROLES)}")
    envs: tuple[str, ...] = getattr(holder, name)
    return envs


@dataclass(frozen=True)
class EnvironmentsInfo(ClassificationInfo):
    """A classifier's shape, every environment's name and the environments of each role."""

    environments: tuple[str, ...] = ()
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    def role(self, name: str) -> tuple[str, ...]:
        return role_of(self, name)


@dataclass(frozen=True)
class EnvironmentData:
    """One environment's examples and labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"an environment needs as many labels as examples, got {len(self.x)} and {len(self.y)}")


@dataclass(frozen=True)
class EnvironmentsData:
    """Every environment's data, keyed by name, and the roles (as in the task's info)."""

    environments: Mapping[str, EnvironmentData]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def role(self, name: str) -> tuple[str, ...]:
        return role_of(self, name)

    def pooled(self, role: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, environment index)`` of the role's environments concatenated, the index counting
        environments in the role's order (what per-environment losses such as IRM's need)."""
        names = self.role(role)
        if not names:
            raise ConfigError(f"the task has no {role} environments")
        parts = [self.environments[n] for n in names]
        index = torch.cat([torch.full((len(p.y),), i, dtype=torch.long) for i, p in enumerate(parts)])
        return torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), index


def assign_roles(available: Sequence[str], train: Sequence[str] | str | None, val: Sequence[str] | str | None,
                 test: Sequence[str] | str | None, *,
                 task: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Check a task's ``train``/``val``/``test`` options: known environment names, no environment in two
    roles, at least one train environment. ``test`` None means every environment no other role names."""
    def names(value: Sequence[str] | str | None, role: str) -> tuple[str, ...]:
        if value is None:
            return ()
        items = (value,) if isinstance(value, (str, int)) else tuple(value)
        out = tuple(str(v) for v in items)
        unknown = [n for n in out if n not in available]
        if unknown:
            raise ConfigError(f"{task}: unknown {role} environment {unknown[0]!r}; the task has "
                              f"{', '.join(available)}", field=role)
        return out

    chosen = {"train": names(train, "train"), "val": names(val, "val")}
    chosen["test"] = names(test, "test") if test is not None else tuple(
        n for n in available if n not in chosen["train"] and n not in chosen["val"])
    if not chosen["train"]:
        raise ConfigError(f"{task}: at least one train environment is needed", field="train")
    seen: dict[str, str] = {}
    for role in ROLES:
        for name in chosen[role]:
            if name in seen:
                raise ConfigError(f"{task}: environment {name!r} is both a {seen[name]} and a {role} environment",
                                  field=role)
            seen[name] = role
    return chosen["train"], chosen["val"], chosen["test"]


class EnvironmentsTask(Task):
    """Base class of multi-environment classification tasks (register with ``@tasks.register(name)``)."""

    family: ClassVar[str] = "environments"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "test_accuracy": "max", "loss": "min"}

    @property
    @abstractmethod
    def info(self) -> EnvironmentsInfo: ...

    @abstractmethod
    def load(self) -> EnvironmentsData: ...

    def example_input(self) -> Any:
        return torch.zeros(1, *self.info.input_shape)
