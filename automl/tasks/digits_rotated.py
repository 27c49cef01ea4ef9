"""``rotated-digits``: sklearn's digits dealt into environments, each rotated by its own angle (the
Rotated-MNIST construction of DomainBed at digits scale; nothing is downloaded).

Every image goes to exactly one environment (a seeded, class-stratified deal), so environments share
no image; an environment's images are rotated by its angle (bilinear, zero fill). By default the
environments are 0, 15, 30, 45, 60 and 75 degrees, training on the first five and testing on 75.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.digits_transfer import digits_images, rotate_resize
from automl.tasks.environments import (
    EnvironmentData,
    EnvironmentsData,
    EnvironmentsInfo,
    EnvironmentsTask,
    default_roles,
)

ANGLES: tuple[int, ...] = (0, 15, 30, 45, 60, 75)


@tasks.register("rotated-digits")
class RotatedDigitsTask(EnvironmentsTask):
    """Options: ``angles`` (one environment per angle, named by it; default 0..75 by 15), ``train``, ``val``,
    ``test`` (environment names; default: test on the last, train on those no other role names),
    ``deal_seed`` (0)."""

    def __init__(self, angles: Sequence[int] = ANGLES, train: Sequence[str] | None = None,
                 val: Sequence[str] | None = None, test: Sequence[str] | None = None, deal_seed: int = 0) -> None:
        super().__init__()
        chosen = tuple(int(a) for a in angles)
        if len(chosen) < 2 or len(set(chosen)) != len(chosen):
            raise ConfigError(f"rotated-digits: angles must be >= 2 distinct integers, got {list(angles)}",
                              field="angles")
        self.angles = chosen
        names = [str(a) for a in chosen]
        self.train, self.val, self.test = default_roles(names, train, val, test, task="rotated-digits")
        self.deal_seed = int(deal_seed)

    @property
    def info(self) -> EnvironmentsInfo:
        return EnvironmentsInfo(input_shape=(1, 8, 8), num_classes=10, environments=tuple(str(a) for a in self.angles),
                                train=self.train, val=self.val, test=self.test)

    def load(self) -> EnvironmentsData:
        parts = _environments(self.angles, self.deal_seed)
        return EnvironmentsData(environments=dict(zip((str(a) for a in self.angles), parts)), train=self.train,
                                val=self.val, test=self.test)

    def options(self) -> dict[str, Any]:
        return {"angles": self.angles, "train": self.train, "val": self.val, "test": self.test,
                "deal_seed": self.deal_seed}


@lru_cache(maxsize=4)
def _environments(angles: tuple[int, ...], seed: int) -> tuple[EnvironmentData, ...]:
    x, y = digits_images()
    rng = np.random.default_rng(seed)
    owner = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):  # deal each class round-robin after a shuffle: environments stay balanced
        members = rng.permutation(np.flatnonzero(y == cls))
        owner[members] = np.arange(len(members)) % len(angles)
    out = []
    for k, angle in enumerate(angles):
        index = np.flatnonzero(owner == k)
        images = torch.from_numpy(x[index])
        if angle:
            images = rotate_resize(images, float(angle), images.shape[-1])
        out.append(EnvironmentData(images.contiguous(), torch.from_numpy(y[index])))
    return tuple(out)
