"""The episodic (few-shot) family's contract: N-way K-shot episodes drawn from disjoint class pools.

An episodic task's data is three labelled pools whose classes do not overlap: ``base`` (learners train
on episodes from it), ``val`` (model selection) and ``novel`` (the final evaluation). An episode picks
``n_way`` classes of one pool and, per class, ``k_shot`` support and ``n_query`` query examples,
relabelled ``0..n_way-1`` in the order the classes were drawn. Evaluation runs over a fixed, seeded set
of episodes (1,000 by default) and reports the mean accuracy with its 95% confidence interval
(``1.96 * std / sqrt(episodes)`` with numpy's population std, as FEAT/LeadNet's
``compute_confidence_interval`` reports it).

A *multi-concept* pool (LeadNet's ambiguous setting) labels every example by several concepts at once
(colour, shape, ...): ``y`` is then ``(examples, concepts)`` and an episode first draws the concept its
labels follow. Class ids are unique across concepts, so pools are disjoint in (concept, value) classes.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import Task, TaskInfo

#: episodes in the default fixed evaluation set
EVAL_EPISODES = 1000


@dataclass(frozen=True)
class EpisodicInfo(TaskInfo):
    """What an encoder builder needs (the input shape) and the episode shape the task evaluates with."""

    input_shape: tuple[int, ...]
    n_way: int
    k_shot: int
    n_query: int
    #: the concepts an episode's labels can follow (one, ``("class",)``, for ordinary few-shot data)
    concepts: tuple[str, ...] = ("class",)

    def __post_init__(self) -> None:
        for name in ("n_way", "k_shot", "n_query"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1 or (name == "n_way" and value < 2):
                raise ConfigError(f"{name} must be an integer >= {2 if name == 'n_way' else 1}, got {value!r}",
                                  field=name)


@dataclass(frozen=True)
class LabelledPool:
    """Examples ``x`` with their original class ids ``y``: ``(examples,)``, or ``(examples, concepts)`` for a
    multi-concept pool (a pool's classes are all those ids)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"a pool needs as many labels as examples, got {len(self.x)} and {len(self.y)}")
        if self.y.dim() not in (1, 2):
            raise ValueError(f"a pool's labels are (examples,) or (examples, concepts), got {tuple(self.y.shape)}")

    @property
    def n_concepts(self) -> int:
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])

    def labels(self, concept: int = 0) -> torch.Tensor:
        """The class ids of every example under ``concept``."""
        return self.y if self.y.dim() == 1 else self.y[:, concept]

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(int(c) for c in torch.unique(self.y).tolist())

    def counts(self, concept: int = 0) -> dict[int, int]:
        values, counts = torch.unique(self.labels(concept), return_counts=True)
        return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist())}

    def usable_concepts(self, n_way: int, k_shot: int, n_query: int) -> tuple[int, ...]:
        """The concepts with at least ``n_way`` classes of ``k_shot + n_query`` examples."""
        return tuple(c for c in range(self.n_concepts)
                     if sum(n >= k_shot + n_query for n in self.counts(c).values()) >= n_way)


@dataclass(frozen=True)
class EpisodicData:
    """The three class-disjoint pools (checked on construction)."""

    base: LabelledPool
    val: LabelledPool
    novel: LabelledPool

    def __post_init__(self) -> None:
        pools = {"base": set(self.base.classes), "val": set(self.val.classes), "novel": set(self.novel.classes)}
        for a, b in (("base", "val"), ("base", "novel"), ("val", "novel")):
            shared = pools[a] & pools[b]
            if shared:
                raise ConfigError(f"the {a} and {b} pools share classes {sorted(shared)}: few-shot pools must be "
                                  f"disjoint")

    def pool(self, name: str) -> LabelledPool:
        if name not in ("base", "val", "novel"):
            raise ConfigError(f"unknown pool {name!r}; expected base, val or novel")
        pool: LabelledPool = getattr(self, name)
        return pool


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot episode: support and query examples labelled ``0..n_way-1``; ``classes[i]`` is the
    pool's class id of label ``i``."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: tuple[int, ...]
    #: the concept the labels follow (0 for a single-concept pool)
    concept: int = 0


def check_pool(pool: LabelledPool, n_way: int, k_shot: int, n_query: int, name: str = "pool") -> None:
    """Raise a ConfigError when ``pool`` cannot give ``n_way``-way episodes of ``k_shot + n_query`` per class
    (under any of its concepts)."""
    if not pool.usable_concepts(n_way, k_shot, n_query):
        usable = max(sum(n >= k_shot + n_query for n in pool.counts(c).values()) for c in range(pool.n_concepts))
        raise ConfigError(f"the {name} pool has {usable} classes with at least {k_shot + n_query} examples "
                          f"(k_shot + n_query); {n_way}-way episodes need {n_way}")


def sample_episode(pool: LabelledPool, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator) -> Episode:
    """An episode of ``pool`` drawn with ``rng``: the concept first (of a multi-concept pool, among those
    that can give the episode), then the classes, then per class its examples."""
    concepts = pool.usable_concepts(n_way, k_shot, n_query)
    if not concepts:
        check_pool(pool, n_way, k_shot, n_query)
    concept = int(concepts[int(rng.integers(len(concepts)))]) if pool.n_concepts > 1 else 0
    counts = pool.counts(concept)
    usable = np.array(sorted(c for c, n in counts.items() if n >= k_shot + n_query))
    classes = tuple(int(c) for c in rng.choice(usable, size=n_way, replace=False))
    labels = pool.labels(concept).numpy()
    support, query = [], []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        chosen = rng.choice(members, size=k_shot + n_query, replace=False)
        support.append(chosen[:k_shot])
        query.append(chosen[k_shot:])
    s_index = torch.from_numpy(np.concatenate(support))
    q_index = torch.from_numpy(np.concatenate(query))
    return Episode(support_x=_as_float(pool.x[s_index]), support_y=torch.arange(n_way).repeat_interleave(k_shot),
                   query_x=_as_float(pool.x[q_index]), query_y=torch.arange(n_way).repeat_interleave(n_query),
                   classes=classes, concept=concept)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Images a loader keeps as ``uint8`` (a real dataset in memory at a quarter of the size) in [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def fixed_episodes(pool: LabelledPool, n_way: int, k_shot: int, n_query: int, *, count: int = EVAL_EPISODES,
                   seed: int = 0) -> list[Episode]:
    """The fixed evaluation set: ``count`` episodes drawn from ``seed`` (the same for every model)."""
    check_pool(pool, n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    return [sample_episode(pool, n_way, k_shot, n_query, rng) for _ in range(count)]


def mean_with_interval(accuracies: Sequence[float]) -> tuple[float, float]:
    """Mean accuracy over episodes and the half-width of its 95% confidence interval."""
    values = np.asarray(accuracies, dtype=float)
    if values.size == 0:
        raise ValueError("no episodes to average")
    return float(values.mean()), float(1.96 * values.std() / math.sqrt(values.size))


class EpisodicTask(Task):
    """Base class of few-shot tasks (register with ``@tasks.register(name)``)."""

    family: ClassVar[str] = "episodic"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "accuracy_ci95": "min"}

    @property
    @abstractmethod
    def info(self) -> EpisodicInfo: ...

    @abstractmethod
    def load(self) -> EpisodicData: ...

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, *self.info.input_shape)

    def check(self) -> None:
        """Every pool can give the task's episodes."""
        data, info = self.load(), self.info
        for name in ("base", "val", "novel"):
            check_pool(data.pool(name), info.n_way, info.k_shot, info.n_query, name)
