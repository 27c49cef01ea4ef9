"""Shared fixtures: small spaces written the way users write them."""
from __future__ import annotations

from pathlib import Path

import pytest

import automl

REPO = Path(__file__).resolve().parents[1]
ISSUE_EXAMPLE = REPO / "search_spaces" / "digits-mlp.yaml"

TOY_YAML = """
name: toy
objectives: {loss: min}
space:
  x: {type: float, low: -5.0, high: 5.0}
  n: {type: int, low: 1, high: 64, log: true}
  kind: {type: categorical, choices: [a, b, c]}
  flag: {type: bool}
  extra: {type: float, low: 0.0, high: 1.0, when: "kind == 'b'"}
  blocks:
    type: repeat
    min: 1
    max: 3
    item:
      width: {type: int, low: 4, high: 32, step: 4}
      act: {type: categorical, choices: [relu, tanh]}
      slope: {type: float, low: 0.0, high: 0.3, when: "act == 'relu'"}
"""

GRAPH_YAML = """
name: cells
space:
  cell:
    type: graph
    inputs: [q, k, v]
    ops: {neg: 1, softmax: 1, transpose: 1, add: 2, matmul: 2}
    commutative: [add]
    min_nodes: 2
    max_nodes: 6
"""


@pytest.fixture
def toy_space() -> automl.SearchSpace:
    return automl.space_from_yaml(TOY_YAML, source="toy.yaml")


@pytest.fixture
def graph_space() -> automl.SearchSpace:
    return automl.space_from_yaml(GRAPH_YAML, source="cells.yaml")


def toy_objective(config: dict) -> float:
    """A deterministic function of the toy space with an optimum at x=1, kind=c, wide blocks."""
    loss = (config["x"] - 1.0) ** 2 + (0.0 if config["kind"] == "c" else 1.0)
    loss += sum(1.0 / b["width"] for b in config["blocks"])
    return loss


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests train small models: one thread avoids OpenMP oversubscription on a busy 2-core box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
