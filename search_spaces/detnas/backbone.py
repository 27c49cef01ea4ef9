"""The Joint-DetNAS student backbone (PAPERS.md §3): a small ResNet with per-stage depth, width and
prune ratio, in plain torch (the detector adapter registers it with mmdet; nothing here imports mmdet).

Layout (the attribute and parameter names are a contract: weight inheritance,
:mod:`search_spaces.detnas.inherit`, and the detector adapter rely on them)::

    stem.conv   3x3 conv, stride 2, in_channels -> stem (no bias)
    stem.bn     BatchNorm2d(stem), then ReLU (stem.relu)
    stages[s][j]  BasicBlock; j == 0 has stride 2 and changes the channels to the stage's width

so the stage outputs have strides 4, 8, 16 (one FPN level per stage). A :class:`BasicBlock` is
``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with ``conv1``: in -> inner (3x3, the block's
stride), ``conv2``: inner -> width (3x3), ``shortcut``: None (identity) or ``nn.Sequential(conv1x1
stride, BN)`` when the stride is not 1 or the channel count changes, and
``inner = max(1, round(width * prune))`` -- pruning narrows only the inside of a block, so the stage
widths (the FPN's inputs) do not depend on it.
"""
from __future__ import annotations

import numbers
from collections import OrderedDict
from typing import Any, Mapping, Sequence, cast

import torch
from torch import nn

from automl.errors import ConfigError

__all__ = ["BasicBlock", "DetNASBackbone", "inner_channels"]


def inner_channels(width: int, prune: float) -> int:
    """The inner width of a block of output ``width`` pruned to ratio ``prune``: ``max(1, round(width * prune))``."""
    return max(1, int(round(float(width) * float(prune))))


class BasicBlock(nn.Module):
    """ResNet's basic block with a separately chosen inner width (``conv1``'s output channels)."""

    def __init__(self, in_channels: int, width: int, inner: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.width, self.inner, self.stride = int(in_channels), int(width), int(inner), int(stride)
        self.conv1 = nn.Conv2d(in_channels, inner, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_channels != width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        result: torch.Tensor = self.relu(out + identity)
        return result

    def init_identity(self) -> None:
        """Zero ``bn2``'s affine parameters, so that the residual branch outputs 0 and the block computes
        ``relu(x)`` -- the identity on a post-ReLU input when there is no shortcut. This is how an added
        block starts (Joint-DetNAS's function-preserving "add a block")."""
        with torch.no_grad():
            self.bn2.weight.zero_()
            self.bn2.bias.zero_()

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.inner} -> {self.width}, stride {self.stride}"


def _stage_fields(stages: Sequence[Mapping[str, Any]]) -> list[tuple[int, int, float]]:
    """(depth, width, prune) per stage, with errors that name the stage and field."""
    if not isinstance(stages, Sequence) or isinstance(stages, (str, bytes)) or not stages:
        raise ConfigError(f"expected a non-empty list of stages, got {stages!r}", field="model.stages")
    out = []
    for s, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise ConfigError(f"expected a mapping {{depth, width, prune}}, got {stage!r}", field=f"model.stages[{s}]")
        for key in ("depth", "width"):
            if key not in stage:
                raise ConfigError(f"missing {key!r}", field=f"model.stages[{s}]")
        depth, width, prune = stage["depth"], stage["width"], stage.get("prune", 1.0)
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ConfigError(f"expected an integer >= 1, got {depth!r}", field=f"model.stages[{s}].depth")
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ConfigError(f"expected an integer >= 1, got {width!r}", field=f"model.stages[{s}].width")
        if isinstance(prune, bool) or not isinstance(prune, numbers.Real) or not 0 < float(prune) <= 1:
            raise ConfigError(f"expected a ratio in (0, 1], got {prune!r}", field=f"model.stages[{s}].prune")
        out.append((int(depth), int(width), float(prune)))
    return out


class DetNASBackbone(nn.Module):
    """Stem + stages of :class:`BasicBlock`; ``forward`` returns every stage's output (for an FPN)."""

    def __init__(self, stem: int, stages: Sequence[Mapping[str, Any]], in_channels: int = 3) -> None:
        super().__init__()
        if isinstance(stem, bool) or not isinstance(stem, numbers.Integral) or stem < 1:
            raise ConfigError(f"expected an integer >= 1, got {stem!r}", field="model.stem")
        fields = _stage_fields(stages)
        stem = int(stem)
        self.stem: nn.Sequential = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
            bn=nn.BatchNorm2d(stem),
            relu=nn.ReLU(inplace=True),
        ))
        self.stages: nn.ModuleList = nn.ModuleList()
        channels = stem
        for depth, width, prune in fields:
            inner = inner_channels(width, prune)
            blocks = [BasicBlock(channels if j == 0 else width, width, inner, stride=2 if j == 0 else 1)
                      for j in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            channels = width
        self._widths: tuple[int, ...] = tuple(width for _, width, _ in fields)
        self._init_weights()

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any], in_channels: int = 3) -> DetNASBackbone:
        """The backbone of a detnas config's ``model`` part (its ``stem`` and ``stages``)."""
        for key in ("stem", "stages"):
            if key not in model_cfg:
                raise ConfigError(f"missing {key!r} (a detnas backbone needs 'stem' and 'stages')", field="model")
        return cls(model_cfg["stem"], model_cfg["stages"], in_channels=in_channels)

    def _init_weights(self) -> None:
        """torchvision ResNet's init: Kaiming-normal (fan_out, ReLU) convs, BN gamma 1 and beta 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each stage output (the stage widths)."""
        return self._widths

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each stage output relative to the input: (4, 8, 16) for 3 stages."""
        return tuple(2 ** (s + 2) for s in range(len(self.stages)))

    @property
    def depths(self) -> tuple[int, ...]:
        """Blocks per stage."""
        return tuple(len(self.blocks(s)) for s in range(len(self.stages)))

    def blocks(self, stage: int) -> Sequence[BasicBlock]:
        """The blocks of stage ``stage``: ``stages[stage]``, an ``nn.Sequential`` of :class:`BasicBlock`
        (which ``nn.ModuleList`` cannot say in its type)."""
        return cast(Sequence[BasicBlock], self.stages[stage])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)
