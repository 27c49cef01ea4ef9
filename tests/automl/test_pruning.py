"""Early stopping: objectives report intermediate values, Optuna's pruners decide, the ledger shows PRUNED."""
from __future__ import annotations

import optuna
import pytest

import automl
from automl.errors import ConfigError
from automl.strategies.base import TrialState

SPACE = """
name: curves
objectives: {score: max}
space:
  rate: {type: float, low: 0.0, high: 1.0}
"""


def objective(config, trial):
    score = 0.0
    for step in range(10):
        score = config["rate"] * (step + 1)
        trial.report(score, step)
        if trial.should_stop():
            return {"score": score}
    return {"score": score}


def test_a_median_pruner_stops_the_worse_curves_and_the_ledger_says_pruned(tmp_path):
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    study = automl.create_study(automl.space_from_yaml(SPACE), strategy="random", seed=0, storage=storage,
                                pruner={"name": "median", "options": {"n_startup_trials": 3}})
    study.optimize(objective, n_trials=20)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    best_rate = study.best.config["rate"]
    assert all(t.config["rate"] < best_rate for t in pruned)
    optuna_trials = optuna.load_study(study_name="curves", storage=storage).trials
    assert {t.state for t in optuna_trials} >= {optuna.trial.TrialState.PRUNED}
    assert all(t.intermediate_values for t in optuna_trials)  # the dashboard plots the curves
    assert all(t.metrics["pruned_at_step"] < 9 for t in pruned)


def test_the_train_estimator_reports_every_epoch_and_is_pruned(tmp_path):
    space = automl.load_space("digits-cnn")  # 1..8 epochs; at the full budget without a multi-fidelity strategy
    study = automl.create_study(space, strategy="random", seed=1, storage=f"sqlite:///{tmp_path / 'd.db'}",
                                pruner={"name": "median", "options": {"n_startup_trials": 2}})
    study.optimize(n_trials=8)
    assert any(t.state is TrialState.PRUNED for t in study.trials)
    trials = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{tmp_path / 'd.db'}").trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(len(t.intermediate_values) == 8 for t in complete)  # one value per epoch


@pytest.mark.parametrize("pruner,message", [("nope", "unknown pruner 'nope'"),
                                            ({"name": "median", "options": {"warmup": 1}}, "bad options")])
def test_bad_pruners_fail_at_creation(pruner, message):
    with pytest.raises(ConfigError, match=message):
        automl.create_study(automl.space_from_yaml(SPACE), pruner=pruner)


def test_pruning_needs_a_single_objective():
    two = SPACE.replace("{score: max}", "{score: max, cost: min}")
    with pytest.raises(ConfigError, match="one objective"):
        automl.create_study(automl.space_from_yaml(two), pruner="median")
