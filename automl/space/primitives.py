"""Parameter-free math primitives for ``graph`` cells (OP-NAS / AutoBERT-Zero attention cells).

Each primitive declares its arity, how it maps operand shapes to a result shape and how it is
written in a formula; the torch implementations live with the builders that run them
(``search_spaces/autobert_ops.py``). Shapes are symbolic pairs of dimension names such as
``("T", "d")`` (tokens x head width), so a cell is shape-checked without running it.

The unary set (neg, transpose, scale, softmax, logsigmoid, softsign) and the binary add and matmul
are the ones seen in AutoBERT-Zero's published cells; sigmoid, tanh, mul, max and min are a proposed
extension (PAPERS.md marks them [R]) that a YAML may leave out.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

Shape = tuple[str, str]

SAME, TRANSPOSE, MATMUL, ELEMENTWISE = "same", "transpose", "matmul", "elementwise"


@dataclass(frozen=True)
class Primitive:
    """One operation: its arity, shape rule, whether its operands commute, and its formula template."""

    name: str
    arity: int
    shape_rule: str
    commutative: bool = False
    template: str = ""  # e.g. "softmax({0})"; empty: written as a function call
    precedence: int = 5  # binding strength of the written form (5: an atom or call)

    def result_shape(self, shapes: tuple[Shape, ...]) -> Shape | None:
        """The shape of the result, or None when the operands' shapes do not fit this primitive."""
        if self.shape_rule == SAME:
            return shapes[0]
        if self.shape_rule == TRANSPOSE:
            return (shapes[0][1], shapes[0][0])
        if self.shape_rule == MATMUL:
            (a, b), (c, d) = shapes
            return (a, d) if b == c else None
        if self.shape_rule == ELEMENTWISE:
            return shapes[0] if all(s == shapes[0] for s in shapes) else None
        raise ValueError(f"unknown shape rule {self.shape_rule!r}")


def _unary(name: str, template: str = "", precedence: int = 5, rule: str = SAME) -> Primitive:
    return Primitive(name, 1, rule, template=template or f"{name}({{0}})", precedence=precedence)


PRIMITIVES: Mapping[str, Primitive] = MappingProxyType({p.name: p for p in (
    _unary("neg", "-{0}", 3),
    _unary("transpose", "{0}ᵀ", 4, TRANSPOSE),
    _unary("scale", "{0}/√d", 2),
    _unary("softmax"),
    _unary("logsigmoid"),
    _unary("softsign"),
    _unary("sigmoid"),
    _unary("tanh"),
    Primitive("add", 2, ELEMENTWISE, commutative=True, template="{0}+{1}", precedence=1),
    Primitive("mul", 2, ELEMENTWISE, commutative=True, template="{0}⊙{1}", precedence=2),
    Primitive("matmul", 2, MATMUL, template="{0}·{1}", precedence=2),
    Primitive("max", 2, ELEMENTWISE, commutative=True, template="max({0}, {1})"),
    Primitive("min", 2, ELEMENTWISE, commutative=True, template="min({0}, {1})"),
)})


def write(primitive: Primitive, operands: list[tuple[str, int]]) -> tuple[str, int]:
    """The written form of ``primitive`` applied to written operands ``(text, precedence)``.

    An operand is parenthesised when it binds more loosely than the primitive, and the right operand
    of a binary also when it binds equally (``a·(b·c)``); a call's arguments never need parentheses.
    """
    if primitive.precedence == 5:
        return primitive.template.format(*(text for text, _ in operands)), 5
    texts = []
    for i, (text, precedence) in enumerate(operands):
        loose = precedence < primitive.precedence or (i == 1 and precedence == primitive.precedence)
        texts.append(f"({text})" if loose else text)
    return primitive.template.format(*texts), primitive.precedence
