"""Model-selection rules: which completed trial a study hands over as its result (``study.best``).

DomainBed's lesson is that an out-of-distribution method is incomplete without its selection rule, so the
rule is a study option (``selection:`` in the space, ``--select``), registered by name like strategies:

- ``best-value`` (default): the best first objective (DomainBed's training-domain validation);
- ``expansion``: the expansion-function criterion of PAPERS.md §9 on the first objective (train-domain
  validation accuracy) and each trial's ``variation`` v(h) (:func:`automl.ood.select_expansion`);
- ``oracle``: DomainBed's test-domain oracle (``oracle_accuracy``, 20% of the test environments): an upper
  reference that looks at test data, so it is reported beside the others and chosen only when asked for.

A rule declares the metrics it reads (:attr:`Selection.needs`) and an estimator the ones it reports
(``Estimator.selection_metrics``), so a study refuses a rule its estimator cannot feed. The ``train``
estimator reports them on multi-environment tasks when the study names a rule other than ``best-value``
(a plain search never touches the test environments).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

from automl.components import reject_options
from automl.errors import ConfigError
from automl.ledger import Trial, trial_losses
from automl.registry import Registry
from automl.space import Objective

#: the selection a study uses unless the space or the command line names another
DEFAULT_SELECTION = "best-value"
#: the metric the expansion criterion reads beside validation accuracy: v(h) of the trained model
VARIATION = "variation"
#: DomainBed's test-domain validation accuracy (a held-out 20% of the test environments)
ORACLE_ACCURACY = "oracle_accuracy"
#: accuracy on the rest of the test environments: shown beside each rule's pick, never used to choose
OOD_ACCURACY = "ood_accuracy"


class Selection:
    """Base class of selection rules; register with ``@selections.register(name)``."""

    #: metrics every candidate must report for the rule to consider it
    needs: ClassVar[tuple[str, ...]] = ()
    #: what to tell a user whose trials all lack them
    hint: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        reject_options("selection", type(self), options)

    def check(self, objectives: Sequence[Objective]) -> None:
        """Raise a ConfigError when the rule cannot choose among trials of these objectives (at study creation)."""

    def usable(self, trials: Sequence[Trial]) -> list[Trial]:
        """The trials that report every metric the rule needs."""
        return [t for t in trials if all(_finite(t.metrics.get(m)) for m in self.needs)]

    def pick(self, trials: Sequence[Trial], objectives: Sequence[Objective]) -> Trial | None:
        """The chosen trial among completed, comparable ``trials`` (None: no trial carries what it needs)."""
        ranked = sorted(self.usable(trials), key=lambda t: (trial_losses(objectives, t), t.number))
        return ranked[0] if ranked else None


#: selection rules by name (entry-point group ``automl.selections``)
selections: Registry[type[Selection]] = Registry("selections", "selection")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _single_max(objectives: Sequence[Objective], rule: str) -> None:
    if not objectives or objectives[0].direction != "max":
        raise ConfigError(f"selection {rule!r} trades off a validation accuracy that is maximised, so the study's "
                          f"first objective must be one (got "
                          f"{', '.join(f'{o.name} {o.direction}' for o in objectives) or 'none'})", field="selection")


@selections.register("best-value")
class BestValue(Selection):
    """The best first objective (with several: the Pareto front's best in the first): DomainBed's
    training-domain validation when that objective is validation accuracy."""


@selections.register("expansion")
class Expansion(Selection):
    """The expansion-function criterion (PAPERS.md §9): argmax accuracy − r·v(h), where r is set by the
    candidates within ``window`` (0.1) of the best accuracy; v(h) averages the variation of the feature
    coordinates whose informativeness reaches ``info_threshold`` (0.3)."""

    needs = (VARIATION,)
    hint = (" (v(h) is NaN when no feature coordinate separates the classes by info_threshold in every training "
            "environment: train the candidates longer or lower the threshold)")

    def __init__(self, window: float = 0.1, info_threshold: float = 0.3) -> None:
        super().__init__()
        for name, value in (("window", window), ("info_threshold", info_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}", field=name)
        self.window, self.info_threshold = float(window), float(info_threshold)

    def check(self, objectives: Sequence[Objective]) -> None:
        _single_max(objectives, "expansion")

    def pick(self, trials: Sequence[Trial], objectives: Sequence[Objective]) -> Trial | None:
        from automl.ood import select_expansion

        usable = sorted(self.usable(trials), key=lambda t: t.number)
        if not usable:
            return None
        first = objectives[0].name
        accuracies = [float(t.values[first]) for t in usable]  # type: ignore[index]  # completed trials have values
        return usable[select_expansion(accuracies, [float(t.metrics[VARIATION]) for t in usable],
                                       window=self.window)]


@selections.register("oracle")
class Oracle(Selection):
    """DomainBed's test-domain oracle: the best accuracy on 20% of the test environments. It looks at test
    data, so it is a reference for the other rules, not a way to choose a model for deployment."""

    needs = (ORACLE_ACCURACY,)

    def pick(self, trials: Sequence[Trial], objectives: Sequence[Objective]) -> Trial | None:
        usable = self.usable(trials)
        return max(usable, key=lambda t: (float(t.metrics[ORACLE_ACCURACY]), -t.number)) if usable else None


def make_selection(name: str, options: Any = None, objectives: Sequence[Objective] = ()) -> Selection:
    """The registered rule ``name`` with ``options``, checked against the study's ``objectives``."""
    from automl.components import construct

    rule = construct(selections.get(name), dict(options or {}), kind="selection", name=name)
    rule.check(objectives)
    return rule
