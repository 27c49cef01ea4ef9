"""Population-based training: exploit/explore, lineage in the ledger, resume, the train estimator continuing a
donor's checkpoint under a changed learning rate, the refusal of estimators that cannot checkpoint, the report."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.artifacts import ArtifactStore
from automl.cli import main
from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.report import pbt_lineages, pbt_table, plot
from automl.space import load_space, space_from_yaml
from automl.space.nodes import Budget, Objective
from automl.strategies.base import CONTINUES, Observation, TrialState
from automl.strategies.pbt import PBT
from automl.study import create_study
from automl.testing.strategies import STRATEGY_CHECKS, check_resume_equivalence
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.streams import tensor_batches

SPACE = """
name: pbt-tiny
objectives: {loss: min}
space:
  model:
    width: {type: int, low: 1, high: 64}
  train:
    lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    optimizer: {type: categorical, choices: [sgd, adam]}
    momentum: {type: float, low: 0.5, high: 0.99, when: "optimizer == 'sgd'"}
    batch_size: {type: categorical, choices: [16, 32, 64]}
"""
BUDGET = Budget("epochs", 1, 9)
LOSS = (Objective("loss", "min"),)


def tiny() -> Any:
    return space_from_yaml(SPACE, source="<pbt-tiny>")


def objective(config: dict[str, Any], budget: float) -> float:
    """Better with an lr near 0.01 and a wide model, and with more budget."""
    return float(abs(np.log10(config["train"]["lr"]) + 2) + 1.0 / config["model"]["width"] + 1.0 / budget)


def tell(strategy: PBT, number: int, proposal: Any, loss: float | None) -> None:
    state = TrialState.COMPLETE if loss is not None else TrialState.FAILED
    strategy.tell(Observation(number=number, config=proposal.config, key=strategy.space.key(proposal.config),
                              state=state, losses=(loss,) if loss is not None else None, budget=proposal.budget,
                              info=proposal.info))


@pytest.mark.parametrize("check", STRATEGY_CHECKS)
def test_pbt_passes_the_strategy_conformance_suite(check: Any) -> None:
    check("pbt")


def test_resumed_from_the_ledger_mid_run_pbt_proposes_the_same(tmp_path: Path) -> None:
    check_resume_equivalence("pbt", str(tmp_path))


def test_the_bottom_quantile_copies_a_top_member_and_explores_within_bounds() -> None:
    for seed in range(6):
        pbt = PBT(tiny(), LOSS, seed, BUDGET, population=8)
        first = [pbt.ask(n) for n in range(8)]
        for n, proposal in enumerate(first):
            tell(pbt, n, proposal, loss=float(n))  # member n has loss n: top quantile 0 and 1, bottom 6 and 7
        nexts = {}
        for n in range(8, 16):
            proposal = pbt.ask(n)
            assert proposal is not None
            nexts[proposal.info["member"]] = proposal
        assert sorted(nexts) == list(range(8))
        for member, proposal in nexts.items():
            assert proposal.budget == 3 and proposal.info["generation"] == 1 and proposal.info[CONTINUES]
            if member < 6:  # not in the bottom quantile: continues its own checkpoint, unchanged
                assert "exploited" not in proposal.info
                assert proposal.info["parent"] == member and proposal.config == first[member].config
                continue
            donor = proposal.info["exploited"]
            assert donor in (0, 1) and proposal.info["parent"] == donor
            assert proposal.config["model"] == first[donor].config["model"]  # the donor's architecture
            assert tiny().problems(proposal.config) == []
            explored = proposal.info["explored"]
            assert explored and all(before == _at(first[donor].config, path) for path, (before, _) in explored.items())


def _at(config: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        config = config.get(part) if isinstance(config, dict) else None  # type: ignore[assignment]
    return config


def test_explore_perturbs_by_the_factors_or_resamples_inside_the_space() -> None:
    space = tiny()
    pbt = PBT(space, LOSS, 0, BUDGET, hyperparameters=["train.lr", "model.width"], resample_probability=0.0)
    config = {"model": {"width": 60}, "train": {"lr": 0.09, "optimizer": "adam", "batch_size": 32}}
    seen_lr, seen_width = set(), set()
    for i in range(64):
        child = pbt._explore(config, np.random.default_rng(i))
        assert space.problems(child) == []
        seen_lr.add(round(child["train"]["lr"], 6))
        seen_width.add(child["model"]["width"])
        assert child["train"]["optimizer"] == "adam" and child["train"]["batch_size"] == 32  # not listed: kept
    assert seen_lr == {0.072, 0.1}  # 0.09 * 0.8, and 0.09 * 1.2 clipped to the bound 0.1
    assert seen_width == {48, 64}  # 60 * 0.8, and 60 * 1.2 clipped to 64


def test_default_hyperparameters_are_the_train_leaves_and_named_ones_must_exist() -> None:
    pbt = PBT(tiny(), LOSS, 0, BUDGET)
    assert [path for path, _ in pbt.hyperparameters] == ["train.lr", "train.optimizer", "train.momentum"]
    assert pbt.interval == 2.0  # a quarter of [1, 9]
    with pytest.raises(ConfigError, match="'train.nope' is not a numeric or categorical parameter"):
        PBT(tiny(), LOSS, 0, BUDGET, hyperparameters=["train.nope"])
    with pytest.raises(ConfigError, match="needs a budget range"):
        PBT(tiny(), LOSS, 0, None)
    with pytest.raises(ConfigError, match="quantile must be in"):
        PBT(tiny(), LOSS, 0, BUDGET, quantile=0.7)


def test_a_failed_member_copies_a_healthy_one_and_the_search_ends_at_the_maximum_budget() -> None:
    study = create_study(tiny(), strategy="pbt", seed=4, strategy_options={"population": 4}, budget=BUDGET)

    def flaky(config: dict[str, Any], budget: float, number: int, info: dict[str, Any]) -> float:
        if info["member"] == 2 and info["generation"] == 0:
            raise RuntimeError("diverged")
        return objective(config, budget)

    study.optimize(flaky)  # PBT ends the search itself
    trials = study.trials
    assert trials[2].state is TrialState.FAILED
    recovered = next(t for t in trials if t.info["member"] == 2 and t.info["generation"] == 1)
    assert "exploited" in recovered.info and recovered.budget == 3  # copied a member that has a checkpoint
    members = {t.info["member"] for t in trials}
    assert members == {0, 1, 2, 3}
    for member in members:
        last = max((t for t in trials if t.info["member"] == member), key=lambda t: t.info["generation"])
        assert last.budget == 9 and last.state is TrialState.COMPLETE
    by_number = {t.number: t for t in trials}
    for t in trials:
        if t.info["generation"] > 0:
            parent = by_number[t.info["parent"]]
            assert parent.state is TrialState.COMPLETE and (parent.budget or 0) + 2 == t.budget  # one step on
            if "exploited" not in t.info:
                assert parent.info["member"] == t.info["member"] and parent.config == t.config
            else:
                assert parent.info["member"] == t.info["exploited"]


def test_the_report_lists_lineage_and_draws_the_schedules(tmp_path: Path) -> None:
    study = create_study(tiny(), strategy="pbt", seed=1, strategy_options={"population": 4}, budget=BUDGET)
    study.optimize(objective)
    lineages = pbt_lineages(study.trials)
    assert sorted(lineages) == [0, 1, 2, 3]
    for chain in lineages.values():
        assert [t.info["generation"] for t in chain] == list(range(len(chain)))
        assert [t.budget for t in chain] == [1, 3, 5, 7, 9]
    assert any("exploited" in t.info for chain in lineages.values() for t in chain)
    table = pbt_table(study.trials, study.objectives)
    assert table is not None and table.row_count == 4
    written = plot(study.trials, study.objectives, tmp_path)
    assert tmp_path / "pbt.png" in written and (tmp_path / "pbt.png").stat().st_size > 10_000


class _Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer(x)
        return out


def _mse(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
    return StepOutput({"mse": ((model(batch[0]).squeeze(1) - batch[1]) ** 2).mean()})


def test_fit_adopts_a_checkpoint_of_another_recipe_with_the_new_lr(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)), torch.randn(16)
    donor = _Linear()
    fit(donor, tensor_batches(x, y, 16), Recipe(steps=3, lr=0.05, optimizer="sgd"), _mse, seed=0,
        checkpoint=Checkpoint(store, "donor.pt"))
    with pytest.raises(ConfigError, match="another recipe"):
        fit(_Linear(), tensor_batches(x, y, 16), Recipe(steps=4, lr=0.2, optimizer="sgd"), _mse, seed=1,
            checkpoint=Checkpoint(store, "plain.pt", start="donor.pt"))
    copied = _Linear()
    run = fit(copied, tensor_batches(x, y, 16), Recipe(steps=3, lr=0.2, optimizer="sgd"), _mse, seed=1,
              checkpoint=Checkpoint(store, "copy.pt", start="donor.pt", adopt=True))
    assert run.resumed_from == 3 and run.trained == 0
    for a, b in zip(copied.parameters(), donor.parameters()):
        assert torch.equal(a, b)  # the donor's weights, not a fresh initialisation
    expected = _Linear()
    expected.load_state_dict(donor.state_dict())
    loss = _mse(expected, (x, y)).terms["mse"]
    grads = torch.autograd.grad(loss, list(expected.parameters()))
    stepped = _Linear()
    fit(stepped, tensor_batches(x, y, 16), Recipe(steps=4, lr=0.2, optimizer="sgd"), _mse, seed=1,
        checkpoint=Checkpoint(store, "stepped.pt", start="donor.pt", adopt=True))
    for p, p0, g in zip(stepped.parameters(), expected.parameters(), grads):
        assert torch.allclose(p, p0 - 0.2 * g, atol=1e-6)  # one step at the new lr from the donor's weights
    state = torch.load(io.BytesIO(store.read_bytes("donor.pt")), weights_only=False)
    assert state["step"] == 3 and state["recipe"]["lr"] == 0.05  # the donor's checkpoint is left as it was


def test_the_train_estimator_continues_a_donor_checkpoint_with_a_changed_lr(tmp_path: Path) -> None:
    from estimators.train import TrainEstimator

    space = load_space("digits-cnn")
    store = ArtifactStore(str(tmp_path))
    config = {"model": {"blocks": [{"channels": 16, "kernel": 3, "batchnorm": True, "pool": True}],
                        "activation": "relu", "dropout": 0.0},
              "train": {"lr": 0.01, "optimizer": "adam", "batch_size": 64}}
    changed = {**config, "train": {**config["train"], "lr": 0.012}}

    def run(number: int, cfg: dict[str, Any], budget: float, parent: int | None) -> dict[str, float]:
        info = {CONTINUES: True, "member": number, "generation": 0 if parent is None else 1}
        if parent is not None:
            info["parent"] = parent
        ctx = EvalContext(space=space, seed=0, trial_number=number, checkpoints=store, info=info)
        return dict(TrainEstimator().evaluate(space.candidate(cfg), budget, ctx).metrics)

    donor = run(0, config, 1, None)
    copied = run(1, changed, 1, parent=0)  # the budget it starts at: the donor's weights, untrained
    assert copied["resumed_from_epoch"] == 1 and copied["epochs_trained"] == 0
    assert copied["accuracy"] == donor["accuracy"]
    names = [EvalContext(space=space, seed=0, trial_number=n).trial_checkpoint(n) for n in (0, 1)]
    states = [torch.load(io.BytesIO(store.read_bytes(name)), weights_only=False) for name in names]
    for key, value in states[0]["model"].items():
        assert torch.equal(states[1]["model"][key], value)
    assert states[1]["recipe"]["lr"] == 0.012 and states[0]["recipe"]["lr"] == 0.01  # its own file, its own lr
    on = run(2, changed, 2, parent=0)
    assert on["resumed_from_epoch"] == 1 and on["epochs_trained"] == 1 and on["loss"] < donor["loss"]


def test_pbt_refuses_an_estimator_that_cannot_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="pbt continues trials from checkpoints; estimator 'fewshot' cannot "
                                          "checkpoint"):
        create_study("fewshot-digits", strategy="pbt")
    assert main(["search", "--space", "fewshot-digits", "--strategy", "pbt", "--storage", "sqlite://",
                 "--output", str(tmp_path)]) == 2
    assert "estimator 'fewshot' cannot checkpoint" in capsys.readouterr().err
