"""Build the tabulated ``nb201-digits`` NAS benchmark: train every cell of the space once and record, after
each tabulated budget (epoch), its validation accuracy and loss, its test accuracy and its training seconds.

Each cell is trained exactly as the ``train`` estimator trains a candidate of the ``nb201-digits`` space (the
space's ``train`` recipe, cosine schedule over the largest budget, the digits task's splits), with one fixed
seed for every cell, on one thread. Training to the largest budget and reading the scores after each smaller
one is equivalent to training each budget separately (a shorter run is a prefix of the longer one: the
schedule spans the largest budget, as in the ``train`` estimator). Equivalent cells
(:func:`search_spaces.nb201.canonical_cell`) build the same network and are trained once. A cell's seconds
are the CPU seconds of its training to each budget (scoring excluded): on one thread, its training time on
an idle core, which unlike the wall clock does not grow when other processes share the machine.
Deterministic: rerunning gives the same accuracies (the seconds are measured).

    .venv/bin/python benchmarks/build_nas_table.py                    # every cell -> benchmarks/data/
    .venv/bin/python benchmarks/build_nas_table.py --limit 5 --out /tmp/tiny.npz   # the first 5 classes
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from automl.space.catalog import load_space
from automl.tasks.digits import DigitsTask
from automl.training.classification import classification_scores, classification_step
from automl.training.fit import fit
from automl.training.recipe import recipe_from_config
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches
from estimators.cost import model_costs
from estimators.train import DEFAULT_RECIPE
from search_spaces.nb201 import EDGE_KEYS, OPS, build_nb201, canonical_cell, cell_config
from search_spaces.nb201_table import DEFAULT_TABLE, NasTable

SPACE = "nb201-digits"


def space_setup() -> tuple[list[str], dict[str, Any], int]:
    """The space's op set, its constant ``train`` recipe and its largest budget (epochs)."""
    space = load_space(SPACE)
    config = space.sample(np.random.default_rng(0))
    choices = space.flatten()[f"model.{EDGE_KEYS[0]}"].choices  # type: ignore[attr-defined]
    assert space.budget is not None
    return [str(c) for c in choices], dict(config["train"]), int(space.budget.max)


def train_cell(ops: Sequence[str], data: Any, recipe_cfg: Mapping[str, Any], epochs: int, seed: int
               ) -> dict[str, Any]:
    """Train one cell for ``epochs`` epochs; its costs and, after every epoch, val/test accuracy and seconds."""
    task = DigitsTask()
    with seeded(seed):
        model = build_nb201(cell_config(ops), task.info)
        costs = model_costs(model, task.example_input(), latency=False)
        stream = tensor_batches(data.train_x, data.train_y, int(recipe_cfg.get("batch_size", 64)))
        per_epoch = stream.batches_per_epoch
        recipe = recipe_from_config(recipe_cfg, steps=epochs * per_epoch, horizon=epochs * per_epoch,
                                    defaults=DEFAULT_RECIPE)
        val: list[float] = []
        loss: list[float] = []
        test: list[float] = []
        epoch_seconds: list[float] = []
        last = 0.0

        def record(step: int, terms: Mapping[str, float]) -> None:
            nonlocal last
            if (step + 1) % per_epoch:
                return
            epoch_seconds.append(time.process_time() - last)
            with torch.random.fork_rng(devices=[]):  # scoring must not move the training's RNG
                accuracy, val_loss = classification_scores(model, data.val_x, data.val_y)
                test.append(classification_scores(model, data.test_x, data.test_y)[0])
            val.append(accuracy)
            loss.append(val_loss)
            model.train()
            last = time.process_time()  # the next epoch's clock starts after scoring

        last = time.process_time()
        fit(model, stream, recipe, classification_step, on_step=record)
    return {"val": val, "loss": loss, "test": test, "seconds": np.cumsum(epoch_seconds).tolist(), **costs}


def all_cells(ops: Sequence[str]) -> list[tuple[str, ...]]:
    """Every cell over ``ops``, in a fixed order (the first edge varies slowest)."""
    return [tuple(c) for c in itertools.product(ops, repeat=len(EDGE_KEYS))]


def build_table(*, limit: int | None = None, seed: int = 0, progress: bool = True) -> NasTable:
    """Train every equivalence class of cells (the first ``limit`` ones with ``limit``) and tabulate them."""
    op_set, recipe_cfg, epochs = space_setup()
    cells = all_cells(op_set)
    classes: dict[tuple[str, ...], list[int]] = {}
    for i, cell in enumerate(cells):
        classes.setdefault(canonical_cell(cell), []).append(i)
    trained = list(classes.items())[:limit] if limit is not None else list(classes.items())
    rows = sorted(i for _, members in trained for i in members)
    index = {row: n for n, row in enumerate(rows)}
    data = DigitsTask().load()
    n, b = len(rows), epochs
    val, loss, test, secs = (np.zeros((n, b), np.float32) for _ in range(4))
    params, flops, representative = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int32)
    torch.set_num_threads(1)
    started = time.perf_counter()
    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        job = bar.add_task("cells", total=len(trained))
        for canonical, members in trained:
            result = train_cell(canonical, data, recipe_cfg, epochs, seed)
            first = index[members[0]]
            for member in members:
                k = index[member]
                val[k], loss[k], test[k], secs[k] = result["val"], result["loss"], result["test"], result["seconds"]
                params[k], flops[k], representative[k] = result["params"], result["flops"], first
            bar.advance(job)
    elapsed = time.perf_counter() - started
    metadata = {
        "space": SPACE, "ops": op_set, "edges": list(EDGE_KEYS), "seed": seed, "recipe": recipe_cfg,
        "task": "digits (val_fraction 0.2, test_fraction 0.2, split_seed 0)", "cells": n,
        "trained_cells": len(trained), "complete": limit is None, "build_seconds": round(elapsed, 1),
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(),
    }
    return NasTable(cells=np.array([[OPS.index(o) for o in cells[r]] for r in rows], np.int8).reshape(n, 6),
                    budgets=np.arange(1, b + 1, dtype=np.int64), val_accuracy=val, val_loss=loss, test_accuracy=test,
                    train_seconds=secs, params=params, flops=flops, representative=representative,
                    metadata=metadata)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_TABLE, help=f"the table file (default {DEFAULT_TABLE})")
    parser.add_argument("--limit", type=int, default=None, help="train only the first N classes of equivalent cells")
    parser.add_argument("--seed", type=int, default=0, help="the training seed of every cell (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    table = build_table(limit=args.limit, seed=args.seed, progress=not args.no_progress)
    path = table.save(args.out)
    meta = table.metadata
    print(f"{path}: {meta['cells']} cells ({meta['trained_cells']} trained) x {len(table.budgets)} budgets in "
          f"{meta['build_seconds']:.0f} s; best val accuracy {table.val_accuracy[:, -1].max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
