"""Argument types shared by the ``automl`` command and the subcommands that plug into it."""
from __future__ import annotations

import argparse
from typing import Any, Callable

import yaml


def key_value(text: str) -> tuple[str, Any]:
    """``population=10`` -> ("population", 10); values are read as YAML scalars or lists (``classes=[5,6]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def int_at_least(minimum: int, what: str = "integer") -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (``what`` names it in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} >= {minimum}, got {value}")
        return value

    return parse
