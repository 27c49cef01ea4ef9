"""One recipe type for every training run: optimiser, learning-rate schedule, clipping, what to do with a
non-finite step. Validated on construction, so a bad value fails where the recipe is made (at study
creation for estimator options), never in the middle of a run."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from automl.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
#: ``constant``; ``cosine`` (torch's CosineAnnealingLR over ``horizon`` steps); ``warmup-linear`` (linear
#: rise over ``warmup`` steps, then linear decay to 0 at ``horizon``: the BERT recipe); ``warmup-cosine``
#: (linear rise to ``lr`` over ``warmup`` steps, then cosine decay to 0 at ``horizon``)
SCHEDULES = ("constant", "cosine", "warmup-linear", "warmup-cosine")
NONFINITE = ("raise", "skip")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained for ``steps`` optimiser steps.

    ``horizon`` is the number of steps the schedule spans (default ``steps``): training with a shorter
    ``steps`` and the same horizon is an exact prefix of the longer run, so a checkpoint continues it.
    ``clip`` is the gradient-norm bound (None: no clipping). ``nonfinite="skip"`` skips a step whose
    loss is not finite (the schedule still advances; an exploding random sub-network must not poison
    shared weights); ``"raise"`` stops the run with :class:`FloatingPointError`. ``batch_size`` is read
    by whoever builds the batches.
    """

    steps: int
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0
    horizon: int | None = None
    clip: float | None = None
    nonfinite: str = "raise"
    batch_size: int = 64

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"must be {expected}, got {getattr(self, name)!r} (training recipe)", field=name)

        for name in ("steps", "warmup", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "batch_size" else 0):
                raise bad(name, "an integer >= 1" if name == "batch_size" else "an integer >= 0")
        if self.horizon is not None and (not isinstance(self.horizon, int) or self.horizon < 0):
            raise bad("horizon", "an integer >= 0 or None")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("nonfinite", NONFINITE)):
            if getattr(self, name) not in choices:
                raise bad(name, "one of " + ", ".join(choices))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a number > 0")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise bad(name, "a number >= 0")
        if self.clip is not None and not (isinstance(self.clip, (int, float)) and self.clip > 0):
            raise bad("clip", "a number > 0 or None")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise bad("nesterov", "False unless the optimizer is sgd with momentum > 0")

    @property
    def span(self) -> int:
        """Steps the schedule spans."""
        return self.steps if self.horizon is None else self.horizon

    def with_steps(self, steps: int) -> Recipe:
        return dataclasses.replace(self, steps=int(steps))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def continues(self, other: Mapping[str, Any]) -> bool:
        """Whether a run made with the recipe ``other`` (as :meth:`as_dict`) continues exactly under this
        one: the same recipe, or with an explicit ``horizon``, the same recipe but for ``steps`` (a longer
        run on the same schedule)."""
        mine, theirs = self.as_dict(), dict(other)
        if self.horizon is not None:
            mine.pop("steps")
            theirs.pop("steps", None)
        return mine == theirs

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                                   weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def make_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        span = max(1, self.span)
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=span)
        if self.schedule == "constant":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        warmup = self.warmup
        if self.schedule == "warmup-linear":
            rise = max(1, warmup)

            def linear(step: int) -> float:
                return min((step + 1) / rise, max(0.0, (span - step) / max(1, span - rise)))

            return torch.optim.lr_scheduler.LambdaLR(optimizer, linear)

        def cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, span - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)


def recipe_from_config(config: Mapping[str, Any], *, steps: int, horizon: int | None = None,
                       defaults: Mapping[str, Any] | None = None, where: str = "train") -> Recipe:
    """A recipe from a config's ``train`` part (``lr``, ``optimizer``, ``momentum``, ``weight_decay``,
    ``batch_size``, ``nesterov``, ``clip``, ``schedule``, ``warmup``); other keys (``epochs``) are the
    caller's. ``defaults`` fill what the config leaves out; a bad value is a ConfigError naming
    ``where.<field>``."""
    fields = {"lr", "optimizer", "momentum", "weight_decay", "batch_size", "nesterov", "clip", "schedule", "warmup"}
    values: dict[str, Any] = dict(defaults or {})
    values.update({k: v for k, v in config.items() if k in fields})
    for name in ("lr", "momentum", "weight_decay", "clip"):
        if name in values and values[name] is not None and isinstance(values[name], (int, float, str)):
            try:
                values[name] = float(values[name])
            except ValueError:
                raise ConfigError(f"expected a number, got {values[name]!r}", field=f"{where}.{name}") from None
    if "batch_size" in values:
        values["batch_size"] = int(values["batch_size"])
    try:
        return Recipe(steps=int(steps), horizon=horizon, **values)
    except ConfigError as exc:
        raise ConfigError(exc.message, field=f"{where}.{exc.field}") from None
