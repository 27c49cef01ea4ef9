"""One-shot search: supernet phase, search with inherited weights, stand-alone finalists; the cache."""
from __future__ import annotations

import pytest

import automl
from automl.errors import ConfigError
from automl.strategies.base import TrialState

OPTIONS = {"search_trials": 8, "top_k": 2, "population": 4, "tournament": 2, "supernet": {"epochs": 3},
           "fixed": {"train": {"optimizer": "adam", "lr": 0.003}}}


def run(tmp_path, seed=0, n_trials=None, space="digits-mlp", storage=None, study_name=None):
    study = automl.create_study(space, strategy="one-shot", seed=seed, strategy_options=OPTIONS,
                                checkpoints=tmp_path / "store", storage=storage, study_name=study_name)
    study.optimize(n_trials=n_trials, total_trials=None if n_trials else 10_000)
    return study


def test_phases_run_in_order_and_finalists_decide_the_best(tmp_path):
    study = run(tmp_path)
    trials = study.trials
    phases = [t.info["phase"] for t in trials]
    assert phases == ["supernet"] + ["search"] * 8 + ["standalone"] * 2
    assert all(t.state is not TrialState.FAILED for t in trials), [t.error for t in trials]
    assert trials[0].metrics["supernet_cached"] == 0.0 and trials[0].metrics["supernet_train_seconds"] > 0
    # the finalists are the best of the search (Pareto rank, then accuracy) and were trained from scratch
    finals = trials[-2:]
    assert all("epochs_trained" in t.metrics for t in finals)
    assert study.best.info.get("final") and study.best.number in {t.number for t in finals}
    searched = {t.key for t in trials[1:9] if t.state is TrialState.COMPLETE}
    assert {t.key for t in finals} <= searched


def test_the_supernet_is_cached_and_the_cache_follows_the_space(tmp_path):
    run(tmp_path, study_name="a")
    again = run(tmp_path, study_name="b")
    assert again.trials[0].metrics["supernet_cached"] == 1.0
    other = automl.space_from_yaml(
        open(automl.load_space("digits-mlp").source).read().replace("high: 256", "high: 128"), source="changed.yaml")
    changed = run(tmp_path, space=other, study_name="c")
    assert changed.trials[0].metrics["supernet_cached"] == 0.0


def test_resume_mid_search_gives_the_same_search(tmp_path):
    straight = [t.key for t in run(tmp_path, study_name="s").trials]
    url = f"sqlite:///{tmp_path}/ledger.db"
    run(tmp_path, n_trials=5, storage=url, study_name="r")
    resumed = run(tmp_path, storage=url, study_name="r")
    assert [t.key for t in resumed.trials] == straight


def test_unshareable_builder_is_refused(tmp_path):
    space = automl.space_from_yaml("""
name: plain
task: digits
builder: "search_spaces.mlp:build_mlp"
space:
  model:
    layers: {type: constant, value: [{width: 8, activation: relu}]}
""")
    with pytest.raises(ConfigError, match="not shareable"):
        automl.create_study(space, strategy="one-shot")
    with pytest.raises(ConfigError, match="needs a space with a task"):
        automl.create_study(automl.space_from_yaml("name: f\nspace:\n  x: {type: bool}\n"), strategy="one-shot")


def test_fixed_parts_hold_for_every_trial_and_are_validated(tmp_path):
    study = run(tmp_path)
    assert all(t.config["train"] == {"optimizer": "adam", "lr": 0.003} for t in study.trials)
    assert len({t.key for t in study.trials if t.info["phase"] == "search"}) == 8  # no repeats
    with pytest.raises(ConfigError, match="invalid 'fixed' values"):
        automl.create_study("digits-mlp", strategy="one-shot",
                            strategy_options={"fixed": {"train": {"optimizer": "rmsprop"}}})


def test_the_supernet_depends_on_the_seed_alone(tmp_path):
    import torch

    from automl.artifacts import ArtifactStore
    from automl.evaluation import prepare_evaluation
    from automl.tasks.supervised import ClassificationTask
    from estimators.supernet import SupernetEstimator

    space = automl.load_space("digits-mlp")
    task = prepare_evaluation(space).task
    assert isinstance(task, ClassificationTask)
    weights = []
    for run_index in range(2):
        torch.manual_seed(1000 + run_index)  # whatever the caller's RNG holds
        before = torch.get_rng_state()
        net, trained, _ = SupernetEstimator(epochs=1).supernet(space, task, task.load(), 0,
                                                              ArtifactStore(str(tmp_path / str(run_index))))
        assert trained and torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
        weights.append(next(iter(net.state_dict().values())))
    assert torch.equal(weights[0], weights[1])
