"""Streams of target tasks for NASOA (PAPERS.md §2(b)): digits 5-9 transformed by rotation, noise,
subsampling and resizing. Used by ``automl zoo build`` (seed experience) and the benchmark (the
evaluation stream); they draw from disjoint seed ranges so no benchmark task was seen at build time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from automl.tasks.base import tasks
from automl.tasks.supervised import ClassificationData, ClassificationTask

TRANSFER_TASK = "digits-transfer"


def random_transfer_options(rng: np.random.Generator, seed: int) -> dict[str, Any]:
    """Options of a random ``digits-transfer`` task (2-5 classes, rotation within +-60 degrees,
    noise 0-0.3, 10-100% of the training split, 8/12/16 px). ``seed`` seeds the task's own noise/split."""
    k = int(rng.integers(2, 6))
    classes = sorted(int(c) for c in rng.choice([5, 6, 7, 8, 9], size=k, replace=False))
    return {"classes": classes, "rotation": round(float(rng.uniform(-60, 60)), 1),
            "noise": float(rng.choice([0.0, 0.1, 0.2, 0.3])), "subsample": round(float(rng.uniform(0.1, 1.0)), 2),
            "size": int(rng.choice([8, 8, 12, 16])), "seed": int(seed)}


def load_task(name: str, options: dict[str, Any]) -> ClassificationData:
    """The data of a registered classification task."""
    import automl.tasks.digits_transfer  # noqa: F401  (registers digits-source / digits-transfer)

    task = tasks.get(name)(**options)
    if not isinstance(task, ClassificationTask):
        raise TypeError(f"task {name!r} is not a classification task")
    return task.load()


def describe(options: dict[str, Any]) -> str:
    """A short label of transfer options, e.g. ``"5,7,9 rot-12 n0.1 s0.4 16px"``."""
    classes = ",".join(str(c) for c in options.get("classes", (5, 6, 7, 8, 9)))
    return (f"{classes} rot{options.get('rotation', 0):g} n{options.get('noise', 0):g} "
            f"s{options.get('subsample', 1):g} {options.get('size', 8)}px")
