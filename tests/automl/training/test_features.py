"""Penultimate features: the input of a classifier's last linear layer, for CORAL and the expansion criterion."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.errors import ConfigError
from automl.training.features import capture_features, final_linear, penultimate_features


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_the_features_are_what_the_head_reads():
    model, x = _model(), torch.rand(10, 1, 4, 4)
    z = penultimate_features(model, x, batch_size=3)  # batches are concatenated in order
    assert z.shape == (10, 8)
    torch.testing.assert_close(model[3](z), model(x))
    assert final_linear(model) is model[3]


def test_captured_features_keep_the_graph_and_the_hook_is_removed():
    model, x = _model(), torch.rand(4, 1, 4, 4)
    with capture_features(model) as captured:
        model(x).sum().backward()
    assert len(captured) == 1 and captured[0].requires_grad
    model(x)
    assert len(captured) == 1  # nothing captured outside the block


def test_a_model_without_a_linear_head_is_refused():
    with pytest.raises(ConfigError, match="has no nn.Linear head"):
        penultimate_features(nn.Sequential(nn.Flatten()), torch.rand(2, 4))
