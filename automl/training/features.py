"""A classifier's penultimate features: the input of its last ``nn.Linear`` (the head), captured by a
forward hook so that every builder whose head is a final linear layer (mlp, cnn, resnet) needs no change.

CORAL aligns these features across environments and the expansion-function criterion measures their
variation (:mod:`automl.ood`); both read them through :func:`capture_features`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from automl.errors import ConfigError


def final_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in ``model``'s module order (its classification head)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear head, so it has no penultimate features")
    return heads[-1]


@contextlib.contextmanager
def capture_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``model`` appends its penultimate features (flattened to
    (batch, d), still in the autograd graph) to the yielded list."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].flatten(1))

    handle = final_linear(model).register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model``'s penultimate features of ``x`` (in eval mode, in batches), as one (n, d) tensor."""
    model.eval()
    with capture_features(model) as captured:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    return torch.cat(captured)
