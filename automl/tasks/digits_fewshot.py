"""``digits-fewshot``: few-shot episodes over sklearn's digits, from class-disjoint pools (base 0-3,
validation 4-6, novel 7-9 by default; nothing is downloaded)."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.digits_transfer import digits_images
from automl.tasks.episodic import EpisodicData, EpisodicInfo, EpisodicTask, LabelledPool


@tasks.register("digits-fewshot")
class DigitsFewshotTask(EpisodicTask):
    """Options: ``base``, ``val``, ``novel`` (disjoint digit lists), ``n_way`` (3), ``k_shot`` (1),
    ``n_query`` (5)."""

    def __init__(self, base: Sequence[int] = (0, 1, 2, 3), val: Sequence[int] = (4, 5, 6),
                 novel: Sequence[int] = (7, 8, 9), n_way: int = 3, k_shot: int = 1, n_query: int = 5) -> None:
        super().__init__()
        pools = {"base": tuple(int(c) for c in base), "val": tuple(int(c) for c in val),
                 "novel": tuple(int(c) for c in novel)}
        for name, classes in pools.items():
            if not set(classes) <= set(range(10)) or len(set(classes)) != len(classes):
                raise ConfigError(f"digits-fewshot: {name} must be distinct digits 0-9, got {list(classes)}",
                                  field=name)
            if len(classes) < n_way:
                raise ConfigError(f"digits-fewshot: the {name} pool has {len(classes)} classes; {n_way}-way "
                                  f"episodes need {n_way}", field=name)
        self.base, self.val, self.novel = pools["base"], pools["val"], pools["novel"]
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        EpisodicInfo(input_shape=(1, 8, 8), n_way=n_way, k_shot=k_shot, n_query=n_query)  # checks the shape

    @property
    def info(self) -> EpisodicInfo:
        return EpisodicInfo(input_shape=(1, 8, 8), n_way=self.n_way, k_shot=self.k_shot, n_query=self.n_query)

    def load(self) -> EpisodicData:
        return EpisodicData(*(_pool(classes) for classes in (self.base, self.val, self.novel)))


@lru_cache(maxsize=8)
def _pool(classes: tuple[int, ...]) -> LabelledPool:
    x, y = digits_images()
    index = np.flatnonzero(np.isin(y, classes))
    return LabelledPool(torch.from_numpy(x[index]), torch.from_numpy(y[index]))
