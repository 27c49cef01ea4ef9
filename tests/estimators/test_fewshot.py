"""The fewshot estimator: episodic training of an encoder and a learner, scored on fixed validation episodes
with their intervals, searched from a registered space like any other estimator."""
from __future__ import annotations

import dataclasses

import pytest

import automl
from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.testing.estimators import check_rng_isolation, check_trial_seeds_differ
from estimators.fewshot import FewShotEstimator, mutual_information

CONFIG = {"model": {"layers": [{"width": 64, "activation": "relu"}], "dropout": 0.0}, "embedding": 32,
          "learner": {"name": "protonet", "temperature": 1.0}, "train": {"lr": 1e-3}}


def _space(**estimator_options):
    space = automl.load_space("fewshot-digits")
    return dataclasses.replace(space, estimator_options={"eval_episodes": 100, **estimator_options})


def _evaluate(config, episodes, **options):
    space = _space(**options)
    estimator = FewShotEstimator(**{"eval_episodes": 100, **options})
    return estimator.evaluate(space.candidate(config), episodes, EvalContext(space=space, seed=0, trial_number=0))


def test_the_estimator_reports_each_shot_with_its_interval_and_holds_the_novel_pool_out():
    result = _evaluate(CONFIG, 100)
    m = result.metrics
    assert {"accuracy", "accuracy_ci95", "accuracy_1shot", "accuracy_5shot_ci95"} <= set(m)
    assert m["accuracy"] == m["accuracy_1shot"] and 0 < m["accuracy_ci95"] < 0.1
    assert m["accuracy_5shot"] > m["accuracy_1shot"]  # more shots, better prototypes
    assert result.cost["params"] > 0 and "test_accuracy" not in m  # the novel pool is held out of a search
    assert m["episodes_trained"] == 100


def test_episodic_training_learns_the_episodes_it_trains_on():
    """Trained on base-pool episodes, the encoder labels fresh base-pool episodes better than at random init."""
    import torch

    from automl.tasks.digits_fewshot import DigitsFewshotTask
    from automl.tasks.supervised import ClassificationInfo
    from automl.training.fewshot import EpisodicModel, episode_step
    from automl.training.fit import fit
    from automl.training.recipe import Recipe
    from estimators.fewshot import EpisodeStream
    from estimators.learners.protonet import ProtoNet
    from search_spaces.mlp import build_mlp

    base = DigitsFewshotTask().load().base
    torch.manual_seed(0)
    model = EpisodicModel(build_mlp(CONFIG["model"], ClassificationInfo((1, 8, 8), 32)), ProtoNet(32))
    estimator = FewShotEstimator(eval_episodes=200, shots=[1])
    before = estimator.score(model, base, 3, 1, 5, ("class",))["accuracy"]
    fit(model, EpisodeStream(base, 3, 1, 5, seed=1), Recipe(steps=300, lr=1e-3), episode_step)
    after = estimator.score(model, base, 3, 1, 5, ("class",))
    assert after["accuracy"] > before + 2 * after["accuracy_ci95"]


def test_leadnet_trains_through_the_same_estimator():
    result = _evaluate({**CONFIG, "learner": {"name": "leadnet", "concepts": 2}}, 50)
    assert 1 / 3 < result.metrics["accuracy"] <= 1


def test_the_estimator_isolates_the_rng():
    space = _space()
    check_rng_isolation(space, CONFIG, budget=5)
    check_trial_seeds_differ(space, CONFIG, budget=5)


@pytest.mark.parametrize("learner,field", [({"name": "protonett"}, "learner.name"),
                                           ({"name": "leadnet", "concepts": 0}, "learner.concepts")])
def test_a_bad_learner_names_its_field(learner, field):
    with pytest.raises(ConfigError) as info:
        _evaluate({**CONFIG, "learner": learner}, 1)
    assert info.value.field == field


def test_a_learner_that_is_not_a_mapping_names_the_field():
    from estimators.fewshot import build_learner

    with pytest.raises(ConfigError, match="known|protonet") as info:
        build_learner("protonet", 8)
    assert info.value.field == "learner"


def test_an_impossible_shot_is_a_config_error():
    with pytest.raises(ConfigError, match="200-shot evaluation"):
        _evaluate(CONFIG, 1, shots=[200])


@pytest.mark.parametrize("options,field", [({"shots": []}, "shots"), ({"eval_episodes": 1}, "eval_episodes")])
def test_bad_options_are_config_errors(options, field):
    with pytest.raises(ConfigError) as info:
        FewShotEstimator(**options)
    assert info.value.field == field


def test_mutual_information_is_zero_for_independence_and_log_k_for_a_bijection():
    import numpy as np

    assert mutual_information(np.ones((3, 4))) == pytest.approx(0.0)
    assert mutual_information(np.eye(4) * 5) == pytest.approx(np.log(4))


@pytest.mark.slow
def test_automl_search_runs_the_registered_space(tmp_path):
    from automl.cli import main

    storage = f"sqlite:///{tmp_path / 'fs.db'}"
    assert main(["search", "--space", "fewshot-digits", "--trials", "2", "--storage", storage, "--study", "fs"]) == 0
    from automl.ledger import Ledger
    from automl.study import open_storage

    trials = Ledger.load(open_storage(storage), "fs").trials()
    assert len(trials) == 2 and all(t.metrics.get("accuracy_1shot", 0) > 1 / 3 for t in trials)


def test_the_report_shows_the_best_trials_concept_selection_table():
    from rich.console import Console

    from automl.ledger import Trial
    from automl.report import concept_table
    from automl.space.nodes import Objective
    from automl.strategies.base import TrialState

    def trial(number, accuracy, counts):
        metrics = {"accuracy": accuracy, "concept_mi": 0.5,
                   **{f"concepts/{c}/m{j}": float(n) for c, row in counts.items() for j, n in enumerate(row)}}
        return Trial(number=number, config={}, key=str(number), state=TrialState.COMPLETE,
                     values={"accuracy": accuracy}, metrics=metrics)

    objectives = [Objective("accuracy", "max")]
    table = concept_table([trial(0, 0.5, {"colour": [1, 9]}), trial(1, 0.7, {"colour": [7, 3], "shape": [2, 8]})],
                          objectives)
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "trial" in text and "0.500" in text
    rows = [line.replace("│", " ").split() for line in text.splitlines() if line.startswith("│")]
    assert rows == [["colour", "7", "3"], ["shape", "2", "8"]]
    assert concept_table([trial(0, 0.5, {})], objectives) is None
