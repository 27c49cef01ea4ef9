"""What a study checks and prepares for its estimator before any trial runs: the task built from its
options, the estimator's options and task families, the regimes' options, the metric sets (named by the
space or implied by a regime). Every problem is one
ConfigError naming the space file, the line and the option, raised at study creation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from automl.components import construct
from automl.errors import ConfigError, RegistryError
from automl.estimator import REGIME_PART, estimators
from automl.space.model import SearchSpace
from automl.space.nodes import Bool, Categorical, Constant, Float, Group, Int, Node
from automl.space.paths import YamlPath
from automl.tasks.base import tasks

if TYPE_CHECKING:
    from automl.estimator import Estimator
    from automl.tasks.base import Task
    from automl.training.metric_sets import MetricSetSpec
    from automl.training.regime import RegimeSpec


@dataclass(frozen=True)
class EvaluationSetup:
    """The checked evaluation side of a space: its task (built once), estimator and regimes."""

    task: Task | None
    estimator: str
    estimator_options: Mapping[str, Any] = field(default_factory=dict)
    regimes: tuple[RegimeSpec, ...] = ()
    metric_sets: tuple[MetricSetSpec, ...] = ()
    #: the space names no task and its estimator needs none (a benchmark function evaluates the candidates)
    taskless: bool = False

    def make_estimator(self, name: str | None = None, options: Mapping[str, Any] | None = None) -> Estimator:
        """The space's estimator, or another one a strategy names for a trial (one-shot's stand-alone phase)."""
        chosen = name or self.estimator
        opts = self.estimator_options if chosen == self.estimator else (options or {})
        return construct(estimators.get(chosen), opts, kind="estimator", name=chosen)


def _at(space: SearchSpace, path: YamlPath, exc: Exception) -> ConfigError:
    """``exc`` (a ConfigError or RegistryError) re-raised at ``path`` (extended by its own field)."""
    field_ = getattr(exc, "field", None)
    message = getattr(exc, "message", str(exc))
    return space.error((*path, field_) if field_ else path, message)


def _taskless(space: SearchSpace) -> EvaluationSetup:
    """A space with no task: searched by an estimator that needs none (a benchmark function), else only
    with an objective function given from Python."""
    named = space.estimator if "estimator" in space.document else None
    try:
        estimator_cls = estimators.get(named) if named is not None else None
    except RegistryError as exc:
        raise _at(space, ("estimator",), exc) from None
    if estimator_cls is None or estimator_cls.needs_task:
        return EvaluationSetup(task=None, estimator=space.estimator, estimator_options=space.estimator_options)
    try:
        construct(estimator_cls, space.estimator_options, kind="estimator", name=space.estimator)
    except ConfigError as exc:
        raise _at(space, ("estimator", "options"), exc) from None
    return EvaluationSetup(task=None, estimator=space.estimator, estimator_options=dict(space.estimator_options),
                           taskless=True)


def prepare_evaluation(space: SearchSpace, regimes: Sequence[tuple[str, Mapping[str, Any]]] | None = None
                       ) -> EvaluationSetup:
    """Build and check what evaluating ``space`` needs; ``regimes`` overrides the space's own."""
    if space.task is None:
        return _taskless(space)
    try:
        task_cls = tasks.get(space.task)
    except RegistryError as exc:
        raise _at(space, ("task",), exc) from None
    try:
        task = construct(task_cls, space.task_options, kind="task", name=space.task)
    except ConfigError as exc:
        raise _at(space, ("task", "options"), exc) from None
    try:
        estimator_cls = estimators.get(space.estimator)
    except RegistryError as exc:
        raise _at(space, ("estimator",), exc) from None
    if estimator_cls.families and task.family not in estimator_cls.families:
        raise space.error(("estimator",), f"estimator {space.estimator!r} evaluates "
                          f"{' or '.join(sorted(estimator_cls.families))} tasks; task {space.task!r} is a "
                          f"{task.family} task")
    try:
        construct(estimator_cls, space.estimator_options, kind="estimator", name=space.estimator)
    except ConfigError as exc:
        raise _at(space, ("estimator", "options"), exc) from None
    specs = _regimes(space, task, estimator_cls, space.regimes if regimes is None else tuple(regimes),
                     overridden=regimes is not None)
    _searched_regime_options(space, specs, estimator_cls, overridden=regimes is not None)
    return EvaluationSetup(task=task, estimator=space.estimator, estimator_options=dict(space.estimator_options),
                           regimes=specs, metric_sets=_metric_sets(space, task, estimator_cls, specs))


def _regime_error(space: SearchSpace, path: YamlPath, name: str, overridden: bool, exc: Exception | str,
                  *suffix: str | int) -> ConfigError:
    """An error about regime ``name``: at its ``regime:`` entry (``path`` + ``suffix`` + the error's own
    field), or naming ``--regime`` for regimes given on the command line."""
    message = exc if isinstance(exc, str) else getattr(exc, "message", str(exc))
    field_ = None if isinstance(exc, str) else getattr(exc, "field", None)
    if overridden:
        return ConfigError(f"--regime {name}: {message}", field=field_)
    return space.error((*path, *suffix, *([field_] if field_ else [])), message)


def _regimes(space: SearchSpace, task: Task, estimator_cls: type[Estimator],
             named: Sequence[tuple[str, Mapping[str, Any]]], overridden: bool) -> tuple[RegimeSpec, ...]:
    """Checked specs of the regimes."""
    from automl.training.regime import RegimeSpec

    raw = space.document.get("regime")
    specs = []
    for i, (name, options) in enumerate(named):
        path: YamlPath = ("regime", i) if isinstance(raw, list) else ("regime",)
        spec = RegimeSpec(name, dict(options))
        entry = raw[i] if isinstance(raw, list) else raw
        at_name = ("name",) if isinstance(entry, dict) else ()
        try:
            spec.cls()
            spec.check_family(task.family)
        except (RegistryError, ConfigError) as exc:
            raise _regime_error(space, path, name, overridden, exc, *at_name) from None
        if name != "standard" and not estimator_cls.uses_regimes:
            raise _regime_error(space, path, name, overridden, f"estimator {space.estimator!r} does not train with "
                                f"regimes, so it cannot apply {name!r}", *at_name)
        try:
            spec.check_options()
        except ConfigError as exc:
            raise _regime_error(space, path, name, overridden, exc, "options") from None
        specs.append(spec)
    return tuple(specs)


def _bound_values(node: Node) -> list[Any]:
    """Values a parameter can take that an option check should see: a number's bounds, every choice, the
    constant; nothing for groups and lists (their contents reach the regime as they are)."""
    if isinstance(node, (Float, Int)):
        return [node.low, node.high]
    if isinstance(node, Categorical):
        return list(node.choices)
    if isinstance(node, Bool):
        return [False, True]
    if isinstance(node, Constant):
        return [node.value]
    return []


def _searched_regime_options(space: SearchSpace, specs: Sequence[RegimeSpec], estimator_cls: type[Estimator],
                             overridden: bool) -> None:
    """Check the space's ``regime`` part (a search over the regimes' own options, see
    :func:`automl.estimator.searched_regime_options`): one regime takes its options there, several are keyed
    by regime name; every key must be an option the regime takes and every bound or choice a value it
    accepts. Each problem is a ConfigError at the part's line, naming the field."""
    from automl.components import accepted_options

    part = space.root.child_map().get(REGIME_PART)
    if part is None:
        return
    at: YamlPath = ("space", REGIME_PART)
    if not isinstance(part, Group):
        raise space.error(at, f"the {REGIME_PART!r} part searches the regimes' options: expected a mapping of "
                              f"option: parameter, got a {part.describe()}")
    if not specs:
        raise space.error(at, f"the {REGIME_PART!r} part searches regime options, but the space names no regime "
                              f"(add `regime: NAME`, or give --regime NAME)")
    if not estimator_cls.uses_regimes:
        raise space.error(at, f"estimator {space.estimator!r} does not train with regimes, so it cannot search "
                              f"their options")
    names = [spec.name for spec in specs]
    if len(specs) == 1:
        targets = [(specs[0], part, at)]
    else:
        if len(set(names)) != len(names):
            raise space.error(at, f"the {REGIME_PART!r} part is keyed by regime name, but the space names a regime "
                                  f"twice ({', '.join(names)})")
        targets = []
        for key, node in part.children:
            spec = next((s for s in specs if s.name == key), None)
            if spec is None:
                raise space.error((*at, key), f"with several regimes the {REGIME_PART!r} part is keyed by regime "
                                              f"name; {key!r} is none of {', '.join(names)}")
            if not isinstance(node, Group):
                raise space.error((*at, key), f"expected a mapping of {key}'s options to parameters, got a "
                                              f"{node.describe()}")
            targets.append((spec, node, (*at, key)))
    for spec, group, path in targets:
        cls = spec.cls()
        accepted = accepted_options(cls)
        for key, node in group.children:
            where = (*path, key)
            if accepted is not None and key not in accepted:
                known = ", ".join(sorted(accepted)) or "none"
                raise space.error(where, f"regime {spec.name!r} has no option {key!r} (its options: {known})")
            for value in _bound_values(node):
                try:
                    cls.check_options({**spec.options, key: value}, spec.name)
                except ConfigError as exc:
                    prefix = f"--regime {spec.name}: " if overridden else ""
                    raise space.error(where, f"{prefix}{getattr(exc, 'message', str(exc))}") from None


def _metric_sets(space: SearchSpace, task: Task, estimator_cls: type[Estimator],
                 regimes: Sequence[RegimeSpec]) -> tuple[MetricSetSpec, ...]:
    """Checked specs of the metric sets the space names, then of those its regimes imply (unless named)."""
    from automl.training.metric_sets import MetricSetSpec

    raw = space.document.get("metrics")
    listed = isinstance(raw, list)
    named: list[tuple[YamlPath, bool, MetricSetSpec]] = []
    for i, (n, o) in enumerate(space.metrics):
        entry = raw[i] if isinstance(raw, list) else raw
        named.append((("metrics", i) if listed else ("metrics",), isinstance(entry, dict), MetricSetSpec(n, dict(o))))
    seen = {spec.name for _, _, spec in named}
    for regime in regimes:
        for name, options in regime.cls().implied_metrics(regime.options):
            if name not in seen:
                seen.add(name)
                named.append((("regime",), False, MetricSetSpec(name, dict(options))))
    specs = []
    for path, mapping, spec in named:
        at_name = (*path, "name") if mapping else path
        try:
            spec.cls()
        except RegistryError as exc:
            raise _at(space, at_name, exc) from None
        if not estimator_cls.reports_metric_sets:
            raise space.error(at_name, f"estimator {space.estimator!r} does not report metric sets, so it cannot "
                                       f"measure {spec.name!r}")
        try:
            spec.check(task.family)
        except ConfigError as exc:
            raise _at(space, (*path, "options") if mapping and exc.field else at_name, exc) from None
        specs.append(spec)
    return tuple(specs)
