"""Running a fine-tuning schedule: load the zoo model, replace its head, freeze the first stages,
train with SGD (momentum 0.9, cosine schedule over the schedule's epochs: a standard fine-tuning
recipe, and a choice) and score validation accuracy. Also measures a model's training throughput.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from automl.tasks.base import ClassificationData
from zoo.card import Zoo
from zoo.errors import UnservableTask
from zoo.schema import Schedule

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


def train_epochs(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, epochs: int, batch_size: int,
                 generator: torch.Generator | None = None) -> None:
    """SGD with momentum and a cosine learning rate over ``epochs`` on the trainable parameters."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            index = order[i:i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x[index]), y[index])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged (loss {loss.item()}) at lr {lr}")
            loss.backward()
            optimizer.step()
            schedule.step()


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def finetune(zoo: Zoo, schedule: Schedule, data: ClassificationData, seed: int = 0) -> FinetuneOutcome:
    """Run ``schedule`` on ``data`` and return its validation accuracy and training seconds.

    A run that diverges (non-finite loss, e.g. at a too high learning rate) is a legitimate outcome for
    the predictor to learn from: it is reported as chance-level accuracy, not raised.
    """
    num_classes = int(max(int(data.train_y.max()), int(data.val_y.max())) + 1)
    torch.manual_seed(seed)
    net = prepare(zoo, schedule, num_classes)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    try:
        train_epochs(net, data.train_x, data.train_y, schedule.lr, schedule.epochs, schedule.batch_size, generator)
    except FloatingPointError:
        return FinetuneOutcome(1.0 / num_classes, time.perf_counter() - start, schedule.epochs)
    seconds = time.perf_counter() - start
    return FinetuneOutcome(accuracy(net, data.val_x, data.val_y), seconds, schedule.epochs)


def measure_throughput(net: nn.Module, input_shape: tuple[int, int, int], frozen: int, batch_size: int = 32,
                       steps: int = 15, num_classes: int = 5) -> float:
    """Training samples per second of ``net`` (a NasoaNet) with ``frozen`` stages frozen, on random data
    (median of ``steps`` timed steps after 3 warm-up steps). The caller's weights are not changed."""
    import copy

    model = copy.deepcopy(net)
    model.replace_head(num_classes)
    model.freeze(frozen)
    x = torch.randn(batch_size, *input_shape)
    y = torch.randint(0, num_classes, (batch_size,))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=MOMENTUM)
    model.train()
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    times.sort()
    return batch_size / times[len(times) // 2]
