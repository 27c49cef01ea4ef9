"""Zero-cost estimators ``synflow``, ``snip``, ``grad-norm``, ``jacob-cov``, ``params`` and ``flops``: score
the candidate's model at initialisation, without training, in well under a second.

Each builds the model from the space's builder (seeded by the trial's seed, as ``train`` does), checks the
space's cost constraints, and scores it on ONE minibatch of the task's training data
(:mod:`automl.training.proxies` has the definitions, NASLib's). The minibatch (``batch_size`` examples,
default 64) is drawn with the study's seed, so every candidate of a study is scored on the same examples.
The score is reported as the metric named like the estimator (``synflow``, ``snip``, ``grad-norm``,
``jacob-cov``, ``params``, ``flops``), with params and FLOPs as costs and ``proxy_seconds`` (the time the
score took). Convention: for every proxy a LARGER score predicts a BETTER trained accuracy, so a proxy
objective is ``{synflow: max}`` (``params``/``flops`` as proxies are ``max`` too; as costs, ``min``).
The budget is ignored: nothing is trained. Use them as objectives, as the first step of a pipeline (score
many candidates, train the best: a search step's ``estimator:`` option) or to warm-start evolution.
"""
from __future__ import annotations

import time
from abc import abstractmethod
from typing import ClassVar

import torch
from torch import nn

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.registry import resolve_builder
from automl.space.model import Candidate
from automl.tasks.base import Task
from automl.tasks.environments import EnvironmentsTask
from automl.tasks.supervised import ClassificationTask
from automl.training import proxies
from automl.training.seeding import seeded
from estimators.cost import count_flops, count_params, model_costs
from estimators.train import environment_splits, training_device

#: what every zero-cost estimator reports besides its score (latency_ms when an objective or constraint names it)
COSTS = ("proxy_seconds", "params", "flops", "latency_ms")


class ZeroCostEstimator(Estimator):
    """Base of the zero-cost estimators: build, check the constraints, score on one seeded minibatch.
    Options: ``batch_size`` (examples in the minibatch, default 64) and ``device`` (``cpu``, ``cuda[:N]``,
    ``auto``; default ``cpu``)."""

    families: ClassVar[frozenset[str]] = frozenset({"supervised", "environments"})
    #: the metric the score is reported as (the estimator's registered name)
    metric: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.metric:  # each proxy reports its score and COSTS
            cls.reports = frozenset({cls.metric, *COSTS})

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        super().__init__()
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 2:
            raise ConfigError(f"batch_size must be an integer >= 2, got {batch_size!r}", field="batch_size")
        self.batch_size = batch_size
        self.device = training_device(device)

    @abstractmethod
    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """The proxy's score of the untrained ``model`` on the minibatch ``(x, y)``."""

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        task = ctx.require_task(Task)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        config = candidate.config
        with seeded(ctx.trial_seed):  # the model's initialisation, as the train estimator draws it
            model = resolve_builder(str(ctx.space.builder))(config.get("model", config), task.info)
        costs = model_costs(model, task.example_input(), latency=ctx.needs_latency)
        ctx.check_constraints(costs)
        x, y = minibatch(task, self.batch_size, ctx.seed)
        model.to(self.device)
        start = time.perf_counter()
        with seeded(ctx.trial_seed):  # dropout in the scoring pass
            value = self.score(model, x.to(self.device), y.to(self.device))
        seconds = time.perf_counter() - start
        return Result(metrics={self.metric: value, "proxy_seconds": seconds}, cost=costs)


def minibatch(task: Task, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training examples of ``task`` (a supervised or environments task) drawn without replacement
    with ``seed`` (all of them when it has fewer): the minibatch every proxy of a study scores on."""
    if isinstance(task, ClassificationTask):
        data = task.load()
        x, y = data.train_x, data.train_y
    elif isinstance(task, EnvironmentsTask):
        x, y, _ = environment_splits(task)[0].pooled("train")
    else:
        raise ConfigError(f"zero-cost proxies score supervised or environments tasks, got {type(task).__name__}")
    generator = torch.Generator().manual_seed(int(seed))
    picked = torch.randperm(len(y), generator=generator)[:size]
    return x[picked], y[picked]


@estimators.register("synflow")
class SynflowEstimator(ZeroCostEstimator):
    """SynFlow (data-free: an all-ones input, absolute weights, double precision, batch norm bypassed)."""

    metric = "synflow"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return proxies.synflow(model, x)


@estimators.register("snip")
class SnipEstimator(ZeroCostEstimator):
    """SNIP: the summed ``|w * dL/dw|`` of the minibatch's cross-entropy."""

    metric = "snip"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return proxies.snip(model, x, y)


@estimators.register("grad-norm")
class GradNormEstimator(ZeroCostEstimator):
    """grad_norm: the summed per-layer L2 norms of the minibatch's cross-entropy gradient."""

    metric = "grad-norm"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return proxies.grad_norm(model, x, y)


@estimators.register("jacob-cov")
class JacobCovEstimator(ZeroCostEstimator):
    """jacob_cov: how uncorrelated the input gradients of the minibatch's examples are (NASWOT's score)."""

    metric = "jacob-cov"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return proxies.jacob_cov(model, x)


@estimators.register("params")
class ParamsEstimator(ZeroCostEstimator):
    """The parameter count as a proxy (NASLib's ``params`` baseline: more parameters, predicted better)."""

    metric = "params"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(count_params(model))


@estimators.register("flops")
class FlopsEstimator(ZeroCostEstimator):
    """The FLOPs of one forward pass of a single example as a proxy (NASLib's ``flops`` baseline)."""

    metric = "flops"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(count_flops(model, x[:1]))  # the costs' count, timed as the proxy's own


#: the zero-cost estimators' names (each is also the metric it reports)
PROXIES = ("synflow", "snip", "grad-norm", "jacob-cov", "params", "flops")
