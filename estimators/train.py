"""Estimator ``train``: build the candidate's model, reject it if a cost constraint fails, train it
from scratch for ``budget`` epochs and report validation accuracy and loss with params and FLOPs, and
the mean wall-clock time of one training step (``train_step_ms``, an objective for training-efficient
search such as NASOA's).

The config's ``model`` part goes to the builder and its ``train`` part sets the recipe: ``lr``,
``optimizer`` (sgd | adam | adamw), ``momentum``, ``weight_decay``, ``batch_size``, ``epochs`` (used when
the study gives no budget). The learning rate follows a cosine schedule (a choice, as in most NAS
training recipes) over the study's maximum budget, so that training to a smaller budget is a prefix of
training to a larger one: with a checkpoint store, a candidate promoted to a larger budget continues
from its checkpoint (model, optimiser, schedule, batch order and RNG state) instead of starting again.
A PBT trial (info ``continues``) starts from its parent trial's state under its own hyperparameters (the
learning rate and the rest apply from the parent's step on) and keeps its own state under its number.
The space's regimes hook into every training step, and its metric sets (``metrics: [robust]``, or implied
by an adversarial regime) measure the trained model on the validation split. The trained model is kept in
the checkpoint store (for ``automl export``); a pipeline's ``train`` step (trial info ``test``) also scores
the test split (``test_*`` metrics, the metric sets' included). ``device`` (``cpu``, ``cuda``, ``cuda:N`` or
``auto``) is where training and measuring run; the kept model is on the CPU.

An environments task trains on balanced ``(x, y, env)`` batches (every training environment an equal share,
:func:`automl.training.streams.environment_batches`) of 80% of each training environment, so that OOD
regimes (``irm``, ``vrex``, ...) see the environments; it validates on its ``val`` environments or, without
them, on the other 20% of each training environment (:func:`environment_splits`, DomainBed's split). The
config's ``regime`` part, when the space searches it, overrides the regimes' options for the trial. It
also reports, when the study's selection rule is not the default ``best-value``, what the rules read
(:mod:`estimators.selection_metrics`): the test environments' accuracy (``oracle_accuracy`` on their
held-out 20%, ``ood_accuracy`` on the rest; recorded, never an objective) and, under ``selection:
expansion``, v(h) of the train-domain validation features. A plain search never touches them.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.pruning import Pruned
from automl.registry import resolve_builder
from automl.selection import DEFAULT_SELECTION
from automl.space.model import Candidate
from automl.tasks.base import Task
from automl.tasks.environments import HOLDOUT_FRACTION, EnvironmentsData, EnvironmentsTask
from automl.tasks.supervised import ClassificationTask
from automl.training.classification import classification_scores, classification_step, held_out_batches
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import recipe_from_config
from automl.training.seeding import seeded
from automl.training.streams import EnvironmentBatches, EpochStream, environment_batches, tensor_batches
from estimators.cost import model_costs
from estimators.selection_metrics import REPORTED, selection_metrics

#: the recipe a config's ``train`` part starts from
DEFAULT_RECIPE: Mapping[str, Any] = {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "batch_size": 64}


@estimators.register("train")
class TrainEstimator(Estimator):
    """Options: ``default_epochs`` (when neither budget nor ``train.epochs`` is set, default 5) and ``device``
    (default ``cpu``)."""

    families: ClassVar[frozenset[str]] = frozenset({"supervised", "environments"})
    uses_regimes: ClassVar[bool] = True
    reports_metric_sets: ClassVar[bool] = True
    can_checkpoint: ClassVar[bool] = True
    selection_metrics: ClassVar[Mapping[str, frozenset[str]]] = {"environments": REPORTED}
    reports: ClassVar[frozenset[str] | None] = frozenset({
        "accuracy", "loss", "train_seconds", "epochs", "epochs_trained", "resumed_from_epoch", "train_step_ms",
        "params", "flops", "latency_ms"})  # latency_ms: measured when an objective or constraint names it

    def __init__(self, default_epochs: int = 5, device: str = "cpu") -> None:
        super().__init__()
        if not isinstance(default_epochs, int) or default_epochs < 1:
            raise ConfigError(f"default_epochs must be an integer >= 1, got {default_epochs!r}", field="default_epochs")
        self.default_epochs = default_epochs
        self.device = training_device(device)

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = ctx.require_task(Task)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        config = candidate.config
        train_cfg: Mapping[str, Any] = config.get("train", {})
        epochs = int(round(budget)) if budget is not None else int(train_cfg.get("epochs", self.default_epochs))
        budget_range = ctx.budget or space.budget
        horizon = max(epochs, int(round(budget_range.max))) if budget_range is not None else epochs
        with seeded(ctx.trial_seed):  # the model's initialisation, then the batch order and dropout
            model = resolve_builder(str(space.builder))(config.get("model", config), task.info)
            costs = model_costs(model, task.example_input(), latency=ctx.needs_latency)
            ctx.check_constraints(costs)
            loaded, train_env = _splits(task, ctx.scores_test)
            splits = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in loaded.items()}
            model.to(self.device)
            batch_size = int(train_cfg.get("batch_size", 64))
            stream: EpochStream[Any] | EnvironmentBatches = (
                tensor_batches(splits["train"][0], splits["train"][1], batch_size) if train_env is None
                else environment_batches(splits["train"][0], splits["train"][1], train_env.to(self.device), batch_size))
            per_epoch = stream.batches_per_epoch
            recipe = recipe_from_config(train_cfg, steps=epochs * per_epoch, horizon=horizon * per_epoch,
                                        defaults=DEFAULT_RECIPE)
            checkpoint = _checkpoint(ctx, candidate)
            regimes = ctx.build_regimes(candidate)
            val_x, val_y = splits["val"]
            run = fit(model, stream, recipe, classification_step, regimes=regimes, checkpoint=checkpoint,
                      monitor=ctx.phase("training"), on_step=_pruning_reports(ctx, model, val_x, val_y, per_epoch))
        accuracy, loss = classification_scores(model, val_x, val_y)
        metrics: dict[str, float] = {
            "accuracy": accuracy, "loss": loss, "train_seconds": run.seconds, "epochs": epochs,
            "epochs_trained": run.trained / per_epoch, "resumed_from_epoch": run.resumed_from / per_epoch,
            # training step time: an objective for training-efficient search (NASOA); NaN when nothing was trained
            "train_step_ms": run.seconds * 1000.0 / run.trained if run.trained else float("nan"),
        }
        metrics.update(ctx.measure(model, val_x, val_y))
        if "test" in splits:  # held out of every search: only a pipeline's train step scores it
            metrics["test_accuracy"], metrics["test_loss"] = classification_scores(model, *splits["test"])
            metrics.update(ctx.measure(model, *splits["test"], prefix="test_"))
        for regime in regimes:
            metrics.update(regime.metrics(model, held_out_batches(val_x, val_y)))
        model.cpu()
        if isinstance(task, EnvironmentsTask) and space.selection[0] != DEFAULT_SELECTION:  # an OOD selection sweep
            metrics.update(selection_metrics(model, *environment_splits(task, test=True), space.selection))
        ctx.keep_model(model, candidate, recipe=recipe.as_dict(), metrics=metrics, estimator="train")
        return Result(metrics=metrics, cost=costs)


def _checkpoint(ctx: EvalContext, candidate: Candidate) -> Checkpoint | None:
    """Where the trial keeps its training state. A promoted candidate continues its checkpoint; replicas (a
    pipeline's seeds) train independently; a continuing trial (PBT) keeps its own per trial, in the study's
    checkpoint store or without one in :meth:`EvalContext.store`'s default, and starts from its parent's,
    whose recipe may differ (the trial's hyperparameters apply from the parent's step on)."""
    if ctx.continues:
        parent = ctx.parent_trial
        return Checkpoint(ctx.store(), ctx.trial_checkpoint(ctx.trial_number), adopt=True,
                          start=ctx.trial_checkpoint(parent) if parent is not None else None)
    if ctx.checkpoints is None:
        return None
    replica = ctx.info.get("replica")
    return Checkpoint(ctx.checkpoints, f"{candidate.key}.pt" if replica is None else f"{candidate.key}.r{replica}.pt")


def training_device(name: Any) -> torch.device:
    """The device ``name`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``: CUDA when torch sees it), checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}", field="device") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA devices on this machine",
                          field="device")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}", field="device")
    return device


def _pruning_reports(ctx: EvalContext, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     per_epoch: int) -> Callable[[int, Mapping[str, float]], None] | None:
    """With a pruner watching: after every epoch, report the study's metric (validation accuracy or loss)
    and stop the trial when the pruner says so."""
    trial = ctx.trial
    metric = ctx.space.objectives[0].name if ctx.space.objectives else "accuracy"
    if trial is None or not trial.prunes or metric not in ("accuracy", "loss"):
        return None

    def report(step: int, terms: Mapping[str, float]) -> None:
        if (step + 1) % per_epoch:
            return
        with torch.random.fork_rng(devices=[]):  # scoring must not move the training's RNG
            accuracy, loss = classification_scores(model, x, y)
        model.train()
        epoch = (step + 1) // per_epoch
        trial.report(accuracy if metric == "accuracy" else loss, epoch)
        if trial.should_stop():
            raise Pruned(f"pruned after epoch {epoch}")

    return report


def environment_splits(task: EnvironmentsTask | EnvironmentsData, *, test: bool = False,
                       fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> tuple[EnvironmentsData, EnvironmentsData]:
    """``(fit, held)``: DomainBed's per-environment split (:meth:`EnvironmentsData.holdout`, 20% of every
    environment held out by its own seeded permutation) that the ``train`` estimator uses: it trains on
    ``fit.pooled("train")`` and, when the task has no ``val`` environments, validates on
    ``held.pooled("train")`` (DomainBed's training-domain validation). Model selection must use this same
    split. The test environments are left out (a search never touches them) unless ``test``: then
    ``held.pooled("test")`` is the test-domain oracle's share. ``task``: the task or its loaded data."""
    data = task.load() if isinstance(task, EnvironmentsTask) else task
    kept = (*data.train, *data.val, *(data.test if test else ()))
    subset = EnvironmentsData(environments={n: data.environments[n] for n in kept}, train=data.train, val=data.val,
                              test=data.test if test else ())
    return subset.holdout(fraction, seed)


def _splits(task: Task, test: bool) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
    """``train`` and ``val`` tensors (and with ``test``, the test split or environments, when the task has
    them) of a supervised or an environments task, and for the latter each training example's environment
    (None for a supervised task). An environments task trains on the 80% of each training environment that
    :func:`environment_splits` keeps, the environment being the example's index among the training
    environments; it validates on its ``val`` environments, or without them on the other 20% of each training
    environment (DomainBed's training-domain validation)."""
    if isinstance(task, ClassificationTask):
        data = task.load()
        split = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}
        if test and data.test_x is not None and data.test_y is not None:
            split["test"] = (data.test_x, data.test_y)
        return split, None
    assert isinstance(task, EnvironmentsTask)
    envs = task.load()
    fit_data, held = environment_splits(envs)
    x, y, env = fit_data.pooled("train")
    vx, vy, _ = envs.pooled("val") if envs.val else held.pooled("train")
    out = {"train": (x, y), "val": (vx, vy)}
    if test and envs.test:
        tx, ty, _ = envs.pooled("test")
        out["test"] = (tx, ty)
    return out, env
