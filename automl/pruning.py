"""Stopping unpromising trials early: objectives report intermediate values, Optuna's pruners decide.

An objective that takes ``(config, trial)`` gets a :class:`TrialHandle`: ``trial.report(value, step)``
records an intermediate value (epoch accuracy, say) and ``trial.should_stop()`` asks the study's
pruner whether to stop; the objective then returns (or raises :class:`Pruned`) and the trial is
recorded as PRUNED, with its intermediate values, in the ledger (Optuna's state, so
``optuna-dashboard`` plots them). The built-in ``train`` estimator reports its validation metric after
every epoch, so the built-in spaces prune too.

The pruner is Optuna's own (``median``, ``asha``, or any ``optuna.pruners`` class by name). It decides
where the trial runs, from the trials the study had finished when the trial started (the driver sends
them along): the decision an asynchronous worker makes with what it knows, as ASHA does.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from automl.errors import ConfigError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.trial import FrozenTrial

    from automl.progress import TrialMonitor

#: short names of Optuna's pruners (any other ``optuna.pruners.<Name>Pruner`` is found by its name too)
ALIASES = {"median": "MedianPruner", "asha": "SuccessiveHalvingPruner", "successive-halving": "SuccessiveHalvingPruner",
           "hyperband": "HyperbandPruner", "percentile": "PercentilePruner", "threshold": "ThresholdPruner",
           "wilcoxon": "WilcoxonPruner", "nop": "NopPruner", "none": "NopPruner"}


class Pruned(Exception):
    """Raised by an objective (or an estimator) to stop a trial its pruner gave up on."""


@dataclass(frozen=True)
class PrunerSpec:
    """A pruner by name (``median``, ``asha``, ``hyperband``, ... or an ``optuna.pruners`` class name)
    and its options (Optuna's keyword arguments)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> BasePruner:
        import optuna

        class_name = ALIASES.get(self.name, self.name)
        if not hasattr(optuna.pruners, class_name):
            camel = "".join(part.capitalize() for part in re.split(r"[-_]", self.name)) + "Pruner"
            class_name = camel if hasattr(optuna.pruners, camel) else class_name
        cls = getattr(optuna.pruners, class_name, None)
        if not isinstance(cls, type) or not issubclass(cls, optuna.pruners.BasePruner):
            known = sorted(ALIASES) + sorted(n for n in dir(optuna.pruners)
                                             if n.endswith("Pruner") and n != "BasePruner")
            raise ConfigError(f"unknown pruner {self.name!r}; expected one of {', '.join(known)}", field="pruner")
        try:
            pruner: BasePruner = cls(**dict(self.options))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pruner {self.name!r}: bad options {dict(self.options)}: {exc}",
                              field="pruner") from None
        return pruner


def parse_pruner(raw: Any) -> PrunerSpec | None:
    """``NAME`` or ``{name, options}`` (None: no pruning)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return PrunerSpec(raw)
    if isinstance(raw, PrunerSpec):
        return raw
    if isinstance(raw, Mapping) and "name" in raw and set(raw) <= {"name", "options"}:
        return PrunerSpec(str(raw["name"]), dict(raw.get("options") or {}))
    raise ConfigError(f"expected a pruner name or {{name, options}}, got {raw!r}", field="pruner")


@dataclass(frozen=True)
class PruningContext:
    """What a worker needs to ask the pruner: the pruner, the study's direction, and the trials the
    study had finished (Optuna's records, with their intermediate values) when this one started."""

    pruner: PrunerSpec
    direction: Literal["minimize", "maximize"]
    finished: Sequence[FrozenTrial] = ()


class TrialHandle:
    """A running trial as its objective sees it: ``number``, ``budget``, ``info``; :meth:`report` and
    :meth:`should_stop` for early stopping; the progress monitor of its long phases."""

    def __init__(self, number: int, budget: float | None = None, info: Mapping[str, Any] | None = None,
                 monitor: TrialMonitor | None = None, pruning: PruningContext | None = None) -> None:
        self.number, self.budget, self.info = number, budget, dict(info or {})
        self.monitor, self.pruning = monitor, pruning
        self.intermediate: dict[int, float] = {}
        self.stopped = False  # the pruner said stop
        self._study: Any = None
        self._trial_id: int | None = None

    @property
    def prunes(self) -> bool:
        """Whether a pruner watches this trial (reporting is pointless otherwise)."""
        return self.pruning is not None

    def report(self, value: float, step: int) -> None:
        """Record the intermediate ``value`` at ``step`` (an int, e.g. the epoch); a step reported twice
        keeps its first value, as in Optuna."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        value = float(value)
        if step in self.intermediate:
            return
        self.intermediate[step] = value
        if self.pruning is not None and math.isfinite(value):
            self._ensure_study()
            self._study._storage.set_trial_intermediate_value(self._trial_id, step, value)

    def should_stop(self) -> bool:
        """Whether the study's pruner gives up on this trial after what it reported so far."""
        if self.pruning is None or not self.intermediate:
            return False
        study = self._ensure_study()
        trial = study._storage.get_trial(self._trial_id)
        self.stopped = bool(study.pruner.prune(study, trial)) or self.stopped
        return self.stopped

    def _ensure_study(self) -> Any:
        """An in-memory Optuna study holding the finished trials and this one (what the pruner reads)."""
        if self._study is None:
            import optuna
            from optuna.trial import TrialState as OptunaState

            assert self.pruning is not None
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(direction=self.pruning.direction, pruner=self.pruning.pruner.build())
            study.add_trials([t for t in self.pruning.finished if t.state.is_finished()])
            template = optuna.trial.create_trial(state=OptunaState.RUNNING, params={}, distributions={})
            self._trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
            self._study = study
        return self._study
