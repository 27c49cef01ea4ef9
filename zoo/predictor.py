"""The adaptive predictor: fine-tuned accuracy and time of a schedule on a task, learned from experience.

Accuracy: a random forest (PAPERS.md §2 [P]: "random forest or GBM refit after every task") over
:data:`zoo.features.FEATURE_NAMES`, refit from all experience whenever experience grows. With fewer
than ``min_experience`` records a documented prior is used instead (probe score, more epochs help a
little, freezing costs a little, lr near 1e-2 preferred: a choice, so that a fresh service answers).

Time: the analytic estimate of :func:`zoo.features.estimated_seconds` (measured throughput) times a
correction learned from experience: the median observed/estimated ratio of the model (once it has
:data:`MIN_MODEL_RUNS` runs), else of all models, else 1. The corrections are robust by construction:
records that make no physical sense (:func:`zoo.checks.outcome_problem`: non-finite or out-of-range
numbers, a time outside :data:`zoo.features.TIME_RATIO_RANGE` of the estimate, a task the model
cannot serve) are left out and counted (``rejected``), each ratio is clipped to that range before the
median, so no stored data can make a correction zero, negative, infinite or NaN. A fitted predictor is
immutable; the service swaps in a new one after a refit.
"""
from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from zoo.card import Zoo
from zoo.checks import outcome_problem
from zoo.features import TIME_RATIO_RANGE, estimated_seconds, feature_matrix
from zoo.schema import Experience, Schedule, TaskMeta

log = logging.getLogger("zoo.predictor")

#: Below this many experience records the prior answers (a forest on a handful of rows is noise).
MIN_EXPERIENCE: int = 8
#: A model's own time correction is used once it has this many runs (before: all models' correction),
#: so one odd run does not set a model's correction alone.
MIN_MODEL_RUNS: int = 3


@dataclass(frozen=True)
class Predictor:
    """A fitted predictor (immutable). Build with :func:`fit_predictor`."""

    forest: Any | None  # sklearn RandomForestRegressor, or None for the prior
    time_ratio: dict[str, float] = field(default_factory=dict)
    global_time_ratio: float = 1.0
    experience: int = 0
    skipped: int = 0  # records naming models this zoo does not hold (e.g. from an older zoo)
    rejected: int = 0  # records that make no physical sense (zoo.checks.outcome_problem), left out

    @property
    def mode(self) -> str:
        return "learned" if self.forest is not None else "prior"

    def predict(self, zoo: Zoo, task: TaskMeta, schedules: Sequence[Schedule]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted accuracy (clipped to [0, 1]) and seconds of each schedule on ``task``."""
        if not schedules:
            return np.zeros(0), np.zeros(0)
        cards = [zoo.card(s.model_id) for s in schedules]
        if self.forest is not None:
            acc = self.forest.predict(feature_matrix([(task, c, s) for c, s in zip(cards, schedules)]))
        else:
            acc = np.array([_prior(task, c.id, c.source_accuracy, s) for c, s in zip(cards, schedules)])
        secs = np.array([self.seconds(c.id, estimated_seconds(c, task, s.frozen_stages, s.epochs))
                         for c, s in zip(cards, schedules)])
        return np.clip(acc, 0.0, 1.0), secs

    def seconds(self, model_id: str, estimate: float) -> float:
        """The analytic ``estimate`` corrected by what this model's (or all models') runs took."""
        return estimate * self.time_ratio.get(model_id, self.global_time_ratio)


def _prior(task: TaskMeta, model_id: str, source_accuracy: float, s: Schedule) -> float:
    base = task.probe_scores.get(model_id, 0.5 * source_accuracy)
    return (base + 0.05 * min(1.0, math.log2(s.epochs) / 5.0) - 0.02 * s.frozen_stages
            - 0.01 * abs(math.log10(s.lr / 1e-2)))


def fit_predictor(zoo: Zoo, experience: Sequence[Experience], *, min_experience: int = MIN_EXPERIENCE,
                  seed: int = 0, n_estimators: int = 60) -> Predictor:
    """Fit the accuracy forest and the time corrections on ``experience``. Records whose model the zoo
    lacks are skipped, records that make no physical sense rejected; both are counted (and logged)."""
    known = [e for e in experience if e.schedule.model_id in zoo.cards]
    skipped = len(experience) - len(known)
    usable: list[Experience] = []
    problems: list[str] = []
    for e in known:
        problem = outcome_problem(zoo, e.task, e.schedule, e.accuracy, e.seconds)
        if problem is None:
            usable.append(e)
        else:
            problems.append(problem)
    if problems:
        log.warning("%d experience record(s) make no physical sense and are left out (first: %s)",
                    len(problems), problems[0])
    low, high = TIME_RATIO_RANGE
    ratios: dict[str, list[float]] = {}
    for e in usable:
        card = zoo.cards[e.schedule.model_id]
        estimate = estimated_seconds(card, e.task, e.schedule.frozen_stages, e.schedule.epochs)
        ratios.setdefault(card.id, []).append(min(high, max(low, e.seconds / estimate)))
    all_ratios = [r for rs in ratios.values() for r in rs]
    global_ratio = _clipped_median(all_ratios) if all_ratios else 1.0
    time_ratio = {k: _clipped_median(v) for k, v in ratios.items() if len(v) >= MIN_MODEL_RUNS}
    forest = None
    if len(usable) >= min_experience:
        from sklearn.ensemble import RandomForestRegressor

        x = feature_matrix([(e.task, zoo.cards[e.schedule.model_id], e.schedule) for e in usable])
        y = np.array([e.accuracy for e in usable])
        forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=2, random_state=seed, n_jobs=1)
        forest.fit(x, y)
    return Predictor(forest, time_ratio, global_ratio, len(usable), skipped, len(problems))


def _clipped_median(ratios: Sequence[float]) -> float:
    """The median of ``ratios`` kept inside :data:`TIME_RATIO_RANGE` (finite and positive whatever they are)."""
    low, high = TIME_RATIO_RANGE
    value = statistics.median(ratios)
    return min(high, max(low, value)) if math.isfinite(value) else 1.0
