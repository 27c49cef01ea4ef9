"""A classifier read as an energy model (JEM, JEAT): with logits f(x), the joint energy is
E(x, y) = -f(x)[y] and the marginal energy E(x) = -logsumexp_y f(x)[y], so CE(x, y) = E(x, y) - E(x).

Adversarial training and generation both move inputs along these energies' gradients; this module
holds the energies and the Langevin step they share (the JEAT regime, ``automl generate``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -f(x)[y], one value per row of ``logits``."""
    return -logits.gather(1, y.view(-1, 1)).squeeze(1)


def marginal_energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -logsumexp_y f(x)[y], one value per row of ``logits``."""
    return -torch.logsumexp(logits, dim=1)


def energy_gradient(model: nn.Module, x: torch.Tensor,
                    energy: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d/dx of ``energy(model(x)).sum()`` at ``x`` (the model's parameters get no gradient)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = energy(model(x)).sum()
        (grad,) = torch.autograd.grad(value, x)
    return grad.detach()


def langevin_step(model: nn.Module, x: torch.Tensor, energy: Callable[[torch.Tensor], torch.Tensor],
                  step_size: float, noise: float, low: float | None = None, high: float | None = None) -> torch.Tensor:
    """One SGLD step as JEM implements it: x - step_size * dE/dx + noise * N(0, I) (noise 0: plain energy
    descent), clamped to ``[low, high]`` when given. The noise comes from torch's global RNG."""
    out = x - step_size * energy_gradient(model, x, energy)
    if noise > 0:
        out = out + noise * torch.randn_like(out)
    if low is not None or high is not None:
        out = out.clamp(low, high)
    return out.detach()
