"""A small, safe expression language for ``when:`` conditions and cost constraints.

Expressions are parsed with :func:`ast.parse` and only a whitelist of node types is accepted:
comparisons (``== != < <= > >= in not in``), ``and``/``or``/``not``, parentheses, dotted names
(``train.optimizer``), numbers, strings, booleans, ``None`` and lists/tuples of literals. Nothing is
ever passed to ``eval``/``exec``; evaluation walks the checked tree.
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from automl.errors import ConfigError

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_BOUND_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


class Missing(Exception):
    """A name in the expression has no value (e.g. an inactive conditional parameter)."""


@dataclass(frozen=True)
class Expr:
    """A parsed, checked expression; ``names`` are the dotted names it reads."""

    text: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, lookup: Callable[[str], Any]) -> Any:
        """Evaluate with ``lookup(name)`` giving each name's value (raise :class:`Missing` if none)."""
        return _eval(self.tree, lookup)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when the expression is true on ``values``; a missing name makes it false."""

        def lookup(name: str) -> Any:
            if name not in values:
                raise Missing(name)
            return values[name]

        try:
            return bool(self.evaluate(lookup))
        except Missing:
            return False

    def bound(self) -> tuple[str, str, float] | None:
        """For ``name OP number`` (a cost constraint) return (name, op, number), else None."""
        node = self.tree
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and type(node.ops[0]) in _BOUND_OPS
            and isinstance(node.comparators[0], ast.Constant)
            and isinstance(node.comparators[0].value, (int, float))
        ):
            name = _dotted(node.left)
            if name is not None:
                return name, _BOUND_OPS[type(node.ops[0])], float(node.comparators[0].value)
        return None

    def __str__(self) -> str:
        return self.text


def parse(text: str, *, source: str | None = None, line: int | None = None, field: str | None = None) -> Expr:
    """Parse and check ``text``; a syntax error or a forbidden construct raises :class:`ConfigError`."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"expected an expression string, got {text!r}", source=source, line=line, field=field)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(
            f"cannot parse expression {text!r}: {exc.msg} at column {exc.offset}",
            source=source, line=line, field=field,
        ) from None
    names: set[str] = set()
    _check(tree, names, text, source, line, field)
    return Expr(text=text.strip(), tree=tree, names=frozenset(names))


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _check(node: ast.expr, names: set[str], text: str, source: str | None, line: int | None, field: str | None) -> None:
    def fail(what: str) -> ConfigError:
        return ConfigError(
            f"{what} is not allowed in expression {text!r}; use names, literals, comparisons, "
            "'in', 'and', 'or', 'not' and parentheses",
            source=source, line=line, field=field,
        )

    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, names, text, source, line, field)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            _check(node.operand, names, text, source, line, field)
        elif isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant):
            return
        else:
            raise fail(type(node.op).__name__)
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise fail("this comparison")
        _check(node.left, names, text, source, line, field)
        for comparator in node.comparators:
            _check(comparator, names, text, source, line, field)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name is None:
            raise fail("attribute access on a non-name")
        if any(part.startswith("__") for part in name.split(".")):
            raise fail(f"the dunder name {name!r}")
        if name in ("true", "false", "True", "False", "None", "null"):
            return
        names.add(name)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise fail(f"the literal {node.value!r}")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            if not isinstance(element, (ast.Constant, ast.UnaryOp)):
                raise fail("a non-literal list element")
            _check(element, names, text, source, line, field)
    else:
        raise fail(type(node).__name__)


_LITERAL_NAMES = {"true": True, "True": True, "false": False, "False": False, "None": None, "null": None}


def _eval(node: ast.expr, lookup: Callable[[str], Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, lookup) for v in node.values)
        return any(_eval(v, lookup) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, lookup)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, lookup)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        assert name is not None
        if name in _LITERAL_NAMES:
            return _LITERAL_NAMES[name]
        return lookup(name)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, lookup) for e in node.elts]
    raise AssertionError(f"unchecked node {type(node).__name__}")
