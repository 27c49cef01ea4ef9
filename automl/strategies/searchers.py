"""Searchers: where a multi-fidelity scheduler's new configurations come from.

Composition over combination (as in Syne Tune): a scheduler decides budgets, rungs and promotions; a
searcher proposes new configs. ``hyperband`` = Hyperband scheduler + random searcher, ``bohb`` = the
same scheduler + the KDE searcher of :mod:`automl.strategies.kde`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from automl.space.model import Config, SearchSpace


class Searcher(ABC):
    """Proposes new configs and learns from results at any budget."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def suggest(self, rng: np.random.Generator) -> Config: ...

    def observe(self, config: Config, budget: float, loss: float | Sequence[float]) -> None:
        """Learn that ``config`` scored ``loss`` at ``budget``: one number or one per objective (smaller is
        better; inf for a failure)."""


class RandomSearcher(Searcher):
    def suggest(self, rng: np.random.Generator) -> Config:
        return self.space.sample(rng)
