"""Estimator ``fewshot``: build an encoder from the space's ``model`` part (any classifier builder: its last
layer becomes a projection to ``embedding`` dimensions), pair it with the ``learner`` the config names
(``{name: protonet | leadnet | ..., <its options>}``), optionally pre-train the encoder as a classifier of the
base pool's classes, train both episodically on base-pool episodes for ``budget`` episodes, and report
N-way accuracy with its 95% interval on the validation pool's fixed episodes at each of ``shots``.

Metrics: ``accuracy`` / ``accuracy_ci95`` (the task's own K), ``accuracy_<K>shot`` / ``..._ci95`` for every K
of ``shots``; on a multi-concept task also ``accuracy_<concept>`` and, for a learner that weighs concepts per
task (LeadNet), ``concept_mi`` (mutual information, nats, between the labelling concept and argmax_m t_m(c))
and the counts behind it, ``concepts/<concept>/m<j>``; params and FLOPs of the encoder. A pipeline's train
step (trial info ``test``) also scores the novel pool (``test_*``). No novel class is seen in training.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from automl.components import construct
from automl.errors import ConfigError, RegistryError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.registry import resolve_builder
from automl.space.model import Candidate
from automl.tasks.episodic import (
    EVAL_EPISODES,
    EpisodicTask,
    LabelledPool,
    fixed_episodes,
    mean_with_interval,
    sample_episode,
)
from automl.tasks.supervised import ClassificationInfo
from automl.training.fewshot import EpisodicModel, Learner, episode_accuracy, episode_step, learners
from automl.training.fit import Checkpoint, fit
from automl.training.recipe import recipe_from_config
from automl.training.regime import StepOutput
from automl.training.seeding import seeded
from automl.training.streams import generator_state, set_generator_state, tensor_batches
from estimators.cost import model_costs
from estimators.train import training_device

#: the recipe a config's ``train`` part starts from (the LeadNet authors' lr 1e-3, here with Adam)
DEFAULT_RECIPE: Mapping[str, Any] = {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "batch_size": 64}


class EpisodeStream:
    """Endless seeded training episodes of one pool (its position saved in a checkpoint)."""

    def __init__(self, pool: LabelledPool, n_way: int, k_shot: int, n_query: int, seed: int) -> None:
        self.pool, self.shape = pool, (n_way, k_shot, n_query)
        self.rng = np.random.default_rng(seed)

    def next(self) -> Any:
        return sample_episode(self.pool, *self.shape, self.rng)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": generator_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_generator_state(self.rng, state["rng"])


@estimators.register("fewshot")
class FewShotEstimator(Estimator):
    """Options: ``default_episodes`` (training episodes without a budget, 500), ``shots`` (the K of the
    evaluation, [1, 5]), ``eval_episodes`` (1000), ``eval_seed`` (0), ``pretrain_epochs`` (0: the encoder
    starts random), ``device`` (cpu)."""

    families: ClassVar[frozenset[str]] = frozenset({"episodic"})
    uses_regimes: ClassVar[bool] = False

    def __init__(self, default_episodes: int = 500, shots: Sequence[int] = (1, 5), eval_episodes: int = EVAL_EPISODES,
                 eval_seed: int = 0, pretrain_epochs: int = 0, device: str = "cpu") -> None:
        super().__init__()
        for name, value, low in (("default_episodes", default_episodes, 1), ("eval_episodes", eval_episodes, 2),
                                 ("eval_seed", eval_seed, 0), ("pretrain_epochs", pretrain_epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
        if isinstance(shots, (str, bytes)) or not isinstance(shots, Sequence) or not shots or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in shots):
            raise ConfigError(f"shots must be a non-empty list of integers >= 1, got {shots!r}", field="shots")
        self.default_episodes, self.shots = default_episodes, tuple(dict.fromkeys(int(k) for k in shots))
        self.eval_episodes, self.eval_seed, self.pretrain_epochs = eval_episodes, eval_seed, pretrain_epochs
        self.device = training_device(device)

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        task = ctx.require_task(EpisodicTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        info, data, config = task.info, task.load(), candidate.config
        train_cfg: Mapping[str, Any] = config.get("train", {})
        episodes = int(round(budget)) if budget is not None else int(train_cfg.get("episodes", self.default_episodes))
        budget_range = ctx.budget or ctx.space.budget
        horizon = max(episodes, int(round(budget_range.max))) if budget_range is not None else episodes
        dim = config.get("embedding", 64)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"embedding must be an integer >= 1, got {dim!r}", field="embedding")
        with seeded(ctx.trial_seed):
            encoder = resolve_builder(str(ctx.space.builder))(config.get("model", {}),
                                                               ClassificationInfo(info.input_shape, dim))
            costs = model_costs(encoder, task.example_input(), latency=ctx.needs_latency)
            ctx.check_constraints(costs)
            # multi-concept tasks supervise LeadNet's concept term when it has one space per concept
            learner = build_learner(config.get("learner", {"name": "protonet"}), dim)
            supervise = len(info.concepts) > 1 and getattr(learner, "concepts", None) == len(info.concepts)
            model = EpisodicModel(encoder, learner, supervise_concepts=supervise)
            model.to(self.device)
            if self.pretrain_epochs:
                self._pretrain(encoder, data.base, dim, train_cfg)
            stream = EpisodeStream(data.base, info.n_way, info.k_shot, info.n_query, ctx.trial_seed)
            recipe = recipe_from_config(train_cfg, steps=episodes, horizon=horizon, defaults=DEFAULT_RECIPE)
            checkpoint = Checkpoint(ctx.checkpoints, f"{candidate.key}.fewshot.pt") if ctx.checkpoints else None
            run = fit(model, stream, recipe, episode_step, checkpoint=checkpoint, monitor=ctx.phase("training"))
        metrics: dict[str, float] = {"train_seconds": run.seconds, "episodes": episodes,
                                     "episodes_trained": run.trained, "resumed_from_episode": run.resumed_from}
        pools = [("", data.val)] + ([("test_", data.novel)] if ctx.scores_test else [])
        for prefix, pool in pools:
            metrics.update(self.score(model, pool, info.n_way, info.k_shot, info.n_query, info.concepts, prefix))
        model.cpu()
        return Result(metrics=metrics, cost=costs)

    def score(self, model: EpisodicModel, pool: LabelledPool, n_way: int, k_shot: int, n_query: int,
              concepts: Sequence[str], prefix: str = "") -> dict[str, float]:
        """Accuracy with its interval on ``pool``'s fixed episodes at every K of ``shots`` (and the task's)."""
        out: dict[str, float] = {}
        model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.eval_seed)  # 1-shot augmented views: the same for every model
            for k in dict.fromkeys((k_shot, *self.shots)):
                try:
                    episodes = fixed_episodes(pool, n_way, k, n_query, count=self.eval_episodes, seed=self.eval_seed)
                except ConfigError as exc:
                    raise ConfigError(f"{k}-shot evaluation (estimator option shots): {exc.message}",
                                      field="shots") from None
                accuracies, picks = [], []
                for episode in episodes:
                    accuracy, output = episode_accuracy(model, episode)
                    accuracies.append(accuracy)
                    if output.task_concepts is not None:
                        picks += [(episode.concept, int(m)) for m in output.task_concepts.argmax(dim=1).tolist()]
                mean, half = mean_with_interval(accuracies)
                out[f"{prefix}accuracy_{k}shot"], out[f"{prefix}accuracy_{k}shot_ci95"] = mean, half
                if k != k_shot:
                    continue
                out[f"{prefix}accuracy"], out[f"{prefix}accuracy_ci95"] = mean, half
                if len(concepts) > 1:
                    for c, name in enumerate(concepts):
                        chosen = [a for a, e in zip(accuracies, episodes) if e.concept == c]
                        if chosen:
                            out[f"{prefix}accuracy_{name}"] = float(np.mean(chosen))
                    if picks:
                        out.update(concept_counts(picks, concepts, prefix))
        return out

    def _pretrain(self, encoder: nn.Module, pool: LabelledPool, dim: int, train_cfg: Mapping[str, Any]) -> None:
        """Train ``encoder`` with one linear head per concept as a classifier of the base pool's classes."""
        heads = nn.ModuleList(nn.Linear(dim, int(pool.labels(c).max()) + 1) for c in range(pool.n_concepts))
        classifier = _MultiHead(encoder, heads).to(self.device)
        x = pool.x.float().div(255.0) if pool.x.dtype == torch.uint8 else pool.x
        y = pool.y if pool.y.dim() == 2 else pool.y.unsqueeze(1)
        stream = tensor_batches(x.to(self.device), y.to(self.device), int(train_cfg.get("batch_size", 64)))
        recipe = recipe_from_config(train_cfg, steps=self.pretrain_epochs * stream.batches_per_epoch,
                                    defaults=DEFAULT_RECIPE)
        fit(classifier, stream, recipe, _multihead_step)
        encoder.train()


class _MultiHead(nn.Module):
    """An encoder with one classifier head per concept (the batch's labels are ``(n, concepts)``)."""

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList) -> None:
        super().__init__()
        self.encoder, self.heads = encoder, heads



def build_learner(spec: Any, dim: int) -> Learner:
    """The learner a config's ``learner`` part names (``{name: ..., <options>}``), built with its options."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"learner must be a mapping with a 'name' (one of {', '.join(learners.listed_names())}), "
                          f"got {spec!r}", field="learner")
    options = {k: v for k, v in spec.items() if k != "name"}
    try:
        cls = learners.get(spec["name"])
    except RegistryError as exc:
        raise ConfigError(str(exc), field="learner.name") from None
    try:
        return construct(cls, options, kind="learner", name=spec["name"], args=(dim,))
    except ConfigError as exc:
        raise ConfigError(exc.message, field=f"learner.{exc.field}" if exc.field else "learner") from None


def concept_counts(picks: Sequence[tuple[int, int]], concepts: Sequence[str], prefix: str = "") -> dict[str, float]:
    """The table of (labelling concept, chosen concept space) counts, and its mutual information in nats."""
    spaces = max(m for _, m in picks) + 1
    table = np.zeros((len(concepts), spaces))
    for c, m in picks:
        table[c, m] += 1
    out = {f"{prefix}concepts/{name}/m{j}": float(table[i, j]) for i, name in enumerate(concepts)
           for j in range(spaces)}
    out[f"{prefix}concept_mi"] = mutual_information(table)
    return out


def mutual_information(table: np.ndarray) -> float:
    """Mutual information (nats) of the joint distribution a count table gives."""
    joint = table / table.sum()
    rows, cols = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / (rows @ cols)[nonzero])))


def _multihead_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
    """Pre-training's step: the cross-entropy of every concept's head, summed."""
    assert isinstance(model, _MultiHead)
    x, y = batch
    z = model.encoder(x)
    loss = sum(F.cross_entropy(head(z), y[:, c]) for c, head in enumerate(model.heads))
    return StepOutput(terms={"loss": loss})  # type: ignore[dict-item]

