"""What the text estimators share: the space's text task, a backbone's costs, and its score."""
from __future__ import annotations

from typing import Any

from torch import nn

from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.registry import tasks
from automl.space.model import SearchSpace
from automl.tasks.text import TextData, TextTask, TextTaskInfo
from estimators.cost import model_costs
from estimators.text_training import Recipe, classification_scores, finetune_classifier, mlm_accuracy, pretrain_mlm

SCORES = ("accuracy", "mlm")


def text_task(space: SearchSpace, estimator: str) -> TextTask:
    """The space's task, which must be a text task."""
    if space.task is None or space.builder is None:
        raise ConfigError(f"space {space.name!r} needs 'task' and 'builder' for the {estimator} estimator",
                          source=space.source)
    task = tasks.get(space.task)(**space.task_options)
    if not isinstance(task, TextTask):
        raise ConfigError(f"the {estimator} estimator needs a text task (e.g. synthetic-text, glue); "
                          f"{space.task!r} is not one", source=space.source)
    return task


def check_score(score: str, estimator: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"{estimator}: score must be one of {list(SCORES)}, got {score!r}")
    return score


def backbone_costs(model: nn.Module, data: TextData, ctx: EvalContext) -> dict[str, float]:
    """Params and FLOPs (and latency when the space uses it) on one validation sequence; checks the
    space's cost constraints, so an infeasible backbone is rejected before any training."""
    space = ctx.space
    latency = any("latency_ms" in c.names for c in space.constraints) or any(o.name == "latency_ms"
                                                                             for o in space.objectives)
    costs = model_costs(model, tuple(data.val_ids.shape[1:]), latency=latency, example=data.val_ids[:1])
    ctx.check_constraints(costs)
    return costs


def train_and_score(model: nn.Module, data: TextData, info: TextTaskInfo, score: str, recipe: Recipe,
                    seed: int) -> dict[str, Any]:
    """Fine-tune ``model`` for the score (classification, or masked-LM) and measure it on held-out data."""
    if score == "mlm":
        skipped = pretrain_mlm(model, data, info, recipe, seed)
        return {"mlm_accuracy": mlm_accuracy(model, data, info, seed), "skipped_steps": skipped}
    skipped = finetune_classifier(model, data, recipe, seed)
    accuracy, loss = classification_scores(model, data)
    return {"accuracy": accuracy, "loss": loss, "skipped_steps": skipped}
