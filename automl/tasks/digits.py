"""sklearn's digits (1,797 8x8 images, 10 classes), which ships inside scikit-learn: no download."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.supervised import ClassificationData, ClassificationInfo, ClassificationTask


@tasks.register("digits")
class DigitsTask(ClassificationTask):
    """Options: ``val_fraction`` (default 0.2), ``test_fraction`` (default 0.2: a test split that no
    search sees; 0 for none) and ``split_seed`` (default 0) of the stratified splits."""

    def __init__(self, val_fraction: float = 0.2, test_fraction: float = 0.2, split_seed: int = 0,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"digits: val_fraction must be in (0, 1), got {val_fraction}", field="val_fraction")
        if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 0.9:
            raise ConfigError(f"digits: test_fraction must be in [0, 1) and leave at least 10% for training, got "
                              f"{test_fraction}", field="test_fraction")
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)

    @property
    def info(self) -> ClassificationInfo:
        return ClassificationInfo(input_shape=(1, 8, 8), num_classes=10)

    def load(self) -> ClassificationData:
        return _load(self.val_fraction, self.test_fraction, self.split_seed)


@lru_cache(maxsize=4)
def _load(val_fraction: float, test_fraction: float, split_seed: int) -> ClassificationData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    test = None
    if test_fraction > 0:  # the test split first, so the validation split does not depend on it being asked for
        x, test_x, y, test_y = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
        test = (torch.from_numpy(test_x), torch.from_numpy(test_y))
    tx, vx, ty, vy = train_test_split(x, y, test_size=val_fraction / (1 - test_fraction), random_state=split_seed,
                                      stratify=y)
    return ClassificationData(torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(vx), torch.from_numpy(vy),
                              *(test or (None, None)))
