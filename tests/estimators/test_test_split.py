"""Estimators score a task's test split only when the trial asks for it (a pipeline's ``train`` step): a
search trial never touches it (automl.testing.tasks traps every test tensor), a test trial reports test_*
metrics beside the same validation ones."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import automl
from automl.artifacts import ArtifactStore
from automl.pipeline import run_pipeline
from automl.testing.tasks import check_test_split_scored, check_test_split_withheld

REPO = Path(__file__).resolve().parents[2]
MLP = {"model": {"layers": [{"width": 32, "activation": "relu"}], "dropout": 0.2},
       "train": {"lr": 0.01, "optimizer": "adam"}}
SMALL_TEXT = {"max_len": 32, "n_corpus": 200, "n_corpus_val": 50, "n_train": 100, "n_val": 50, "n_test": 40,
              "n_corpus_test": 30}


def test_train_scores_the_test_split_only_when_asked():
    scored = check_test_split_scored(automl.load_space("digits-mlp"), MLP, budget=1)
    assert 0.0 <= scored["test_accuracy"] <= 1.0 and scored["test_loss"] > 0


def test_train_on_an_environments_task_scores_its_test_environments_only_when_asked():
    space = dataclasses.replace(automl.load_space("digits-mlp"), task="rotated-digits",
                                task_options={"angles": [0, 30, 60], "test": ["60"]})
    assert "test_accuracy" in check_test_split_scored(space, MLP, budget=1)


def test_supernet_never_touches_the_test_split(tmp_path):
    space = dataclasses.replace(automl.load_space("digits-mlp"), estimator="supernet",
                                estimator_options={"epochs": 1, "finetune_steps": 2})
    check_test_split_withheld(space, MLP, None, checkpoints=ArtifactStore(str(tmp_path)))


@pytest.mark.parametrize("estimator, score", [("biws", "accuracy"), ("biws", "mlm"),
                                              ("train-from-scratch", "accuracy")])
def test_text_estimators_score_the_test_split_only_when_asked(tmp_path, estimator, score):
    space = dataclasses.replace(automl.load_space("autobert"), task_options=SMALL_TEXT, estimator=estimator,
                                estimator_options={"pretrain_steps": 3, "finetune_steps": 3, "score": score})
    config = space.sample(np.random.default_rng(0))
    scored = check_test_split_scored(space, config, None, checkpoints=ArtifactStore(str(tmp_path)))
    expected = {"test_mlm_accuracy"} if score == "mlm" else {"test_accuracy", "test_loss"}
    assert {k for k in scored if k.startswith("test_")} == expected


def test_detnas_scores_test_map_only_when_asked(tmp_path):
    pytest.importorskip("mmdet")
    spec = yaml.safe_load((REPO / "search_spaces" / "detnas.yaml").read_text())
    spec["task"] = {"name": "shapes-detection", "options": {"train_images": 8, "val_images": 4, "test_images": 4,
                                                            "root": str(tmp_path / "data")}}
    spec["estimator"] = {"name": "detnas", "options": {"init_steps": 2, "batch_size": 4, "kd": "none",
                                                       "ckd": False}}
    path = tmp_path / "detnas-tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    space = automl.load_space(path)
    config = space.sample(np.random.default_rng(0))
    scored = check_test_split_scored(space, config, None, checkpoints=ArtifactStore(str(tmp_path / "store")))
    assert {"test_mAP", "test_AP50", "test_AP75"} <= set(scored)
    assert 0.0 <= scored["test_mAP"] <= 1.0


def test_a_pipeline_train_step_over_synthetic_text_reports_test_metrics(tmp_path):
    small = (REPO / "search_spaces" / "autobert.yaml").read_text()
    small = small.replace("pretrain_steps: 2000, finetune_steps: 200", "pretrain_steps: 4, finetune_steps: 2")
    small = small.replace("task: {name: synthetic-text, options: {max_len: 64}}",
                          f"task: {{name: synthetic-text, options: {SMALL_TEXT}}}".replace("'", ""))
    (tmp_path / "small.yaml").write_text(small)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent(f"""\
        name: text
        steps:
          nas:   {{space: {tmp_path / 'small.yaml'}, strategy: random, trials: 2}}
          train: {{from: nas, top_k: 1, seeds: 1}}
        """))
    studies = run_pipeline(pipeline, storage=f"sqlite:///{tmp_path / 'l.db'}", output=tmp_path / "runs")
    (nas,) = studies["nas"]
    (train,) = studies["train"]
    assert not any(k.startswith("test_") for t in nas.trials for k in t.metrics)  # no search trial sees it
    assert all({"test_accuracy", "test_loss"} <= set(t.metrics) for t in train.trials)
    assert all(0.0 <= t.metrics["test_accuracy"] <= 1.0 for t in train.trials)


def test_the_check_catches_a_search_trial_that_scores_the_test_split(monkeypatch):
    from estimators import train

    real = train._splits
    monkeypatch.setattr(train, "_splits", lambda task, test: real(task, True))  # as if every trial asked
    with pytest.raises(AssertionError, match="a search trial used the test split"):
        check_test_split_withheld(automl.load_space("digits-mlp"), MLP, budget=1)
