"""The condition/constraint language: safe by construction, correct on what it allows."""
from __future__ import annotations

import pytest

from automl.errors import ConfigError
from automl.expr import parse


@pytest.mark.parametrize("text, values, expected", [
    ("train.optimizer == 'sgd'", {"train.optimizer": "sgd"}, True),
    ("train.optimizer == 'sgd'", {"train.optimizer": "adam"}, False),
    ("params <= 600e6", {"params": 5e8}, True),
    ("params <= 600e6 and flops < 1e9", {"params": 5e8, "flops": 2e9}, False),
    ("kind in ['a', 'b'] or not flag", {"kind": "c", "flag": False}, True),
    ("kind not in ['a', 'b']", {"kind": "a"}, False),
    ("0 < x <= 1", {"x": 1}, True),
    ("x > -1", {"x": 0}, True),
])
def test_evaluates(text, values, expected):
    assert parse(text).holds(values) is expected


def test_missing_name_makes_condition_false():
    assert parse("momentum > 0.5").holds({}) is False


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hi')",
    "x.__class__",
    "open('f')",
    "x + 1 > 2",
    "[y for y in x]",
    "lambda: 1",
])
def test_rejects_anything_beyond_comparisons(text):
    with pytest.raises(ConfigError):
        parse(text, source="s.yaml", line=3, field="when")


def test_syntax_error_names_source_and_line():
    with pytest.raises(ConfigError) as info:
        parse("x ==", source="s.yaml", line=7, field="space.a.when")
    assert str(info.value).startswith("s.yaml:7: space.a.when: cannot parse expression")


def test_bound_extracts_cost_constraints():
    assert parse("params <= 200000").bound() == ("params", "<=", 200000.0)
    assert parse("kind == 'a'").bound() is None


@pytest.mark.parametrize("text, values, expected", [
    ("`0_1` == 3", {"`0_1`": 3}, True),
    ("`learning rate` > 0.01 and `conv-1` in [16, 32]", {"`learning rate`": 0.1, "`conv-1`": 16}, True),
    ("block.`kernel size` == 3", {"block.`kernel size`": 5}, False),
    ("`lambda` < 0.5", {"`lambda`": 0.1}, True),  # a keyword
    ("`true` == 'x'", {"`true`": "x"}, True),  # a name, not the literal
    ("`a.b` == 1", {"`a.b`": 1}, True),  # one name containing a dot
    ("name == 'a`b'", {"name": "a`b"}, True),  # a backtick inside a string is text
    ("`classifier:__choice__` == 'svm'", {"`classifier:__choice__`": "svm"}, True),
])
def test_backticks_quote_names(text, values, expected):
    assert parse(text).holds(values) is expected


def test_quoted_names_are_canonical():
    assert parse("`0_1` == 3 and block.`k s` > 1 and x.y < 2 and `lambda` == 1").names == {
        "`0_1`", "block.`k s`", "x.y", "`lambda`"}
    assert parse("`x` == 1").names == {"x"}  # quoting a plain name changes nothing
    assert parse("`params` <= 10").bound() == ("params", "<=", 10.0)


def test_name_text_round_trips():
    from automl.expr import name_parts, name_text

    for parts in [("a",), ("0_1",), ("block", "kernel size"), ("a.b", "c"), ("lambda",), ("x", "y", "z")]:
        assert name_parts(name_text(parts)) == parts


@pytest.mark.parametrize("text, message", [
    ("`0_1 == 3", "unclosed ` at column 1"),
    ("`` == 3", "empty ``"),
    ("`a`b == 1", "cannot parse"),
    ("x == 1 and `y` +", "cannot parse"),
])
def test_bad_backticks_are_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse(text, source="s.yaml", line=2, field="when")


def test_syntax_error_columns_point_into_the_original_text():
    with pytest.raises(ConfigError, match=r"at column 2[0-9]"):
        parse("`learning rate` > 0.1 and and", source="s.yaml")


@pytest.mark.parametrize("text, values, expected", [
    ("a == 1 or b == 2", {"b": 2}, True),  # the unknown side decides nothing
    ("a == 1 or b == 2", {"b": 3}, False),
    ("a == 1 and b == 2", {"b": 3}, False),
    ("a == 1 and b == 2", {"b": 2}, False),  # unknown: false as a condition
    ("not (a == 1)", {}, False),
])
def test_an_unknown_name_is_three_valued(text, values, expected):
    assert parse(text).holds(values) is expected
