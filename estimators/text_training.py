"""Training and scoring loops for text backbones: masked-LM pre-training, classification fine-tuning.

A model here is anything with ``mlm_logits(ids)`` (token logits) and ``forward(ids)`` (class logits),
or a supernet called with a config per batch (``path`` below). AdamW with gradient clipping at 1.0
and a linear warm-up then decay is the standard BERT recipe; the step counts are the caller's.
Each loop seeds torch's global RNG from its ``seed`` too, since dropout draws from it: a candidate's
score then depends on its seed alone, not on what the worker ran before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.tasks.text import TextData, TextTaskInfo, mask_tokens

#: chooses the sub-network of a supernet for one training step (None: a stand-alone model)
PathSampler = Callable[[np.random.Generator], Mapping[str, Any]]


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings of one training phase."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of steps with a linearly rising learning rate


def _optimizer(model: nn.Module, recipe: Recipe) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = max(1, int(recipe.warmup * recipe.steps))

    def factor(step: int) -> float:
        return min((step + 1) / warmup, max(0.0, (recipe.steps - step) / max(1, recipe.steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, loss: torch.Tensor) -> bool:
    """One update; a non-finite loss skips the update (an exploding random cell must not poison the
    shared weights) and is reported by returning False."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        schedule.step()
        return False
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    return True


def pretrain_mlm(model: nn.Module, data: TextData, info: TextTaskInfo, recipe: Recipe, seed: int,
                 sample_path: PathSampler | None = None) -> int:
    """Masked-LM training on ``data.corpus``; with ``sample_path``, one sampled sub-network per step
    (single-path one-shot training of a supernet). Returns the number of skipped (non-finite) steps."""
    torch.manual_seed(seed)  # dropout
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer, schedule = _optimizer(model, recipe)
    model.train()
    skipped = 0
    for _ in range(recipe.steps):
        index = torch.randint(0, len(data.corpus), (recipe.batch_size,), generator=generator)
        inputs, labels = mask_tokens(data.corpus[index], info, generator)
        logits = model.mlm_logits(inputs, sample_path(rng)) if sample_path else model.mlm_logits(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        skipped += not _step(model, optimizer, schedule, loss)
    model.eval()
    return skipped


def finetune_classifier(model: nn.Module, data: TextData, recipe: Recipe, seed: int) -> int:
    """Classification training on the train split; returns the number of skipped (non-finite) steps."""
    torch.manual_seed(seed)  # dropout
    generator = torch.Generator().manual_seed(seed)
    optimizer, schedule = _optimizer(model, recipe)
    model.train()
    skipped = 0
    for _ in range(recipe.steps):
        index = torch.randint(0, len(data.train_ids), (recipe.batch_size,), generator=generator)
        loss = F.cross_entropy(model(data.train_ids[index]), data.train_y[index])
        skipped += not _step(model, optimizer, schedule, loss)
    model.eval()
    return skipped


@torch.no_grad()
def classification_scores(model: nn.Module, data: TextData, batch_size: int = 256) -> tuple[float, float]:
    """Validation accuracy and mean cross-entropy (a model with non-finite outputs scores chance-level
    accuracy through argmax and an infinite loss)."""
    model.eval()
    logits = torch.cat([model(data.val_ids[i:i + batch_size]) for i in range(0, len(data.val_ids), batch_size)])
    accuracy = float((logits.argmax(1) == data.val_y).float().mean())
    loss = float(F.cross_entropy(logits, data.val_y))
    return accuracy, loss if np.isfinite(loss) else float("inf")


@torch.no_grad()
def mlm_accuracy(model: nn.Module, data: TextData, info: TextTaskInfo, seed: int, batch_size: int = 256) -> float:
    """Accuracy of predicting masked tokens of the held-out corpus (the masks are fixed by ``seed``)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    for i in range(0, len(data.corpus_val), batch_size):
        inputs, labels = mask_tokens(data.corpus_val[i:i + batch_size], info, generator)
        predicted = model.mlm_logits(inputs).argmax(-1)
        chosen = labels != -100
        correct += int((predicted[chosen] == labels[chosen]).sum())
        total += int(chosen.sum())
    return correct / max(1, total)
