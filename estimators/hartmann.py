"""Estimator ``mf-hartmann``: the multi-fidelity Hartmann 3 and 6 functions, a simulated benchmark that runs
offline in microseconds (spaces ``mf-hartmann3`` and ``mf-hartmann6``, for ``--executor simulated``).

The definition is mf-prior-bench's (``mfpbench.synthetic.hartmann``, after Kandasamy et al. 2017): at
fidelity ``z`` in ``[1, max_fidelity]``, with ``s = log(z) / log(max_fidelity)``, the Hartmann weights
``alpha`` become ``alpha - bias * (1 - s)`` (lower fidelities are flatter) and ``|N(0, 1)| * noise * (1 - s)``
is added, so the highest fidelity is the noiseless Hartmann function. Its cost is
``0.05 + 0.95 * (z / max_fidelity) ** 2`` of a full evaluation (``fid_cost``; ``cost_seconds`` scales it
by ``full_cost_s``). mf-prior-bench itself is not a dependency: it pins numpy < 2. Its noise draws
from Python's ``hash`` of the point; here they come from a SHA-256 of seed, fidelity and point, so the
noisy values differ from its own (the noiseless top fidelity agrees) but are the same on every machine.
"""
from __future__ import annotations

import hashlib
import math
from typing import ClassVar, Mapping

import numpy as np

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.space.model import Candidate
from estimators.simulated_progress import continued_from

#: mf-prior-bench's presets: (bias, noise); the worse, the less low fidelities say about the top one
PRESETS: Mapping[str, tuple[float, float]] = {"default": (0.5, 0.1), "good": (2.5, 2.0), "moderate": (3.0, 3.0),
                                              "bad": (3.5, 4.0), "terrible": (4.0, 5.0)}

_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
#: dimension -> (A, P * 1e-4, the global minimum's value, its location)
_FUNCTIONS: Mapping[int, tuple[np.ndarray, np.ndarray, float, tuple[float, ...]]] = {
    3: (np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
        1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]),
        -3.86278, (0.114614, 0.555649, 0.852547)),
    6: (np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]]),
        1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]),
        -3.32237, (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)),
}


def mf_hartmann(x: tuple[float, ...], z: float, *, max_fidelity: float = 100.0, bias: float = 0.5,
                noise: float = 0.1, seed: int = 1337) -> float:
    """The value (minimised) of the multi-fidelity Hartmann function of ``len(x)`` (3 or 6) dimensions at ``z``."""
    a, p, _, _ = _FUNCTIONS[len(x)]
    s = math.log(z) / math.log(max_fidelity) if max_fidelity > 1 else 1.0
    alpha = _ALPHA - bias * (1.0 - s)
    point = np.asarray(x, dtype=float)
    value = -float(np.sum(alpha * np.exp(-np.sum(a * (point - p) ** 2, axis=1))))
    if noise == 0 or s >= 1:
        return value
    digest = hashlib.sha256(repr((seed, float(z), tuple(float(v) for v in x))).encode()).digest()
    draw = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal()
    return value + abs(draw) * noise * (1.0 - s)


def fidelity_cost(z: float, max_fidelity: float) -> float:
    """The share of a full evaluation's cost that fidelity ``z`` takes (lambda(z) of Kandasamy et al. 2017)."""
    return 0.05 + 0.95 * (z / max_fidelity) ** 2


@estimators.register("mf-hartmann")
class MFHartmannEstimator(Estimator):
    """Options: ``dim`` (3 | 6), ``preset`` (default | good | moderate | bad | terrible: bias and noise),
    ``bias``/``noise`` (override the preset's), ``max_fidelity`` (100), ``full_cost_s`` (simulated seconds of a
    top-fidelity evaluation, 100), ``seed`` (1337: the noise). The budget is the fidelity (None: the top one);
    the config holds ``X_0`` ... ``X_{dim-1}`` in [0, 1]. Reports ``value`` (minimise), ``regret`` (value minus
    the global minimum), ``cost_seconds`` and ``fid_cost`` (of a continued trial: from the fidelity it continues).
    """

    needs_task: ClassVar[bool] = False
    #: simulated: a continued trial (a promotion with a checkpoint store, a PBT step) pays only the cost from the
    #: fidelity its state reached (:mod:`estimators.simulated_progress`)
    can_checkpoint: ClassVar[bool] = True

    def __init__(self, dim: int = 3, preset: str = "default", bias: float | None = None, noise: float | None = None,
                 max_fidelity: float = 100.0, full_cost_s: float = 100.0, seed: int = 1337) -> None:
        super().__init__()
        if dim not in _FUNCTIONS:
            raise ConfigError(f"mf-hartmann: dim must be 3 or 6, got {dim!r}", field="dim")
        if preset not in PRESETS:
            raise ConfigError(f"mf-hartmann: preset must be one of {', '.join(PRESETS)}, got {preset!r}",
                              field="preset")
        self.dim = int(dim)
        self.bias = float(bias) if bias is not None else PRESETS[preset][0]
        self.noise = float(noise) if noise is not None else PRESETS[preset][1]
        if self.bias < 0 or self.noise < 0:
            raise ConfigError(f"mf-hartmann: bias and noise must be >= 0, got {self.bias}, {self.noise}")
        if not max_fidelity >= 1 or not full_cost_s > 0:
            raise ConfigError(f"mf-hartmann: max_fidelity must be >= 1 and full_cost_s > 0, got {max_fidelity}, "
                              f"{full_cost_s}")
        self.max_fidelity = float(max_fidelity)
        self.full_cost_s = float(full_cost_s)
        self.seed = int(seed)

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        names = [f"X_{i}" for i in range(self.dim)]
        config = candidate.config
        missing = [n for n in names if not isinstance(config.get(n), (int, float))]
        if missing:
            raise ConfigError(f"mf-hartmann (dim {self.dim}) reads {', '.join(names)} from the config; "
                              f"{', '.join(missing)} missing or not a number (got {sorted(config)})")
        z = self.max_fidelity if budget is None else float(budget)
        if not 1 <= z <= self.max_fidelity:
            raise ConfigError(f"mf-hartmann: the budget (fidelity) must lie in [1, {self.max_fidelity:g}], got {z:g}")
        value = mf_hartmann(tuple(float(config[n]) for n in names), z, max_fidelity=self.max_fidelity,
                            bias=self.bias, noise=self.noise, seed=self.seed)
        share = fidelity_cost(z, self.max_fidelity)
        replica = ctx.info.get("replica")
        start = continued_from(ctx, candidate.key if replica is None else f"{candidate.key}.r{replica}", z)
        if start is not None:
            share -= fidelity_cost(start, self.max_fidelity)
        return Result(metrics={"value": value, "regret": value - _FUNCTIONS[self.dim][2]},
                      cost={"cost_seconds": self.full_cost_s * share, "fid_cost": share})


def optimum(dim: int) -> dict[str, float]:
    """The global minimiser of the ``dim``-dimensional Hartmann function, as a config."""
    return {f"X_{i}": x for i, x in enumerate(_FUNCTIONS[dim][3])}
