"""OoD-Bench's recipe on multi-environment tasks (automl.ood_shift) and ``automl shift`` end to end: the
reference's seeds, split and schedule, the expected shift directions on gaussian-envs and colored-digits,
the i.i.d. control, and every bad input as exit 2 with one line."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from automl.cli import main
from automl.errors import ConfigError
from automl.ood_shift import (
    ShiftRecipe,
    SwaRecipe,
    measure,
    prepare,
    sides,
    split_by_class,
    trial_seeds,
)
from automl.tasks.environments import EnvironmentData, EnvironmentsData, EnvironmentsInfo, EnvironmentsTask
from tests.automl.tasks.test_domainbed_folder import write_domainbed

SMALL_GAUSSIAN = ["--task", "gaussian-envs", "--task-option", "n_per_env=300", "--samples", "2000"]


def test_trial_seeds_are_the_references_draws() -> None:
    # numpy's RandomState(0).randint(2**31), drawn by hand: 209652396, 398764591, 924231285, ...
    assert trial_seeds(0, 3) == [209652396, 398764591, 924231285]
    assert trial_seeds(0, 5)[:3] == trial_seeds(0, 3)
    assert len(set(trial_seeds(7, 50))) == 50


def test_split_by_class_holds_out_int_count_times_fraction_of_each_class() -> None:
    y = np.array([1] * 11 + [0] * 7 + [2] * 3)
    held, rest = split_by_class(y, 0.2, seed=3)
    assert sorted(np.r_[held, rest].tolist()) == list(range(len(y)))
    assert np.bincount(y[held], minlength=3).tolist() == [1, 2, 0]  # int(7 * .2), int(11 * .2), int(3 * .2)
    assert y[held].tolist() == [1, 1, 0]  # classes in order of first appearance, as the reference's dict


def test_the_schedule_is_cosine_annealing_to_the_swa_lr_then_flat() -> None:
    anneal, steps = 7, 12
    recipe = SwaRecipe(steps=steps, lr=0.05, optimizer="sgd", momentum=0.9, schedule="cosine", floor=0.025,
                       anneal=anneal)
    ours = recipe.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    schedule = recipe.make_schedule(ours)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05, momentum=0.9)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=anneal, eta_min=0.025)
    for step in range(steps):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12)
        ours.step()
        schedule.step()
        theirs.step()
        if step < anneal - 1:  # train.py steps the scheduler only before the averaging starts
            reference.step()
        elif step == anneal - 1:
            reference.step()
            assert theirs.param_groups[0]["lr"] == pytest.approx(0.025)


def test_prepare_balances_labels_and_holds_out_per_class() -> None:
    g = torch.Generator().manual_seed(0)
    p = (torch.randn(300, 3, generator=g), torch.tensor([0] * 200 + [1] * 100))
    q = (torch.randn(150, 3, generator=g), torch.tensor([0] * 50 + [1] * 100))
    fraction, parts = prepare(p, q, ShiftRecipe(dim_z=2), seed=5)
    assert fraction == 0.2
    for side in "pq":
        assert np.bincount(parts[f"held_{side}"][1].numpy()).tolist() == [10, 20]
        assert np.bincount(parts[f"fit_{side}"][1].numpy()).tolist() == [40, 80]
    _, iid = prepare(p, q, ShiftRecipe(dim_z=2, force_iid=True), seed=5)
    assert len(iid["held_p"][1]) == len(iid["held_q"][1]) == 30


def test_the_automatic_holdout_gives_every_class_a_kde() -> None:
    recipe = ShiftRecipe()
    assert recipe.holdout_for([223, 222]) == 0.2  # colored-digits: OoD-Bench's fraction
    assert recipe.holdout_for([29, 30, 30]) == 0.35  # rotated-digits: int(29 * 0.35) = 10 > 8
    assert recipe.holdout_for([3, 100]) == 0.5  # never more than half
    assert ShiftRecipe(holdout_fraction=0.3).holdout_for([5]) == 0.3


@pytest.mark.parametrize(("field", "value", "flag"), [("lr", 0.0, "--lr"), ("holdout_fraction", 1.0, "--holdout"),
                                                      ("dim_z", 0, "--dim-z"), ("swa_start", 10, "--swa-start"),
                                                      ("eps_cor", -1.0, "--eps-cor"), ("epochs", 2.5, "--epochs")])
def test_bad_recipe_constants_name_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        ShiftRecipe(**{field: value})  # type: ignore[arg-type]
    assert err.value.field == flag


class _Envs(EnvironmentsTask):
    def __init__(self, x: torch.Tensor, train: tuple[str, ...] = ("a",), test: tuple[str, ...] = ("b",),
                 offset: float = 1.0) -> None:
        super().__init__()
        self.x, self.train, self.test, self.offset = x, train, test, offset

    @property
    def info(self) -> EnvironmentsInfo:
        return EnvironmentsInfo(input_shape=(3,), num_classes=2, environments=("a", "b"), train=self.train,
                                test=self.test)

    def load(self) -> EnvironmentsData:
        y = torch.arange(len(self.x)) % 2
        env = EnvironmentData(self.x, y)
        moved = EnvironmentData(self.x + self.offset, y)
        return EnvironmentsData(environments={"a": env, "b": moved}, train=self.train, val=(), test=self.test)


def test_non_finite_inputs_and_missing_roles_name_the_environment() -> None:
    x = torch.randn(40, 3)
    x[7, 1] = math.nan
    with pytest.raises(ConfigError, match="environment 'a' has 1 example.* NaN or inf inputs, the first at index 7"):
        measure(_Envs(x), ShiftRecipe(), seeds=1, name="toy")
    with pytest.raises(ConfigError, match="no test environment") as err:
        sides(_Envs(torch.randn(40, 3), test=()).load(), "toy")
    assert err.value.field == "test"


def test_one_training_environment_is_measured() -> None:
    # OoD-Bench's envs_p takes one environment or more: P of one environment is a well-defined shift
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    results = measure(_Envs(x, offset=10.0), ShiftRecipe(samples=500, dim_z=2, hidden=16), seeds=1, name="toy")
    assert results[0].diversity > 0.5  # Q is P moved by 10 in every coordinate: disjoint supports


def _run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, float], str]:
    plot = tmp_path / "shift.png"
    assert main(["shift", *args, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert plot.stat().st_size > 1000
    values = {}
    for line in out.splitlines():
        for key in ("diversity shift", "correlation shift"):
            if key in line:
                values[key.split()[0]] = float(line.split("│")[2].split("±")[0])
    return values, out


@pytest.mark.slow
def test_gaussian_envs_shift_is_mostly_correlation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values, out = _run([*SMALL_GAUSSIAN, "--seeds", "2"], tmp_path, capsys)
    assert "P = +2, +1 · Q = -2 · 2 seed(s)" in out
    assert values["correlation"] > 0.1 > values["diversity"]
    assert values["correlation"] > 5 * values["diversity"]


@pytest.mark.slow
def test_the_iid_control_is_near_zero_and_legacy_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # at the default 1000 examples per environment (200 held-out points a side); at 300 the KDE noise
    # floor of the diversity is ~0.02
    values, out = _run(["--task", "gaussian-envs", "--samples", "2000", "--seeds", "1", "--iid"], tmp_path, capsys)
    assert "i.i.d. control" in out
    assert values["diversity"] < 0.02 and values["correlation"] < 0.01
    legacy, out = _run([*SMALL_GAUSSIAN, "--seeds", "1", "--legacy"], tmp_path, capsys)
    assert "legacy formulas" in out and legacy["correlation"] > 0.1


@pytest.mark.slow
def test_colored_digits_is_correlation_shift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values, _ = _run(["--task", "colored-digits", "--seeds", "1", "--samples", "3000"], tmp_path, capsys)
    assert values["diversity"] < 0.02
    assert values["correlation"] > 0.15


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = write_domainbed(tmp_path / "empty")
    for file in (empty / "cartoon" / "horse").iterdir():
        file.unlink()
    unreadable = write_domainbed(tmp_path / "unreadable")
    (unreadable / "photo" / "dog" / "0.jpg").write_bytes(b"not a jpeg")
    cases = [
        (["--task", "digits"], "--task: digits is a supervised task"),
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "colored-digits", "--task-option", "train=[+90%,+80%,+70%,-90%]"], "no test environment"),
        (["--task", "colored-digits", "--task-option", "train=[+90%,+80%]", "--task-option", "test=[+80%]"],
         "environment '+80%' is both a train and a test environment"),
        (["--task", "colored-digits", "--task-option", "seed=1", "--task-option", "seed=2"], "given twice"),
        (["--task", "domainbed-folder", "--task-option", f"root={empty}"], f"{empty / 'cartoon' / 'horse'}"),
        (["--task", "domainbed-folder", "--task-option", f"root={unreadable}"],
         f"{unreadable / 'photo' / 'dog' / '0.jpg'}"),
        (["--task", "rotated-digits", "--holdout", "0.05"], "--holdout: held-out fraction 0.05 leaves"),
        (["--task", "gaussian-envs", "--lr", "-1"], "--lr: expected a number > 0"),
        (["--task", "gaussian-envs", "--task-option", "n_per_env=100", "--lr", "1e6", "--swa-lr", "1e6",
          "--seeds", "1"], "--lr: the environment classifier diverged"),
        (["--task", "gaussian-envs", "--swa-start", "10"], "--swa-start: the averaging starts after epoch 10"),
        (["--task", "gaussian-envs", "--plot", str(tmp_path / "x.jpg")], "--plot: expected a .png path"),
    ]
    for args, message in cases:
        assert main(["shift", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    assert not (tmp_path / "x.jpg").exists()


def test_the_shift_command_is_a_registered_plugin() -> None:
    from automl.registry import commands
    from automl.shift_cli import add_command

    assert commands.get("shift") is add_command
