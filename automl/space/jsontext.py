"""Reading the JSON of space files (NNI's ``search_space.json``, ConfigSpace's JSON) with the line of
every key, tolerant of what hand-written JSON often holds.

NNI reads a search-space file with ``json.loads`` and, when that fails, with ``yaml.safe_load``
(``nni/experiment/config/experiment_config.py``), so files with ``#`` comments and trailing commas
run there. :func:`read_json` accepts those, ``//`` and ``/* */`` comments too, by blanking them out
before ``json.loads``: every other character keeps its line and column, so errors point at the
right place. Numbers keep JSON's reading (YAML 1.1 would read ``1e-3`` as text).
"""
from __future__ import annotations

import bisect
import json
import re
from typing import Any

from automl.errors import ConfigError
from automl.space.limits import SpaceLimits, current_limits
from automl.space.paths import YamlPath, dotted

_WS = re.compile(r"[ \t\n\r]*")
#: what nesting depends on: strings (skipped whole, escapes included), brackets, newlines (for the line)
_STRUCTURE = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[\[\]{}\n]')


def relax(text: str) -> str:
    """``text`` with ``//``, ``#`` and ``/* */`` comments and trailing commas (``[1, 2,]``) replaced by
    spaces outside strings; newlines are kept, so every other character stays where it was."""
    out = list(text)
    i, n = 0, len(text)
    comma: int | None = None  # a comma no value has followed yet
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i, comma = j + 1, None
            continue
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:  # unterminated: left for json to report
                i += 1
                continue
            for k in range(i, end + 2):
                if out[k] != "\n":
                    out[k] = " "
            i = end + 2
            continue
        if c == ",":
            comma = i
        elif c in "}]":
            if comma is not None:
                out[comma] = " "
            comma = None
        elif not c.isspace():
            comma = None
        i += 1
    return "".join(out)


def read_json(text: str, source: str | None = None, limits: SpaceLimits | None = None
              ) -> tuple[Any, dict[YamlPath, int]]:
    """Parse ``text`` (see the module: comments and trailing commas allowed); return the data and the
    line (1-based) of every object key and array item. A duplicate key is a :class:`ConfigError`, and so is
    a text past ``limits`` (its size, its nesting, its number of values)."""
    limits = current_limits(limits)
    if len(text) > limits.file_bytes:
        raise ConfigError(f"the file is larger than {limits.file_bytes} bytes (limit file_bytes)", source=source)
    text = relax(text.removeprefix("\ufeff"))
    _check_nesting(text, limits.depth, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})", source=source, line=exc.lineno) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"invalid JSON: {exc}", source=source) from None
    _check_values(data, limits.values, source)
    return data, key_lines(text, source)


def _check_nesting(text: str, depth: int, source: str | None) -> None:
    """Refuse JSON nested deeper than ``depth`` (Python's json recurses), before parsing it."""
    level, line = 0, 1
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == "\n":
            line += 1
        elif token in "[{":
            level += 1
            if level > depth:
                raise ConfigError(f"the document nests deeper than {depth} levels (limit depth)", source=source,
                                  line=line)
        elif token in "]}":
            level -= 1
        else:  # a string
            line += token.count("\n")


def _check_values(data: Any, limit: int, source: str | None) -> None:
    """Refuse a document of more than ``limit`` values (counted without recursing)."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            raise ConfigError(f"the document holds more than {limit} values (limit values)", source=source)
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def key_lines(text: str, source: str | None = None) -> dict[YamlPath, int]:
    """The line (1-based) of every object key and array item of valid JSON ``text``; rejects duplicate keys."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()
    out: dict[YamlPath, int] = {}

    def line(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    def skip(pos: int) -> int:
        match = _WS.match(text, pos)
        return match.end() if match else pos

    def walk(pos: int, path: YamlPath) -> int:
        pos = skip(pos)
        if text[pos] in "{[":
            close, is_object, index, seen = "}]"[text[pos] == "["], text[pos] == "{", 0, set()
            pos = skip(pos + 1)
            while text[pos] != close:
                if is_object:
                    key, end = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
                    if key in seen:
                        raise ConfigError(f"duplicate key {key!r}", source=source, line=line(pos),
                                          field=dotted((*path, key)))
                    seen.add(key)
                    item: YamlPath = (*path, key)
                    out[item] = line(pos)
                    pos = skip(end) + 1  # past ':'
                else:
                    item = (*path, index)
                    out[item] = line(pos)
                    index += 1
                pos = skip(walk(pos, item))
                if text[pos] == ",":
                    pos = skip(pos + 1)
            return pos + 1
        return decoder.raw_decode(text, pos)[1]

    walk(0, ())
    return out
