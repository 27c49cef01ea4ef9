"""How far a simulated benchmark's trial had already trained: table look-ups and closed-form functions train
nothing, yet a strategy that continues trials (ASHA promoting with a checkpoint store, PBT) should pay only the
rest of the way, as the ``train`` estimator would. A tiny record of the budget each state reached stands in for
the checkpoint, under the names the ``train`` estimator would use.
"""
from __future__ import annotations

import json

from automl.artifacts import ArtifactStore
from automl.estimator import EvalContext


def _read(store: ArtifactStore, name: str) -> float | None:
    if not store.exists(name):
        return None
    reached = json.loads(store.read_bytes(name)).get("budget")
    return float(reached) if isinstance(reached, (int, float)) else None


def continued_from(ctx: EvalContext, key: str, budget: float) -> float | None:
    """The budget this trial continues from (None: it starts afresh), recording that its state now reaches
    ``budget``. A continuing trial (PBT) starts from its parent's state; with a checkpoint store, a candidate
    continues its own earlier state unless that went past ``budget`` (then, like :func:`automl.training.fit`,
    it trains afresh)."""
    record = json.dumps({"budget": budget}).encode()
    if ctx.continues:
        store = ctx.store()
        parent = ctx.parent_trial
        start = _read(store, ctx.trial_checkpoint(parent) + ".sim") if parent is not None else None
        store.write_bytes(ctx.trial_checkpoint(ctx.trial_number) + ".sim", record)
        return start if start is not None and start <= budget else None
    if ctx.checkpoints is None:
        return None
    name = f"{key}.sim"
    start = _read(ctx.checkpoints, name)
    if start is None or start <= budget:
        ctx.checkpoints.write_bytes(name, record)
    return start if start is not None and start <= budget else None
