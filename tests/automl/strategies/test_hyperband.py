"""Hyperband / successive halving / ASHA / BOHB: bracket arithmetic, promotions, the KDE model."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import automl
from automl.errors import ConfigError
from automl.strategies.base import Proposal, Strategy, strategies
from automl.strategies.hyperband import bracket, max_brackets, rung_budgets
from automl.strategies.kde import KDESearcher

QUADRATIC = """
name: quad
objectives: {loss: min}
budget: {name: epochs, min: 1, max: 27}
space:
  x: {type: float, low: -4.0, high: 4.0}
  y: {type: float, low: -4.0, high: 4.0}
  kind: {type: categorical, choices: [a, b, c, d]}
"""


def noisy_quadratic(config, budget):
    """Lower budgets see the same function plus noise that shrinks as the budget grows."""
    rng = np.random.default_rng(abs(hash((round(config["x"], 6), round(config["y"], 6), budget))) % 2**32)
    base = (config["x"] - 1) ** 2 + (config["y"] + 2) ** 2 + (0 if config["kind"] == "c" else 2)
    return base + rng.normal(0, 2.0 / budget)


def test_hyperband_brackets_match_the_paper():
    # Li et al. 2017, Table 1: R = 81, eta = 3
    table = {
        4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        3: [(34, 3), (11, 9), (3, 27), (1, 81)],
        2: [(15, 9), (5, 27), (1, 81)],
        1: [(8, 27), (2, 81)],
        0: [(5, 81)],
    }
    assert max_brackets(1, 81, 3) == 5
    for s, rungs in table.items():
        assert [(r.n, r.budget) for r in bracket(s, 1, 81, 3)] == rungs
    assert rung_budgets(1, 81, 3) == [1, 3, 9, 27, 81]
    assert rung_budgets(1, 8, 3) == [8 / 3, 8]


def test_hyperband_runs_brackets_and_promotes_the_best():
    space = automl.space_from_yaml(QUADRATIC)
    study = automl.create_study(space, strategy="hyperband", seed=0)
    study.optimize(noisy_quadratic, n_trials=27 + 9 + 3 + 1 + 12)
    trials = study.trials
    first = trials[:40]
    assert Counter(t.budget for t in first) == {1: 27, 3: 9, 9: 3, 27: 1}
    # the 9 configs run at budget 3 are exactly the best 9 of the 27 at budget 1
    rung0 = sorted((t for t in first if t.budget == 1), key=lambda t: (t.value, t.number))
    promoted = {t.key for t in first if t.budget == 3}
    assert promoted == {t.key for t in rung0[:9]}
    # the second bracket (s = 2) starts with 12 configs at budget 3
    assert Counter(t.budget for t in trials[40:52]) == {3: 12}


def test_asha_promotes_without_waiting():
    space = automl.space_from_yaml(QUADRATIC)
    study = automl.create_study(space, strategy="asha", seed=1)
    study.optimize(noisy_quadratic, n_trials=60)
    budgets = [t.budget for t in study.trials]
    assert budgets[:3] == [1, 1, 1]
    assert budgets[3] == 3  # the best of the first three is promoted as soon as three results are in
    assert Counter(budgets)[27] >= 1
    # a promoted config is in the top 1/eta of its rung at the time of promotion
    for t in study.trials:
        if t.budget == 3:
            lower = [u for u in study.trials if u.budget == 1 and u.number < t.number]
            best = sorted(lower, key=lambda u: u.value)[: len(lower) // 3]
            assert t.key in {u.key for u in best}


def test_multi_fidelity_needs_a_budget_range():
    space = automl.space_from_yaml("name: nb\nspace:\n  x: {type: float, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match="needs a budget range"):
        automl.create_study(space, strategy="hyperband")
    with pytest.raises(ConfigError, match="narrower than one eta"):
        automl.create_study(space, strategy="asha", budget={"min": 1, "max": 2})


class _TooBig(Strategy):
    """Proposes a budget above the declared range (what a buggy plugin might do)."""

    def ask(self, number):
        return Proposal(self.space.sample(self.rng(number)), budget=100.0)

    def tell(self, observation):
        pass


def test_budget_outside_the_declared_range_is_an_error():
    if "test-too-big" not in strategies:
        strategies.register("test-too-big")(_TooBig)
    study = automl.create_study(automl.space_from_yaml(QUADRATIC), strategy="test-too-big", seed=0)
    with pytest.raises(ConfigError, match=r"budget 100.0 is outside the declared range \[1.0, 27.0\]"):
        study.optimize(noisy_quadratic, n_trials=1)
    assert study.trials == []  # nothing half-written


def test_kde_fits_known_data():
    space = automl.space_from_yaml("name: k\nspace:\n  x: {type: float, low: 0, high: 1}\n"
                                   "  c: {type: categorical, choices: [p, q]}\n")
    searcher = KDESearcher(space, random_fraction=0.0, num_samples=64)
    rng = np.random.default_rng(0)
    for _ in range(60):
        x, c = float(rng.random()), str(rng.choice(["p", "q"]))
        loss = abs(x - 0.2) + (0 if c == "q" else 1)
        searcher.observe({"x": x, "c": c}, 1.0, loss)
    suggestions = [searcher.suggest(np.random.default_rng(i)) for i in range(50)]
    assert np.median([abs(s["x"] - 0.2) for s in suggestions]) < 0.1
    assert sum(s["c"] == "q" for s in suggestions) >= 40


def test_kde_uses_the_largest_budget_with_enough_points():
    space = automl.space_from_yaml("name: k\nspace:\n  x: {type: float, low: 0, high: 1}\n")
    searcher = KDESearcher(space)
    for i in range(10):
        searcher.observe({"x": i / 10}, 1.0, float(i))
    for i in range(3):
        searcher.observe({"x": i / 10}, 9.0, float(i))
    assert searcher.model_budget() == 1.0
    for i in range(3, 6):
        searcher.observe({"x": i / 10}, 9.0, float(i))
    assert searcher.model_budget() == 9.0


def test_bohb_samples_better_configs_than_hyperband():
    """After the first bracket, BOHB's new configs come from its model: far better than random ones."""
    space = automl.space_from_yaml(QUADRATIC)

    def true_loss(config) -> float:
        return (config["x"] - 1) ** 2 + (config["y"] + 2) ** 2 + (0 if config["kind"] == "c" else 2)

    def new_config_quality(strategy: str, seed: int) -> float:
        study = automl.create_study(space, strategy=strategy, seed=seed)
        study.optimize(noisy_quadratic, n_trials=150)
        seen, fresh = set(), []
        for t in study.trials:
            if t.key not in seen and t.number >= 40:  # new configs once the first bracket is done
                fresh.append(true_loss(t.config))
            seen.add(t.key)
        return float(np.mean(fresh))

    bohb = np.median([new_config_quality("bohb", s) for s in range(3)])
    hyperband = np.median([new_config_quality("hyperband", s) for s in range(3)])
    assert bohb < 0.6 * hyperband


def test_best_is_chosen_at_the_highest_budget():
    space = automl.space_from_yaml(QUADRATIC)
    study = automl.create_study(space, strategy="hyperband", seed=0)
    # lower budgets look better here, as they often do with noisy low-fidelity scores
    study.optimize(lambda config, budget: noisy_quadratic(config, budget) - 100 / budget, n_trials=40)
    assert study.best.budget == 27
    assert all(t.budget == 27 for t in study.best_trials)
