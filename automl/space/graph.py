"""The ``graph`` node: a DAG of operations over named inputs, e.g. an attention cell over Q, K, V.

A graph config is a list of nodes ``{"op": NAME, "inputs": [REF, ...]}`` where a REF is an input
name or the index of another node; the last node is the output. Validity (known ops, arity, no
cycles, every node feeding the output) is checked with networkx. The canonical form is the output's
expression with the arguments of commutative ops sorted, so isomorphic graphs share one key.

When the ops are :mod:`primitives <automl.space.primitives>` and the inputs carry symbolic shapes,
every node's shape is inferred and a cell whose shapes do not fit (``Q·K`` with ``K`` not transposed,
an output of the wrong shape) is invalid, so it is never sampled, mutated into or trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import networkx as nx
import numpy as np

from automl.expr import Expr
from automl.space.nodes import Node, Path, path_str
from automl.space.primitives import PRIMITIVES, Shape, write

GraphConfig = list[dict[str, Any]]
SAMPLE_TRIES = 1000
MUTATE_TRIES = 100
OpChooser = Callable[[np.random.Generator, int], str]
"""Draws the op for a mutated node given its arity (op-priority evolution draws by priority)."""


@dataclass(frozen=True)
class Graph(Node):
    inputs: tuple[str, ...]
    ops: tuple[tuple[str, int], ...]  # (op name, arity)
    min_nodes: int
    max_nodes: int
    commutative: frozenset[str] = frozenset()
    when: Expr | None = None
    input_shapes: tuple[Shape, ...] = ()  # one per input when shapes are checked (ops are then primitives)
    output_shape: Shape | None = None
    references: tuple[tuple[str, str], ...] = ()  # named reference cells (name, JSON), e.g. vanilla attention

    @property
    def arity(self) -> Mapping[str, int]:
        return dict(self.ops)

    @property
    def shaped(self) -> bool:
        return bool(self.input_shapes)

    def reference(self, name: str) -> GraphConfig:
        """The reference cell ``name`` declared in the space (e.g. ``bert``: vanilla self-attention)."""
        cells = dict(self.references)
        if name not in cells:
            raise KeyError(f"no reference cell {name!r}; declared: {sorted(cells)}")
        cell: GraphConfig = json.loads(cells[name])
        return cell

    def describe(self) -> str:
        if self.shaped:
            over = ", ".join(f"{n}[{'×'.join(s)}]" for n, s in zip(self.inputs, self.input_shapes))
            over += f" -> {'×'.join(self.output_shape or ())}"
        else:
            over = ", ".join(self.inputs)
        return f"graph over {over}, {self.min_nodes}..{self.max_nodes} nodes, ops {', '.join(o for o, _ in self.ops)}"

    # -- sampling -------------------------------------------------------------------------------
    def _random_op(self, rng: np.random.Generator, arity: int | None = None) -> str:
        names = [o for o, a in self.ops if arity is None or a == arity]
        return names[int(rng.integers(0, len(names)))]

    def _random_ref(self, rng: np.random.Generator, before: int) -> str | int:
        refs: list[str | int] = [*self.inputs, *range(before)]
        return refs[int(rng.integers(0, len(refs)))]

    def sample(self, rng: np.random.Generator) -> GraphConfig:
        """A random valid graph (drawn again until its shapes fit, when they are checked)."""
        for _ in range(SAMPLE_TRIES):
            nodes = self._draw(rng)
            if not self.shaped or not self.check(nodes, ()):
                return nodes
        raise ValueError(f"no shape-valid graph found in {SAMPLE_TRIES} random draws of {self.describe()}")

    def _draw(self, rng: np.random.Generator) -> GraphConfig:
        n = int(rng.integers(self.min_nodes, self.max_nodes + 1))
        nodes: GraphConfig = []
        for i in range(n):
            op = self._random_op(rng)
            refs: list[str | int] = [i - 1 if i > 0 else self._random_ref(rng, 0)]
            refs += [self._random_ref(rng, i) for _ in range(self.arity[op] - 1)]
            rng.shuffle(refs)
            nodes.append({"op": op, "inputs": refs})
        return _prune(nodes)

    # -- validity -------------------------------------------------------------------------------
    def to_networkx(self, nodes: GraphConfig) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(f"in:{name}" for name in self.inputs)
        for i, node in enumerate(nodes):
            g.add_node(i, op=node.get("op"))
            for ref in node.get("inputs", []):
                g.add_edge(ref if isinstance(ref, int) else f"in:{ref}", i)
        return g

    def check(self, value: Any, path: Path) -> list[str]:
        where = path_str(path)
        if not isinstance(value, list) or not all(isinstance(n, dict) for n in value):
            return [f"{where}: expected a list of {{op, inputs}} nodes, got {value!r}"]
        problems: list[str] = []
        if not self.min_nodes <= len(value) <= self.max_nodes:
            problems.append(f"{where}: {len(value)} nodes is outside [{self.min_nodes}, {self.max_nodes}]")
        for i, node in enumerate(value):
            op, refs = node.get("op"), node.get("inputs")
            if set(node) - {"op", "inputs"}:
                problems.append(f"{where}[{i}]: unknown keys {sorted(set(node) - {'op', 'inputs'})}")
            if not isinstance(op, str) or op not in self.arity:
                problems.append(f"{where}[{i}].op: {op!r} is not one of {list(self.arity)}")
                continue
            if not isinstance(refs, list) or len(refs) != self.arity[op]:
                problems.append(f"{where}[{i}].inputs: {op} takes {self.arity[op]} inputs, got {refs!r}")
                continue
            for ref in refs:
                ok = (isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(value) and ref != i) or (
                    isinstance(ref, str) and ref in self.inputs)
                if not ok:
                    problems.append(f"{where}[{i}].inputs: {ref!r} is neither an input {list(self.inputs)} "
                                    f"nor another node's index")
        if problems or not value:
            return problems or [f"{where}: a graph needs at least one node"]
        g = self.to_networkx(value)
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            return [f"{where}: the graph has a cycle through nodes {[u for u, _ in cycle]}"]
        output = len(value) - 1
        feeding = nx.ancestors(g, output) | {output}
        dead = [i for i in range(len(value)) if i not in feeding]
        if dead:
            problems.append(f"{where}: nodes {dead} do not feed the output (the last node)")
        if not any(f"in:{name}" in feeding for name in self.inputs):
            problems.append(f"{where}: the output does not depend on any input {list(self.inputs)}")
        if not problems and self.shaped:
            problems.extend(self._shape_problems(value, where))
        return problems

    # -- shapes -----------------------------------------------------------------------------------
    def shapes(self, nodes: GraphConfig) -> list[Shape | None]:
        """Each node's inferred shape (None where its operands' shapes do not fit its op)."""
        known: dict[Any, Shape | None] = dict(zip(self.inputs, self.input_shapes))
        for i in self.order(nodes):
            operands = [known[ref] for ref in nodes[i]["inputs"]]
            known[i] = None
            if all(o is not None for o in operands):
                known[i] = PRIMITIVES[nodes[i]["op"]].result_shape(tuple(operands))  # type: ignore[arg-type]
        return [known[i] for i in range(len(nodes))]

    def order(self, nodes: GraphConfig) -> list[int]:
        """The nodes' indices in an order where every node comes after its inputs."""
        return [k for k in nx.topological_sort(self.to_networkx(nodes)) if isinstance(k, int)]

    def _shape_problems(self, nodes: GraphConfig, where: str) -> list[str]:
        shapes = self.shapes(nodes)
        known: dict[Any, Shape | None] = {**dict(zip(self.inputs, self.input_shapes)), **dict(enumerate(shapes))}
        for i in self.order(nodes):
            if known[i] is None and all(known[r] is not None for r in nodes[i]["inputs"]):
                got = " and ".join("x".join(known[r]) for r in nodes[i]["inputs"])  # type: ignore[arg-type]
                return [f"{where}[{i}]: {nodes[i]['op']} does not fit operand shapes {got}"]
        if shapes[-1] != self.output_shape:
            return [f"{where}: the output (node {len(nodes) - 1}) has shape {'x'.join(shapes[-1])}, "  # type: ignore[arg-type]
                    f"expected {'x'.join(self.output_shape)}"]  # type: ignore[arg-type]
        return []

    # -- canonical form ---------------------------------------------------------------------------
    def expression(self, nodes: GraphConfig) -> str:
        """The output as one expression, e.g. ``matmul(softmax(matmul(q,transpose(k))),v)``."""
        order = list(nx.topological_sort(self.to_networkx(nodes)))
        memo: dict[Any, str] = {f"in:{name}": name for name in self.inputs}
        for key in order:
            if key in memo:
                continue
            node = nodes[key]
            args = [memo[r if isinstance(r, int) else f"in:{r}"] for r in node["inputs"]]
            if node["op"] in self.commutative:
                args.sort()
            memo[key] = f"{node['op']}({','.join(args)})"
        return memo[len(nodes) - 1]

    def canonical(self, value: Any) -> str:
        return self.expression(value)

    def formula(self, nodes: GraphConfig) -> str:
        """The output in math notation, e.g. ``softmax(Q·Kᵀ/√d)·V`` (inputs upper-cased); graphs whose
        ops are not primitives are written as their canonical expression."""
        if any(node["op"] not in PRIMITIVES for node in nodes):
            return self.expression(nodes)
        written: dict[Any, tuple[str, int]] = {name: (name.upper(), 5) for name in self.inputs}
        for i in self.order(nodes):
            written[i] = write(PRIMITIVES[nodes[i]["op"]], [written[ref] for ref in nodes[i]["inputs"]])
        return written[len(nodes) - 1][0]

    # -- mutation -------------------------------------------------------------------------------
    def mutate(self, nodes: GraphConfig, rng: np.random.Generator, choose_op: OpChooser | None = None) -> GraphConfig:
        """Replace an op, rewire an input, insert a node or delete one; always returns a valid graph.

        New ops come from ``choose_op(rng, arity)`` when given, else uniformly from the graph's ops.
        """
        draw: OpChooser = choose_op if choose_op is not None else (lambda r, arity: self._random_op(r, arity))
        original = self.expression(nodes)
        for _ in range(MUTATE_TRIES):
            candidate = [{"op": n["op"], "inputs": list(n["inputs"])} for n in nodes]
            kind = ("replace", "rewire", "insert", "delete")[int(rng.integers(0, 4))]
            i = int(rng.integers(0, len(candidate)))
            if kind == "replace":
                candidate[i]["op"] = draw(rng, self.arity[candidate[i]["op"]])
            elif kind == "rewire":
                slot = int(rng.integers(0, len(candidate[i]["inputs"])))
                candidate[i]["inputs"][slot] = self._random_ref(rng, i)
            elif kind == "insert" and len(candidate) < self.max_nodes:
                candidate = _insert(candidate, i, self, rng, draw)
            elif kind == "delete" and len(candidate) > self.min_nodes:
                candidate = _delete(candidate, i)
            else:
                continue
            candidate = _prune(candidate)
            if not self.check(candidate, ()) and self.expression(candidate) != original:
                return candidate
        return nodes

    def neighbours(self, nodes: GraphConfig) -> list[GraphConfig]:
        """Every graph one op replacement away (the cheap, exhaustive neighbourhood)."""
        out = []
        for i, node in enumerate(nodes):
            for op in (o for o, a in self.ops if a == self.arity[node["op"]] and o != node["op"]):
                candidate = [dict(n, inputs=list(n["inputs"])) for n in nodes]
                candidate[i]["op"] = op
                out.append(candidate)
        return out


def _shift(ref: str | int, at: int, by: int) -> str | int:
    return ref + by if isinstance(ref, int) and ref >= at else ref


def _insert(nodes: GraphConfig, i: int, graph: Graph, rng: np.random.Generator, draw: OpChooser) -> GraphConfig:
    """Insert a new node just before node ``i``, taking one of ``i``'s inputs and feeding that slot."""
    slot = int(rng.integers(0, len(nodes[i]["inputs"])))
    source = nodes[i]["inputs"][slot]
    arities = sorted({a for _, a in graph.ops})
    op = draw(rng, arities[int(rng.integers(0, len(arities)))])
    refs: list[str | int] = [source] + [graph._random_ref(rng, i) for _ in range(graph.arity[op] - 1)]
    shifted = [{"op": n["op"], "inputs": [_shift(r, i, 1) for r in n["inputs"]]} for n in nodes]
    shifted.insert(i, {"op": op, "inputs": refs})
    shifted[i + 1]["inputs"][slot] = i
    return shifted


def _delete(nodes: GraphConfig, i: int) -> GraphConfig:
    """Delete node ``i``; its consumers read its first input instead."""
    if i == len(nodes) - 1 and len(nodes) > 1 and nodes[i]["inputs"][0] != i - 1:
        return nodes  # deleting the output only makes sense when its first input is the previous node
    bypass = nodes[i]["inputs"][0]
    out = []
    for j, node in enumerate(nodes):
        if j == i:
            continue
        refs = [bypass if r == i else r for r in node["inputs"]]
        out.append({"op": node["op"], "inputs": [r - 1 if isinstance(r, int) and r > i else r for r in refs]})
    return out


def _prune(nodes: GraphConfig) -> GraphConfig:
    """Drop nodes that do not feed the output and renumber the rest (keeps topological order)."""
    if not nodes:
        return nodes
    live = {len(nodes) - 1}
    for j in range(len(nodes) - 1, -1, -1):
        if j in live:
            live.update(r for r in nodes[j]["inputs"] if isinstance(r, int))
    index = {old: new for new, old in enumerate(sorted(live))}
    return [
        {"op": nodes[old]["op"], "inputs": [index[r] if isinstance(r, int) else r for r in nodes[old]["inputs"]]}
        for old in sorted(live)
    ]
