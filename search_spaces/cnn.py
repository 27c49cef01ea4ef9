"""Builder ``cnn``: a stack of conv blocks (conv -> [batch norm] -> activation -> [2x2 max-pool]),
global average pooling and a linear head.

Config: ``blocks`` (a list of ``{channels, kernel, batchnorm, pool}``), ``activation`` and ``dropout``.
A pool is skipped once the feature map is 1x1, so every config builds.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from automl.registry import builders
from automl.tasks.supervised import ClassificationInfo
from search_spaces.layers import activation


@builders.register("cnn")
def build_cnn(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    channels, height, width = info.input_shape
    act = config.get("activation", "relu")
    layers: list[nn.Module] = []
    for block in config["blocks"]:
        out = int(block["channels"])
        kernel = int(block.get("kernel", 3))
        batchnorm = bool(block.get("batchnorm", True))
        layers.append(nn.Conv2d(channels, out, kernel, padding=kernel // 2, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(activation(act))
        if block.get("pool", False) and min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    dropout = float(config.get("dropout", 0.0))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels, info.num_classes))
    return nn.Sequential(*layers)
