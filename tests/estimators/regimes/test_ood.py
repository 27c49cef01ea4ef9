"""The OOD regimes (``erm``, ``irm``, ``vrex``, ``coral``, ``groupdro``): the conformance suite, penalties equal
to hand computations, the anneal schedule, GroupDRO's weights, option errors naming the field, batches without
environments refused; the balanced environment stream; the train estimator's (x, y, env) batches and
train-domain validation split; a search over a regime's own options (the ``regime:`` config part), checked at
study creation; ``automl search`` end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import automl
from automl.artifacts import ArtifactStore
from automl.errors import ConfigError
from automl.estimator import EvalContext, searched_regime_options
from automl.evaluation import prepare_evaluation
from automl.testing.regimes import REGIME_CHECKS, classification_problem, environments_problem
from automl.training.classification import classification_step
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import Recipe
from automl.training.regime import RegimeSpec, StepOutput
from automl.training.seeding import seeded
from automl.training.streams import EnvironmentBatches, environment_batches

OOD = {"erm": {}, "irm": {"penalty_weight": 10.0, "anneal_steps": 1},
       "vrex": {"penalty_weight": 10.0, "anneal_steps": 1}, "coral": {"mmd_gamma": 0.5}, "groupdro": {"eta": 0.5}}


@pytest.mark.parametrize("check", REGIME_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(OOD))
def test_ood_regimes_pass_the_conformance_suite(check, name):
    check(name, OOD[name], environments_problem())


@pytest.mark.parametrize("check", REGIME_CHECKS, ids=lambda c: c.__name__)
def test_erm_trains_any_family(check):
    check("erm", {}, classification_problem())
    RegimeSpec("erm").check_family("supervised")


@pytest.mark.parametrize("name", ["irm", "vrex", "coral", "groupdro"])
def test_the_invariance_regimes_train_environments_tasks_only(name):
    RegimeSpec(name).check_family("environments")
    with pytest.raises(ConfigError, match="trains environments tasks, not supervised tasks"):
        RegimeSpec(name).check_family("supervised")


# -- penalties against hand computations ---------------------------------------------------------------
def _tiny() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=generator)
    env = torch.tensor([0, 1, 2] * 4)
    return logits, y, env


def _value(terms, name: str) -> float:
    return float(terms[name].detach())


def _output(logits: torch.Tensor, y: torch.Tensor) -> StepOutput:
    return StepOutput({"loss": F.cross_entropy(logits, y)}, logits)


def _dloss_dscale(logits: torch.Tensor, y: torch.Tensor) -> float:
    """d/ds of the mean cross-entropy of s * logits at s = 1, by hand: mean(sum_k p_k z_k - z_y)."""
    p = logits.softmax(1)
    return float(((p * logits).sum(1) - logits.gather(1, y[:, None])[:, 0]).mean())


def _hand_irm(logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> float:
    values = []
    for e in range(3):
        z, t = logits[env == e], y[env == e]
        values.append(_dloss_dscale(z[::2], t[::2]) * _dloss_dscale(z[1::2], t[1::2]))
    return float(np.mean(values))


def _hand_risks(logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> np.ndarray:
    out = []
    for e in range(3):
        z, t = logits[env == e].numpy(), y[env == e].numpy()
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        out.append(-log_p[np.arange(len(t)), t].mean())
    return np.array(out)


def test_irm_penalty_is_the_product_of_the_two_halves_scale_gradients():
    logits, y, env = _tiny()
    hand = _hand_irm(logits, y, env)
    loss = float(F.cross_entropy(logits, y))
    plain = RegimeSpec("irm", {"penalty_weight": 100.0, "anneal_steps": 5, "rescale": False}).build()
    assert _value(plain.loss_terms(None, (None, y, env), _output(logits, y), 5), "irm_penalty") == \
        pytest.approx(100 * hand, rel=1e-9)
    assert _value(plain.loss_terms(None, (None, y, env), _output(logits, y), 4), "irm_penalty") == \
        pytest.approx(hand, rel=1e-9)  # before the anneal step the weight is 1
    scaled = RegimeSpec("irm", {"penalty_weight": 100.0, "anneal_steps": 5, "rescale": True}).build()
    terms = scaled.loss_terms(None, (None, y, env), _output(logits, y), 5)
    total = loss + sum(float(v.detach()) for v in terms.values())
    assert total == pytest.approx((loss + 100 * hand) / 100, rel=1e-9)  # divided by the weight above 1
    early = scaled.loss_terms(None, (None, y, env), _output(logits, y), 0)
    assert _value(early, "irm_rescale") == 0.0 and _value(early, "irm_penalty") == pytest.approx(hand, rel=1e-9)


def test_vrex_penalty_is_the_variance_of_the_environment_risks():
    logits, y, env = _tiny()
    risks = _hand_risks(logits, y, env)
    regime = RegimeSpec("vrex", {"penalty_weight": 7.0, "anneal_steps": 0, "rescale": False}).build()
    penalty = _value(regime.loss_terms(None, (None, y, env), _output(logits, y), 0), "vrex_penalty")
    assert penalty == pytest.approx(7.0 * risks.var(), rel=1e-9)  # population variance, as DomainBed's
    assert float(F.cross_entropy(logits, y)) == pytest.approx(risks.mean(), rel=1e-9)  # balanced: pooled = mean


def test_the_anneal_schedule_switches_the_weight_at_anneal_steps():
    for name, default in (("irm", 100.0), ("vrex", 10.0)):
        regime = RegimeSpec(name).build()
        assert (regime.penalty_weight, regime.anneal_steps, regime.rescale) == (default, 500, False)  # DomainBed's
        assert [regime.weight(s) for s in (0, 499, 500, 10_000)] == [1.0, 1.0, default, default]
    assert RegimeSpec("irm", {"anneal_steps": 0, "penalty_weight": 3.0}).build().weight(0) == 3.0


def test_groupdro_weights_follow_exp_eta_risk_and_move_toward_the_worse_environment():
    logits, y, env = _tiny()
    logits = logits.clone()
    logits[env == 2] = -5 * F.one_hot(y[env == 2], 3).double()  # environment 2 predicted wrong: the worst
    risks = _hand_risks(logits, y, env)
    regime = RegimeSpec("groupdro", {"eta": 0.1}).build()
    regime.start(None)
    terms = regime.loss_terms(None, (None, y, env), _output(logits, y), 0)
    q = np.exp(0.1 * risks) / np.exp(0.1 * risks).sum()
    assert regime.q.numpy() == pytest.approx(q, rel=1e-9)
    total = float(F.cross_entropy(logits, y)) + _value(terms, "groupdro")
    assert total == pytest.approx(float((q * risks).sum()), rel=1e-9)  # the step minimises sum_e q_e risk_e
    for step in range(1, 20):
        regime.loss_terms(None, (None, y, env), _output(logits, y), step)
    assert int(regime.q.argmax()) == 2 and float(regime.q[2]) > q[2] > 1 / 3
    assert regime.state_dict()["q"].sum().item() == pytest.approx(1.0)


def _features_model() -> nn.Module:
    with seeded(0):
        return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def _coral(model: nn.Module, x: torch.Tensor, y: torch.Tensor, env: torch.Tensor, gamma: float = 1.0) -> float:
    regime = RegimeSpec("coral", {"mmd_gamma": gamma}).build()
    batch = regime.prepare(model, (x, y, env), 0)
    output = classification_step(model, batch)
    return _value(regime.loss_terms(model, batch, output, 0), "coral_penalty")


def test_coral_is_zero_for_identical_environment_features_and_matches_mean_and_covariance_differences():
    model = _features_model()
    generator = torch.Generator().manual_seed(0)
    same = torch.randn(5, 8, generator=generator)
    x, y = torch.cat([same, same]), torch.zeros(10, dtype=torch.long)
    env = torch.tensor([0] * 5 + [1] * 5)
    assert _coral(model, x, y, env) == pytest.approx(0.0, abs=1e-12)
    other = torch.cat([same, torch.randn(5, 8, generator=generator) * 3 + 1])
    with torch.no_grad():
        f = model[2](model[1](model[0](other.flatten(1))))  # the head's input
    a, b = f[:5], f[5:]
    hand = float((a.mean(0) - b.mean(0)).pow(2).mean() + (torch.cov(a.T) - torch.cov(b.T)).pow(2).mean())
    assert _coral(model, other, y, env, gamma=2.0) == pytest.approx(2.0 * hand, rel=1e-5)
    assert not any(m._forward_hooks for m in model.modules())  # the feature hook is gone after the step


def test_coral_penalty_trains_through_fit_and_leaves_no_hook():
    problem = environments_problem()
    with seeded(0):
        model = problem.make_model()
    run = fit(model, problem.make_batches(), Recipe(steps=3, lr=0.05), classification_step,
              regimes=[RegimeSpec("coral").build()], seed=0)
    assert all(h["coral_penalty"] >= 0 for h in run.history) and run.history[0]["coral_penalty"] > 0
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name, options, field", [
    ("irm", {"penalty_weight": -1.0}, "penalty_weight"), ("irm", {"penalty_weight": "big"}, "penalty_weight"),
    ("irm", {"penalty_weight": math.inf}, "penalty_weight"), ("irm", {"anneal_steps": -1}, "anneal_steps"),
    ("irm", {"anneal_steps": 2.5}, "anneal_steps"), ("irm", {"rescale": "yes"}, "rescale"),
    ("vrex", {"penalty_weight": math.nan}, "penalty_weight"), ("vrex", {"anneal_steps": True}, "anneal_steps"),
    ("coral", {"mmd_gamma": -0.1}, "mmd_gamma"), ("groupdro", {"eta": -1}, "eta"),
    ("groupdro", {"eta": None}, "eta"), ("erm", {"penalty_weight": 1.0}, "penalty_weight"),
    ("irm", {"irm_lambda": 1.0}, "irm_lambda"), ("coral", {"gamma": 1.0}, "gamma"),
])
def test_bad_options_name_the_field(name, options, field):
    with pytest.raises(ConfigError) as info:
        RegimeSpec(name, options).check_options()
    assert info.value.field == field


@pytest.mark.parametrize("name", ["irm", "vrex", "coral", "groupdro"])
def test_a_batch_without_environments_is_a_clear_error(name):
    problem = classification_problem()  # (x, y) batches
    with pytest.raises(ConfigError, match=rf"regime '{name}' needs batches \(x, y, env\).*environments task"):
        fit(problem.make_model(), problem.make_batches(), Recipe(steps=1, lr=0.01), classification_step,
            regimes=[RegimeSpec(name).build()], seed=0)


@pytest.mark.parametrize("name", ["groupdro", "irm"])
def test_a_checkpointed_run_continues_exactly(tmp_path, name):
    """Half a run, checkpointed, then the rest: the weights of one uninterrupted run (groupdro's q and the
    environment stream's position are part of the checkpoint)."""
    problem = environments_problem()
    recipe = Recipe(steps=8, lr=0.05, schedule="cosine", horizon=8)
    options = {"groupdro": {"eta": 0.5}, "irm": {"anneal_steps": 3, "penalty_weight": 50.0}}[name]

    def run(steps: int, store: ArtifactStore | None) -> tuple[nn.Module, object]:
        with seeded(3):
            model = problem.make_model()
        regime = RegimeSpec(name, options).build()
        fit(model, problem.make_batches(), recipe.with_steps(steps), classification_step, regimes=[regime], seed=3,
            checkpoint=Checkpoint(store, "run.pt", every_s=0) if store is not None else None)
        return model, regime

    whole, whole_regime = run(8, None)
    store = ArtifactStore(str(tmp_path))
    run(5, store)
    resumed, resumed_regime = run(8, store)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    if name == "groupdro":
        assert torch.equal(whole_regime.q, resumed_regime.q)


# -- the environment stream ------------------------------------------------------------------------------
def test_environment_batches_give_every_environment_an_equal_share_and_resume_exactly():
    x = torch.arange(50).float()[:, None]
    y = torch.zeros(50, dtype=torch.long)
    env = torch.tensor([0] * 30 + [1] * 12 + [2] * 8)  # unequal environments
    stream = environment_batches(x, y, env, 10, torch.Generator().manual_seed(0))
    assert stream.share == 3 and stream.batches_per_epoch == 6
    seen = []
    for _ in range(8):  # environment 2 (8 examples) wraps into its second epoch at the third batch
        bx, _, benv = stream.next()
        assert benv.tolist() == [0] * 3 + [1] * 3 + [2] * 3
        assert torch.equal(env[bx[:, 0].long()], benv)
        seen.append(bx[:, 0].long())
    twos = torch.cat([s[6:] for s in seen])
    assert sorted(twos[:8].tolist()) == list(range(42, 50))  # one epoch of environment 2 covers it once
    state = stream.state_dict()
    after = [stream.next()[0] for _ in range(5)]
    again = environment_batches(x, y, env, 10, torch.Generator().manual_seed(99))
    again.load_state_dict(state)
    assert all(torch.equal(a, again.next()[0]) for a in after)


def test_environment_batches_with_the_global_rng_follow_torchs_seed():
    x, y, env = torch.arange(12).float(), torch.zeros(12, dtype=torch.long), torch.arange(12) % 2
    torch.manual_seed(0)
    first = [environment_batches(x, y, env, 4).next()[0] for _ in range(1)]
    torch.manual_seed(0)
    assert torch.equal(first[0], environment_batches(x, y, env, 4).next()[0])
    with pytest.raises(ValueError, match="same length"):
        EnvironmentBatches(x, y[:3], env, 4)


# -- the train estimator on environments tasks -----------------------------------------------------------
COLORED = """
name: colored
task: colored-digits
builder: mlp
objectives: {accuracy: max}
space:
  model:
    layers: [{width: 16, activation: relu}]
    dropout: 0.0
  train:
    lr: 0.01
    epochs: 1
"""


def _space(extra: str, regime: str = "regime: irm\n") -> automl.SearchSpace:
    """COLORED under ``regime`` with ``extra`` added to its parameter tree (the ``regime`` part)."""
    return automl.space_from_yaml(regime + COLORED + extra, source="s.yaml")


def test_environment_splits_are_the_holdout_of_the_train_and_val_environments():
    from automl.tasks.colored_digits import ColoredDigitsTask
    from estimators.train import environment_splits

    task = ColoredDigitsTask()
    data = task.load()
    fit_data, held = environment_splits(task)
    full_fit, full_held = data.holdout()
    assert set(fit_data.environments) == set(data.train) and held.test == ()  # a search never touches test
    for name in data.train:
        assert torch.equal(fit_data.environments[name].x, full_fit.environments[name].x)
        assert torch.equal(held.environments[name].y, full_held.environments[name].y)
    _, oracle = environment_splits(data, test=True)
    assert torch.equal(oracle.pooled("test")[0], full_held.pooled("test")[0])


def test_the_train_estimator_trains_on_balanced_environment_batches(monkeypatch):
    import estimators.train as train_module
    from estimators.train import TrainEstimator, environment_splits

    seen = {}
    real_fit = train_module.fit

    def spy(model, stream, recipe, loss, **kwargs):
        seen["stream"], seen["regimes"] = stream, kwargs["regimes"]
        return real_fit(model, stream, recipe, loss, **kwargs)

    monkeypatch.setattr(train_module, "fit", spy)
    space = _space("  regime: {anneal_steps: {type: int, low: 2, high: 2}}\n",
                   "regime: {name: irm, options: {penalty_weight: 1000.0}}\n")
    setup = prepare_evaluation(space)
    config = space.sample(np.random.default_rng(0))
    assert config["regime"] == {"anneal_steps": 2}
    metrics = TrainEstimator().evaluate(space.candidate(config), 1, EvalContext(space, 0, 0, task=setup.task,
                                                                              regimes=setup.regimes)).metrics
    stream = seen["stream"]
    assert isinstance(stream, EnvironmentBatches) and stream.share == 64 // 3
    _, _, env = stream.next()
    assert sorted(set(env.tolist())) == [0, 1, 2]
    (irm,) = seen["regimes"]
    assert (irm.penalty_weight, irm.anneal_steps) == (1000.0, 2)  # the space's option, the trial's searched one
    _, held = environment_splits(setup.task)
    assert metrics["epochs_trained"] == 1.0 and 0.0 <= metrics["accuracy"] <= 1.0
    assert len(held.pooled("train")[1]) == sum(int(len(setup.task.load().environments[n].y) * 0.2)
                                               for n in setup.task.info.train)


# -- searching a regime's own options --------------------------------------------------------------------
def test_the_regime_part_overrides_the_options_per_trial():
    assert searched_regime_options(["irm"], {"regime": {"penalty_weight": 3.0}}) == [{"penalty_weight": 3.0}]
    assert searched_regime_options(["irm", "coral"], {"regime": {"coral": {"mmd_gamma": 2.0}}}) == \
        [{}, {"mmd_gamma": 2.0}]
    assert searched_regime_options(["irm"], {"model": {}}) == [{}]
    space = _space("  regime: {penalty_weight: {type: float, low: 1.0, high: 10.0}}\n",
                   "regime: {name: irm, options: {anneal_steps: 7, penalty_weight: 2.0}}\n")
    setup = prepare_evaluation(space)
    ctx = EvalContext(space, 0, 0, task=setup.task, regimes=setup.regimes)
    (regime,) = ctx.build_regimes(space.candidate({**space.sample(np.random.default_rng(0)),
                                                   "regime": {"penalty_weight": 5.0}}))
    assert (regime.penalty_weight, regime.anneal_steps) == (5.0, 7)
    (plain,) = ctx.build_regimes()
    assert plain.penalty_weight == 2.0


def test_several_regimes_key_the_part_by_name():
    space = _space("  regime:\n    irm: {penalty_weight: {type: float, low: 1.0, high: 10.0}}\n"
                   "    coral: {mmd_gamma: {type: float, low: 0.1, high: 1.0}}\n", "regime: [irm, coral]\n")
    setup = prepare_evaluation(space)
    config = space.sample(np.random.default_rng(0))
    irm, coral = EvalContext(space, 0, 0, task=setup.task, regimes=setup.regimes).build_regimes(space.candidate(config))
    assert irm.penalty_weight == config["regime"]["irm"]["penalty_weight"]
    assert coral.mmd_gamma == config["regime"]["coral"]["mmd_gamma"]


@pytest.mark.parametrize("extra, regime, message", [
    ("  regime: {bogus: {type: float, low: 1.0, high: 2.0}}\n", "regime: irm\n",
     r"s.yaml:\d+: space.regime.bogus: regime 'irm' has no option 'bogus' \(its options: anneal_steps, "
     r"penalty_weight, rescale\)"),
    ("  regime: {penalty_weight: {type: float, low: -1.0, high: 2.0}}\n", "regime: irm\n",
     r"s.yaml:\d+: space.regime.penalty_weight: penalty_weight must be a finite number >= 0, got -1.0"),
    ("  regime: {anneal_steps: {type: categorical, choices: [1, 2.5]}}\n", "regime: vrex\n",
     r"space.regime.anneal_steps: anneal_steps must be an integer >= 0"),
    ("  regime: {penalty_weight: {type: float, low: 1.0, high: 2.0}}\n", "",
     r"space.regime: the 'regime' part searches regime options, but the space names no regime"),
    ("  regime:\n    vrex: {penalty_weight: {type: float, low: 1.0, high: 2.0}}\n", "regime: [irm, coral]\n",
     r"space.regime.vrex: with several regimes the 'regime' part is keyed by regime name; 'vrex' is none of "
     r"irm, coral"),
    ("  regime:\n    coral: {penalty_weight: 1.0}\n", "regime: [irm, coral]\n",
     r"space.regime.coral.penalty_weight: regime 'coral' has no option 'penalty_weight'"),
])
def test_a_bad_regime_part_is_an_error_at_study_creation(extra, regime, message):
    space = _space(extra, regime)
    with pytest.raises(ConfigError, match=message):
        automl.create_study(space, seed=0)


def test_a_command_line_regime_is_checked_against_the_part():
    space = _space("  regime: {penalty_weight: {type: float, low: 1.0, high: 2.0}}\n")
    with pytest.raises(ConfigError, match="space.regime.penalty_weight: regime 'coral' has no option"):
        prepare_evaluation(space, [("coral", {})])
    prepare_evaluation(space, [("vrex", {})])  # vrex takes penalty_weight too


# -- end to end ------------------------------------------------------------------------------------------
def _record_irm(monkeypatch) -> list[tuple[float, int]]:
    from estimators.regimes import ood

    seen: list[tuple[float, int]] = []
    real = ood.IRM.start

    def start(self, run):
        seen.append((self.penalty_weight, self.anneal_steps))
        return real(self, run)

    monkeypatch.setattr(ood.IRM, "start", start)
    return seen


@pytest.mark.slow
def test_automl_search_runs_the_registered_irm_space(tmp_path, monkeypatch):
    from automl.cli import main
    from automl.ledger import Ledger
    from automl.study import open_storage

    monkeypatch.chdir(tmp_path)
    seen = _record_irm(monkeypatch)
    storage = f"sqlite:///{tmp_path / 'irm.db'}"
    assert main(["search", "--space", "colored-digits-irm", "--trials", "2", "--storage", storage,
                 "--study-name", "irm"]) == 0
    trials = Ledger.load(open_storage(storage), "irm").trials()
    assert len(trials) == 2 and all(t.state is automl.TrialState.COMPLETE for t in trials)
    searched = [(t.config["regime"]["penalty_weight"], t.config["regime"]["anneal_steps"]) for t in trials]
    assert seen == searched and len(set(searched)) == 2  # each trial trained with its own drawn options


@pytest.mark.slow
def test_automl_search_with_a_command_line_regime_and_option(tmp_path, monkeypatch):
    from automl.cli import main
    from automl.ledger import Ledger
    from automl.study import open_storage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "colored.yaml").write_text(COLORED)
    seen = _record_irm(monkeypatch)
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["search", "--space", "colored.yaml", "--trials", "1", "--regime", "irm", "--regime-option",
                 "penalty_weight=100", "--storage", storage, "--study-name", "c"]) == 0
    (trial,) = Ledger.load(open_storage(storage), "c").trials()
    assert trial.state is automl.TrialState.COMPLETE and seen == [(100, 500)]


def test_an_adversarial_regime_keeps_the_environments_of_the_batch():
    x, y, env = torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long), torch.tensor([0, 1] * 3)
    with seeded(0):
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    attacked = RegimeSpec("pgd-at", {"epsilon": 0.1, "steps": 2}).build().prepare(model, (x, y, env), 0)
    assert len(attacked) == 3 and attacked[2] is env and not torch.equal(attacked[0], x)
