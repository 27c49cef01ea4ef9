"""The supervised-classification step and score, shared by every trainer of classifiers (the ``train`` and
``supernet`` estimators, the zoo, the benchmarks)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl.training.regime import StepOutput


def classification_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
    """Cross-entropy of ``model(x)`` against ``y``; the logits are the step's outputs. ``batch`` is
    ``(x, y)`` or, for the environments family, ``(x, y, env)`` (each example's environment index, which
    the step does not read: the OOD regimes do)."""
    x, y = batch[0], batch[1]
    logits = model(x)
    return StepOutput({"loss": F.cross_entropy(logits, y)}, logits)


@torch.no_grad()
def classification_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None,
                          forward: Any = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` (in eval mode) on ``(x, y)``; ``batch_size`` splits
    the forward pass (None: one pass), ``forward(x)`` replaces ``model(x)``."""
    model.eval()
    run = forward or model
    if batch_size is None:
        logits = run(x)
    else:
        logits = torch.cat([run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def held_out_batches(x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` in order, in batches: what a regime's evaluation metrics read."""
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
