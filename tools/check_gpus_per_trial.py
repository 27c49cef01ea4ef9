"""The real-GPU check of ``--gpus-per-trial`` (run it where a CUDA GPU is at hand; about a minute):

    OMP_NUM_THREADS=1 python tools/check_gpus_per_trial.py

1. A trial's own process sees only the ``CUDA_VISIBLE_DEVICES`` it is given, even after this process has
   initialised CUDA: a child told ``CUDA_VISIBLE_DEVICES=`` sees no GPU.
2. Two trials with K=0.5 on two worker processes share one GPU: each reports torch's current device, its
   name and how many devices it sees (1), trains a step on ``device: auto`` (cuda:0 of what it sees), and the
   ledger records the device it ran on.
Prints one JSON line per check and ``ok`` at the end; exits 1 on the first failed check.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any


def visible_count() -> int:
    import torch

    return int(torch.cuda.device_count())


def gpu_trial(config: dict[str, Any]) -> dict[str, float]:
    """What the trial's process sees, and one training step on the estimators' ``device: auto``."""
    import torch

    from estimators.train import training_device

    device = training_device("auto")
    model = torch.nn.Linear(8, 1).to(device)
    loss = model(torch.randn(32, 8, device=device)).pow(2).mean()
    loss.backward()
    print(json.dumps({"trial_process": os.getpid(), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "visible_count": torch.cuda.device_count(), "current_device": torch.cuda.current_device(),
                      "name": torch.cuda.get_device_name(torch.cuda.current_device()), "auto": str(device)}),
          flush=True)
    return {"loss": float(loss), "visible_count": torch.cuda.device_count(),
            "on_cuda": float(device.type == "cuda" and next(model.parameters()).is_cuda)}


def main() -> int:
    import torch

    import automl
    from automl.executors import ProcessExecutor
    from automl.executors.devices import detect_devices
    from automl.executors.isolation import Limits, run_isolated

    inventory = detect_devices()
    print(json.dumps({"inventory": list(inventory.ids), "source": inventory.source}), flush=True)
    if not inventory.ids:
        print("no CUDA GPU here: nothing to check", file=sys.stderr)
        return 1
    torch.cuda.init()  # the driver's own CUDA must not leak into the trials' processes
    hidden = run_isolated(visible_count, (), Limits(), env={"CUDA_VISIBLE_DEVICES": ""})
    shown = run_isolated(visible_count, (), Limits(), env={"CUDA_VISIBLE_DEVICES": inventory.ids[0]})
    print(json.dumps({"check": "env before CUDA init", "parent_sees": torch.cuda.device_count(),
                      "child_hidden_sees": hidden, "child_one_sees": shown}), flush=True)
    if hidden != 0 or shown != 1:
        return 1

    space = automl.space_from_yaml("name: gpu-check\nobjectives: {loss: min}\nspace:\n"
                                   "  x: {type: float, low: 0.0, high: 1.0}\n")
    study = automl.create_study(space, strategy="random", seed=0)
    executor = ProcessExecutor(2, threads=1)
    try:
        study.optimize(gpu_trial, n_trials=2, executor=executor, gpus_per_trial=0.5)
    finally:
        executor.shutdown()
    rows = [{"trial": t.number, "state": t.state.value, "devices": t.info.get("devices"), "error": t.error,
             **{k: t.metrics.get(k) for k in ("visible_count", "on_cuda")}} for t in study.trials]
    print(json.dumps({"check": "2 trials, K=0.5", "trials": rows}), flush=True)
    good = all(r["state"] == "complete" and r["devices"] == [inventory.ids[0]] and r["visible_count"] == 1
               and r["on_cuda"] == 1.0 for r in rows)
    print("ok" if good else "FAILED", flush=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
