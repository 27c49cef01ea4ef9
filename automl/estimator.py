"""The estimator contract: ``evaluate(candidate, budget, ctx) -> Result``.

Concrete estimators live in the top-level ``estimators`` package and are found by name through the
registry; this module only defines the types they and the study share.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

from automl.artifacts import ArtifactStore
from automl.errors import ConfigError, Infeasible
from automl.space.model import Candidate, SearchSpace
from automl.space.nodes import Budget


@dataclass(frozen=True)
class Result:
    """Named metrics (the study's objectives pick from these), costs, and paths of artifacts."""

    metrics: Mapping[str, float]
    cost: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)

    def all_metrics(self) -> dict[str, float]:
        return {**self.cost, **self.metrics}


@dataclass(frozen=True)
class EvalContext:
    """What an estimator knows about the trial it evaluates."""

    space: SearchSpace
    seed: int
    trial_number: int
    checkpoints: ArtifactStore | None = None  # where a candidate's training state may be kept
    budget: Budget | None = None  # the study's multi-fidelity range (it may override the space's)
    info: Mapping[str, Any] = field(default_factory=dict)  # what the strategy attached to the trial

    def check_constraints(self, values: Mapping[str, Any]) -> None:
        """Raise :class:`Infeasible` if a constraint computable from ``values`` is violated.

        Called by estimators once the model is built and its costs known, before any training.
        """
        violated = violated_constraints(self.space, values)
        if violated:
            raise Infeasible("; ".join(violated))


def violated_constraints(space: SearchSpace, values: Mapping[str, Any], *, require_all: bool = False) -> list[str]:
    """Descriptions of the constraints of ``space`` that ``values`` violates.

    A constraint naming a value not in ``values`` is skipped, or with ``require_all`` reported as an error.
    """
    out = []
    for constraint in space.constraints:
        missing = sorted(n for n in constraint.names if n not in values)
        if missing:
            if require_all:
                raise ConfigError(f"constraint {constraint} needs {', '.join(missing)}, which the objective did not "
                                  f"return (it returned {sorted(values)})")
            continue
        if not constraint.holds(values):
            shown = ", ".join(f"{n}={values[n]:.6g}" if isinstance(values[n], float) else f"{n}={values[n]}"
                              for n in sorted(constraint.names))
            out.append(f"constraint {constraint} violated ({shown})")
    return out


class Estimator(ABC):
    """Base class: evaluate one candidate at one budget. Register with ``@estimators.register(name)``."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigError(f"estimator {type(self).__name__} got unknown options {sorted(options)}")

    @abstractmethod
    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        """Train/score the candidate; raise :class:`Infeasible` to reject it before training."""
