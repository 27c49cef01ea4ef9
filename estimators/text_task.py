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


def trial_data(task: TextTask, ctx: EvalContext) -> TextData:
    """The task's data as this trial may see it: without the test split unless the trial scores it (a
    pipeline's ``train`` step, :attr:`EvalContext.scores_test`)."""
    data = task.load()
    return data if ctx.scores_test else data.without_test()


def train_and_score(model: nn.Module, data: TextData, info: TextTaskInfo, score: str, recipe: Recipe,
                    seed: int, ctx: EvalContext | None = None, checkpoint: Checkpoint | None = None
                    ) -> dict[str, Any]:
    """Fine-tune ``model`` for the score (classification, or masked-LM) and measure it on held-out data:
    the validation split, and the test split too when ``data`` holds one and the trial scores it
    (``test_accuracy``/``test_loss``, or ``test_mlm_accuracy``)."""
    monitor = ctx.phase("fine-tuning") if ctx is not None else None
    test = ctx is not None and ctx.scores_test
    if score == "mlm":
        run = pretrain_mlm(model, data, info, recipe, seed, checkpoint=checkpoint, monitor=monitor)
        metrics = {"mlm_accuracy": mlm_accuracy(model, data, info, seed), "skipped_steps": run.skipped}
        if test and data.corpus_test is not None:
            metrics["test_mlm_accuracy"] = mlm_accuracy(model, data, info, seed, split="test")
        return metrics
    run = finetune_classifier(model, data, recipe, seed, monitor=monitor)
    accuracy, loss = classification_scores(model, data)
    metrics = {"accuracy": accuracy, "loss": loss, "skipped_steps": run.skipped}
    if test and data.has_test:
        metrics["test_accuracy"], metrics["test_loss"] = classification_scores(model, data, split="test")
    return metrics
