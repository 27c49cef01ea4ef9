"""The one training loop: recipes, schedules, non-finite steps, exact resumption from checkpoints."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from automl.artifacts import ArtifactStore
from automl.errors import ConfigError
from automl.training.classification import classification_step
from automl.training.fit import Checkpoint, checkpoint_step, fit
from automl.training.recipe import Recipe, recipe_from_config
from automl.training.regime import Regime, StepOutput
from automl.training.seeding import seeded
from automl.training.streams import DrawStream, EpochStream, WithDraws, tensor_batches

X = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = X[:, 0, 0, :3].argmax(1)  # learnable: which of three pixels is brightest


def model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def lrs(recipe: Recipe) -> list[float]:
    optimizer = recipe.make_optimizer([nn.Parameter(torch.zeros(1))])
    schedule = recipe.make_schedule(optimizer)
    out = []
    for _ in range(recipe.steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return out


@pytest.mark.parametrize("bad,field", [({"lr": 0}, "lr"), ({"optimizer": "rmsprop"}, "optimizer"),
                                       ({"schedule": "step"}, "schedule"), ({"steps": -1}, "steps"),
                                       ({"clip": -1.0}, "clip"), ({"nonfinite": "ignore"}, "nonfinite"),
                                       ({"nesterov": True}, "nesterov")])
def test_a_bad_recipe_is_a_config_error_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as info:
        Recipe(**{"steps": 5, **bad})
    assert info.value.field == field


def test_a_config_train_part_becomes_a_recipe_and_names_bad_fields():
    recipe = recipe_from_config({"lr": "1e-2", "optimizer": "sgd", "momentum": 0.9, "epochs": 3}, steps=30,
                                horizon=90, defaults={"schedule": "cosine"})
    assert (recipe.lr, recipe.optimizer, recipe.momentum, recipe.span) == (0.01, "sgd", 0.9, 90)
    with pytest.raises(ConfigError, match="train.optimizer: must be one of"):
        recipe_from_config({"optimizer": "lbfgs"}, steps=3)


def test_schedules_follow_their_formulas():
    bert = lrs(Recipe(steps=10, lr=1.0, schedule="warmup-linear", warmup=2))
    assert bert[:3] == pytest.approx([0.5, 1.0, 1.0]) and bert[-1] == pytest.approx(1 / 8)
    det = lrs(Recipe(steps=10, lr=1.0, schedule="warmup-cosine", warmup=2))
    assert det[0] == pytest.approx(1 / 3) and det[2] == pytest.approx(1.0)
    assert det[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    cosine = lrs(Recipe(steps=4, lr=1.0, schedule="cosine", horizon=8))
    assert cosine == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(4)])


def test_fit_trains_and_restores_the_callers_rng():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    net = model()
    state = torch.get_rng_state()
    result = fit(net, tensor_batches(X, Y, 10), Recipe(steps=60, lr=0.01), classification_step, seed=3)
    assert torch.equal(torch.get_rng_state(), state) and not torch.equal(before, state)
    assert result.steps == 60 and result.trained == 60 and len(result.history) == 60
    assert result.tail(0.25)["loss"] < result.history[0]["loss"]
    assert not net.training


def test_non_finite_steps_are_skipped_or_raise():
    class Nan(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w * float("nan")

    def step(net: nn.Module, batch: object) -> StepOutput:
        return StepOutput({"loss": net(torch.ones(1)).sum()})

    stream = DrawStream(lambda: None)
    result = fit(Nan(), stream, Recipe(steps=4, nonfinite="skip"), step)
    assert result.skipped == 4 and result.history == []
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(Nan(), stream, Recipe(steps=4, nonfinite="raise"), step)


@pytest.mark.parametrize("kind", ["global", "torch", "numpy", "draws"])
def test_a_killed_run_resumes_exactly(tmp_path, kind):
    def stream() -> object:
        if kind == "global":
            return tensor_batches(X, Y, 8)
        if kind == "torch":
            return tensor_batches(X, Y, 8, torch.Generator().manual_seed(5))
        if kind == "numpy":
            return EpochStream(len(X), 8, lambda i: (X[torch.as_tensor(i)], Y[torch.as_tensor(i)]),
                               np.random.default_rng(5))
        return WithDraws(tensor_batches(X, Y, 8, torch.Generator().manual_seed(5)),
                         lambda rng: float(rng.uniform()), np.random.default_rng(6))

    def step(net: nn.Module, batch: object) -> StepOutput:
        if kind == "draws":
            (x, y), scale = batch  # type: ignore[misc]
            out = classification_step(net, (x, y))
            return StepOutput({"loss": out.terms["loss"] * (1 + scale)})
        return classification_step(net, batch)  # type: ignore[arg-type]

    recipe = Recipe(steps=25, lr=0.05, schedule="cosine", optimizer="adam")

    def run(checkpoint: Checkpoint | None, kill_at: int | None = None) -> tuple[nn.Module, object]:
        with seeded(11):
            net = model()
            def killer(step: int, terms: object) -> None:
                if step == kill_at:
                    raise KeyboardInterrupt
            try:
                result = fit(net, stream(), recipe, step, checkpoint=checkpoint, on_step=killer)  # type: ignore[arg-type]
            except KeyboardInterrupt:
                return net, None
        return net, result

    straight, _ = run(None)
    store = ArtifactStore(str(tmp_path))
    every_step = Checkpoint(store, "run.pt", every_s=1e-9)  # a checkpoint after every step
    run(every_step, kill_at=13)
    assert checkpoint_step(store, "run.pt") == 13  # the step that was running when killed is not saved
    resumed, result = run(every_step)
    assert result.resumed_from == 13 and result.trained == 12  # type: ignore[attr-defined]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_longer_run_on_the_same_schedule_continues_a_kept_checkpoint(tmp_path):
    store = ArtifactStore(str(tmp_path))
    recipe = Recipe(steps=10, lr=0.05, schedule="cosine", horizon=30)
    with seeded(0):
        net = model()
        first = fit(net, tensor_batches(X, Y, 8), recipe, classification_step, checkpoint=Checkpoint(store, "c.pt"))
    with seeded(0):
        net = model()
        second = fit(net, tensor_batches(X, Y, 8), recipe.with_steps(30), classification_step,
                     checkpoint=Checkpoint(store, "c.pt"))
    assert first.resumed_from == 0 and second.resumed_from == 10 and checkpoint_step(store, "c.pt") == 30
    with seeded(0):  # another schedule (a different horizon) does not continue it
        third = fit(model(), tensor_batches(X, Y, 8), Recipe(steps=10, lr=0.05, schedule="cosine", horizon=40),
                    classification_step, checkpoint=Checkpoint(store, "c.pt"))
    assert third.resumed_from == 0 and checkpoint_step(store, "c.pt") == 30  # never overwritten by fewer steps


def test_a_phase_checkpoint_is_removed_when_the_run_completes(tmp_path):
    store = ArtifactStore(str(tmp_path))
    fit(model(), tensor_batches(X, Y, 8), Recipe(steps=5), classification_step,
        checkpoint=Checkpoint(store, "phase.partial", every_s=1e-9, keep=False))
    assert not store.exists("phase.partial")


def test_regime_hooks_run_and_their_terms_cannot_shadow_the_steps():
    class Penalty(Regime):
        def __init__(self, name: str = "penalty") -> None:
            super().__init__()
            self.name, self.calls = name, {"prepare": 0, "start": 0}
            self.scale = nn.Parameter(torch.ones(()))

        def start(self, run: object) -> None:
            self.calls["start"] += 1

        def parameters(self) -> list[nn.Parameter]:
            return [self.scale]

        def prepare(self, net: nn.Module, batch: object, step: int) -> object:
            self.calls["prepare"] += 1
            return batch

        def loss_terms(self, net: nn.Module, batch: object, output: StepOutput, step: int) -> dict[str, torch.Tensor]:
            return {self.name: (self.scale - 2.0) ** 2 * output.outputs.abs().mean().detach()}

    penalty = Penalty()
    result = fit(model(), tensor_batches(X, Y, 10), Recipe(steps=5, lr=0.1), classification_step, regimes=[penalty])
    assert penalty.calls == {"prepare": 5, "start": 1} and "penalty" in result.history[0]
    assert float(penalty.scale.detach()) > 1.0  # the regime's own parameter was trained
    with pytest.raises(ConfigError, match="adds a loss term 'loss'"):
        fit(model(), tensor_batches(X, Y, 10), Recipe(steps=1), classification_step, regimes=[Penalty("loss")])
