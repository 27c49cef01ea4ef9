"""The estimator contract: ``evaluate(candidate, budget, ctx) -> Result``.

Concrete estimators live in the top-level ``estimators`` package and are found by name through the
registry; this module only defines the types they and the study share. The study builds the
:class:`EvalContext` (the task, the trial's seed, the artifact store, the regimes) so that an estimator
is thin: build the model, train it with :func:`automl.training.fit`, score it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence, TypeVar

from automl.artifacts import DEFAULT_STORE, ArtifactStore, TrainedModel, trial_model_artifact
from automl.components import reject_options
from automl.errors import ConfigError, Infeasible
from automl.progress import PhaseMonitor, TrialMonitor
from automl.pruning import TrialHandle
from automl.registry import Registry
from automl.space.model import Candidate, SearchSpace
from automl.space.nodes import Budget
from automl.strategies.base import CONTINUES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.tasks.base import Task
    from automl.training.metric_sets import MetricSetSpec
    from automl.training.regime import Regime, RegimeSpec

T = TypeVar("T", bound="Task")

#: the part of a candidate's config whose values override its regimes' options (a search over them)
REGIME_PART = "regime"


def searched_regime_options(names: Sequence[str], config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For each regime (by name, in order) the options the config's ``regime`` part sets: with one regime the
    part maps its options to values (``regime: {penalty_weight: 100.0}``), with several it is keyed by regime
    name (``regime: {irm: {penalty_weight: 100.0}}``). The study checked the part's keys when it was created
    (:func:`automl.evaluation.prepare_evaluation`)."""
    part = config.get(REGIME_PART)
    if not part or not names:
        return [{} for _ in names]
    if not isinstance(part, Mapping):
        raise ConfigError(f"the config's {REGIME_PART!r} part must be a mapping, got {part!r}", field=REGIME_PART)
    if len(names) == 1:
        return [dict(part)]
    return [dict(part.get(name) or {}) for name in names]


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
    """What an estimator knows about the trial it evaluates: the space, the study seed and the trial's
    number (:attr:`trial_seed` combines them), where artifacts go, the study's multi-fidelity range,
    what the strategy attached to the trial (``info``), the space's task and regimes (built and
    checked when the study was created), and how a long phase reports its progress."""

    space: SearchSpace
    seed: int
    trial_number: int
    checkpoints: ArtifactStore | None = None  # where a candidate's training state may be kept
    budget: Budget | None = None  # the study's multi-fidelity range (it may override the space's)
    info: Mapping[str, Any] = field(default_factory=dict)  # what the strategy attached to the trial
    task: Task | None = None
    regimes: tuple[RegimeSpec, ...] = ()
    metric_sets: tuple[MetricSetSpec, ...] = ()  # what the trained model is measured with beside the estimator
    monitor: TrialMonitor | None = None
    trial: TrialHandle | None = None  # reports intermediate values to the study's pruner

    @property
    def trial_seed(self) -> int:
        """The seed of this trial's training (one formula for every estimator). It follows the trial's
        slot (``info['slot']``, set where it differs from the number: after a re-run of a killed trial), so
        a resumed study trains each candidate with the seed an uninterrupted one would have used."""
        from automl.training.seeding import trial_seed

        return trial_seed(self.seed, int(self.info.get("slot", self.trial_number)))

    def require_task(self, kind: type[T]) -> T:
        """The space's task as the study built it (a context made by hand, without one, builds it
        now), checked to be a ``kind``: the study checked the family when it was created."""
        task = self.task
        if task is None and self.space.task is not None:
            from automl.components import construct
            from automl.tasks.base import tasks

            task = construct(tasks.get(self.space.task), self.space.task_options, kind="task", name=self.space.task)
        if not isinstance(task, kind):
            raise ConfigError(f"space {self.space.name!r} needs a {kind.family} task, got "
                              f"{type(task).__name__ if task is not None else 'none'}", source=self.space.source)
        return task

    @property
    def continues(self) -> bool:
        """Whether this trial belongs to a strategy whose trials continue each other (info ``continues``:
        PBT): its training state is kept per trial, so that a later trial starts from it."""
        return bool(self.info.get(CONTINUES))

    @property
    def parent_trial(self) -> int | None:
        """The earlier trial whose training state this one starts from (a PBT member's previous trial or the
        better member's it copied), or None (a member's first trial, or not a continuing trial)."""
        parent = self.info.get("parent")
        return parent if self.continues and isinstance(parent, int) else None

    def trial_checkpoint(self, number: int) -> str:
        """The name under which trial ``number`` of this study keeps its training state in :meth:`store` when
        trials continue each other: one file per trial, so a donor's state is never overwritten while another
        member reads it; the space's fingerprint and the study's seed keep studies sharing a store apart."""
        return f"trial-state-{self.space.fingerprint}-{self.seed}-{number}.pt"

    def store(self, option: str | None = None) -> ArtifactStore:
        """Where shared artifacts (a trained supernet or teacher) are cached: the estimator's ``store``
        option, else the study's checkpoint store, else :data:`automl.artifacts.DEFAULT_STORE`."""
        if option:
            return ArtifactStore(option)
        return self.checkpoints or ArtifactStore(DEFAULT_STORE)

    @property
    def needs_latency(self) -> bool:
        """Whether a constraint or objective of the space uses measured latency."""
        return any("latency_ms" in c.names for c in self.space.constraints) or any(
            o.name == "latency_ms" for o in self.space.objectives)

    def build_regimes(self, candidate: Candidate | None = None, /, **runtime: Any) -> list[Regime]:
        """Fresh instances of the space's regimes for one training run (``runtime``: objects only code can
        give, e.g. ``teacher=...``, passed to the regimes that take them). With ``candidate``, the options
        its config's ``regime`` part searches override the regimes' own (:func:`searched_regime_options`)."""
        from automl.components import accepted_options

        searched = searched_regime_options([s.name for s in self.regimes],
                                           candidate.config if candidate is not None else {})
        out = []
        for spec, options in zip(self.regimes, searched):
            accepted = accepted_options(spec.cls())
            given = {k: v for k, v in runtime.items() if accepted is None or k in accepted}
            trial_spec = spec if not options else type(spec)(spec.name, {**spec.options, **options})
            out.append(trial_spec.build(**given))
        return out

    def measure(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, prefix: str = "") -> dict[str, float]:
        """The metric sets' metrics of the trained ``model`` on held-out ``(x, y)`` (``prefix`` ``test_`` for the
        test split); nothing when the space asks for none."""
        if not self.metric_sets:
            return {}
        from automl.training.metric_sets import measure

        return measure(self.metric_sets, model, x, y, prefix)

    @property
    def scores_test(self) -> bool:
        """Whether this trial may score the task's test split: only a pipeline's ``train`` step (trial info
        ``test: true``) does; no search sees it."""
        return bool(self.info.get("test"))

    def keep_model(self, model: nn.Module, candidate: Candidate, *, recipe: Mapping[str, Any] | None = None,
                   metrics: Mapping[str, float] | None = None, estimator: str = "") -> None:
        """Keep the trained model of this trial in the study's checkpoint store (``trial-<n>.model.pt``),
        for ``automl export``; without a checkpoint store, nothing is kept."""
        if self.checkpoints is None or self.space.builder is None or self.space.task is None:
            return
        saved = TrainedModel(builder=self.space.builder, config=dict(candidate.config), task=self.space.task,
                             task_options=dict(self.space.task_options), space=self.space.name,
                             state_dict=model.state_dict(), trial=self.trial_number, seed=self.trial_seed,
                             estimator=estimator, recipe=dict(recipe) if recipe is not None else None,
                             metrics=dict(metrics) if metrics is not None else None)
        self.checkpoints.write_bytes(trial_model_artifact(self.trial_number), saved.to_bytes())

    def phase(self, name: str) -> PhaseMonitor | None:
        """A monitor for one long phase of this trial (progress line, thread policy), or None."""
        return self.monitor.phase(name) if self.monitor is not None else None

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
    """Base class: evaluate one candidate at one budget. Register with ``@estimators.register(name)``.

    Options are ``__init__``'s keyword arguments, validated there and checked when the study is created;
    ``families`` names the task families the estimator evaluates (checked then too)."""

    #: the task families (:data:`automl.tasks.base.FAMILIES`) this estimator evaluates
    families: ClassVar[frozenset[str]] = frozenset()
    #: whether the estimator trains with the space's regimes (if not, naming one is an error)
    uses_regimes: ClassVar[bool] = False
    #: whether the estimator continues trials from each other's checkpoints (:attr:`EvalContext.continues`):
    #: it keeps each such trial's training state under :meth:`EvalContext.trial_checkpoint` and starts it from
    #: its ``parent``'s, with the trial's own hyperparameters from there on; what ``pbt`` needs
    can_checkpoint: ClassVar[bool] = False
    #: whether the estimator evaluates a task's data; one that does not (a closed-form benchmark such as
    #: ``mf-hartmann``) is searched on a space that names no task
    needs_task: ClassVar[bool] = True
    #: whether the estimator measures its trained models with the space's metric sets (:meth:`EvalContext.measure`)
    reports_metric_sets: ClassVar[bool] = False
    #: the model-selection metrics (:mod:`automl.selection`: ``variation``, ``oracle_accuracy``) the estimator
    #: reports for tasks of each family, so a study refuses a rule it cannot feed
    selection_metrics: ClassVar[Mapping[str, frozenset[str]]] = {}
    #: the metrics (costs included) :meth:`evaluate` reports, so that a study refuses an objective it would never
    #: get; None: not declared (any objective is accepted). Metric sets and regimes' own metrics add to these.
    reports: ClassVar[frozenset[str] | None] = None

    def __init__(self, **options: Any) -> None:
        reject_options("estimator", type(self), options)

    @abstractmethod
    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        """Train/score the candidate; raise :class:`Infeasible` to reject it before training."""


#: estimators by name (entry-point group ``automl.estimators``)
estimators: Registry[type[Estimator]] = Registry("estimators")
