"""The environments family's contract: labelled examples grouped into named environments (domains),
each playing a role: ``train`` (models learn from them), ``val`` (model selection) or ``test`` (held
out: the out-of-distribution measurement; no search step sees them).

A task names every environment it has (:attr:`EnvironmentsInfo.environments`) and takes the roles as
options (:func:`assign_roles` checks them). Environments are made from records with an attribute
(``group_records(records, "period")``, the generic form of a ``where`` filter) or by transforming
data (rotating digits by an environment's angle).

DomainBed's train-domain validation is :meth:`EnvironmentsData.holdout`: a seeded ``fraction`` (20%) of
each environment held out by its own permutation, so every training environment keeps its share.
"""
from __future__ import annotations

import zlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from automl.errors import ConfigError
from automl.tasks.base import Task
from automl.tasks.supervised import ClassificationInfo

ROLES = ("train", "val", "test")
#: the share of each environment DomainBed holds out for model selection
HOLDOUT_FRACTION = 0.2


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

    def holdout(self, fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> tuple[EnvironmentsData, EnvironmentsData]:
        """``(fit, held)``: every environment split by its own seeded permutation (the seed and the
        environment's name), ``int(len * fraction)`` of its examples held out, as DomainBed does. Both keep
        the roles: ``held.pooled("train")`` is the train-domain validation split (with the environment
        index), ``held.pooled("test")`` the test-domain oracle's share."""
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"the held-out fraction must be in (0, 1), got {fraction!r}", field="fraction")
        fit: dict[str, EnvironmentData] = {}
        held: dict[str, EnvironmentData] = {}
        for name, env in self.environments.items():
            generator = torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}:{name}".encode()))
            order = torch.randperm(len(env.y), generator=generator)
            cut = int(len(env.y) * fraction)
            held[name] = EnvironmentData(env.x[order[:cut]], env.y[order[:cut]])
            fit[name] = EnvironmentData(env.x[order[cut:]], env.y[order[cut:]])
        roles = {"train": self.train, "val": self.val, "test": self.test}
        return EnvironmentsData(environments=fit, **roles), EnvironmentsData(environments=held, **roles)


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


def default_roles(available: Sequence[str], train: Sequence[str] | str | None, val: Sequence[str] | str | None,
                  test: Sequence[str] | str | None, *,
                  task: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """:func:`assign_roles` with ``rotated-digits``' defaults: without ``train``, the test environment is the
    last one (unless ``test`` is given) and every environment that no other role names trains."""
    if train is None:
        test = [available[-1]] if test is None else test
        held = {str(n) for role in (val, test) for n in ([role] if isinstance(role, str) else role or [])}
        train = [n for n in available if n not in held]
    return assign_roles(available, train, val, test, task=task)


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
