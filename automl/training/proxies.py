"""Zero-cost proxies: scores of an untrained network, from one minibatch, that predict how well it trains
(Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS"; NASLib's definitions). Larger is
predicted better for every score. Each works on a deep copy, so the model passed in is left untouched.

* :func:`synflow`: sum over conv/linear weights of ``|w * dR/dw|``, where ``R`` is the sum of the outputs of
  the network with every parameter replaced by its absolute value, batch norm bypassed, on an all-ones
  input of batch one, in double precision (no data needed; NASLib's ``synflow`` with ``bn=False``).
* :func:`snip`: sum of ``|w * dL/dw|`` (the gradient of the loss w.r.t. a multiplicative weight mask at 1)
  for the cross-entropy ``L`` of the minibatch, batch norm in training mode.
* :func:`grad_norm`: sum over conv/linear layers of the L2 norm of ``dL/dw``.
* :func:`jacob_cov`: ``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues ``v`` of the correlation
  matrix of the per-example input gradients of the summed outputs, ``k = 1e-5`` (NASWOT's score as NASLib
  computes it). Where NASLib returns NaN (an example whose input gradient is constant, e.g. a network whose
  output ignores its input), this returns the score of a rank-one correlation matrix, the lowest a
  batch can get, so a degenerate network ranks last instead of failing.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

#: jacob_cov's regulariser of the eigenvalues (NASLib's ``k``)
JACOB_COV_K = 1e-5
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def scored_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights the proxies score: convolutions and linear layers (NASLib's choice)."""
    return [m for m in model.modules() if isinstance(m, (_ConvNd, nn.Linear))]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [w for m in scored_layers(model) if isinstance(w := getattr(m, "weight", None), torch.Tensor)]


def _without_batchnorm(model: nn.Module) -> None:
    """Replace every batch-norm layer of ``model`` by the identity, in place (synflow's ``bn=False``)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(module, child_name, nn.Identity())


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss) -> nn.Module:
    """A training-mode copy of ``model`` after one backward pass of ``loss`` on ``(x, y)``."""
    net = copy.deepcopy(model).to(x.device).train()
    net.zero_grad()
    loss(net(x), y).backward()  # type: ignore[no-untyped-call]
    return net


def synflow(model: nn.Module, example: torch.Tensor) -> float:
    """SynFlow of ``model`` for inputs shaped like one example of ``example`` (a batch; only its shape is
    used): data-free, deterministic given the weights."""
    net = copy.deepcopy(model).to(example.device).double()
    _without_batchnorm(net)
    net.eval()  # batch norm is gone; this only switches dropout off (NASLib's cells have none)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.zero_grad()
    ones = torch.ones((1, *example.shape[1:]), dtype=torch.float64, device=example.device)
    net(ones).sum().backward()
    return _total(float((w * w.grad).detach().abs().sum()) for w in _weights(net) if w.grad is not None)


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss = F.cross_entropy) -> float:
    """SNIP connection sensitivity of ``model`` on the minibatch ``(x, y)``."""
    net = _loss_gradients(model, x, y, loss)
    return _total(float((w * w.grad).detach().abs().sum()) for w in _weights(net) if w.grad is not None)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss = F.cross_entropy) -> float:
    """The summed per-layer L2 norms of the loss gradient of ``model`` on the minibatch ``(x, y)``."""
    net = _loss_gradients(model, x, y, loss)
    return _total(float(w.grad.detach().norm()) for w in _weights(net) if w.grad is not None)


def jacob_cov(model: nn.Module, x: torch.Tensor, k: float = JACOB_COV_K) -> float:
    """The Jacobian-covariance score of ``model`` on the inputs ``x`` (a batch of at least two)."""
    if x.shape[0] < 2:
        raise ValueError(f"jacob_cov needs a batch of at least 2 examples, got {x.shape[0]}")
    net = copy.deepcopy(model).to(x.device).train()
    inputs = x.detach().clone().requires_grad_(True)
    out = net(inputs)
    out.backward(torch.ones_like(out))
    grad = inputs.grad
    jacobian = (grad if grad is not None else torch.zeros_like(inputs)).reshape(x.shape[0], -1)
    return correlation_score(jacobian.double().cpu().numpy(), k)


def correlation_score(rows: np.ndarray, k: float = JACOB_COV_K) -> float:
    """``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues of the correlation matrix of ``rows``; a row
    with no variance (its correlations undefined) gives the rank-one score, the lowest possible."""
    n = rows.shape[0]
    centred = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    if not np.all(norms > 1e-12 * max(1.0, float(np.abs(rows).max()))):
        eigenvalues = np.zeros(n)
        eigenvalues[0] = n  # a correlation matrix's eigenvalues sum to n; rank one puts them all in one
    else:
        unit = centred / norms[:, None]
        eigenvalues = np.clip(np.linalg.eigvalsh(unit @ unit.T), 0.0, None)
    return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def _total(values: Iterable[float]) -> float:
    return float(math.fsum(values))
