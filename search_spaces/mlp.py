"""Builder ``mlp``: a multi-layer perceptron over the flattened input.

Config: ``layers`` (a list of ``{width, activation}``) and ``dropout``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from torch import nn

from automl.registry import builders
from automl.tasks.supervised import ClassificationInfo
from search_spaces.layers import activation


@builders.register("mlp")
def build_mlp(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(info.input_shape)
    dropout = float(config.get("dropout", 0.0))
    for layer in config["layers"]:
        layers += [nn.Linear(width, int(layer["width"])), activation(layer.get("activation", "relu"))]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(layer["width"])
    layers.append(nn.Linear(width, info.num_classes))
    return nn.Sequential(*layers)
