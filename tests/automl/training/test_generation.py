"""Class-conditional generation (Gaussian seeds, energy descent / SGLD) and its scores: the Inception Score,
pytorch-fid's Fréchet distance, the reference classifier, the grids and the local-Inception path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from automl.errors import ConfigError
from automl.tasks.digits import DigitsTask
from automl.training.classification import classification_step
from automl.training.energy import joint_energy
from automl.training.fit import fit
from automl.training.generation import (
    GenerationOptions,
    ReferenceClassifier,
    class_conditional_samples,
    fit_class_gaussians,
    frechet_distance,
    gaussian_frechet_distance,
    inception_score,
    inception_scores,
    load_inception,
    reference_accuracy,
    sample_scores,
    save_grids,
    train_reference_classifier,
)
from automl.training.recipe import Recipe
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads beside a busy process run many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return DigitsTask().load()


@pytest.fixture(scope="module")
def classifier(digits) -> nn.Module:
    """A small CNN trained (clean, a few epochs) on digits: the model that generates."""
    with seeded(0):
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(32, 10))
        fit(model, tensor_batches(digits.train_x, digits.train_y, 64), Recipe(steps=150, lr=3e-3), classification_step)
    return model.eval()


@pytest.fixture(scope="module")
def reference(digits) -> ReferenceClassifier:
    return train_reference_classifier(digits.train_x, digits.train_y, 10, seed=0, epochs=10)


SMALL = GenerationOptions(per_class=4, steps=10, step_size=0.05)


@pytest.mark.parametrize("field,value", [("per_class", 0), ("per_class", 1.5), ("steps", -1), ("step_size", 0),
                                         ("step_size", math.nan), ("noise", -0.1), ("seed", "x"), ("ridge", -1),
                                         ("batch_size", 0), ("high", -1.0)])
def test_bad_options_name_their_field(field, value):
    with pytest.raises(ConfigError) as info:
        GenerationOptions(**{field: value})
    assert info.value.field == field and "generation options" in str(info.value)


def test_class_gaussians_recover_the_mean_and_covariance_of_synthetic_data():
    rng = np.random.default_rng(0)
    truth_mean = np.array([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]])
    a = rng.normal(size=(3, 3))
    truth_cov = np.stack([a @ a.T + 0.1 * np.eye(3), np.diag([0.5, 2.0, 1.0])])
    x = np.concatenate([rng.multivariate_normal(truth_mean[k], truth_cov[k], size=20_000) for k in range(2)])
    y = np.repeat([0, 1], 20_000)
    means, covs = fit_class_gaussians(torch.from_numpy(x).reshape(-1, 1, 3), torch.from_numpy(y), 2, ridge=1e-3)
    assert means.shape == (2, 3) and covs.shape == (2, 3, 3) and means.dtype == torch.float64
    np.testing.assert_allclose(means.numpy(), truth_mean, atol=0.05)
    np.testing.assert_allclose(covs.numpy(), truth_cov + 1e-3 * np.eye(3), atol=0.08)
    for k in range(2):  # exactly the unbiased sample covariance plus the ridge on the diagonal
        np.testing.assert_allclose(covs[k].numpy(), np.cov(x[y == k], rowvar=False) + 1e-3 * np.eye(3), rtol=1e-9)
    _, single = fit_class_gaussians(torch.ones(2, 2), torch.tensor([0, 1]), 2)  # one example: the ridge alone
    np.testing.assert_allclose(single[0].numpy(), 1e-4 * np.eye(2))
    with pytest.raises(ConfigError, match="class 2 has no training examples"):
        fit_class_gaussians(torch.ones(2, 2), torch.tensor([0, 1]), 3)


def test_same_seed_same_samples_and_the_callers_rng_and_mode_are_kept(classifier, digits):
    classifier.train()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    x1, y1 = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10, SMALL)
    assert torch.equal(torch.get_rng_state(), before) and classifier.training
    classifier.eval()
    x2, y2 = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10, SMALL)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (40, 1, 8, 8) and y1.tolist() == [k for k in range(10) for _ in range(4)]
    other, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                         GenerationOptions(per_class=4, steps=10, step_size=0.05, seed=1))
    assert not torch.equal(x1, other)
    noisy, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                         GenerationOptions(per_class=4, steps=10, step_size=0.05, noise=0.01))
    assert not torch.equal(x1, noisy)
    batched, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                           GenerationOptions(per_class=4, steps=10, step_size=0.05, batch_size=7))
    torch.testing.assert_close(x1, batched)  # without noise, the batching does not change the samples


def test_samples_stay_in_the_input_range(classifier, digits):
    options = GenerationOptions(per_class=5, steps=8, step_size=1.0, noise=0.5, low=0.2, high=0.8)
    steps: list[tuple[int, int]] = []
    x, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10, options,
                                     on_step=lambda done, total: steps.append((done, total)))
    assert float(x.min()) >= np.float32(0.2) and float(x.max()) <= np.float32(0.8)  # the float32 bounds
    assert steps[-1] == (8, 8) and len(steps) == 8
    seeds, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                         GenerationOptions(per_class=5, steps=0))
    assert float(seeds.min()) >= 0.0 and float(seeds.max()) <= 1.0


def test_energy_descent_lowers_the_joint_energy(classifier, digits):
    seeds, y = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                         GenerationOptions(per_class=10, steps=0))
    x, _ = class_conditional_samples(classifier, digits.train_x, digits.train_y, 10,
                                     GenerationOptions(per_class=10, steps=20, step_size=0.05))
    with torch.no_grad():
        before, after = joint_energy(classifier(seeds), y), joint_energy(classifier(x), y)
    assert float(after.mean()) < float(before.mean()) - 1.0
    assert float((after < before).float().mean()) > 0.9


def test_frechet_distance_matches_pytorch_fid_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    assert abs(frechet_distance(a, a)) < 1e-6
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2 with unbiased variances
    u, v = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[1.0], [5.0], [3.0]])
    expected = (1.5 - 3.0) ** 2 + (math.sqrt(np.var(u, ddof=1)) - math.sqrt(np.var(v, ddof=1))) ** 2
    assert frechet_distance(torch.from_numpy(u), v) == pytest.approx(expected, rel=1e-9)
    # the exact low-rank computation agrees with pytorch-fid's sqrtm, with many samples and with few
    b, c = rng.normal(size=(300, 6)) * [1, 2, 3, 1, 1, 1], rng.normal(size=(200, 6)) + 0.5
    assert frechet_distance(b, c, method="svd") == pytest.approx(frechet_distance(b, c, method="sqrtm"), rel=1e-9)
    few, other = rng.normal(size=(4, 10)) + 1.0, rng.normal(size=(5, 10))
    assert frechet_distance(few, other) == pytest.approx(frechet_distance(few, other, method="sqrtm"), rel=1e-4)
    assert frechet_distance(few, other) == pytest.approx(frechet_distance(other, few), rel=1e-9)
    assert gaussian_frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)) == pytest.approx(2 + 2 * 1)
    with pytest.raises(ConfigError, match="same D"):
        frechet_distance(a, a[:, :3])


def test_inception_score_is_one_for_constant_and_k_for_confident_uniform_predictions():
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx((1.0, 0.0))
    confident = np.eye(10)[np.arange(100) % 10]
    assert inception_score(confident)[0] == pytest.approx(10.0)
    mean, std = inception_score(torch.from_numpy(confident), splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="splits"):
        inception_score(confident, splits=101)


def test_the_reference_classifier_scores_real_digits_as_real(reference, digits):
    assert isinstance(reference, ReferenceClassifier) and not reference.training
    assert reference.features(digits.val_x[:3]).shape == (3, 128)
    assert reference_accuracy(reference, digits.test_x, digits.test_y) > 0.9
    again = train_reference_classifier(digits.train_x, digits.train_y, 10, seed=0, epochs=1)
    assert again.state_dict()["head.weight"].shape == (10, 128)
    scores = sample_scores(reference, digits.val_x, digits.val_y, digits.test_x)
    assert scores["class_accuracy"] > 0.9 and scores["inception_score"] > 7
    assert scores["inception_score_splits"] == 10 and scores["inception_score_std"] > 0
    noise = sample_scores(reference, torch.rand(100, 1, 8, 8), digits.test_y[:100], digits.test_x)
    assert noise["frechet_distance"] > 5 * scores["frechet_distance"]
    assert len(scores["per_class_accuracy"]) == 10 and scores["samples"] == len(digits.val_x)


def test_flat_inputs_get_an_mlp_reference():
    x = torch.rand(40, 6)
    y = torch.arange(40) % 2
    model = train_reference_classifier(x, y, 2, epochs=1)
    assert model.features(x).shape == (40, 128) and model(x).shape == (40, 2)


def test_grids_one_png_per_class_and_one_overview(tmp_path):
    x = torch.rand(13, 1, 8, 8)
    y = torch.tensor([0] * 5 + [1] * 8)
    files = save_grids(x, y, tmp_path / "grids", 3)
    assert [f.name for f in files] == ["class_0.png", "class_1.png", "grid.png"]
    with Image.open(tmp_path / "grids" / "grid.png") as image:
        assert image.mode == "L" and image.size == (10 * 34 + 2, 3 * 34 + 2)
    with Image.open(tmp_path / "grids" / "class_1.png") as image:
        assert image.size == (3 * 34 + 2, 3 * 34 + 2)
    rgb = save_grids(torch.rand(2, 3, 32, 32), torch.tensor([0, 0]), tmp_path / "rgb", 1, columns=2)
    with Image.open(rgb[-1]) as image:
        assert image.mode == "RGB" and image.size == (2 * 34 + 2, 34 + 2)
    with pytest.raises(ConfigError, match="images"):
        save_grids(torch.rand(2, 5), torch.tensor([0, 0]), tmp_path, 1)


@pytest.fixture(scope="module")
def inception_checkpoint(tmp_path_factory):
    from torchvision.models import inception_v3

    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    with seeded(0):
        torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return path


def test_inception_scores_from_a_local_checkpoint(inception_checkpoint, digits):
    samples, real = digits.val_x[:6], digits.test_x[:6]
    scores = inception_scores(samples, real, inception_checkpoint, splits=2)
    assert 1.0 <= scores["inception_score"] <= 1000 and scores["inception_score_splits"] == 2
    assert math.isfinite(scores["frechet_inception_distance"]) and scores["frechet_inception_distance"] >= 0


def test_a_missing_or_foreign_inception_checkpoint_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.pth: no such file .*nothing is downloaded"):
        load_inception(tmp_path / "nope.pth")
    foreign = tmp_path / "linear.pth"
    torch.save(nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(ConfigError, match=r"linear.pth: not an inception_v3 state dict"):
        load_inception(foreign)
    (tmp_path / "torn.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"torn.pth: not a torch state dict"):
        load_inception(tmp_path / "torn.pth")
