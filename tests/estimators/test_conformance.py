"""Every built-in estimator follows the one seeding policy: a trial's score depends on its seed alone,
not on what the worker ran before (automl.testing.estimators)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import automl
from automl.testing.estimators import check_metric_sets_reported, check_rng_isolation, check_trial_seeds_differ

MLP = {"model": {"layers": [{"width": 32, "activation": "relu"}], "dropout": 0.2},
       "train": {"lr": 0.01, "optimizer": "adam"}}


def test_train_isolates_the_rng():
    space = automl.load_space("digits-mlp")
    check_rng_isolation(space, MLP, budget=1)
    check_trial_seeds_differ(space, MLP, budget=1)


def test_supernet_isolates_the_rng(tmp_path):
    space = automl.load_space("digits-mlp")
    space = dataclasses.replace(space, estimator="supernet", estimator_options={"epochs": 1, "finetune_steps": 3})
    from automl.artifacts import ArtifactStore

    check_rng_isolation(space, MLP, None, checkpoints=ArtifactStore(str(tmp_path)))


def test_classifier_estimators_report_metric_sets(tmp_path):
    from automl.artifacts import ArtifactStore

    space = automl.load_space("digits-mlp")
    check_metric_sets_reported(space, MLP, budget=1)
    supernet = dataclasses.replace(space, estimator="supernet", estimator_options={"epochs": 1, "finetune_steps": 3})
    check_metric_sets_reported(supernet, MLP, None, checkpoints=ArtifactStore(str(tmp_path)))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["biws", "train-from-scratch"])
def test_text_estimators_isolate_the_rng(tmp_path, estimator):
    from automl.artifacts import ArtifactStore

    space = automl.load_space("autobert")
    space = dataclasses.replace(space, task_options={"max_len": 32, "n_corpus": 200, "n_corpus_val": 50,
                                                     "n_train": 100, "n_val": 50},
                                estimator=estimator, estimator_options={"pretrain_steps": 4, "finetune_steps": 4})
    config = space.sample(np.random.default_rng(0))
    check_rng_isolation(space, config, None, checkpoints=ArtifactStore(str(tmp_path)))
