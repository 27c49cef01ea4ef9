"""A trained supernet kept in an artifact store, trained by the first worker that needs it."""
from __future__ import annotations

import io
import time
from functools import lru_cache
from typing import Callable, TypeVar

import torch
from torch import nn

from automl.artifacts import ArtifactStore
from automl.training.seeding import seeded

Net = TypeVar("Net", bound=nn.Module)


def cached_supernet(store: ArtifactStore, name: str, build: Callable[[], Net], train: Callable[[Net], None],
                    seed: int) -> tuple[Net, bool, float]:
    """``(supernet, trained_now, train_seconds)``: loaded from ``store`` under ``name`` when there,
    else built, trained and written. Other workers wait on a lock instead of training it again.
    Initialisation and training follow ``seed`` alone and leave the caller's RNG as it was."""
    with store.lock(name), seeded(seed):
        supernet = build()
        if store.exists(name):
            supernet.load_state_dict(_load_state(store.root, name))
            return supernet.eval(), False, 0.0
        start = time.perf_counter()
        train(supernet)
        seconds = time.perf_counter() - start
        buffer = io.BytesIO()
        torch.save(supernet.state_dict(), buffer)
        store.write_bytes(name, buffer.getvalue())
    _load_state.cache_clear()
    return supernet.eval(), True, seconds


@lru_cache(maxsize=4)
def _load_state(root: str, name: str) -> dict[str, torch.Tensor]:
    """A cached supernet's weights, read once per process (thousands of candidates share them)."""
    state: dict[str, torch.Tensor] = torch.load(io.BytesIO(ArtifactStore(root).read_bytes(name)), weights_only=True)
    return state
