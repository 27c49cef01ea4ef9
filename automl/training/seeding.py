"""The one seeding policy: every training run isolates and seeds torch's global RNG through
:func:`seeded`, so a score depends on its seed alone, never on what the worker ran before."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

#: spreads trial numbers apart inside one study seed: trial ``n`` of study seed ``s`` trains with seed
#: ``s * TRIAL_STRIDE + n`` (a prime, so neighbouring studies' trial seeds do not collide for n < stride)
TRIAL_STRIDE = 100_003


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial's training (model initialisation, batch order, dropout)."""
    return int(study_seed) * TRIAL_STRIDE + int(trial_number)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global RNG (CPU, and CUDA when present) seeded by ``seed``; the RNG
    state the caller had is restored afterwards, whatever the block did or raised."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
