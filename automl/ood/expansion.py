"""Expansion-function model selection (PAPERS.md §9): v(h) from 1-D KDEs, and DomainBed's three selection rules.

``model_variation`` follows ``YWolfeee/DomainBed`` ``logs/matrix_optimizer_new.py`` (the module ``main.py``
imports: ``opt_kde.forward`` with identity ``params``, ``cal_info=True, use_mean_info=True``; the older
``logs/matrix_optimizer.py`` took the max over class pairs and the min over every environment, test
included) and the per-threshold reduction in ``main.py``;
``select_expansion`` follows ``logs/model_selection.py`` (``xmode == 'train_mix'``). Their quirks are kept:

- features are grouped per (environment, class) into a zero-padded block of ``max_n`` rows (``max_n`` is
  the largest group) and divided by the mean, over groups and coordinates, of the unbiased std taken over
  those ``max_n`` rows, padding zeros included;
- one bandwidth for every group: 1.06 · max_n^(−1/5) · (mean std after the division, i.e. 1);
- the grid is ``grid`` evenly spaced points from the minimum to the maximum of the block (padding zeros
  included, so 0 is inside it whenever groups differ in size); the density is not evaluated outside it;
- TV = Σ|f − g| · Δ / 2 with Δ = (max − min) / grid (not / (grid − 1));
- Var_j = max over classes and pairs of training environments; Info_j = mean over class pairs of the
  min over training environments; v(h) = mean Var_j over coordinates with Info_j ≥ info_threshold, NaN
  when none qualifies (``select_expansion`` then skips the candidate, as ``model_selection.py`` does).

Divergences: densities are exact float64 sums of Gaussian kernels (the reference sums in float32 and
subtracts the padding's contribution again, which only adds rounding error; a brute-force rewrite of the
padded computation agrees to 1e-9 in ``tests/automl/ood/test_expansion.py``); bad input (NaN, mismatched
lengths, fewer than 2 training environments or classes, a class missing from an environment, where the
reference divides by zero) is a ConfigError naming the argument. ``main.py`` also writes v(h) after 4,000
steps of a learned linear transform (``opt_kde.backward``); that method is commented out in the latest
``matrix_optimizer_new.py`` and which of the two files ``model_selection.py`` read is not recorded, so
only the identity transform (``main.py``'s ``before_`` file) is reproduced. Cost: about 2.7 s for 300
validation rows of 128 features at the default 10,000-point grid (one CPU core).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from automl.errors import ConfigError
from automl.ood.shift import features, labels

Array = NDArray[np.float64]

#: accuracy window of the official criterion: candidates within it of the best one set the trade-off ratio
ACC_WINDOW = 0.1
#: kernel values per tile (1 MiB of float64: stays in cache)
_TILE = 131_072
#: grid densities held at once (64 MiB of float64)
_DENSITIES = 8_000_000


@dataclass(frozen=True, eq=False)
class Variation:
    """v(h) and the per-coordinate numbers behind it."""

    value: float  # v(h): mean variation over informative coordinates (NaN if none)
    variation: Array  # Var_j, one per coordinate
    informativeness: Array  # Info_j, one per coordinate
    informative: NDArray[np.bool_]  # Info_j >= info_threshold


def _environments(env: ArrayLike, n: int) -> tuple[list[Hashable], NDArray[np.intp]]:
    """The distinct environments in first-seen order and each row's index into them."""
    a = np.asarray(env)
    if a.ndim != 1:
        raise ConfigError(f"expected a 1-D vector of environment ids, got shape {a.shape}", field="env")
    if len(a) != n:
        raise ConfigError(f"{len(a)} environment ids for {n} rows of z: the lengths must match", field="env")
    values = a.tolist()
    order: dict[Hashable, int] = {}
    for v in values:
        order.setdefault(v, len(order))
    return list(order), np.array([order[v] for v in values], dtype=np.intp)


def _densities(cols: Array, groups: list[NDArray[np.intp]], grid: Array, h: float) -> Array:
    """Gaussian KDE (bandwidth h) of each group's rows of each column, on the grid: (groups, columns, grid).

    Exact kernel sums, tiled so that each tile of kernel values stays in cache (several times faster than
    one large broadcast)."""
    rows = np.concatenate(groups)
    weights = np.zeros((len(groups), len(rows)))
    start = 0
    for g, members in enumerate(groups):
        weights[g, start:start + len(members)] = 1.0 / len(members)
        start += len(members)
    weights /= math.sqrt(2 * math.pi) * h
    data, points = cols[rows] / h, grid / h
    out = np.zeros((len(groups), cols.shape[1], len(grid)))
    n_rows = min(len(rows), _TILE)
    n_points = max(1, _TILE // n_rows)
    tile = np.empty((n_rows, n_points))
    for j in range(cols.shape[1]):
        for r0 in range(0, len(rows), n_rows):
            column = data[r0:r0 + n_rows, j, None]
            for g0 in range(0, len(grid), n_points):
                chunk = points[g0:g0 + n_points]
                t = tile[:len(column), :len(chunk)]
                np.subtract(column, chunk[None, :], out=t)
                np.square(t, out=t)
                t *= -0.5
                np.exp(t, out=t)
                out[:, j, g0:g0 + len(chunk)] += weights[:, r0:r0 + n_rows] @ t
    return out


def _total_variations(
    x: Array, groups: list[list[NDArray[np.intp]]], points: Array, h: float, delta: float
) -> tuple[Array, Array]:
    """Var_j (max over classes and environment pairs) and Info_j (mean over class pairs of the min over
    environments) of the TVs between grid densities; ``groups[e][c]`` are the rows of environment e, class c.

    Columns go in chunks so that the densities held at once stay near ``_DENSITIES`` floats."""
    n_env, n_cls = len(groups), len(groups[0])
    flat = [rows for per_env in groups for rows in per_env]
    variation, informativeness = np.empty(x.shape[1]), np.empty(x.shape[1])
    step = max(1, _DENSITIES // (n_env * n_cls * len(points)))
    for j0 in range(0, x.shape[1], step):
        dens = _densities(x[:, j0:j0 + step], flat, points, h)
        dens = dens.reshape(n_env, n_cls, dens.shape[1], len(points))
        tv_env = np.stack([np.abs(dens[a] - dens[b]).sum(axis=-1) * delta / 2
                           for a in range(n_env) for b in range(a + 1, n_env)])
        variation[j0:j0 + step] = tv_env.max(axis=(0, 1))
        tv_cls = np.stack([np.abs(dens[:, a] - dens[:, b]).sum(axis=-1) * delta / 2
                           for a in range(n_cls) for b in range(a + 1, n_cls)])
        informativeness[j0:j0 + step] = tv_cls.min(axis=1).mean(axis=0)
    return variation, informativeness


def model_variation(
    z: ArrayLike,
    y: ArrayLike,
    env: ArrayLike,
    *,
    info_threshold: float = 0.3,
    train_envs: Sequence[Hashable] | None = None,
    grid: int = 10_000,
) -> Variation:
    """v(h) of one candidate from its features z (n, d) with labels y and environment ids env.

    Every environment in ``env`` is a training environment unless ``train_envs`` names a subset; the others
    then only enter the normalisation, bandwidth and grid, as the reference (which passes every domain,
    test domain included) does. Pass only training-domain rows to keep the test domain out entirely."""
    x = features(z, "z")
    yy = labels(y, len(x), "y", "z")
    envs, env_idx = _environments(env, len(x))
    if not 0 <= info_threshold <= 1:
        raise ConfigError(f"expected a total-variation threshold in [0, 1], got {info_threshold!r}",
                          field="info_threshold")
    if isinstance(grid, bool) or not isinstance(grid, int | np.integer) or grid < 2:
        raise ConfigError(f"expected an integer number of grid points >= 2, got {grid!r}", field="grid")
    if train_envs is None:
        train = list(range(len(envs)))
    else:
        unknown = [e for e in train_envs if e not in envs]
        if unknown:
            raise ConfigError(f"training environment {unknown[0]!r} has no row in env", field="train_envs")
        train = sorted({envs.index(e) for e in train_envs})
    if len(train) < 2:
        raise ConfigError(f"{len(train)} training environment(s): the variation across environments needs "
                          "at least 2", field="train_envs" if train_envs is not None else "env")
    classes = np.unique(yy)
    if len(classes) < 2:
        raise ConfigError(f"{len(classes)} class(es): informativeness compares classes and needs at least 2",
                          field="y")

    # a class absent from an environment (a small held-out split) has no density there: it is left out,
    # with a warning, as long as two classes remain (the reference's data always holds every class)
    absent = {int(c): next(envs[e] for e in range(len(envs)) if not ((env_idx == e) & (yy == c)).any())
              for c in classes if any(not ((env_idx == e) & (yy == c)).any() for e in range(len(envs)))}
    if absent:
        kept = np.array([c for c in classes if int(c) not in absent])
        if len(kept) < 2:
            c, e = next(iter(absent.items()))
            raise ConfigError(f"class {c} has no row in environment {e!r}, and fewer than 2 classes have rows in "
                              "every environment", field="y")
        warnings.warn(f"v(h): {len(absent)} class(es) left out, having no row in some environment ("
                      + ", ".join(f"class {c} in {e!r}" for c, e in absent.items()) + ")", stacklevel=2)
        rows = np.isin(yy, kept)
        x, yy, env_idx, classes = x[rows], yy[rows], env_idx[rows], kept
    groups = [[np.flatnonzero((env_idx == e) & (yy == c)) for c in classes] for e in range(len(envs))]
    sizes = np.array([[len(r) for r in row] for row in groups])
    max_n = int(sizes.max())
    if max_n < 2:
        raise ConfigError("every (environment, class) group has a single row: the std needs 2", field="z")

    # std over the zero-padded block of max_n rows per group (unbiased), averaged over groups and coordinates
    sums = np.array([[x[r].sum(axis=0) for r in row] for row in groups])
    squares = np.array([[(x[r] ** 2).sum(axis=0) for r in row] for row in groups])
    var = (squares - sums**2 / max_n) / (max_n - 1)
    scale = float(np.sqrt(np.maximum(var, 0.0)).mean())
    if not scale > 0:
        raise ConfigError("the features are constant within every (environment, class) group", field="z")
    x = x / scale
    h = 1.06 * max_n ** (-1.0 / 5) * float(np.sqrt(np.maximum(var, 0.0)).mean()) / scale
    padded = bool((sizes < max_n).any())
    left = min(float(x.min()), 0.0) if padded else float(x.min())
    right = max(float(x.max()), 0.0) if padded else float(x.max())
    points = np.linspace(left, right, grid)
    delta = (right - left) / grid

    variation, informativeness = _total_variations(x, [[groups[e][c] for c in range(len(classes))] for e in train],
                                                   points, h, delta)
    informative = informativeness >= info_threshold
    value = float(variation[informative].mean()) if informative.any() else float("nan")
    return Variation(value=value, variation=variation, informativeness=informativeness, informative=informative)


def _accuracies(accuracies: ArrayLike, field: str = "accuracies") -> Array:
    a = np.asarray(accuracies, dtype=np.float64)
    if a.ndim != 1 or len(a) == 0:
        raise ConfigError(f"expected a non-empty 1-D sequence of accuracies, got shape {a.shape}", field=field)
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"accuracy {int(np.flatnonzero(~np.isfinite(a))[0])} is not finite", field=field)
    return a


def select_best_value(accuracies: ArrayLike) -> int:
    """DomainBed's training-domain validation rule: the candidate with the best mean validation accuracy
    over the training domains (the first on ties)."""
    return int(np.argmax(_accuracies(accuracies)))


def select_oracle(test_accuracies: ArrayLike) -> int:
    """DomainBed's test-domain oracle: the best accuracy on held-out test-domain data. An upper reference
    for the other rules, never a rule a search may use."""
    return int(np.argmax(_accuracies(test_accuracies, "test_accuracies")))


def select_expansion(
    accuracies: ArrayLike, variations: Sequence[float | Variation] | NDArray[np.floating[Any]], *,
    window: float = ACC_WINDOW
) -> int:
    """The expansion-function criterion: argmax acc − r·v with r = std_S(acc) / std_S(v) over
    S = {acc > max acc − window}; accuracies are fractions in [0, 1].

    As in ``model_selection.py``, candidates whose v(h) is NaN (no informative coordinate) are left out of
    everything, the stds are population stds, the pick may fall outside S, and ties go to the first. Where
    the reference divides 0 by 0 (S of one candidate, or v equal across S) r is taken as 0 instead."""
    acc = _accuracies(accuracies)
    if isinstance(variations, np.ndarray):
        v = variations.astype(np.float64)
    else:
        try:
            v = np.asarray([x.value if isinstance(x, Variation) else x for x in variations], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError("expected one number or Variation per candidate", field="variations") from exc
    if v.ndim != 1 or len(v) != len(acc):
        raise ConfigError(f"{v.size} variations for {len(acc)} accuracies: expected one per candidate",
                          field="variations")
    if np.isinf(v).any():
        raise ConfigError(f"variation {int(np.flatnonzero(np.isinf(v))[0])} is infinite", field="variations")
    if not np.isfinite(window) or window <= 0:
        raise ConfigError(f"expected a finite accuracy window > 0, got {window!r}", field="window")
    valid = np.flatnonzero(~np.isnan(v))
    if len(valid) == 0:
        raise ConfigError("every candidate's variation is NaN (no informative coordinate)", field="variations")
    a, x = acc[valid], v[valid]
    near = a > a.max() - window
    acc_std, dis_std = float(np.std(a[near])), float(np.std(x[near]))
    ratio = acc_std / dis_std if dis_std > 0 else 0.0
    return int(valid[int(np.argmax(a - ratio * x))])
