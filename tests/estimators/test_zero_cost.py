"""Zero-cost proxies: finite, seeded scores that rank a broken network below a sane one; usable as a study's
objective, as a pipeline's prefilter of a training step and as the warm start of evolution; bad input
refused when the study is created."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import automl
from automl.errors import ConfigError
from automl.estimator import EvalContext, estimators
from automl.pipeline import run_pipeline
from automl.training import proxies
from estimators.cost import count_flops, count_params
from estimators.zero_cost import PROXIES

#: a small digits-cnn: one or two conv blocks, budget of one epoch (so the training steps below are quick)
SPACE = """\
name: tiny-cnn
task: digits
builder: cnn
estimator: {ESTIMATOR}
objectives: {OBJECTIVES}
budget: {name: epochs, min: 1, max: 1}
space:
  model:
    blocks:
      type: repeat
      min: 1
      max: 2
      item:
        channels: {type: int, low: 4, high: 16}
        kernel: {type: categorical, choices: [1, 3]}
        batchnorm: {type: bool}
        pool: {type: bool}
    activation: {type: categorical, choices: [relu, gelu]}
    dropout: 0.0
"""
CONFIG = {"model": {"blocks": [{"channels": 8, "kernel": 3, "batchnorm": True, "pool": True}],
                    "activation": "relu", "dropout": 0.0}}


def tiny_space(estimator: str = "train", objectives: str = "{accuracy: max}") -> automl.SearchSpace:
    return automl.space_from_yaml(SPACE.replace("{ESTIMATOR}", estimator).replace("{OBJECTIVES}", objectives))


class Zero(nn.Module):
    """NAS-Bench-201's ``none`` op: the output ignores the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def hand_built(broken: bool) -> nn.Module:
    torch.manual_seed(0)
    middle: nn.Module = Zero() if broken else nn.Identity()
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), middle,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator)


SCORES = {
    "synflow": lambda m, x, y: proxies.synflow(m, x),
    "snip": proxies.snip,
    "grad-norm": proxies.grad_norm,
    "jacob-cov": lambda m, x, y: proxies.jacob_cov(m, x),
}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_a_proxy_is_finite_leaves_the_model_alone_and_ranks_a_network_that_ignores_its_input_last(name):
    x, y = batch()
    sane, broken = hand_built(False), hand_built(True)
    before = {k: v.clone() for k, v in sane.state_dict().items()}
    good, bad = SCORES[name](sane, x, y), SCORES[name](broken, x, y)
    assert math.isfinite(good) and math.isfinite(bad)
    assert good > bad
    assert all(torch.equal(before[k], v) for k, v in sane.state_dict().items())  # scored on a copy
    assert all(p.grad is None for p in sane.parameters())
    assert SCORES[name](sane, x, y) == good  # deterministic


def test_jacob_cov_floor_is_the_rank_one_score_and_uncorrelated_rows_score_higher():
    n, k = 4, proxies.JACOB_COV_K
    floor = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert proxies.correlation_score(torch.zeros(n, 6).numpy()) == pytest.approx(floor)
    assert proxies.correlation_score(torch.eye(n, 6).numpy()) > proxies.correlation_score(
        torch.ones(n, 6).numpy().cumsum(axis=1))


def test_synflow_needs_no_data_and_grows_with_the_network():
    x, _ = batch()
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    assert proxies.synflow(small, x) == proxies.synflow(small, torch.zeros_like(x))  # only the shape is used
    assert proxies.synflow(wide, x) > proxies.synflow(small, x)


@pytest.mark.parametrize("name", PROXIES)
def test_each_estimator_reports_its_score_named_like_itself_seeded_by_the_trial(name):
    space = tiny_space(name, f"{{{name}: max}}")
    estimator = estimators.get(name)()
    candidate = space.candidate(CONFIG)
    first = estimator.evaluate(candidate, None, EvalContext(space, seed=3, trial_number=0)).all_metrics()
    again = estimator.evaluate(candidate, None, EvalContext(space, seed=3, trial_number=0)).all_metrics()
    other = estimator.evaluate(candidate, None, EvalContext(space, seed=3, trial_number=1)).all_metrics()
    assert math.isfinite(first[name]) and first[name] == again[name]
    assert {"params", "flops", "proxy_seconds"} <= set(first)
    if name not in ("params", "flops"):
        assert other[name] != first[name]  # another trial: another initialisation


def test_params_and_flops_equal_the_existing_counters():
    space = tiny_space("params", "{params: max}")
    task = automl.tasks.base.tasks.get("digits")()
    model = automl.registry.resolve_builder("cnn")(CONFIG["model"], task.info)
    ctx = EvalContext(space, seed=0, trial_number=0)
    params = estimators.get("params")().evaluate(space.candidate(CONFIG), None, ctx).metrics["params"]
    flops = estimators.get("flops")().evaluate(space.candidate(CONFIG), None, ctx).metrics["flops"]
    assert params == count_params(model)
    assert flops == count_flops(model, task.example_input())


def test_a_proxy_is_a_study_objective():
    study = automl.create_study(tiny_space("synflow", "{synflow: max}"), strategy="random", seed=0)
    study.optimize(total_trials=4)
    scores = [t.values["synflow"] for t in study.completed()]
    assert len(scores) == 4 and all(s > 0 for s in scores)
    assert study.best.values["synflow"] == max(scores)


def test_a_cost_constraint_rejects_before_scoring():
    space = automl.space_from_yaml(SPACE.replace("{ESTIMATOR}", "snip").replace("{OBJECTIVES}", "{snip: max}")
                                   + 'constraints: ["params <= 100"]\n')
    with pytest.raises(automl.errors.Infeasible, match="params <= 100 violated"):
        estimators.get("snip")().evaluate(space.candidate(CONFIG), None, EvalContext(space, 0, 0))


@pytest.mark.parametrize("edit,message", [
    (("task: digits", "task: synthetic-text"), "estimator 'synflow' evaluates environments or supervised tasks; "
                                               "task 'synthetic-text' is a text task"),
    (("estimator: synflow", "estimator: {name: synflow, options: {batch_size: 1}}"),
     "estimator.options.batch_size: batch_size must be an integer >= 2, got 1"),
])
def test_bad_input_fails_at_study_creation(edit, message):
    text = SPACE.replace("{ESTIMATOR}", "synflow").replace("{OBJECTIVES}", "{synflow: max}").replace(*edit)
    with pytest.raises(ConfigError, match=re.escape(message)):
        automl.create_study(automl.space_from_yaml(text, source="s.yaml"))


def test_an_objective_a_proxy_does_not_report_is_refused_before_any_trial():
    study = automl.create_study(tiny_space("synflow", "{accuracy: max}"))
    with pytest.raises(ConfigError, match=re.escape("'accuracy' is not a metric estimator 'synflow' reports (it "
                                                    "reports flops, latency_ms, params, proxy_seconds, synflow)")):
        study.optimize(total_trials=1)
    assert not study.trials


def test_a_detection_space_cannot_be_scored_by_a_proxy():
    text = SPACE.replace("{ESTIMATOR}", "jacob-cov").replace("{OBJECTIVES}", "{jacob-cov: max}").replace(
        "task: digits", "task: shapes-detection")
    with pytest.raises(ConfigError, match="estimator 'jacob-cov' evaluates environments or supervised tasks; task "
                                          "'shapes-detection' is a detection task"):
        automl.create_study(automl.space_from_yaml(text, source="s.yaml"))


PIPELINE = """\
name: prefiltered
steps:
  prefilter: {space: tiny.yaml, estimator: synflow, objectives: {synflow: max}, strategy: random, trials: 8}
  train:     {from: prefilter, top_k: 2, seeds: 1}
  evolve:    {from: prefilter, top_k: 3, strategy: evolution, trials: 4, options: {population: 3, tournament: 2}}
"""


def test_a_pipeline_trains_the_proxys_best_and_warm_starts_evolution_with_them(tmp_path: Path):
    (tmp_path / "tiny.yaml").write_text(SPACE.replace("{ESTIMATOR}", "train").replace("{OBJECTIVES}",
                                                                                       "{accuracy: max}"))
    (tmp_path / "p.yaml").write_text(PIPELINE)
    studies = run_pipeline(tmp_path / "p.yaml", storage=None, output=tmp_path / "runs")
    (prefilter,) = studies["prefilter"]
    ranked = sorted(prefilter.completed(), key=lambda t: -t.values["synflow"])
    assert len(ranked) == 8 and all("accuracy" not in t.metrics for t in ranked)  # nothing was trained
    (train,) = studies["train"]
    assert [t.config for t in train.trials] == [t.config for t in ranked[:2]]  # the proxy's top 2, trained
    assert all(0.0 <= t.metrics["accuracy"] <= 1.0 and "test_accuracy" in t.metrics for t in train.trials)
    (evolve,) = studies["evolve"]
    trials = sorted(evolve.trials, key=lambda t: t.number)
    assert [t.config for t in trials[:3]] == [t.config for t in ranked[:3]]  # the initial population
    assert trials[3].info["origin"] == "mutation" and trials[3].info["parent"] in {t.number for t in trials[:3]}


@pytest.mark.parametrize("old,new,expected", [
    ("estimator: synflow", "estimator: 3",
     "p.yaml:3: steps.prefilter.estimator: expected a registered estimator name or {name, options}, got 3"),
    ("objectives: {synflow: max}, ", "", "p.yaml:3: steps.prefilter.estimator: a step that names its estimator names "
                                         "the objectives it reports too"),
    ("{synflow: max}", "{synflow: most}",
     "p.yaml:3: steps.prefilter.objectives.synflow: expected 'max' or 'min', got 'most'"),
    ("estimator: synflow", "estimator: synflo", "p.yaml:3: steps.prefilter.estimator: unknown estimator 'synflo'"),
])
def test_a_bad_prefilter_step_is_named_at_its_line(tmp_path: Path, old, new, expected):
    (tmp_path / "tiny.yaml").write_text(SPACE.replace("{ESTIMATOR}", "train").replace("{OBJECTIVES}",
                                                                                       "{accuracy: max}"))
    (tmp_path / "p.yaml").write_text(PIPELINE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        run_pipeline(tmp_path / "p.yaml", storage=None, output=tmp_path / "runs")
    assert str(info.value).replace(f"{tmp_path}/", "").startswith(expected), str(info.value)
