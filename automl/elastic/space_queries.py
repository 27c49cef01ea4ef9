"""Reading what a supernet can take from a search space: a supernet factory receives the whole space;
these helpers read what a part of it can take and raise ConfigError (naming the parameter) when the
part is not of the shape the supernet supports."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from automl.errors import ConfigError
from automl.space.model import SearchSpace
from automl.space.nodes import Bool, Categorical, Constant, Group, Int, Node, Repeat


def space_group(space: SearchSpace, name: str = "model", *, supernet: str = "this supernet") -> Group:
    """The group ``name`` (usually ``model``, what the builder receives) of ``space``'s parameters."""
    node = space.root.child_map().get(name)
    if not isinstance(node, Group):
        found = "missing" if node is None else f"a {node.describe()}"
        raise ConfigError(f"{supernet} needs a group of parameters under {name!r}; it is {found}",
                          source=space.source, field=name)
    return node


def repeated_blocks(space: SearchSpace, name: str, what: str, *, supernet: str = "this supernet") -> Repeat:
    """The repeat ``model.<name>`` of groups (the blocks or layers a supernet stacks), checked."""
    node = space_group(space, "model", supernet=supernet).child_map().get(name)
    if not isinstance(node, Repeat) or not isinstance(node.item, Group):
        found = "missing" if node is None else node.describe()
        raise unsupported(space, f"model.{name}", f"expected a repeat of {what} (groups), got {found}",
                          supernet=supernet)
    return node


def unsupported(space: SearchSpace, where: str, message: str, *, supernet: str = "this supernet") -> ConfigError:
    """A ConfigError saying that ``where`` in ``space`` is not a shape the supernet supports."""
    return ConfigError(f"{supernet} does not support this space: {message}", source=space.source, field=where)


def int_values(node: Node, where: str) -> Sequence[int]:
    """Every integer ``node`` (an int, a categorical of integers or a constant integer) can take."""
    if isinstance(node, Int):
        return range(node.low, node.high + 1, node.step)
    values = node.choices if isinstance(node, Categorical) else (node.value,) if isinstance(node, Constant) else None
    ints = [v for v in values or () if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    if values is None or not values or len(ints) != len(values):
        raise ConfigError(f"expected an integer parameter (int, categorical of integers or constant), "
                          f"got {node.describe()}", field=where)
    return tuple(int(v) for v in ints)


def bool_values(node: Node | None, where: str, default: bool) -> frozenset[bool]:
    """The truth values ``node`` (a bool or a constant; absent means ``default``) can take."""
    if node is None:
        return frozenset({default})
    if isinstance(node, Bool):
        return frozenset({False, True})
    values = node.choices if isinstance(node, Categorical) else (node.value,) if isinstance(node, Constant) else None
    if values is None or not all(isinstance(v, bool) for v in values):
        raise ConfigError(f"expected a bool parameter, got {node.describe()}", field=where)
    return frozenset(values)


def str_values(node: Node | None, where: str, default: str) -> tuple[str, ...]:
    """The strings ``node`` (a categorical or a constant; absent means ``default``) can take."""
    if node is None:
        return (default,)
    values = node.choices if isinstance(node, Categorical) else (node.value,) if isinstance(node, Constant) else None
    if values is None or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"expected a categorical of names, got {node.describe()}", field=where)
    return tuple(values)
