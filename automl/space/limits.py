"""Bounds on the size of what a space file may declare, so that a tiny hostile file can never make
loading, validating or searching a space hang or exhaust memory.

Every bound is checked on what the file *declares* (a repeat's ``max``, a graph's ``max_nodes``), never
by expanding it, so the cost of loading a space does not grow with the maxima it names. The defaults
are far above what real spaces use (the registered ones stay under a tenth of each); a space that
needs more passes its own :class:`SpaceLimits` (``load_space(path, limits=SpaceLimits(repeat_max=5000))``)
or sets the environment variable ``AUTOML_SPACE_LIMITS`` (``repeat_max=5000,graph_nodes=128``) for the
command line. A value past a bound is one :class:`~automl.errors.ConfigError` naming the file, the
line, the field and the bound.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping

from automl.errors import ConfigError

#: the environment variable that overrides the defaults: ``name=value`` pairs separated by commas
LIMITS_ENV = "AUTOML_SPACE_LIMITS"
#: the largest integer a space may hold in a numeric parameter (int64: what numpy and Optuna sample)
INT_MAX = 2**63 - 1


@dataclass(frozen=True)
class SpaceLimits:
    """The bounds a space file must stay within (see the module)."""

    #: bytes of a space file
    file_bytes: int = 1_048_576
    #: nesting of the document (mappings and lists; YAML aliases counted as expanded)
    depth: int = 64
    #: values in the document, YAML aliases counted as expanded (an alias bomb stops here, unexpanded)
    values: int = 100_000
    #: parameters (leaves) declared in the space (a repeat's item counted once)
    parameters: int = 5_000
    #: choices of one categorical parameter
    choices: int = 10_000
    #: choices of one subset parameter (its neighbourhood grows with their square)
    subset_choices: int = 64
    #: a repeat's ``max``
    repeat_max: int = 1_000
    #: a graph's ``max_nodes``
    graph_nodes: int = 64
    #: inputs of one graph op (its arity), and named inputs of one graph
    arity: int = 16
    #: values one config of the space can hold at most (nested repeats multiply: 1000 x 1000 is past it)
    config_values: int = 100_000
    #: characters of one condition or constraint
    expression_chars: int = 10_000
    #: characters of a space's name
    name_chars: int = 128
    #: ``search.trials``
    trials: int = 1_000_000
    #: ``budget.max``
    budget_max: float = 1e9
    #: ``budget.max / budget.min`` (Hyperband's brackets grow with its logarithm, their sizes with it)
    budget_ratio: float = 1e5

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"a space limit must be a number > 0, got {value!r}", field=item.name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpaceLimits:
        """The defaults, with what ``AUTOML_SPACE_LIMITS`` (``name=value,...``) sets overriding them."""
        text = (os.environ if environ is None else environ).get(LIMITS_ENV, "").strip()
        if not text:
            return cls()
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, int | float] = {}
        for item in text.split(","):
            key, sep, raw = (part.strip() for part in item.partition("="))
            if not sep or key not in known:
                raise ConfigError(f"expected comma-separated NAME=VALUE with NAME one of {', '.join(known)}, "
                                  f"got {item.strip()!r}", source=LIMITS_ENV)
            try:
                values[key] = float(raw) if known[key].type == "float" else int(raw)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {raw!r}", source=LIMITS_ENV) from None
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(exc.message, source=LIMITS_ENV, field=exc.field) from None


def current_limits(limits: SpaceLimits | None = None) -> SpaceLimits:
    """``limits``, or the defaults as ``AUTOML_SPACE_LIMITS`` adjusts them."""
    return limits if limits is not None else SpaceLimits.from_env()
