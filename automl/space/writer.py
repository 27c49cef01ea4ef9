"""Writing a :class:`SearchSpace` as our YAML (``automl spaces convert``): loading the written text gives
an equivalent space -- the same parameters, conditions and constraints, and the same key for the same
config -- whatever the space was read from (our YAML, NNI's JSON, ConfigSpace's JSON or PCS).

The document is built from the space's typed nodes, not from the text it was read from: conditions
and constraints are written as they were parsed (names resolve the same way, since the tree keeps
its shape), parameters in their declaration order, each leaf on one line.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

from automl.space.graph import Graph
from automl.space.model import SearchSpace
from automl.space.nodes import (
    Bool,
    Categorical,
    Constant,
    Float,
    Group,
    Int,
    Node,
    Normal,
    Repeat,
    SearchDefaults,
    Subset,
)
from automl.space.primitives import PRIMITIVES

__all__ = ["convert_to_yaml", "differences", "space_to_document", "space_to_yaml"]


class _Flow(dict[str, Any]):
    """A mapping written on one line (``{type: float, low: 0, high: 1}``)."""


class _Expression(str):
    """A condition or constraint, written in double quotes (they often hold single-quoted strings)."""


class _FlowList(list[Any]):
    """A list written on one line (``[relu, gelu]``)."""


#: a leaf whose one-line form (with its name) would be longer than this is written as a block
FLOW_WIDTH = 112


#: PyYAML's safe dumper, with :class:`_Flow` mappings on one line (a subclass: the global one is left alone)
_Dumper: Any = type("_Dumper", (yaml.SafeDumper,), {})


def _flow(dumper: Any, data: _Flow) -> Any:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


def _flow_list(dumper: Any, data: _FlowList) -> Any:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)


def _expression(dumper: Any, data: _Expression) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style='"')


_Dumper.add_representer(_Flow, _flow)
_Dumper.add_representer(_Expression, _expression)
_Dumper.add_representer(_FlowList, _flow_list)


def space_to_yaml(space: SearchSpace) -> str:
    """The YAML text of :func:`space_to_document`."""
    header = f"# converted from {space.source}\n" if space.source else ""
    body: str = yaml.dump(space_to_document(space), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                          width=120, default_flow_style=False)
    return header + body


def space_to_document(space: SearchSpace) -> dict[str, Any]:
    """The space as the document :func:`automl.space.loader.space_from_dict` reads."""
    doc: dict[str, Any] = {"name": space.name}
    description = space.document.get("description")
    if isinstance(description, str):
        doc["description"] = description
    if space.task is not None:
        doc["task"] = _named(space.task, space.task_options)
    if space.builder is not None:
        doc["builder"] = space.builder
    if space.estimator != "train" or space.estimator_options:
        doc["estimator"] = _named(space.estimator, space.estimator_options)
    if space.regimes:
        regimes = [_named(name, options) for name, options in space.regimes]
        doc["regime"] = regimes[0] if len(regimes) == 1 else regimes
    if space.metrics:
        doc["metrics"] = [_named(name, options) for name, options in space.metrics]
    if space.objectives:
        doc["objectives"] = {o.name: o.direction for o in space.objectives}
    constraints = [_Expression(c) for c in (*space.constraints, *space.config_constraints)]
    if constraints:
        doc["constraints"] = constraints
    if space.budget is not None:
        doc["budget"] = _Flow(name=space.budget.name, min=space.budget.min, max=space.budget.max)
    if space.selection[0] != "best-value" or space.selection[1]:
        doc["selection"] = _named(*space.selection)
    search = _search(space.defaults)
    if search:
        doc["search"] = search
    doc["space"] = _group(space.root)
    return doc


def _named(name: str, options: Any) -> Any:
    return {"name": name, "options": _plain(options)} if options else name


def _search(defaults: SearchDefaults) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if defaults.strategy != SearchDefaults.strategy:
        out["strategy"] = defaults.strategy
    if defaults.trials != SearchDefaults.trials:
        out["trials"] = defaults.trials
    if defaults.options:
        out["options"] = _plain(defaults.options)
    pruner = getattr(defaults, "pruner", None)  # newer spaces: the pruner that stops trials early
    if pruner is not None:
        out["pruner"] = _plain(pruner)
    return out


def _group(node: Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node.when is not None:
        out["when"] = _Expression(node.when)
    for name, child in node.children:
        out[name] = _node(child, name)
    return out


def _node(node: Node, name: str | int) -> Any:
    when = {"when": _Expression(node.when)} if node.when is not None else {}
    if isinstance(node, Group):
        return _group(node)
    if isinstance(node, Repeat):
        return {"type": "repeat", "min": node.min, "max": node.max, "item": _node(node.item, "item"), **when}
    if isinstance(node, Graph):
        return {**_graph(node), **when}
    if isinstance(node, Constant):
        plain = not isinstance(node.value, dict) and name not in ("type", "when")
        return _plain(node.value) if plain and not when else _Flow(type="constant", value=_plain(node.value), **when)
    spec = _Flow(_leaf(node))
    spec.update(when)
    one_line = yaml.dump({name: spec}, Dumper=_Dumper, allow_unicode=True, width=10_000)
    return spec if len(one_line) <= FLOW_WIDTH else {k: _plain_flow(v) for k, v in spec.items()}


def _leaf(node: Node) -> dict[str, Any]:
    if isinstance(node, (Float, Int)):
        spec: dict[str, Any] = {"type": "float" if isinstance(node, Float) else "int",
                                "low": node.low, "high": node.high}
        if node.log:
            spec["log"] = True
        if isinstance(node, Float) and node.step is not None:
            spec["step"] = node.step
        if isinstance(node, Int) and node.step != 1:
            spec["step"] = node.step
        if node.prior is not None:
            spec["prior"] = _Flow(node.prior.spec())
        return spec
    if isinstance(node, Normal):
        spec = {"type": "normal", "mu": node.mu, "sigma": node.sigma}
        if node.log:
            spec["log"] = True
        if node.step is not None:
            spec["step"] = node.step
        return spec
    if isinstance(node, Categorical):
        spec = {"type": "categorical", "choices": [_plain(c) for c in node.choices]}
        if node.weights is not None:
            spec["weights"] = list(node.weights)
        return spec
    if isinstance(node, Subset):
        spec = {"type": "subset", "choices": list(node.choices)}
        if node.size is not None:
            spec["size"] = node.size
        return spec
    if isinstance(node, Bool):
        return {"type": "bool"}
    raise TypeError(f"cannot write a {type(node).__name__} parameter")


def _graph(node: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "graph"}
    if node.shaped:
        spec["inputs"] = {name: list(shape) for name, shape in zip(node.inputs, node.input_shapes)}
        spec["output"] = list(node.output_shape or ())
    else:
        spec["inputs"] = list(node.inputs)
    as_primitives = node.shaped or all(op in PRIMITIVES and PRIMITIVES[op].arity == a for op, a in node.ops)
    if as_primitives:
        spec["ops"] = [op for op, _ in node.ops]
        extra = sorted(node.commutative - {op for op, _ in node.ops if PRIMITIVES[op].commutative})
    else:
        spec["ops"] = _Flow({op: arity for op, arity in node.ops})
        extra = sorted(node.commutative)
    if extra:
        spec["commutative"] = extra
    spec["min_nodes"] = node.min_nodes
    spec["max_nodes"] = node.max_nodes
    if node.references:
        spec["reference"] = {name: [_Flow(n) for n in json.loads(cell)] for name, cell in node.references}
    return spec


def _plain_flow(value: Any) -> Any:
    """A long leaf's value, its nested mappings (a prior) and lists (choices) kept on one line."""
    if isinstance(value, dict):
        return _Flow(value)
    return _FlowList(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    """``value`` with mappings and sequences as plain dicts and lists (tuples, MappingProxy...)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def convert_to_yaml(space: SearchSpace, source: str | None = None) -> str:
    """:func:`space_to_yaml`, checked: the text is loaded again (as file ``source``) and must give an
    equivalent space (same parameters, conditions and constraints, same keys for sampled configs)."""
    import numpy as np

    from automl.errors import ConfigError
    from automl.space.loader import space_from_yaml

    text = space_to_yaml(space)
    written = space_from_yaml(text, source=source)
    problems = differences(space, written, np.random.default_rng(0))
    if problems:
        raise ConfigError(f"the written YAML is not equivalent to space {space.name!r}: " + "; ".join(problems[:3]),
                          source=source)
    return text


def differences(a: SearchSpace, b: SearchSpace, rng: Any, samples: int = 20) -> list[str]:
    """How ``b`` differs from ``a`` (empty when equivalent): parameters, conditions, constraints, and
    the validity and key of configs sampled from ``a``."""
    out: list[str] = []
    leaves_a = [(p, n.describe(), str(n.when)) for p, n in a.leaves()]
    leaves_b = [(p, n.describe(), str(n.when)) for p, n in b.leaves()]
    if leaves_a != leaves_b:
        out.extend(f"{x} became {y}" for x, y in zip(leaves_a, leaves_b) if x != y)
        if len(leaves_a) != len(leaves_b):
            out.append(f"{len(leaves_a)} parameters became {len(leaves_b)}")
    for what, x, y in (("constraints", a.constraints, b.constraints),
                       ("constraints on parameters", a.config_constraints, b.config_constraints)):
        if [str(c) for c in x] != [str(c) for c in y]:
            out.append(f"{what} {[str(c) for c in x]} became {[str(c) for c in y]}")
    if not out:
        for _ in range(samples):
            config = a.sample(rng)
            problems = b.problems(config)
            if problems or a.key(config) != b.key(config):
                out.append(f"config {config} " + (f"is invalid there: {problems[0]}" if problems
                                                  else "has another key"))
                break
    return out
