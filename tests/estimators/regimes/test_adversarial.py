"""The adversarial regimes (``pgd-at``, ``trades``, ``jeat``) pass the regime conformance suite, attack inside
the threat model, resume exactly from a checkpoint, and refuse bad options with one message naming the field."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.artifacts import ArtifactStore
from automl.errors import ConfigError
from automl.testing.regimes import REGIME_CHECKS, classification_problem
from automl.training.classification import classification_step
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import Recipe
from automl.training.regime import RegimeSpec
from automl.training.robustness import pgd
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches

ADVERSARIAL = {"pgd-at": {"epsilon": 0.1, "steps": 3},
               "trades": {"epsilon": 0.1, "steps": 3, "beta": 3.0},
               "jeat": {"epsilon": 0.1, "steps": 3, "sgld_steps": 2, "buffer_size": 32}}


@pytest.mark.parametrize("check", REGIME_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_regimes_pass_the_conformance_suite(check, name):
    check(name, ADVERSARIAL[name], classification_problem())


def _model() -> nn.Module:
    with seeded(0):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(32, 1, 8, 8, generator=generator), torch.randint(0, 4, (32,), generator=generator)


def test_pgd_stays_in_the_epsilon_ball_and_the_input_range_and_raises_the_loss():
    model, (x, y) = _model(), _data()
    torch.manual_seed(0)
    adv = pgd(model, x, y, epsilon=0.1, steps=10, step_size=0.025)
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(adv), y) > nn.functional.cross_entropy(model(x), y)


def test_pgd_restores_the_model_mode():
    model, (x, y) = _model(), _data()
    model.train()
    pgd(model, x, y, epsilon=0.1, steps=2, step_size=0.05)
    assert model.training


def test_each_regime_changes_what_the_step_trains_on():
    """pgd-at trains on attacked inputs; trades adds a KL term; jeat adds the energy term and fills its buffer."""
    x, y = _data()
    terms = {}
    for name, options in ADVERSARIAL.items():
        regime = RegimeSpec(name, options).build()
        run = fit(_model(), tensor_batches(x, y, 16, torch.Generator().manual_seed(1)), Recipe(steps=2, lr=0.01),
                  classification_step, regimes=[regime], seed=0)
        terms[name] = set(run.history[0])
        if name == "jeat":
            assert regime.state_dict()["buffer"].shape == (32, 1, 8, 8)
    plain = fit(_model(), tensor_batches(x, y, 16, torch.Generator().manual_seed(1)), Recipe(steps=2, lr=0.01),
                classification_step, seed=0)
    assert terms == {"pgd-at": {"loss", "total"}, "trades": {"loss", "trades_kl", "total"},
                     "jeat": {"loss", "energy", "total"}}
    at = fit(_model(), tensor_batches(x, y, 16, torch.Generator().manual_seed(1)), Recipe(steps=2, lr=0.01),
             classification_step, regimes=[RegimeSpec("pgd-at", ADVERSARIAL["pgd-at"]).build()], seed=0)
    assert at.history[0]["loss"] > plain.history[0]["loss"]  # the same weights score worse on attacked inputs


@pytest.mark.parametrize("name", ["jeat", "trades"])
def test_a_checkpointed_run_continues_exactly(tmp_path, name):
    """Half a run, checkpointed, then the rest gives the weights of one uninterrupted run (jeat: its replay
    buffer is part of the checkpoint)."""
    x, y = _data()
    recipe = Recipe(steps=6, lr=0.01, schedule="cosine", horizon=6)

    def run(steps: int, store: ArtifactStore | None) -> nn.Module:
        model = _model()
        fit(model, tensor_batches(x, y, 16, torch.Generator().manual_seed(1)), recipe.with_steps(steps),
            classification_step, regimes=[RegimeSpec(name, ADVERSARIAL[name]).build()], seed=3,
            checkpoint=Checkpoint(store, "run.pt", every_s=0) if store is not None else None)
        return model

    whole = run(6, None)
    store = ArtifactStore(str(tmp_path))
    run(3, store)
    resumed = run(6, store)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("options, field", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": 1.0}, "epsilon"), ({"epsilon": -0.1}, "epsilon"),
    ({"epsilon": "big"}, "epsilon"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
    ({"step_size": 0}, "step_size"), ({"bogus": 1}, "bogus"),
])
def test_bad_options_name_the_field(name, options, field):
    with pytest.raises(ConfigError) as info:
        RegimeSpec(name, options).check_options()
    assert info.value.field == field


@pytest.mark.parametrize("name, options, field", [
    ("trades", {"beta": 0}, "beta"), ("jeat", {"sgld_steps": 0}, "sgld_steps"),
    ("jeat", {"reinit": 1.5}, "reinit"), ("jeat", {"sgld_noise": -1}, "sgld_noise"),
    ("jeat", {"buffer_size": 0}, "buffer_size"), ("jeat", {"energy_weight": 0}, "energy_weight"),
])
def test_bad_regime_specific_options_name_the_field(name, options, field):
    with pytest.raises(ConfigError) as info:
        RegimeSpec(name, options).check_options()
    assert info.value.field == field


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_regimes_train_classifiers_only(name):
    RegimeSpec(name).check_family("supervised")
    with pytest.raises(ConfigError, match="trains environments, supervised tasks, not detection tasks"):
        RegimeSpec(name).check_family("detection")


def test_inputs_outside_the_unit_range_are_refused():
    x, y = _data()
    with pytest.raises(ConfigError, match=r"inputs in \[0, 1\]"):
        fit(_model(), tensor_batches(x * 4 - 2, y, 16, torch.Generator().manual_seed(1)), Recipe(steps=1, lr=0.01),
            classification_step, regimes=[RegimeSpec("pgd-at", {"epsilon": 0.1}).build()], seed=0)
