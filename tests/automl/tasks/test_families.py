"""The new family contracts: episodes from disjoint pools with confidence intervals, environments and
their roles, 3-D frames; and the built-in tasks that follow them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import automl
from automl.errors import ConfigError
from automl.tasks.detection3d import Detection3DInfo, Frame3D, normalise_yaw
from automl.tasks.digits_fewshot import DigitsFewshotTask
from automl.tasks.digits_rotated import RotatedDigitsTask
from automl.tasks.environments import assign_roles
from automl.tasks.episodic import EpisodicData, LabelledPool, fixed_episodes, mean_with_interval, sample_episode


def test_an_episode_has_n_way_k_shot_and_relabelled_queries():
    pool = DigitsFewshotTask().load().novel
    episode = sample_episode(pool, 3, 2, 4, np.random.default_rng(0))
    assert episode.support_x.shape == (6, 1, 8, 8) and episode.query_x.shape == (12, 1, 8, 8)
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2] and set(episode.classes) == {7, 8, 9}
    labels = pool.y.numpy()
    for i, cls in enumerate(episode.classes):  # label i really is class classes[i]
        assert all(labels[np.flatnonzero(np.all(pool.x.numpy() == q.numpy(), axis=(1, 2, 3)))[0]] == cls
                   for q in episode.query_x[episode.query_y == i])


def test_the_evaluation_episodes_are_fixed_by_their_seed():
    pool = DigitsFewshotTask().load().val
    a, b = fixed_episodes(pool, 3, 1, 5, count=20, seed=4), fixed_episodes(pool, 3, 1, 5, count=20, seed=4)
    assert all(torch.equal(x.query_x, y.query_x) for x, y in zip(a, b))
    assert not all(torch.equal(x.query_x, y.query_x)
                   for x, y in zip(a, fixed_episodes(pool, 3, 1, 5, count=20, seed=5)))


def test_the_confidence_interval_is_the_papers_95_percent_one():
    mean, half = mean_with_interval([0.5, 0.7, 0.6, 0.8])
    assert mean == pytest.approx(0.65) and half == pytest.approx(1.96 * np.std([0.5, 0.7, 0.6, 0.8]) / 2)


def test_pools_must_be_disjoint_and_large_enough():
    x = torch.zeros(6, 1, 2, 2)
    with pytest.raises(ConfigError, match="share classes \\[1\\]"):
        EpisodicData(LabelledPool(x, torch.tensor([0, 0, 1, 1, 2, 2])), LabelledPool(x, torch.tensor([1] * 6)),
                     LabelledPool(x, torch.tensor([3] * 6)))
    with pytest.raises(ConfigError, match="5-way episodes need 5"):
        DigitsFewshotTask(n_way=5)
    with pytest.raises(ConfigError, match="n_way must be an integer >= 2"):
        DigitsFewshotTask(n_way=1)


def test_rotated_digits_environments_are_disjoint_rotations_with_roles():
    task = RotatedDigitsTask()
    info, data = task.info, task.load()
    assert info.environments == ("0", "15", "30", "45", "60", "75") and info.test == ("75",)
    assert info.train == ("0", "15", "30", "45", "60") and info.val == ()
    sizes = [len(data.environments[e].y) for e in info.environments]
    assert sum(sizes) == 1797 and max(sizes) - min(sizes) <= 10  # every image in one environment, balanced
    x, y, env = data.pooled("train")
    assert len(x) == len(y) == len(env) and env.max() == 4
    assert not torch.equal(data.environments["0"].x[:1], data.environments["75"].x[:1])


@pytest.mark.parametrize("roles,message", [
    ({"train": ["0"], "test": ["0"]}, "both a train and a test environment"),
    ({"train": ["90"]}, "unknown train environment '90'"),
    ({"train": []}, "at least one train environment"),
])
def test_bad_environment_roles_are_config_errors(roles, message):
    with pytest.raises(ConfigError, match=message):
        assign_roles(["0", "15"], roles.get("train"), roles.get("val"), roles.get("test"), task="t")


def test_the_train_estimator_searches_an_environments_task_and_reports_test_accuracy():
    space = automl.space_from_yaml("""
name: rotated
task: {name: rotated-digits, options: {angles: [0, 30, 60], test: ["60"]}}
builder: mlp
objectives: {accuracy: max}
space:
  model:
    layers: [{width: 32, activation: relu}]
    dropout: 0.0
  train:
    lr: 0.01
    epochs: 2
""", source="rotated.yaml")
    study = automl.create_study(space, seed=0)
    study.optimize(n_trials=1)
    assert study.trials[0].state is automl.TrialState.COMPLETE
    assert 0.3 < study.trials[0].metrics["accuracy"] <= 1
    assert "test_accuracy" not in study.trials[0].metrics  # a search never sees the test environments
    from automl.estimator import EvalContext
    from estimators.train import TrainEstimator

    final = TrainEstimator().evaluate(space.candidate(study.trials[0].config), None,
                                      EvalContext(space, 0, 0, info={"test": True})).metrics
    assert 0 <= final["test_accuracy"] < final["accuracy"]  # 60 degrees away from what it trained on


def test_a_3d_frame_follows_the_contract():
    Frame3D("f", torch.zeros(10, 4), torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0.3]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="boxes must be \\[n, 7\\]"):
        Frame3D("f", torch.zeros(10, 4), torch.zeros(1, 6), torch.tensor([0]))
    with pytest.raises(ValueError, match="positive l, w, h"):
        Frame3D("f", torch.zeros(10, 4), torch.tensor([[0.0, 0, 0, 0, 2, 1.5, 0]]), torch.tensor([0]))
    with pytest.raises(ConfigError, match="point_range"):
        Detection3DInfo(("car",), 4, (0, 0, 0, -1, 1, 1))
    assert normalise_yaw(torch.tensor([3 * math.pi / 2])).item() == pytest.approx(-math.pi / 2)
