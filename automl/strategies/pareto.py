"""Pareto utilities over loss vectors (smaller is better in every coordinate)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_ranks(losses: Sequence[Sequence[float]]) -> list[int]:
    """Rank 0 for the Pareto front, 1 for the front once rank 0 is removed, and so on."""
    points = np.asarray(losses, dtype=float)
    n = len(points)
    ranks = [-1] * n
    remaining = set(range(n))
    rank = 0
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)]
        for i in front:
            ranks[i] = rank
        remaining -= set(front)
        rank += 1
    return ranks


def pareto_front(losses: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points."""
    ranks = nondominated_ranks(losses)
    return [i for i, r in enumerate(ranks) if r == 0]
