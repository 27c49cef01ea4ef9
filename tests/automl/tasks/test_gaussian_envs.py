"""gaussian-envs: ERM leans on the spurious coordinate and fails where it flips; invariant features do not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from automl.components import construct
from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.gaussian_envs import INVARIANT_MEAN, GaussianEnvsTask
from automl.testing.tasks import TASK_CHECKS


def conformance_cases() -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """name -> (quick options, options that change the data) for the task conformance suite."""
    return {"gaussian-envs": ({"n_per_env": 50}, {"seed": 1})}


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
def test_passes_the_task_conformance_suite(check):
    options, changed = conformance_cases()["gaussian-envs"]
    check("gaussian-envs", options, changed)


def test_registered_with_environments_named_by_their_strength():
    task = construct(tasks.get("gaussian-envs"), {}, kind="task", name="gaussian-envs")
    info = task.info
    assert info.environments == ("+2", "+1", "-2") and info.train == ("+2", "+1") and info.test == ("-2",)
    assert info.input_shape == (8,) and info.num_classes == 2 and task.spurious_index == 7
    data = task.load()
    for name in info.environments:
        env = data.environments[name]
        assert env.x.shape == (1000, 8) and env.x.dtype == torch.float32 and env.y.dtype == torch.int64


def test_class_means_invariant_everywhere_but_the_spurious_coordinate():
    task = GaussianEnvsTask(n_per_env=4000)
    data = task.load()
    for name, strength in zip(task.info.environments, task.spurious):
        env = data.environments[name]
        gap = (env.x[env.y == 1].mean(0) - env.x[env.y == 0].mean(0)).numpy() / 2
        assert np.allclose(gap[:-1], INVARIANT_MEAN, atol=0.06) and gap[-1] == pytest.approx(strength, abs=0.06)
        assert float(env.x[:, 0].std()) == pytest.approx(np.sqrt(1 + INVARIANT_MEAN**2), abs=0.05)


def test_erm_uses_the_spurious_coordinate_and_fails_in_test_while_an_invariant_model_holds():
    task = GaussianEnvsTask()
    data = task.load()
    x, y, _ = data.pooled("train")
    tx, ty, _ = data.pooled("test")
    erm = LogisticRegression().fit(x.numpy(), y.numpy())
    weights = np.abs(erm.coef_[0])
    assert weights[task.spurious_index] > 1.5 * weights[:-1].max()
    erm_train, erm_test = erm.score(x.numpy(), y.numpy()), erm.score(tx.numpy(), ty.numpy())
    assert erm_train > 0.95 and erm_test < 0.5
    invariant = LogisticRegression().fit(x.numpy()[:, :-1], y.numpy())
    inv_train, inv_test = invariant.score(x.numpy()[:, :-1], y.numpy()), invariant.score(tx.numpy()[:, :-1], ty.numpy())
    assert abs(inv_train - inv_test) < 0.03 and inv_test > erm_test + 0.4


def test_the_strength_controls_the_spurious_correlation():
    data = GaussianEnvsTask(spurious=[0.0, 3.0], n_per_env=2000).load()
    corr = {n: float(np.corrcoef(e.x[:, -1].numpy(), e.y.numpy())[0, 1]) for n, e in data.environments.items()}
    assert abs(corr["+0"]) < 0.05 and corr["+3"] > 0.9


@pytest.mark.parametrize("options,field", [
    ({"dim": 1}, "dim"),
    ({"n_per_env": 0}, "n_per_env"),
    ({"spurious": [1.0]}, "spurious"),
    ({"spurious": [1.0, 1]}, "spurious"),
    ({"spurious": [1.0, float("nan")]}, "spurious"),
    ({"noise": 0}, "noise"),
    ({"seed": -1}, "seed"),
    ({"train": ["+3"]}, "train"),
])
def test_bad_options_are_config_errors_naming_the_field(options, field):
    with pytest.raises(ConfigError) as exc:
        GaussianEnvsTask(**options)
    assert exc.value.field == field
