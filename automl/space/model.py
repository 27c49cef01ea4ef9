"""SearchSpace: the immutable, validated space a study searches, and Candidate: one config + its key."""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from optuna.distributions import BaseDistribution, IntDistribution

from automl.errors import ConfigError
from automl.expr import Expr, Missing, name_parts
from automl.space.graph import Graph, OpChooser
from automl.space.nodes import (
    Budget,
    Categorical,
    Float,
    Group,
    Int,
    Leaf,
    Node,
    Objective,
    Path,
    Repeat,
    SearchDefaults,
    path_str,
)
from automl.space.paths import YamlPath, error_at

Config = dict[str, Any]
_MISSING = object()
#: draws a config that breaks a constraint on parameters is drawn again, at most this often
RESAMPLE_TRIES = 1000


def _sample(node: Node, rng: np.random.Generator) -> Any:
    return node.sample(rng)


@dataclass(frozen=True)
class Candidate:
    """A config and its canonical key: two candidates with the same key are the same architecture."""

    config: Mapping[str, Any]
    key: str


@dataclass(frozen=True)
class SearchSpace:
    """A typed tree of parameters plus what the search optimises and under which constraints."""

    name: str
    root: Group
    objectives: tuple[Objective, ...] = ()
    #: constraints on what a trial measures (costs such as ``params``, objectives): checked on its results
    constraints: tuple[Expr, ...] = ()
    task: str | None = None
    task_options: Mapping[str, Any] = field(default_factory=dict)
    builder: str | None = None
    estimator: str = "train"
    estimator_options: Mapping[str, Any] = field(default_factory=dict)
    #: the training regimes (name, options) the estimator trains with, in order (none: standard training)
    regimes: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    #: the metric sets (name, options) a trial reports besides the estimator's own metrics (``metrics: [robust]``)
    metrics: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    #: the rule (name, options) that chooses the study's final trial (``selection: expansion``; :mod:`automl.selection`)
    selection: tuple[str, Mapping[str, Any]] = ("best-value", {})
    budget: Budget | None = None
    defaults: SearchDefaults = field(default_factory=SearchDefaults)
    source: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: the line of each path of ``document`` in its file (for errors that point into it)
    lines: Mapping[YamlPath, int] = field(default_factory=dict, compare=False, repr=False)
    #: constraints that name parameters only (e.g. ConfigSpace's forbidden clauses): every config the space
    #: samples, completes, mutates or validates satisfies them (one naming an inactive parameter is not checked)
    config_constraints: tuple[Expr, ...] = ()
    #: whether the user trusted the code this space names (a builder given as ``package.module:function``):
    #: set only by ``trust_code=True`` or :func:`automl.space.trust.check_code`; an untrusted space that names
    #: code is refused by ``load_space`` (and so by every search)
    trusted_code: bool = field(default=False, compare=False)

    def error(self, path: YamlPath, message: str) -> ConfigError:
        """A ConfigError naming the space's file, the line of ``path`` (e.g. ``("task", "options",
        "val_fraction")``) and the field."""
        return error_at(self.source, self.lines, path, message)

    # -- sampling and completion ----------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Config:
        """A random valid config (conditional parameters only where their condition holds)."""
        return self.complete({}, rng)

    def extreme(self, which: str, rng: np.random.Generator) -> Config:
        """The largest (``"max"``), smallest (``"min"``) or middle (``"mid"``) config. max/min: every
        number (and numeric choice, such as a kernel size) at its bound, every repeat at its
        longest/shortest, other choices sampled (they have no order) -- used by sandwich sampling of
        supernets. mid: numbers at the centre of their range (geometric centre for log scales),
        choices at their first option, repeats at their shortest -- a neutral default. Where these
        break a constraint on parameters, the parameters it names are drawn at random instead."""
        if which not in ("max", "min", "mid"):
            raise ValueError(f"which must be 'max', 'min' or 'mid', got {which!r}")

        def draw(node: Node, rng: np.random.Generator) -> Any:
            if which == "mid":
                if isinstance(node, Float):
                    return node._from_unit(0.5)
                if isinstance(node, Int):
                    return node._snap(math.sqrt(node.low * node.high) if node.log else (node.low + node.high) / 2)
                if isinstance(node, Categorical):
                    return node.choices[0]
                if isinstance(node, Repeat):
                    return node.min
                return node.sample(rng)
            if isinstance(node, (Float, Int)):
                return node.high if which == "max" else node.low
            if isinstance(node, Repeat):
                return node.max if which == "max" else node.min
            if isinstance(node, Categorical):
                numbers = [c for c in node.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
                if len(numbers) == len(node.choices):
                    return max(numbers) if which == "max" else min(numbers)  # e.g. kernel sizes
            return node.sample(rng)

        config = self._constrained({}, rng, draw, repair=False)
        violated = self.violated(config) if self.config_constraints else []
        if violated:  # the extremes break a constraint on parameters: what it names is drawn at random
            for expr in violated:
                for name in expr.names:
                    config = _drop(config, name_parts(name))
            config = self.complete(config, rng)
        return config

    def complete(self, partial: Mapping[str, Any], rng: np.random.Generator) -> Config:
        """Keep what ``partial`` sets, sample what is missing, drop what its conditions switch off.

        Under :attr:`config_constraints` what is missing is drawn again until they hold; when
        ``partial``'s own values break one, the values it names are drawn again too."""
        return self._constrained(partial, rng)

    def _constrained(self, partial: Mapping[str, Any], rng: np.random.Generator,
                     draw: Callable[[Node, np.random.Generator], Any] = _sample, *, repair: bool = True) -> Config:
        config: Config = self._fill(self.root, partial, rng, [], draw)
        if not self.config_constraints:
            return config
        given: Any = partial
        for attempt in range(RESAMPLE_TRIES):
            violated = self.violated(config)
            if not violated:
                return config
            if not repair:
                return config
            if attempt >= RESAMPLE_TRIES // 4:  # the given values themselves break it: let them go too
                for expr in violated:
                    for name in expr.names:
                        given = _drop(given, name_parts(name))
            config = self._fill(self.root, given, rng, [], draw)
        raise ConfigError(f"space {self.name!r}: no config found in {RESAMPLE_TRIES} draws that satisfies "
                          f"{', '.join(str(e) for e in self.violated(config))}", source=self.source)

    def violated(self, config: Mapping[str, Any]) -> list[Expr]:
        """The :attr:`config_constraints` that ``config`` breaks."""
        def lookup(name: str) -> Any:
            value = _get(config, name)
            if value is _MISSING:
                raise Missing(name)
            return value

        out = []
        for expr in self.config_constraints:
            try:
                if not expr.evaluate(lookup):
                    out.append(expr)
            except Missing:  # it names an inactive parameter: nothing to check
                pass
            except TypeError:  # e.g. a string compared with a number: the config cannot satisfy it
                out.append(expr)
        return out

    def _fill(self, node: Node, value: Any, rng: np.random.Generator, scopes: list[Mapping[str, Any]],
              draw: Callable[[Node, np.random.Generator], Any] = _sample) -> Any:
        if isinstance(node, Group):
            out: Config = {}
            self._fill_group(node, value, rng, scopes, out, draw)
            return out
        if isinstance(node, Repeat):
            items = list(value) if isinstance(value, list) else [_MISSING] * draw(node, rng)
            return [self._fill(node.item, item, rng, scopes, draw) for item in items]
        if value is _MISSING:
            return draw(node, rng)
        return copy.deepcopy(value)

    def _fill_group(self, node: Group, value: Any, rng: np.random.Generator, scopes: list[Mapping[str, Any]],
                    out: Config, draw: Callable[[Node, np.random.Generator], Any] = _sample) -> None:
        """Fill ``out`` in place, so that a later condition can read any value decided before it."""
        given = value if isinstance(value, Mapping) else {}
        inner = [*scopes, out]
        for name, child in node.children:
            if child.when is not None and not _holds(child.when, inner):
                continue
            if isinstance(child, Group):
                out[name] = {}
                self._fill_group(child, given.get(name, _MISSING), rng, inner, out[name], draw)
            else:
                out[name] = self._fill(child, given.get(name, _MISSING), rng, inner, draw)

    # -- mutation and neighbourhood -------------------------------------------------------------
    def _sites(self, config: Config) -> Iterator[tuple[Path, Node, Any]]:
        """Every mutable place in ``config``: (path, node, value)."""

        def walk(node: Node, value: Any, path: Path) -> Iterator[tuple[Path, Node, Any]]:
            if isinstance(node, Group):
                for name, child in node.children:
                    if name in value:
                        yield from walk(child, value[name], (*path, name))
            elif isinstance(node, Repeat):
                if node.min != node.max:
                    yield path, node, value
                for i, item in enumerate(value):
                    yield from walk(node.item, item, (*path, i))
            elif isinstance(node, Graph) or (isinstance(node, Leaf) and node.neighbours(value)):
                yield path, node, value

        return walk(self.root, config, ())

    def graphs(self, config: Config) -> list[tuple[Path, Graph, Any]]:
        """Every graph parameter active in ``config``: (path, graph node, its nodes), in tree order."""
        return [(path, node, value) for path, node, value in self._sites(config) if isinstance(node, Graph)]

    def mutate(self, config: Config, rng: np.random.Generator, choose_op: OpChooser | None = None) -> Config:
        """A valid config that differs from ``config`` at one site (a leaf, a repeat's length or a graph).

        ``choose_op(rng, arity)`` picks the ops of mutated graph nodes (default: uniform).
        """
        sites = list(self._sites(config))
        if not sites:
            return copy.deepcopy(config)
        for _ in range(16 if self.config_constraints else 1):  # under constraints: another mutation, if needed
            path, node, value = sites[int(rng.integers(0, len(sites)))]
            if isinstance(node, Repeat):
                items = list(value)
                grow = len(items) < node.max and (len(items) == node.min or rng.random() < 0.5)
                if grow:
                    items.insert(int(rng.integers(0, len(items) + 1)), _MISSING)
                else:
                    items.pop(int(rng.integers(0, len(items))))
                new_value: Any = items
            elif isinstance(node, Graph):
                new_value = node.mutate(value, rng, choose_op)
            else:
                new_value = node.mutate(value, rng)  # type: ignore[attr-defined]
            partial = _set(config, path, new_value)
            child = self._constrained(partial, rng, repair=False)
            if not self.config_constraints or not self.violated(child):
                return child
        return self.complete(partial, rng)

    def neighbours(self, config: Config, rng: np.random.Generator | None = None) -> list[Config]:
        """Configs one step away at each site (newly active conditional parameters are sampled)."""
        rng = rng if rng is not None else np.random.default_rng(0)
        out: list[Config] = []
        for path, node, value in self._sites(config):
            if isinstance(node, Repeat):
                options = []
                if len(value) < node.max:
                    options.append([*value, _MISSING])
                if len(value) > node.min:
                    options.append(list(value[:-1]))
            else:
                options = node.neighbours(value)  # type: ignore[attr-defined]
            for option in options:
                child = self._constrained(_set(config, path, option), rng, repair=False)
                if not self.config_constraints or not self.violated(child):
                    out.append(child)
        return out

    # -- validation and encoding ----------------------------------------------------------------
    def problems(self, config: Any) -> list[str]:
        """Everything wrong with ``config`` (empty when valid)."""
        found: list[str] = []

        def walk(node: Node, value: Any, path: Path, scopes: list[Mapping[str, Any]]) -> None:
            found.extend(node.check(value, path))
            if found and found[-1].startswith(path_str(path) + ":"):
                return
            if isinstance(node, Group):
                inner = [*scopes, value]
                names = node.child_map()
                for extra in sorted(set(value) - set(names)):
                    found.append(f"{path_str((*path, extra))}: unknown parameter (expected one of {sorted(names)})")
                for name, child in node.children:
                    active = child.when is None or _holds(child.when, inner)
                    if active and name not in value:
                        found.append(f"{path_str((*path, name))}: missing")
                    elif not active and name in value:
                        found.append(f"{path_str((*path, name))}: set, but its condition {child.when} is false")
                    elif active:
                        walk(child, value[name], (*path, name), inner)
            elif isinstance(node, Repeat):
                for i, item in enumerate(value):
                    walk(node.item, item, (*path, i), scopes)

        walk(self.root, config, (), [])
        if not found and self.config_constraints:
            for expr in self.violated(config):
                shown = ", ".join(f"{n}={_get(config, n)!r}" for n in sorted(expr.names))
                found.append(f"constraint {expr} is violated ({shown})")
        return found

    def validate(self, config: Any) -> None:
        """Raise :class:`ConfigError` listing every problem with ``config``."""
        found = self.problems(config)
        if found:
            raise ConfigError("invalid config for space " + repr(self.name) + ":\n  " + "\n  ".join(found))

    def canonical(self, config: Config) -> Any:
        """The JSON-able canonical form (numbers normalised, graphs as canonical expressions)."""

        def walk(node: Node, value: Any) -> Any:
            if isinstance(node, Group):
                children = node.child_map()
                return {k: walk(children[k], v) for k, v in sorted(value.items())}
            if isinstance(node, Repeat):
                return [walk(node.item, item) for item in value]
            return node.canonical(value)

        return walk(self.root, config)

    def encode(self, config: Config) -> str:
        """Canonical, hashable text of ``config``: equal for configs that describe the same architecture."""
        return json.dumps(self.canonical(config), sort_keys=True, separators=(",", ":"))

    def key(self, config: Config) -> str:
        """A short stable hash of :meth:`encode`."""
        return hashlib.sha1(self.encode(config).encode()).hexdigest()[:16]

    def candidate(self, config: Config) -> Candidate:
        return Candidate(config=config, key=self.key(config))

    @property
    def fingerprint(self) -> str:
        """A hash of the space's definition: resuming a study with a changed space is refused."""
        blob = json.dumps(self.document, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    # -- flat view ------------------------------------------------------------------------------
    def flatten(self) -> dict[str, BaseDistribution]:
        """The space as flat Optuna distributions: ``model.layers#len`` for a repeat's length and
        ``model.layers[i].width`` for each possible item. Graph and (unbounded) normal parameters have
        no Optuna distribution and are left out."""
        out: dict[str, BaseDistribution] = {}

        def walk(node: Node, path: Path) -> None:
            if isinstance(node, Group):
                for name, child in node.children:
                    walk(child, (*path, name))
            elif isinstance(node, Repeat):
                out[path_str(path) + "#len"] = IntDistribution(node.min, node.max)
                for i in range(node.max):
                    walk(node.item, (*path, i))
            elif isinstance(node, Leaf):
                dist = node.distribution()
                if dist is not None:
                    out[path_str(path)] = dist

        walk(self.root, ())
        return out

    def flat_params(self, config: Config) -> dict[str, Any]:
        """``config``'s values under the names of :meth:`flatten` (graphs and constants left out)."""
        out: dict[str, Any] = {}

        def walk(node: Node, value: Any, path: Path) -> None:
            if isinstance(node, Group):
                for name, child in node.children:
                    if name in value:
                        walk(child, value[name], (*path, name))
            elif isinstance(node, Repeat):
                out[path_str(path) + "#len"] = len(value)
                for i, item in enumerate(value):
                    walk(node.item, item, (*path, i))
            elif isinstance(node, Leaf) and node.distribution() is not None:
                out[path_str(path)] = node.to_flat(value)

        walk(self.root, config, ())
        return out

    def unflatten(self, params: Mapping[str, Any], rng: np.random.Generator | None = None) -> Config:
        """Inverse of :meth:`flat_params` (missing values are sampled, inactive ones dropped)."""

        def walk(node: Node, path: Path) -> Any:
            if isinstance(node, Group):
                return {name: v for name, child in node.children
                        if (v := walk(child, (*path, name))) is not _MISSING}
            if isinstance(node, Repeat):
                n = params.get(path_str(path) + "#len")
                return _MISSING if n is None else [walk(node.item, (*path, i)) for i in range(int(n))]
            raw = params.get(path_str(path), _MISSING)
            return node.from_flat(raw) if raw is not _MISSING and isinstance(node, Leaf) else raw

        partial = walk(self.root, ())
        return self.complete(_strip_missing(partial), rng if rng is not None else np.random.default_rng(0))

    def leaves(self) -> Iterator[tuple[str, Node]]:
        """(path, node) for every parameter, for display."""

        def walk(node: Node, path: Path) -> Iterator[tuple[str, Node]]:
            if isinstance(node, Group):
                for name, child in node.children:
                    yield from walk(child, (*path, name))
            elif isinstance(node, Repeat):
                yield path_str(path), node
                yield from walk(node.item, (*path, "[i]"))
            else:
                yield path_str(path), node

        return walk(self.root, ())

    def has(self, kind: type) -> list[str]:
        """Paths of parameters of ``kind`` (e.g. :class:`Graph`), for strategies that cannot handle them."""
        return [path for path, node in self.leaves() if isinstance(node, kind)]


def _holds(expr: Expr, scopes: list[Mapping[str, Any]]) -> bool:
    """Evaluate a condition, resolving each name in the innermost scope that has it."""

    def lookup(name: str) -> Any:
        for scope in reversed(scopes):
            value = _get(scope, name)
            if value is not _MISSING:
                return value
        raise Missing(name)

    try:
        return bool(expr.evaluate(lookup))
    except Missing:
        return False


def _get(scope: Any, dotted: str) -> Any:
    """The value at the (canonical, see :func:`automl.expr.name_text`) name ``dotted``, or _MISSING."""
    value = scope
    for part in name_parts(dotted):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _set(config: Any, path: Path, new_value: Any) -> Any:
    """A copy of ``config`` with the value at ``path`` replaced."""
    if not path:
        return new_value
    head, rest = path[0], path[1:]
    out: list[Any] | dict[Any, Any]
    if isinstance(config, list):
        out = list(config)
    else:
        out = dict(config)
    out[head] = _set(config[head], rest, new_value)  # type: ignore[index]
    return out


def _drop(value: Any, parts: tuple[str, ...]) -> Any:
    """A copy of the mapping ``value`` without the entry at ``parts`` (unchanged where there is none)."""
    if not parts or not isinstance(value, Mapping) or parts[0] not in value:
        return value
    out = dict(value)
    if len(parts) == 1:
        del out[parts[0]]
    else:
        out[parts[0]] = _drop(value[parts[0]], parts[1:])
    return out


def _strip_missing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_missing(v) for k, v in value.items() if v is not _MISSING}
    if isinstance(value, list):
        return [_strip_missing(v) for v in value]
    return value

