"""The one training loop: :func:`fit` runs ``recipe.steps`` optimiser steps of a model on a batch stream,
with the regimes' hooks on every step, and checkpoints so that a killed run continues where it stopped.

Every estimator, the zoo, the teacher pool and the benchmarks train through it: what a step does is
the caller's ``loss(model, batch) -> StepOutput`` plus the regimes (:mod:`automl.training.regime`);
everything else (optimiser, schedule, clipping, non-finite steps, seeding, checkpoints, progress)
is the recipe's and this loop's.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from automl.artifacts import ArtifactStore
from automl.errors import ConfigError
from automl.training.recipe import Recipe
from automl.training.regime import FitRun, LossFn, Regime, StepOutput
from automl.training.seeding import seeded
from automl.training.streams import BatchStream

#: bump when the checkpoint layout changes; older checkpoints are then ignored (training starts afresh)
CHECKPOINT_FORMAT = 2


class StepMonitor(Protocol):
    """Watches a long run from inside it (progress lines, thread policy): called after every step."""

    def step(self, done: int, total: int, loss: float | None) -> None: ...


@dataclass(frozen=True)
class Checkpoint:
    """Where :func:`fit` keeps a run's state: ``store`` under ``name``, written atomically every
    ``every_s`` seconds of training and at the end. ``keep=False`` removes it once the run completes
    (a phase whose product is stored elsewhere, e.g. a cached supernet); ``keep=True`` leaves the final
    state for a later, longer run on the same schedule to continue."""

    store: ArtifactStore
    name: str
    every_s: float = 60.0
    keep: bool = True
    #: another run's checkpoint (in ``store``) to start from when ``name`` holds none: a population member
    #: continuing its previous trial, or the better member's it copies (PBT); it must exist
    start: str | None = None
    #: load ``start`` even when it was made under another recipe (the hyperparameters changed): the model,
    #: regimes, RNG and batch-stream state, the optimiser's moments when it is the same optimiser, and the
    #: recipe's own hyperparameters (lr, momentum, weight decay; the schedule at the saved step) from there on
    adopt: bool = False


@dataclass(frozen=True)
class FitResult:
    """What a run did: the step it reached, the step it resumed from, the skipped (non-finite) steps,
    the seconds of training in this call, and every completed step's loss terms (``total`` included)."""

    steps: int
    resumed_from: int
    skipped: int
    seconds: float
    history: Sequence[Mapping[str, float]] = field(default_factory=list)

    @property
    def trained(self) -> int:
        """Steps run by this call."""
        return self.steps - self.resumed_from

    def tail(self, fraction: float) -> dict[str, float]:
        """The mean of every loss term over the last ``fraction`` of the completed steps (at least one)."""
        tail = list(self.history[-max(1, int(len(self.history) * fraction)):])
        keys = list(tail[0]) if tail else []
        return {k: float(np.mean([h[k] for h in tail if k in h])) for k in keys}


def fit(model: nn.Module, batches: BatchStream, recipe: Recipe, loss: LossFn, *,
        regimes: Sequence[Regime] = (), seed: int | None = None,
        params: Sequence[nn.Parameter] | None = None, checkpoint: Checkpoint | None = None,
        monitor: StepMonitor | None = None,
        on_step: Callable[[int, Mapping[str, float]], None] | None = None) -> FitResult:
    """Train ``model`` for ``recipe.steps`` steps of ``loss`` on ``batches``; leaves it in eval mode.

    ``seed``: run inside :func:`automl.training.seeding.seeded` (torch's global RNG seeded, the caller's
    state restored afterwards); None when the caller already seeded (e.g. to share one stream between
    building the model and training it). ``params``: what the optimiser trains (default: the model's
    parameters that require gradients), to which each regime's :meth:`Regime.parameters` are added.
    With ``checkpoint``, a saved state of the same recipe (``recipe.continues``) with no more steps is
    loaded and the run continues from it, exactly; without one, ``checkpoint.start`` (another run's) is
    continued, under another recipe too with ``checkpoint.adopt``. ``on_step(step, terms)`` sees each
    completed step.
    """
    with seeded(seed) if seed is not None else contextlib.nullcontext():
        run = FitRun(model=model, recipe=recipe, seed=seed)
        for regime in regimes:
            regime.start(run)
        trainable = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
        for regime in regimes:
            trainable += list(regime.parameters())
        optimizer = recipe.make_optimizer(trainable)
        schedule = recipe.make_schedule(optimizer)
        loop = _Loop(model, batches, recipe, loss, regimes, trainable, optimizer, schedule, checkpoint)
        return loop.run(monitor, on_step)


class _Loop:
    """One :func:`fit` call's state: what a checkpoint holds and how it is written and read."""

    def __init__(self, model: nn.Module, batches: BatchStream, recipe: Recipe, loss: LossFn,
                 regimes: Sequence[Regime], trainable: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LRScheduler, checkpoint: Checkpoint | None) -> None:
        self.model, self.batches, self.recipe, self.loss = model, batches, recipe, loss
        self.regimes, self.trainable, self.optimizer, self.schedule = regimes, trainable, optimizer, schedule
        self.checkpoint = checkpoint
        self.history: list[dict[str, float]] = []
        self.skipped = 0
        self.saved_step = -1  # the step of the checkpoint in the store (-1: none), never overwritten by fewer

    def run(self, monitor: StepMonitor | None, on_step: Callable[[int, Mapping[str, float]], None] | None
            ) -> FitResult:
        recipe = self.recipe
        start_step = self._resume()
        started = time.perf_counter()
        last_save = started
        self.model.train()
        for step in range(start_step, recipe.steps):
            values = self._step(step)
            if values is not None:
                self.history.append(values)
                if on_step is not None:
                    on_step(step, values)
            if monitor is not None:
                monitor.step(step + 1, recipe.steps, values["total"] if values else None)
            if self.checkpoint is not None and 0 < self.checkpoint.every_s <= time.perf_counter() - last_save:
                self._save(step + 1)
                last_save = time.perf_counter()
        seconds = time.perf_counter() - started
        self.model.eval()
        if self.checkpoint is not None:
            if self.checkpoint.keep:
                self._save(recipe.steps)
            elif self.checkpoint.store.exists(self.checkpoint.name):
                self.checkpoint.store.remove(self.checkpoint.name)
        return FitResult(steps=recipe.steps, resumed_from=start_step, skipped=self.skipped, seconds=seconds,
                         history=self.history)

    def _step(self, step: int) -> dict[str, float] | None:
        """One optimiser step; the loss terms, or None for a skipped non-finite step."""
        batch = self.batches.next()
        for regime in self.regimes:
            batch = regime.prepare(self.model, batch, step)
        output: StepOutput = self.loss(self.model, batch)
        terms = dict(output.terms)
        for regime in self.regimes:
            for name, value in regime.loss_terms(self.model, batch, output, step).items():
                if name in terms:
                    raise ConfigError(f"regime {type(regime).__name__} adds a loss term {name!r} that another "
                                      f"part of the step already adds")
                terms[name] = value
        total = sum(terms.values())
        if not isinstance(total, torch.Tensor):
            raise ValueError("a training step produced no loss terms")
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(total):
            if self.recipe.nonfinite == "raise":
                raise FloatingPointError(f"training diverged (loss {total.item()}) at step {step} "
                                         f"(lr {self.optimizer.param_groups[0]['lr']:.3g})")
            self.skipped += 1
            with warnings.catch_warnings():  # torch warns when the schedule moves before any optimiser step
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                self.schedule.step()
            return None
        total.backward()  # type: ignore[no-untyped-call]
        if self.recipe.clip is not None:
            nn.utils.clip_grad_norm_(self.trainable, self.recipe.clip)
        self.optimizer.step()
        self.schedule.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        return values

    # -- checkpoints ------------------------------------------------------------------------------
    def _resume(self) -> int:
        checkpoint = self.checkpoint
        state = read_checkpoint(checkpoint.store, checkpoint.name) if checkpoint is not None else None
        if state is not None:
            self.saved_step = int(state["step"])
            if self.saved_step <= self.recipe.steps and self.recipe.continues(state["recipe"]):
                return self._load(state)
        if checkpoint is None or checkpoint.start is None:
            return 0
        return self._start_from(checkpoint)

    def _start_from(self, checkpoint: Checkpoint) -> int:
        """Continue another run's checkpoint (``checkpoint.start``): exactly under the same recipe, else
        (``adopt``) with this recipe's hyperparameters from its step on."""
        assert checkpoint.start is not None
        state = read_checkpoint(checkpoint.store, checkpoint.start)
        if state is None:
            raise ConfigError(f"checkpoint {checkpoint.start!r} to start from is not in {checkpoint.store.root!r}")
        step, saved = int(state["step"]), dict(state["recipe"])
        if step > self.recipe.steps:
            raise ConfigError(f"checkpoint {checkpoint.start!r} reached step {step}, beyond this run's "
                              f"{self.recipe.steps} steps")
        if self.recipe.continues(saved):
            return self._load(state)
        if not checkpoint.adopt:
            raise ConfigError(f"checkpoint {checkpoint.start!r} was made under another recipe; "
                              "Checkpoint(adopt=True) continues it with this one")
        if saved.get("batch_size") != self.recipe.batch_size:
            raise ConfigError(f"checkpoint {checkpoint.start!r} was trained with batch_size {saved.get('batch_size')}, "
                              f"this run uses {self.recipe.batch_size}: its step count would not carry over")
        return self._adopt(state)

    def _adopt(self, state: Mapping[str, Any]) -> int:
        """Load a state made under another recipe: what it trained, with this recipe's hyperparameters."""
        step = int(state["step"])
        self.model.load_state_dict(state["model"])
        if dict(state["recipe"]).get("optimizer") == self.recipe.optimizer:  # keep its moments, not its settings
            settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state["optimizer"])
            for group, mine in zip(self.optimizer.param_groups, settings):
                group.update(mine)
        with warnings.catch_warnings():  # the schedule replayed to the saved step, without optimiser steps
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            for _ in range(step):
                self.schedule.step()
        self._load_stream(state)
        return step

    def _load(self, state: Mapping[str, Any]) -> int:
        """Load a state made under this recipe: the run continues exactly."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self._load_stream(state)
        return int(state["step"])

    def _load_stream(self, state: Mapping[str, Any]) -> None:
        """The regimes', RNG's and batch stream's state, and the run's history so far."""
        for regime, saved in zip(self.regimes, state["regimes"]):
            regime.load_state_dict(saved)
        torch.set_rng_state(state["rng"])  # before the stream: it may redraw an epoch's permutation
        self.batches.load_state_dict(state["stream"])
        self.history, self.skipped = list(state["history"]), int(state["skipped"])

    def _save(self, step: int) -> None:
        assert self.checkpoint is not None
        if step <= self.saved_step:
            return
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "step": step, "recipe": self.recipe.as_dict(),
                    "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule.state_dict(), "regimes": [r.state_dict() for r in self.regimes],
                    "rng": torch.get_rng_state(), "stream": self.batches.state_dict(),
                    "history": self.history, "skipped": self.skipped}, buffer)
        self.checkpoint.store.write_bytes(self.checkpoint.name, buffer.getvalue())
        self.saved_step = step


def read_checkpoint(store: ArtifactStore, name: str) -> dict[str, Any] | None:
    """A :func:`fit` checkpoint in ``store``, or None when there is none (or it is of an older format)."""
    if not store.exists(name):
        return None
    state = torch.load(io.BytesIO(store.read_bytes(name)), weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return None
    return state


def checkpoint_step(store: ArtifactStore, name: str) -> int | None:
    """The step a :func:`fit` checkpoint in ``store`` reached, or None when there is none."""
    state = read_checkpoint(store, name)
    return int(state["step"]) if state is not None else None
