"""Costs computable from a built model alone: parameters, FLOPs (torch's own counter), latency."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...], example: torch.Tensor | None = None) -> int:
    """FLOPs of one forward pass on one sample (``example``, else zeros of ``input_shape``), counted
    by ``torch.utils.flop_counter``."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example if example is not None else torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 20,
                       example: torch.Tensor | None = None) -> float:
    """Median wall-clock milliseconds of a batch-1 forward pass on CPU (after two warm-up runs)."""
    model.eval()
    x = example if example is not None else torch.zeros(1, *input_shape)
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            model(x)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def model_costs(model: nn.Module, input_shape: tuple[int, ...], *, latency: bool,
                example: torch.Tensor | None = None) -> dict[str, float]:
    """Params, FLOPs and (when asked) latency; ``example`` is a batch-1 input for models that do not
    take float tensors (e.g. token ids)."""
    costs: dict[str, float] = {"params": count_params(model), "flops": count_flops(model, input_shape, example)}
    if latency:
        costs["latency_ms"] = measure_latency_ms(model, input_shape, example=example)
    return costs
