"""Supernet ``cnn``: every config of a :mod:`search_spaces.cnn` space as one weight-sharing network.

It holds the deepest stack the space allows (``model.blocks``' repeat max), each block an
:class:`~automl.elastic.layers.ElasticConv2d` of the widest channels (``channels``' largest value) and the
largest kernel (``kernel``'s largest choice; smaller odd kernels are centre-cropped) plus an
:class:`~automl.elastic.layers.ElasticBatchNorm2d`, and an :class:`~automl.elastic.layers.ElasticLinear` head sliced
on its input. Pooling, activation and dropout have no weights and follow the config as in
:func:`~search_spaces.cnn.build_cnn`; so does the conv bias (used only when a block has no batch norm).

``extract(config)`` returns what ``build_cnn(config, info)`` returns (same layers, same state_dict
keys and shapes) with the supernet's weights copied in.
"""
from __future__ import annotations

from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

from automl.elastic.layers import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from automl.elastic.space_queries import bool_values, int_values, repeated_blocks, space_group, str_values, unsupported
from automl.elastic.surgery import substitute_layers
from automl.errors import ConfigError
from automl.space.model import SearchSpace
from automl.space.nodes import Constant, Float, Group
from automl.supernet import SuperNet, build_sequential, supernets
from automl.tasks.supervised import ClassificationInfo
from search_spaces.cnn import build_cnn
from search_spaces.layers import ACTIVATIONS, activation

NAME = "supernet 'cnn'"


class CNNSuperNet(SuperNet):
    """Weight-sharing union of ``build_cnn`` models with up to ``max_depth`` blocks of up to
    ``max_channels`` channels and ``max_kernel`` (odd) kernels.

    ``conv_bias`` / ``batchnorm`` say whether any block may go without / with a batch norm (the conv
    bias and the batch norms exist only when needed).
    """

    def __init__(self, info: ClassificationInfo, max_depth: int, max_channels: int, max_kernel: int, *,
                 conv_bias: bool = True, batchnorm: bool = True, min_depth: int = 1) -> None:
        super().__init__()
        if len(info.input_shape) != 3:
            raise ConfigError(f"{NAME} needs image inputs (channels, height, width), got {info.input_shape}")
        if max_depth < 0 or not 0 <= min_depth <= max_depth:
            raise ConfigError(f"{NAME}: need 0 <= min_depth <= max_depth, got {min_depth}, {max_depth}")
        self.info = info
        self.max_depth, self.min_depth = int(max_depth), int(min_depth)
        self.max_channels, self.max_kernel = int(max_channels), int(max_kernel)
        in_channels = info.input_shape[0]
        self.convs = nn.ModuleList(
            ElasticConv2d(in_channels if i == 0 else self.max_channels, self.max_channels, self.max_kernel,
                          bias=conv_bias)
            for i in range(self.max_depth)
        )
        self.norms = nn.ModuleList(ElasticBatchNorm2d(self.max_channels) for _ in range(self.max_depth)) \
            if batchnorm else None
        # With zero blocks allowed, the head may see the input's channels directly.
        head_in = max(self.max_channels, in_channels) if self.min_depth == 0 else self.max_channels
        self.head = ElasticLinear(head_in, info.num_classes)

    # -- one config -----------------------------------------------------------------------------
    def _blocks(self, config: Mapping[str, Any]) -> list[tuple[int, int, bool, bool]]:
        """(channels, kernel, batchnorm, pool) per block, with build_cnn's defaults, checked."""
        blocks = config["blocks"]
        if not self.min_depth <= len(blocks) <= self.max_depth:
            raise ConfigError(f"{NAME}: {len(blocks)} blocks, but this supernet has "
                              f"{self.min_depth}..{self.max_depth}", field="blocks")
        out = []
        for i, block in enumerate(blocks):
            channels, kernel = int(block["channels"]), int(block.get("kernel", 3))
            batchnorm, pool = bool(block.get("batchnorm", True)), bool(block.get("pool", False))
            if not 1 <= channels <= self.max_channels:
                raise ConfigError(f"{NAME}: {channels} channels is outside [1, {self.max_channels}]",
                                  field=f"blocks[{i}].channels")
            if kernel % 2 == 0 or not 1 <= kernel <= self.max_kernel:
                raise ConfigError(f"{NAME}: kernel {kernel} is not an odd size <= {self.max_kernel}",
                                  field=f"blocks[{i}].kernel")
            if (batchnorm and self.norms is None) or (not batchnorm and self.convs[i].bias is None):
                raise ConfigError(f"{NAME}: batchnorm={batchnorm} is not supported by this supernet",
                                  field=f"blocks[{i}].batchnorm")
            out.append((channels, kernel, batchnorm, pool))
        return out

    def forward(self, x: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
        """Run ``build_cnn(config, info)``'s architecture with the shared weights."""
        _, height, width = self.info.input_shape
        act = activation(config.get("activation", "relu"))
        for i, (channels, kernel, batchnorm, pool) in enumerate(self._blocks(config)):
            x = self.convs[i](x, channels, kernel, use_bias=not batchnorm)
            if batchnorm:
                assert self.norms is not None  # _blocks refuses batchnorm without norms
                x = self.norms[i](x)
            x = act(x)
            if pool and min(height, width) >= 2:
                x = F.max_pool2d(x, 2)
                height, width = height // 2, width // 2
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        dropout = float(config.get("dropout", 0.0))
        if dropout > 0:
            x = F.dropout(x, dropout, self.training)
        logits: torch.Tensor = self.head(x, self.info.num_classes)
        return logits

    def extract(self, config: Mapping[str, Any]) -> nn.Sequential:
        """``build_cnn(config, info)`` with this supernet's weights (and batch-norm statistics) copied in."""
        blocks = self._blocks(config)
        model = build_sequential(build_cnn, config, self.info, NAME)
        replacements: list[nn.Module] = []
        in_channels = self.info.input_shape[0]
        for i, (channels, kernel, batchnorm, _) in enumerate(blocks):
            replacements.append(cast(ElasticConv2d, self.convs[i]).extract(in_channels, channels, kernel,
                                                                           bias=not batchnorm))
            if batchnorm:
                assert self.norms is not None  # _blocks refuses batchnorm without norms
                replacements.append(cast(ElasticBatchNorm2d, self.norms[i]).extract(channels))
            in_channels = channels
        replacements.append(self.head.extract(in_channels, self.info.num_classes))
        substitute_layers(model, replacements, owner=NAME)
        return model.train(self.training)


@supernets.register("cnn")
def build_cnn_supernet(space: SearchSpace, info: ClassificationInfo) -> CNNSuperNet:
    """The supernet of a ``cnn`` space: maxima from ``model.blocks`` (a repeat of groups with
    ``channels`` and optional ``kernel``, ``batchnorm``, ``pool``), ``model.activation``, ``model.dropout``."""
    children = space_group(space, "model", supernet=NAME).child_map()
    blocks = repeated_blocks(space, "blocks", "blocks", supernet=NAME)
    assert isinstance(blocks.item, Group)  # repeated_blocks checked it
    item = blocks.item.child_map()
    where = "model.blocks[i]."
    try:
        if "channels" not in item:
            raise ConfigError("missing (each block needs a number of channels)", field=where + "channels")
        channels = int_values(item["channels"], where + "channels")
        kernels = int_values(item["kernel"], where + "kernel") if "kernel" in item else (3,)
        if min(channels) < 1:
            raise ConfigError(f"channels must be positive, can be {min(channels)}", field=where + "channels")
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"kernel sizes must be positive and odd (centre-cropped), got {list(kernels)}",
                              field=where + "kernel")
        batchnorm = bool_values(item.get("batchnorm"), where + "batchnorm", True)
        bool_values(item.get("pool"), where + "pool", False)
        unknown = set(str_values(children.get("activation"), "model.activation", "relu")) - set(ACTIVATIONS)
        if unknown:
            raise ConfigError(f"unknown activations {sorted(unknown)}; expected some of {sorted(ACTIVATIONS)}",
                              field="model.activation")
        dropout = children.get("dropout")
        if dropout is not None and not isinstance(dropout, (Float, Constant)):
            raise ConfigError(f"expected a float or a constant, got {dropout.describe()}", field="model.dropout")
    except ConfigError as exc:
        raise unsupported(space, exc.field or "model", exc.message, supernet=NAME) from None
    return CNNSuperNet(info, max_depth=blocks.max, min_depth=blocks.min, max_channels=max(channels),
                       max_kernel=max(kernels), conv_bias=False in batchnorm, batchnorm=True in batchnorm)
