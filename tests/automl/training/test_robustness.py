"""The ``robust`` metric set: the conformance suite, what its numbers mean, and how a space asks for it (``metrics:``
or an adversarial regime), with one error naming the file, line and field for a bad entry."""
from __future__ import annotations

import textwrap

import pytest
import torch

from automl.errors import ConfigError
from automl.evaluation import prepare_evaluation
from automl.space import space_from_yaml
from automl.testing.estimators import evaluate
from automl.testing.metric_sets import METRIC_SET_CHECKS, classification_model
from automl.training.metric_sets import MetricSetSpec
from automl.training.robustness import RobustMetrics, fixed_subset

FAST = {"epsilon": 0.1, "steps": 5, "subset": 24, "flatness_samples": 2}


@pytest.mark.parametrize("check", METRIC_SET_CHECKS, ids=lambda c: c.__name__)
def test_robust_passes_the_conformance_suite(check):
    check("robust", FAST, classification_model())


def test_autoattack_is_the_worst_case_with_pgd():
    problem = classification_model()
    metrics = RobustMetrics(**FAST, autoattack=True).compute(problem.model, problem.x, problem.y)
    assert metrics["robust_accuracy"] <= min(metrics["pgd_accuracy"], metrics["autoattack_accuracy"])
    assert metrics["robust_accuracy"] <= metrics["clean_accuracy"]
    assert metrics["robust_examples"] == 24


def test_a_larger_epsilon_is_no_easier_and_zero_noise_is_flat():
    problem = classification_model()
    small = RobustMetrics(**{**FAST, "epsilon": 0.02}).compute(problem.model, problem.x, problem.y)
    large = RobustMetrics(**{**FAST, "epsilon": 0.3}).compute(problem.model, problem.x, problem.y)
    assert large["pgd_accuracy"] <= small["pgd_accuracy"]
    assert large["energy_flatness"] > small["energy_flatness"] > 0


def test_the_evaluation_subset_is_fixed_and_seeded():
    assert torch.equal(fixed_subset(100, 10, 0), fixed_subset(100, 10, 0))
    assert not torch.equal(fixed_subset(100, 10, 0), fixed_subset(100, 10, 1))
    assert len(fixed_subset(5, 10, 0)) == 5


@pytest.mark.parametrize("options, field", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": 1}, "epsilon"), ({"steps": 0}, "steps"), ({"subset": 0}, "subset"),
    ({"autoattack": "yes"}, "autoattack"), ({"bogus": 1}, "bogus"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ConfigError) as info:
        MetricSetSpec("robust", options).check("supervised")
    assert info.value.field == field


SPACE = """\
name: tiny-robust
task: digits
builder: mlp
{extra}
objectives: {{robust_accuracy: max}}
space:
  model:
    layers: {{type: constant, value: [{{width: 16, activation: relu}}]}}
  train:
    epochs: {{type: constant, value: 1}}
"""


def _space(extra: str):
    return space_from_yaml(textwrap.dedent(SPACE.format(extra=extra)), source="tiny.yaml")


def test_a_space_that_names_robust_reports_it_on_validation_and_on_test():
    space = _space("metrics: [{name: robust, options: {epsilon: 0.1, steps: 3, subset: 20}}]")
    config = space.sample(__import__("numpy").random.default_rng(0))
    metrics = evaluate(space, config, None)
    assert {"clean_accuracy", "pgd_accuracy", "robust_accuracy", "energy_flatness"} <= set(metrics)
    assert not any(k.startswith("test_") for k in metrics)
    tested = evaluate(space, config, None, info={"test": True})
    assert {"test_robust_accuracy", "test_pgd_accuracy"} <= set(tested)
    assert tested["robust_accuracy"] == metrics["robust_accuracy"]


def test_an_adversarial_regime_implies_robust_at_its_epsilon_and_a_named_set_wins():
    implied = prepare_evaluation(_space("regime: {name: pgd-at, options: {epsilon: 0.2}}"))
    assert [(s.name, dict(s.options)) for s in implied.metric_sets] == [("robust", {"epsilon": 0.2})]
    named = prepare_evaluation(_space("regime: {name: pgd-at, options: {epsilon: 0.2}}\n"
                                      "metrics: [{name: robust, options: {epsilon: 0.05}}]"))
    assert [(s.name, dict(s.options)) for s in named.metric_sets] == [("robust", {"epsilon": 0.05})]
    assert prepare_evaluation(_space("")).metric_sets == ()


@pytest.mark.parametrize("extra, message", [
    ("metrics: [robst]", "tiny.yaml:4: metrics[0]: unknown metric set 'robst'"),
    ("metrics: [{name: robust, options: {epsilon: 2}}]",
     "tiny.yaml:4: metrics[0].options.epsilon: epsilon must be a number in (0, 1)"),
    ("metrics: [robust, robust]", "tiny.yaml:4: metrics: metric set 'robust' is named twice"),
    ("regime: {name: jeat, options: {epsilon: 0}}",
     "tiny.yaml:4: regime.options.epsilon: epsilon must be a number in (0, 1)"),
    ("regime: {name: pgd-at, options: {steps: 0}}", "tiny.yaml:4: regime.options.steps: steps must be an integer >= 1"),
])
def test_bad_entries_are_one_error_at_the_line(extra, message):
    with pytest.raises(ConfigError) as info:
        prepare_evaluation(_space(extra))
    assert message in str(info.value), str(info.value)


def test_an_estimator_that_cannot_measure_is_refused():
    yaml = textwrap.dedent(SPACE.format(extra="estimator: train-from-scratch\nmetrics: [robust]"))
    with pytest.raises(ConfigError, match="does not report metric sets|evaluates"):
        prepare_evaluation(space_from_yaml(yaml, source="tiny.yaml"))


@pytest.mark.parametrize("args, message", [
    (["--regime", "jeat", "--regime-option", "epsilon=0"], "--regime jeat: epsilon must be a number in (0, 1)"),
    (["--regime", "pgd-at", "--regime-option", "steps=0"], "--regime pgd-at: steps must be an integer >= 1"),
    (["--regime", "jeatt"], "unknown regime 'jeatt'"),
])
def test_the_command_line_exits_2_with_one_line(tmp_path, args, message):
    from tests.automl.test_cli import run

    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(SPACE.format(extra="")))
    result = run("search", "--space", "tiny.yaml", "--trials", "1", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "automl-runs").exists()
