"""Joint-DetNAS's network morphism on detnas configs (PAPERS.md §3): one student action per child,
and with probability ``teacher_p`` a neighbouring sub-teacher.

Student actions (stage indices are the config's, 0-based):

=================  ==================================================================================
add_block(s)       stage s gets one more block (its new last block; weight inheritance starts it as
                   the identity)
remove_block(s)    stage s loses its last block
move_downsample    one block crosses the boundary between stages s and s+1, in either direction:
                   (depth[s] - 1, depth[s+1] + 1) moves stage s+1's downsampling block one block
                   earlier, (depth[s] + 1, depth[s+1] - 1) one later; both depths stay in bounds
widen(s)           stage s's width to the next larger choice (moves a channel-doubling position)
narrow(s)          stage s's width to the next smaller choice
prune(s)           stage s's prune ratio to the next smaller choice: inheritance keeps the inner
                   channels with the largest |BN gamma|
=================  ==================================================================================

Un-pruning is deliberately not an action: Joint-DetNAS only prunes (channels once removed have no
weights to inherit, so "un-pruning" would be a fresh re-growth rather than a morphism); a pruned
stage can still grow through ``widen`` and ``add_block``.

A step picks an action *kind* uniformly among the kinds valid for the config, then one of its valid
instances uniformly (so that kinds with many instances, such as ``move_downsample``, do not crowd out
the others). Every bound and choice list is read from the space's nodes (``model.stages[i].depth``,
``.width``, ``.prune`` and ``teacher.depth``, ``teacher.width``: each an int, a numeric categorical
or a constant), so variants of ``detnas.yaml`` with other bounds or choices work unchanged; "next
larger/smaller" and "neighbouring" are by numeric order of the choices. A space without a
``teacher`` group is searched over the student alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from automl.errors import ConfigError
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Categorical, Constant, Group, Int, Node, Repeat

__all__ = ["MORPH_ACTIONS", "MorphAction", "apply_action", "morph_detnas", "valid_actions"]

#: The student actions, in the order :func:`valid_actions` lists them.
MORPH_ACTIONS: tuple[str, ...] = ("add_block", "remove_block", "move_downsample", "widen", "narrow", "prune")


class MorphAction(NamedTuple):
    """One student action: ``name`` (one of :data:`MORPH_ACTIONS`), the ``stage`` it acts on, and for
    ``move_downsample`` the stage the moved block goes to (``to``: ``stage`` +- 1; else None)."""

    name: str
    stage: int
    to: int | None = None


@dataclass(frozen=True)
class _Nodes:
    """The space's nodes that the morphism reads its bounds and choices from."""

    depth: Node
    width: Node
    prune: Node
    teacher_depth: Node | None
    teacher_width: Node | None


def _child(group: Node, name: str, where: str, space: SearchSpace) -> Node:
    if not isinstance(group, Group) or name not in group.child_map():
        raise ConfigError(f"morph_detnas needs the parameter {where} (a detnas space: model.stages is a repeat "
                          f"of {{depth, width, prune}}, teacher is {{depth, width}})",
                          source=space.source, field=where)
    return group.child_map()[name]


def _nodes(space: SearchSpace) -> _Nodes:
    model = _child(space.root, "model", "model", space)
    stages = _child(model, "stages", "model.stages", space)
    if not isinstance(stages, Repeat):
        raise ConfigError(f"model.stages must be a repeat of stage groups, got {stages.describe()}",
                          source=space.source, field="model.stages")
    item = stages.item
    nodes = [_child(item, name, f"model.stages[i].{name}", space) for name in ("depth", "width", "prune")]
    teacher = space.root.child_map().get("teacher")
    t_nodes: list[Node | None] = [None, None]
    if teacher is not None:
        t_nodes = [_child(teacher, name, f"teacher.{name}", space) for name in ("depth", "width")]
    for node, where in zip([*nodes, *t_nodes], ["model.stages[i].depth", "model.stages[i].width",
                                                 "model.stages[i].prune", "teacher.depth", "teacher.width"]):
        if node is not None:
            _values(node, where, space)  # raises for node types the morphism cannot order
    return _Nodes(*nodes, *t_nodes)


def _values(node: Node, where: str, space: SearchSpace) -> list[Any]:
    """The values ``node`` allows, in increasing numeric order."""
    if isinstance(node, Int):
        if node.log:
            return list(range(node.low, node.high + 1))
        return list(range(node.low, node.high + 1, node.step))
    if isinstance(node, Categorical):
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in node.choices):
            raise ConfigError(f"morph_detnas needs numeric choices, got {list(node.choices)}",
                              source=space.source, field=where)
        return sorted(node.choices)
    if isinstance(node, Constant):
        return [node.value]
    raise ConfigError(f"morph_detnas needs an int, a numeric categorical or a constant, got {node.describe()}",
                      source=space.source, field=where)


def _step(values: list[Any], value: Any, direction: int) -> Any | None:
    """The neighbouring value of ``value`` in ``values`` (next larger for +1, smaller for -1), or None."""
    if direction > 0:
        larger = [v for v in values if v > value]
        return min(larger) if larger else None
    smaller = [v for v in values if v < value]
    return max(smaller) if smaller else None


def _stages(config: Config) -> list[dict[str, Any]]:
    try:
        stages = config["model"]["stages"]
    except (KeyError, TypeError):
        raise ConfigError("the config has no model.stages", field="model.stages") from None
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ConfigError(f"expected a list of stage mappings, got {stages!r}", field="model.stages")
    return stages


def valid_actions(space: SearchSpace, config: Config) -> list[MorphAction]:
    """Every student action that keeps ``config`` inside ``space``'s bounds and choices."""
    nodes = _nodes(space)
    depths = _values(nodes.depth, "model.stages[i].depth", space)
    widths = _values(nodes.width, "model.stages[i].width", space)
    prunes = _values(nodes.prune, "model.stages[i].prune", space)
    stages = _stages(config)
    allowed = set(depths)
    out: list[MorphAction] = []
    for s, st in enumerate(stages):
        if st["depth"] + 1 in allowed:
            out.append(MorphAction("add_block", s))
    for s, st in enumerate(stages):
        if st["depth"] - 1 in allowed:
            out.append(MorphAction("remove_block", s))
    for s in range(len(stages) - 1):
        a, b = stages[s]["depth"], stages[s + 1]["depth"]
        if a - 1 in allowed and b + 1 in allowed:
            out.append(MorphAction("move_downsample", s, s + 1))
        if a + 1 in allowed and b - 1 in allowed:
            out.append(MorphAction("move_downsample", s + 1, s))
    for s, st in enumerate(stages):
        if _step(widths, st["width"], +1) is not None:
            out.append(MorphAction("widen", s))
    for s, st in enumerate(stages):
        if _step(widths, st["width"], -1) is not None:
            out.append(MorphAction("narrow", s))
    for s, st in enumerate(stages):
        if _step(prunes, st["prune"], -1) is not None:
            out.append(MorphAction("prune", s))
    return out


def apply_action(space: SearchSpace, config: Config, action: MorphAction) -> tuple[Config, str]:
    """``config`` with ``action`` applied (a new dict; ``config`` is untouched) and a one-line description."""
    if action not in valid_actions(space, config):
        raise ValueError(f"{action} is not a valid morph action for this config (valid: "
                          f"{', '.join(map(_name, valid_actions(space, config))) or 'none'})")
    nodes = _nodes(space)
    new = copy.deepcopy(config)
    stages = new["model"]["stages"]
    st = stages[action.stage]
    if action.name == "add_block":
        st["depth"] += 1
        detail = f"depth {st['depth'] - 1}->{st['depth']}"
    elif action.name == "remove_block":
        st["depth"] -= 1
        detail = f"depth {st['depth'] + 1}->{st['depth']}"
    elif action.name == "move_downsample":
        assert action.to is not None
        before = [s["depth"] for s in stages]
        st["depth"] -= 1
        stages[action.to]["depth"] += 1
        detail = "depths " + ",".join(map(str, before)) + "->" + ",".join(str(s["depth"]) for s in stages)
    elif action.name in ("widen", "narrow"):
        widths = _values(nodes.width, "model.stages[i].width", space)
        old = st["width"]
        st["width"] = _step(widths, old, +1 if action.name == "widen" else -1)
        detail = f"width {old}->{st['width']}"
    else:  # prune
        prunes = _values(nodes.prune, "model.stages[i].prune", space)
        old = st["prune"]
        st["prune"] = _step(prunes, old, -1)
        detail = f"prune {old}->{st['prune']}"
    return new, f"{_name(action)}: {detail}"


def _name(action: MorphAction) -> str:
    if action.name == "move_downsample":
        return f"move_downsample(a block from stage {action.stage} to {action.to})"
    return f"{action.name}(stage {action.stage})"


def _teacher_options(nodes: _Nodes, config: Config, space: SearchSpace) -> list[tuple[str, Any]]:
    """(field, new value) for every neighbouring teacher choice."""
    teacher = config.get("teacher")
    if nodes.teacher_depth is None or not isinstance(teacher, dict):
        return []
    out = []
    for name, node in (("depth", nodes.teacher_depth), ("width", nodes.teacher_width)):
        assert node is not None
        values = _values(node, f"teacher.{name}", space)
        for direction in (-1, +1):
            value = _step(values, teacher[name], direction)
            if value is not None:
                out.append((name, value))
    return out


def morph_detnas(space: SearchSpace, config: Config, rng: np.random.Generator, *,
                 teacher_p: float = 0.3) -> tuple[Config, str]:
    """A child of ``config``: one random valid student action and, with probability ``teacher_p``, the
    teacher moved to a neighbouring depth or width choice. Returns the new (validated) config and a
    one-line description such as ``"add_block(stage 1): depth 2->3; teacher width 0.75->1.0"``.

    Deterministic for a given ``rng`` state. Raises :class:`ConfigError` when the space lacks the
    detnas parameters or when no student action is valid (every stage parameter fixed).
    """
    if not 0.0 <= teacher_p <= 1.0:
        raise ValueError(f"teacher_p must be in [0, 1], got {teacher_p}")
    nodes = _nodes(space)
    actions = valid_actions(space, config)
    if not actions:
        raise ConfigError(f"no morph action is valid for {space.name!r}: every stage's depth, width and prune "
                          f"is at a fixed or extreme value", source=space.source, field="model.stages")
    kinds = [k for k in MORPH_ACTIONS if any(a.name == k for a in actions)]
    kind = kinds[int(rng.integers(0, len(kinds)))]
    of_kind = [a for a in actions if a.name == kind]
    new, description = apply_action(space, config, of_kind[int(rng.integers(0, len(of_kind)))])
    if rng.random() < teacher_p:
        options = _teacher_options(nodes, new, space)
        if options:
            fields = sorted({name for name, _ in options})  # depth or width first, then a direction
            name = fields[int(rng.integers(0, len(fields)))]
            values = [v for n, v in options if n == name]
            value = values[int(rng.integers(0, len(values)))]
            description += f"; teacher {name} {new['teacher'][name]}->{value}"
            new["teacher"][name] = value
    new = space.complete(new, rng)  # a parameter whose condition a change switched on/off (user variants)
    space.validate(new)
    return new, description
