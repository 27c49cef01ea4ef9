"""Which results are best when there are several objectives: the order multi-fidelity strategies promote by.

Results are ranked as Syne Tune's MOASHA ranks a rung (Salinas et al. 2021, Schmucker et al. 2021):
by non-dominated front first; within a front, ties are broken by NSGA-II's crowding distance (Deb et al.
2002; larger first, so the front's extremes and sparse regions go first), then by trial number. Crowding is
computed over a front's distinct loss vectors (duplicates share theirs) and an objective with no spread in
the front adds nothing, so with one objective the order is exactly ``(loss, trial number)``. A result with a
non-finite loss (a failure) ranks after every finite one, by trial number.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from automl.strategies.pareto import nondominated_ranks


def crowding_distances(front: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point of one front (finite loss vectors of equal length): per
    objective, the gap between a point's neighbours over the front's range, summed; the extremes of an
    objective with some spread get infinity."""
    points = np.asarray(front, dtype=float).reshape(len(front), -1)
    if len(points) == 0:
        return []
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    distance = np.zeros(len(unique))
    if len(unique) <= 2:
        distance[:] = math.inf  # the front's only points are its extremes
    else:
        for m in range(unique.shape[1]):
            values = unique[:, m]
            spread = float(values.max() - values.min())
            if spread == 0:
                continue
            order = np.argsort(values, kind="stable")
            distance[order[0]] = distance[order[-1]] = math.inf
            gaps = (values[order[2:]] - values[order[:-2]]) / spread
            distance[order[1:-1]] += gaps
    return [float(distance[i]) for i in inverse]


def promotion_order(losses: Sequence[Sequence[float]], numbers: Sequence[int]) -> list[int]:
    """Indices into ``losses`` (smaller is better per coordinate), best first: front, then larger crowding
    distance, then smaller trial number (``numbers``); non-finite vectors last, by number."""
    if len(losses) != len(numbers):
        raise ValueError(f"{len(losses)} loss vectors but {len(numbers)} trial numbers")
    finite = [i for i, vector in enumerate(losses) if all(math.isfinite(x) for x in vector)]
    failed = sorted((i for i, vector in enumerate(losses) if not all(math.isfinite(x) for x in vector)),
                    key=lambda i: numbers[i])
    if finite and len(losses[finite[0]]) == 1:  # one objective: the ordinary (loss, number) order
        return sorted(finite, key=lambda i: (losses[i][0], numbers[i])) + failed
    ranks = nondominated_ranks([losses[i] for i in finite])
    fronts: dict[int, list[int]] = {}
    for j, rank in enumerate(ranks):
        fronts.setdefault(rank, []).append(j)
    crowding = [0.0] * len(finite)
    for members in fronts.values():
        for j, d in zip(members, crowding_distances([losses[finite[j]] for j in members])):
            crowding[j] = d
    best_first = sorted(range(len(finite)), key=lambda j: (ranks[j], -crowding[j], numbers[finite[j]]))
    return [finite[j] for j in best_first] + failed
