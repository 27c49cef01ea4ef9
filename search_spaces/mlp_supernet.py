"""Supernet ``mlp``: every config of a :mod:`search_spaces.mlp` space as one weight-sharing network.

It holds the deepest chain the space allows (``model.layers``' repeat max) of
:class:`~automl.elastic.layers.ElasticLinear` layers of the largest ``width``, and an elastic head; a config
uses the first ``len(layers)`` layers, each sliced to its width. Activations and dropout have no
weights and follow the config as in :func:`~search_spaces.mlp.build_mlp`.

``extract(config)`` returns what ``build_mlp(config, info)`` returns (same layers, same state_dict
keys and shapes) with the supernet's weights copied in.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

from automl.elastic.layers import ElasticLinear
from automl.elastic.space_queries import int_values, repeated_blocks, space_group, str_values, unsupported
from automl.elastic.surgery import substitute_layers
from automl.errors import ConfigError
from automl.space.model import SearchSpace
from automl.space.nodes import Constant, Float, Group
from automl.supernet import SuperNet, build_sequential, supernets
from automl.tasks.supervised import ClassificationInfo
from search_spaces.layers import ACTIVATIONS, activation
from search_spaces.mlp import build_mlp

NAME = "supernet 'mlp'"


class MLPSuperNet(SuperNet):
    """Weight-sharing union of ``build_mlp`` models with up to ``max_depth`` hidden layers of up to
    ``max_width`` units."""

    def __init__(self, info: ClassificationInfo, max_depth: int, max_width: int, *, min_depth: int = 1) -> None:
        super().__init__()
        if max_depth < 0 or not 0 <= min_depth <= max_depth:
            raise ConfigError(f"{NAME}: need 0 <= min_depth <= max_depth, got {min_depth}, {max_depth}")
        self.info = info
        self.max_depth, self.min_depth, self.max_width = int(max_depth), int(min_depth), int(max_width)
        features = math.prod(info.input_shape)
        self.layers = nn.ModuleList(
            ElasticLinear(features if i == 0 else self.max_width, self.max_width) for i in range(self.max_depth)
        )
        # With zero hidden layers allowed, the head may see the flattened input directly.
        head_in = max(self.max_width, features) if self.min_depth == 0 else self.max_width
        self.head = ElasticLinear(head_in, info.num_classes)

    def _widths(self, config: Mapping[str, Any]) -> list[int]:
        layers = config["layers"]
        if not self.min_depth <= len(layers) <= self.max_depth:
            raise ConfigError(f"{NAME}: {len(layers)} layers, but this supernet has "
                              f"{self.min_depth}..{self.max_depth}", field="layers")
        widths = [int(layer["width"]) for layer in layers]
        for i, width in enumerate(widths):
            if not 1 <= width <= self.max_width:
                raise ConfigError(f"{NAME}: width {width} is outside [1, {self.max_width}]",
                                  field=f"layers[{i}].width")
        return widths

    def forward(self, x: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
        """Run ``build_mlp(config, info)``'s architecture with the shared weights."""
        x = torch.flatten(x, 1)
        dropout = float(config.get("dropout", 0.0))
        for i, (width, layer) in enumerate(zip(self._widths(config), config["layers"])):
            x = activation(layer.get("activation", "relu"))(self.layers[i](x, width))
            if dropout > 0:
                x = F.dropout(x, dropout, self.training)
        logits: torch.Tensor = self.head(x, self.info.num_classes)
        return logits

    def extract(self, config: Mapping[str, Any]) -> nn.Sequential:
        """``build_mlp(config, info)`` with this supernet's weights copied in."""
        widths = self._widths(config)
        model = build_sequential(build_mlp, config, self.info, NAME)
        features = math.prod(self.info.input_shape)
        replacements: list[nn.Module] = []
        for i, width in enumerate(widths):
            replacements.append(cast(ElasticLinear, self.layers[i]).extract(features, width))
            features = width
        replacements.append(self.head.extract(features, self.info.num_classes))
        substitute_layers(model, replacements, owner=NAME)
        return model.train(self.training)


@supernets.register("mlp")
def build_mlp_supernet(space: SearchSpace, info: ClassificationInfo) -> MLPSuperNet:
    """The supernet of an ``mlp`` space: maxima from ``model.layers`` (a repeat of groups with
    ``width`` and optional ``activation``) and ``model.dropout``."""
    children = space_group(space, "model", supernet=NAME).child_map()
    layers = repeated_blocks(space, "layers", "layers", supernet=NAME)
    assert isinstance(layers.item, Group)  # repeated_blocks checked it
    item = layers.item.child_map()
    where = "model.layers[i]."
    try:
        if "width" not in item:
            raise ConfigError("missing (each layer needs a width)", field=where + "width")
        widths = int_values(item["width"], where + "width")
        if min(widths) < 1:
            raise ConfigError(f"widths must be positive, can be {min(widths)}", field=where + "width")
        unknown = set(str_values(item.get("activation"), where + "activation", "relu")) - set(ACTIVATIONS)
        if unknown:
            raise ConfigError(f"unknown activations {sorted(unknown)}; expected some of {sorted(ACTIVATIONS)}",
                              field=where + "activation")
        dropout = children.get("dropout")
        if dropout is not None and not isinstance(dropout, (Float, Constant)):
            raise ConfigError(f"expected a float or a constant, got {dropout.describe()}", field="model.dropout")
    except ConfigError as exc:
        raise unsupported(space, exc.field or "model", exc.message, supernet=NAME) from None
    return MLPSuperNet(info, max_depth=layers.max, min_depth=layers.min, max_width=max(widths))
