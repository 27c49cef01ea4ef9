"""What the text estimators share: a backbone's costs and its score after fine-tuning."""
from __future__ import annotations

from typing import Any

from torch import nn

from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.tasks.text import TextData, TextTask, TextTaskInfo
from automl.training.fit import Checkpoint
from automl.training.recipe import Recipe
from estimators.cost import model_costs
from estimators.text_training import classification_scores, finetune_classifier, mlm_accuracy, pretrain_mlm

SCORES = ("accuracy", "mlm")


def check_score(score: str, estimator: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"{estimator}: score must be one of {list(SCORES)}, got {score!r}", field="score")
    return score


def backbone_costs(model: nn.Module, task: TextTask, ctx: EvalContext) -> dict[str, float]:
    """Params and FLOPs (and latency when the space uses it) on one sequence; checks the space's cost
    constraints, so an infeasible backbone is rejected before any training."""
    costs = model_costs(model, task.example_input(), latency=ctx.needs_latency)
    ctx.check_constraints(costs)
    return costs


def train_and_score(model: nn.Module, data: TextData, info: TextTaskInfo, score: str, recipe: Recipe,
                    seed: int, ctx: EvalContext | None = None, checkpoint: Checkpoint | None = None
                    ) -> dict[str, Any]:
    """Fine-tune ``model`` for the score (classification, or masked-LM) and measure it on held-out data."""
    monitor = ctx.phase("fine-tuning") if ctx is not None else None
    if score == "mlm":
        run = pretrain_mlm(model, data, info, recipe, seed, checkpoint=checkpoint, monitor=monitor)
        return {"mlm_accuracy": mlm_accuracy(model, data, info, seed), "skipped_steps": run.skipped}
    run = finetune_classifier(model, data, recipe, seed, monitor=monitor)
    accuracy, loss = classification_scores(model, data)
    return {"accuracy": accuracy, "loss": loss, "skipped_steps": run.skipped}
