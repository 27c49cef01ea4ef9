"""Builder ``nb201``: NAS-Bench-201's cell space (Dong & Yang 2020), scaled down for small images.

A cell is a DAG of 4 nodes (node 0 the input, node 3 the output) whose 6 edges ``i -> j`` (i < j) each
carry one op; node ``j`` is the sum of its incoming edges. The macro skeleton is a stem (3x3 conv + batch
norm), ``cells`` cells, a ResNet basic block that halves the resolution and doubles the channels,
``cells`` more cells, and a head (batch norm, ReLU, global average pooling, linear).

Config (the ``model`` part): one op per edge under the keys of :data:`EDGE_KEYS` (``edge_0_1`` ...
``edge_2_3``), and optionally ``channels`` (default 8) and ``cells`` (per stage, default 1).

Equivalent cells build the same network: an edge whose source is always zero (every path into it is
``none``) or whose target never reaches the output computes nothing, so it is built as ``none``; and when
nodes 1 and 2 are not connected they are interchangeable, so the cell is built in the order with the
smaller op indices (:func:`canonical_cell`). Equivalent cells hence share one table row.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from automl.registry import builders, space_checks
from automl.space.model import SearchSpace
from automl.space.nodes import Categorical, Constant, Group
from automl.tasks.supervised import ClassificationInfo

#: NAS-Bench-201's op set, in its order (an op's index is its position here)
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the cell's edges ``(source, target)`` in NAS-Bench-201's arch-string order
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: the config key of each edge's op
EDGE_KEYS: tuple[str, ...] = tuple(f"edge_{i}_{j}" for i, j in EDGES)
NODES = 4

Cell = tuple[str, ...]  # one op per edge of EDGES


def cell_ops(config: Mapping[str, Any]) -> Cell:
    """The six edge ops of a ``model`` config, checked to name known ops."""
    missing = [k for k in EDGE_KEYS if k not in config]
    if missing:
        raise ValueError(f"nb201: the config lacks {', '.join(missing)} (it needs one op per edge: "
                         f"{', '.join(EDGE_KEYS)})")
    ops = tuple(str(config[k]) for k in EDGE_KEYS)
    unknown = sorted({op for op in ops if op not in OPS})
    if unknown:
        raise ValueError(f"nb201: unknown ops {unknown}; expected some of {list(OPS)}")
    return ops


def cell_config(ops: Sequence[str]) -> dict[str, str]:
    """The ``model`` config of the cell ``ops`` (the inverse of :func:`cell_ops`)."""
    return dict(zip(EDGE_KEYS, ops, strict=True))


def arch_string(ops: Sequence[str]) -> str:
    """NAS-Bench-201's text of a cell: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    by_edge = dict(zip(EDGES, ops, strict=True))
    return "+".join("|" + "|".join(f"{by_edge[(i, j)]}~{i}" for i in range(j)) + "|" for j in range(1, NODES))


def parse_arch_string(text: str) -> Cell:
    """The cell of NAS-Bench-201's text ``text`` (see :func:`arch_string`)."""
    by_edge: dict[tuple[int, int], str] = {}
    nodes = text.strip().split("+")
    if len(nodes) != NODES - 1:
        raise ValueError(f"not a NAS-Bench-201 cell string (expected {NODES - 1} nodes joined by '+'): {text!r}")
    for j, node in enumerate(nodes, start=1):
        for part in filter(None, node.split("|")):
            op, _, source = part.partition("~")
            if op not in OPS or not source.isdigit() or int(source) >= j:
                raise ValueError(f"not a NAS-Bench-201 cell string (bad edge {part!r}): {text!r}")
            by_edge[(int(source), j)] = op
    if set(by_edge) != set(EDGES):
        raise ValueError(f"not a NAS-Bench-201 cell string (it must name all 6 edges once): {text!r}")
    return tuple(by_edge[e] for e in EDGES)


def canonical_cell(ops: Sequence[str]) -> Cell:
    """The representative of ``ops``'s equivalence class: dead edges set to ``none``, nodes 1 and 2 ordered."""
    op = dict(zip(EDGES, ops, strict=True))
    alive = [True] + [False] * (NODES - 1)  # node carries a non-zero value
    for i, j in EDGES:  # sources come before targets in EDGES' order
        alive[j] = alive[j] or (alive[i] and op[(i, j)] != "none")
    reaches = [False] * (NODES - 1) + [True]  # node's value reaches the output
    for i, j in reversed(EDGES):
        reaches[i] = reaches[i] or (reaches[j] and op[(i, j)] != "none")
    live = {e: op[e] if op[e] != "none" and alive[e[0]] and reaches[e[1]] else "none" for e in EDGES}
    cell = tuple(live[e] for e in EDGES)
    if live[(1, 2)] == "none":  # nodes 1 and 2 are interchangeable: swap their edges
        swapped = (live[(0, 2)], live[(0, 1)], "none", live[(0, 3)], live[(2, 3)], live[(1, 3)])
        cell = min(cell, swapped, key=lambda c: [OPS.index(o) for o in c])
    return cell


class ReLUConvBN(nn.Module):
    """ReLU -> conv -> batch norm (NAS-Bench-201's ``nor_conv`` ops and the reduction block's convs)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                                nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.op(x)
        return out


def make_op(name: str, channels: int) -> nn.Module:
    """One edge's op at ``channels`` channels, resolution kept (``none`` is never built: see :class:`CellBlock`)."""
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"nb201: no module for op {name!r}; expected one of {list(OPS[1:])}")


class CellBlock(nn.Module):
    """One cell, built from its canonical form: only the live edges are modules; a cell with none outputs zeros."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.cell = canonical_cell(ops)
        self.edges = nn.ModuleDict({f"{i}_{j}": make_op(op, channels)
                                    for (i, j), op in zip(EDGES, self.cell) if op != "none"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x]
        for j in range(1, NODES):
            terms = [self.edges[f"{i}_{j}"](nodes[i]) for i in range(j) if f"{i}_{j}" in self.edges]
            total = terms[0] if terms else None
            for term in terms[1:]:
                total = total + term
            nodes.append(total)
        out = nodes[-1]
        return out if out is not None else torch.zeros_like(x)


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block: a ResNet basic block of stride 2 that doubles the channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_b(self.conv_a(x)) + self.shortcut(x)
        return out


@builders.register("nb201")
def build_nb201(config: Mapping[str, Any], info: ClassificationInfo) -> nn.Module:
    """Stem -> cells -> reduction -> cells -> head, every cell the config's (see the module docstring)."""
    ops = cell_ops(config)
    channels, cells = int(config.get("channels", 8)), int(config.get("cells", 1))
    if channels < 1 or cells < 1:
        raise ValueError(f"nb201: channels and cells must be >= 1, got {channels} and {cells}")
    layers: list[nn.Module] = [nn.Conv2d(info.input_shape[0], channels, 3, padding=1, bias=False),
                               nn.BatchNorm2d(channels)]
    layers += [CellBlock(ops, channels) for _ in range(cells)]
    layers.append(ResidualReduction(channels, 2 * channels))
    layers += [CellBlock(ops, 2 * channels) for _ in range(cells)]
    layers += [nn.BatchNorm2d(2 * channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(2 * channels, info.num_classes)]
    return nn.Sequential(*layers)


@space_checks.register("nb201")
def check_nb201_space(space: SearchSpace) -> list[tuple[tuple[str | int, ...], str]]:
    """Every edge of the cell is in the ``model`` part, as a categorical or a constant naming known ops."""
    model = space.root.child_map().get("model")
    path, group = (("model",), model) if isinstance(model, Group) else ((), space.root)
    children = group.child_map()
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key in EDGE_KEYS:
        node = children.get(key)
        if isinstance(node, Constant):
            values: list[tuple[tuple[str | int, ...], Any]] = [((*path, key), node.value)]
        elif isinstance(node, Categorical):
            values = [((*path, key, "choices", i), c) for i, c in enumerate(node.choices)]
        else:
            problems.append((path, f"nb201: {key} must be a categorical or constant op (one of {list(OPS)})"))
            continue
        problems += [(where, f"nb201: unknown op {value!r}; expected one of {list(OPS)}")
                     for where, value in values if value not in OPS]
    return problems
