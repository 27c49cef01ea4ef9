"""Torch implementations of the attention-cell primitives, and a cell compiled to run them.

A cell is a graph config over the per-head projections ``q``, ``k``, ``v`` (each tokens x head width,
``T x d``; see :mod:`automl.space.primitives`). Padding is handled where it matters: the padded
positions of ``q``, ``k`` and ``v`` are zeroed, so sums over tokens ignore them, and a softmax over a
token axis gives padded tokens no weight (as BERT's additive attention mask does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from automl.space.graph import Graph, GraphConfig
from automl.space.primitives import PRIMITIVES

INPUTS = ("q", "k", "v")
TOKENS, WIDTH = "T", "d"
#: the cell contract of the autobert builder: q, k, v and the output are tokens x head width
CELL = Graph(inputs=INPUTS, ops=tuple((name, p.arity) for name, p in PRIMITIVES.items()), min_nodes=1,
             max_nodes=1_000_000, input_shapes=((TOKENS, WIDTH),) * 3, output_shape=(TOKENS, WIDTH))

TORCH_OPS: Mapping[str, Callable[..., torch.Tensor]] = MappingProxyType({
    "neg": torch.neg,
    "transpose": lambda x: x.transpose(-1, -2),
    "logsigmoid": F.logsigmoid,
    "softsign": F.softsign,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "add": torch.add,
    "mul": torch.mul,
    "matmul": torch.matmul,
    "max": torch.maximum,
    "min": torch.minimum,
    # "scale" and "softmax" need the head width and the padding mask: see CellProgram.run
})


@dataclass(frozen=True)
class Step:
    op: str
    inputs: tuple[Any, ...]  # input names or earlier node indices
    over_tokens: bool  # a softmax whose last axis runs over tokens (padded tokens are masked out)


@dataclass(frozen=True)
class CellProgram:
    """A cell in execution order; ``run`` evaluates it on (batch, heads, T, d) tensors."""

    steps: tuple[tuple[int, Step], ...]
    output: int

    @classmethod
    def compile(cls, nodes: GraphConfig) -> CellProgram:
        problems = CELL.check(nodes, ())
        if problems:
            raise ValueError("invalid attention cell: " + "; ".join(problems))
        shapes: dict[Any, Any] = {**{name: (TOKENS, WIDTH) for name in INPUTS}, **dict(enumerate(CELL.shapes(nodes)))}
        steps = []
        for i in CELL.order(nodes):
            node = nodes[i]
            over_tokens = node["op"] == "softmax" and shapes[node["inputs"][0]][1] == TOKENS
            steps.append((i, Step(node["op"], tuple(node["inputs"]), over_tokens)))
        return cls(steps=tuple(steps), output=len(nodes) - 1)

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """``token_mask``: (batch, T) bool, True for real tokens."""
        keep = token_mask[:, None, :, None].to(q.dtype)
        values: dict[Any, torch.Tensor] = {"q": q * keep, "k": k * keep, "v": v * keep}
        for index, step in self.steps:
            args = [values[ref] for ref in step.inputs]
            if step.op == "scale":
                out = args[0] / math.sqrt(q.shape[-1])
            elif step.op == "softmax":
                x = args[0]
                if step.over_tokens:
                    x = x.masked_fill(~token_mask[:, None, None, :], torch.finfo(x.dtype).min)
                out = torch.softmax(x, dim=-1)
            else:
                out = TORCH_OPS[step.op](*args)
            values[index] = out
        return values[self.output]
