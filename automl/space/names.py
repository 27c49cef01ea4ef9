"""Names that become folder names: a space's ``name:``, a study's name, a pipeline's and its steps'.

Such a name is an identifier -- letters, digits, ``_`` and ``-`` (study and space names also ``.``), not
starting with ``-`` or ``.`` -- so that ``name: ../../x`` or ``name: /etc`` can never put results outside
the results folder. :func:`under` builds a path from such parts and checks that it stays under its root.
"""
from __future__ import annotations

import re
from pathlib import Path

from automl.errors import ConfigError

#: a pipeline's or a step's name (study names are joined from them with dots, so they hold none)
IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
#: a space's or a study's name (``digits-mlp``, ``pipe.nas.0``)
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: the longest name (it is a folder name; file systems allow 255 bytes)
NAME_CHARS = 128


def name_problem(name: object, *, dots: bool = True, max_chars: int = NAME_CHARS) -> str | None:
    """Why ``name`` cannot name a space, a study (``dots``) or a pipeline step; None when it can."""
    pattern = STUDY_NAME if dots else IDENTIFIER
    allowed = "letters, digits, '_', '-'" + (" and '.'" if dots else "") + " (not starting with '-'" + \
        (" or '.'" if dots else "") + ")"
    if not isinstance(name, str) or not pattern.fullmatch(name):
        return f"a name is {allowed}, since it names a results folder; got {name!r}"
    if len(name) > max_chars:
        return f"a name is at most {max_chars} characters, got {len(name)}"
    return None


def check_study_name(name: object, what: str = "study name") -> str:
    """``name`` when it can name a study (its results folder); else a ConfigError naming ``what``."""
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(problem, field=what)
    assert isinstance(name, str)
    return name


def sanitized(text: str, fallback: str) -> str:
    """``text`` made into a study name (each run of other characters becomes ``-``), for names derived from
    something else, such as a file's stem; ``fallback`` when nothing usable is left."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip(".-")[:NAME_CHARS]
    return cleaned if cleaned and STUDY_NAME.fullmatch(cleaned) else fallback


def under(root: str | Path, *parts: str) -> Path:
    """``root / part / ...``, each part a checked name (so none is absolute, ``..`` or holds a separator): a
    part that would lead out of ``root`` is a ConfigError. (A symbolic link the user put under ``root`` is
    followed: it is theirs.)"""
    path = Path(root)
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise ConfigError(problem, field="name")
        path = path / part
    return path
