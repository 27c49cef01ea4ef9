"""The study loop from Python: results, failures, constraints, duplicates, parallel workers, resume."""
from __future__ import annotations

import math

import pytest

import automl
from automl.errors import ConfigError, StorageError
from automl.ledger import Ledger, open_storage
from automl.strategies.base import TrialState
from tests.conftest import toy_objective

SMALL_DISCRETE = """
name: tiny
space:
  a: {type: categorical, choices: [1, 2]}
  b: {type: bool}
"""


def test_optimize_records_trials_and_best(toy_space):
    study = automl.create_study(space=toy_space, strategy="evolution", seed=0,
                                strategy_options={"population": 8, "tournament": 3})
    study.optimize(toy_objective, n_trials=30)
    trials = study.trials
    assert len(trials) == 30 and all(t.state is TrialState.COMPLETE for t in trials)
    assert study.best.value == min(t.value for t in trials)
    assert study.best.value == pytest.approx(toy_objective(study.best.config))
    assert study.best.metrics == {"loss": study.best.value}


def test_create_study_accepts_a_path_or_a_name(tmp_path):
    study = automl.create_study("digits-mlp", seed=0)
    assert study.space.name == "digits-mlp" and study.study_name == "digits-mlp"
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nspace:\n  x: {type: float, low: 0, high: 1}\n")
    study = automl.create_study(str(path), strategy="random", direction="maximize", seed=0)
    study.optimize(lambda c: c["x"], n_trials=10)
    assert study.best.value == max(t.value for t in study.trials)


def test_failing_trial_is_recorded_and_the_search_goes_on(toy_space):
    def objective(config):
        if config["kind"] == "a":
            raise RuntimeError("boom on kind a")
        return toy_objective(config)

    study = automl.create_study(toy_space, strategy="random", seed=1)
    study.optimize(objective, n_trials=20)
    failed = [t for t in study.trials if t.state is TrialState.FAILED]
    assert failed and len(study.trials) == 20
    assert all("RuntimeError: boom on kind a" in t.error for t in failed)
    assert all(t.config["kind"] == "a" for t in failed)
    assert study.best.config["kind"] != "a"


@pytest.mark.parametrize("returned, message", [
    (math.nan, "not finite"),
    ({"other": 1.0}, "returned no 'loss'"),
    ("text", "not a number"),
])
def test_bad_objective_values_fail_the_trial(toy_space, returned, message):
    study = automl.create_study(toy_space, strategy="random", seed=0)
    study.optimize(lambda c: returned, n_trials=2)
    assert all(t.state is TrialState.FAILED and message in t.error for t in study.trials)


def test_multi_objective_dict_and_pareto_front():
    space = automl.space_from_yaml("""
name: mo
objectives: {accuracy: max, params: min}
space:
  width: {type: int, low: 1, high: 100}
""")
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda c: {"accuracy": 1 - 1 / c["width"], "params": c["width"] * 10}, n_trials=25)
    front = study.best_trials
    # every trial is optimal for this trade-off (more width: better accuracy, more params)
    assert len(front) == len({t.config["width"] for t in study.trials})
    assert study.best.values["accuracy"] == max(t.values["accuracy"] for t in front)
    study.optimize(lambda c: 1.0, n_trials=1)
    assert study.trials[-1].state is TrialState.FAILED
    assert "one number" in study.trials[-1].error


def test_constraints_mark_trials_infeasible():
    space = automl.space_from_yaml("""
name: constrained
objectives: {loss: min}
constraints: ["params <= 50"]
space:
  width: {type: int, low: 1, high: 100}
""")
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda c: {"loss": -c["width"], "params": c["width"]}, n_trials=30)
    infeasible = [t for t in study.trials if t.state is TrialState.INFEASIBLE]
    assert infeasible and all(t.config["width"] > 50 for t in infeasible)
    assert all("params <= 50 violated" in t.error for t in infeasible)
    assert study.best.config["width"] <= 50


def test_objective_may_take_the_budget():
    space = automl.space_from_yaml("name: b\nbudget: {name: epochs, min: 1, max: 27}\n"
                                   "space:\n  x: {type: float, low: 0, high: 1}\n")
    seen = []
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda config, budget: seen.append(budget) or 0.0, n_trials=3)
    assert seen == [27, 27, 27] and all(t.budget == 27 for t in study.trials)


def test_duplicates_are_not_re_evaluated():
    calls = []
    space = automl.space_from_yaml(SMALL_DISCRETE)
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda c: calls.append(c) or float(c["a"]), n_trials=10)
    assert len(calls) == 4  # the space has 4 configs
    duplicates = [t for t in study.trials if "duplicate_of" in t.info]
    assert len(duplicates) == 6 and all(t.state is TrialState.COMPLETE for t in duplicates)


def test_timeout_stops_starting_trials(toy_space):
    import time

    study = automl.create_study(toy_space, strategy="random", seed=0)
    started: list[float] = []
    start = time.monotonic()
    study.optimize(lambda c: started.append(time.monotonic()) or time.sleep(0.05) or 0.0, timeout=0.3)
    # what the loop decided: no trial started after the deadline (however slow the machine is)
    assert started and all(s - start < 0.3 for s in started)
    assert len(study.trials) == len(started)


def test_process_workers_run_closures(toy_space):
    offset = 0.5
    study = automl.create_study(toy_space, strategy="random", seed=0)
    study.optimize(lambda c: toy_objective(c) + offset, n_trials=6, n_workers=2)
    assert len(study.trials) == 6
    assert all(t.value == pytest.approx(toy_objective(t.config) + offset) for t in study.trials)


def test_interrupted_trials_are_rerun_on_resume(toy_space, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    count = {"n": 0}

    def flaky(config):
        count["n"] += 1
        if count["n"] == 5:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a trial
        return toy_objective(config)

    study = automl.create_study(toy_space, strategy="evolution", storage=url, seed=4)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(flaky, n_trials=10)
    trials = study.trials
    assert [t.state for t in trials[:4]] == [TrialState.COMPLETE] * 4
    assert trials[4].requeued and trials[4].state is TrialState.FAILED
    resumed = automl.create_study(toy_space, strategy="evolution", storage=url)
    resumed.optimize(toy_objective, total_trials=10)
    trials = resumed.trials
    finished = [t for t in trials if not t.requeued]
    assert len(finished) == 10
    assert trials[5].info["requeue_of"] == 4 and trials[5].key == trials[4].key


def test_running_trial_left_by_a_killed_driver_is_rerun(toy_space, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    study = automl.create_study(toy_space, strategy="random", storage=url, seed=2)
    study.optimize(toy_objective, n_trials=3)
    # what SIGKILL leaves behind: a trial started in the ledger and never finished
    config = toy_space.sample(__import__("numpy").random.default_rng(0))
    study.ledger.start(config, toy_space.key(config), None, {}, {}, {})
    resumed = automl.create_study(toy_space, strategy="random", storage=url)
    resumed.optimize(toy_objective, total_trials=5)
    trials = resumed.trials
    assert trials[3].requeued and "interrupted" in trials[3].error
    assert trials[4].info["requeue_of"] == 3 and trials[4].config == config
    assert sum(not t.requeued for t in trials) == 5


def test_resuming_with_a_different_space_is_refused(toy_space, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    automl.create_study(toy_space, storage=url, study_name="s", seed=0)
    other = automl.space_from_yaml("name: toy\nobjectives: {loss: min}\nspace:\n  x: {type: bool}\n")
    with pytest.raises(StorageError, match="different search space"):
        automl.create_study(other, storage=url, study_name="s")


def test_unwritable_storage_is_a_clear_error(tmp_path, toy_space):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(StorageError, match="not writable"):
            automl.create_study(toy_space, storage=f"sqlite:///{locked}/x.db")
    finally:
        locked.chmod(0o700)


def test_storage_must_be_a_url(toy_space):
    with pytest.raises(StorageError, match="not a URL"):
        automl.create_study(toy_space, storage="runs.db")


def test_unknown_strategy(toy_space):
    with pytest.raises(automl.RegistryError, match="unknown strateg"):
        automl.create_study(toy_space, strategy="evolutoin")


def test_optimize_needs_a_stopping_rule(toy_space):
    with pytest.raises(ConfigError, match="never stop"):
        automl.create_study(toy_space).optimize(toy_objective)


def test_ledger_is_an_optuna_study(toy_space, tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/ledger.db"
    study = automl.create_study(toy_space, strategy="random", storage=url, seed=0)
    study.optimize(toy_objective, n_trials=5)
    loaded = optuna.load_study(study_name="toy", storage=url)
    assert len(loaded.trials) == 5
    assert loaded.best_value == pytest.approx(study.best.value)
    assert "x" in loaded.trials[0].params and "blocks#len" in loaded.trials[0].params
    assert Ledger.load(open_storage(url), "toy").objectives[0].name == "loss"


def test_a_database_of_something_else_is_refused_untouched(tmp_path, toy_space):
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('ada')")
    with pytest.raises(StorageError, match="database of something else .*customers"):
        automl.create_study(toy_space, storage=f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"customers"}


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path, toy_space):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes\n" * 100)
    with pytest.raises(StorageError, match="cannot open storage"):
        automl.create_study(toy_space, storage=f"sqlite:///{path}")
    assert path.read_text().startswith("these are my notes")
