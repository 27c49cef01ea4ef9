"""Estimator ``train``: build the candidate's model, reject it if a cost constraint fails, train it
from scratch for ``budget`` epochs and report validation accuracy and loss with params and FLOPs.

The config's ``model`` part goes to the builder and its ``train`` part sets the optimiser:
``lr``, ``optimizer`` (sgd | adam | adamw), ``momentum``, ``weight_decay``, ``batch_size``, ``epochs``
(used when the study gives no budget). The learning rate follows a cosine schedule (a choice, as in
most NAS training recipes).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from automl.errors import ConfigError
from automl.estimator import EvalContext, Estimator, Result
from automl.registry import estimators, resolve_builder, tasks
from automl.space.model import Candidate
from automl.tasks.base import ClassificationTask
from estimators.cost import model_costs


@estimators.register("train")
class TrainEstimator(Estimator):
    """Options: ``default_epochs`` (when neither budget nor ``train.epochs`` is set, default 5)."""

    def __init__(self, default_epochs: int = 5) -> None:
        super().__init__()
        self.default_epochs = int(default_epochs)

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        if space.task is None or space.builder is None:
            raise ConfigError(f"space {space.name!r} needs 'task' and 'builder' for the train estimator",
                              source=space.source)
        task = tasks.get(space.task)(**space.task_options)
        if not isinstance(task, ClassificationTask):
            raise ConfigError(f"the train estimator handles classification tasks; {space.task!r} is not one")
        config = candidate.config
        train_cfg: Mapping[str, Any] = config.get("train", {})
        torch.manual_seed(ctx.seed * 100_003 + ctx.trial_number)
        model = resolve_builder(space.builder)(config.get("model", config), task.info)
        needs_latency = any("latency_ms" in c.names for c in space.constraints) or any(
            o.name == "latency_ms" for o in space.objectives)
        costs = model_costs(model, task.info.input_shape, latency=needs_latency)
        ctx.check_constraints(costs)

        epochs = int(round(budget)) if budget is not None else int(train_cfg.get("epochs", self.default_epochs))
        data = task.load()
        start = time.perf_counter()
        _train(model, data.train_x, data.train_y, train_cfg, epochs)
        train_seconds = time.perf_counter() - start
        accuracy, loss = _evaluate(model, data.val_x, data.val_y)
        return Result(
            metrics={"accuracy": accuracy, "loss": loss, "train_seconds": train_seconds, "epochs": epochs},
            cost=costs,
        )


def _optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = cfg.get("optimizer", "adam")
    lr = float(cfg.get("lr", 1e-3))
    weight_decay = float(cfg.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(cfg.get("momentum", 0.0)),
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimizer {name!r}; expected sgd, adam or adamw")


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Mapping[str, Any], epochs: int) -> None:
    batch_size = int(cfg.get("batch_size", 64))
    optimizer = _optimizer(model, cfg)
    steps = max(1, epochs * ((len(x) + batch_size - 1) // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            index = order[i:i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[index]), y[index])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged (loss {loss.item()}) at lr {cfg.get('lr')}")
            loss.backward()
            optimizer.step()
            schedule.step()


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))
