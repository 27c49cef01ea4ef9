"""What dataset readers share: JSON files read with errors that name them, and the problems of a pass over
records counted by kind, so that one error names the first bad record and how many more share it."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from automl.errors import DatasetError


class RecordProblems:
    """Problems found in one pass over a file's records, by kind: the first message of each and a count."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.first: dict[str, str] = {}
        self.count: Counter[str] = Counter()

    def add(self, kind: str, message: str) -> None:
        self.first.setdefault(kind, message)
        self.count[kind] += 1

    def raise_first(self, phrases: Mapping[str, tuple[str, str]] | None = None) -> None:
        """Raise the first kind that has problems (in ``phrases`` order, else in the order first met): its
        first message, then "N more <plural>" (``phrases[kind] = (singular, plural)``; default "record(s)
        with this problem")."""
        kinds = phrases.items() if phrases is not None else (
            (kind, ("record with this problem", "records with this problem")) for kind in list(self.first))
        for kind, (singular, plural) in kinds:
            if kind in self.first:
                more = self.count[kind] - 1
                tail = "" if more == 0 else f"; {more} more {singular if more == 1 else plural}"
                raise DatasetError(self.first[kind] + tail, source=str(self.source))


def read_json_file(path: Path, expected: str) -> dict[str, Any]:
    """A JSON object read from ``path``; bad JSON, non-UTF-8 text or a non-object is a DatasetError naming
    the file (and line), ``expected`` saying what the object should hold."""
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON: {exc.msg} (column {exc.colno})", source=str(path),
                           line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})",
                           source=str(path)) from None
    if not isinstance(doc, dict):
        raise DatasetError(f"expected a JSON object with {expected}, got a "
                           f"{type(doc).__name__ if doc is not None else 'null'}", source=str(path))
    return doc
