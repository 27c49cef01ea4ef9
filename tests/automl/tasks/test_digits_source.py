"""digits-source's harder settings (what the NASOA zoo pre-trains on): resized, per-image random rotation,
shift and noise on every split, augmented copies of the training split, all seeded."""
from __future__ import annotations

import pytest
import torch

from automl.errors import ConfigError
from automl.tasks.digits_transfer import DigitsSourceTask

HARD = {"size": 12, "rotation": 30.0, "shift": 0.1, "noise": 0.2}


def test_distorted_splits_keep_the_plain_splits_labels_and_sizes_and_copies_multiply_training():
    plain = DigitsSourceTask().load()
    data = DigitsSourceTask(**HARD, copies=3).load()
    assert DigitsSourceTask(**HARD).info.input_shape == (1, 12, 12)
    assert data.train_x.shape == (3 * 540, 1, 12, 12) and data.val_x.shape == (181, 1, 12, 12)
    assert data.test_x is not None and data.test_x.shape == (180, 1, 12, 12)
    assert torch.equal(data.train_y, plain.train_y.repeat(3))
    assert torch.equal(data.val_y, plain.val_y) and torch.equal(data.test_y, plain.test_y)
    first, second = data.train_x[:540], data.train_x[540:1080]  # two copies of the same images, differently distorted
    assert not torch.allclose(first, second)
    one = DigitsSourceTask(**HARD, copies=1).load()  # validation and test do not depend on the copies
    assert torch.equal(one.val_x, data.val_x) and torch.equal(one.test_x, data.test_x)
    assert torch.equal(one.train_x, first)


def test_each_image_gets_its_own_distortion_and_the_seed_fixes_them():
    rotated = DigitsSourceTask(size=8, rotation=45.0).load()
    plain = DigitsSourceTask().load()
    diffs = (rotated.val_x - plain.val_x).flatten(1).abs().sum(1)
    assert (diffs > 0).float().mean() > 0.95 and diffs.std() > 0.1 * diffs.mean()  # per-image angles, not one
    again, other = DigitsSourceTask(**HARD, seed=0).load(), DigitsSourceTask(**HARD, seed=1).load()
    assert torch.equal(again.val_x, DigitsSourceTask(**HARD).load().val_x)
    assert not torch.equal(other.val_x, again.val_x)
    assert DigitsSourceTask(**HARD).fingerprint() != DigitsSourceTask().fingerprint()


@pytest.mark.parametrize(("field", "value"), [("size", 3), ("size", 12.5), ("rotation", -1.0), ("shift", 0.6),
                                              ("noise", float("nan")), ("copies", 0), ("copies", True)])
def test_bad_distortion_options_fail_naming_the_option(field, value):
    with pytest.raises(ConfigError) as caught:
        DigitsSourceTask(**{field: value})
    assert caught.value.field == field and field in str(caught.value)
