"""Streams of target tasks for NASOA (PAPERS.md §2(b)): digits 5-9 transformed by rotation, noise,
subsampling and resizing. Used by ``automl zoo build`` (seed experience) and the benchmark (the
evaluation stream); they draw from disjoint seed ranges so no benchmark task was seen at build time.

Each task is of a *kind* so that the best schedule depends on it: its distance from the source task
(``near``: source-sized, lightly rotated and noised, like the zoo's pre-training images; ``mid``; ``far``:
strongly rotated, heavily noised, larger) crossed with its training set (``small``: 5-20% of the
training split, a few dozen images; ``large``: 70-100%). :func:`transfer_kind` reads it back from the options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.tasks.base import tasks
from automl.tasks.supervised import ClassificationData, ClassificationTask

TRANSFER_TASK = "digits-transfer"


@dataclass(frozen=True)
class Distance:
    """How far a kind of target task lies from the source: ranges its options are drawn from."""

    rotation: tuple[float, float]  # |degrees|, the sign drawn at random
    noise: tuple[float, ...]
    sizes: tuple[int, ...]


#: The source (``nasoa.yaml``: 12 px, every image rotated up to +-30 degrees, noise 0.2) and kinds around it.
DISTANCES: dict[str, Distance] = {
    "near": Distance(rotation=(0.0, 15.0), noise=(0.0, 0.1, 0.2), sizes=(12,)),
    "mid": Distance(rotation=(30.0, 50.0), noise=(0.2, 0.3), sizes=(8, 16)),
    "far": Distance(rotation=(70.0, 180.0), noise=(0.4, 0.5), sizes=(16,)),
}
#: Fractions of the training split kept, per training-set kind.
TRAIN_SETS: dict[str, tuple[float, float]] = {"small": (0.05, 0.2), "large": (0.7, 1.0)}


def random_transfer_options(rng: np.random.Generator, seed: int, kind: str | None = None) -> dict[str, Any]:
    """Options of a random ``digits-transfer`` task of ``kind`` (``"far/small"`` etc.; default drawn uniformly
    from the 3 x 2 kinds): 2-5 classes, rotation, noise, size and subsample from the kind's ranges. The
    same ``rng`` state and ``seed`` give the same options; ``seed`` seeds the task's own noise and split."""
    if kind is None:
        distance_name = str(rng.choice(list(DISTANCES)))
        train_name = str(rng.choice(list(TRAIN_SETS)))
    else:
        distance_name, _, train_name = kind.partition("/")
        if distance_name not in DISTANCES or train_name not in TRAIN_SETS:
            raise ValueError(f"unknown task kind {kind!r}; expected DISTANCE/TRAIN with DISTANCE one of "
                             f"{', '.join(DISTANCES)} and TRAIN one of {', '.join(TRAIN_SETS)}")
    distance, (low, high) = DISTANCES[distance_name], TRAIN_SETS[train_name]
    k = int(rng.integers(2, 6))
    classes = sorted(int(c) for c in rng.choice([5, 6, 7, 8, 9], size=k, replace=False))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return {"classes": classes, "rotation": round(sign * float(rng.uniform(*distance.rotation)), 1),
            "noise": float(rng.choice(distance.noise)), "subsample": round(float(rng.uniform(low, high)), 2),
            "size": int(rng.choice(distance.sizes)), "seed": int(seed)}


def transfer_kind(options: dict[str, Any]) -> str:
    """The kind (``"near/small"``, ``"far/large"``, ...) of transfer options; ``"other"`` parts for options
    outside every kind's ranges (a task written by hand)."""
    rotation, noise = abs(float(options.get("rotation", 0.0))), float(options.get("noise", 0.0))
    size, subsample = int(options.get("size", 8)), float(options.get("subsample", 1.0))
    distance = next((name for name, d in DISTANCES.items() if d.rotation[0] <= rotation <= d.rotation[1]
                     and min(d.noise) <= noise <= max(d.noise) and size in d.sizes), "other")
    train = next((name for name, (low, high) in TRAIN_SETS.items() if low <= subsample <= high), "other")
    return f"{distance}/{train}"


def load_task(name: str, options: dict[str, Any]) -> ClassificationData:
    """The data of a registered classification task."""
    import automl.tasks.digits_transfer  # noqa: F401  (registers digits-source / digits-transfer)

    task = tasks.get(name)(**options)
    if not isinstance(task, ClassificationTask):
        raise TypeError(f"task {name!r} is not a classification task")
    return task.load()


def describe(options: dict[str, Any]) -> str:
    """A short label of transfer options, e.g. ``"far/small 5,7,9 rot-120 n0.4 s0.1 16px"``."""
    classes = ",".join(str(c) for c in options.get("classes", (5, 6, 7, 8, 9)))
    return (f"{transfer_kind(options)} {classes} rot{options.get('rotation', 0):g} n{options.get('noise', 0):g} "
            f"s{options.get('subsample', 1):g} {options.get('size', 8)}px")
