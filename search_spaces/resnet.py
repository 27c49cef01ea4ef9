"""Builders ``resnet18`` and ``wrn``: the CIFAR ResNet-18 and WideResNet of the adversarial-training papers.

``resnet18`` (as in Madry/TRADES/JEAT code, after kuangliu/pytorch-cifar): a 3x3 stem convolution of 64
channels without max-pool, four stages of ``num_blocks`` (default [2, 2, 2, 2]) BasicBlocks of 64/128/256/512
channels times ``width`` (default 1.0) with strides 1/2/2/2, global average pooling and a linear head
(11.17M parameters on CIFAR-10).

``wrn`` (WideResNet-``depth``-``widen`` as in the TRADES and Madry code): a 3x3 stem of 16 channels, three
groups of (``depth`` - 4) / 6 pre-activation blocks of 16/32/64 channels times ``widen`` with strides 1/2/2,
dropout ``dropout`` between each block's convolutions, BN-ReLU, global average pooling and a linear head.
Defaults: depth 34, widen 10, dropout 0.0 (WRN-34-10: 46.16M parameters on CIFAR-10).

Both take any (channels, height, width) input; a bad config value is a ConfigError naming its field,
raised at build time and, for values the space fixes, when the space is loaded (``space_checks``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from automl.errors import ConfigError
from automl.registry import builders, space_checks
from automl.space.model import SearchSpace
from automl.space.nodes import Categorical, Constant, Group, Node
from automl.tasks.supervised import ClassificationInfo

#: channels of the ResNet-18 stem and of its four stages, before ``width``
RESNET_CHANNELS = (64, 64, 128, 256, 512)
RESNET_STRIDES = (1, 2, 2, 2)
#: channels of the WRN stem and of its three groups (the groups' are multiplied by ``widen``)
WRN_CHANNELS = (16, 16, 32, 64)
WRN_STRIDES = (1, 2, 2)


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with batch norm and a shortcut (a strided 1x1 convolution and batch
    norm where the shape changes), ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out + self.shortcut(x))
        return out


class ResNet(nn.Module):
    """Stem convolution, stages of BasicBlocks, global average pooling, linear head."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], num_blocks: Sequence[int],
                 strides: Sequence[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        previous = channels[0]
        for out, count, stride in zip(channels[1:], num_blocks, strides):
            for i in range(count):
                blocks.append(BasicBlock(previous, out, stride if i == 0 else 1))
                previous = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.pool(self.blocks(self.stem(x))))
        return logits


class WideBlock(nn.Module):
    """WRN's pre-activation block (BN-ReLU-conv, dropout, BN-ReLU-conv); where the shape changes, the
    shortcut is a strided 1x1 convolution of the pre-activated input, as in the TRADES code."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        out: torch.Tensor = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(activated)))))
        shortcut: torch.Tensor = x if self.shortcut is None else self.shortcut(activated)
        return out + shortcut


class WideResNet(nn.Module):
    """Stem convolution, three groups of wide blocks, BN-ReLU, global average pooling, linear head; weights
    initialised as in the TRADES code (He-normal convolutions, zero biases)."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, widen: int, dropout: float) -> None:
        super().__init__()
        per_group = (depth - 4) // 6
        channels = [WRN_CHANNELS[0], *(c * widen for c in WRN_CHANNELS[1:])]
        self.stem = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        blocks: list[nn.Module] = []
        previous = channels[0]
        for out, stride in zip(channels[1:], WRN_STRIDES):
            for i in range(per_group):
                blocks.append(WideBlock(previous, out, stride if i == 0 else 1, dropout))
                previous = out
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(previous, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.final(self.blocks(self.stem(x))))
        return logits


# ------------------------------------------------------------------------------------ config checks


def _positive_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"must be a number > 0, got {value!r}", field=f"model.{field}")
    return float(value)


def _integer(value: Any, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"must be an integer >= {low}, got {value!r}", field=f"model.{field}")
    return value


def _num_blocks(value: Any) -> tuple[int, ...]:
    stages = len(RESNET_STRIDES)
    if not (isinstance(value, (list, tuple)) and len(value) == stages
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ConfigError(f"must be a list of {stages} integers >= 1 (BasicBlocks per stage), got {value!r}",
                          field="model.num_blocks")
    return tuple(value)


def _depth(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 10 or (value - 4) % 6:
        raise ConfigError(f"must be 6n + 4 for an integer n >= 1 (e.g. 16, 28, 34), got {value!r}",
                          field="model.depth")
    return value


def _dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"must be a number in [0, 1), got {value!r}", field="model.dropout")
    return float(value)


#: each builder's config fields -> the check of one value
FIELDS: Mapping[str, Mapping[str, Callable[[Any], Any]]] = {
    "resnet18": {"width": lambda v: _positive_number(v, "width"), "num_blocks": _num_blocks},
    "wrn": {"depth": _depth, "widen": lambda v: _integer(v, "widen", 1), "dropout": _dropout},
}


def _image_shape(info: ClassificationInfo, name: str) -> tuple[int, int, int]:
    shape = tuple(info.input_shape)
    if len(shape) != 3:
        raise ConfigError(f"{name} needs image inputs (channels, height, width), got input shape {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


@builders.register("resnet18")
def build_resnet18(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    """The CIFAR ResNet-18 (``width`` multiplies every stage's channels; ``num_blocks`` per stage)."""
    channels, _, _ = _image_shape(info, "resnet18")
    width = _positive_number(config.get("width", 1.0), "width")
    num_blocks = _num_blocks(config.get("num_blocks", [2, 2, 2, 2]))
    widths = [max(1, int(round(c * width))) for c in RESNET_CHANNELS]
    return ResNet(channels, info.num_classes, widths, num_blocks, RESNET_STRIDES)


@builders.register("wrn")
def build_wrn(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    """WideResNet-``depth``-``widen`` with ``dropout`` inside its blocks."""
    channels, _, _ = _image_shape(info, "wrn")
    depth = _depth(config.get("depth", 34))
    widen = _integer(config.get("widen", 10), "widen", 1)
    dropout = _dropout(config.get("dropout", 0.0))
    return WideResNet(channels, info.num_classes, depth, widen, dropout)


def _model_group(space: SearchSpace) -> tuple[tuple[str, ...], Group]:
    """The group the builder is handed (``model``, or the whole tree when there is none) and its path."""
    model = space.root.child_map().get("model")
    return (("model",), model) if isinstance(model, Group) else ((), space.root)


def _check_fields(space: SearchSpace, builder: str) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with the values a space fixes or offers (constants, categorical choices) for ``builder``'s
    fields; ranges are checked when a model is built."""
    path, group = _model_group(space)
    children: Mapping[str, Node] = group.child_map()
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for field, check in FIELDS[builder].items():
        node = children.get(field)
        if isinstance(node, Constant):
            values: list[tuple[tuple[str | int, ...], Any]] = [((*path, field), node.value)]
        elif isinstance(node, Categorical):
            values = [((*path, field, "choices", i), c) for i, c in enumerate(node.choices)]
        else:
            continue
        for where, value in values:
            try:
                check(value)
            except ConfigError as exc:
                problems.append((where, f"{builder}: {exc.message}"))
    return problems


@space_checks.register("resnet18")
def check_resnet18_space(space: SearchSpace) -> list[tuple[tuple[str | int, ...], str]]:
    """``width`` > 0 and ``num_blocks`` a list of four positive integers, where the space fixes them."""
    return _check_fields(space, "resnet18")


@space_checks.register("wrn")
def check_wrn_space(space: SearchSpace) -> list[tuple[tuple[str | int, ...], str]]:
    """``depth`` of the form 6n + 4, ``widen`` >= 1 and ``dropout`` in [0, 1), where the space fixes them."""
    return _check_fields(space, "wrn")
