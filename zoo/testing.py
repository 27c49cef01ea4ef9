"""A synthetic zoo for tests and benchmarks of the schedule service: real cards and real (randomly
initialised, not pre-trained) weights of small fixed nasoa networks, nominal throughputs instead of
measured ones, and optional synthetic seed experience. Written in about a second, without a search or
any training, so service tests need not wait for ``automl zoo build``.

Nothing here is used by the service itself; a zoo written here is served exactly like a built one.
:func:`wait_until_serving` waits for a service started in a subprocess (tests and benchmarks).
"""
from __future__ import annotations

import io
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoo.card import EXPERIENCE, MANIFEST, Manifest, ModelCard, Zoo, sha256, write_atomic
from zoo.schema import BATCH_SIZE, FROZEN_STAGES, LEARNING_RATES, Experience, Schedule, TaskMeta

#: The networks of a synthetic zoo, cycled through (small: a few thousand parameters each).
CONFIGS: tuple[dict[str, Any], ...] = (
    {"base_channels": 8, "block": {"n_ops": 2, "op1": "conv3x3", "width1": 1, "op2": "conv1x1", "skip2": "none"},
     "stages": [{"pattern": "1"}, {"pattern": "2"}]},
    {"base_channels": 12, "block": {"n_ops": 2, "op1": "conv3x3_g2", "width1": 2, "op2": "conv3x3", "skip2": "a02"},
     "stages": [{"pattern": "1"}, {"pattern": "21"}, {"pattern": "2"}]},
)
#: Nominal training throughput (samples/s) with 0, 1, 2 frozen stages, scaled per model below.
NOMINAL_SAMPLES_PER_S: tuple[float, ...] = (2000.0, 2600.0, 3200.0)


def synthetic_zoo(out: str | Path, models: int = 2, seed_experience: int = 0, seed: int = 0) -> Zoo:
    """Write a zoo of ``models`` small nasoa networks to ``out`` (with ``seed_experience`` synthetic
    fine-tuning records: accuracy from the probe score, seconds 1.0-1.5x the analytic estimate) and load it."""
    import torch

    from automl.tasks.supervised import ClassificationInfo
    from estimators.cost import count_flops, count_params
    from search_spaces.nasoa import arch_encoding, build_nasoa_net

    out = Path(out)
    shape, source_classes = (1, 8, 8), 5
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    for index in range(models):
        config = CONFIGS[index % len(CONFIGS)]
        model_id = f"nasoa-{index}"
        torch.manual_seed(seed * 1000 + index)
        net = build_nasoa_net(config, ClassificationInfo(shape, source_classes))
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        weights = models_dir / f"{model_id}.pt"
        write_atomic(weights, buffer.getvalue())
        scale = 1.0 / (1 + index)
        card = ModelCard(
            id=model_id, arch=arch_encoding(config), config=config, num_stages=len(net.stages),
            feature_dim=net.feature_dim, input_channels=shape[0], min_input_size=2 ** (len(net.stages) - 1),
            params=count_params(net), flops=count_flops(net, torch.zeros(1, *shape)),
            train_samples_per_s={f: NOMINAL_SAMPLES_PER_S[f] * scale for f in FROZEN_STAGES if f <= len(net.stages)},
            throughput_batch_size=BATCH_SIZE, throughput_input_hw=shape[1], source_task="digits-source",
            source_accuracy=0.9 - 0.05 * index, pretrain_epochs=0, weights=weights.name, weights_sha256=sha256(weights))
        write_atomic(models_dir / f"{model_id}.json", card.model_dump_json(indent=2))
        ids.append(model_id)
    manifest = Manifest(source_task="digits-source", models=ids,
                        build={"synthetic": True, "source_classes": source_classes})
    write_atomic(out / MANIFEST, manifest.model_dump_json(indent=2))
    (out / EXPERIENCE).unlink(missing_ok=True)
    zoo = Zoo.load(out)
    if seed_experience:
        rows = synthetic_experience(zoo, seed_experience, seed)
        write_atomic(out / EXPERIENCE, "".join(r.model_dump_json() + "\n" for r in rows))
        zoo = Zoo.load(out)
    return zoo


def synthetic_experience(zoo: Zoo, count: int, seed: int = 0) -> list[Experience]:
    """``count`` plausible fine-tuning records on random 1x8x8 tasks (deterministic for ``seed``)."""
    from zoo.features import estimated_seconds

    rng = np.random.default_rng([seed, 11])
    cards = list(zoo)
    rows = []
    for _ in range(count):
        card = cards[int(rng.integers(len(cards)))]
        probes = {c.id: round(float(rng.uniform(0.3, 0.9)), 3) for c in cards}
        classes = int(rng.integers(2, 6))
        task = TaskMeta(name="synthetic", num_classes=classes, num_samples=int(rng.integers(50, 400)),
                        input_shape=(1, 8, 8), probe_scores=probes)
        frozen = int(rng.choice([f for f in FROZEN_STAGES if f <= card.num_stages]))
        schedule = Schedule(model_id=card.id, lr=float(rng.choice(LEARNING_RATES)), frozen_stages=frozen,
                            epochs=int(round(math.exp(rng.uniform(0, math.log(20))))), batch_size=BATCH_SIZE)
        accuracy = min(1.0, probes[card.id] + 0.05 * math.log2(schedule.epochs) / 5 - 0.02 * frozen)
        seconds = estimated_seconds(card, task, frozen, schedule.epochs) * float(rng.uniform(1.0, 1.5))
        rows.append(Experience(task=task, schedule=schedule, accuracy=accuracy, seconds=seconds))
    return rows


def wait_until_serving(url: str, proc: subprocess.Popen[Any], log: Path, timeout_s: float = 120.0,
                       path: str = "/health") -> None:
    """Poll ``url + path`` until it answers 200 (a service just started in ``proc``, logging to ``log``);
    raise RuntimeError with the log's tail if the process exits first or ``timeout_s`` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service at {url} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service at {url} did not answer {path} within {timeout_s:g} s: {log.read_text()[-2000:]}")
