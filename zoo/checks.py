"""Whether a finished fine-tuning makes physical sense for the zoo, before anything learns from it.

An outcome is usable when the zoo would have scheduled its task on its model (a known model, no
more stages frozen than it has, the task's inputs the model's channels and at least its smallest
size, probe scores only of zoo models) and its numbers are plausible: accuracy a finite number in
[0, 1], seconds finite and within :data:`zoo.features.TIME_RATIO_RANGE` of the analytic estimate for
that task and schedule. The service refuses other outcomes (422, with the problem named) and the
predictor skips rows of other kinds that an older version stored, counting them.
"""
from __future__ import annotations

import math

from zoo.card import ModelCard, Zoo
from zoo.errors import UnknownModel
from zoo.features import TIME_RATIO_RANGE, estimated_seconds
from zoo.schema import Schedule, TaskMeta


def unservable(card: ModelCard, task: TaskMeta) -> str | None:
    """Why ``card`` cannot fine-tune on ``task`` (None when it can)."""
    channels, height, width = task.input_shape
    if card.input_channels != channels:
        return f"the task's inputs have {channels} channel(s); model {card.id!r} takes {card.input_channels}"
    if min(height, width) < card.min_input_size:
        size = card.min_input_size
        return f"the task's inputs are {height}x{width}; model {card.id!r} needs at least {size}x{size}"
    return None


def outcome_problem(zoo: Zoo, task: TaskMeta, schedule: Schedule, accuracy: float, seconds: float) -> str | None:
    """What is wrong with an outcome (``"field: what was expected"``), or None when it is usable."""
    for model_id in task.probe_scores:
        if model_id not in zoo.cards:
            return f"task.probe_scores: unknown zoo model {model_id!r}; the zoo holds {', '.join(sorted(zoo.cards))}"
    try:
        card = zoo.card(schedule.model_id)
    except UnknownModel as exc:
        return f"schedule.model_id: {exc}"
    if schedule.frozen_stages > card.num_stages:
        return (f"schedule.frozen_stages: model {card.id!r} has {card.num_stages} stages; "
                f"frozen_stages={schedule.frozen_stages} is impossible")
    reason = unservable(card, task)
    if reason is not None:
        return f"task.input_shape: {reason}"
    if not (isinstance(accuracy, (int, float)) and math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
        return f"accuracy: expected a validation accuracy in [0, 1], got {accuracy!r}"
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        return f"seconds: expected a positive finite number of seconds, got {seconds!r}"
    estimate = estimated_seconds(card, task, schedule.frozen_stages, schedule.epochs)
    low, high = estimate * TIME_RATIO_RANGE[0], estimate * TIME_RATIO_RANGE[1]
    if not low <= seconds <= high:
        return (f"seconds: {seconds:.6g} s is not a plausible time for {schedule.epochs} epoch(s) of "
                f"{task.num_samples} samples of {task.input_shape[1]}x{task.input_shape[2]} on {card.id!r} with "
                f"{schedule.frozen_stages} stage(s) frozen: expected between {low:.3g} and {high:.3g} s "
                f"({TIME_RATIO_RANGE[0]:g} to {TIME_RATIO_RANGE[1]:g} times the zoo's estimate of {estimate:.3g} s)")
    return None
