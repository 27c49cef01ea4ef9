"""Fuzzing the space readers (issue 15): hostile YAML, NNI JSON and ConfigSpace JSON, generated here, either
load or fail with the project's own error (:class:`~automl.errors.AutomlError`, one line) -- never another
exception. A space that loads also samples, mutates, encodes and flattens.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.errors import AutomlError
from automl.space.files import space_from_text
from automl.space.loader import PARAM_KEYS
from automl.space.model import SearchSpace
from automl.space.nni import SIGNATURES

#: the most one example may take (loading and exercising the space)

EXAMPLES = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# numbers that broke readers before: past int64, past float, tiny, non-finite, negative zero
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 1e-320, 5e-324, 0.5, 1e9, 1e12, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=8),
                    st.sampled_from(["1e400", "nan", "-inf", "q", "a and b", "not x", "x == 1", "`a`", "..", "/x"]))
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                    max_leaves=12)
KEYS = sorted({k for keys in PARAM_KEYS.values() for k in keys} | {"type", "when"})


@st.composite
def parameter(draw: st.DrawFn, depth: int = 0) -> Any:
    """A parameter spec: mostly well-formed in shape, with hostile values."""
    kind = draw(st.one_of(st.sampled_from(sorted(PARAM_KEYS)), JUNK))
    spec: dict[Any, Any] = {"type": kind}
    keys = PARAM_KEYS.get(kind, set()) if isinstance(kind, str) else set()
    for key in draw(st.lists(st.sampled_from(sorted(keys) or KEYS), max_size=6, unique=True)):
        if key == "item" and depth < 3:
            spec[key] = draw(parameter(depth + 1))
        elif key in ("choices", "inputs", "commutative", "weights"):
            spec[key] = draw(st.one_of(st.lists(SCALARS, max_size=6), JUNK))
        elif key == "ops":
            spec[key] = draw(st.one_of(st.dictionaries(st.sampled_from(["neg", "add", "x"]), NUMBERS, max_size=3),
                                       st.lists(st.sampled_from(["neg", "add", "matmul", "softmax", "frob"]),
                                                max_size=4), JUNK))
        elif key == "prior":
            spec[key] = draw(st.fixed_dictionaries({"type": st.sampled_from(["normal", "beta", "x"])},
                                                   optional={"mu": NUMBERS, "sigma": NUMBERS, "alpha": NUMBERS,
                                                             "beta": NUMBERS}))
        else:
            spec[key] = draw(st.one_of(NUMBERS, SCALARS, JUNK))
    if draw(st.booleans()):
        spec["when"] = draw(st.one_of(st.sampled_from(["a == 1", "b", "not a", "a in [1, 2]", "(", "x.y > 2"]),
                                      SCALARS))
    return spec


@st.composite
def wellformed(draw: st.DrawFn, depth: int = 0) -> Any:
    """A parameter with every key it needs, holding extreme numbers: what loads must also sample."""
    kind = draw(st.sampled_from(["float", "int", "normal", "categorical", "subset", "repeat", "graph", "bool"]))
    number = st.one_of(NUMBERS, st.floats(-1e6, 1e6))
    if kind in ("float", "int"):
        spec: dict[str, Any] = {"type": kind, "low": draw(number), "high": draw(number)}
        if draw(st.booleans()):
            spec["log"] = True
        if draw(st.booleans()):
            spec["step"] = draw(number)
        if draw(st.booleans()):
            spec["prior"] = draw(st.sampled_from([{"type": "normal", "mu": draw(number), "sigma": draw(number)},
                                                  {"type": "beta", "alpha": draw(number), "beta": draw(number)}]))
        return spec
    if kind == "normal":
        spec = {"type": kind, "mu": draw(number), "sigma": draw(number), "log": draw(st.booleans())}
        return {**spec, "step": draw(number)} if draw(st.booleans()) else spec
    if kind in ("categorical", "subset"):
        spec = {"type": kind, "choices": draw(st.lists(st.one_of(NUMBERS, st.booleans(), st.text(max_size=2)),
                                                       min_size=1, max_size=6))}
        if kind == "categorical" and draw(st.booleans()):
            spec["weights"] = draw(st.lists(number, min_size=len(spec["choices"]), max_size=len(spec["choices"])))
        if kind == "subset" and draw(st.booleans()):
            spec["size"] = draw(number)
        return spec
    if kind == "repeat" and depth < 2:
        return {"type": kind, "min": draw(number), "max": draw(number), "item": {"w": draw(wellformed(depth + 1))}}
    if kind == "graph":
        return {"type": kind, "inputs": draw(st.lists(st.sampled_from(["q", "k", "v"]), min_size=1, max_size=3)),
                "ops": draw(st.one_of(st.dictionaries(st.sampled_from(["neg", "add", "mix"]), number, min_size=1),
                                      st.lists(st.sampled_from(["neg", "add", "matmul", "softmax", "transpose"]),
                                               min_size=1, max_size=3, unique=True))),
                "min_nodes": draw(number), "max_nodes": draw(number)}
    return {"type": "bool"}


@EXAMPLES
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), wellformed(), min_size=1, max_size=3))
def test_wellformed_parameters_with_extreme_numbers_load_and_work_or_fail_cleanly(params: dict[str, Any]) -> None:
    check(dump({"name": "fuzz", "space": params}), ".yaml")


@st.composite
def document(draw: st.DrawFn) -> dict[Any, Any]:
    params = draw(st.dictionaries(st.sampled_from(["a", "b", "x", "when", "0_1", "g"]),
                                  st.one_of(parameter(), SCALARS, st.dictionaries(st.sampled_from(["a", "when", "c"]),
                                                                                  parameter(), max_size=2)),
                                  min_size=1, max_size=4))
    doc: dict[Any, Any] = {"name": draw(st.one_of(st.just("fuzz"), SCALARS)), "space": params}
    optional = {
        "search": st.fixed_dictionaries({}, optional={"trials": NUMBERS, "strategy": SCALARS, "options": JUNK}),
        "budget": st.fixed_dictionaries({"name": st.just("epochs"), "min": NUMBERS, "max": NUMBERS}),
        "constraints": st.lists(st.sampled_from(["params <= 10", "a < b", "x", "flops", "not (a == 1)"]), max_size=2),
        "objectives": st.dictionaries(st.sampled_from(["loss", "acc"]), st.sampled_from(["min", "max", "up"])),
        "builder": st.sampled_from(["mlp", "pty:spawn", "a b:c", "nope"]),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True)):
        doc[key] = draw(optional[key])
    return doc


def exercise(space: SearchSpace) -> None:
    """What a search does with a loaded space: none of it may raise."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        config = space.sample(rng)
        assert not space.problems(config), space.problems(config)
        child = space.mutate(config, rng)
        assert not space.problems(child)
        space.neighbours(config, rng)
        space.encode(config)
    space.flatten()


def check(text: str, suffix: str) -> None:
    try:
        space = space_from_text(text, suffix, source=f"fuzz{suffix}")
    except AutomlError as exc:
        assert "\n" not in str(exc), str(exc)
    else:
        exercise(space)


def dump(doc: Any) -> str:
    """YAML text of ``doc`` (numbers PyYAML cannot write as YAML go as JSON text, which YAML reads too)."""
    try:
        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    except (yaml.YAMLError, ValueError, OverflowError):
        return json.dumps(doc, default=str)


@EXAMPLES
@given(document())
def test_hostile_yaml_spaces_fail_cleanly(doc: dict[Any, Any]) -> None:
    check(dump(doc), ".yaml")


@EXAMPLES
@given(document(), st.data())
def test_mangled_yaml_text_fails_cleanly(doc: dict[Any, Any], data: st.DataObject) -> None:
    """The text of a space cut, spliced, aliased or nested: the reader's own YAML handling."""
    text = dump(doc)
    cut = data.draw(st.integers(0, len(text)))
    extra = data.draw(st.sampled_from(["&a [*a]", "*nope", "[" * 200, "{a: &b [1, 2]}\n  c: [*b, *b]", "\t", "\x00",
                                       ": : :", "!!python/object:os.system x", "2001-13-45", "9" * 5000, "\ufeff",
                                       "<<: *x", "? [1]\n: 2", "- - - -", "'unterminated", "!!binary ###"]))
    check(text[:cut] + extra + text[cut:], ".yaml")


@st.composite
def nni_parameter(draw: st.DrawFn, depth: int = 0) -> Any:
    kind = draw(st.one_of(st.sampled_from(sorted(SIGNATURES)), JUNK))
    if kind == "choice" and depth < 2 and draw(st.booleans()):
        options = draw(st.lists(st.fixed_dictionaries(
            {"_name": st.one_of(st.text(max_size=3), NUMBERS, st.booleans())},
            optional={"k": nni_parameter(depth + 1), "type": nni_parameter(depth + 1)}), min_size=1, max_size=3))
        return {"_type": kind, "_value": options}
    if kind == "input_choice":
        value: Any = draw(st.fixed_dictionaries({"candidates": st.one_of(st.lists(SCALARS, max_size=4), JUNK)},
                                                optional={"n_chosen": NUMBERS}))
    else:
        value = draw(st.one_of(st.lists(NUMBERS, min_size=0, max_size=4), st.lists(SCALARS, max_size=4), JUNK))
    return draw(st.one_of(st.just({"_type": kind, "_value": value}), st.just({"_type": kind}), JUNK))


def json_text(data: Any) -> str:
    """JSON as a hand-written NNI file may be: Python's json writes NaN, Infinity and huge integers."""
    try:
        return json.dumps(data)
    except ValueError:  # an integer of more digits than Python writes
        return json.dumps(data, default=str).replace('"', "")


@EXAMPLES
@given(st.dictionaries(st.text(max_size=6), nni_parameter(), min_size=0, max_size=4))
def test_hostile_nni_json_fails_cleanly(space: dict[str, Any]) -> None:
    check(json_text(space), ".json")


@EXAMPLES
@given(st.dictionaries(st.text(max_size=6), nni_parameter(), min_size=1, max_size=3), st.data())
def test_mangled_nni_json_text_fails_cleanly(space: dict[str, Any], data: st.DataObject) -> None:
    text = json_text(space)
    cut = data.draw(st.integers(0, len(text)))
    extra = data.draw(st.sampled_from(["[" * 3000, "/*", "//", "#", ",", "]]", '"\\', "1e999", "9" * 5000,
                                       '{"_type": "choice", "_value": [', "\ufeff", "NaN", '"a": 1, "a": 2']))
    check(text[:cut] + extra + text[cut:], ".json")


@EXAMPLES
@given(st.lists(st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=6), SCALARS), "type": st.sampled_from(
        ["uniform_float", "uniform_int", "normal_float", "categorical", "ordinal", "constant", "beta_int", "x"])},
    optional={"lower": NUMBERS, "upper": NUMBERS, "log": st.booleans(), "q": NUMBERS, "mu": NUMBERS,
              "sigma": NUMBERS, "choices": st.lists(SCALARS, max_size=4), "sequence": st.lists(SCALARS, max_size=3),
              "value": SCALARS, "alpha": NUMBERS, "beta": NUMBERS, "weights": JUNK, "default_value": SCALARS}),
    max_size=4))
def test_hostile_configspace_json_fails_cleanly(hyperparameters: list[dict[str, Any]]) -> None:
    check(json_text({"hyperparameters": hyperparameters}), ".json")


def test_finite_checks_hold_for_every_number_the_fuzzers_draw() -> None:
    """The numbers above include every kind that broke a reader (a guard against trimming them)."""
    assert any(isinstance(n, int) and n > 2**63 for n in (2**63, 10**400)) and math.isinf(float("inf"))
