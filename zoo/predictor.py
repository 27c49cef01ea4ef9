"""The adaptive predictor: fine-tuned accuracy and time of a schedule on a task, learned from experience.

Accuracy: a random forest (PAPERS.md §2 [P]: "random forest or GBM refit after every task") over
:data:`zoo.features.FEATURE_NAMES`, fitted once there are ``min_experience`` records and *blended*
with a documented prior (probe score, more epochs help a little, freezing costs a little, lr near
1e-2 preferred) by experience size: the prior counts as :data:`PRIOR_RECORDS` records, so with n
records the forest's weight is n / (n + PRIOR_RECORDS). A young forest cannot swing the schedule
alone (the cold-start spike of a hard switch) and the prior fades as experience grows. Both parts
are evaluated for all of a request's schedules in one vectorised call.

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

from zoo.card import ModelCard, Zoo
from zoo.checks import outcome_problem
from zoo.features import FEATURE_NAMES, TIME_RATIO_RANGE, estimated_seconds, feature_matrix, grid_features
from zoo.grid import ScheduleGrid
from zoo.schema import Experience, Schedule, TaskMeta

log = logging.getLogger("zoo.predictor")

#: Below this many experience records the prior answers alone (a forest needs a few rows to split).
MIN_EXPERIENCE: int = 4
#: The prior's weight in the blend, in records of experience: with n records the forest weighs
#: n / (n + PRIOR_RECORDS) (0.67 at 4 records, 0.9 at 18). Chosen by ranking unseen tasks' schedules
#: (``benchmarks/nasoa_predictor.py``): the prior ranks schedules poorly, so a heavier one (8 records)
#: cost a third more pick regret after one task's experience, and no less after more.
PRIOR_RECORDS: int = 2
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
    compiled: CompiledForest | None = None  # the forest in onnxruntime (None: scored by sklearn's trees)

    @property
    def mode(self) -> str:
        return "learned" if self.forest is not None else "prior"

    @property
    def forest_weight(self) -> float:
        """The forest's share of the accuracy prediction (0 for the prior alone)."""
        return self.experience / (self.experience + PRIOR_RECORDS) if self.forest is not None else 0.0

    def predict(self, zoo: Zoo, task: TaskMeta, schedules: Sequence[Schedule]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted accuracy (clipped to [0, 1]) and seconds of each schedule on ``task``."""
        return self.predict_grid(task, ScheduleGrid.of(zoo, schedules))

    def predict_grid(self, task: TaskMeta, grid: ScheduleGrid) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` of a grid of schedules, in one vectorised call."""
        if not len(grid):
            return np.zeros(0), np.zeros(0)
        acc = prior_accuracy(task, grid)
        weight = self.forest_weight
        if weight > 0:
            x = grid_features(task, grid)
            learned = self.compiled(x) if self.compiled is not None else forest_mean(self.forest, x)
            acc = weight * learned + (1.0 - weight) * acc
        per_epoch = np.array([[self.epoch_seconds(c, task, f) if f <= c.num_stages else np.nan
                               for f in range(int(grid.frozen.max()) + 1)] for c in grid.cards])
        secs = per_epoch[grid.model, grid.frozen] * grid.epochs
        return np.clip(acc, 0.0, 1.0), secs

    def seconds(self, model_id: str, estimate: float) -> float:
        """The analytic ``estimate`` corrected by what this model's (or all models') runs took."""
        return estimate * self.time_ratio.get(model_id, self.global_time_ratio)

    def epoch_seconds(self, card: ModelCard, task: TaskMeta, frozen: int) -> float:
        """Predicted seconds of one epoch of ``task`` on ``card`` with ``frozen`` stages frozen."""
        return self.seconds(card.id, estimated_seconds(card, task, frozen, 1))


def prior_accuracy(task: TaskMeta, grid: ScheduleGrid) -> np.ndarray:
    """The documented prior for each schedule: its model's probe score (else half its source accuracy),
    +0.05 for more epochs (saturating at 32), -0.02 per frozen stage, -0.01 per decade of lr from 1e-2."""
    base = np.array([task.probe_scores.get(c.id, 0.5 * c.source_accuracy) for c in grid.cards])[grid.model]
    prior: np.ndarray = (base + 0.05 * np.minimum(1.0, np.log2(grid.epochs) / 5.0) - 0.02 * grid.frozen
                         - 0.01 * np.abs(np.log10(grid.lr / 1e-2)))
    return prior


class CompiledForest:
    """A fitted forest converted to ONNX (skl2onnx) and run by onnxruntime on one thread: the same trees,
    a sixth of the time per request (float32 sums: agrees with sklearn to ~1e-6)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def of(cls, forest: Any, features: int) -> CompiledForest | None:
        """The compiled ``forest``, or None (logged) when conversion fails: sklearn's trees then score it."""
        try:
            import onnxruntime
            from skl2onnx import to_onnx

            model = to_onnx(forest, np.zeros((1, features), dtype=np.float32),
                            target_opset={"": 17, "ai.onnx.ml": 3})
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            return cls(onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"]))
        except Exception as exc:
            log.warning("compiling the forest to ONNX failed (%s: %s); scoring with sklearn's trees",
                        type(exc).__name__, exc)
            return None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return out.reshape(len(x)).astype(np.float64)


def forest_mean(forest: Any, x: np.ndarray) -> np.ndarray:
    """``forest.predict(x)`` of a fitted single-output RandomForestRegressor, computed tree by tree.

    Identical to ``predict`` (the mean of the trees' leaf values, float32 inputs as sklearn uses) but
    without its per-call input validation and thread-pool dispatch, which cost 15x the trees' own work on
    a request's hundred rows."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    total: np.ndarray = np.zeros(len(x32))
    for tree in forest.estimators_:
        total += tree.tree_.predict(x32).reshape(len(x32), -1)[:, 0]
    return total / len(forest.estimators_)


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
    compiled = CompiledForest.of(forest, len(FEATURE_NAMES)) if forest is not None else None
    return Predictor(forest, time_ratio, global_ratio, len(usable), skipped, len(problems), compiled)


def _clipped_median(ratios: Sequence[float]) -> float:
    """The median of ``ratios`` kept inside :data:`TIME_RATIO_RANGE` (finite and positive whatever they are)."""
    low, high = TIME_RATIO_RANGE
    value = statistics.median(ratios)
    return min(high, max(low, value)) if math.isfinite(value) else 1.0
