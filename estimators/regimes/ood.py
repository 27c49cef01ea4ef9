"""Out-of-distribution training regimes after DomainBed (Gulrajani & Lopez-Paz, ``domainbed/algorithms.py``):
``erm``, ``irm``, ``vrex``, ``coral`` and ``groupdro``, for the ``environments`` family (``erm`` trains any).

They read each example's environment from the batch, ``(x, y, env)``: the ``train`` estimator draws such
batches for an environments task, every training environment contributing an equal share of each batch
(:class:`automl.training.streams.EnvironmentBatches`), as DomainBed's loop takes one minibatch per training
environment. The step's own loss is then the pooled cross-entropy, which on those balanced batches is
DomainBed's mean of the per-environment risks. Options and defaults are DomainBed's
(``domainbed/hparams_registry.py``; its random-search ranges in brackets, for a search over the options):

- ``erm``: the step's loss, nothing added (DomainBed's ERM).
- ``irm`` (Arjovsky et al.): + w * mean over environments of the IRMv1 penalty, the product of the gradients
  of the cross-entropy of the even and of the odd examples of the environment with respect to a dummy
  scale 1.0 on its logits. ``penalty_weight`` (1e2 [1e-1, 1e5], log), ``anneal_steps`` (500 [1, 1e4], log):
  w is 1.0 for the steps before ``anneal_steps`` and ``penalty_weight`` from then on.
- ``vrex`` (Krueger et al.): + w * the variance of the per-environment risks, with the same anneal
  (``penalty_weight`` 1e1 [1e-1, 1e5], ``anneal_steps`` 500 [1, 1e4]).
- ``coral`` (Sun & Saenko, DomainBed's CORAL): + ``mmd_gamma`` (1.0 [1e-1, 1e1], log) * the mean over pairs
  of environments of the mean squared difference of the penultimate features' means plus that of their
  covariances (``automl.training.features``: the input of the model's last ``nn.Linear``).
- ``groupdro`` (Sagawa et al.): q_e <- q_e * exp(``eta`` * risk_e) then normalised (``eta`` 1e-2
  [1e-3, 1e-1], log), and the step minimises sum_e q_e * risk_e instead of the pooled loss. q is part of the
  regime's state, so a checkpointed run resumes exactly.

Where this differs from DomainBed:

- ``rescale`` (irm, vrex; default false, DomainBed's ``algorithms.py`` loss exactly): with it, while w > 1
  the whole step loss is divided by w, as Arjovsky et al.'s and Krueger et al.'s reference code do, so the
  penalty dominates without the gradients growing w times (on colored-digits, 3 seeds, IRM at 1e4: 0.374
  test-environment accuracy with it, 0.407 without; the seeds vary more than that). A regime
  only adds loss terms, so the division is the term ``irm_rescale``/``vrex_rescale`` = (1/w - 1) * the
  step's own loss, and the penalty term is already divided.
- DomainBed builds a new Adam optimiser at the anneal step (IRM, VREx) because of the jump in gradient
  scale; a regime cannot reach the fit loop's optimiser, so the optimiser's moments carry on here (with
  ``rescale`` the gradient scale jumps far less).
- GroupDRO's risks come from the one pooled forward pass (DomainBed runs one per environment: the same
  values, except for batch-dependent layers such as batch norm). The term ``groupdro`` is
  sum_e q_e risk_e minus the step's own loss, so that the total is DomainBed's loss.
- An environment with fewer than two examples in a batch adds no IRM or CORAL penalty (its halves, its
  covariance are undefined); the balanced batches hold ``batch_size // environments`` of each.
- Batches are drawn without replacement within each environment's epoch (DomainBed samples with
  replacement), and ``train.batch_size`` is the whole batch, not the per-environment size.
"""
from __future__ import annotations

import numbers
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import autograd, nn

from automl.errors import ConfigError
from automl.training.features import final_linear
from automl.training.regime import Batch, FitRun, Regime, StepOutput, regimes

ENVIRONMENTS = frozenset({"environments"})


def _number(value: Any, name: str, *, low: float = 0.0) -> float:
    """``value`` as a finite number >= ``low``, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) == float(value) \
            or abs(float(value)) == float("inf") or float(value) < low:
        raise ConfigError(f"{name} must be a finite number >= {low:g}, got {value!r}", field=name)
    return float(value)


def _steps(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ConfigError(f"{name} must be an integer >= 0 (a step of the run), got {value!r}", field=name)
    return int(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}", field=name)
    return value


def environments_of(batch: Batch, regime: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, env)`` of a batch, or a ConfigError saying that ``regime`` needs the environments."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 3 or not isinstance(batch[2], torch.Tensor):
        shape = f"a {len(batch)}-tuple" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ConfigError(f"regime {regime!r} needs batches (x, y, env) that carry each example's training "
                          f"environment, got {shape}: train it on an environments task (the train estimator "
                          f"draws such batches)")
    x, y, env = batch
    if env.shape != y.shape:
        raise ConfigError(f"regime {regime!r}: a batch's env must hold one environment index per example, got "
                          f"shape {tuple(env.shape)} for {tuple(y.shape)} labels")
    return x, y, env


def split_by_environment(env: torch.Tensor) -> list[torch.Tensor]:
    """The boolean mask of each environment present in ``env``, in increasing index order."""
    return [env == e for e in torch.unique(env)]


def irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """IRMv1's penalty on one environment: d CE(s * logits[even], y) / ds * d CE(s * logits[odd], y) / ds
    at s = 1 (two halves of the batch give an unbiased estimate of the squared gradient)."""
    scale = torch.ones((), device=logits.device, dtype=logits.dtype, requires_grad=True)
    first = F.cross_entropy(logits[::2] * scale, y[::2])
    second = F.cross_entropy(logits[1::2] * scale, y[1::2])
    grad_first = autograd.grad(first, [scale], create_graph=True)[0]
    grad_second = autograd.grad(second, [scale], create_graph=True)[0]
    return (grad_first * grad_second).sum()


def environment_risks(logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, risks)``: the environments present and the mean cross-entropy of each."""
    ids = torch.unique(env)
    risks = torch.stack([F.cross_entropy(logits[env == e], y[env == e]) for e in ids])
    return ids, risks


def coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DomainBed's CORAL distance of two feature sets: the mean squared difference of their means plus that of
    their covariances (unbiased, n - 1)."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    cent_a, cent_b = a - mean_a, b - mean_b
    cov_a = cent_a.t() @ cent_a / (len(a) - 1)
    cov_b = cent_b.t() @ cent_b / (len(b) - 1)
    return (mean_a - mean_b).pow(2).mean() + (cov_a - cov_b).pow(2).mean()


def coral_penalty(features: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
    """The mean CORAL distance over pairs of the environments present with at least two examples (0 with fewer
    than two such environments)."""
    groups = [features[mask] for mask in split_by_environment(env) if int(mask.sum()) >= 2]
    pairs = [coral_distance(groups[i], groups[j]) for i in range(len(groups)) for j in range(i + 1, len(groups))]
    if not pairs:
        return features.sum() * 0.0
    return torch.stack(pairs).mean()


def _own_loss(output: StepOutput) -> torch.Tensor:
    total = sum(output.terms.values())
    assert isinstance(total, torch.Tensor), "the step produced no loss terms"
    return total


@regimes.register("erm")
class ERM(Regime):
    """Empirical risk minimisation: the step's own loss on the pooled batch (DomainBed's ERM baseline)."""


class AnnealedPenalty(Regime):
    """IRM's and V-REx's schedule: the penalty weighs 1.0 before ``anneal_steps`` and ``penalty_weight`` after;
    with ``rescale`` the step's loss is divided by the weight while it is above 1."""

    families: ClassVar[frozenset[str] | None] = ENVIRONMENTS
    name: ClassVar[str] = ""

    def __init__(self, penalty_weight: float = 1e2, anneal_steps: int = 500, rescale: bool = False) -> None:
        super().__init__()
        self.penalty_weight = _number(penalty_weight, "penalty_weight")
        self.anneal_steps = _steps(anneal_steps, "anneal_steps")
        self.rescale = _flag(rescale, "rescale")

    def weight(self, step: int) -> float:
        """The penalty's weight at ``step``."""
        return self.penalty_weight if step >= self.anneal_steps else 1.0

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        _, y, env = environments_of(batch, self.name)
        weight = self.weight(step)
        divide = weight if self.rescale and weight > 1.0 else 1.0
        terms = {f"{self.name}_penalty": self.penalty(output.outputs, y, env) * (weight / divide)}
        if self.rescale:
            terms[f"{self.name}_rescale"] = _own_loss(output) * (1.0 / divide - 1.0)
        return terms


@regimes.register("irm")
class IRM(AnnealedPenalty):
    """IRMv1: + the per-environment gradient penalty of a dummy classifier scale, annealed (see the module)."""

    name: ClassVar[str] = "irm"

    def __init__(self, penalty_weight: float = 1e2, anneal_steps: int = 500, rescale: bool = False) -> None:
        super().__init__(penalty_weight, anneal_steps, rescale)

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        parts = [irm_penalty(logits[mask], y[mask]) for mask in split_by_environment(env) if int(mask.sum()) >= 2]
        return torch.stack(parts).mean() if parts else logits.sum() * 0.0


@regimes.register("vrex")
class VREx(AnnealedPenalty):
    """V-REx: + the variance of the per-environment risks, annealed (see the module)."""

    name: ClassVar[str] = "vrex"

    def __init__(self, penalty_weight: float = 1e1, anneal_steps: int = 500, rescale: bool = False) -> None:
        super().__init__(penalty_weight, anneal_steps, rescale)

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        _, risks = environment_risks(logits, y, env)
        return ((risks - risks.mean()) ** 2).mean()


@regimes.register("coral")
class CORAL(Regime):
    """Deep CORAL: + ``mmd_gamma`` * mean and covariance differences of penultimate features (see the module).

    The features are the input of the model's last ``nn.Linear``, averaged over pairs of environments."""

    families: ClassVar[frozenset[str] | None] = ENVIRONMENTS

    def __init__(self, mmd_gamma: float = 1.0) -> None:
        super().__init__()
        self.mmd_gamma = _number(mmd_gamma, "mmd_gamma")
        self._captured: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._handle: Any = None

    def start(self, run: FitRun) -> None:
        self._release()

    def _release(self) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._captured = None, []

    def prepare(self, model: nn.Module, batch: Batch, step: int) -> Batch:
        """Watch the head (the model's last ``nn.Linear``) during the step's forward pass, so that its
        penultimate features come without a second pass."""
        environments_of(batch, "coral")
        self._release()
        captured = self._captured

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            captured.append((inputs[0].flatten(1), out))

        self._handle = final_linear(model).register_forward_hook(hook)
        return batch

    def features(self, output: StepOutput, n: int) -> torch.Tensor:
        """The penultimate features of the step's forward pass: the captured pass whose head output is the
        step's logits, else the first one over the batch's ``n`` examples."""
        for features, out in self._captured:
            if out is output.outputs:
                return features
        for features, _ in self._captured:
            if len(features) == n:
                return features
        raise ConfigError("regime 'coral' found no forward pass of the step through the model's last nn.Linear "
                          "(its penultimate features)")

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        _, y, env = environments_of(batch, "coral")
        try:
            features = self.features(output, len(y))
        finally:
            self._release()
        return {"coral_penalty": self.mmd_gamma * coral_penalty(features, env)}


@regimes.register("groupdro")
class GroupDRO(Regime):
    """Group DRO: the step minimises sum_e q_e * risk_e, q following exp(``eta`` * risk) (see the module)."""

    families: ClassVar[frozenset[str] | None] = ENVIRONMENTS

    def __init__(self, eta: float = 1e-2) -> None:
        super().__init__()
        self.eta = _number(eta, "eta")
        self.q: torch.Tensor | None = None

    def start(self, run: FitRun) -> None:
        self.q = None  # one weight per training environment, made at the first step

    def loss_terms(self, model: nn.Module, batch: Batch, output: StepOutput, step: int) -> Mapping[str, torch.Tensor]:
        _, y, env = environments_of(batch, "groupdro")
        ids, risks = environment_risks(output.outputs, y, env)
        size = int(ids.max()) + 1
        with torch.no_grad():
            if self.q is None:
                self.q = torch.ones(size, device=risks.device, dtype=risks.dtype)
            elif len(self.q) < size:  # an environment seen for the first time starts at the mean weight
                self.q = torch.cat([self.q, self.q.mean().expand(size - len(self.q))])
            self.q = self.q.to(device=risks.device, dtype=risks.dtype)
            self.q[ids] *= torch.exp(self.eta * risks.detach())
            self.q /= self.q.sum()
        robust = (self.q[ids] * risks).sum()
        return {"groupdro": robust - _own_loss(output)}

    def state_dict(self) -> dict[str, Any]:
        return {"q": None if self.q is None else self.q.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        q = state.get("q")
        self.q = None if q is None else q.clone()
