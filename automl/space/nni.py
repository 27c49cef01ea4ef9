"""Load NNI's ``search_space.json`` unchanged: ``{"name": {"_type": T, "_value": [...]}, ...}``.

The JSON is converted into the document the YAML loader reads and built by
:func:`automl.space.loader.space_from_dict`, so validation is shared; errors name the NNI field
(``lr._value[1]``) and its line. The file is read as NNI reads it (:mod:`automl.space.jsontext`:
``#``, ``//`` and ``/* */`` comments and trailing commas are accepted); an NNI space written in YAML
(NNI reads those too) loads through :func:`space_from_nni`. The mapping, exact unless noted:

* ``choice`` -> categorical. Its options may be any JSON values: options that are objects *without*
  ``_name`` (``{"optimizer": "Adam", "lr": 0.001}``) or arrays are plain alternatives, and the config
  holds the chosen object itself (the flat Optuna view holds its JSON text). A *nested* choice (every
  option an object with ``_name``) -> a group ``{"_name": categorical, <key>: {..., when: "_name ==
  '<alt>'"}}``, so a config has NNI's shape ``{"_name": "conv", "kernel": 3}``. A key declared by
  several alternatives is one parameter when the definitions are identical (``when: _name in
  [...]``), a :class:`ConfigError` otherwise. Inside a nested choice ``type`` (and ``when``, when that
  choice is itself nested) cannot name a parameter.
* ``randint [lower, upper)`` -> int ``lower..upper-1``.
* ``uniform`` / ``loguniform`` -> float (log). ``quniform [low, high, q]`` -> NNI's
  ``clip(round(x / q) * q, low, high)``: a float with step ``q`` when both bounds lie on the q grid,
  otherwise a categorical of the (at most 1000) grid values, which keeps the values exact but weighs
  them equally (beyond 1000 values: a float stepped from ``low``, an approximation).
* ``qloguniform`` -> a log float *without* the step (automl cannot combine log and step on a bounded
  float): the distribution is NNI's, the values are not rounded to multiples of ``q`` (approximation).
* ``normal``, ``qnormal``, ``lognormal``, ``qlognormal`` -> ``normal`` with ``log``/``step``.
* classic NAS (``nnictl ss_gen``): ``layer_choice [op name, ...]`` -> categorical of the op names (the
  config holds the chosen name; NNI's trial receives ``{"_value": name, "_idx": i}``);
  ``input_choice {"candidates": [...], "n_chosen": k}`` -> a ``subset`` of the candidates: exactly
  ``k`` of them, any number when ``n_chosen`` is null or absent (the config holds the chosen
  candidates as a list, in the candidates' order).

Parameter names are kept as NNI writes them (``0_1``, ``conv-1``, ``learning rate``); conditions and
constraints name such parameters in backticks (``` `0_1` == 3 ```). Duplicate keys are rejected. The
space is named after the file's stem.
"""
from __future__ import annotations

import math
from pathlib import Path as FilePath
from typing import Any, Mapping

from automl.errors import ConfigError
from automl.expr import check_name
from automl.space.jsontext import key_lines, read_json
from automl.space.limits import INT_MAX, SpaceLimits, current_limits
from automl.space.loader import space_from_dict
from automl.space.model import SearchSpace
from automl.space.names import sanitized
from automl.space.paths import YamlPath, dotted

__all__ = ["GRID_LIMIT", "SIGNATURES", "key_lines", "looks_like_nni", "space_from_nni", "space_from_nni_json"]

SIGNATURES = {
    "choice": "[option, ...]", "randint": "[lower, upper)", "uniform": "[low, high]",
    "quniform": "[low, high, q]", "loguniform": "[low, high]", "qloguniform": "[low, high, q]",
    "normal": "[mu, sigma]", "qnormal": "[mu, sigma, q]", "lognormal": "[mu, sigma]",
    "qlognormal": "[mu, sigma, q]", "layer_choice": "[op name, ...]",
    "input_choice": '{"candidates": [name, ...], "n_chosen": k or null}',
}
GRID_LIMIT = 1000
_SPEC = '{"_type": ..., "_value": [...]}'


def space_from_nni_json(text: str, source: str | None = None, *, limits: SpaceLimits | None = None) -> SearchSpace:
    """Build a :class:`SearchSpace` from the text of an NNI ``search_space.json``."""
    limits = current_limits(limits)
    data, lines = read_json(text, source, limits)
    return space_from_nni(data, lines, source, limits=limits)


def looks_like_nni(data: Any) -> bool:
    """Whether parsed ``data`` has an NNI search space's shape (every value a ``{"_type": ...}`` object)."""
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "_type" in v for v in data.values()))


def space_from_nni(data: Any, lines: Mapping[YamlPath, int], source: str | None = None, *,
                   limits: SpaceLimits | None = None) -> SearchSpace:
    """Build a :class:`SearchSpace` from a parsed NNI search space and the line of each of its paths. The
    space is named after the file's stem, made a valid name (``my space (2).json``: ``my-space-2-``)."""
    converter = _Converter(source, lines)
    if not isinstance(data, dict) or not data:
        kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        got = "an empty object" if isinstance(data, dict) else kinds.get(type(data), "a number")
        raise ConfigError(f"an NNI search space is a JSON object mapping parameter names to {_SPEC}, got {got}",
                          source=source, line=1)
    doc = {"name": sanitized(FilePath(source).stem, "nni-space") if source else "nni-space",
           "space": converter.params(data, (), ("space",), frozenset())}
    try:
        return space_from_dict(doc, source, converter.lines, limits=limits)
    except ConfigError as exc:
        field = converter.fields.get(exc.field or "")
        if field is None:
            raise
        raise ConfigError(exc.message, source=exc.source, line=exc.line, field=field) from None


def _number(value: Any) -> bool:
    """A finite number: a float that is finite, or an integer that a float holds (within int64)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= INT_MAX if isinstance(value, int) else math.isfinite(value)


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (an integer too long to print: its size)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[:limit] + "..."


def _as_number(value: Any) -> Any:
    """A number written as text (YAML 1.1 reads ``1e-3`` so) as the number; anything else unchanged."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


class _Converter:
    """Turns NNI specs into loader specs, recording each generated path's NNI field and line."""

    def __init__(self, source: str | None, nni_lines: Mapping[YamlPath, int]) -> None:
        self.source = source
        self.nni_lines = nni_lines
        self.lines: dict[YamlPath, int] = {}
        self.fields: dict[str, str] = {}

    def line(self, nni: YamlPath) -> int | None:
        for cut in range(len(nni), 0, -1):
            if nni[:cut] in self.nni_lines:
                return self.nni_lines[nni[:cut]]
        return None

    def error(self, nni: YamlPath, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=self.line(nni), field=dotted(nni) or None)

    def link(self, ours: YamlPath, nni: YamlPath) -> None:
        line = self.line(nni)
        if line is not None:
            self.lines[ours] = line
        self.fields[dotted(ours)] = dotted(nni)

    def name(self, name: str, nni: YamlPath, reserved: frozenset[str]) -> str:
        problem = check_name(name)
        if problem is not None:
            raise self.error(nni, problem)
        if name in reserved:
            raise self.error(nni, f"{name!r} cannot name a parameter inside a nested choice (automl's space "
                                  f"format reserves it there): rename it")
        return name

    def params(self, spec: Mapping[str, Any], nni: YamlPath, ours: YamlPath,
               reserved: frozenset[str]) -> dict[str, Any]:
        self.link(ours, nni)
        return {self.name(k, (*nni, k), reserved): self.param(v, (*nni, k), (*ours, k), False) for k, v in spec.items()}

    def param(self, spec: Any, nni: YamlPath, ours: YamlPath, conditional: bool) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise self.error(nni, f"expected {_SPEC}, got {spec!r}")
        for key in ("_type", "_value"):
            if key not in spec:
                raise self.error(nni, f"missing {key!r}; expected {_SPEC}")
        kind, values = spec["_type"], spec["_value"]
        if not isinstance(kind, str) or kind not in SIGNATURES:
            raise self.error((*nni, "_type"), f"unknown _type {_shown(kind)}; expected one of {sorted(SIGNATURES)}")
        self.link(ours, nni)
        self.link((*ours, "type"), (*nni, "_type"))
        value_path = (*nni, "_value")
        if kind == "input_choice":
            return self.input_choice(values, value_path, ours)
        if not isinstance(values, list):
            raise self.error((*nni, "_value"), f"{kind} expects _value {SIGNATURES[kind]}, got {values!r}")
        if kind in ("choice", "layer_choice"):
            if not values:
                raise self.error(value_path, f"a {kind} needs at least one option")
            if kind == "choice" and any(isinstance(v, dict) and "_name" in v for v in values):
                return self.nested(values, nni, ours, conditional)
            if kind == "layer_choice":
                for i, v in enumerate(values):
                    if not isinstance(v, str) or not v:
                        raise self.error((*value_path, i), f"expected an op name (a non-empty string), got {v!r}")
            self.link((*ours, "choices"), value_path)
            for i in range(len(values)):
                self.link((*ours, "choices", i), (*value_path, i))
            return {"type": "categorical", "choices": list(values)}
        values = [_as_number(v) for v in values]
        arity = SIGNATURES[kind].count(",") + 1
        if len(values) != arity:
            raise self.error(value_path, f"{kind} expects _value {SIGNATURES[kind]} ({arity} numbers), "
                                         f"got {len(values)}: {values!r}")
        for i, v in enumerate(values):
            if not _number(v) or (kind == "randint" and float(v) != int(v)):
                raise self.error((*value_path, i),
                                 f"expected {'an integer' if kind == 'randint' else 'a number'} (within int64 and "
                                 f"finite), got {_shown(v)}")
        q = float(values[2]) if arity == 3 else None
        if q is not None and q <= 0:
            raise self.error((*value_path, 2), f"q must be > 0, got {values[2]!r}")
        keys = ("mu", "sigma", "step") if "normal" in kind else ("low", "high", "step")
        for i, key in enumerate(keys[:arity]):
            self.link((*ours, key), (*value_path, i))
        if "normal" in kind:
            if values[1] <= 0:
                raise self.error((*value_path, 1), f"sigma must be > 0, got {values[1]!r}")
            out: dict[str, Any] = {"type": "normal", "mu": values[0], "sigma": values[1], "log": "log" in kind}
            return out if q is None else {**out, "step": q}
        low, high = values[0], values[1]
        if low >= high:
            first, second = SIGNATURES[kind].strip("[)]").split(", ")[:2]
            raise self.error(value_path, f"{kind} needs {first} < {second}, got {values!r}")
        if "log" in kind and low <= 0:
            raise self.error((*value_path, 0), f"{kind} needs low > 0, got {low!r}")
        if kind == "randint":
            return {"type": "int", "low": int(low), "high": int(high) - 1}
        if kind == "quniform":
            assert q is not None
            if not (math.isfinite(float(low) / q) and math.isfinite(float(high) / q)):
                raise self.error((*value_path, 2), f"q ({q:g}) is too small for the range [{low}, {high}]")
            return _quantized(float(low), float(high), q)
        return {"type": "float", "low": float(low), "high": float(high), "log": "log" in kind}

    def input_choice(self, value: Any, value_path: YamlPath, ours: YamlPath) -> dict[str, Any]:
        """``{"candidates": [...], "n_chosen": k}`` -> a subset of exactly k candidates (any number: null)."""
        if not isinstance(value, dict) or "candidates" not in value:
            raise self.error(value_path, f"input_choice expects _value {SIGNATURES['input_choice']}, got {value!r}")
        for key in value:
            if key not in ("candidates", "n_chosen"):
                raise self.error((*value_path, key), f"unknown key {key!r} in an input_choice; expected "
                                                     "'candidates' and 'n_chosen'")
        candidates = value["candidates"]
        self.link((*ours, "choices"), (*value_path, "candidates"))
        if not isinstance(candidates, list) or not candidates:
            raise self.error((*value_path, "candidates"), f"expected a non-empty list of input names, got "
                                                          f"{candidates!r}")
        for i in range(len(candidates)):
            self.link((*ours, "choices", i), (*value_path, "candidates", i))
        out: dict[str, Any] = {"type": "subset", "choices": list(candidates)}
        chosen = _as_number(value.get("n_chosen"))
        if chosen is not None:
            self.link((*ours, "size"), (*value_path, "n_chosen"))
            if not _number(chosen) or float(chosen) != int(chosen) or not 0 <= chosen <= len(candidates):
                raise self.error((*value_path, "n_chosen"), f"expected an integer from 0 to {len(candidates)} (the "
                                                            f"number of candidates) or null, got {chosen!r}")
            out["size"] = int(chosen)
        return out

    def nested(self, options: list[Any], nni: YamlPath, ours: YamlPath, conditional: bool) -> dict[str, Any]:
        value_path = (*nni, "_value")
        names = []
        members: dict[str, tuple[Any, YamlPath, list[Any]]] = {}  # key -> (NNI spec, first path, alternatives)
        reserved = frozenset({"type", "when"} if conditional else {"type"})
        for i, option in enumerate(options):
            if not isinstance(option, dict) or "_name" not in option:
                raise self.error((*value_path, i), "in a nested choice every option must be an object with a "
                                                   f"'_name' key (plain values cannot be mixed in), got {option!r}")
            alt = option["_name"]
            if isinstance(alt, bool) or not isinstance(alt, (str, int, float)):
                raise self.error((*value_path, i, "_name"), f"expected a string or number, got {alt!r}")
            names.append(alt)
            for key, spec in option.items():
                if key == "_name":
                    continue
                self.name(key, (*value_path, i, key), reserved)
                if key not in members:
                    members[key] = (spec, (*value_path, i, key), [alt])
                elif members[key][0] == spec:
                    members[key][2].append(alt)
                else:
                    raise self.error((*value_path, i, key), f"alternatives {members[key][2][0]!r} and {alt!r} "
                                     f"define {key!r} differently; a group has one parameter per name, so rename "
                                     "one of them (identical definitions are shared)")
        self.link((*ours, "_name"), value_path)
        self.link((*ours, "_name", "choices"), value_path)
        for i in range(len(options)):
            self.link((*ours, "_name", "choices", i), (*value_path, i, "_name"))
        group: dict[str, Any] = {"_name": {"type": "categorical", "choices": names}}
        for key, (spec, path, alts) in members.items():
            child = self.param(spec, path, (*ours, key), True)
            child["when"] = f"_name == {alts[0]!r}" if len(alts) == 1 else f"_name in {alts!r}"
            self.link((*ours, key, "when"), (*path[:-1], "_name"))
            group[key] = child
        return group


def _quantized(low: float, high: float, q: float) -> dict[str, Any]:
    """NNI's quniform, ``clip(round(x / q) * q, low, high)`` for x uniform in [low, high]."""
    k_low, k_high = round(low / q), round(high / q)

    def on_grid(x: float) -> bool:
        return math.isclose(x / q, round(x / q), rel_tol=1e-9, abs_tol=1e-9)

    if (on_grid(low) and on_grid(high)) or k_high - k_low >= GRID_LIMIT:
        return {"type": "float", "low": low, "high": high, "step": q}
    values = sorted({min(high, max(low, k * q)) for k in range(k_low, k_high + 1)})
    return {"type": "categorical", "choices": values}
