"""``colored-digits``: Colored MNIST (Arjovsky et al.'s IRM construction, DomainBed's ``ColoredMNIST``) on
sklearn's 8x8 digits; nothing is downloaded.

The images are dealt into the environments (a seeded, class-stratified deal: environments share no image).
In each, the label is binary (digit < 5), flipped with probability ``label_noise`` (0.25); the colour then
agrees with that noisy label with the environment's probability and the digit is drawn in one of two
channels (``(2, 8, 8)``: channel 1, green, for colour 1; the other channel is zero). The shape predicts
the label 75% of the time everywhere; the colour 90/80/70% in the training environments and 10% in the test
one, so a model that reads the colour fails there. Environments are named as DomainBed names them: the
agreement as ``+90%``, a reversed one (below 0.5) by its disagreement, ``-90%``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.digits_transfer import digits_images
from automl.tasks.environments import (
    EnvironmentData,
    EnvironmentsData,
    EnvironmentsInfo,
    EnvironmentsTask,
    default_roles,
)

CORRELATIONS: tuple[float, ...] = (0.9, 0.8, 0.7, 0.1)
LABEL_NOISE = 0.25


def environment_name(agreement: float) -> str:
    """DomainBed's name of an environment whose colour agrees with the label with probability ``agreement``."""
    return f"+{100 * agreement:g}%" if agreement >= 0.5 else f"-{100 * (1 - agreement):g}%"


def _probability(value: object, field: str, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= high:
        raise ConfigError(f"colored-digits: {field} must be a probability in [0, {high:g}], got {value!r}",
                          field=field)
    return float(value)


@tasks.register("colored-digits")
class ColoredDigitsTask(EnvironmentsTask):
    """Options: ``correlations`` (each environment's colour/label agreement, one environment per value;
    default 0.9, 0.8, 0.7, 0.1), ``label_noise`` (0.25), ``train``, ``val``, ``test`` (environment names;
    default: test on the last, train on those no other role names), ``seed`` (0: the deal, the label noise
    and the colours)."""

    def __init__(self, correlations: Sequence[float] = CORRELATIONS, label_noise: float = LABEL_NOISE,
                 train: Sequence[str] | None = None, val: Sequence[str] | None = None,
                 test: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__()
        if isinstance(correlations, (str, bytes)) or not isinstance(correlations, Sequence) or len(correlations) < 2:
            raise ConfigError(f"colored-digits: correlations must be a list of >= 2 probabilities, got "
                              f"{correlations!r}", field="correlations")
        self.correlations = tuple(_probability(c, "correlations") for c in correlations)
        names = [environment_name(c) for c in self.correlations]
        if len(set(names)) != len(names):
            raise ConfigError(f"colored-digits: correlations name an environment twice ({', '.join(names)})",
                              field="correlations")
        self.label_noise = _probability(label_noise, "label_noise", 0.5)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"colored-digits: seed must be an integer, got {seed!r}", field="seed")
        self.seed = seed
        self.train, self.val, self.test = default_roles(names, train, val, test, task="colored-digits")

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(environment_name(c) for c in self.correlations)

    @property
    def info(self) -> EnvironmentsInfo:
        return EnvironmentsInfo(input_shape=(2, 8, 8), num_classes=2, environments=self.environment_names,
                                train=self.train, val=self.val, test=self.test)

    def load(self) -> EnvironmentsData:
        parts = _environments(self.correlations, self.label_noise, self.seed)
        return EnvironmentsData(environments=dict(zip(self.environment_names, parts)), train=self.train,
                                val=self.val, test=self.test)

    def options(self) -> dict[str, Any]:
        return {"correlations": self.correlations, "label_noise": self.label_noise, "train": self.train,
                "val": self.val, "test": self.test, "seed": self.seed}


@lru_cache(maxsize=4)
def _environments(correlations: tuple[float, ...], label_noise: float, seed: int) -> tuple[EnvironmentData, ...]:
    x, digit = digits_images()
    rng = np.random.default_rng(seed)
    owner = np.empty(len(digit), dtype=np.int64)
    for cls in np.unique(digit):  # each class dealt round-robin after a shuffle: environments stay balanced
        members = rng.permutation(np.flatnonzero(digit == cls))
        owner[members] = np.arange(len(members)) % len(correlations)
    out = []
    for k, agreement in enumerate(correlations):
        index = np.flatnonzero(owner == k)
        draws = np.random.default_rng([seed, k]).random((2, len(index)))
        label = (digit[index] < 5).astype(np.int64) ^ (draws[0] < label_noise)
        colour = label ^ (draws[1] >= agreement)
        images = np.zeros((len(index), 2, 8, 8), dtype=np.float32)
        images[np.arange(len(index)), colour] = x[index, 0]
        out.append(EnvironmentData(torch.from_numpy(images), torch.from_numpy(label.astype(np.int64))))
    return tuple(out)
