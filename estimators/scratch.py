"""Estimator ``train-from-scratch`` for text backbones: the reference BIWS is measured against.

Each candidate starts from random weights, is pre-trained with masked-LM on the task's corpus for
``pretrain_steps`` (0 skips it), then fine-tuned and scored like a BIWS candidate.
"""
from __future__ import annotations

import time

import torch

from automl.errors import ConfigError
from automl.estimator import EvalContext, Estimator, Result
from automl.registry import estimators, resolve_builder
from automl.space.model import Candidate
from estimators.text_task import backbone_costs, check_score, text_task, train_and_score
from estimators.text_training import Recipe, pretrain_mlm


@estimators.register("train-from-scratch")
class ScratchEstimator(Estimator):
    """Options: ``pretrain_steps`` (2000), ``finetune_steps`` (300), ``batch_size`` (32), ``lr`` (1e-3),
    ``finetune_lr`` (2e-3), ``score`` (``accuracy`` | ``mlm``)."""

    def __init__(self, pretrain_steps: int = 2000, finetune_steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
                 finetune_lr: float = 2e-3, score: str = "accuracy") -> None:
        super().__init__()
        if pretrain_steps < 0 or finetune_steps < 0 or batch_size < 1 or lr <= 0 or finetune_lr <= 0:
            raise ConfigError("train-from-scratch: step counts must be >= 0, batch_size >= 1, lr > 0")
        self.pretrain = Recipe(steps=int(pretrain_steps), batch_size=int(batch_size), lr=float(lr))
        self.finetune = Recipe(steps=int(finetune_steps), batch_size=int(batch_size), lr=float(finetune_lr))
        self.score = check_score(score, "train-from-scratch")

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = text_task(space, "train-from-scratch")
        data = task.load()
        seed = ctx.seed * 100_003 + ctx.trial_number
        torch.manual_seed(seed)
        model = resolve_builder(space.builder)(candidate.config.get("model", candidate.config), task.info)  # type: ignore[arg-type]
        costs = backbone_costs(model, data, ctx)
        start = time.perf_counter()
        skipped = pretrain_mlm(model, data, task.info, self.pretrain, seed) if self.pretrain.steps else 0
        metrics = train_and_score(model, data, task.info, self.score, self.finetune, seed)
        metrics.update(train_seconds=time.perf_counter() - start, pretrain_skipped_steps=skipped)
        return Result(metrics=metrics, cost=costs)
