"""The one-shot schedule generator (PAPERS.md §2, online step).

For a task and a time budget T it enumerates schedules s = (model, lr in LEARNING_RATES, frozen
stages in FROZEN_STAGES, epochs = min(MAX_EPOCHS, floor(BUDGET_SAFETY x T / predicted epoch time))),
scores every one with the predictor and returns the best predicted accuracy among those that fit:
one decision, no trial and error. Ties go to the faster schedule. The safety margin keeps a run
inside T although an epoch's time varies and loading the model costs time the estimate leaves out.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from zoo.card import Zoo
from zoo.errors import UnservableTask
from zoo.grid import ScheduleGrid
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

#: The share of the time budget a schedule's predicted time may fill (the rest is the safety margin).
BUDGET_SAFETY: float = 0.85


def candidate_schedules(zoo: Zoo, predictor: Predictor, task: TaskMeta, budget_s: float,
                        models: Sequence[str] | None = None) -> list[Schedule]:
    """Every schedule whose predicted time fits ``budget_s`` (see :func:`candidate_grid`)."""
    return candidate_grid(zoo, predictor, task, budget_s, models).schedules()


def candidate_grid(zoo: Zoo, predictor: Predictor, task: TaskMeta, budget_s: float,
                   models: Sequence[str] | None = None) -> ScheduleGrid:
    """Every schedule whose predicted time fits ``budget_s``, as a grid; raises :class:`UnservableTask`
    (saying why) when there is none. Repeated ``models`` count once. A predicted epoch time that is not
    a positive finite number (a broken predictor, never the client's fault) raises :class:`ValueError`."""
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
    units: list[tuple[int, int, int]] = []  # (card index, frozen stages, epochs) that fit
    usable_s = BUDGET_SAFETY * budget_s
    fastest = math.inf
    for index, card in enumerate(usable):
        for frozen in FROZEN_STAGES:
            if frozen > card.num_stages:
                continue
            per_epoch = predictor.epoch_seconds(card, task, frozen)
            if not (math.isfinite(per_epoch) and per_epoch > 0):
                raise ValueError(f"the predicted epoch time of {card.id!r} with {frozen} stage(s) frozen is "
                                 f"{per_epoch!r} s, not a positive finite number")
            fastest = min(fastest, per_epoch)
            # compared first, so a tiny epoch time cannot overflow the division into an infinite epoch count
            epochs = MAX_EPOCHS if usable_s >= MAX_EPOCHS * per_epoch else int(math.floor(usable_s / per_epoch))
            if epochs >= 1:
                units.append((index, frozen, epochs))
    if not units:
        raise UnservableTask(f"a time budget of {budget_s:g} s is too small for this task: the fastest schedule "
                             f"needs about {fastest:.3g} s for one epoch of {task.num_samples} samples, and a "
                             f"schedule may fill {BUDGET_SAFETY:.0%} of the budget")
    unit = np.array(units, dtype=np.int64).repeat(len(LEARNING_RATES), axis=0)
    return ScheduleGrid(cards=tuple(usable), model=unit[:, 0], frozen=unit[:, 1], epochs=unit[:, 2],
                        lr=np.tile(np.array(LEARNING_RATES, dtype=np.float64), len(units)), batch_size=BATCH_SIZE)


def decide(zoo: Zoo, predictor: Predictor, request: ScheduleRequest, alternatives: int = 3) -> Decision:
    """The best predicted schedule for ``request`` (and the next ``alternatives``)."""
    grid = candidate_grid(zoo, predictor, request.task, request.time_budget_s, request.models)
    acc, secs = predictor.predict_grid(request.task, grid)
    if not (np.all(np.isfinite(acc)) and np.all(np.isfinite(secs)) and np.all(secs > 0)):
        raise ValueError(f"the predictor ({predictor.mode}) gave non-finite accuracy or non-positive seconds "
                         f"for {int(np.sum(~np.isfinite(acc) | ~np.isfinite(secs) | (secs <= 0)))} of "
                         f"{len(grid)} schedules")
    order = np.lexsort((secs, -acc))  # best accuracy first, then the faster
    picks = [Prediction(schedule=grid.schedule(i), predicted_accuracy=float(acc[i]), predicted_seconds=float(secs[i]))
             for i in order[: 1 + alternatives]]
    return Decision(best=picks[0], alternatives=picks[1:], candidates=len(grid),
                    experience=predictor.experience, predictor=predictor.mode)
