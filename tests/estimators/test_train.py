"""The train estimator on the embedded digits task: real training, real costs, constraints first."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import automl
from automl.artifacts import ArtifactStore
from automl.errors import Infeasible
from automl.estimator import EvalContext
from estimators.cost import count_flops, count_params
from estimators.train import TrainEstimator

CONFIG = {"model": {"layers": [{"width": 64, "activation": "relu"}], "dropout": 0.0},
          "train": {"lr": 0.01, "optimizer": "adam"}}


def test_flops_come_from_torch_counter():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    assert count_flops(model, torch.zeros(1, 1, 8, 8)) == 2 * (64 * 32 + 32 * 10)
    assert count_params(model) == 64 * 32 + 32 + 32 * 10 + 10


def test_training_learns_digits():
    space = automl.load_space("digits-mlp")
    result = TrainEstimator().evaluate(space.candidate(CONFIG), 5, EvalContext(space, seed=0, trial_number=0))
    metrics = result.all_metrics()
    assert metrics["accuracy"] > 0.9  # chance is 0.1
    assert metrics["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert metrics["epochs"] == 5


def test_more_epochs_help():
    space = automl.load_space("digits-mlp")
    sgd = {**CONFIG, "train": {"lr": 0.01, "optimizer": "sgd", "momentum": 0.0}}
    scores = [TrainEstimator().evaluate(space.candidate(sgd), epochs, EvalContext(space, 0, 0)).metrics["loss"]
              for epochs in (1, 9)]
    assert scores[1] < scores[0]


def test_constraint_rejects_before_training():
    space = automl.load_space("digits-mlp")  # params <= 200000
    big = {"model": {"layers": [{"width": 256, "activation": "relu"}] * 4, "dropout": 0.0},
           "train": {"lr": 0.01, "optimizer": "adam"}}
    with pytest.raises(Infeasible, match=r"params <= 200000 violated \(params=2"):
        TrainEstimator().evaluate(space.candidate(big), 9, EvalContext(space, 0, 0))


def test_promotion_continues_from_the_checkpoint(tmp_path):
    space = automl.load_space("digits-mlp")  # budget: epochs 1..9
    candidate = space.candidate(CONFIG)
    straight = TrainEstimator().evaluate(candidate, 6, EvalContext(space, 0, 0)).metrics
    store = ArtifactStore(str(tmp_path / "checkpoints"))
    low = TrainEstimator().evaluate(candidate, 2, EvalContext(space, 0, 0, checkpoints=store)).metrics
    assert low["epochs_trained"] == 2 and (tmp_path / "checkpoints" / f"{candidate.key}.pt").exists()
    high = TrainEstimator().evaluate(candidate, 6, EvalContext(space, 0, 0, checkpoints=store)).metrics
    assert high["resumed_from_epoch"] == 2 and high["epochs_trained"] == 4
    # continuing 2 -> 6 is the same training as 0 -> 6 in one go
    assert high["accuracy"] == pytest.approx(straight["accuracy"], abs=1e-6)
    assert high["loss"] == pytest.approx(straight["loss"], rel=1e-4)


def test_schedule_spans_the_study_budget_not_only_the_space_one(tmp_path):
    space = automl.load_space("digits-mlp")  # declares epochs 1..9
    study_range = automl.space.Budget("epochs", 1, 12)
    candidate = space.candidate(CONFIG)
    straight = TrainEstimator().evaluate(candidate, 12, EvalContext(space, 0, 0, budget=study_range)).metrics
    store = ArtifactStore(str(tmp_path))
    TrainEstimator().evaluate(candidate, 4, EvalContext(space, 0, 0, checkpoints=store, budget=study_range))
    resumed = TrainEstimator().evaluate(candidate, 12, EvalContext(space, 0, 0, checkpoints=store,
                                                                   budget=study_range)).metrics
    assert resumed["resumed_from_epoch"] == 4
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-4)


def test_unknown_digits_task_option_is_a_config_error_naming_it():
    from automl.errors import ConfigError
    from automl.tasks.digits import DigitsTask

    with pytest.raises(ConfigError, match=r"unknown options \['valfrac'\]"):
        DigitsTask(valfrac=0.1)


def test_device_option_is_checked_when_the_study_is_created():
    from automl.errors import ConfigError

    assert TrainEstimator(device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert TrainEstimator(device="cpu").device == torch.device("cpu")
    with pytest.raises(ConfigError) as info:
        TrainEstimator(device="tpu9")
    assert info.value.field == "device"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees 0 CUDA devices") as info:
            TrainEstimator(device="cuda")
        assert info.value.field == "device"
