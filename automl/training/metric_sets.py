"""The metric-set contract: extra measurements of a trained model on held-out data (robust accuracy, energy
flatness) that any estimator which trains classifiers reports when a space asks for them.

A space names them with ``metrics: [robust]`` (or ``{name, options}`` entries); a regime may imply one
(an adversarial regime implies ``robust`` at its own epsilon, :meth:`Regime.implied_metrics`). Options
are validated by ``__init__`` when the study is created. Register with ``@metric_sets.register(name)``
or the entry-point group ``automl.metric_sets``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from automl.components import construct, reject_options
from automl.errors import ConfigError
from automl.registry import Registry

if TYPE_CHECKING:  # the contract is importable without torch (the command line lists metric sets)
    import torch
    from torch import nn


class MetricSet:
    """Base class: ``compute(model, x, y)`` returns named metrics of ``model`` (in eval mode) on ``(x, y)``."""

    #: the task families whose models this set measures (None: any family)
    families: ClassVar[frozenset[str] | None] = None

    def __init__(self, **options: Any) -> None:
        reject_options("metric set", type(self), options)

    def compute(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Mapping[str, float]:
        """The set's metrics; the default measures nothing."""
        return {}


#: metric sets by name (entry-point group ``automl.metric_sets``)
metric_sets: Registry[type[MetricSet]] = Registry("metric_sets", "metric set")


@dataclass(frozen=True)
class MetricSetSpec:
    """A registered metric set's name and options, checked once (:meth:`check`, at study creation);
    :meth:`build` makes the instance a trial measures with."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def cls(self) -> type[MetricSet]:
        return metric_sets.get(self.name)

    def build(self) -> MetricSet:
        return construct(self.cls(), dict(self.options), kind="metric set", name=self.name)

    def check(self, family: str) -> None:
        """Raise a ConfigError for a family the set cannot measure, an unknown option or a bad value."""
        cls = self.cls()
        if cls.families is not None and family not in cls.families:
            raise ConfigError(f"metric set {self.name!r} measures {', '.join(sorted(cls.families))} models, not "
                              f"{family} models")
        self.build()


def measure(specs: tuple[MetricSetSpec, ...], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            prefix: str = "") -> dict[str, float]:
    """Every set's metrics of ``model`` on ``(x, y)``, names prefixed (``test_`` for the test split)."""
    out: dict[str, float] = {}
    for spec in specs:
        out.update({prefix + k: float(v) for k, v in spec.build().compute(model, x, y).items()})
    return out
