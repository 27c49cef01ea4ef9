"""The regime contract: hooks on a training step that change *how* a model is trained (adversarial
batches, distillation terms, invariance penalties) without a new training loop.

Every hook defaults to doing nothing, so a regime overrides only what it changes, and the ``standard``
regime is this base itself. Register with ``@regimes.register(name)`` (or the entry-point group
``automl.regimes``); options come from YAML (``regime: {name: ..., options: {...}}``) and are validated
by ``__init__`` when the study is created. A regime instance serves one :func:`automl.training.fit`
call (it may build helper networks in :meth:`Regime.start`); :class:`RegimeSpec` makes fresh ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

from automl.components import construct, reject_options
from automl.errors import ConfigError
from automl.registry import Registry

if TYPE_CHECKING:  # the contract is importable without torch (the command line lists regimes)
    import torch
    from torch import nn

    from automl.training.recipe import Recipe

Batch = Any


@dataclass
class StepOutput:
    """What one forward pass of a training step produced: named loss ``terms`` (the step minimises their
    sum) and the ``outputs`` regimes may read (logits, feature maps)."""

    terms: dict[str, torch.Tensor]
    outputs: Any = None


#: ``loss(model, batch) -> StepOutput``: what a step computes for a task family
LossFn = Callable[["nn.Module", Batch], StepOutput]


@dataclass(frozen=True)
class FitRun:
    """What a regime sees when a run starts: the model, the recipe and the run's seed (objects only code can
    give, such as a distillation teacher, reach a regime through its constructor: :meth:`RegimeSpec.build`)."""

    model: nn.Module
    recipe: Recipe
    seed: int | None


class Regime:
    """Base class of training regimes; every hook does nothing by default."""

    #: the task families this regime can train (None: any family)
    families: ClassVar[frozenset[str] | None] = None

    def __init__(self, **options: Any) -> None:
        reject_options("regime", type(self), options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any], name: str) -> None:
        """Raise a ConfigError for an option the regime does not take or a value it refuses (called at
        study creation). The default builds an instance; a regime whose ``__init__`` also needs objects
        only code can give (a teacher) overrides this to check the options alone."""
        construct(cls, options, kind="regime", name=name)

    @classmethod
    def implied_metrics(cls, options: Mapping[str, Any]) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """Metric sets (name, options) a model trained under this regime reports even when the space does not
        name them (an adversarial regime: ``robust`` at its own epsilon); a set the space names wins."""
        return ()

    def start(self, run: FitRun) -> None:
        """Called once when a run starts, inside its seeded RNG (build helper networks here)."""

    def parameters(self) -> Sequence[nn.Parameter]:
        """Extra trainable parameters (helper networks) the optimiser trains beside the model's."""
        return ()

    def prepare(self, model: nn.Module, batch: Batch, step: int) -> Batch:
        """The batch the step trains on (an adversarial regime perturbs its inputs here)."""
        return batch

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        """Named loss terms added to the step's (names must not repeat the step's own)."""
        return {}

    def metrics(self, model: nn.Module, batches: Iterable[Batch]) -> Mapping[str, float]:
        """Extra evaluation metrics of the trained model on held-out ``batches`` (e.g. robust accuracy)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to continue the run (default: the helper parameters)."""
        return {"parameters": [p.detach().clone() for p in self.parameters()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        import torch

        saved = state.get("parameters", [])
        with torch.no_grad():
            for param, value in zip(self.parameters(), saved):
                param.copy_(value)


#: training regimes by name (entry-point group ``automl.regimes``)
regimes: Registry[type[Regime]] = Registry("regimes", "regime")


@regimes.register("standard")
class StandardRegime(Regime):
    """Plain training: the task's loss, nothing added."""


@dataclass(frozen=True)
class RegimeSpec:
    """A registered regime's name and options, checked once (:meth:`check`, at study creation);
    :meth:`build` makes the fresh instance each run needs."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def cls(self) -> type[Regime]:
        return regimes.get(self.name)

    def build(self, **runtime: Any) -> Regime:
        """A new instance with the spec's options and ``runtime`` objects."""
        return construct(self.cls(), {**self.options, **runtime}, kind="regime", name=self.name)

    def check_family(self, family: str) -> None:
        """Raise a ConfigError when the regime cannot train tasks of ``family``."""
        cls = self.cls()
        if cls.families is not None and family not in cls.families:
            raise ConfigError(f"regime {self.name!r} trains {', '.join(sorted(cls.families))} tasks, not "
                              f"{family} tasks")

    def check_options(self) -> None:
        """Raise a ConfigError for an unknown option or a bad value."""
        self.cls().check_options(self.options, self.name)
