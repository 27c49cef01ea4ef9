"""Training and scoring steps for text backbones: masked-LM pre-training, classification fine-tuning.

A model here is anything with ``mlm_logits(ids)`` (token logits) and ``forward(ids)`` (class logits),
or a supernet called with a config per batch (``sample_path`` below). AdamW with gradient clipping at
1.0 and a linear warm-up then decay is the standard BERT recipe (:func:`text_recipe`); the step counts
are the caller's. Each run is seeded by its ``seed`` (dropout draws from torch's global RNG), so a
candidate's score depends on its seed alone, not on what the worker ran before it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.tasks.text import TextData, TextTaskInfo, mask_tokens
from automl.training.classification import classification_scores as scores
from automl.training.fit import Checkpoint, FitResult, StepMonitor, fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.streams import DrawStream

#: chooses the sub-network of a supernet for one training step (None: a stand-alone model)
PathSampler = Callable[[np.random.Generator], Mapping[str, Any]]
#: the fraction of a text run that warms the learning rate up
WARMUP_FRACTION = 0.1


def text_recipe(steps: int, batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.01) -> Recipe:
    """AdamW, linear warm-up over the first tenth then linear decay, gradients clipped at norm 1.0, and
    non-finite steps skipped (an exploding random cell must not poison shared weights)."""
    return Recipe(steps=steps, lr=lr, optimizer="adamw", weight_decay=weight_decay, schedule="warmup-linear",
                  warmup=max(1, int(WARMUP_FRACTION * steps)), clip=1.0, nonfinite="skip", batch_size=batch_size)


def _mlm_logits(model: nn.Module) -> Callable[..., torch.Tensor]:
    """The model's ``mlm_logits`` (the contract in the module docstring, which ``nn.Module`` cannot declare)."""
    return cast(Callable[..., torch.Tensor], model.mlm_logits)


def _mlm_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, Mapping[str, Any] | None]) -> StepOutput:
    inputs, labels, path = batch
    mlm_logits = _mlm_logits(model)
    logits = mlm_logits(inputs, path) if path is not None else mlm_logits(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return StepOutput({"loss": loss}, logits)


def pretrain_mlm(model: nn.Module, data: TextData, info: TextTaskInfo, recipe: Recipe, seed: int,
                 sample_path: PathSampler | None = None, *, checkpoint: Checkpoint | None = None,
                 monitor: StepMonitor | None = None) -> FitResult:
    """Masked-LM training on ``data.corpus``; with ``sample_path``, one sampled sub-network per step
    (single-path one-shot training of a supernet)."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor, Mapping[str, Any] | None]:
        index = torch.randint(0, len(data.corpus), (recipe.batch_size,), generator=generator)
        inputs, labels = mask_tokens(data.corpus[index], info, generator)
        return inputs, labels, sample_path(rng) if sample_path else None

    return fit(model, DrawStream(draw, generator, rng), recipe, _mlm_step, seed=seed, checkpoint=checkpoint,
               monitor=monitor)


def _classify_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    ids, y = batch
    logits = model(ids)
    return StepOutput({"loss": F.cross_entropy(logits, y)}, logits)


def finetune_classifier(model: nn.Module, data: TextData, recipe: Recipe, seed: int,
                        monitor: StepMonitor | None = None) -> FitResult:
    """Classification training on the train split (batches drawn with replacement)."""
    generator = torch.Generator().manual_seed(seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(data.train_ids), (recipe.batch_size,), generator=generator)
        return data.train_ids[index], data.train_y[index]

    return fit(model, DrawStream(draw, generator), recipe, _classify_step, seed=seed, monitor=monitor)


def classification_scores(model: nn.Module, data: TextData, batch_size: int = 256, *,
                          split: str = "val") -> tuple[float, float]:
    """Accuracy and mean cross-entropy on the validation split (``split="test"``: the test split) (a model
    with non-finite outputs scores chance-level accuracy through argmax and an infinite loss)."""
    ids, y = (data.test_ids, data.test_y) if split == "test" else (data.val_ids, data.val_y)
    if ids is None or y is None:
        raise ValueError(f"the task's data has no {split} split")
    accuracy, loss = scores(model, ids, y, batch_size=batch_size)
    return accuracy, loss if np.isfinite(loss) else float("inf")


@torch.no_grad()
def mlm_accuracy(model: nn.Module, data: TextData, info: TextTaskInfo, seed: int, batch_size: int = 256, *,
                 split: str = "val") -> float:
    """Accuracy of predicting masked tokens of the held-out corpus, ``corpus_val`` (``split="test"``:
    ``corpus_test``); the masks are fixed by ``seed``."""
    corpus = data.corpus_test if split == "test" else data.corpus_val
    if corpus is None:
        raise ValueError(f"the task's data has no {split} corpus")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    for i in range(0, len(corpus), batch_size):
        inputs, labels = mask_tokens(corpus[i:i + batch_size], info, generator)
        predicted = _mlm_logits(model)(inputs).argmax(-1)
        chosen = labels != -100
        correct += int((predicted[chosen] == labels[chosen]).sum())
        total += int(chosen.sum())
    return correct / max(1, total)
