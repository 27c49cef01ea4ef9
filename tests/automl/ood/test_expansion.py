"""automl.ood.expansion: v(h) against a brute-force rewrite of the reference's padded-matrix computation
(YWolfeee/DomainBed ``logs/matrix_optimizer_new.py`` with identity params, ``main.py``'s threshold), the
selection rules against hand-computed picks, and every bad input as a ConfigError naming its argument."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from automl.errors import ConfigError
from automl.ood import Variation, model_variation, select_best_value, select_expansion, select_oracle


def _reference_variation(z: np.ndarray, y: np.ndarray, env: np.ndarray, train: list[int], grid: int,
                         threshold: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The reference's computation written out: a zero-padded (env, class, max_n, d) block, the padding's
    kernel mass subtracted again, every ordered pair of environments / classes."""
    envs, classes = sorted(set(env.tolist())), sorted(set(y.tolist()))
    groups = [[z[(env == e) & (y == c)] for c in classes] for e in envs]
    max_n = max(len(g) for row in groups for g in row)
    block = np.zeros((len(envs), len(classes), max_n, z.shape[1]))
    lengths = np.zeros((len(envs), len(classes)))
    for i, row in enumerate(groups):
        for k, g in enumerate(row):
            block[i, k, :len(g)] = g
            lengths[i, k] = len(g)
    block = block / block.std(axis=2, ddof=1).mean()
    bandwidth = 1.06 * max_n ** (-1 / 5) * block.std(axis=2, ddof=1).mean()
    left, right = block.min(), block.max()
    delta = (right - left) / grid
    points = np.linspace(left, right, grid)
    kernel = np.exp(-0.5 * (block[..., None] - points) ** 2 / bandwidth**2).sum(axis=2)  # (E, L, d, G)
    kernel -= (max_n - lengths)[..., None, None] * np.exp(-0.5 * points**2 / bandwidth**2)
    density = kernel / lengths[..., None, None] / (math.sqrt(2 * math.pi) * bandwidth)
    env_tv = np.array([np.abs(density[a] - density[b]).sum(-1) for a in train for b in train if a < b]) * delta / 2
    variation = env_tv.max(axis=0).max(axis=0)  # max over pairs, then over classes
    cls_tv = np.array([np.abs(density[train, a] - density[train, b]).sum(-1)
                       for a in range(len(classes)) for b in range(len(classes)) if a < b]) * delta / 2
    info = cls_tv.min(axis=1).mean(axis=0)  # min over training environments, mean over class pairs
    chosen = info >= threshold
    return (float(variation[chosen].mean()) if chosen.any() else float("nan")), variation, info


def _features(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 environments (the last a test one) x 3 classes, uneven group sizes; coordinate 0 separates the
    classes, coordinate 1 drifts with the environment, coordinate 2 is noise."""
    rng = np.random.default_rng(seed)
    rows, ys, es = [], [], []
    for e in range(3):
        for c in range(3):
            n = 12 + 3 * e + 2 * c
            z = rng.normal(size=(n, 3))
            z[:, 0] += 3.0 * c
            z[:, 1] += 1.5 * e
            rows.append(z)
            ys += [c] * n
            es += [e] * n
    return np.vstack(rows), np.array(ys), np.array(es)


@pytest.mark.parametrize("train_envs", [None, [0, 1]])
def test_variation_matches_the_reference_computation(train_envs: list[int] | None) -> None:
    z, y, env = _features()
    train = [0, 1, 2] if train_envs is None else train_envs
    want, variation, info = _reference_variation(z, y, env, train, grid=400, threshold=0.3)
    got = model_variation(z, y, env, train_envs=train_envs, grid=400)
    np.testing.assert_allclose(got.variation, variation, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.informativeness, info, rtol=1e-9, atol=1e-12)
    assert got.informative.tolist() == (info >= 0.3).tolist()
    assert got.value == pytest.approx(want, rel=1e-9)
    # coordinate 0 is the informative one, coordinate 1 the one that varies
    assert got.informative[0] and got.informativeness[0] > 0.5
    assert got.variation[1] > got.variation[2]


def test_identical_environments_have_zero_variation() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    z = rng.normal(size=(60, 4)) + 4.0 * y[:, None]
    zz, yy = np.vstack([z, z]), np.r_[y, y]
    env = np.repeat(["a", "b"], 60)
    v = model_variation(zz, yy, env, grid=2000)
    assert isinstance(v, Variation)
    assert v.informative.all()
    assert v.value == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(v.variation, 0.0, atol=1e-12)


def test_no_informative_coordinate_is_nan() -> None:
    rng = np.random.default_rng(2)
    y, env = np.tile([0, 1], 40), np.repeat([0, 1], 40)
    v = model_variation(rng.normal(size=(80, 2)), y, env, grid=500)  # labels carry no signal
    assert not v.informative.any() and math.isnan(v.value)
    assert model_variation(rng.normal(size=(80, 2)), y, env, grid=500, info_threshold=0.0).informative.all()


def test_expansion_picks_by_the_official_rule_on_hand_built_candidates() -> None:
    acc = [0.90, 0.85, 0.70, 0.88]
    v = [0.50, 0.10, 0.00, 0.30]
    # S = {acc > 0.8} = {0, 1, 3}; population stds: acc 0.020548, v 0.163299, r = 0.125830;
    # acc - r v = 0.8371, 0.8374, 0.7000, 0.8423: candidate 3 (neither the most accurate nor the least varying)
    assert select_expansion(acc, v) == 3
    assert select_best_value(acc) == 0
    assert select_oracle([0.1, 0.2, 0.6, 0.3]) == 2
    # a narrower window leaves S = {0, 3}: r = 0.01 / 0.025 = 0.4, scores 0.70, 0.81, 0.70, 0.70: the pick falls
    # outside S (the reference does not restrict it to S)
    assert select_expansion(acc, [0.50, 0.10, 0.00, 0.45], window=0.05) == 1
    # a NaN variation (no informative coordinate) drops the candidate from everything, as model_selection.py
    # does: S = {1, 3, 4}, r = 0.146760, scores 0.8353, 0.7000, 0.8360, 0.8233
    assert select_expansion([0.95, 0.85, 0.70, 0.88, 0.86], [math.nan, 0.10, 0.00, 0.30, 0.25]) == 3
    assert select_expansion(acc, [Variation(0.5, np.zeros(1), np.zeros(1), np.ones(1, bool)), 0.1, 0.0, 0.3]) == 3


def test_expansion_ratio_of_equal_variations_is_zero() -> None:
    # the reference divides 0 by 0 here; the ratio is taken as 0, so the most accurate candidate wins
    assert select_expansion([0.8, 0.9, 0.85], [0.2, 0.2, 0.2]) == 1
    assert select_expansion([0.8], [0.3]) == 0


def _good() -> dict[str, Any]:
    z, y, env = _features()
    return {"z": z, "y": y, "env": env}


BAD_VARIATION = {
    "nan": (lambda a: {**a, "z": np.where(np.eye(len(a["z"]), 3) > 0, np.nan, a["z"])}, "z", "non-finite"),
    "lengths": (lambda a: {**a, "y": a["y"][:-1]}, "y", "lengths must match"),
    "env lengths": (lambda a: {**a, "env": a["env"][:-1]}, "env", "lengths must match"),
    "one environment": (lambda a: {**a, "env": np.zeros(len(a["y"]), int)}, "env", "at least 2"),
    "one class": (lambda a: {**a, "y": np.zeros(len(a["y"]), int)}, "y", "at least 2"),
    "one train env": (lambda a: {**a, "train_envs": [0]}, "train_envs", "at least 2"),
    "unknown train env": (lambda a: {**a, "train_envs": [0, 7]}, "train_envs", "7"),
    "threshold": (lambda a: {**a, "info_threshold": 1.5}, "info_threshold", "threshold"),
    "grid": (lambda a: {**a, "grid": 1}, "grid", "grid points"),
}


@pytest.mark.parametrize("case", sorted(BAD_VARIATION))
def test_bad_variation_input_is_a_config_error_naming_the_argument(case: str) -> None:
    make, field, words = BAD_VARIATION[case]
    with pytest.raises(ConfigError, match=words) as err:
        model_variation(**make(_good()))
    assert err.value.field == field


@pytest.mark.parametrize(("accuracies", "variations", "field"), [
    ([0.5, math.nan], [0.1, 0.2], "accuracies"),
    ([0.5, 0.6], [0.1], "variations"),
    ([], [], "accuracies"),
    ([0.5, 0.6], [math.inf, 0.2], "variations"),
    ([0.5, 0.6], [math.nan, math.nan], "variations"),
])
def test_bad_selection_input_is_a_config_error(accuracies: list[float], variations: list[float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        select_expansion(accuracies, variations)
    assert err.value.field == field
    with pytest.raises(ConfigError):
        select_best_value([[0.5]])


def test_a_class_missing_from_an_environment_is_left_out_with_a_warning():
    good = _good()
    y = np.where((good["env"] == 2) & (good["y"] == 1), 0, good["y"])  # class 1 has no row in environment 2
    with pytest.warns(UserWarning, match="1 class\\(es\\) left out.*class 1 in 2"):
        got = model_variation(good["z"], y, good["env"])
    rows = y != 1
    expected = model_variation(good["z"][rows], y[rows], good["env"][rows])
    np.testing.assert_allclose(got.variation, expected.variation)
