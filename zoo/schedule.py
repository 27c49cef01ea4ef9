"""The one-shot schedule generator (PAPERS.md §2, online step).

For a task and a time budget T it enumerates schedules s = (model, lr in LEARNING_RATES, frozen
stages in FROZEN_STAGES, epochs = min(MAX_EPOCHS, floor(T / predicted epoch time))), scores every
one with the predictor and returns the best predicted accuracy among those that fit T: one decision,
no trial and error. Ties go to the faster schedule.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from zoo.card import Zoo
from zoo.errors import UnservableTask
from zoo.features import estimated_seconds
from zoo.predictor import Predictor
from zoo.schema import (
    BATCH_SIZE,
    FROZEN_STAGES,
    LEARNING_RATES,
    MAX_EPOCHS,
    Decision,
    Prediction,
    Schedule,
    ScheduleRequest,
    TaskMeta,
)


def candidate_schedules(zoo: Zoo, predictor: Predictor, task: TaskMeta, budget_s: float,
                        models: Sequence[str] | None = None) -> list[Schedule]:
    """Every schedule whose predicted time fits ``budget_s``; raises :class:`UnservableTask` (saying why)
    when there is none. Repeated ``models`` count once. A predicted epoch time that is not a positive
    finite number (a broken predictor, never the client's fault) raises :class:`ValueError`."""
    # unknown ids raise UnknownModel; dict.fromkeys drops repeats, so the work is bounded by the zoo's size
    cards = [zoo.card(m) for m in dict.fromkeys(models)] if models else list(zoo)
    channels, height, width = task.input_shape
    usable = [c for c in cards if c.input_channels == channels]
    if not usable:
        have = sorted({c.input_channels for c in cards})
        raise UnservableTask(f"the task's inputs have {channels} channel(s); the zoo's models take {have}")
    usable = [c for c in usable if min(height, width) >= c.min_input_size]
    if not usable:
        smallest = min(c.min_input_size for c in cards)
        raise UnservableTask(f"the task's inputs are {height}x{width}; the zoo's models need at least "
                             f"{smallest}x{smallest}")
    out: list[Schedule] = []
    fastest = math.inf
    for card in usable:
        for frozen in FROZEN_STAGES:
            if frozen > card.num_stages:
                continue
            per_epoch = predictor.seconds(card.id, estimated_seconds(card, task, frozen, 1))
            if not (math.isfinite(per_epoch) and per_epoch > 0):
                raise ValueError(f"the predicted epoch time of {card.id!r} with {frozen} stage(s) frozen is "
                                 f"{per_epoch!r} s, not a positive finite number")
            fastest = min(fastest, per_epoch)
            # compared first, so a tiny epoch time cannot overflow the division into an infinite epoch count
            epochs = MAX_EPOCHS if budget_s >= MAX_EPOCHS * per_epoch else int(math.floor(budget_s / per_epoch))
            if epochs < 1:
                continue
            out += [Schedule(model_id=card.id, lr=lr, frozen_stages=frozen, epochs=epochs, batch_size=BATCH_SIZE)
                    for lr in LEARNING_RATES]
    if not out:
        raise UnservableTask(f"a time budget of {budget_s:g} s is too small for this task: the fastest schedule "
                             f"needs about {fastest:.3g} s for one epoch of {task.num_samples} samples")
    return out


def decide(zoo: Zoo, predictor: Predictor, request: ScheduleRequest, alternatives: int = 3) -> Decision:
    """The best predicted schedule for ``request`` (and the next ``alternatives``)."""
    schedules = candidate_schedules(zoo, predictor, request.task, request.time_budget_s, request.models)
    acc, secs = predictor.predict(zoo, request.task, schedules)
    if not (np.all(np.isfinite(acc)) and np.all(np.isfinite(secs)) and np.all(secs > 0)):
        raise ValueError(f"the predictor ({predictor.mode}) gave non-finite accuracy or non-positive seconds "
                         f"for {int(np.sum(~np.isfinite(acc) | ~np.isfinite(secs) | (secs <= 0)))} of "
                         f"{len(schedules)} schedules")
    order = np.lexsort((secs, -acc))  # best accuracy first, then the faster
    picks = [Prediction(schedule=schedules[i], predicted_accuracy=float(acc[i]), predicted_seconds=float(secs[i]))
             for i in order[: 1 + alternatives]]
    return Decision(best=picks[0], alternatives=picks[1:], candidates=len(schedules),
                    experience=predictor.experience, predictor=predictor.mode)
