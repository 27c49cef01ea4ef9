"""OoD-Bench's diversity and correlation shift between two labelled feature sets (PAPERS.md §10).

P is the training environments, Q the test environment. Both measures are Monte-Carlo integrals over
points drawn from a KDE of P∪Q, with P and Q densities from scipy's ``gaussian_kde`` (Scott's factor,
full covariance), as in ``m-Just/OoD-Bench`` ``ood_bench/scripts/quantify.py``:

- features are standardised together (``StandardScaler`` fitted on P∪Q);
- ``samples`` points z_i are drawn from ``gaussian_kde(P∪Q).resample(samples, seed=seed)``; r_i is that
  KDE's density at z_i;
- diversity sums over points where p̂ < eps_div **or** q̂ < eps_div (the support that is not shared);
- correlation sums, per class, over points where p̂ > eps_cor **and** q̂ > eps_cor (the shared support),
  with class-conditional KDEs, then averages the classes weighted by their sample size;
- each sum is divided by 2·samples. A point with eps_div ≤ p̂ ≤ eps_cor counts in neither (the reference's
  thresholds do not meet).

Formulas (``legacy=False``, OoD-Bench+, as PAPERS.md §10 states them): diversity (√p̂ − √q̂)²/r,
correlation [p̂_y√(q̂/p̂) + q̂_y√(p̂/q̂) − 2√(p̂_y q̂_y)]/r; their sum is a squared Hellinger distance between
the joint distributions of (z, y). ``legacy=True`` gives the original OoD-Bench formulas, the ones the
stored reference file implements: |p̂ − q̂|/r and |p̂_y√(q̂/p̂) − q̂_y√(p̂/q̂)|/r.

Like the reference, the two sides must have the same classes with the same count each (label shift
removed first: :func:`balance_labels` does it as OoD-Bench does, with the same ``RandomState`` draws), and
a class whose KDE cannot be fitted (too few points for a non-singular covariance) is skipped with a
warning (the reference's default, non-``--strict`` behaviour).

Where this differs from the reference, and why:

- the OoD-Bench+ formulas (the default here) are not in the stored ``quantify.py``, which has only the
  original ones; they are written from PAPERS.md §10 and the OoD-Bench README (diversity + correlation is
  the squared Hellinger distance between the joint distributions). ``legacy=True`` is the stored code;
- the sums are vectorised (the reference loops over the points in Python; the sums are the same);
- bad input is a :class:`~automl.errors.ConfigError` naming the argument (the reference raises a bare
  ``ValueError``/``RuntimeError``, or returns NaN when every class is skipped);
- ε calibration (the reference's ``--calibrate``: bisect ε so an i.i.d. split scores in [5e-3, 1e-2]) is
  not done here: pass the thresholds; ``automl shift --iid`` gives the i.i.d. control to calibrate against.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import gaussian_kde
from sklearn.preprocessing import StandardScaler

from automl.errors import ConfigError

Array = NDArray[np.float64]
Labels = NDArray[np.int64]


@dataclass(frozen=True)
class ShiftMeasures:
    """Diversity and correlation shift of Q (test environment) against P (training environments)."""

    diversity: float
    correlation: float
    #: classes left out of the correlation because their KDE could not be fitted (too few points)
    skipped_classes: tuple[int, ...] = ()


def features(z: ArrayLike, field: str) -> Array:
    """``z`` as a finite float (n, d) array; (n,) becomes (n, 1)."""
    try:
        a = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected a numeric array of features, got {type(z).__name__}", field=field) from exc
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ConfigError(f"expected features of shape (n, d) or (n,), got shape {a.shape}", field=field)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"empty feature set (shape {a.shape})", field=field)
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"{int(bad.sum())} non-finite value(s) (NaN or inf), the first at row {row}, "
                          f"coordinate {col}", field=field)
    return a


def labels(y: ArrayLike, n: int, field: str, other: str) -> Labels:
    """``y`` as an int64 vector of length ``n`` (the rows of ``other``); integral floats are accepted."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ConfigError(f"expected a 1-D vector of integer labels, got shape {a.shape}", field=field)
    if len(a) != n:
        raise ConfigError(f"{len(a)} labels for {n} rows of {other}: the lengths must match", field=field)
    if a.dtype.kind in "biu":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    raise ConfigError(f"expected integer labels, got dtype {a.dtype}", field=field)


def balanced_indices(y_p: ArrayLike, y_q: ArrayLike, *, seed: int = 0) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The rows of P and of Q that OoD-Bench keeps to remove label shift (``create_label_shift_free_datasets``):
    for each class of P in ascending order, one ``RandomState(seed)`` shuffles P's rows of the class, then Q's,
    and the first min(count in P, count in Q) of each are kept, in that shuffled order. A class absent from
    one side keeps no row; a class of Q only is dropped."""
    yp = np.asarray(y_p)
    yq = np.asarray(y_q)
    rng = np.random.RandomState(seed)
    keep_p: list[NDArray[np.intp]] = []
    keep_q: list[NDArray[np.intp]] = []
    for c in np.unique(yp):
        ip, iq = np.flatnonzero(yp == c), np.flatnonzero(yq == c)
        count = min(len(ip), len(iq))
        rng.shuffle(ip)
        rng.shuffle(iq)
        keep_p.append(ip[:count])
        keep_q.append(iq[:count])
    empty = np.zeros(0, dtype=np.intp)
    kp = np.concatenate(keep_p) if keep_p else empty
    kq = np.concatenate(keep_q) if keep_q else empty
    if len(kp) == 0:
        raise ConfigError("P and Q share no class: nothing is left after balancing the labels", field="y_q")
    return kp, kq


def balance_labels(
    z_p: ArrayLike, y_p: ArrayLike, z_q: ArrayLike, y_q: ArrayLike, *, seed: int = 0
) -> tuple[Array, Labels, Array, Labels]:
    """Remove label shift as OoD-Bench does (:func:`balanced_indices`): every class of P keeps min(count in P,
    count in Q) rows on both sides; classes present on one side only are dropped."""
    zp, zq = features(z_p, "z_p"), features(z_q, "z_q")
    yp, yq = labels(y_p, len(zp), "y_p", "z_p"), labels(y_q, len(zq), "y_q", "z_q")
    kp, kq = balanced_indices(yp, yq, seed=seed)
    return zp[kp], yp[kp], zq[kq], yq[kq]


def diversity_integral(p: Array, q: Array, r: Array, eps: float, legacy: bool = False) -> float:
    """(1/2M) Σ over points with p < eps or q < eps of (√p − √q)²/r (legacy: |p − q|/r)."""
    mask = (p < eps) | (q < eps)
    pm, qm, rm = p[mask], q[mask], r[mask]
    terms = np.abs(pm - qm) if legacy else (np.sqrt(pm) - np.sqrt(qm)) ** 2
    return float(np.sum(terms / rm) / (2 * len(r)))


def correlation_integral(
    p: Array, q: Array, p_y: Array, q_y: Array, r: Array, eps: float, legacy: bool = False
) -> float:
    """One class's D_y: (1/2M) Σ over points with p > eps and q > eps of the correlation integrand / r."""
    mask = (p > eps) & (q > eps)
    pm, qm, pym, qym, rm = p[mask], q[mask], p_y[mask], q_y[mask], r[mask]
    a, b = pym * np.sqrt(qm / pm), qym * np.sqrt(pm / qm)
    terms = np.abs(a - b) if legacy else a + b - 2 * np.sqrt(pym * qym)
    return float(np.sum(terms / rm) / (2 * len(r)))


def _kde(data: Array, field: str, what: str) -> gaussian_kde:
    """scipy's Gaussian KDE of (n, d) rows; a singular covariance becomes a ConfigError naming ``field``."""
    try:
        return gaussian_kde(data.T)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise ConfigError(f"cannot fit a Gaussian KDE to {what} ({data.shape[0]} points in {data.shape[1]}-D): "
                          "the covariance is singular (too few points, or a constant or collinear coordinate)",
                          field=field) from exc


def shift(
    z_p: ArrayLike,
    y_p: ArrayLike,
    z_q: ArrayLike,
    y_q: ArrayLike,
    *,
    samples: int = 10_000,
    eps_div: float = 1e-12,
    eps_cor: float = 5e-4,
    seed: int = 0,
    legacy: bool = False,
) -> ShiftMeasures:
    """OoD-Bench's diversity and correlation shift between features z_p (labels y_p) and z_q (labels y_q)."""
    zp, zq = features(z_p, "z_p"), features(z_q, "z_q")
    yp, yq = labels(y_p, len(zp), "y_p", "z_p"), labels(y_q, len(zq), "y_q", "z_q")
    if zp.shape[1] != zq.shape[1]:
        raise ConfigError(f"z_p has {zp.shape[1]} coordinates and z_q {zq.shape[1]}: the feature dimensions "
                          "must match", field="z_q")
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ConfigError(f"expected a positive integer number of Monte-Carlo points, got {samples!r}",
                          field="samples")
    for name, eps in (("eps_div", eps_div), ("eps_cor", eps_cor)):
        if not np.isfinite(eps) or eps < 0:
            raise ConfigError(f"expected a finite threshold >= 0, got {eps!r}", field=name)
    classes_p, counts_p = np.unique(yp, return_counts=True)
    classes_q, counts_q = np.unique(yq, return_counts=True)
    only = sorted(set(classes_p.tolist()) ^ set(classes_q.tolist()))
    if only:
        side = "y_p" if only[0] in set(classes_p.tolist()) else "y_q"
        raise ConfigError(f"class {only[0]} appears only in {side}: P and Q must have the same classes "
                          "(OoD-Bench removes label shift first; see automl.ood.balance_labels)", field=side)
    uneven = np.flatnonzero(counts_p != counts_q)
    if len(uneven):
        c = classes_p[uneven[0]]
        raise ConfigError(f"class {c} has {counts_p[uneven[0]]} points in P and {counts_q[uneven[0]]} in Q: "
                          "each class needs the same count on both sides (label shift removed first; "
                          "automl.ood.balance_labels subsamples them)", field="y_q")
    constant = np.flatnonzero(np.ptp(np.vstack([zp, zq]), axis=0) == 0)
    if len(constant):
        raise ConfigError(f"coordinate {constant[0]} is constant over both sets: a Gaussian KDE needs a "
                          "non-singular covariance", field="z_p")

    scaler = StandardScaler().fit(np.vstack([zp, zq]))
    zp, zq = scaler.transform(zp), scaler.transform(zq)
    z_all = np.vstack([zp, zq])
    sampling = _kde(z_all, "z_p", "P∪Q")
    points = sampling.resample(samples, seed=seed)
    r = sampling(points)
    p = _kde(zp, "z_p", "P")(points)
    q = _kde(zq, "z_q", "Q")(points)
    div = diversity_integral(p, q, r, eps_div, legacy)

    cors, sizes, skipped = [], [], []
    for c in classes_p:
        ip, iq = yp == c, yq == c
        try:
            p_y = gaussian_kde(zp[ip].T)(points)
            q_y = gaussian_kde(zq[iq].T)(points)
        except (np.linalg.LinAlgError, ValueError):
            warnings.warn(f"automl.ood.shift: skipping class {c} ({int(ip.sum())} points per side): its "
                          "Gaussian KDE cannot be fitted (too few points)", RuntimeWarning, stacklevel=2)
            skipped.append(int(c))
            continue
        cors.append(correlation_integral(p, q, p_y, q_y, r, eps_cor, legacy))
        sizes.append(int(ip.sum()))
    if not sizes:
        raise ConfigError("no class has enough points for a class-conditional KDE (each needs more points "
                          f"than the {zp.shape[1]} feature coordinates)", field="y_p")
    cor = float(np.average(cors, weights=sizes))
    if not (np.isfinite(div) and np.isfinite(cor)):
        raise ConfigError(f"the estimates are not finite (diversity {div}, correlation {cor})", field="z_p")
    return ShiftMeasures(diversity=div, correlation=cor, skipped_classes=tuple(skipped))
