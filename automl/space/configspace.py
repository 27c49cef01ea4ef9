"""Load ConfigSpace spaces: its JSON (``ConfigurationSpace.to_json``, ``read_and_write.json``) and its
PCS files (``read_and_write.pcs_new``, SMAC 3's format, and ``pcs``, SMAC 2's), read by the ConfigSpace
library itself and converted into the document the YAML loader reads, so validation is shared.

The mapping (a hyperparameter keeps its name, e.g. ``classifier:__choice__``, as the config key;
conditions and constraints name it in backticks where it is not an identifier):

* ``UniformFloat``/``UniformInteger`` -> float/int (``log`` kept). The ``q`` of files written by
  ConfigSpace < 1.0 (1.x dropped it and ignores it) is read from the JSON: a float/int ``step`` from
  ``lower``, ``upper`` cut down to the last value on that grid; on a log scale ``q`` is left out (automl
  cannot combine log and step; the values are then not rounded).
* ``NormalFloat``/``NormalInteger`` -> float/int over ``[lower, upper]`` with a normal ``prior``;
  ``BetaFloat``/``BetaInteger`` -> with a beta ``prior``. Random sampling draws from ConfigSpace's
  distribution (truncated to the range, on log(x) for log scales; integers: the continuous prior
  rounded); model-based strategies search the range.
* ``Categorical`` -> categorical (``weights`` kept); ``Ordinal`` -> categorical of the sequence (its
  order is used where conditions and forbidden clauses compare: ``o > 'low'`` becomes ``o in
  ['mid', 'high']``); ``Constant``/``UnParametrized`` -> constant.
* Conditions (``Equals``, ``NotEquals``, ``LessThan``, ``GreaterThan``, ``In``, ``And``/``Or``
  conjunctions) -> the child's ``when:``; a child whose parent is inactive is inactive, as in
  ConfigSpace (``or`` still holds when another side does).
* Forbidden clauses (``Equals``, ``In``, ``LessThan[Equals]``, ``GreaterThan[Equals]``, their
  ``And``/``Or`` conjunctions, and relations between two hyperparameters) -> constraints on parameters
  (``not (a == 'z' and o in ['mid', 'high'])``), which every sampled, mutated or completed config
  satisfies (:attr:`SearchSpace.config_constraints`); a clause naming an inactive hyperparameter
  forbids nothing, as in ConfigSpace.

Not carried over: default values (automl has none), ``meta``, and the space's seed.
"""
from __future__ import annotations

import copy
import functools
import math
import operator
import re
import warnings
from pathlib import Path as FilePath
from typing import Any, Callable, Mapping, Sequence

from automl.errors import ConfigError
from automl.expr import check_name, quote
from automl.space.jsontext import read_json
from automl.space.limits import INT_MAX, SpaceLimits, current_limits
from automl.space.loader import space_from_dict
from automl.space.model import SearchSpace
from automl.space.names import sanitized
from automl.space.paths import YamlPath

__all__ = ["looks_like_configspace", "space_from_configspace", "space_from_configspace_data",
           "space_from_configspace_json", "space_from_pcs"]

_PCS_NEW = re.compile(r"^\s*\S+\s+(integer|real|categorical|ordinal)\s*[\[{]")
_CONDITION_OPS = {"EqualsCondition": "==", "NotEqualsCondition": "!=", "LessThanCondition": "<",
                  "GreaterThanCondition": ">"}
_CLAUSE_OPS = {"ForbiddenEqualsClause": "==", "ForbiddenLessThanClause": "<", "ForbiddenLessThanEqualsClause": "<=",
               "ForbiddenGreaterThanClause": ">", "ForbiddenGreaterThanEqualsClause": ">="}
_ORDER: dict[str, Callable[[int, int], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                 ">=": operator.ge}
_RELATION_OPS = {"ForbiddenEqualsRelation": "==", "ForbiddenLessThanRelation": "<",
                 "ForbiddenLessThanEqualsRelation": "<=", "ForbiddenGreaterThanRelation": ">",
                 "ForbiddenGreaterThanEqualsRelation": ">="}


def looks_like_configspace(data: Any) -> bool:
    """Whether parsed JSON/YAML ``data`` is a serialized ConfigurationSpace (a ``hyperparameters`` list)."""
    return isinstance(data, dict) and isinstance(data.get("hyperparameters"), list)


def space_from_configspace_json(text: str, source: str | None = None, *, limits: SpaceLimits | None = None
                                ) -> SearchSpace:
    """A :class:`SearchSpace` from the text of a ConfigSpace JSON file."""
    limits = current_limits(limits)
    data, lines = read_json(text, source, limits)
    return space_from_configspace_data(data, lines, source, limits=limits)


def space_from_configspace_data(data: Any, lines: Mapping[YamlPath, int], source: str | None = None, *,
                                limits: SpaceLimits | None = None) -> SearchSpace:
    """A :class:`SearchSpace` from a parsed ConfigSpace JSON (or YAML) document and the line of each path."""
    from ConfigSpace import ConfigurationSpace

    limits = current_limits(limits)

    if not looks_like_configspace(data):
        raise ConfigError("expected a ConfigSpace space: an object with a 'hyperparameters' list (and optional "
                          "'conditions' and 'forbiddens' lists)", source=source, line=1)
    for key in ("conditions", "forbiddens"):
        if not isinstance(data.get(key, []), list):
            raise ConfigError(f"expected a list, got {data[key]!r}", source=source, line=lines.get((key,)),
                              field=key)
    items: list[Any] = data["hyperparameters"]
    for key in ("hyperparameters", "conditions", "forbiddens"):
        count = len(data.get(key, []))
        if count > limits.parameters:
            raise ConfigError(f"{count} {key} is past the limit of {limits.parameters} (parameters; raise it with "
                              f"AUTOML_SPACE_LIMITS=parameters=N)", source=source, line=lines.get((key,)), field=key)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"expected a hyperparameter object with a 'name' and a 'type', got {item!r}",
                              source=source, line=lines.get(("hyperparameters", i)), field=f"hyperparameters[{i}]")
    steps = {item["name"]: item["q"] for item in items if _number(item.get("q"))}  # ConfigSpace < 1.0
    try:
        cs = _quietly(lambda: ConfigurationSpace.from_serialized_dict(copy.deepcopy(data)))
    except Exception as exc:  # the library's own errors (ValueError, KeyError, ForbiddenValueError, ...)
        raise _locate_json_error(data, lines, source, exc) from None
    name = data.get("name") if isinstance(data.get("name"), str) and data.get("name") else None
    where = {
        "hyperparameters": {item["name"]: lines.get(("hyperparameters", i)) for i, item in enumerate(items)},
        "conditions": {c.get("child"): lines.get(("conditions", i))
                       for i, c in enumerate(data.get("conditions", [])) if isinstance(c, dict)},
        "forbiddens": [lines.get(("forbiddens", i)) for i in range(len(data.get("forbiddens", [])))],
    }
    return space_from_configspace(cs, source=source, name=name, steps=steps, where=where, limits=limits)


def space_from_pcs(text: str, source: str | None = None, *, limits: SpaceLimits | None = None) -> SearchSpace:
    """A :class:`SearchSpace` from a PCS file: ``pcs_new`` (``lr real [1e-4, 1e-1] [1e-3] log``) or the
    older ``pcs`` (``lr [0.0001, 0.1] [0.001]l``), told apart by the type words of the first."""
    limits = current_limits(limits)
    if len(text) > limits.file_bytes:
        raise ConfigError(f"the file is larger than {limits.file_bytes} bytes (limit file_bytes)", source=source)
    lines = text.removeprefix("\ufeff").splitlines()
    used = sum(1 for line in lines if _pcs_line(line))
    if used > limits.parameters:
        raise ConfigError(f"{used} lines of hyperparameters, conditions and forbidden clauses is past the limit of "
                          f"{limits.parameters} (parameters; raise it with AUTOML_SPACE_LIMITS=parameters=N)",
                          source=source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ConfigSpace.read_and_write import pcs, pcs_new
    new = any(_PCS_NEW.match(_pcs_line(line)) for line in lines)
    readers = [(pcs_new, "pcs_new"), (pcs, "pcs")] if new else [(pcs, "pcs"), (pcs_new, "pcs_new")]
    errors: list[Exception] = []
    cs = None
    for module, _ in readers:
        try:
            cs = _quietly(functools.partial(module.read, lines))
            break
        except Exception as exc:  # the library's own errors
            errors.append(exc)
    if cs is None:
        raise ConfigError(f"not a valid PCS ({readers[0][1]}) space: {_message(errors[0])}", source=source,
                          line=_pcs_error_line(lines, errors[0])) from None
    where: dict[str, Any] = {"hyperparameters": {}, "conditions": {}, "forbiddens": []}
    for number, raw in enumerate(lines, 1):
        line = _pcs_line(raw)
        if not line:
            continue
        first = line.split()[0].split("|")[0]
        if "|" in line:
            where["conditions"].setdefault(first, number)
        elif line.startswith("{"):
            where["forbiddens"].append(number)
        elif "{" in line or "[" in line:
            where["hyperparameters"].setdefault(first, number)
    return space_from_configspace(cs, source=source, where=where, limits=limits)


def space_from_configspace(cs: Any, *, source: str | None = None, name: str | None = None,
                           steps: Mapping[str, float] | None = None, where: Mapping[str, Any] | None = None,
                           limits: SpaceLimits | None = None) -> SearchSpace:
    """A :class:`SearchSpace` from a ``ConfigSpace.ConfigurationSpace`` (see the module for the mapping).

    ``steps``: legacy ``q`` per hyperparameter; ``where``: the line of each hyperparameter, condition
    (by child) and forbidden clause (by position) in ``source``, for errors."""
    where = where or {"hyperparameters": {}, "conditions": {}, "forbiddens": []}
    converter = _Converter(cs, source, dict(steps or {}))
    lines: dict[YamlPath, int] = {}
    space: dict[str, Any] = {}
    for hp_name in converter.order():
        line = where["hyperparameters"].get(hp_name)
        if line is not None:
            lines[("space", hp_name)] = line
        spec = converter.hyperparameter(cs[hp_name], line)
        condition = converter.conditions.get(hp_name)
        if condition is not None:
            spec["when"] = converter.condition(condition, line)
            cond_line = where["conditions"].get(hp_name, line)
            if cond_line is not None:
                lines[("space", hp_name, "when")] = cond_line
        space[hp_name] = spec
    constraints = []
    for i, clause in enumerate(cs.forbidden_clauses):
        line = where["forbiddens"][i] if i < len(where["forbiddens"]) else None
        constraints.append(converter.forbidden(clause, line))
        if line is not None:
            lines[("constraints", i)] = line
    if not space:
        raise ConfigError("a ConfigSpace space needs at least one hyperparameter", source=source, line=1)
    raw_name = str(name or cs.name or (FilePath(source).stem if source else "configspace"))
    doc: dict[str, Any] = {"name": sanitized(raw_name, "configspace"), "space": space}
    if constraints:
        doc["constraints"] = constraints
    return space_from_dict(doc, source, lines, limits=limits)


class _Converter:
    """Turns ConfigSpace objects into loader specs and expression text."""

    def __init__(self, cs: Any, source: str | None, steps: dict[str, float]) -> None:
        self.cs = cs
        self.source = source
        self.steps = steps
        self.conditions = {c.child.name: c for c in cs.conditions}

    def error(self, line: int | None, field: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=line, field=field)

    def order(self) -> list[str]:
        """The hyperparameters, each after the ones its condition reads (ConfigSpace's order otherwise)."""
        pending = list(self.cs.keys())
        parents = {n: set(_parents(self.conditions[n])) if n in self.conditions else set() for n in pending}
        done: list[str] = []
        while pending:
            ready = next((n for n in pending if parents[n] <= set(done)), pending[0])  # a cycle: ConfigSpace's
            pending.remove(ready)
            done.append(ready)
        return done

    # -- hyperparameters ------------------------------------------------------------------------
    def hyperparameter(self, hp: Any, line: int | None) -> dict[str, Any]:
        kind = type(hp).__name__
        problem = check_name(hp.name)
        if problem is not None:
            raise self.error(line, hp.name, problem)
        if kind in ("UniformFloatHyperparameter", "NormalFloatHyperparameter", "BetaFloatHyperparameter",
                    "UniformIntegerHyperparameter", "NormalIntegerHyperparameter", "BetaIntegerHyperparameter"):
            integer = "Integer" in kind
            low, high = _py(hp.lower), _py(hp.upper)
            spec: dict[str, Any] = {"type": "int" if integer else "float", "low": low, "high": high}
            if hp.log:
                spec["log"] = True
            if kind.startswith("Normal"):
                mu, sigma = float(hp.mu), float(hp.sigma)
                if hp.log:  # ConfigSpace's own scaling of mu and sigma onto log(x)
                    mu, sigma = math.log(mu), abs(math.log(float(hp.lower) + sigma))
                spec["prior"] = {"type": "normal", "mu": mu, "sigma": sigma}
            elif kind.startswith("Beta"):
                spec["prior"] = {"type": "beta", "alpha": float(hp.alpha), "beta": float(hp.beta)}
            q = self.steps.get(hp.name)
            if q is not None and q > 0 and not hp.log:
                if integer:
                    step = int(round(q))
                    if step >= 1 and math.isclose(step, q):
                        spec["step"], spec["high"] = step, low + (high - low) // step * step
                else:
                    spec["step"] = float(q)
                    spec["high"] = float(low + math.floor((high - low) / q + 1e-9) * q)
            return spec
        if kind == "CategoricalHyperparameter":
            choices = [_py(c) for c in hp.choices]
            spec = {"type": "categorical", "choices": choices}
            weights = getattr(hp, "weights", None)
            if weights is not None and len(set(weights)) > 1:
                spec["weights"] = [float(w) for w in weights]
            return spec
        if kind == "OrdinalHyperparameter":
            return {"type": "categorical", "choices": [_py(c) for c in hp.sequence]}
        if kind in ("Constant", "UnParametrizedHyperparameter"):
            return {"type": "constant", "value": _py(hp.value)}
        raise self.error(line, hp.name, f"ConfigSpace hyperparameter type {kind} is not supported (supported: "
                                        "uniform/normal/beta float and integer, categorical, ordinal, constant)")

    # -- conditions -----------------------------------------------------------------------------
    def condition(self, cond: Any, line: int | None) -> str:
        kind = type(cond).__name__
        if kind in ("AndConjunction", "OrConjunction"):
            joiner = " and " if kind == "AndConjunction" else " or "
            return joiner.join(f"({self.condition(c, line)})" for c in cond.components)
        parent = cond.parent
        ref = quote(parent.name)
        if kind == "InCondition":
            return f"{ref} in [{', '.join(_literal(v) for v in cond.values)}]"
        op = _CONDITION_OPS.get(kind)
        if op is None:
            raise self.error(line, f"{cond.child.name}.when", f"ConfigSpace condition {kind} is not supported "
                             "(supported: Equals, NotEquals, LessThan, GreaterThan, In, And/Or conjunctions)")
        return self.compare(parent, op, cond.value)

    def compare(self, hp: Any, op: str, value: Any) -> str:
        """``hp OP value``; an ordinal compares by position in its sequence, so < and > become ``in``."""
        if op in ("<", "<=", ">", ">=") and type(hp).__name__ == "OrdinalHyperparameter":
            sequence = [_py(v) for v in hp.sequence]
            at = sequence.index(_py(value))
            compare: Callable[[int, int], bool] = _ORDER[op]
            kept = [v for i, v in enumerate(sequence) if compare(i, at)]
            return f"{quote(hp.name)} in [{', '.join(_literal(v) for v in kept)}]"
        return f"{quote(hp.name)} {op} {_literal(value)}"

    # -- forbidden clauses ----------------------------------------------------------------------
    def forbidden(self, clause: Any, line: int | None) -> str:
        """The constraint that ``clause`` does not hold."""
        kind = type(clause).__name__
        if kind == "ForbiddenEqualsClause":
            return self.compare(clause.hyperparameter, "!=", clause.value)
        if kind == "ForbiddenInClause":
            values = ", ".join(_literal(v) for v in clause.values)
            return f"{quote(clause.hyperparameter.name)} not in [{values}]"
        return f"not ({self.predicate(clause, line)})"

    def predicate(self, clause: Any, line: int | None) -> str:
        """When ``clause`` forbids."""
        kind = type(clause).__name__
        if kind in ("ForbiddenAndConjunction", "ForbiddenOrConjunction"):
            joiner = " and " if kind == "ForbiddenAndConjunction" else " or "
            return joiner.join(f"({self.predicate(c, line)})" for c in clause.components)
        if kind == "ForbiddenInClause":
            return f"{quote(clause.hyperparameter.name)} in [{', '.join(_literal(v) for v in clause.values)}]"
        if kind in _CLAUSE_OPS:
            return self.compare(clause.hyperparameter, _CLAUSE_OPS[kind], clause.value)
        if kind in _RELATION_OPS:  # ConfigSpace compares the values themselves, ordinals included
            return f"{quote(clause.left.name)} {_RELATION_OPS[kind]} {quote(clause.right.name)}"
        raise self.error(line, "forbiddens", f"ConfigSpace forbidden clause {kind} is not supported (supported: "
                         "Equals, In, LessThan[Equals], GreaterThan[Equals], relations, And/Or conjunctions)")


def _parents(cond: Any) -> list[str]:
    if hasattr(cond, "components"):
        return [p for c in cond.components for p in _parents(c)]
    return [cond.parent.name]


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value it holds."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, tuple, dict)) else value


def _literal(value: Any) -> str:
    value = _py(value)
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ConfigError(f"cannot write {value!r} in a condition or constraint (expected a string, number, bool or "
                      "None)")


def _number(value: Any) -> bool:
    """A positive number a float holds (an integer past int64 is not one: ``float()`` of it overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 < value <= INT_MAX if isinstance(value, int) else math.isfinite(value) and value > 0


def _quietly(read: Callable[[], Any]) -> Any:
    """Call ``read`` without ConfigSpace's deprecation and format warnings (e.g. the dropped ``q``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read()


def _message(exc: BaseException) -> str:
    if type(exc) is KeyError and exc.args:  # a name looked up among the hyperparameters
        return f"{exc.args[0]!r} is not a hyperparameter of this space"
    return str(exc).strip() or type(exc).__name__


def _locate_json_error(data: Mapping[str, Any], lines: Mapping[YamlPath, int], source: str | None,
                       exc: BaseException) -> ConfigError:
    """The ConfigError for a JSON space ConfigSpace refused: the first item that fails on its own."""
    from ConfigSpace import ConfigurationSpace

    def fails(doc: dict[str, Any]) -> bool:
        try:
            _quietly(lambda: ConfigurationSpace.from_serialized_dict(copy.deepcopy(doc)))
        except Exception:  # the library's own errors
            return True
        return False

    hps = data["hyperparameters"]
    path: YamlPath | None = None
    first = _first_failing(len(hps), lambda i: fails({"hyperparameters": hps[: i + 1]}))
    if first is not None:
        path = ("hyperparameters", first)
    else:
        for key in ("conditions", "forbiddens"):
            items: Sequence[Any] = data.get(key, [])
            first = _first_failing(len(items), lambda i, key=key, items=items: fails(  # type: ignore[misc]
                {"hyperparameters": hps, key: list(items[: i + 1])}))
            if first is not None:
                path = (key, first)
                break
    field = None if path is None else f"{path[0]}[{path[1]}]"
    line = None if path is None else lines.get(path)
    return ConfigError(f"ConfigSpace cannot read this space: {_message(exc)}", source=source, line=line, field=field)


def _first_failing(count: int, fails: Callable[[int], bool]) -> int | None:
    """The first ``i < count`` for which ``fails(i)`` holds, ``fails`` being monotone (the prefix up to ``i``
    fails, so do the longer ones): a bisection, so that a long space is re-read a logarithmic number of times."""
    if count == 0 or not fails(count - 1):
        return None
    lo, hi = 0, count - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _pcs_line(raw: str) -> str:
    """A PCS line as ConfigSpace reads it: comment cut, quotes removed, stripped."""
    return raw.split("#", 1)[0].replace('"', "").replace("'", "").strip()


def _pcs_error_line(lines: Sequence[str], exc: BaseException) -> int | None:
    """The line ConfigSpace's message quotes (``Could not parse: <line>``) or names, when it does."""
    text = str(exc)
    quoted = re.search(r"Could not parse(?: condition)?: (.+)$", text, re.S)
    if quoted:
        wanted = quoted.group(1).strip()
        for number, raw in enumerate(lines, 1):
            if _pcs_line(raw) == wanted:
                return number
    names = re.findall(r"'([^']+)'", text)
    for name in names:
        for number, raw in enumerate(lines, 1):
            line = _pcs_line(raw)
            if line and (line.split()[0] == name or re.search(rf"(^|[\s{{,|]){re.escape(name)}\s*[=!<>i]", line)):
                return number
    return None
