"""BOHB's model-based searcher (Falkner et al. 2018): TPE-style kernel density estimates per budget.

For the largest budget with enough observations, the observations are split by a loss quantile into
good and bad (with several objectives, by the rank multi-fidelity rungs promote by:
:func:`~automl.strategies.mo_ranking.promotion_order`); product-kernel KDEs l(x) (good) and g(x) (bad)
are fitted (Gaussian kernels on the unit-scaled numeric dimensions, Aitchison-Aitken kernels on
categoricals, normal-reference bandwidths as in statsmodels, floored at ``min_bandwidth``).
``num_samples`` candidates drawn around good points (bandwidths widened by ``bandwidth_factor``) are
scored by l(x)/g(x) and the best is returned. A ``random_fraction`` of suggestions is uniform random,
as in the paper. Inactive (conditional) dimensions are imputed from another observation where they are
active, else uniformly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automl.space.model import Config, SearchSpace
from automl.strategies.mo_ranking import promotion_order
from automl.strategies.searchers import Searcher


@dataclass(frozen=True)
class _Dim:
    name: str
    dist: BaseDistribution
    categories: int  # 0 for numeric dimensions

    def encode(self, value: object) -> float:
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            return float(d.choices.index(value))
        assert isinstance(d, (FloatDistribution, IntDistribution))
        lo, hi, x = float(d.low), float(d.high), float(value)  # type: ignore[arg-type]
        if isinstance(d, IntDistribution):
            lo, hi = lo - 0.5, hi + 0.5
        if d.log:
            lo, hi, x = math.log(lo), math.log(hi), math.log(x)
        return (x - lo) / (hi - lo) if hi > lo else 0.5

    def decode(self, u: float) -> object:
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            return d.choices[int(u)]
        assert isinstance(d, (FloatDistribution, IntDistribution))
        lo, hi = float(d.low), float(d.high)
        if isinstance(d, IntDistribution):
            lo, hi = lo - 0.5, hi + 0.5
        if d.log:
            value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            value = lo + u * (hi - lo)
        if isinstance(d, IntDistribution):
            step = d.step
            return int(min(d.high, max(d.low, d.low + round((value - d.low) / step) * step)))
        if d.step:
            value = d.low + round((value - d.low) / d.step) * d.step
        return float(min(d.high, max(d.low, value)))


class KDESearcher(Searcher):
    """Options follow HpBandSter's defaults: ``min_points_in_model`` (dims + 1), ``top_n_percent`` 15,
    ``num_samples`` 64, ``random_fraction`` 1/3, ``bandwidth_factor`` 3, ``min_bandwidth`` 1e-3."""

    def __init__(self, space: SearchSpace, *, min_points_in_model: int | None = None, top_n_percent: float = 15,
                 num_samples: int = 64, random_fraction: float = 1 / 3, bandwidth_factor: float = 3,
                 min_bandwidth: float = 1e-3) -> None:
        super().__init__(space)
        self.dims = [_Dim(name, dist, len(dist.choices) if isinstance(dist, CategoricalDistribution) else 0)
                     for name, dist in space.flatten().items()]
        self.min_points = max(len(self.dims) + 1, min_points_in_model or 0)
        self.top_n_percent = top_n_percent
        self.num_samples = num_samples
        self.random_fraction = random_fraction
        self.bandwidth_factor = bandwidth_factor
        self.min_bandwidth = min_bandwidth
        self.categorical = np.array([d.categories > 0 for d in self.dims], dtype=bool)
        self.n_categories = np.array([max(d.categories, 2) for d in self.dims], dtype=float)
        # budget -> (rows with NaN for inactive dims, loss vectors)
        self.observations: dict[float, tuple[list[np.ndarray], list[tuple[float, ...]]]] = {}

    def observe(self, config: Config, budget: float, loss: float | Sequence[float]) -> None:
        params = self.space.flat_params(config)
        row = np.array([d.encode(params[d.name]) if d.name in params else np.nan for d in self.dims])
        rows, losses = self.observations.setdefault(float(budget), ([], []))
        rows.append(row)
        vector = (loss,) if isinstance(loss, (int, float)) else tuple(loss)
        losses.append(tuple(float(x) if math.isfinite(x) else math.inf for x in vector))

    def model_budget(self) -> float | None:
        """The largest budget with enough observations to fit a model."""
        ready = [b for b, (rows, _) in self.observations.items() if len(rows) >= self.min_points + 2]
        return max(ready) if ready else None

    def suggest(self, rng: np.random.Generator) -> Config:
        budget = self.model_budget()
        if budget is None or rng.random() < self.random_fraction:
            return self.space.sample(rng)
        rows, losses = self.observations[budget]
        data = self._impute(np.array(rows), rng)
        order = np.array(promotion_order(losses, range(len(losses))), dtype=int)  # best first, ties by arrival
        n = len(order)
        n_good = max(self.min_points, (self.top_n_percent * n) // 100)
        n_bad = max(self.min_points, ((100 - self.top_n_percent) * n) // 100)
        good, bad = data[order[: int(n_good)]], data[order[int(n_good): int(n_good + n_bad)]]
        if len(good) < 2 or len(bad) < 2:
            return self.space.sample(rng)
        bw_good, bw_bad = self._bandwidths(good), self._bandwidths(bad)
        candidates = self._draw(good, bw_good, rng)
        score = self._log_pdf(candidates, good, bw_good) - self._log_pdf(candidates, bad, bw_bad)
        best = candidates[int(np.argmax(score))]
        params = {d.name: d.decode(u) for d, u in zip(self.dims, best)}
        return self.space.unflatten(params, rng)

    def _impute(self, data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        data = data.copy()
        for j in range(data.shape[1]):
            missing = np.isnan(data[:, j])
            if not missing.any():
                continue
            present = data[~missing, j]
            if len(present):
                data[missing, j] = rng.choice(present, size=int(missing.sum()))
            elif self.categorical[j]:
                data[missing, j] = rng.integers(0, int(self.n_categories[j]), size=int(missing.sum()))
            else:
                data[missing, j] = rng.random(int(missing.sum()))
        return data

    def _bandwidths(self, data: np.ndarray) -> np.ndarray:
        n, k = data.shape
        bw = 1.06 * data.std(axis=0) * n ** (-1.0 / (4 + k))
        bw = np.maximum(bw, self.min_bandwidth)
        # an Aitchison-Aitken bandwidth is a probability of "another category": at most (c-1)/c
        out: np.ndarray = np.where(self.categorical, np.minimum(bw, (self.n_categories - 1) / self.n_categories), bw)
        return out

    def _draw(self, good: np.ndarray, bw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres = good[rng.integers(0, len(good), size=self.num_samples)]
        out = centres.copy()
        numeric = ~self.categorical
        if numeric.any():
            sd = np.minimum(bw[numeric] * self.bandwidth_factor, 1.0)
            draws = rng.normal(centres[:, numeric], sd)
            # truncate to [0, 1] by redrawing out-of-range values uniformly around the centre's cell
            bad = (draws < 0) | (draws > 1)
            while bad.any():
                draws[bad] = rng.normal(centres[:, numeric][bad], np.broadcast_to(sd, draws.shape)[bad])
                bad = (draws < 0) | (draws > 1)
            out[:, numeric] = draws
        for j in np.flatnonzero(self.categorical):
            switch = rng.random(self.num_samples) < bw[j]
            out[switch, j] = rng.integers(0, int(self.n_categories[j]), size=int(switch.sum()))
        return out

    def _log_pdf(self, x: np.ndarray, data: np.ndarray, bw: np.ndarray) -> np.ndarray:
        """log of the product-kernel density of ``data`` at each row of ``x``."""
        diff = x[:, None, :] - data[None, :, :]
        numeric = -0.5 * (diff / bw) ** 2 - np.log(bw * math.sqrt(2 * math.pi))
        same = np.abs(diff) < 0.5
        categorical = np.where(same, np.log1p(-bw), np.log(bw / (self.n_categories - 1)))
        per_point = np.where(self.categorical, categorical, numeric).sum(axis=2)
        top = per_point.max(axis=1, keepdims=True)
        log_pdf: np.ndarray = (top + np.log(np.exp(per_point - top).mean(axis=1, keepdims=True)))[:, 0]
        return log_pdf
