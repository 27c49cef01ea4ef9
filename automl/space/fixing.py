"""Holding parts of a space fixed: what a pipeline step's ``fix:`` does, and how ``search: train`` searches
the training part of a config with its ``model`` part fixed to an incoming candidate's."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from automl.errors import ConfigError
from automl.space.model import SearchSpace
from automl.space.nodes import Constant, Group, Node


def fix_space(space: SearchSpace, values: Mapping[str, Any], *, name: str | None = None,
              where: str = "fix") -> SearchSpace:
    """``space`` with the parameters named by ``values`` (a nested mapping of the config's shape) held at
    those values: each becomes a constant (keeping its ``when``), so strategies search the rest. A name
    the space does not have, or a value a parameter cannot take, is a ConfigError (field ``where``)."""
    root = _fix(space.root, values, (), where)
    fixed = dataclasses.replace(space, name=name or space.name, root=root,
                                document={**space.document, "fixed": _plain(values)})
    rng = np.random.default_rng(0)
    problems = space.problems(fixed.sample(rng))
    if problems:
        raise ConfigError("the fixed values do not fit the space: " + "; ".join(problems), field=where)
    return fixed


def space_from_document(document: Mapping[str, Any], source: str | None = None, *,
                        trust_code: bool = False) -> SearchSpace:
    """The space a study recorded (its ``document``, as :attr:`SearchSpace.document` holds it): read again,
    with the parts a pipeline step held fixed (``fixed``) fixed again, so its fingerprint is the study's.
    ``trust_code``: as for :func:`automl.space.loader.space_from_dict` (a ledger is data too)."""
    from automl.space.loader import space_from_dict

    space = space_from_dict({k: v for k, v in document.items() if k != "fixed"}, source=source,
                            trust_code=trust_code)
    fixed = document.get("fixed")
    return fix_space(space, fixed) if fixed else space


def free_part(space: SearchSpace, config: Mapping[str, Any], searched: str | list[str]) -> dict[str, Any]:
    """The parts of ``config`` to hold fixed when only ``searched`` (top-level parts, e.g. ``train``) are
    searched: every other top-level part of the space."""
    parts = [searched] if isinstance(searched, str) else list(searched)
    known = [n for n, _ in space.root.children]
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise ConfigError(f"the space has no part {unknown[0]!r} to search (its parts: {', '.join(known)})",
                          field="search")
    return {k: v for k, v in config.items() if k not in parts and k in known}


def _fix(node: Group, values: Mapping[str, Any], path: tuple[str, ...], where: str) -> Group:
    children = dict(node.children)
    for key, value in values.items():
        if key not in children:
            at = ".".join((*path, key))
            raise ConfigError(f"{at}: the space has no parameter {key!r} here (it has "
                              f"{', '.join(children) or 'nothing'})", field=where)
        child: Node = children[key]
        if isinstance(child, Group) and isinstance(value, Mapping):
            children[key] = _fix(child, value, (*path, key), where)
        else:
            children[key] = Constant(value=value, when=child.when)
    return dataclasses.replace(node, children=tuple((k, children[k]) for k, _ in node.children))


def _plain(values: Any) -> Any:
    if isinstance(values, Mapping):
        return {str(k): _plain(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return [_plain(v) for v in values]
    return values
