"""Task meta-features and the predictor's feature vector.

Meta-features (PAPERS.md §2, online step): number of classes, number of training samples, input
size, and each zoo model's linear-probe accuracy on the task (a choice marked [P] in the paper
notes: a logistic regression on the frozen pooled features, a cheap signal of how well a model's
pre-trained features transfer). The client computes probes because it holds the data.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from automl.tasks.supervised import ClassificationData
from zoo.card import ModelCard, Zoo
from zoo.grid import ScheduleGrid
from zoo.schema import Schedule, TaskMeta

if TYPE_CHECKING:
    from search_spaces.nasoa import NasoaNet

#: Names of the columns of :func:`grid_features` (the predictor's inputs), in order.
FEATURE_NAMES: tuple[str, ...] = (
    "log2_classes", "log10_samples", "log2_pixels", "probe", "probe_gap", "has_probe", "log10_params",
    "log10_flops", "source_accuracy", "log10_lr", "frozen_stages", "frozen_fraction", "log2_epochs",
    "log10_samples_seen",
)
#: At most this many training samples are used for a probe (it must stay cheap).
PROBE_SAMPLES: int = 500
#: How far a fine-tuning's observed seconds may lie from :func:`estimated_seconds` (observed / estimated)
#: and still be a plausible measurement: the estimate comes from throughput measured on the build
#: machine, so a client with an accelerator may run much faster, a busy or slow one much slower, and
#: tiny runs add fixed costs (loading the model). Three orders of magnitude either way covers those;
#: an outcome outside is refused, a stored one ignored, and learned corrections are clipped to it.
TIME_RATIO_RANGE: tuple[float, float] = (1e-3, 1e3)


def probe_score(net: NasoaNet, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression on ``net.features`` of ``x`` (70/30 split of the data)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))[:PROBE_SAMPLES]
    net.eval()
    with torch.no_grad():
        feats = net.features(x[order]).numpy()
    labels = y[order].numpy()
    cut = max(1, int(0.7 * len(order)))
    if len(set(labels[:cut].tolist())) < 2 or cut == len(order):
        return float(np.mean(labels == np.bincount(labels).argmax()))
    scaler = StandardScaler().fit(feats[:cut])
    clf = LogisticRegression(max_iter=300).fit(scaler.transform(feats[:cut]), labels[:cut])
    return float(clf.score(scaler.transform(feats[cut:]), labels[cut:]))


def task_meta(zoo: Zoo | None, data: ClassificationData, name: str = "task", probe: bool = True,
              seed: int = 0) -> TaskMeta:
    """Meta-features of a task from its data; with ``probe`` and a zoo, each model's probe score."""
    num_classes = int(max(int(data.train_y.max()), int(data.val_y.max())) + 1)
    shape = tuple(int(s) for s in data.train_x.shape[1:])
    scores: dict[str, float] = {}
    if probe and zoo is not None:
        for card in zoo:
            net = zoo.load_model(card.id)
            scores[card.id] = probe_score(net, data.train_x, data.train_y, seed)
    return TaskMeta(name=name, num_classes=num_classes, num_samples=len(data.train_x),
                    input_shape=(shape[0], shape[1], shape[2]), probe_scores=scores)


def estimated_seconds(card: ModelCard, task: TaskMeta, frozen: int, epochs: int) -> float:
    """Analytic fine-tuning time: epochs x samples / measured throughput, scaled by the input's pixel count
    relative to the size the throughput was measured at (the predictor corrects it from experience)."""
    pixels = task.input_shape[1] * task.input_shape[2] / float(card.throughput_input_hw ** 2)
    return epochs * task.num_samples * max(pixels, 1e-3) / card.samples_per_s(frozen)


def plausible_seconds(card: ModelCard, task: TaskMeta, frozen: int, epochs: int) -> tuple[float, float]:
    """The range of wall-clock seconds a fine-tuning of ``epochs`` epochs of ``task`` on ``card`` with
    ``frozen`` stages frozen may plausibly take: :data:`TIME_RATIO_RANGE` times :func:`estimated_seconds`."""
    estimate = estimated_seconds(card, task, frozen, epochs)
    return estimate * TIME_RATIO_RANGE[0], estimate * TIME_RATIO_RANGE[1]


def feature_matrix(rows: Sequence[tuple[TaskMeta, ModelCard, Schedule]]) -> np.ndarray:
    """The predictor's inputs of each (task, model, schedule) row: :func:`grid_features`, row by row."""
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.vstack([grid_features(t, ScheduleGrid(
        cards=(c,), model=np.zeros(1, dtype=np.int64), lr=np.array([s.lr]), frozen=np.array([s.frozen_stages]),
        epochs=np.array([s.epochs]), batch_size=s.batch_size)) for t, c, s in rows])


def grid_features(task: TaskMeta, grid: ScheduleGrid) -> np.ndarray:
    """The predictor's inputs (columns :data:`FEATURE_NAMES`) of every schedule of ``grid`` on ``task``, at once.

    A missing probe score is encoded as -1 with ``has_probe`` 0, so requests without probes still work.
    """
    cards = grid.cards
    probes = [task.probe_scores.get(c.id) for c in cards]
    best = max(task.probe_scores.values()) if task.probe_scores else None
    per_card = np.array([[p if p is not None else -1.0,
                          (p - best) if p is not None and best is not None else 0.0,
                          1.0 if p is not None else 0.0,
                          math.log10(c.params), math.log10(max(c.flops, 1)), c.source_accuracy, float(c.num_stages)]
                         for c, p in zip(cards, probes)], dtype=np.float64).reshape(-1, 7)[grid.model]
    n = len(grid)
    frozen = grid.frozen.astype(np.float64)
    epochs = grid.epochs.astype(np.float64)
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    out[:, 0] = math.log2(task.num_classes)
    out[:, 1] = math.log10(task.num_samples)
    out[:, 2] = math.log2(task.input_shape[1] * task.input_shape[2])
    out[:, 3:9] = per_card[:, :6]
    out[:, 9] = np.log10(grid.lr)
    out[:, 10] = frozen
    out[:, 11] = frozen / per_card[:, 6]
    out[:, 12] = np.log2(epochs)
    out[:, 13] = np.log10(epochs * task.num_samples)
    return out
