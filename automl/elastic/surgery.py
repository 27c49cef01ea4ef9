"""Module surgery on supernets and their extracted sub-networks: re-estimating batch-norm statistics
after weights were inherited, and swapping extracted layers into a model the builder built."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _default_forward(module: nn.Module) -> Callable[[Any], Any]:
    def run(batch: Any) -> Any:
        if isinstance(batch, (tuple, list)):  # (inputs, targets) from a DataLoader
            batch = batch[0]
        return module(batch)

    return run


def recalibrate_batchnorm(module: nn.Module, batches: Iterable[Any],
                          forward: Callable[[Any], Any] | None = None) -> int:
    """Re-estimate the running statistics of every batch norm in ``module`` from ``batches``.

    Each batch norm (plain or :class:`ElasticBatchNorm2d`) that tracks running statistics is reset and
    then estimates them as the *cumulative* average (``momentum=None``) over the batches: with the same
    batches it ends with the statistics a freshly reset batch norm would estimate. ``forward(batch)``
    runs the forward pass for one batch (e.g. ``lambda xb: supernet(xb, config)``); by default it is
    ``module(batch)`` (``module(batch[0])`` for an ``(inputs, targets)`` pair).

    Only the batch norms are put in training mode (dropout and the like keep their mode, so the
    statistics are those the network sees at inference); the passes run without gradients, and every
    module's mode and momentum are restored afterwards. For a supernet this resets the statistics of
    every channel and block, so recalibrate for the sub-network you are about to evaluate.
    Returns the number of batches used (0 when there is no batch norm to recalibrate: then nothing
    runs); raises ``ValueError`` if ``batches`` is empty.
    """
    run = forward if forward is not None else _default_forward(module)
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    saved = [(m, m.training, m.momentum) for m in norms]
    count = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train(True)
        with torch.no_grad():
            for batch in batches:
                run(batch)
                count += 1
    finally:
        for m, training, momentum in saved:
            m.momentum = momentum
            m.train(training)
    if count == 0:
        raise ValueError("recalibrate_batchnorm needs at least one batch; got none "
                         "(the running statistics were reset)")
    return count


def substitute_layers(model: nn.Sequential, replacements: Iterable[nn.Module], *, owner: str = "extract") -> None:
    """Replace, in order, the layers of ``model`` that hold weights or buffers by ``replacements``.

    For an ``extract`` that builds the stand-alone model with the builder itself (so its structure is
    the builder's by construction) and then swaps in the layers extracted from the supernet. Each
    replacement must have the replaced layer's type and state_dict keys and shapes, so the model's
    state_dict keys and shapes do not change; a mismatch (the builder changed) raises RuntimeError.
    """
    pending = iter(replacements)
    for index, layer in enumerate(model):
        if next(iter(layer.state_dict()), None) is None:  # no weights, no buffers: keep it
            continue
        new = next(pending, None)
        theirs = {k: v.shape for k, v in layer.state_dict().items()}
        ours = None if new is None else {k: v.shape for k, v in new.state_dict().items()}
        if new is None or type(new) is not type(layer) or ours != theirs:
            raise RuntimeError(f"{owner}: layer {index} of the built model ({layer}) does not match the "
                               f"supernet's ({new}): did the builder change?")
        model[index] = new
    extra = next(pending, None)
    if extra is not None:
        raise RuntimeError(f"{owner}: the built model has fewer weighted layers than the supernet "
                           f"(left over: {extra}): did the builder change?")
