"""Costs computable from a built model alone: parameters, FLOPs (torch's own counter), latency. Each
runs the model on a task's example input (:meth:`automl.tasks.base.Task.example_input`), whatever
form that input takes (image tensors, token ids)."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _run(model: nn.Module, example: Any) -> Any:
    return model(*example) if isinstance(example, tuple) else model(example)


def count_flops(model: nn.Module, example: Any) -> int:
    """FLOPs of one forward pass on ``example`` (a batch of one), counted by ``torch.utils.flop_counter``."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _run(model, example)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_latency_ms(model: nn.Module, example: Any, repeats: int = 20) -> float:
    """Median wall-clock milliseconds of a batch-1 forward pass on CPU (after two warm-up runs)."""
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            _run(model, example)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def model_costs(model: nn.Module, example: Any, *, latency: bool) -> dict[str, float]:
    """Params, FLOPs and (when asked) latency on ``example``, an input of batch size 1."""
    costs: dict[str, float] = {"params": count_params(model), "flops": count_flops(model, example)}
    if latency:
        costs["latency_ms"] = measure_latency_ms(model, example)
    return costs
