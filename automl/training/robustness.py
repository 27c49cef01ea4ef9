"""Adversarial robustness of a classifier, measured the way RobustBench reports it: the ``robust`` metric set.

Every number is on a fixed, seeded subset of the held-out split (``subset`` examples; the same ones for every
model of a study), with the model in eval mode and attacks from torchattacks (a maintained implementation):
PGD (l-inf, random start, ``steps`` iterations, 20 by default: PGD-20) and, with ``autoattack: true``, the
standard AutoAttack ensemble (APGD-CE, APGD-T, FAB-T, Square; off by default: on 2 CPU cores it costs about
0.4 s per digits example, against 0.01 s for PGD-20, so a search measures PGD and a final evaluation
AutoAttack). An example counts as robust only if it is classified right and no attack run fools it
(``robust_accuracy``: the worst case per example). ``energy_flatness`` is E|E(x + d, y) - E(x, y)| over
uniform noise d in the epsilon ball (JEAT: adversarial training flattens the energy around the data).
Attack randomness comes from ``seed`` inside a forked RNG, so measuring never moves a training run's RNG.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from automl.errors import ConfigError
from automl.training.energy import joint_energy
from automl.training.metric_sets import MetricSet, metric_sets
from automl.training.modes import evaluating, model_device
from automl.training.seeding import seeded

#: the JEAT paper's epsilon (CIFAR, inputs in [0, 1])
PAPER_EPSILON = 8 / 255


def check_epsilon(value: Any, name: str = "epsilon") -> float:
    """``value`` as an l-inf radius in (0, 1) (inputs live in [0, 1]), else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in (0, 1) (an l-inf radius for inputs in [0, 1]), got {value!r}",
                          field=name)
    return float(value)


def check_count(value: Any, name: str, what: str = "") -> int:
    """``value`` as an integer >= 1, else a ConfigError naming ``name`` (``what``: what it counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1{f' ({what})' if what else ''}, got {value!r}", field=name)
    return int(value)


def check_steps(value: Any, name: str = "steps") -> int:
    return check_count(value, name, "attack iterations")


def check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}", field=name)
    return float(value)


def check_inputs(x: torch.Tensor) -> None:
    """Attacks clamp to [0, 1]: refuse inputs outside it rather than attack a different threat model."""
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise ConfigError(f"adversarial attacks need inputs in [0, 1]; this task's inputs span [{low:.3g}, {high:.3g}]")


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int, step_size: float,
        random_start: bool = True) -> torch.Tensor:
    """An l-inf PGD attack on cross-entropy (Madry et al.), run with ``model`` in eval mode; the model's
    own mode is restored. The random start draws from torch's global RNG."""
    import torchattacks

    attack = torchattacks.PGD(model, eps=epsilon, alpha=step_size, steps=steps, random_start=random_start)
    return _run(attack, model, x, y)


def trades_attack(model: nn.Module, x: torch.Tensor, epsilon: float, steps: int, step_size: float) -> torch.Tensor:
    """TRADES' inner maximisation: PGD on KL(f(x') || f(x)) from x + 0.001 N(0, I) (torchattacks' TPGD)."""
    import torchattacks

    attack = torchattacks.TPGD(model, eps=epsilon, alpha=step_size, steps=steps)
    return _run(attack, model, x, None)


def _run(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    with evaluating(model), torch.enable_grad():
        adv: torch.Tensor = attack(x, y) if y is not None else attack(x)
    return adv.detach()


def fixed_subset(n: int, size: int, seed: int) -> torch.Tensor:
    """The indices of the evaluation subset: the first ``size`` of a permutation seeded by ``seed``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:min(size, n)]


@metric_sets.register("robust")
class RobustMetrics(MetricSet):
    """Clean, PGD and (optionally) AutoAttack accuracy and energy flatness on a fixed subset.

    Options: ``epsilon`` (l-inf radius, default 8/255), ``steps`` (PGD iterations, default 20),
    ``step_size`` (default epsilon / 4: 2/255 at 8/255, the usual PGD-20 setting), ``autoattack`` (default
    False), ``subset`` (examples measured, default 500), ``flatness_samples`` (noise draws per example,
    default 8), ``batch_size`` (default 250), ``seed`` (of the subset and the attacks, default 0)."""

    families: ClassVar[frozenset[str] | None] = frozenset({"supervised", "environments"})

    def __init__(self, epsilon: float = PAPER_EPSILON, steps: int = 20, step_size: float | None = None,
                 autoattack: bool = False, subset: int = 500, flatness_samples: int = 8, batch_size: int = 250,
                 seed: int = 0) -> None:
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        self.steps = check_steps(steps)
        self.step_size = check_positive(step_size, "step_size") if step_size is not None else self.epsilon / 4
        if not isinstance(autoattack, bool):
            raise ConfigError(f"autoattack must be true or false, got {autoattack!r}", field="autoattack")
        self.autoattack = autoattack
        self.subset = check_count(subset, "subset")
        self.flatness_samples = check_count(flatness_samples, "flatness_samples")
        self.batch_size = check_count(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}", field="seed")
        self.seed = seed

    def compute(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Mapping[str, float]:
        chosen = fixed_subset(len(y), self.subset, self.seed)
        device = model_device(model)
        x, y = x[chosen].to(device), y[chosen].to(device)
        check_inputs(x)
        model.eval()
        clean, robust_pgd, robust_aa, flatness = [], [], [], []
        with seeded(self.seed):
            for i in range(0, len(y), self.batch_size):
                bx, by = x[i:i + self.batch_size], y[i:i + self.batch_size]
                with torch.no_grad():
                    clean.append(model(bx).argmax(1) == by)
                adv = pgd(model, bx, by, self.epsilon, self.steps, self.step_size)
                with torch.no_grad():
                    robust_pgd.append(model(adv).argmax(1) == by)
                if self.autoattack:
                    robust_aa.append(self._autoattack(model, bx, by))
                flatness.append(self._flatness(model, bx, by))
        correct = torch.cat(clean)
        survived = torch.cat(robust_pgd)
        out = {"clean_accuracy": _mean(correct), "pgd_accuracy": _mean(survived),
               "energy_flatness": float(torch.cat(flatness).mean()), "robust_examples": float(len(y))}
        if self.autoattack:
            aa = torch.cat(robust_aa)
            out["autoattack_accuracy"] = _mean(aa)
            survived = survived & aa
        out["robust_accuracy"] = _mean(survived & correct)
        return out

    def _autoattack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torchattacks

        with torch.no_grad():
            num_classes = int(model(x[:1]).shape[1])
        if num_classes < 4:
            raise ConfigError(f"autoattack needs at least 4 classes (its targeted DLR loss compares the top 4 "
                              f"logits); this model has {num_classes}: measure PGD only (autoattack: false)",
                              field="autoattack")
        attack = torchattacks.AutoAttack(model, norm="Linf", eps=self.epsilon, version="standard",
                                         n_classes=num_classes, seed=self.seed)
        adv = _run(attack, model, x, y)
        with torch.no_grad():
            survived: torch.Tensor = model(adv).argmax(1) == y
        return survived

    @torch.no_grad()
    def _flatness(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|E(x + d, y) - E(x, y)| per example, averaged over ``flatness_samples`` draws of d ~ U[-eps, eps]."""
        base = joint_energy(model(x), y)
        total = torch.zeros_like(base)
        for _ in range(self.flatness_samples):
            noise = (torch.rand_like(x) * 2 - 1) * self.epsilon
            total += (joint_energy(model((x + noise).clamp(0, 1)), y) - base).abs()
        return total / self.flatness_samples


def _mean(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else float("nan")
