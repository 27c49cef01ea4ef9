"""Estimator ``train``: build the candidate's model, reject it if a cost constraint fails, train it
from scratch for ``budget`` epochs and report validation accuracy and loss with params and FLOPs, and
the mean wall-clock time of one training step (``train_step_ms``, an objective for training-efficient
search such as NASOA's).

The config's ``model`` part goes to the builder and its ``train`` part sets the optimiser:
``lr``, ``optimizer`` (sgd | adam | adamw), ``momentum``, ``weight_decay``, ``batch_size``, ``epochs``
(used when the study gives no budget). The learning rate follows a cosine schedule (a choice, as in
most NAS training recipes) over the study's maximum budget, so that training to a smaller budget is a
prefix of training to a larger one: with a work folder, a candidate promoted to a larger budget
continues from its checkpoint (model, optimiser, schedule and RNG state) instead of starting again.
"""
from __future__ import annotations

import io
import time
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from automl.artifacts import ArtifactStore
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
        budget_range = ctx.budget or space.budget
        horizon = max(epochs, int(round(budget_range.max))) if budget_range is not None else epochs
        data = task.load()
        trainer = _Trainer(model, train_cfg, len(data.train_x), horizon)
        name = f"{candidate.key}.pt"
        start_epoch = trainer.resume(ctx.checkpoints, name, epochs) if ctx.checkpoints is not None else 0
        start = time.perf_counter()
        trainer.train(data.train_x, data.train_y, start_epoch, epochs)
        train_seconds = time.perf_counter() - start
        if ctx.checkpoints is not None:
            trainer.save(ctx.checkpoints, name, epochs)
        accuracy, loss = _evaluate(model, data.val_x, data.val_y)
        steps = trainer.steps_per_epoch * (epochs - start_epoch)
        # training step time: an objective for training-efficient search (NASOA); NaN when nothing was trained
        step_ms = train_seconds * 1000.0 / steps if steps else float("nan")
        return Result(
            metrics={"accuracy": accuracy, "loss": loss, "train_seconds": train_seconds, "epochs": epochs,
                     "epochs_trained": epochs - start_epoch, "resumed_from_epoch": start_epoch,
                     "train_step_ms": step_ms},
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


class _Trainer:
    """The training loop, with a checkpoint that captures everything a continuation needs."""

    def __init__(self, model: nn.Module, cfg: Mapping[str, Any], n_samples: int, horizon_epochs: int) -> None:
        self.model = model
        self.cfg = cfg
        self.batch_size = int(cfg.get("batch_size", 64))
        self.optimizer = _optimizer(model, cfg)
        self.steps_per_epoch = (n_samples + self.batch_size - 1) // self.batch_size
        steps = max(1, horizon_epochs * self.steps_per_epoch)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)

    def train(self, x: torch.Tensor, y: torch.Tensor, start_epoch: int, end_epoch: int) -> None:
        self.model.train()
        for _ in range(start_epoch, end_epoch):
            order = torch.randperm(len(x))
            for i in range(0, len(x), self.batch_size):
                index = order[i:i + self.batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(self.model(x[index]), y[index])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training diverged (loss {loss.item()}) at lr {self.cfg.get('lr')}")
                loss.backward()
                self.optimizer.step()
                self.schedule.step()

    def resume(self, store: ArtifactStore, name: str, epochs: int) -> int:
        """Load checkpoint ``name`` if it has trained no more than ``epochs``; the epochs it had done."""
        if not store.exists(name):
            return 0
        state = _load(store, name)
        if state["epochs"] > epochs:
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        return int(state["epochs"])

    def save(self, store: ArtifactStore, name: str, epochs: int) -> None:
        """Keep the state after ``epochs`` unless a checkpoint with as many epochs exists already
        (the store writes atomically, so a kill never leaves a torn checkpoint)."""
        if store.exists(name) and _load(store, name)["epochs"] >= epochs:
            return
        buffer = io.BytesIO()
        torch.save({"epochs": epochs, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule.state_dict(), "rng": torch.get_rng_state()}, buffer)
        store.write_bytes(name, buffer.getvalue())


def _load(store: ArtifactStore, name: str) -> dict[str, Any]:
    return torch.load(io.BytesIO(store.read_bytes(name)), weights_only=False)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))
