"""Pareto utilities over loss vectors (smaller is better in every coordinate)."""
from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def dominance_matrix(losses: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``D[i, j]``: whether point ``i`` dominates point ``j`` (all coordinates <=, one <)."""
    points = np.asarray(losses, dtype=float).reshape(len(losses), -1)
    n = len(points)
    le, lt = np.ones((n, n), dtype=bool), np.zeros((n, n), dtype=bool)
    for column in points.T:  # one objective at a time: no n x n x m temporaries
        le &= column[:, None] <= column[None, :]
        lt |= column[:, None] < column[None, :]
    out: np.ndarray = le & lt
    return out


def nondominated_ranks(losses: Sequence[Sequence[float]]) -> list[int]:
    """Rank 0 for the Pareto front, 1 for the front once rank 0 is removed, and so on (Deb et al.'s
    fast non-dominated sort; with two objectives, O(n log n) by sorting)."""
    n = len(losses)
    if n == 0:
        return []
    points = np.asarray(losses, dtype=float).reshape(n, -1)
    if points.shape[1] == 2 and not np.isnan(points).any():
        return _ranks_2d(points)
    dominated_by = dominance_matrix(points)
    counts = dominated_by.sum(axis=0)  # how many points dominate each one
    ranks = np.full(n, -1, dtype=int)
    front = np.flatnonzero(counts == 0)
    rank = 0
    while front.size:
        ranks[front] = rank
        counts = counts - dominated_by[front].sum(axis=0)
        counts[ranks >= 0] = -1
        front = np.flatnonzero(counts == 0)
        rank += 1
    return [int(r) for r in ranks]


def _ranks_2d(points: np.ndarray) -> list[int]:
    """Two objectives: visit points by (first, second) loss; a point joins the first front whose latest
    member (its smallest second loss so far) does not dominate it. Being dominated by front k implies
    being dominated by front k-1, and the fronts' latest second losses ascend, so bisection finds it."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    ranks = [0] * len(points)
    seconds: list[float] = []  # per front: the second loss of its latest member (ascending)
    firsts: list[float] = []  # per front: the first loss of its latest member
    for i in order:
        x, y = float(points[i, 0]), float(points[i, 1])
        k = bisect.bisect_left(seconds, y)  # fronts before k have a member with a smaller second loss
        while k < len(seconds) and seconds[k] == y and firsts[k] < x:  # same second loss, smaller first
            k += 1
        if k == len(seconds):
            seconds.append(y)
            firsts.append(x)
        else:
            seconds[k], firsts[k] = y, x
        ranks[int(i)] = k
    return ranks


def pareto_front(losses: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points."""
    ranks = nondominated_ranks(losses)
    return [i for i, r in enumerate(ranks) if r == 0]
