"""Estimator ``biws``: Bi-branch Weight-Sharing (AutoBERT-Zero) -- score a backbone by inherited weights.

The space's supernet (for ``autobert``: per layer an attention branch with shared Q/K/V/O and a
convolution branch whose kernels share the largest one) is pre-trained once with masked-LM on the
task's corpus, one uniformly sampled backbone per step, and cached in the artifact store under a key
of space + corpus + seed + training options. A candidate inherits its weights, is fine-tuned briefly
and scored on the downstream task (``score="accuracy"``) or on held-out masked-LM (``score="mlm"``).
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any, ClassVar, Mapping

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.space.model import Candidate, SearchSpace
from automl.supernet import find_supernet
from automl.tasks.text import TextTask
from automl.training.fit import Checkpoint
from estimators.supernet_cache import cached_supernet
from estimators.text_task import backbone_costs, check_score, train_and_score, trial_data
from estimators.text_training import pretrain_mlm, text_recipe


@estimators.register("biws")
class BIWSEstimator(Estimator):
    """Options: ``pretrain_steps`` (2000), ``finetune_steps`` (200), ``batch_size`` (32), ``lr`` (1e-3,
    pre-training), ``finetune_lr`` (2e-3), ``score`` (``accuracy`` | ``mlm``), ``store`` (default the
    study's checkpoint store), ``checkpoint_s`` (seconds between checkpoints of the pre-training, 60: a
    killed search continues it from the last one). The defaults are a choice measured on ``synthetic-text``
    with a 2-core CPU: with 150 steps at 5e-4 every backbone stayed at chance; 200 steps at 2e-3 spread them
    from 0.80 to 0.99."""

    families: ClassVar[frozenset[str]] = frozenset({"text"})

    def __init__(self, pretrain_steps: int = 2000, finetune_steps: int = 200, batch_size: int = 32, lr: float = 1e-3,
                 finetune_lr: float = 2e-3, score: str = "accuracy", store: str | None = None,
                 checkpoint_s: float = 60.0) -> None:
        super().__init__()
        if pretrain_steps < 1 or finetune_steps < 0 or batch_size < 1 or lr <= 0 or finetune_lr <= 0:
            raise ConfigError("biws: pretrain_steps and batch_size must be >= 1, finetune_steps >= 0, lr > 0")
        if not checkpoint_s > 0:
            raise ConfigError(f"biws: checkpoint_s must be > 0, got {checkpoint_s}", field="checkpoint_s")
        self.checkpoint_s = float(checkpoint_s)
        self.pretrain = text_recipe(int(pretrain_steps), int(batch_size), float(lr))
        self.finetune = text_recipe(int(finetune_steps), int(batch_size), float(finetune_lr))
        self.score = check_score(score, "biws")
        self.store = store

    def cache_key(self, space: SearchSpace, task: TextTask, seed: int) -> str:
        pretrain = {"steps": self.pretrain.steps, "batch_size": self.pretrain.batch_size, "lr": self.pretrain.lr,
                    "weight_decay": self.pretrain.weight_decay, "warmup": 0.1}
        blob = json.dumps({"space": space.fingerprint, "task": space.task, "corpus": task.fingerprint(), "seed": seed,
                           "pretrain": pretrain}, sort_keys=True, default=str)
        return f"biws-{space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.pt"

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = ctx.require_task(TextTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        factory = find_supernet(str(space.builder))
        if factory is None:
            raise ConfigError(f"builder {space.builder!r} has no supernet, which the biws estimator needs",
                              source=space.source)
        data = trial_data(task, ctx)
        store = ctx.store(self.store)
        name = self.cache_key(space, task, ctx.seed)
        resumed = [0]

        def train(net: Any) -> None:
            run = pretrain_mlm(net, data, task.info, self.pretrain, ctx.seed,
                               sample_path=lambda rng: _model_part(space.sample(rng)),
                               checkpoint=Checkpoint(store, f"{name}.partial", every_s=self.checkpoint_s, keep=False),
                               monitor=ctx.phase("supernet pre-training"))
            resumed[0] = run.resumed_from

        supernet, trained_now, train_seconds = cached_supernet(
            store, name, lambda: factory(space, task.info), train, ctx.seed)
        start = time.perf_counter()
        model = supernet.extract(_model_part(candidate.config))
        costs = backbone_costs(model, task, ctx)
        metrics = train_and_score(model, data, task.info, self.score, self.finetune, ctx.trial_seed, ctx)
        metrics.update(eval_seconds=time.perf_counter() - start, supernet_train_seconds=train_seconds,
                       supernet_cached=float(not trained_now), supernet_resumed_from_step=float(resumed[0]))
        ctx.keep_model(model, candidate, recipe=self.finetune.as_dict(), metrics=metrics, estimator="biws")
        return Result(metrics=metrics, cost=costs)


def _model_part(config: Mapping[str, Any]) -> Mapping[str, Any]:
    model: Mapping[str, Any] = config.get("model", config)
    return model
