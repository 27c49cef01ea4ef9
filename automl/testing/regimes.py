"""Conformance checks every training regime must pass; a plugin's tests call them with its regime's name,
options and a small problem of a family it trains (:func:`classification_problem`, and
:func:`environments_problem` whose batches carry environment ids)::

    @pytest.mark.parametrize("check", REGIME_CHECKS)
    def test_my_regime(check):
        check("my-regime", {"epsilon": 0.1}, classification_problem())
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from automl.training.fit import FitResult, fit
from automl.training.recipe import Recipe
from automl.training.regime import LossFn, Regime, RegimeSpec
from automl.training.seeding import seeded
from automl.training.streams import BatchStream, tensor_batches


@dataclass(frozen=True)
class RegimeProblem:
    """A small training problem: ``make_model()`` and ``make_batches()`` give fresh ones each run (the
    batches from their own seeded generators), ``loss`` is the family's step, ``runtime()`` the objects
    only code gives the regime (e.g. ``{"teacher": ...}``)."""

    make_model: Callable[[], nn.Module]
    make_batches: Callable[[], BatchStream]
    loss: LossFn
    steps: int = 3
    recipe: Recipe = field(default_factory=lambda: Recipe(steps=3, lr=0.05, optimizer="sgd", momentum=0.9))
    runtime: Callable[[], Mapping[str, Any]] = dict


def classification_problem() -> RegimeProblem:
    """A two-layer MLP on 64 random 1x8x8 images of 4 classes, batches of 16 (the supervised family)."""
    from automl.training.classification import classification_step

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=generator)
    y = torch.randint(0, 4, (64,), generator=generator)

    def model() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))

    def batches() -> BatchStream:
        return tensor_batches(x, y, 16, torch.Generator().manual_seed(1))

    return RegimeProblem(make_model=model, make_batches=batches, loss=classification_step)


def environments_problem(environments: int = 3) -> RegimeProblem:
    """:func:`classification_problem`'s MLP and data dealt into ``environments`` environments (the environments
    family): balanced batches of 16 ``(x, y, env)`` from :func:`automl.training.streams.environment_batches`."""
    from automl.training.classification import classification_step
    from automl.training.streams import environment_batches

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=generator)
    y = torch.randint(0, 4, (64,), generator=generator)
    env = torch.arange(64) % environments

    def model() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))

    def batches() -> BatchStream:
        return environment_batches(x, y, env, 16, torch.Generator().manual_seed(1))

    return RegimeProblem(make_model=model, make_batches=batches, loss=classification_step)


def _run(problem: RegimeProblem, regime: Regime | None, seed: int = 0, global_seed: int = 0,
         on_step: Callable[[int, Mapping[str, float]], None] | None = None) -> tuple[FitResult, nn.Module]:
    """Build the model from ``seed`` alone, put torch's global RNG in the state of ``global_seed``, and
    fit; the global RNG must come back unchanged."""
    with seeded(seed):
        model = problem.make_model()
    torch.manual_seed(global_seed)
    before = torch.get_rng_state()
    result = fit(model, problem.make_batches(), problem.recipe.with_steps(problem.steps), problem.loss,
                 regimes=[regime] if regime is not None else [], seed=seed, on_step=on_step)
    assert torch.equal(torch.get_rng_state(), before), "fit must restore the caller's RNG state"
    return result, model


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_identity_regime_changes_nothing(name: str, options: Mapping[str, Any], problem: RegimeProblem) -> None:
    """The ``standard`` regime leaves every step's loss and the trained weights bit-for-bit as training
    without any regime does (``name``/``options`` are not used: the check is of the contract's default)."""
    plain, plain_model = _run(problem, None)
    standard, standard_model = _run(problem, RegimeSpec("standard").build())
    assert [dict(h) for h in plain.history] == [dict(h) for h in standard.history]
    for key, value in _state(plain_model).items():
        assert torch.equal(value, _state(standard_model)[key]), key


def check_extra_parameters_receive_gradients(name: str, options: Mapping[str, Any], problem: RegimeProblem) -> None:
    """Every trainable parameter the regime adds gets a finite gradient from the first step."""
    regime = RegimeSpec(name, dict(options)).build(**problem.runtime())
    missing: list[int] = []

    def look(step: int, terms: Mapping[str, float]) -> None:
        if step == 0:
            for i, param in enumerate(regime.parameters()):
                if param.requires_grad and (param.grad is None or not torch.isfinite(param.grad).all()):
                    missing.append(i)

    _run(problem, regime, on_step=look)
    assert not missing, f"regime {name!r}: parameters {missing} of {len(regime.parameters())} got no finite gradient"


def check_fixed_seed_fixed_result(name: str, options: Mapping[str, Any], problem: RegimeProblem) -> None:
    """The same seed gives the same losses and weights, whatever torch's global RNG held before, and the
    caller's global RNG state is left as it was."""
    first, first_model = _run(problem, RegimeSpec(name, dict(options)).build(**problem.runtime()), seed=3,
                              global_seed=1)
    second, second_model = _run(problem, RegimeSpec(name, dict(options)).build(**problem.runtime()), seed=3,
                                global_seed=2)
    assert [dict(h) for h in first.history] == [dict(h) for h in second.history]
    for key, value in _state(first_model).items():
        assert torch.equal(value, _state(second_model)[key]), key


REGIME_CHECKS = [check_identity_regime_changes_nothing, check_extra_parameters_receive_gradients,
                 check_fixed_seed_fixed_result]
