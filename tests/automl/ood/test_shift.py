"""automl.ood.shift: the three cases of OoD-Bench (i.i.d., diversity, correlation), the integrals against
hand and quadrature values, label balancing, and every bad input as a ConfigError naming its field."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from automl.errors import ConfigError
from automl.ood import ShiftMeasures, balance_labels, shift
from automl.ood.shift import correlation_integral, diversity_integral

N = 300  # points per side
M = 2000  # Monte-Carlo points


def _labels(n: int = N) -> np.ndarray:
    return np.repeat([0, 1], n // 2)


def test_iid_split_of_one_gaussian_is_near_zero_on_both_axes() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2 * N, 2))
    y = _labels()
    for legacy in (False, True):
        m = shift(z[:N], y, z[N:], y, samples=M, legacy=legacy)
        assert isinstance(m, ShiftMeasures)
        assert m.diversity < 1e-3
        # the KDEs' sampling noise is the floor: the legacy |a - b| integrand does not cancel it (0.11 here,
        # why OoD-Bench calibrates eps_cor), the Hellinger form mostly does (0.011)
        assert m.correlation < (0.15 if legacy else 0.03)


def test_disjoint_supports_are_pure_diversity_shift() -> None:
    rng = np.random.default_rng(1)
    y = _labels()
    z_p = rng.normal(size=(N, 2))
    z_q = rng.normal(size=(N, 2)) + [8.0, 0.0]
    for legacy in (False, True):
        m = shift(z_p, y, z_q, y, samples=M, legacy=legacy)
        assert m.diversity > 0.9
        assert m.correlation < 1e-3


def test_flipped_spurious_feature_is_pure_correlation_shift() -> None:
    rng = np.random.default_rng(2)
    y = _labels()
    spurious = np.where(y == 1, 2.0, -2.0)
    z_p = np.c_[rng.normal(size=N), spurious + 0.5 * rng.normal(size=N)]
    z_q = np.c_[rng.normal(size=N), -spurious + 0.5 * rng.normal(size=N)]
    for legacy in (False, True):
        m = shift(z_p, y, z_q, y, samples=M, legacy=legacy)
        assert m.diversity < 1e-3
        assert m.correlation > 0.8


def test_same_seed_same_numbers_and_1d_features_accepted() -> None:
    rng = np.random.default_rng(3)
    y = _labels()
    z_p, z_q = rng.normal(size=N), rng.normal(size=N) + 1.0
    a = shift(z_p, y, z_q, y, samples=500, seed=7)
    b = shift(z_p[:, None], y, z_q[:, None], y, samples=500, seed=7)
    assert a == b


def test_integrals_match_hand_computed_values() -> None:
    p = np.array([1e-13, 0.5, 0.2, 1e-3])
    q = np.array([0.3, 1e-14, 0.2, 4e-3])
    r = np.array([0.5, 0.5, 1.0, 2.0])
    # only the first two points are outside the shared support at eps 1e-12
    assert diversity_integral(p, q, r, 1e-12, legacy=True) == pytest.approx(
        (abs(1e-13 - 0.3) / 0.5 + abs(0.5 - 1e-14) / 0.5) / 8, rel=1e-12)
    assert diversity_integral(p, q, r, 1e-12) == pytest.approx(
        ((np.sqrt(1e-13) - np.sqrt(0.3)) ** 2 / 0.5 + (np.sqrt(0.5) - np.sqrt(1e-14)) ** 2 / 0.5) / 8, rel=1e-12)
    p_y = np.array([0.0, 0.0, 0.3, 2e-3])
    q_y = np.array([0.0, 0.0, 0.1, 1e-3])
    # eps 5e-4: points 3 and 4 are shared; point 3 has p = q, so the ratios are 1
    a4, b4 = 2e-3 * np.sqrt(4e-3 / 1e-3), 1e-3 * np.sqrt(1e-3 / 4e-3)
    assert correlation_integral(p, q, p_y, q_y, r, 5e-4, legacy=True) == pytest.approx(
        (abs(0.3 - 0.1) / 1.0 + abs(a4 - b4) / 2.0) / 8, rel=1e-12)
    assert correlation_integral(p, q, p_y, q_y, r, 5e-4) == pytest.approx(
        ((0.3 + 0.1 - 2 * np.sqrt(0.03)) / 1.0 + (a4 + b4 - 2 * np.sqrt(2e-6)) / 2.0) / 8, rel=1e-12)
    # a point with eps_div <= p <= eps_cor is in neither region (the reference's thresholds do not meet)
    one = np.array([1e-4])
    assert diversity_integral(one, one * 2, one, 1e-12) == 0.0
    assert correlation_integral(one, one * 2, one, one, one, 5e-4) == 0.0


def _reference_loops(z_p: np.ndarray, y_p: np.ndarray, z_q: np.ndarray, y_q: np.ndarray, samples: int,
                     eps_div: float, eps_cor: float, seed: int) -> tuple[float, float]:
    """OoD-Bench's quantify.py (the legacy formulas) written out again point by point, as plain loops, with
    the standardisation by hand: an independent check of the vectorised code."""
    both = np.vstack([z_p, z_q])
    mu, sd = both.mean(axis=0), both.std(axis=0)
    zp, zq, za = (z_p - mu) / sd, (z_q - mu) / sd, (both - mu) / sd
    sampling = gaussian_kde(za.T)
    points = sampling.resample(samples, seed=seed)
    r = sampling(points)
    p, q = gaussian_kde(zp.T)(points), gaussian_kde(zq.T)(points)
    div = 0.0
    for i in range(samples):
        if p[i] < eps_div or q[i] < eps_div:
            div += abs(p[i] - q[i]) / r[i]
    div /= 2 * samples
    total, weight = 0.0, 0
    for c in sorted(set(y_p.tolist())):
        p_y, q_y = gaussian_kde(zp[y_p == c].T)(points), gaussian_kde(zq[y_q == c].T)(points)
        d = 0.0
        for i in range(samples):
            if p[i] > eps_cor and q[i] > eps_cor:
                d += abs(p_y[i] * np.sqrt(q[i] / p[i]) - q_y[i] * np.sqrt(p[i] / q[i])) / r[i]
        n = int(np.sum(y_p == c))
        total += n * d / (2 * samples)
        weight += n
    return div, total / weight


def test_legacy_mode_matches_the_reference_loops() -> None:
    rng = np.random.default_rng(8)
    y = np.array([0] * 40 + [1] * 30 + [2] * 30)
    z_p = rng.normal(size=(100, 3)) + 0.7 * y[:, None]
    z_q = rng.normal(size=(100, 3)) * 1.3 + [2.5, 0.0, 0.0] - 0.7 * y[:, None]
    for eps_div, eps_cor in ((1e-12, 5e-4), (0.01, 0.02)):
        div, cor = _reference_loops(z_p, y, z_q, y, 400, eps_div, eps_cor, seed=3)
        m = shift(z_p, y, z_q, y, samples=400, eps_div=eps_div, eps_cor=eps_cor, seed=3, legacy=True)
        assert div > 1e-3 and cor > 1e-3
        assert m.diversity == pytest.approx(div, rel=1e-9)
        assert m.correlation == pytest.approx(cor, rel=1e-9)


def _quadrature(z_p: np.ndarray, y_p: np.ndarray, z_q: np.ndarray, y_q: np.ndarray,
                eps_div: float, eps_cor: float) -> tuple[float, float]:
    """The two integrals of the new formulas by quadrature on a fine grid, with the same KDEs (1-D)."""
    both = np.concatenate([z_p, z_q])
    mu, sd = both.mean(), both.std()
    zp, zq = (z_p - mu) / sd, (z_q - mu) / sd
    x = np.linspace(-8, 8, 40_001)
    dx = x[1] - x[0]
    p, q = gaussian_kde(zp)(x), gaussian_kde(zq)(x)
    out = (p < eps_div) | (q < eps_div)
    div = 0.5 * np.sum(((np.sqrt(p) - np.sqrt(q)) ** 2)[out]) * dx
    inside = (p > eps_cor) & (q > eps_cor)
    cors, sizes = [], []
    for c in np.unique(y_p):
        p_y, q_y = gaussian_kde(zp[y_p == c])(x), gaussian_kde(zq[y_q == c])(x)
        f = p_y * np.sqrt(q / p) + q_y * np.sqrt(p / q) - 2 * np.sqrt(p_y * q_y)
        cors.append(0.5 * np.sum(f[inside]) * dx)
        sizes.append(int(np.sum(y_p == c)))
    return float(div), float(np.average(cors, weights=sizes))


def test_monte_carlo_estimate_matches_quadrature_in_1d() -> None:
    rng = np.random.default_rng(4)
    y = _labels()
    z_p = rng.normal(size=N) + 0.8 * y
    z_q = rng.normal(size=N) * 0.7 + 1.5 - 0.8 * y
    eps_div, eps_cor = 0.05, 0.05  # a partial mask on both sides, so both integrals are non-trivial
    div, cor = _quadrature(z_p, y, z_q, y, eps_div, eps_cor)
    m = shift(z_p, y, z_q, y, samples=20_000, eps_div=eps_div, eps_cor=eps_cor)
    assert div > 0.02 and cor > 0.02
    assert m.diversity == pytest.approx(div, rel=0.1)
    assert m.correlation == pytest.approx(cor, rel=0.1)


def test_balance_labels_equalises_class_counts() -> None:
    rng = np.random.default_rng(5)
    y_p = np.array([0] * 50 + [1] * 30 + [2] * 10)
    y_q = np.array([0] * 20 + [1] * 40)
    z_p, z_q = rng.normal(size=(90, 2)), rng.normal(size=(60, 2))
    zp, yp, zq, yq = balance_labels(z_p, y_p, z_q, y_q, seed=0)
    assert np.bincount(yp).tolist() == [20, 30] == np.bincount(yq).tolist()
    assert len(zp) == len(yp) == 50 == len(zq) == len(yq)
    assert all(any(np.array_equal(row, r) for r in z_p[y_p == c]) for row, c in zip(zp, yp))
    shift(zp, yp, zq, yq, samples=200)  # balanced input is accepted


def test_a_class_too_small_for_a_kde_is_skipped_with_a_warning() -> None:
    rng = np.random.default_rng(6)
    y = np.array([0] * 60 + [1] * 60 + [2] * 2)  # class 2: 2 points in 3-D, a singular covariance
    z_p, z_q = rng.normal(size=(122, 3)), rng.normal(size=(122, 3))
    with pytest.warns(RuntimeWarning, match="skipping class 2"):
        m = shift(z_p, y, z_q, y, samples=300)
    assert np.isfinite(m.correlation)


def _good() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    y = _labels(40)
    return {"z_p": rng.normal(size=(40, 2)), "y_p": y, "z_q": rng.normal(size=(40, 2)), "y_q": y.copy()}


def _bad(**change: Any) -> dict[str, Any]:
    args = _good()
    args.update(change)
    return args


BAD = {
    "nan": (lambda a: _bad(z_p=np.where(np.eye(40, 2) > 0, np.nan, a["z_p"])), "z_p", "non-finite"),
    "inf": (lambda a: _bad(z_q=np.where(np.eye(40, 2) > 0, np.inf, a["z_q"])), "z_q", "non-finite"),
    "lengths": (lambda a: _bad(y_p=a["y_p"][:-2]), "y_p", "lengths must match"),
    "empty": (lambda a: _bad(z_q=np.zeros((0, 2)), y_q=np.zeros(0, int)), "z_q", "empty"),
    "dims": (lambda a: _bad(z_q=np.c_[a["z_q"], a["z_q"][:, 0]]), "z_q", "dimensions must match"),
    "3-d": (lambda a: _bad(z_p=a["z_p"][:, :, None]), "z_p", "shape"),
    "class in q only": (lambda a: _bad(y_q=np.r_[a["y_q"][:-1], 5]), "y_q", "class 5 appears only in y_q"),
    "class in p only": (lambda a: _bad(y_p=np.r_[a["y_p"][:-1], 5]), "y_p", "class 5 appears only in y_p"),
    "uneven counts": (lambda a: _bad(y_q=np.r_[np.zeros(30, int), np.ones(10, int)]), "y_q", "same count"),
    "float labels": (lambda a: _bad(y_p=a["y_p"] + 0.5), "y_p", "integer labels"),
    "constant coordinate": (lambda a: _bad(z_p=np.c_[a["z_p"][:, 0], np.ones(40)],
                                           z_q=np.c_[a["z_q"][:, 0], np.ones(40)]), "z_p", "constant"),
    "too few points": (lambda a: _bad(z_p=a["z_p"][:2], y_p=a["y_p"][19:21], z_q=a["z_q"][:2],
                                      y_q=a["y_q"][19:21]), "z_p", "singular"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_config_error_naming_the_field(case: str) -> None:
    make, field, words = BAD[case]
    with pytest.raises(ConfigError, match=words) as err:
        shift(**make(_good()), samples=100)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("option", "value"), [("samples", 0), ("samples", 2.5), ("eps_div", -1.0),
                                                ("eps_cor", float("nan"))])
def test_bad_options_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        shift(**_good(), **{"samples": 100, option: value})
    assert err.value.field == option
