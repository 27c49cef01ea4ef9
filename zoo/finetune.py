"""Running a fine-tuning schedule: load the zoo model, replace its head, freeze the first stages,
train with SGD (momentum 0.9, cosine schedule over the schedule's epochs: a standard fine-tuning
recipe, and a choice) and score validation accuracy. Also measures a model's training throughput.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from automl.tasks.supervised import ClassificationData
from automl.training.classification import classification_scores, classification_step
from automl.training.fit import fit
from automl.training.recipe import Recipe
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches
from zoo.card import Zoo
from zoo.errors import UnservableTask
from zoo.schema import Schedule

if TYPE_CHECKING:
    from search_spaces.nasoa import NasoaNet

MOMENTUM: float = 0.9


@dataclass(frozen=True)
class FinetuneOutcome:
    """What one run of a schedule achieved: validation accuracy and wall-clock training seconds."""

    accuracy: float
    seconds: float
    epochs: int


def prepare(zoo: Zoo, schedule: Schedule, num_classes: int) -> nn.Module:
    """The zoo model of ``schedule`` with a new head and its first stages frozen."""
    card = zoo.card(schedule.model_id)
    if schedule.frozen_stages > card.num_stages:
        raise UnservableTask(f"model {card.id!r} has {card.num_stages} stages; cannot freeze {schedule.frozen_stages}")
    net = zoo.load_model(schedule.model_id, num_classes)
    net.freeze(schedule.frozen_stages)
    return net


def finetune_recipe(lr: float, epochs: int, steps_per_epoch: int, batch_size: int) -> Recipe:
    """SGD with momentum and a cosine learning rate over ``epochs``; a diverging run raises."""
    return Recipe(steps=epochs * steps_per_epoch, lr=lr, optimizer="sgd", momentum=MOMENTUM, schedule="cosine",
                  batch_size=batch_size)


def train_epochs(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, epochs: int, batch_size: int,
                 generator: torch.Generator | None = None) -> None:
    """:func:`finetune_recipe` on the trainable parameters, batches shuffled by ``generator``."""
    stream = tensor_batches(x, y, batch_size, generator if generator is not None else "global")
    fit(net, stream, finetune_recipe(lr, epochs, stream.batches_per_epoch, batch_size), classification_step)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return classification_scores(net, x, y)[0]


def finetune(zoo: Zoo, schedule: Schedule, data: ClassificationData, seed: int = 0) -> FinetuneOutcome:
    """Run ``schedule`` on ``data`` and return its validation accuracy and training seconds.

    A run that diverges (non-finite loss, e.g. at a too high learning rate) is a legitimate outcome for
    the predictor to learn from: it is reported as chance-level accuracy, not raised.
    """
    num_classes = int(max(int(data.train_y.max()), int(data.val_y.max())) + 1)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with seeded(seed):
        net = prepare(zoo, schedule, num_classes)
        try:
            train_epochs(net, data.train_x, data.train_y, schedule.lr, schedule.epochs, schedule.batch_size,
                         generator)
        except FloatingPointError:
            return FinetuneOutcome(1.0 / num_classes, time.perf_counter() - start, schedule.epochs)
    seconds = time.perf_counter() - start
    return FinetuneOutcome(accuracy(net, data.val_x, data.val_y), seconds, schedule.epochs)


def measure_throughput(net: NasoaNet, input_shape: tuple[int, int, int], frozen: int, batch_size: int = 32,
                       steps: int = 15, num_classes: int = 5) -> float:
    """Training samples per second of ``net`` (a NasoaNet) with ``frozen`` stages frozen, on random data
    (median of ``steps`` timed steps after 3 warm-up steps). The caller's weights are not changed."""
    import copy

    model = copy.deepcopy(net)
    model.replace_head(num_classes)
    model.freeze(frozen)
    with seeded(0):
        x = torch.randn(batch_size, *input_shape)
        y = torch.randint(0, num_classes, (batch_size,))
        stamps = [time.perf_counter()]
        fit(model, tensor_batches(x, y, batch_size, None), Recipe(steps=steps + 3, lr=1e-3, optimizer="sgd",
                                                                   momentum=MOMENTUM, batch_size=batch_size),
            classification_step, on_step=lambda step, terms: stamps.append(time.perf_counter()))
    times = sorted(b - a for a, b in zip(stamps[3:], stamps[4:]))
    return batch_size / times[len(times) // 2]
