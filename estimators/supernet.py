"""Estimator ``supernet``: train a space's supernet once, then score candidates by inherited weights.

Training is single-path one-shot (SPOS, Guo et al. 2020): every step samples one candidate uniformly
from the space and trains its path. ``sampling="sandwich"`` (BigNAS/OFA style) instead accumulates
the gradients of the largest, the smallest and two random candidates each step. The trained supernet
is cached in the artifact store under a key of space + task + seed + training options, so later
trials, workers and runs reuse it; changing the space changes the key. A candidate is evaluated by
extracting its sub-network with the supernet's weights, re-estimating its BatchNorm statistics on a
few training batches (shared statistics are wrong for any single path), optionally fine-tuning it
for a few steps, and scoring it on the validation split. Costs (params, FLOPs) come from the
extracted module, so cost constraints reject a candidate before it is scored.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from automl.artifacts import ArtifactStore
from automl.elastic import recalibrate_batchnorm
from automl.errors import ConfigError
from automl.estimator import EvalContext, Estimator, Result
from automl.registry import estimators, tasks
from automl.space.model import Candidate, SearchSpace
from automl.supernet import SuperNet, find_supernet, supernets
from automl.tasks.base import ClassificationData, ClassificationTask
from estimators.cost import model_costs
from estimators.supernet_cache import cached_supernet

DEFAULT_STORE = "automl-runs/supernets"


@estimators.register("supernet")
class SupernetEstimator(Estimator):
    """Options: ``epochs`` (40), ``optimizer`` (``adam`` | ``sgd``; SGD uses Nesterov momentum 0.9),
    ``lr`` (0.005, cosine schedule), ``batch_size`` (64), ``sampling`` (``uniform`` | ``sandwich``),
    ``calibration_batches`` (8), ``finetune_steps`` (0), ``store`` (a folder or fsspec URL; default the
    study's checkpoint store, else ``automl-runs/supernets``). The defaults are a choice measured on
    the digits spaces (Adam trained the shared weights better than SGD there)."""

    def __init__(self, epochs: int = 40, optimizer: str = "adam", lr: float = 0.005, batch_size: int = 64,
                 sampling: str = "uniform", calibration_batches: int = 8, finetune_steps: int = 0,
                 store: str | None = None) -> None:
        super().__init__()
        if sampling not in ("uniform", "sandwich"):
            raise ConfigError(f"supernet: sampling must be 'uniform' or 'sandwich', got {sampling!r}")
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"supernet: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.optimizer = optimizer
        if epochs < 1 or batch_size < 1 or calibration_batches < 1 or finetune_steps < 0 or lr <= 0:
            raise ConfigError("supernet: epochs, batch_size and calibration_batches must be >= 1, "
                              "finetune_steps >= 0 and lr > 0")
        self.epochs, self.lr, self.batch_size, self.sampling = int(epochs), float(lr), int(batch_size), sampling
        self.calibration_batches, self.finetune_steps, self.store = int(calibration_batches), int(finetune_steps), store

    def training_options(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size,
                "sampling": self.sampling}

    def cache_key(self, space: SearchSpace, seed: int) -> str:
        blob = json.dumps({"space": space.fingerprint, "task": space.task, "task_options": space.task_options,
                           "seed": seed, **self.training_options()}, sort_keys=True, default=str)
        return f"supernet-{space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.pt"

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = _task(space)
        data = task.load()
        store = ArtifactStore(self.store) if self.store else ctx.checkpoints or ArtifactStore(DEFAULT_STORE)
        supernet, trained_now, train_seconds = self.supernet(space, task, data, ctx.seed, store)
        model_config = candidate.config.get("model", candidate.config)
        start = time.perf_counter()
        model = supernet.extract(model_config)
        costs = model_costs(model, task.info.input_shape, latency=_needs_latency(space))
        ctx.check_constraints(costs)
        generator = torch.Generator().manual_seed(ctx.seed * 100_003 + ctx.trial_number)
        batches = _batches(len(data.train_x), self.batch_size, generator)[: self.calibration_batches]
        recalibrate_batchnorm(model, [data.train_x[i] for i in batches], model)
        if self.finetune_steps:
            _finetune(model, data, self.finetune_steps, self.batch_size, self.lr * 0.1, generator)
        accuracy, loss = _score(model, data)
        metrics = {"accuracy": accuracy, "loss": loss, "eval_seconds": time.perf_counter() - start}
        if ctx.info.get("phase") == "supernet":
            metrics.update(supernet_train_seconds=train_seconds, supernet_cached=float(not trained_now))
        return Result(metrics=metrics, cost=costs)

    def supernet(self, space: SearchSpace, task: ClassificationTask, data: ClassificationData, seed: int,
                 store: ArtifactStore) -> tuple[SuperNet, bool, float]:
        """The trained supernet: from the store when cached there, else trained now and stored."""
        factory = find_supernet(space.builder)  # type: ignore[arg-type]
        assert factory is not None  # checked by _task
        return cached_supernet(store, self.cache_key(space, seed), lambda: factory(space, task.info),
                               lambda net: train_supernet(net, space, data, seed, **self.training_options()), seed)


def train_supernet(supernet: SuperNet, space: SearchSpace, data: ClassificationData, seed: int, *,
                   epochs: int, optimizer: str, lr: float, batch_size: int, sampling: str) -> None:
    """SPOS training (one uniformly sampled path per step), or sandwich sampling."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(supernet.parameters(), lr=lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam(supernet.parameters(), lr=lr)
    steps_per_epoch = (len(data.train_x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    supernet.train()
    for _ in range(epochs):
        for index in _batches(len(data.train_x), batch_size, generator):
            x, y = data.train_x[index], data.train_y[index]
            if sampling == "sandwich":
                paths = [space.extreme("max", rng), space.extreme("min", rng), space.sample(rng), space.sample(rng)]
            else:
                paths = [space.sample(rng)]
            opt.zero_grad(set_to_none=True)
            for config in paths:
                loss = F.cross_entropy(supernet(x, config.get("model", config)), y) / len(paths)
                loss.backward()
            opt.step()
            schedule.step()
    supernet.eval()


def _task(space: SearchSpace) -> ClassificationTask:
    if space.task is None or space.builder is None:
        raise ConfigError(f"space {space.name!r} needs 'task' and 'builder' for the supernet estimator",
                          source=space.source)
    if find_supernet(space.builder) is None:
        raise ConfigError(f"builder {space.builder!r} of space {space.name!r} is not shareable: no supernet is "
                          f"registered for it (shareable builders: {', '.join(supernets.names()) or 'none'})",
                          source=space.source)
    task = tasks.get(space.task)(**space.task_options)
    if not isinstance(task, ClassificationTask):
        raise ConfigError(f"the supernet estimator handles classification tasks; {space.task!r} is not one")
    return task


def _needs_latency(space: SearchSpace) -> bool:
    return any("latency_ms" in c.names for c in space.constraints) or any(o.name == "latency_ms" for o in space.objectives)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _finetune(model: torch.nn.Module, data: ClassificationData, steps: int, batch_size: int, lr: float,
              generator: torch.Generator) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    batches = _batches(len(data.train_x), batch_size, generator)
    for step in range(steps):
        index = batches[step % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.train_x[index]), data.train_y[index]).backward()
        optimizer.step()
    model.eval()


def _score(model: torch.nn.Module, data: ClassificationData) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(data.val_x)
        return float((logits.argmax(1) == data.val_y).float().mean()), float(F.cross_entropy(logits, data.val_y))


