"""Builder ``nasoa``: NASOA's training-efficient networks (PAPERS.md §2), a block string repeated
over a macro string.

**Block** (block level): 2-3 (op, width) pairs and at most one skip, plus an implicit input->output
residual. Nodes are numbered 0 (the block's input) to n (the last op's output). Ops:

====  ==============  =========================================================
code  name            what
====  ==============  =========================================================
0     conv3x3         3x3 convolution
1     conv1x1         1x1 convolution
2     conv3x3_g2      3x3 convolution, 2 groups
3     conv3x3_g4      3x3 convolution, 4 groups
4     conv3x3_dw      3x3 convolution, groups = C_in (depthwise where the widths allow)
5     conv3x3_gc32    3x3 convolution, groups = C_in / 32 (at least 1)
6     sepconv3x3      depthwise 3x3 then pointwise 1x1
====  ==============  =========================================================

Each op is conv -> BatchNorm -> ReLU. Width w in 0..4 makes an inner op output ``C * 2**w / 4``
channels (C = the block's output channels, rounded to a multiple of 4, at least 4); the last op always
outputs C, so its width is implied (a choice: it keeps stage widths the macro string's business). A
group count that does not divide both channel counts falls back to their greatest common divisor.
Skip ``a i j`` adds node i's output to node j's, ``c i j`` concatenates it (a 1x1 projection brings
a concatenated last node back to C channels); i < j - 1. Encoding: ``"03-21-6|a02"``.

**Macro** (macro level): e.g. ``"211-2111-211"``; each character is a block, '1' keeps the channel
count, '2' doubles it, '-' starts a stage whose first block downsamples (stride 2).

The network: a 3x3 stem to ``base_channels``, the stages, global average pooling, a linear head. The
module keeps ``stem``, ``stages`` and ``head`` apart so a model zoo can freeze the first stages and
replace the head when it fine-tunes (see :class:`NasoaNet`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from automl.registry import builders
from automl.tasks.supervised import ClassificationInfo

OPS: tuple[str, ...] = ("conv3x3", "conv1x1", "conv3x3_g2", "conv3x3_g4", "conv3x3_dw", "conv3x3_gc32",
                        "sepconv3x3")


@dataclass(frozen=True)
class BlockSpec:
    """A parsed block string: ops (names), widths of the inner ops, and the optional skip."""

    ops: tuple[str, ...]
    widths: tuple[int, ...]  # one per op except the last
    skip: tuple[str, int, int] | None  # (kind 'a'|'c', from node, to node)

    def encode(self) -> str:
        pairs = [f"{OPS.index(op)}{w}" for op, w in zip(self.ops, self.widths)] + [str(OPS.index(self.ops[-1]))]
        skip = f"|{self.skip[0]}{self.skip[1]}{self.skip[2]}" if self.skip else ""
        return "-".join(pairs) + skip


def block_spec(block: Mapping[str, Any]) -> BlockSpec:
    """The block part of a config (``n_ops``, ``op1..op3``, ``width1..width2``, ``skip``) as a :class:`BlockSpec`."""
    n = int(block["n_ops"])
    if n not in (2, 3):
        raise ValueError(f"nasoa: n_ops must be 2 or 3, got {n}")
    ops = tuple(str(block[f"op{i}"]) for i in range(1, n + 1))
    for op in ops:
        if op not in OPS:
            raise ValueError(f"nasoa: unknown op {op!r}; expected one of {', '.join(OPS)}")
    widths = tuple(int(block[f"width{i}"]) for i in range(1, n))
    if any(not 0 <= w <= 4 for w in widths):
        raise ValueError(f"nasoa: widths must be in 0..4, got {widths}")
    raw = str(block.get(f"skip{n}", block.get("skip", "none")))
    skip = None
    if raw != "none":
        kind, i, j = raw[0], int(raw[1]), int(raw[2])
        if kind not in "ac" or not 0 <= i < j - 1 or j > n:
            raise ValueError(f"nasoa: bad skip {raw!r} for a block of {n} ops")
        skip = (kind, i, j)
    return BlockSpec(ops, widths, skip)


def macro_string(config: Mapping[str, Any]) -> str:
    """The macro string of a config (its ``stages``: a list of ``{pattern}``), e.g. ``"21-211"``."""
    patterns = [str(stage["pattern"]) for stage in config["stages"]]
    for p in patterns:
        if not p or set(p) - {"1", "2"}:
            raise ValueError(f"nasoa: stage pattern {p!r} must be a non-empty string of '1' and '2'")
    return "-".join(patterns)


def arch_encoding(config: Mapping[str, Any]) -> str:
    """A readable, canonical architecture string: ``"c<base>:<block string>:<macro string>"``."""
    return f"c{int(config['base_channels'])}:{block_spec(config['block']).encode()}:{macro_string(config)}"


def _round4(x: float) -> int:
    return max(4, int(round(x / 4.0)) * 4)


def _conv(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """One op: conv -> BN -> ReLU (a separable conv is depthwise -> pointwise -> BN -> ReLU)."""
    if op == "sepconv3x3":
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                             nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
    kernel = 1 if op == "conv1x1" else 3
    wanted = {"conv3x3": 1, "conv1x1": 1, "conv3x3_g2": 2, "conv3x3_g4": 4, "conv3x3_dw": c_in,
              "conv3x3_gc32": max(1, c_in // 32)}[op]
    groups = math.gcd(math.gcd(wanted, c_in), c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a strided 1x1 conv + BN where the shape changes (as in ResNet)."""
    if c_in == c_out and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class Block(nn.Module):
    """One block of a :class:`BlockSpec` from ``c_in`` to ``c_out`` channels, first op strided."""

    def __init__(self, spec: BlockSpec, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.spec = spec
        n = len(spec.ops)
        outs = [_round4(c_out * 2 ** w / 4) for w in spec.widths] + [c_out]
        channels = [c_in]  # channels of node k's output (after any concat into it)
        self.ops = nn.ModuleList()
        self.skip_proj: nn.Module = nn.Identity()
        self.final_proj: nn.Module = nn.Identity()
        for k in range(1, n + 1):
            self.ops.append(_conv(spec.ops[k - 1], channels[k - 1], outs[k - 1], stride if k == 1 else 1))
            node_channels = outs[k - 1]
            if spec.skip and spec.skip[2] == k:
                kind, i, _ = spec.skip
                src_stride = stride if i == 0 else 1
                if kind == "a":
                    self.skip_proj = _shortcut(channels[i], node_channels, src_stride)
                else:
                    self.skip_proj = nn.AvgPool2d(stride) if src_stride > 1 else nn.Identity()
                    node_channels += channels[i]
            channels.append(node_channels)
        if channels[-1] != c_out:
            self.final_proj = nn.Sequential(nn.Conv2d(channels[-1], c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = _shortcut(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for k, op in enumerate(self.ops, start=1):
            out = op(nodes[-1])
            if self.spec.skip and self.spec.skip[2] == k:
                src = self.skip_proj(nodes[self.spec.skip[1]])
                out = out + src if self.spec.skip[0] == "a" else torch.cat([out, src], dim=1)
            nodes.append(out)
        result: torch.Tensor = self.act(self.final_proj(nodes[-1]) + self.residual(x))
        return result


class NasoaNet(nn.Module):
    """stem -> stages -> global pool -> head, with the parts named for fine-tuning.

    ``features(x)`` is the pooled representation (``feature_dim`` values) a linear probe or a new head
    reads; ``freeze(k)`` fixes the stem and the first ``k`` stages (weights and BatchNorm statistics).
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], feature_dim: int, num_classes: int,
                 encoding: str) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.encoding = encoding
        self._frozen = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        pooled: torch.Tensor = self.pool(x)
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x))
        return logits

    def replace_head(self, num_classes: int) -> None:
        """A fresh linear head for a task with ``num_classes`` classes."""
        self.head = nn.Linear(self.feature_dim, num_classes)

    def freeze(self, stages: int) -> None:
        """Freeze the stem and the first ``stages`` stages (0: train everything)."""
        if not 0 <= stages <= len(self.stages):
            raise ValueError(f"cannot freeze {stages} stages of a {len(self.stages)}-stage network")
        self._frozen = stages
        parts: list[nn.Module] = [self.stem, *self.stages[:stages]] if stages else []
        for part in parts:
            for p in part.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> NasoaNet:
        super().train(mode)
        if self._frozen:  # frozen parts keep their pre-trained BatchNorm statistics
            self.stem.eval()
            for stage in self.stages[: self._frozen]:
                stage.eval()
        return self


def build_nasoa_net(config: Mapping[str, Any], info: ClassificationInfo) -> NasoaNet:
    """The network of a nasoa ``model`` config (see the module docstring) for ``info``'s task."""
    spec = block_spec(config["block"])
    macro = macro_string(config)
    base = int(config["base_channels"])
    c_in = info.input_shape[0]
    stem = nn.Sequential(nn.Conv2d(c_in, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True))
    channels = base
    stages = []
    for s, pattern in enumerate(macro.split("-")):
        blocks = []
        for b, char in enumerate(pattern):
            out = channels * 2 if char == "2" else channels
            blocks.append(Block(spec, channels, out, 2 if s > 0 and b == 0 else 1))
            channels = out
        stages.append(nn.Sequential(*blocks))
    return NasoaNet(stem, stages, channels, info.num_classes, arch_encoding(config))


@builders.register("nasoa")
def build_nasoa(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    """Registered builder (entry point ``automl.builders: nasoa``)."""
    return build_nasoa_net(config, info)
