"""Paths into a space document (``("space", "train", "lr")``) and the errors that point into its file."""
from __future__ import annotations

from typing import Mapping

from automl.errors import ConfigError

YamlPath = tuple[str | int, ...]


def dotted(path: YamlPath) -> str:
    """``space.layers[0].width``: a path as a user reads it (a key that is not an identifier in backticks:
    ``space.`learning rate```)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = printable(str(part))
            out += ("." if out else "") + (text if text.isidentifier() else f"`{text}`")
    return out


def printable(text: str) -> str:
    """``text`` as one line of text: control characters (a newline in a key) escaped as Python writes them."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def line_of(lines: Mapping[YamlPath, int], path: YamlPath) -> int | None:
    """The line of ``path`` in its file, or of the nearest enclosing path that has one."""
    for cut in range(len(path), -1, -1):
        line = lines.get(path[:cut])
        if line is not None:
            return line
    return None


def error_at(source: str | None, lines: Mapping[YamlPath, int], path: YamlPath, message: str) -> ConfigError:
    """A ConfigError naming the file, the line of ``path`` and the field ``path``."""
    return ConfigError(message, source=source, line=line_of(lines, path), field=dotted(path) or None)
