"""Argument types shared by the ``automl`` command and the subcommands that plug into it."""
from __future__ import annotations

import argparse
from typing import Any, Callable

import yaml

#: the longest ``VALUE`` of a ``KEY=VALUE`` option
VALUE_CHARS = 10_000


def key_value(text: str) -> tuple[str, Any]:
    """``population=10`` -> ("population", 10); values are read as YAML scalars or lists (``classes=[5,6]``),
    of at most :data:`VALUE_CHARS` characters; YAML that does not parse (or nests past what the parser takes) is
    an argument error."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text[:80]!r}")
    if len(value) > VALUE_CHARS:
        raise argparse.ArgumentTypeError(f"{key}: a value of at most {VALUE_CHARS} characters, got {len(value)}")
    try:
        return key, yaml.safe_load(value)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: e.g. a date such as 2001-13-45
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise argparse.ArgumentTypeError(f"{key}: not a YAML value ({reason})") from None


def int_at_least(minimum: int, what: str = "integer", most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` and, with ``most``, <= ``most`` (``what`` names it in
    the error, which quotes at most 40 characters of what was given)."""
    expected = f"a {what} >= {minimum}" if most is None else f"a {what} from {minimum} to {most}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text[:40]!r}") from None
        if value < minimum or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text[:40]}")
        return value

    return parse
