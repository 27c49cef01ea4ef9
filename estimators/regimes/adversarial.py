"""Adversarial training regimes for classifiers: ``pgd-at`` (Madry et al.), ``trades`` (Zhang et al.) and
``jeat`` (JEAT: adversarial training read as shaping an energy function, ../shared/PAPERS.md §5).

All three attack with l-inf PGD in eval mode (:mod:`automl.training.robustness`), take ``epsilon`` (default
8/255), ``steps`` (default 10) and ``step_size`` (default 2.5 * epsilon / steps, Madry's rule), and imply
the ``robust`` metric set at their epsilon, so a trial trained under one reports robust accuracy.

- ``pgd-at``: cross-entropy at x_adv (the step trains on the attacked batch).
- ``trades``: CE(f(x), y) + beta * KL(f(x_adv) || f(x)) with x_adv from TRADES' KL attack (``beta`` 6).
- ``jeat``: CE(x_adv, y) + ``energy_weight`` * [E(x_adv) - E(x_hat)], E(x) = -logsumexp f(x), where x_hat is
  an SGLD sample (JEM's sampler: ``sgld_steps`` 20 of x - ``sgld_step_size`` * dE/dx + ``sgld_noise`` * N(0, I),
  step 1, noise 0.01) started from a replay buffer of ``buffer_size`` (10,000) that re-initialises a start
  with probability ``reinit`` (0.05) to uniform noise. Unlike JEM, SGLD samples are clamped to [0, 1], the
  range of the data. The buffer is part of the regime's state, so a checkpointed run resumes exactly.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from automl.errors import ConfigError
from automl.training.energy import langevin_step, marginal_energy
from automl.training.modes import evaluating
from automl.training.regime import Batch, FitRun, Regime, StepOutput, regimes
from automl.training.robustness import (
    PAPER_EPSILON,
    check_count,
    check_epsilon,
    check_inputs,
    check_positive,
    check_steps,
    pgd,
    trades_attack,
)

CLASSIFIERS = frozenset({"supervised", "environments"})


class AdversarialRegime(Regime):
    """What the three regimes share: the threat model (``epsilon``, ``steps``, ``step_size``) and the
    ``robust`` metric set it implies."""

    families: ClassVar[frozenset[str] | None] = CLASSIFIERS

    def __init__(self, epsilon: float = PAPER_EPSILON, steps: int = 10, step_size: float | None = None) -> None:
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        self.steps = check_steps(steps)
        self.step_size = (check_positive(step_size, "step_size") if step_size is not None
                          else 2.5 * self.epsilon / self.steps)

    @classmethod
    def implied_metrics(cls, options: Mapping[str, Any]) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        return (("robust", {"epsilon": options.get("epsilon", PAPER_EPSILON)}),)

    def attacked(self, model: nn.Module, batch: Batch, step: int) -> Batch:
        """The batch with its inputs replaced by PGD adversarial examples (checked to lie in [0, 1] once); the
        rest of the batch (an environments task's env ids) is kept."""
        x, y, *rest = batch
        if step == 0:
            check_inputs(x)
        return (pgd(model, x, y, self.epsilon, self.steps, self.step_size), y, *rest)


@regimes.register("pgd-at")
class PGDAdversarialTraining(AdversarialRegime):
    """Madry's adversarial training: every step trains on PGD examples instead of the clean batch."""

    def prepare(self, model: nn.Module, batch: Batch, step: int) -> Batch:
        return self.attacked(model, batch, step)


@regimes.register("trades")
class TRADES(AdversarialRegime):
    """TRADES: the clean cross-entropy plus ``beta`` times the KL divergence between the predictions at x_adv
    and at x (the step's own loss is the clean term)."""

    def __init__(self, epsilon: float = PAPER_EPSILON, steps: int = 10, step_size: float | None = None,
                 beta: float = 6.0) -> None:
        super().__init__(epsilon, steps, step_size)
        self.beta = check_positive(beta, "beta")

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        x = batch[0]
        if step == 0:
            check_inputs(x)
        adv = trades_attack(model, x, self.epsilon, self.steps, self.step_size)
        kl = F.kl_div(F.log_softmax(model(adv), dim=1), F.softmax(output.outputs, dim=1), reduction="batchmean")
        return {"trades_kl": self.beta * kl}


@regimes.register("jeat")
class JEAT(AdversarialRegime):
    """JEAT: CE at PGD examples plus the energy term E(x_adv) - E(x_hat) (see the module docstring)."""

    def __init__(self, epsilon: float = PAPER_EPSILON, steps: int = 10, step_size: float | None = None,
                 energy_weight: float = 1.0, sgld_steps: int = 20, sgld_step_size: float = 1.0,
                 sgld_noise: float = 0.01, buffer_size: int = 10000, reinit: float = 0.05) -> None:
        super().__init__(epsilon, steps, step_size)
        self.energy_weight = check_positive(energy_weight, "energy_weight")
        self.sgld_steps = check_steps(sgld_steps, "sgld_steps")
        self.sgld_step_size = check_positive(sgld_step_size, "sgld_step_size")
        if isinstance(sgld_noise, bool) or not isinstance(sgld_noise, (int, float)) or sgld_noise < 0:
            raise ConfigError(f"sgld_noise must be a number >= 0, got {sgld_noise!r}", field="sgld_noise")
        self.sgld_noise = float(sgld_noise)
        self.buffer_size = check_count(buffer_size, "buffer_size")
        if isinstance(reinit, bool) or not isinstance(reinit, (int, float)) or not 0.0 <= reinit <= 1.0:
            raise ConfigError(f"reinit must be a probability in [0, 1], got {reinit!r}", field="reinit")
        self.reinit = float(reinit)
        self.buffer: torch.Tensor | None = None

    def start(self, run: FitRun) -> None:
        self.buffer = None  # drawn at the first step, when the input shape is known

    def prepare(self, model: nn.Module, batch: Batch, step: int) -> Batch:
        return self.attacked(model, batch, step)

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        x = batch[0]
        sampled = self.sample(model, len(x), x)
        energy_data = marginal_energy(output.outputs).mean()
        energy_model = marginal_energy(model(sampled)).mean()
        return {"energy": self.energy_weight * (energy_data - energy_model)}

    def sample(self, model: nn.Module, n: int, like: torch.Tensor) -> torch.Tensor:
        """x_hat: ``sgld_steps`` of SGLD on E(x) from ``n`` replay-buffer starts (model in eval mode, as JEM
        samples); the results go back into the buffer."""
        if self.buffer is None:
            self.buffer = torch.rand(self.buffer_size, *like.shape[1:], dtype=like.dtype, device=like.device)
        index = torch.randint(0, self.buffer_size, (n,), device=like.device)
        starts = self.buffer[index]
        fresh = torch.rand(n, device=like.device) < self.reinit
        starts = torch.where(fresh.view(-1, *[1] * (like.dim() - 1)), torch.rand_like(starts), starts)
        x = starts
        with evaluating(model):
            for _ in range(self.sgld_steps):
                x = langevin_step(model, x, marginal_energy, self.sgld_step_size, self.sgld_noise, 0.0, 1.0)
        self.buffer[index] = x
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": None if self.buffer is None else self.buffer.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        buffer = state.get("buffer")
        self.buffer = None if buffer is None else buffer.clone()
