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
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from automl.artifacts import ArtifactStore
from automl.elastic.surgery import recalibrate_batchnorm
from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.progress import PhaseMonitor
from automl.space.model import Candidate, SearchSpace
from automl.supernet import SuperNet, find_supernet, supernets
from automl.tasks.supervised import ClassificationData, ClassificationTask
from automl.training.classification import classification_scores, classification_step
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.seeding import seeded
from automl.training.streams import EpochStream, WithDraws, tensor_batches
from estimators.cost import model_costs
from estimators.supernet_cache import cached_supernet


@estimators.register("supernet")
class SupernetEstimator(Estimator):
    """Options: ``epochs`` (40), ``optimizer`` (``adam`` | ``sgd``; SGD uses Nesterov momentum 0.9),
    ``lr`` (0.005, cosine schedule), ``batch_size`` (64), ``sampling`` (``uniform`` | ``sandwich``),
    ``calibration_batches`` (8), ``finetune_steps`` (0), ``store`` (a folder or fsspec URL; default the
    study's checkpoint store, else ``automl-runs/supernets``). The defaults are a choice measured on
    the digits spaces (Adam trained the shared weights better than SGD there)."""

    families: ClassVar[frozenset[str]] = frozenset({"supervised"})
    reports_metric_sets: ClassVar[bool] = True

    def __init__(self, epochs: int = 40, optimizer: str = "adam", lr: float = 0.005, batch_size: int = 64,
                 sampling: str = "uniform", calibration_batches: int = 8, finetune_steps: int = 0,
                 store: str | None = None) -> None:
        super().__init__()
        if sampling not in ("uniform", "sandwich"):
            raise ConfigError(f"supernet: sampling must be 'uniform' or 'sandwich', got {sampling!r}", field="sampling")
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"supernet: optimizer must be 'adam' or 'sgd', got {optimizer!r}", field="optimizer")
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
        task = ctx.require_task(ClassificationTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        _check_shareable(space)
        data = task.load()
        supernet, trained_now, train_seconds = self.supernet(space, task, data, ctx.seed, ctx.store(self.store),
                                                             ctx.phase("supernet training"))
        model_config = candidate.config.get("model", candidate.config)
        start = time.perf_counter()
        model = supernet.extract(model_config)
        costs = model_costs(model, task.example_input(), latency=ctx.needs_latency)
        ctx.check_constraints(costs)
        generator = torch.Generator().manual_seed(ctx.trial_seed)
        batches = _batches(len(data.train_x), self.batch_size, generator)[: self.calibration_batches]
        recalibrate_batchnorm(model, [data.train_x[i] for i in batches], model)
        if self.finetune_steps:
            stream = EpochStream(len(data.train_x), self.batch_size, lambda index: (data.train_x[index],
                                                                                    data.train_y[index]),
                                 generator)
            recipe = Recipe(steps=self.finetune_steps, lr=self.lr * 0.1, optimizer="sgd", momentum=0.9)
            with seeded(ctx.trial_seed):
                fit(model, stream, recipe, classification_step)
        accuracy, loss = classification_scores(model, data.val_x, data.val_y)
        metrics = {"accuracy": accuracy, "loss": loss, "eval_seconds": time.perf_counter() - start}
        metrics.update(ctx.measure(model, data.val_x, data.val_y))  # a sub-network's robustness, when asked
        if ctx.info.get("phase") == "supernet":
            metrics.update(supernet_train_seconds=train_seconds, supernet_cached=float(not trained_now))
        ctx.keep_model(model, candidate, metrics=metrics, estimator="supernet")
        return Result(metrics=metrics, cost=costs)

    def supernet(self, space: SearchSpace, task: ClassificationTask, data: ClassificationData, seed: int,
                 store: ArtifactStore, monitor: PhaseMonitor | None = None) -> tuple[SuperNet, bool, float]:
        """The trained supernet: from the store when cached there, else trained now and stored (with a
        checkpoint beside it, so a killed training continues)."""
        factory = find_supernet(str(space.builder))
        assert factory is not None  # checked by _check_shareable
        name = self.cache_key(space, seed)
        return cached_supernet(store, name, lambda: factory(space, task.info),
                               lambda net: train_supernet(net, space, data, seed, **self.training_options(),
                                                          checkpoint=Checkpoint(store, f"{name}.partial", keep=False),
                                                          monitor=monitor), seed)


def supernet_recipe(steps: int, optimizer: str, lr: float, batch_size: int) -> Recipe:
    """SPOS training's recipe: Adam, or SGD with Nesterov momentum 0.9, cosine over the run."""
    if optimizer == "sgd":
        return Recipe(steps=steps, lr=lr, optimizer="sgd", momentum=0.9, nesterov=True, schedule="cosine",
                      batch_size=batch_size)
    return Recipe(steps=steps, lr=lr, optimizer="adam", schedule="cosine", batch_size=batch_size)


def train_supernet(supernet: SuperNet, space: SearchSpace, data: ClassificationData, seed: int, *,
                   epochs: int, optimizer: str, lr: float, batch_size: int, sampling: str,
                   checkpoint: Checkpoint | None = None, monitor: PhaseMonitor | None = None) -> None:
    """SPOS training (one uniformly sampled path per step), or sandwich sampling (the largest, the
    smallest and two random paths per step, their losses averaged)."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)

    def paths(rng: np.random.Generator) -> list[Mapping[str, Any]]:
        if sampling == "sandwich":
            return [space.extreme("max", rng), space.extreme("min", rng), space.sample(rng), space.sample(rng)]
        return [space.sample(rng)]

    stream = WithDraws(tensor_batches(data.train_x, data.train_y, batch_size, generator), paths, rng)

    def step(net: torch.nn.Module, batch: Any) -> StepOutput:
        (x, y), configs = batch
        loss = sum(F.cross_entropy(net(x, config.get("model", config)), y) / len(configs) for config in configs)
        assert isinstance(loss, torch.Tensor)
        return StepOutput({"loss": loss})

    per_epoch = (len(data.train_x) + batch_size - 1) // batch_size
    fit(supernet, stream, supernet_recipe(epochs * per_epoch, optimizer, lr, batch_size), step, seed=seed,
        checkpoint=checkpoint, monitor=monitor)


def _check_shareable(space: SearchSpace) -> None:
    if space.builder is None or find_supernet(space.builder) is None:
        raise ConfigError(f"builder {space.builder!r} of space {space.name!r} is not shareable: no supernet is "
                          f"registered for it (shareable builders: {', '.join(supernets.names()) or 'none'})",
                          source=space.source)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
