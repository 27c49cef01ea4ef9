"""A small, safe expression language for ``when:`` conditions and cost constraints.

Expressions are parsed with :func:`ast.parse` and only a whitelist of node types is accepted:
comparisons (``== != < <= > >= in not in``), ``and``/``or``/``not``, parentheses, dotted names
(``train.optimizer``), numbers, strings, booleans, ``None`` and lists/tuples of literals. Nothing is
ever passed to ``eval``/``exec``; evaluation walks the checked tree.

A name that is not a plain identifier (``0_1``, ``conv-1``, ``learning rate``, a keyword such as
``lambda``) is written in backticks: ``` `learning rate` > 0.01 ```, ``` block.`conv-1` == 3 ```
(each part of a dotted name is quoted on its own; ``` `a.b` ``` is one name containing a dot).
:attr:`Expr.names` holds every name in that canonical form (:func:`name_text`).

A name without a value (an inactive conditional parameter) is *unknown*: ``or`` is true when one
side is true, ``and`` false when one side is false, and anything else that needs the value is
unknown too, which makes a condition false (:meth:`Expr.holds`).
"""
from __future__ import annotations

import ast
import keyword
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

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
_LITERAL_NAMES = {"true": True, "True": True, "false": False, "False": False, "None": None, "null": None}
QUOTE = "`"


class Missing(Exception):
    """A name in the expression has no value (e.g. an inactive conditional parameter)."""


def is_plain(part: str) -> bool:
    """Whether a name part can be written without backticks (an identifier that is not a keyword,
    a literal such as ``true``, or a dunder-like name)."""
    return (part.isidentifier() and not keyword.iskeyword(part) and part not in _LITERAL_NAMES
            and not part.startswith("__"))


def quote(part: str) -> str:
    """One name part as an expression writes it: as it is when plain, else in backticks."""
    return part if is_plain(part) else f"{QUOTE}{part}{QUOTE}"


def name_text(parts: Iterable[str]) -> str:
    """The canonical text of a (dotted) name: ``("block", "conv-1")`` -> ``block.`conv-1```."""
    return ".".join(quote(p) for p in parts)


def name_parts(text: str) -> tuple[str, ...]:
    """Inverse of :func:`name_text`."""
    parts: list[str] = []
    i = 0
    while i <= len(text):
        if text.startswith(QUOTE, i):
            end = text.index(QUOTE, i + 1)
            parts.append(text[i + 1:end])
            i = end + 2  # past the closing quote and the dot
        else:
            end = text.find(".", i)
            end = len(text) if end < 0 else end
            parts.append(text[i:end])
            i = end + 1
    return tuple(parts)


def check_name(name: Any) -> str | None:
    """Why ``name`` cannot name a parameter (None when it can): any non-empty string without a backtick."""
    if not isinstance(name, str) or not name:
        return f"parameter names must be non-empty strings, got {name!r}"
    if QUOTE in name:
        return f"parameter names cannot contain a backtick (` quotes names in expressions), got {name!r}"
    return None


@dataclass(frozen=True)
class Expr:
    """A parsed, checked expression; ``names`` are the dotted names it reads (see :func:`name_text`)."""

    text: str
    tree: ast.expr
    names: frozenset[str]
    #: placeholder identifier -> the backticked name it stands for in ``tree``
    aliases: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def evaluate(self, lookup: Callable[[str], Any]) -> Any:
        """Evaluate with ``lookup(name)`` giving each name's value (raise :class:`Missing` if none)."""
        return _eval(self.tree, lookup, dict(self.aliases))

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when the expression is true on ``values``; an unknown result (a missing name) is false."""

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
            name = _dotted(node.left, dict(self.aliases))
            if name is not None:
                return name, _BOUND_OPS[type(node.ops[0])], float(node.comparators[0].value)
        return None

    def __str__(self) -> str:
        return self.text


def parse(text: str, *, source: str | None = None, line: int | None = None, field: str | None = None) -> Expr:
    """Parse and check ``text``; a syntax error or a forbidden construct raises :class:`ConfigError`."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"expected an expression string, got {text!r}", source=source, line=line, field=field)
    stripped = text.strip()
    code, aliases, columns = _unquote(stripped, source, line, field)
    try:
        tree = ast.parse(code, mode="eval").body
    except SyntaxError as exc:
        column = columns[min(max((exc.offset or 1) - 1, 0), len(columns) - 1)] + 1 if columns else exc.offset
        raise ConfigError(
            f"cannot parse expression {text!r}: {exc.msg} at column {column}",
            source=source, line=line, field=field,
        ) from None
    names: set[str] = set()
    _check(tree, names, text, source, line, field, aliases)
    return Expr(text=stripped, tree=tree, names=frozenset(names), aliases=tuple(aliases.items()))


def _unquote(text: str, source: str | None, line: int | None, field: str | None
             ) -> tuple[str, dict[str, str], list[int]]:
    """``text`` with each backticked name replaced by a placeholder identifier; the placeholders;
    and for each character of the result the column of ``text`` it came from."""
    if QUOTE not in text:
        return text, {}, list(range(len(text)))
    prefix = "_q"
    while prefix in text:
        prefix += "q"
    out: list[str] = []
    columns: list[int] = []
    aliases: dict[str, str] = {}
    i, string = 0, ""
    while i < len(text):
        c = text[i]
        if string:
            if c == "\\":
                out.append(text[i:i + 2])
                columns.extend([i, i + 1][:len(text[i:i + 2])])
                i += 2
                continue
            if c == string:
                string = ""
        elif c in "'\"":
            string = c
        elif c == QUOTE:
            end = text.find(QUOTE, i + 1)
            if end < 0:
                raise ConfigError(f"cannot parse expression {text!r}: unclosed ` at column {i + 1}",
                                  source=source, line=line, field=field)
            name = text[i + 1:end]
            if not name:
                raise ConfigError(f"cannot parse expression {text!r}: empty `` at column {i + 1}",
                                  source=source, line=line, field=field)
            placeholder = next((p for p, n in aliases.items() if n == name), f"{prefix}{len(aliases)}_")
            aliases[placeholder] = name
            # spaced off from a neighbouring identifier character only ("`a`b" must not read as one name)
            before = " " if out and (out[-1][-1:].isalnum() or out[-1][-1:] == "_") else ""
            after = " " if end + 1 < len(text) and (text[end + 1].isalnum() or text[end + 1] == "_") else ""
            piece = f"{before}{placeholder}{after}"
            out.append(piece)
            columns.extend([i] * len(piece))
            i = end + 1
            continue
        out.append(c)
        columns.append(i)
        i += 1
    return "".join(out), aliases, columns


def _reference(node: ast.expr, aliases: Mapping[str, str]) -> list[tuple[str, bool]] | None:
    """The parts of a (dotted) name, each with whether it was backticked; None for other nodes."""
    parts: list[tuple[str, bool]] = []
    while isinstance(node, ast.Attribute):
        parts.append((aliases.get(node.attr, node.attr), node.attr in aliases))
        node = node.value
    if isinstance(node, ast.Name):
        parts.append((aliases.get(node.id, node.id), node.id in aliases))
        return list(reversed(parts))
    return None


def _dotted(node: ast.expr, aliases: Mapping[str, str]) -> str | None:
    parts = _reference(node, aliases)
    return None if parts is None else name_text(p for p, _ in parts)


def _is_literal_name(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in _LITERAL_NAMES


def _check(node: ast.expr, names: set[str], text: str, source: str | None, line: int | None, field: str | None,
           aliases: Mapping[str, str]) -> None:
    def fail(what: str) -> ConfigError:
        return ConfigError(
            f"{what} is not allowed in expression {text!r}; use names, literals, comparisons, "
            "'in', 'and', 'or', 'not' and parentheses (write other names in backticks: `conv-1`)",
            source=source, line=line, field=field,
        )

    def check(child: ast.expr) -> None:
        _check(child, names, text, source, line, field, aliases)

    if isinstance(node, ast.BoolOp):
        for value in node.values:
            check(value)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            check(node.operand)
        elif isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant):
            return
        else:
            raise fail(type(node.op).__name__)
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise fail("this comparison")
        check(node.left)
        for comparator in node.comparators:
            check(comparator)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        parts = _reference(node, aliases)
        if parts is None:
            raise fail("attribute access on a non-name")
        dunder = next((p for p, quoted in parts if not quoted and p.startswith("__")), None)
        if dunder is not None:
            raise fail(f"the dunder name {dunder!r}")
        if _is_literal_name(node):
            return
        names.add(name_text(p for p, _ in parts))
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise fail(f"the literal {node.value!r}")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            if not isinstance(element, (ast.Constant, ast.UnaryOp)) and not _is_literal_name(element):
                raise fail("a non-literal list element")
            check(element)
    else:
        raise fail(type(node).__name__)


def _eval(node: ast.expr, lookup: Callable[[str], Any], aliases: Mapping[str, str]) -> Any:
    if isinstance(node, ast.BoolOp):
        # three-valued: an unknown side (Missing) decides nothing when another side decides the result
        decisive = not isinstance(node.op, ast.And)  # True decides an `or`, False decides an `and`
        unknown: Missing | None = None
        for value in node.values:
            try:
                result = bool(_eval(value, lookup, aliases))
            except Missing as exc:
                unknown = exc
                continue
            if result is decisive:
                return decisive
        if unknown is not None:
            raise unknown
        return not decisive
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup, aliases)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, lookup, aliases)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, lookup, aliases)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.Name, ast.Attribute)):
        if _is_literal_name(node):
            assert isinstance(node, ast.Name)
            return _LITERAL_NAMES[node.id]
        name = _dotted(node, aliases)
        assert name is not None
        return lookup(name)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, lookup, aliases) for e in node.elts]
    raise AssertionError(f"unchecked node {type(node).__name__}")
