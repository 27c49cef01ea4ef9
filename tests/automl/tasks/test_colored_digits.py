"""colored-digits: Colored MNIST on sklearn digits: the colour's agreement with the label per environment."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automl.components import construct
from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.colored_digits import ColoredDigitsTask, environment_name
from automl.tasks.digits_transfer import digits_images
from automl.testing.tasks import TASK_CHECKS


def conformance_cases() -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """name -> (quick options, options that change the data) for the task conformance suite."""
    return {"colored-digits": ({"correlations": [0.9, 0.1]}, {"seed": 1})}


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
def test_passes_the_task_conformance_suite(check):
    options, changed = conformance_cases()["colored-digits"]
    check("colored-digits", options, changed)


def _colour(x: torch.Tensor) -> torch.Tensor:
    """Which channel holds the digit (0 red, 1 green)."""
    return (x[:, 1].sum((1, 2)) > 0).long()


def test_registered_with_domainbeds_environment_names_and_roles():
    task = construct(tasks.get("colored-digits"), {}, kind="task", name="colored-digits")
    info = task.info
    assert info.environments == ("+90%", "+80%", "+70%", "-90%") and info.test == ("-90%",)
    assert info.train == ("+90%", "+80%", "+70%") and info.val == ()
    assert info.input_shape == (2, 8, 8) and info.num_classes == 2 and task.family == "environments"
    assert environment_name(0.75) == "+75%" and environment_name(0.3) == "-70%"


@pytest.mark.parametrize("seed", [0, 1])
def test_colour_agrees_with_the_label_as_configured_and_is_reversed_in_test(seed):
    task = ColoredDigitsTask(seed=seed)
    data = task.load()
    measured = {}
    for name, agreement in zip(task.info.environments, task.correlations):
        env = data.environments[name]
        measured[name] = float((_colour(env.x) == env.y).float().mean())
        assert measured[name] == pytest.approx(agreement, abs=0.05), (name, measured)
        assert env.x.dtype == torch.float32 and env.y.dtype == torch.int64
        assert env.x.shape[1:] == (2, 8, 8) and float(env.x.min()) >= 0 and float(env.x.max()) <= 1
        assert torch.all(env.x.amin(dim=(2, 3)).amax(dim=1) == 0)  # one channel is always blank
        assert 0.4 < float(env.y.float().mean()) < 0.6
    assert measured["-90%"] < 0.5 < min(measured[n] for n in task.info.train)


def test_labels_are_digit_below_five_with_a_quarter_flipped_and_every_image_used_once():
    images, digits = digits_images()
    digit_of = {images[i, 0].tobytes(): int(digits[i]) for i in range(len(digits))}
    data = ColoredDigitsTask().load()
    seen = 0
    for env in data.environments.values():
        shape = env.x.sum(dim=1).numpy()  # the grey digit back
        true = np.array([digit_of[s.tobytes()] for s in shape]) < 5
        assert float(np.mean(true == env.y.numpy().astype(bool))) == pytest.approx(0.75, abs=0.05)
        seen += len(env.y)
    assert seen == len(digits)
    clean = ColoredDigitsTask(label_noise=0.0).load()
    for env in clean.environments.values():
        true = np.array([digit_of[s.tobytes()] for s in env.x.sum(dim=1).numpy()]) < 5
        assert np.array_equal(true, env.y.numpy().astype(bool))


def test_roles_and_the_held_out_validation_split_per_environment():
    data = ColoredDigitsTask(val=["+70%"]).load()
    assert data.train == ("+90%", "+80%") and data.val == ("+70%",) and data.test == ("-90%",)
    fit, held = data.holdout(0.2, seed=0)
    for name, env in data.environments.items():
        assert len(held.environments[name].y) == int(len(env.y) * 0.2)
        assert len(fit.environments[name].y) + len(held.environments[name].y) == len(env.y)
    x, y, index = held.pooled("train")
    assert index.unique().tolist() == [0, 1] and len(x) == len(y)
    again = data.holdout(0.2, seed=0)[1]
    assert torch.equal(again.environments["+90%"].x, held.environments["+90%"].x)
    assert not torch.equal(data.holdout(0.2, seed=1)[1].environments["+90%"].x, held.environments["+90%"].x)


@pytest.mark.parametrize("options,field", [
    ({"correlations": [0.9]}, "correlations"),
    ({"correlations": [0.9, 1.5]}, "correlations"),
    ({"correlations": [0.9, 0.9]}, "correlations"),
    ({"correlations": "0.9"}, "correlations"),
    ({"label_noise": 0.7}, "label_noise"),
    ({"seed": "x"}, "seed"),
    ({"train": ["+90%"], "test": ["+90%"]}, "test"),
    ({"test": ["+95%"]}, "test"),
])
def test_bad_options_are_config_errors_naming_the_field(options, field):
    with pytest.raises(ConfigError) as exc:
        ColoredDigitsTask(**options)
    assert exc.value.field == field
