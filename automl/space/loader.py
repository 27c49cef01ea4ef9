"""Load a search space from YAML (or a dict) into a validated, immutable :class:`SearchSpace`.

Every error names the file, the line and the field, and says what was expected. YAML is read with
PyYAML's safe loader; conditions and constraints go through :mod:`automl.expr`, never ``eval``.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np
import yaml

from automl.errors import ConfigError
from automl.expr import Expr, check_name, name_text, parse
from automl.registry import CODE_REFERENCE, builders, is_code_reference, space_checks
from automl.space.graph import SAMPLE_TRIES, Graph
from automl.space.limits import INT_MAX, LIMITS_ENV, SpaceLimits, current_limits
from automl.space.model import SearchSpace
from automl.space.names import name_problem
from automl.space.nodes import (
    Bool,
    Budget,
    Categorical,
    Constant,
    Float,
    Group,
    Int,
    Node,
    Normal,
    Objective,
    Prior,
    Repeat,
    SearchDefaults,
    Subset,
    json_label,
)
from automl.space.paths import YamlPath, dotted, error_at
from automl.space.primitives import PRIMITIVES

COST_NAMES = frozenset({"params", "flops", "latency_ms"})
#: the deepest a condition or constraint may nest (``not not ...``, parentheses, lists)
EXPRESSION_DEPTH = 100
#: sampling a normal is taken to reach mu +- this many sigmas (never passed in practice; also bounds mutation)
NORMAL_REACH = 12
#: |mu| + 12 sigma of a log-normal: exp() of it must stay finite (exp(709.78) is the largest float)
LOG_REACH = 700.0
#: |mu| + 12 sigma of a normal, and of a prior: room left for the arithmetic on its draws
FLOAT_REACH = 1e300
#: alpha and beta of a beta prior (numpy's draws degenerate outside)
BETA_MIN, BETA_MAX = 1e-3, 1e6
TOP_LEVEL = {
    "name": "the space's name",
    "description": "free text",
    "task": "a registered task name (or {name, options})",
    "builder": "a registered builder or 'package.module:function'",
    "estimator": "a registered estimator name (or {name, options})",
    "regime": "a registered training regime (or {name, options}, or a list of those)",
    "metrics": "registered metric sets to report besides the estimator's own (e.g. [robust]; {name, options} entries)",
    "objectives": "a mapping metric: max|min",
    "constraints": "a list of expressions such as 'params <= 200000'",
    "budget": "{name, min, max}",
    "selection": "how the final trial is chosen: best-value (default), expansion or oracle (or {name, options})",
    "search": "{strategy, trials, options}",
    "space": "the parameter tree",
}
PARAM_KEYS: dict[str, set[str]] = {
    "float": {"low", "high", "log", "step", "prior"},
    "int": {"low", "high", "log", "step", "prior"},
    "categorical": {"choices", "weights"},
    "subset": {"choices", "size"},
    "bool": set(),
    "constant": {"value"},
    "normal": {"mu", "sigma", "log", "step"},
    "repeat": {"min", "max", "item"},
    "graph": {"inputs", "ops", "min_nodes", "max_nodes", "commutative", "output", "reference"},
}


#: libyaml's loader when PyYAML was built with it (ten times faster), else PyYAML's own
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc]  # PyYAML has no type information
    """PyYAML's safe loader that turns a value it cannot construct (an integer of more digits than Python
    converts, a date such as 2001-13-45) into a YAML error at that value."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]} value "
                                                    f"{str(node.value)[:40]!r}: {exc}", node.start_mark) from None


def _prescan(text: str, limits: SpaceLimits, source: str | None) -> None:
    """Refuse a document nested deeper than ``limits.depth`` or of more than ``limits.values`` nodes (an alias
    counts as one here; :func:`_measure` counts what it expands to) from the parser's events, before anything
    is composed: composing recurses (a 5,000-deep ``[[[...]]]`` would overflow the stack) and costs memory."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_BASE_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > limits.depth:
                raise ConfigError(f"the document nests deeper than {limits.depth} levels (limit depth)",
                                  source=source, line=event.start_mark.line + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > limits.values:
                raise ConfigError(f"the document holds more than {limits.values} values (limit values)",
                                  source=source, line=event.start_mark.line + 1)


def _measure(root: yaml.Node, limits: SpaceLimits, source: str | None) -> None:
    """Refuse a document that, with its YAML aliases expanded, nests deeper than ``limits.depth`` or holds
    more than ``limits.values`` values, or that refers to itself (``&a [*a]``); computed on the node graph,
    each node once, so an alias bomb costs what its text costs."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    def fail(node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(message, source=source, line=node.start_mark.line + 1)

    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            visiting.discard(key)
            if size[key] > limits.values:
                raise fail(node, f"the document holds more than {limits.values} values once its YAML aliases are "
                                 f"expanded (limit values)")
            if depth[key] > limits.depth:
                raise fail(node, f"the document nests deeper than {limits.depth} levels once its YAML aliases are "
                                 f"expanded (limit depth)")
            continue
        if key in size:
            continue
        if key in visiting:
            raise fail(node, "a YAML alias refers to a value that contains it (a recursive alias)")
        visiting.add(key)
        stack.append((node, True))
        for kid in children(node):
            if id(kid) in visiting:
                raise fail(kid, "a YAML alias refers to a value that contains it (a recursive alias)")
            if id(kid) not in size:
                stack.append((kid, False))


def read_yaml(text: str, source: str | None, limits: SpaceLimits | None = None) -> tuple[Any, dict[YamlPath, int]]:
    """Parse YAML safely; also return the line (1-based) of every mapping key and list item.

    Within ``limits`` (:class:`~automl.space.limits.SpaceLimits`): the text's size, the document's nesting
    and its number of values with aliases expanded (measured without expanding them). Lines are mapped
    without following aliases: a value reached through an alias has the line of the alias."""
    limits = current_limits(limits)
    if len(text) > limits.file_bytes:
        raise ConfigError(f"the file is larger than {limits.file_bytes} bytes (limit file_bytes)", source=source)
    try:
        _prescan(text, limits, source)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _measure(node, limits, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, a position in the text
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"invalid YAML: the character #x{code:04x} is not allowed ({exc.reason})", source=source,
                          line=text.count("\n", 0, exc.position) + 1) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if problem == "exceeded maximum nesting depth":  # libyaml's own bound (past ours) met while scanning ahead
            problem = f"the document nests deeper than {limits.depth} levels (limit depth)"
        raise ConfigError(f"invalid YAML: {problem}", source=source,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[YamlPath, int] = {}
    seen_nodes: set[int] = set()
    keys = yaml.constructor.SafeConstructor()

    def walk(n: yaml.Node, path: YamlPath) -> None:
        if id(n) in seen_nodes:  # reached again through an alias: its lines are where it was written
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a complex key: the constructor has refused it unless hashable
                key = key_node.value
                if key in seen:
                    raise ConfigError(f"duplicate key {key!r}", source=source, line=key_node.start_mark.line + 1,
                                      field=dotted((*path, key)))
                seen.add(key)
                lines[(*path, key)] = key_node.start_mark.line + 1
                if not key_node.tag.endswith(":str"):  # e.g. 0_1: read as 1
                    lines[(*path, keys.construct_object(key_node))] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return data, lines


class _Reader:
    """Turns the parsed document into space objects, raising errors that point into the file."""

    def __init__(self, source: str | None, lines: Mapping[YamlPath, int], limits: SpaceLimits) -> None:
        self.source = source
        self.lines = lines
        self.limits = limits
        self.parameters = 0  # leaves declared so far
        self.declared: list[str] = []  # parameter paths in document order (a repeat's items under ".item")
        self.repeated: set[str] = set()  # those inside a repeat's item
        self.repeat_depth = 0

    def error(self, path: YamlPath, message: str) -> ConfigError:
        return error_at(self.source, self.lines, path, message)

    # -- scalars ------------------------------------------------------------------------------
    def number(self, value: Any, path: YamlPath, *, integer: bool = False) -> float:
        """A finite number (an integer within int64 when ``integer``; any integer must be within int64)."""
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as text; accept it as the number it means
            try:
                value = float(value)
            except ValueError:
                pass
        what = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(path, f"expected {what}, got {_shown(value)}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(path, f"expected {what}, got {value!r}")
            if integer:
                if not value.is_integer():
                    raise self.error(path, f"expected an integer, got {value!r}")
                value = int(value)
        if isinstance(value, int) and abs(value) > INT_MAX:
            raise self.error(path, f"expected {what} between -{INT_MAX} and {INT_MAX} (int64), got one of "
                                   f"about {int(value.bit_length() * 0.30103) + 1} digits")
        return int(value) if integer else float(value)

    def count(self, value: int, path: YamlPath, limit: str, what: str) -> None:
        """Refuse ``value`` past the bound named ``limit`` of :class:`SpaceLimits`."""
        bound = getattr(self.limits, limit)
        if value > bound:
            raise self.error(path, f"{what} ({value}) is past the limit of {bound} ({limit}; raise it with "
                                   f"{LIMITS_ENV}={limit}=N or SpaceLimits({limit}=N))")

    def boolean(self, value: Any, path: YamlPath) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {value!r}")
        return value

    def text(self, value: Any, path: YamlPath) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"expected a non-empty string, got {value!r}")
        return value

    def mapping(self, value: Any, path: YamlPath, what: str = "a mapping") -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected {what}, got {value!r}")
        return value

    def keys(self, spec: Mapping[str, Any], path: YamlPath, allowed: set[str],
             required: frozenset[str] | set[str] = frozenset()) -> None:
        for key in spec:
            if key not in allowed:
                raise self.error((*path, key), f"unknown key {key!r}; expected one of {sorted(allowed)}")
        for key in sorted(required - set(spec)):
            raise self.error(path, f"missing required key {key!r}")

    def expression(self, value: Any, path: YamlPath) -> Expr:
        if isinstance(value, str):
            self.count(len(value), path, "expression_chars", "the expression's length")
        line = self.error(path, "").line
        try:
            expr = parse(value, source=self.source, line=line, field=dotted(path))
        except (RecursionError, MemoryError):  # Python's parser gives up on deep nesting this way
            raise self.error(path, f"the expression nests too deeply (at most {EXPRESSION_DEPTH} levels)") from None
        if _tree_depth(expr.tree) > EXPRESSION_DEPTH:
            raise self.error(path, f"the expression nests too deeply (at most {EXPRESSION_DEPTH} levels)")
        return expr

    # -- parameter tree -----------------------------------------------------------------------
    def group(self, spec: Any, path: YamlPath, prefixes: list[str]) -> Group:
        spec = self.mapping(spec, path, "a mapping of parameters")
        raw_when = spec.get("when")
        if "when" in spec and not isinstance(raw_when, (str, Mapping)):  # a mapping: a parameter named "when"
            raise self.error((*path, "when"), f"a group's 'when' is its condition: expected an expression string "
                                              f"such as \"train.optimizer == 'sgd'\", got {_shown(raw_when)}")
        when = self.condition(raw_when, (*path, "when"), prefixes) if isinstance(raw_when, str) else None
        inner = [*prefixes, _name(path[1:])]
        children = []
        for name, child in spec.items():
            if name == "when" and when is not None:
                continue
            problem = check_name(name)
            if problem is not None:
                hint = (f" (YAML reads this key as the {type(name).__name__} {name!r}: write it in quotes)"
                        if not isinstance(name, str) else "")
                raise self.error((*path, name), problem + hint)
            children.append((name, self.node(child, (*path, name), inner)))
        if not children:
            raise self.error(path, "a group needs at least one parameter")
        return Group(children=tuple(children), when=when)

    def condition(self, value: Any, path: YamlPath, prefixes: list[str]) -> Expr:
        expr = self.expression(value, path)
        for name in expr.names:
            candidates = [f"{p}.{name}" if p else name for p in prefixes]
            if not any(c in self.declared for c in candidates):
                raise self.error(path, f"condition {value!r} names {name!r}, which is not a parameter declared "
                                       f"before it (known: {', '.join(self.declared) or 'none'})")
        return expr

    def declare(self, name: str) -> None:
        self.declared.append(name)
        if self.repeat_depth:
            self.repeated.add(name)

    def node(self, spec: Any, path: YamlPath, prefixes: list[str]) -> Node:
        name = _name(path[1:])
        self.parameters += 1
        self.count(self.parameters, path, "parameters", "the number of parameters")
        if not isinstance(spec, Mapping):
            self.declare(name)
            return Constant(value=spec)
        if "type" not in spec:
            self.parameters -= 1  # a group is not a parameter
            return self.group(spec, path, prefixes)
        kind = spec["type"]
        if not isinstance(kind, str) or kind not in PARAM_KEYS:
            raise self.error((*path, "type"), f"unknown parameter type {_shown(kind)}; expected one of "
                                              f"{sorted(PARAM_KEYS)}")
        self.keys(spec, path, PARAM_KEYS[kind] | {"type", "when"})
        when = self.condition(spec["when"], (*path, "when"), prefixes) if "when" in spec else None
        node = self._param(kind, spec, path, when, prefixes)
        self.declare(name)
        return node

    def _param(self, kind: str, spec: Mapping[str, Any], path: YamlPath, when: Expr | None,
               prefixes: list[str]) -> Node:
        def need(key: str) -> Any:
            if key not in spec:
                raise self.error(path, f"a {kind} parameter needs {key!r}")
            return spec[key]

        if kind in ("float", "int"):
            integer = kind == "int"
            low = self.number(need("low"), (*path, "low"), integer=integer)
            high = self.number(need("high"), (*path, "high"), integer=integer)
            if low > high:
                raise self.error((*path, "low"), f"low ({low}) must not exceed high ({high})")
            if integer and high - low > INT_MAX:
                raise self.error((*path, "high"), f"high - low ({high - low}) must be at most {INT_MAX} (int64)")
            if not integer and not math.isfinite(high - low):
                raise self.error((*path, "high"), f"high - low overflows ({high!r} - {low!r}); expected a range "
                                                  "whose width is a finite number")
            log = self.boolean(spec.get("log", False), (*path, "log"))
            if log and low <= 0:
                raise self.error((*path, "low"), f"a log-scaled parameter needs low > 0, got {low}")
            if integer:
                step = self.number(spec.get("step", 1), (*path, "step"), integer=True)
                if step < 1:
                    raise self.error((*path, "step"), f"step must be >= 1, got {step}")
                if log and step != 1:
                    raise self.error((*path, "step"), "a log-scaled int cannot have a step")
                if (high - low) % step:
                    raise self.error((*path, "step"), f"high - low ({high - low}) must be a multiple of step ({step})")
                return Int(low=int(low), high=int(high), log=log, step=int(step), when=when,
                           prior=self.prior(spec, path))
            step_f = self.number(spec["step"], (*path, "step")) if spec.get("step") is not None else None
            if step_f is not None and (step_f <= 0 or log):
                raise self.error((*path, "step"), "step must be > 0 and cannot be combined with log")
            if step_f is not None and not (high - low) / step_f <= 2 ** 53:
                raise self.error((*path, "step"), f"step ({step_f:g}) is too small for the range [{low:g}, {high:g}]: "
                                                  "expected at most 2**53 steps")
            if step_f is not None and abs((n := (high - low) / step_f) - round(n)) > 1e-9:
                raise self.error((*path, "step"),
                                 f"high - low ({high - low:g}) must be a multiple of step ({step_f:g})")
            return Float(low=low, high=high, log=log, step=step_f, when=when, prior=self.prior(spec, path))
        if kind == "normal":
            mu = self.number(need("mu"), (*path, "mu"))
            sigma = self.number(need("sigma"), (*path, "sigma"))
            if sigma <= 0:
                raise self.error((*path, "sigma"), f"sigma must be > 0, got {sigma}")
            log_n = self.boolean(spec.get("log", False), (*path, "log"))
            # what sampling and mutation can reach (12 sigmas: never passed in practice) must stay finite
            reach = abs(mu) + NORMAL_REACH * sigma
            if log_n and reach > LOG_REACH:
                raise self.error((*path, "mu"), f"a log-normal needs |mu| + {NORMAL_REACH} sigma <= {LOG_REACH} "
                                                f"(exp() of more overflows), got mu={mu:g}, sigma={sigma:g}")
            if not reach <= FLOAT_REACH:
                raise self.error((*path, "mu"), f"a normal needs |mu| + {NORMAL_REACH} sigma <= {FLOAT_REACH:g}, got "
                                                f"mu={mu:g}, sigma={sigma:g}")
            step_n = self.number(spec["step"], (*path, "step")) if spec.get("step") is not None else None
            if step_n is not None and not (step_n > 0 and (math.exp(reach) if log_n else reach) / step_n <= 2 ** 53):
                raise self.error((*path, "step"), f"step must be > 0 and not too small for the values reached "
                                                  f"(at most 2**53 steps), got {step_n:g}")
            return Normal(mu=mu, sigma=sigma, log=log_n, step=step_n, when=when)
        if kind == "categorical":
            choices = need("choices")
            if not isinstance(choices, list) or not choices:
                raise self.error((*path, "choices"), f"expected a non-empty list of choices, got {_shown(choices)}")
            self.count(len(choices), (*path, "choices"), "choices", "the number of choices")
            for i, choice in enumerate(choices):
                if not _json_like(choice):
                    raise self.error((*path, "choices", i), f"choices must be scalars, or mappings/lists of "
                                     f"them (JSON-like values), got {choice!r}")
            composite = any(isinstance(c, (dict, list)) for c in choices)
            # scalars are told apart by equality, as configs and Optuna compare them (1, true and 1.0 are equal)
            if len(set(map(json_label, choices) if composite else choices)) != len(choices):
                raise self.error((*path, "choices"), f"choices must be distinct (1, true and 1.0 are equal), got "
                                                     f"{_shown(choices)}")
            weights = None
            if "weights" in spec:
                raw = spec["weights"]
                if not isinstance(raw, list) or len(raw) != len(choices):
                    raise self.error((*path, "weights"), f"expected a list of {len(choices)} weights (one per "
                                     f"choice), got {raw!r}")
                weights = tuple(self.number(w, (*path, "weights", i)) for i, w in enumerate(raw))
                if any(w < 0 for w in weights) or not 0 < sum(weights) < math.inf:
                    raise self.error((*path, "weights"), f"weights must be >= 0, not all 0, with a finite sum, got "
                                                         f"{_shown(raw)}")
            return Categorical(choices=tuple(choices), when=when, weights=weights)
        if kind == "subset":
            choices = need("choices")
            if (not isinstance(choices, list) or not choices
                    or not all(isinstance(c, (str, int, float, bool)) and _json_like(c) for c in choices)):
                raise self.error((*path, "choices"), f"expected a non-empty list of scalars, got {_shown(choices)}")
            self.count(len(choices), (*path, "choices"), "subset_choices", "the number of a subset's choices")
            if len(set(choices)) != len(choices):
                raise self.error((*path, "choices"), f"choices must be distinct (1, true and 1.0 are equal), got "
                                                     f"{_shown(choices)}")
            size = None
            if spec.get("size") is not None:
                size = int(self.number(spec["size"], (*path, "size"), integer=True))
                if not 0 <= size <= len(choices):
                    raise self.error((*path, "size"), f"expected 0 <= size <= {len(choices)} (the number of "
                                     f"choices), got {size}")
            return Subset(choices=tuple(choices), size=size, when=when)
        if kind == "bool":
            return Bool(when=when)
        if kind == "constant":
            return Constant(value=need("value"), when=when)
        if kind == "repeat":
            lo = self.number(need("min"), (*path, "min"), integer=True)
            hi = self.number(need("max"), (*path, "max"), integer=True)
            if not 0 <= lo <= hi:
                raise self.error((*path, "min"), f"expected 0 <= min <= max, got min={lo}, max={hi}")
            self.count(int(hi), (*path, "max"), "repeat_max", "a repeat's max")
            self.repeat_depth += 1
            try:
                item = self.node(need("item"), (*path, "item"), prefixes)
            finally:
                self.repeat_depth -= 1
            return Repeat(item=item, min=int(lo), max=int(hi), when=when)
        return self._graph(spec, path, when, need)

    def prior(self, spec: Mapping[str, Any], path: YamlPath) -> Prior | None:
        """``prior: {type: normal, mu, sigma}`` or ``{type: beta, alpha, beta}`` (of log(x) when ``log``)."""
        if spec.get("prior") is None:
            return None
        where = (*path, "prior")
        raw = self.mapping(spec["prior"], where, "{type: normal, mu, sigma} or {type: beta, alpha, beta}")
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in Prior.KINDS:
            raise self.error((*where, "type"), f"expected prior type 'normal' or 'beta', got {kind!r}")
        first, second = Prior.KINDS[kind]
        self.keys(raw, where, {"type", first, second}, {first, second})
        a, b = self.number(raw[first], (*where, first)), self.number(raw[second], (*where, second))
        if kind == "normal" and b <= 0:
            raise self.error((*where, second), f"sigma must be > 0, got {b}")
        if kind == "beta" and not (BETA_MIN <= a <= BETA_MAX and BETA_MIN <= b <= BETA_MAX):
            raise self.error(where, f"alpha and beta must be in [{BETA_MIN:g}, {BETA_MAX:g}], got {a:g}, {b:g}")
        if kind == "normal" and not abs(a) + NORMAL_REACH * b <= FLOAT_REACH:
            raise self.error(where, f"a prior needs |mu| + {NORMAL_REACH} sigma <= {FLOAT_REACH:g}, got {a:g}, {b:g}")
        return Prior(kind=kind, a=a, b=b)

    def _graph(self, spec: Mapping[str, Any], path: YamlPath, when: Expr | None, need: Any) -> Graph:
        """A graph over named inputs. ``ops`` is a mapping op: arity (free-form ops), or a list of
        primitive names; with primitives, inputs may carry symbolic shapes (``{q: [T, d]}``) and an
        ``output`` shape, so that cells whose shapes do not fit are invalid. ``reference`` names
        cells written out in full (e.g. vanilla attention), checked here like any config."""
        raw_inputs = need("inputs")
        shapes: list[tuple[str, str]] = []
        if isinstance(raw_inputs, Mapping) and raw_inputs:
            inputs = [str(name) for name in raw_inputs]
            shapes = [self._shape(shape, (*path, "inputs", name)) for name, shape in raw_inputs.items()]
        elif isinstance(raw_inputs, list) and raw_inputs and all(isinstance(i, str) and i for i in raw_inputs):
            inputs = list(raw_inputs)
        else:
            raise self.error((*path, "inputs"), f"expected a non-empty list of input names or a mapping "
                             f"name: [dim, dim], got {_shown(raw_inputs)}")
        self.count(len(inputs), (*path, "inputs"), "arity", "the number of a graph's inputs")
        if len(set(inputs)) != len(inputs):
            twice = next(i for i in inputs if inputs.count(i) > 1)
            raise self.error((*path, "inputs"), f"input names must be distinct, got {twice!r} more than once")
        arities, commutative = self._ops(need("ops"), (*path, "ops"))
        extra = spec.get("commutative", [])
        if not isinstance(extra, list) or any(not isinstance(c, str) or c not in dict(arities) for c in extra):
            raise self.error((*path, "commutative"), f"expected a list of op names from {sorted(dict(arities))}, "
                             f"got {_shown(extra)}")
        output = None
        if shapes:
            if any(op not in PRIMITIVES for op, _ in arities):
                raise self.error((*path, "ops"), f"inputs with shapes need ops listed by primitive name, one of "
                                 f"{sorted(PRIMITIVES)}")
            if "output" not in spec:
                raise self.error(path, "missing required key 'output' (the output's shape, e.g. [T, d])")
            output = self._shape(spec["output"], (*path, "output"))
        elif "output" in spec:
            raise self.error((*path, "output"), "an output shape needs input shapes (inputs: {name: [dim, dim]})")
        lo = self.number(spec.get("min_nodes", 1), (*path, "min_nodes"), integer=True)
        hi = self.number(need("max_nodes"), (*path, "max_nodes"), integer=True)
        if not 1 <= lo <= hi:
            raise self.error((*path, "min_nodes"), f"expected 1 <= min_nodes <= max_nodes, got {lo}, {hi}")
        self.count(int(hi), (*path, "max_nodes"), "graph_nodes", "a graph's max_nodes")
        graph = Graph(inputs=tuple(inputs), ops=tuple(arities), min_nodes=int(lo), max_nodes=int(hi),
                      commutative=frozenset(commutative) | frozenset(extra), when=when,
                      input_shapes=tuple(shapes), output_shape=output)
        if graph.shaped:  # one draw now, so that a graph no cell of fits is an error at its own line
            try:
                graph.sample(np.random.default_rng(0))
            except ValueError:
                raise self.error(path, f"no cell whose shapes fit the inputs and the output was found in "
                                       f"{SAMPLE_TRIES} random draws: check inputs, output and ops") from None
        references = self.mapping(spec.get("reference", {}), (*path, "reference"), "a mapping name: cell")
        for name, cell in references.items():
            problems = graph.check(cell, ())
            if problems:
                at, _, message = problems[0].partition(": ")
                index = at[1:].split("]")[0] if at.startswith("[") else ""
                where = (*path, "reference", name, *([int(index)] if index.isdigit() else []))
                raise self.error(where, f"reference cell {name!r}{(' node ' + at) if at else ''}: {message}")
        return dataclasses.replace(graph, references=tuple((str(n), json.dumps(c)) for n, c in references.items()))

    def _ops(self, raw: Any, path: YamlPath) -> tuple[list[tuple[str, int]], set[str]]:
        """``(op, arity)`` pairs and the commutative ops, from a mapping op: arity or a primitive list."""
        if isinstance(raw, list):
            for i, name in enumerate(raw):
                if not isinstance(name, str) or name not in PRIMITIVES:
                    raise self.error((*path, i), f"unknown primitive {_shown(name)}; expected one of "
                                                 f"{sorted(PRIMITIVES)}")
            if len(set(raw)) != len(raw) or not raw:
                raise self.error(path, f"expected a non-empty list of distinct primitives, got {raw!r}")
            return [(n, PRIMITIVES[n].arity) for n in raw], {n for n in raw if PRIMITIVES[n].commutative}
        ops = self.mapping(raw, path, "a mapping op: arity, or a list of primitive names")
        if not ops:
            raise self.error(path, "expected at least one op")
        self.count(len(ops), path, "choices", "the number of ops")
        arities = []
        for op, arity in ops.items():
            a = self.number(arity, (*path, op), integer=True)
            if a < 1:
                raise self.error((*path, op), f"arity must be >= 1, got {a}")
            self.count(int(a), (*path, op), "arity", "an op's arity")
            arities.append((str(op), int(a)))
        if len({op for op, _ in arities}) != len(arities):
            raise self.error(path, "op names must be distinct (as text)")
        return arities, set()

    def _shape(self, raw: Any, path: YamlPath) -> tuple[str, str]:
        if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(d, str) and d for d in raw)):
            raise self.error(path, f"expected a shape of two dimension names such as [T, d], got {raw!r}")
        return (raw[0], raw[1])

    # -- top level ------------------------------------------------------------------------------
    def named(self, value: Any, path: YamlPath) -> tuple[str, Mapping[str, Any]]:
        if isinstance(value, str):
            return value, {}
        spec = self.mapping(value, path, "a name or {name, options}")
        self.keys(spec, path, {"name", "options"}, {"name"})
        return self.text(spec["name"], (*path, "name")), dict(self.mapping(spec.get("options", {}), (*path, "options")))

    def space(self, doc: Any) -> SearchSpace:
        if not isinstance(doc, Mapping):
            raise ConfigError(f"expected a mapping with at least 'name' and 'space', got {type(doc).__name__}",
                              source=self.source, line=1)
        for key in doc:
            if key not in TOP_LEVEL:
                expected = ", ".join(f"{k} ({v})" for k, v in TOP_LEVEL.items())
                raise self.error((key,), f"unknown top-level key {key!r}; expected one of: {expected}")
        for key in ("name", "space"):
            if key not in doc:
                raise ConfigError(f"missing required top-level key {key!r} ({TOP_LEVEL[key]})", source=self.source,
                                  line=1)
        name = self.text(doc["name"], ("name",))
        problem = name_problem(name, max_chars=self.limits.name_chars)
        if problem is not None:
            raise self.error(("name",), problem)
        root = self.group(doc["space"], ("space",), [])
        self.capacity(root, ("space",))
        objectives = self.objectives(doc.get("objectives"))
        metric_names = {o.name for o in objectives}
        constraints: list[Expr] = []
        config_constraints: list[Expr] = []
        raw = doc.get("constraints", [])
        if not isinstance(raw, list):
            raise self.error(("constraints",), f"expected a list of expressions, got {raw!r}")
        for i, text in enumerate(raw):
            expr = self.expression(text, ("constraints", i))
            measured = sorted(expr.names & (COST_NAMES | metric_names))
            for ref in sorted(expr.names - set(measured)):
                if ref not in self.declared:
                    raise self.error(("constraints", i), f"constraint {text!r} names {ref!r}; expected a cost "
                                     f"({', '.join(sorted(COST_NAMES))}), an objective or a parameter")
                if ref in self.repeated:
                    raise self.error(("constraints", i), f"constraint {text!r} names {ref!r}, a parameter inside "
                                     "a repeat; constraints can name parameters outside repeats only")
            if measured and expr.names - set(measured):
                raise self.error(("constraints", i), f"constraint {text!r} names both what a trial measures "
                                 f"({', '.join(measured)}) and parameters "
                                 f"({', '.join(sorted(expr.names - set(measured)))}); write them as two constraints")
            (constraints if measured else config_constraints).append(expr)
        task, task_options = self.named(doc["task"], ("task",)) if "task" in doc else (None, {})
        estimator, estimator_options = self.named(doc.get("estimator", "train"), ("estimator",))
        builder = self.text(doc["builder"], ("builder",)) if "builder" in doc else None
        if builder is not None and is_code_reference(builder) and not CODE_REFERENCE.fullmatch(builder):
            raise self.error(("builder",), f"expected a registered builder or an import path "
                                           f"'package.module:function', got {builder!r}")
        space = SearchSpace(
            name=name, root=root, objectives=objectives, constraints=tuple(constraints),
            config_constraints=tuple(config_constraints), task=task,
            task_options=task_options, builder=builder, estimator=estimator, estimator_options=estimator_options,
            regimes=self.regimes(doc.get("regime")), metrics=self.metric_sets(doc.get("metrics")),
            budget=self.budget(doc.get("budget")),
            selection=self.named(doc["selection"], ("selection",)) if "selection" in doc else ("best-value", {}),
            defaults=self.defaults(doc.get("search")), source=self.source, document=dict(doc), lines=dict(self.lines),
        )
        self.dry_run(space)
        self.builder_checks(space)
        return space

    def regimes(self, raw: Any) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """``regime: NAME``, ``{name, options}`` or a list of those (the names are looked up when the
        study is created)."""
        if raw is None:
            return ()
        if isinstance(raw, list):
            if not raw:
                raise self.error(("regime",), "expected at least one regime in the list")
            return tuple(self.named(item, ("regime", i)) for i, item in enumerate(raw))
        return (self.named(raw, ("regime",)),)

    def metric_sets(self, raw: Any) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """``metrics: NAME``, ``{name, options}`` or a list of those (looked up when the study is created)."""
        if raw is None:
            return ()
        items = raw if isinstance(raw, list) else [raw]
        named = tuple(self.named(item, ("metrics", i) if isinstance(raw, list) else ("metrics",))
                      for i, item in enumerate(items))
        names = [n for n, _ in named]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(("metrics",), f"metric set {repeated[0]!r} is named twice")
        return named

    def capacity(self, node: Node, path: YamlPath) -> int:
        """The most values a config can hold under ``node``; past ``limits.config_values`` is an error at the
        repeat (or graph) that multiplies it. Computed from the declared sizes, never by building a config."""
        limit = self.limits.config_values
        if isinstance(node, Group):
            total = 1 + sum(self.capacity(child, (*path, name)) for name, child in node.children)
        elif isinstance(node, Repeat):
            inner = self.capacity(node.item, (*path, "item"))
            total = 1 + node.max * inner
            if total > limit:
                raise self.error((*path, "max"), f"a config can hold {total} values here ({node.max} items of up to "
                                                 f"{inner} values each), past the limit of {limit} (config_values; "
                                                 f"raise it with {LIMITS_ENV}=config_values=N)")
            return total
        elif isinstance(node, Graph):
            total = 1 + node.max_nodes * (2 + max(a for _, a in node.ops))
        elif isinstance(node, Subset):
            total = 1 + len(node.choices)
        else:
            total = 1
        if total > limit:
            raise self.error(path, f"a config can hold {total} values here, past the limit of {limit} (config_values; "
                                   f"raise it with {LIMITS_ENV}=config_values=N)")
        return total

    def builder_checks(self, space: SearchSpace) -> None:
        """Run the builder's own checks of the space (a builder registers one in ``space_checks``; one given by
        the import path of a registered builder is that builder)."""
        if space.builder is None:
            return
        name = builders.spelled(space.builder) or space.builder if is_code_reference(space.builder) else space.builder
        check = space_checks.find(name)
        if check is None:
            return
        for path, message in check(space):
            raise self.error(("space", *path), message)

    def objectives(self, raw: Any) -> tuple[Objective, ...]:
        if raw is None:
            return ()
        spec = self.mapping(raw, ("objectives",), "a mapping metric: max|min")
        out = []
        for name, direction in spec.items():
            if direction not in ("max", "min", "maximize", "minimize"):
                raise self.error(("objectives", name), f"expected 'max' or 'min', got {direction!r}")
            out.append(Objective(name=str(name), direction=str(direction)[:3]))
        if not out:
            raise self.error(("objectives",), "expected at least one objective")
        return tuple(out)

    def budget(self, raw: Any) -> Budget | None:
        if raw is None:
            return None
        spec = self.mapping(raw, ("budget",), "{name, min, max}")
        self.keys(spec, ("budget",), {"name", "min", "max"}, {"name", "min", "max"})
        lo = self.number(spec["min"], ("budget", "min"))
        hi = self.number(spec["max"], ("budget", "max"))
        if not 0 < lo <= hi:
            raise self.error(("budget", "min"), f"expected 0 < min <= max, got min={lo}, max={hi}")
        if hi > self.limits.budget_max:
            raise self.error(("budget", "max"), f"expected at most {self.limits.budget_max:g} (budget_max), got {hi:g}")
        if hi / lo > self.limits.budget_ratio:
            raise self.error(("budget", "min"), f"max / min ({hi / lo:g}) is past the limit of "
                                                f"{self.limits.budget_ratio:g} (budget_ratio); raise min")
        return Budget(name=self.text(spec["name"], ("budget", "name")), min=lo, max=hi)

    def defaults(self, raw: Any) -> SearchDefaults:
        if raw is None:
            return SearchDefaults()
        spec = self.mapping(raw, ("search",), "{strategy, trials, options, pruner}")
        self.keys(spec, ("search",), {"strategy", "trials", "options", "pruner"})
        trials = self.number(spec.get("trials", SearchDefaults.trials), ("search", "trials"), integer=True)
        if trials < 1:
            raise self.error(("search", "trials"), f"expected at least 1 trial, got {trials}")
        self.count(int(trials), ("search", "trials"), "trials", "the number of trials")
        return SearchDefaults(
            strategy=self.text(spec.get("strategy", SearchDefaults.strategy), ("search", "strategy")),
            trials=int(trials),
            options=dict(self.mapping(spec.get("options", {}), ("search", "options"))),
            pruner=self.pruner(spec.get("pruner")),
        )

    def pruner(self, raw: Any) -> Any:
        """``pruner: NAME`` or ``{name, options}`` (checked against Optuna's pruners at study creation)."""
        if raw is None or isinstance(raw, str):
            return raw
        spec = self.mapping(raw, ("search", "pruner"), "a pruner name or {name, options}")
        self.keys(spec, ("search", "pruner"), {"name", "options"}, {"name"})
        return {"name": self.text(spec["name"], ("search", "pruner", "name")),
                "options": dict(self.mapping(spec.get("options", {}), ("search", "pruner", "options")))}

    def dry_run(self, space: SearchSpace) -> None:
        """Sample a few configs so that conditions that cannot be evaluated fail now, not mid-search."""
        rng = np.random.default_rng(0)
        for _ in range(8):
            try:
                config = space.sample(rng)
            except TypeError as exc:
                raise ConfigError(f"a condition cannot be evaluated on sampled values: {exc}",
                                  source=self.source) from None
            except ValueError as exc:  # e.g. a graph with no cell whose shapes fit
                raise ConfigError(f"the space cannot be sampled: {exc}", source=self.source) from None
            problems = space.problems(config)
            if problems:
                raise ConfigError("the space samples invalid configs: " + "; ".join(problems), source=self.source)


def _name(path: YamlPath) -> str:
    """A parameter's path (below ``space``) as conditions and constraints name it."""
    return name_text(str(p) for p in path)


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile value may be huge)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python prints
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[:limit] + "..."


def _tree_depth(tree: ast.AST) -> int:
    """The nesting depth of an expression's syntax tree (without recursing)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def space_from_dict(doc: Mapping[str, Any], source: str | None = None,
                    lines: Mapping[YamlPath, int] | None = None, *, trust_code: bool = False,
                    limits: SpaceLimits | None = None) -> SearchSpace:
    """Build a space from an already-parsed document (e.g. a dict written in Python), within ``limits``
    (default: :class:`SpaceLimits` as ``AUTOML_SPACE_LIMITS`` sets them). ``trust_code``: the user trusts the
    code the document names (``builder: "package.module:function"``), so that a search may import it; nothing
    is imported here (see :mod:`automl.space.trust`)."""
    space = _Reader(source, lines or {}, current_limits(limits)).space(doc)
    return dataclasses.replace(space, trusted_code=True) if trust_code and space.builder is not None else space


def space_from_yaml(text: str, source: str | None = None, *, trust_code: bool = False,
                    limits: SpaceLimits | None = None) -> SearchSpace:
    """Build a space from YAML text (see :func:`space_from_dict` for ``trust_code`` and ``limits``)."""
    limits = current_limits(limits)
    doc, lines = read_yaml(text, source, limits)
    return space_from_dict(doc, source, lines, trust_code=trust_code, limits=limits)
