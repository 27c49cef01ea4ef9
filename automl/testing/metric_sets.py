"""Conformance checks every metric set must pass; a plugin's tests call them with its set's name, options and a
small trained model with held-out data (:func:`classification_model` is one)::

    @pytest.mark.parametrize("check", METRIC_SET_CHECKS)
    def test_my_metrics(check):
        check("my-metrics", {"subset": 20}, classification_model())
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from automl.training.metric_sets import MetricSetSpec


@dataclass(frozen=True)
class MeasuredModel:
    """A trained model in eval mode and the held-out ``(x, y)`` a metric set measures it on."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor


def classification_model() -> MeasuredModel:
    """A two-layer MLP trained for 60 steps on 96 1x8x8 images in [0, 1] whose class is their brightest quadrant
    (four classes: AutoAttack's targeted loss needs at least four)."""
    from automl.training.classification import classification_step
    from automl.training.fit import fit
    from automl.training.recipe import Recipe
    from automl.training.streams import tensor_batches

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=generator)
    quadrants = x.view(96, 2, 4, 2, 4).mean((2, 4)).flatten(1)
    y = quadrants.argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    fit(model, tensor_batches(x[:64], y[:64], 16, torch.Generator().manual_seed(1)),
        Recipe(steps=60, lr=0.01), classification_step, seed=0)
    return MeasuredModel(model.eval(), x[64:], y[64:])


def _measure(name: str, options: Mapping[str, Any], problem: MeasuredModel) -> dict[str, float]:
    return dict(MetricSetSpec(name, dict(options)).build().compute(problem.model, problem.x, problem.y))


def check_finite_numbers(name: str, options: Mapping[str, Any], problem: MeasuredModel) -> None:
    """The set reports at least one metric, every one a finite float."""
    metrics = _measure(name, options, problem)
    assert metrics, f"metric set {name!r} reported nothing"
    bad = {k: v for k, v in metrics.items() if not isinstance(v, float) or not math.isfinite(v)}
    assert not bad, f"metric set {name!r}: non-finite or non-float metrics {bad}"


def check_measuring_changes_nothing(name: str, options: Mapping[str, Any], problem: MeasuredModel) -> None:
    """Measuring leaves the model's weights and mode, the data, and torch's global RNG as they were."""
    weights = {k: v.clone() for k, v in problem.model.state_dict().items()}
    data = problem.x.clone()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    _measure(name, options, problem)
    assert torch.equal(torch.get_rng_state(), before), "measuring must not move torch's global RNG"
    assert not problem.model.training, "measuring must leave the model in eval mode"
    assert torch.equal(problem.x, data), "measuring must not modify the data"
    for key, value in problem.model.state_dict().items():
        assert torch.equal(value, weights[key]), f"measuring changed {key}"


def check_fixed_result(name: str, options: Mapping[str, Any], problem: MeasuredModel) -> None:
    """Two measurements of the same model, after different global RNG states, agree exactly."""
    torch.manual_seed(1)
    first = _measure(name, options, problem)
    torch.manual_seed(2)
    assert _measure(name, options, problem) == first


METRIC_SET_CHECKS = [check_finite_numbers, check_measuring_changes_nothing, check_fixed_result]
