"""NASOA's macro-level mutations (PAPERS.md §2) as the ``nasoa`` builder's morphism, for ``morphism-evolution``.

A child of a parent (drawn by the strategy from the Pareto front) is, with probability ``restart_p``
(0.2, the paper's random-restart ratio), a fresh random sample of the space (a new block and macro
string); otherwise its parent's block over one edit of the parent's macro string: insert a '1',
remove a '1', or swap two adjacent distinct characters (which may move a block across a '-').
An edit is kept only where the space accepts the stages it spells (each stage pattern one of the
space's choices, the stage count within the repeat's bounds); with no such edit the child restarts.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from automl.errors import ConfigError
from automl.registry import morphisms
from automl.space.model import Config, SearchSpace
from search_spaces.nasoa import macro_string

#: NASOA's random-restart ratio: the share of children sampled afresh instead of mutated.
RESTART_P: float = 0.2
#: The macro-string edits, drawn uniformly among those that give a valid child.
MACRO_EDITS: tuple[str, ...] = ("insert", "remove", "swap")


def macro_edits(macro: str) -> list[tuple[str, str, str]]:
    """Every distinct ``(edit, description, new macro)`` one insert '1' / remove '1' / adjacent swap away,
    whether or not a space accepts it (e.g. ``"2-1"`` -> ``("swap", "swap 0,1", "-21")``)."""
    found: dict[str, tuple[str, str, str]] = {}

    def add(edit: str, description: str, new: str) -> None:
        if new != macro and new not in found:
            found[new] = (edit, description, new)

    for i in range(len(macro) + 1):
        add("insert", f"insert '1' at {i}", macro[:i] + "1" + macro[i:])
    for i, char in enumerate(macro):
        if char == "1":
            add("remove", f"remove '1' at {i}", macro[:i] + macro[i + 1:])
    for i in range(len(macro) - 1):
        if macro[i] != macro[i + 1]:
            add("swap", f"swap {i},{i + 1}", macro[:i] + macro[i + 1] + macro[i] + macro[i + 2:])
    return list(found.values())


def _with_macro(space: SearchSpace, config: Config, macro: str) -> Config | None:
    """``config`` with its model's stages spelling ``macro``, or None where the space rejects that."""
    patterns = macro.split("-")
    if any(not p for p in patterns):
        return None
    child = copy.deepcopy(dict(config))
    child["model"] = {**child["model"], "stages": [{"pattern": p} for p in patterns]}
    return child if not space.problems(child) else None


@morphisms.register("nasoa")
def morph_nasoa(space: SearchSpace, config: Config, rng: np.random.Generator, *, restart_p: float = RESTART_P,
                **strategy_options: Any) -> tuple[Config, str]:
    """A child of ``config``: a random restart with probability ``restart_p``, else one valid macro edit (an edit
    kind drawn uniformly among the valid ones, then an edit of that kind). ``strategy_options`` that other
    builders' morphisms take (``teacher_p``) do not apply. Returns the child and e.g. ``"swap 1,2: 21-1 -> 2-11"``."""
    if not 0.0 <= restart_p <= 1.0:
        raise ValueError(f"restart_p must be in [0, 1], got {restart_p}")
    if not isinstance(config.get("model"), dict) or "stages" not in config["model"]:
        raise ConfigError(f"morph_nasoa needs a nasoa config (model.stages), got keys {sorted(config)}",
                          source=space.source, field="model.stages")
    if rng.random() < restart_p:
        return space.sample(rng), "restart"
    macro = macro_string(config["model"])
    valid: list[tuple[str, str, Config]] = []
    for edit, description, new in macro_edits(macro):
        child = _with_macro(space, config, new)
        if child is not None:
            valid.append((edit, f"{description}: {macro} -> {new}", child))
    if not valid:
        return space.sample(rng), f"restart (no valid edit of {macro})"
    kinds = [k for k in MACRO_EDITS if any(e == k for e, _, _ in valid)]
    kind = kinds[int(rng.integers(0, len(kinds)))]
    of_kind = [(d, c) for e, d, c in valid if e == kind]
    description, child = of_kind[int(rng.integers(0, len(of_kind)))]
    return child, description
