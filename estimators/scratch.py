"""Estimator ``train-from-scratch`` for text backbones: the reference BIWS is measured against.

Each candidate starts from random weights, is pre-trained with masked-LM on the task's corpus for
``pretrain_steps`` (0 skips it), then fine-tuned and scored like a BIWS candidate.
"""
from __future__ import annotations

import time
from typing import ClassVar

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.registry import resolve_builder
from automl.space.model import Candidate
from automl.tasks.text import TextTask
from automl.training.fit import Checkpoint
from automl.training.seeding import seeded
from estimators.text_task import backbone_costs, check_score, train_and_score, trial_data
from estimators.text_training import pretrain_mlm, text_recipe


@estimators.register("train-from-scratch")
class ScratchEstimator(Estimator):
    """Options: ``pretrain_steps`` (2000), ``finetune_steps`` (300), ``batch_size`` (32), ``lr`` (1e-3),
    ``finetune_lr`` (2e-3), ``score`` (``accuracy`` | ``mlm``). With a checkpoint store, a killed
    pre-training continues from its last checkpoint."""

    families: ClassVar[frozenset[str]] = frozenset({"text"})

    def __init__(self, pretrain_steps: int = 2000, finetune_steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
                 finetune_lr: float = 2e-3, score: str = "accuracy") -> None:
        super().__init__()
        if pretrain_steps < 0 or finetune_steps < 0 or batch_size < 1 or lr <= 0 or finetune_lr <= 0:
            raise ConfigError("train-from-scratch: step counts must be >= 0, batch_size >= 1, lr > 0")
        self.pretrain = text_recipe(int(pretrain_steps), int(batch_size), float(lr))
        self.finetune = text_recipe(int(finetune_steps), int(batch_size), float(finetune_lr))
        self.score = check_score(score, "train-from-scratch")

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = ctx.require_task(TextTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        data = trial_data(task, ctx)
        seed = ctx.trial_seed
        with seeded(seed):
            model = resolve_builder(str(space.builder))(candidate.config.get("model", candidate.config), task.info)
        costs = backbone_costs(model, task, ctx)
        start = time.perf_counter()
        skipped = 0
        if self.pretrain.steps:
            checkpoint = Checkpoint(ctx.checkpoints, f"{candidate.key}.pretrain.pt", keep=False) \
                if ctx.checkpoints is not None else None
            skipped = pretrain_mlm(model, data, task.info, self.pretrain, seed, checkpoint=checkpoint,
                                   monitor=ctx.phase("pre-training")).skipped
        metrics = train_and_score(model, data, task.info, self.score, self.finetune, seed, ctx)
        metrics.update(train_seconds=time.perf_counter() - start, pretrain_skipped_steps=skipped)
        ctx.keep_model(model, candidate, recipe=self.finetune.as_dict(), metrics=metrics,
                       estimator="train-from-scratch")
        return Result(metrics=metrics, cost=costs)
