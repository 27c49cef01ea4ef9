"""``gaussian-envs``: binary classification of ``dim``-D Gaussians with one spurious coordinate (an IRM-style
synthetic benchmark; nothing is downloaded).

With ``s = 2y - 1`` (``y`` drawn uniformly), the first ``dim - 1`` coordinates are invariant,
``N(s * 0.5, noise^2)`` in every environment; the last one is spurious, ``N(s * strength_e, noise^2)``
with the environment's own ``strength_e``. With the defaults (strengths +2 and +1 in training, -2 in the
test environment) the spurious coordinate predicts the label better than the invariant ones in training,
so empirical risk minimisation leans on it and fails where its sign flips; a classifier of the invariant
coordinates alone keeps its accuracy (about 0.91 at ``noise`` 1). Environments are named by their
strength (``+2``, ``+1``, ``-2``).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.environments import (
    EnvironmentData,
    EnvironmentsData,
    EnvironmentsInfo,
    EnvironmentsTask,
    default_roles,
)

SPURIOUS: tuple[float, ...] = (2.0, 1.0, -2.0)
#: the class-conditional mean (times ``s``) of every invariant coordinate
INVARIANT_MEAN = 0.5


def environment_name(strength: float) -> str:
    return f"{strength:+g}"


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"gaussian-envs: {field} must be a finite number, got {value!r}", field=field)
    return float(value)


def _integer(value: object, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"gaussian-envs: {field} must be an integer >= {low}, got {value!r}", field=field)
    return int(value)


@tasks.register("gaussian-envs")
class GaussianEnvsTask(EnvironmentsTask):
    """Options: ``dim`` (8: ``dim - 1`` invariant coordinates and the spurious last one), ``n_per_env``
    (1000 examples per environment), ``spurious`` (each environment's spurious strength, one environment
    per value; default +2, +1, -2), ``noise`` (1.0: every coordinate's standard deviation), ``train``,
    ``val``, ``test`` (environment names; default: test on the last, train on the others), ``seed`` (0)."""

    def __init__(self, dim: int = 8, n_per_env: int = 1000, spurious: Sequence[float] = SPURIOUS,
                 noise: float = 1.0, train: Sequence[str] | None = None, val: Sequence[str] | None = None,
                 test: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.dim = _integer(dim, "dim", 2)
        self.n_per_env = _integer(n_per_env, "n_per_env", 2)
        if isinstance(spurious, (str, bytes)) or not isinstance(spurious, Sequence) or len(spurious) < 2:
            raise ConfigError(f"gaussian-envs: spurious must be a list of >= 2 strengths, got {spurious!r}",
                              field="spurious")
        self.spurious = tuple(_number(s, "spurious") for s in spurious)
        names = [environment_name(s) for s in self.spurious]
        if len(set(names)) != len(names):
            raise ConfigError(f"gaussian-envs: spurious names an environment twice ({', '.join(names)})",
                              field="spurious")
        self.noise = _number(noise, "noise")
        if self.noise <= 0:
            raise ConfigError(f"gaussian-envs: noise must be > 0, got {noise!r}", field="noise")
        self.seed = _integer(seed, "seed", 0)
        self.train, self.val, self.test = default_roles(names, train, val, test, task="gaussian-envs")

    @property
    def spurious_index(self) -> int:
        """The spurious coordinate (the last)."""
        return self.dim - 1

    @property
    def info(self) -> EnvironmentsInfo:
        return EnvironmentsInfo(input_shape=(self.dim,), num_classes=2,
                                environments=tuple(environment_name(s) for s in self.spurious),
                                train=self.train, val=self.val, test=self.test)

    def load(self) -> EnvironmentsData:
        parts = _environments(self.dim, self.n_per_env, self.spurious, self.noise, self.seed)
        return EnvironmentsData(environments=dict(zip(self.info.environments, parts)), train=self.train,
                                val=self.val, test=self.test)

    def options(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_per_env": self.n_per_env, "spurious": self.spurious, "noise": self.noise,
                "train": self.train, "val": self.val, "test": self.test, "seed": self.seed}


@lru_cache(maxsize=4)
def _environments(dim: int, n: int, spurious: tuple[float, ...], noise: float,
                  seed: int) -> tuple[EnvironmentData, ...]:
    out = []
    for k, strength in enumerate(spurious):
        rng = np.random.default_rng([seed, k])
        y = rng.integers(0, 2, n)
        means = np.full(dim, INVARIANT_MEAN)
        means[-1] = strength
        x = (2 * y - 1)[:, None] * means + noise * rng.standard_normal((n, dim))
        out.append(EnvironmentData(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))))
    return tuple(out)
