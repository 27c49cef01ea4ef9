"""The ``train`` estimator on a multi-environment task reports what the selection rules read, and
``automl search --select expansion`` follows the expansion criterion end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import automl
from automl.errors import ConfigError
from automl.ood import model_variation, select_expansion
from automl.tasks.colored_digits import ColoredDigitsTask
from automl.training.classification import classification_scores
from automl.training.features import penultimate_features
from estimators.selection_metrics import selection_metrics
from estimators.train import environment_splits

COLORED = """
name: colored-pick
task: colored-digits
builder: mlp
objectives: {{accuracy: max}}
{selection}
space:
  model:
    layers: {{type: repeat, min: 1, max: 1, item: {{width: {{type: int, low: 8, high: 32}}, activation: relu}}}}
    dropout: 0.0
  train:
    lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
    epochs: 5
"""


def test_the_metrics_are_measured_on_domainbeds_splits():
    task = ColoredDigitsTask()
    fit, held = environment_splits(task, test=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    out = selection_metrics(model, fit, held, ("expansion", {"info_threshold": 0.2}))
    x, y, env = held.pooled("train")
    expected = model_variation(penultimate_features(model, x).double().numpy(), y.numpy(), env.numpy(),
                               info_threshold=0.2).value
    assert out["variation"] == pytest.approx(expected, rel=1e-9, nan_ok=True)
    assert out["oracle_accuracy"] == classification_scores(model, *held.pooled("test")[:2])[0]
    assert out["ood_accuracy"] == classification_scores(model, *fit.pooled("test")[:2])[0]
    assert out["variation_seconds"] >= 0
    # without a rule that reads v(h), it is not computed (the KDEs cost seconds per candidate)
    assert "variation" not in selection_metrics(model, fit, held, ("best-value", {}))


@pytest.mark.slow
def test_automl_search_select_expansion_follows_the_criterion(tmp_path, monkeypatch):
    from automl.cli import main
    from automl.ledger import Ledger, open_storage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(COLORED.format(selection=""))
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["search", "--space", "c.yaml", "--trials", "4", "--select", "expansion", "--select-option",
                 "info_threshold=0.1", "--storage", storage,
                 "--study-name", "c", "--seed", "0"]) == 0
    trials = Ledger.load(open_storage(storage), "c").trials()
    assert all({"variation", "oracle_accuracy", "ood_accuracy"} <= set(t.metrics) for t in trials)
    assert all(np.isfinite(t.metrics["variation"]) for t in trials)
    pick = select_expansion([t.values["accuracy"] for t in trials], [t.metrics["variation"] for t in trials])
    best = json.loads((tmp_path / "automl-runs" / "c" / "best.json").read_text())
    assert best["number"] == trials[pick].number
    assert main(["report", "--study", "c", "--storage", storage]) == 0
    assert (tmp_path / "automl-runs" / "c" / "selection.png").stat().st_size > 1000


def test_a_task_with_one_training_environment_cannot_use_expansion(tmp_path):
    path = tmp_path / "one.yaml"
    text = COLORED.format(selection="selection: expansion").replace(
        "task: colored-digits", "task: {name: colored-digits, options: {train: ['+90%'], test: ['-90%']}}")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"one.yaml:6: selection: .*task 'colored-digits' trains on one \(\+90%\)"):
        automl.create_study(str(path), seed=0)


def test_a_plain_search_never_touches_the_test_environments():
    from automl.testing.tasks import check_test_split_withheld

    space = automl.space_from_yaml(COLORED.format(selection=""), source="c.yaml")
    config = space.sample(np.random.default_rng(0))
    metrics = check_test_split_withheld(space, config, None)
    assert not {"variation", "oracle_accuracy", "ood_accuracy"} & set(metrics)


def test_an_oracle_sweep_records_the_test_environments_but_never_optimises_them():
    study = automl.create_study(automl.space_from_yaml(COLORED.format(selection="selection: oracle"),
                                                       source="c.yaml"), strategy="random", seed=0)
    study.optimize(total_trials=3)
    assert all(np.isfinite(t.metrics["ood_accuracy"]) and "variation" not in t.metrics for t in study.trials)
    assert study.best.metrics["oracle_accuracy"] == max(t.metrics["oracle_accuracy"] for t in study.trials)
    assert [o.name for o in study.objectives] == ["accuracy"]
