"""Operation-priority evolution (OP-NAS, AutoBERT-Zero): aging evolution whose mutations draw new graph
operations by a UCB priority learnt from the evaluated models.

Per primitive op ``o`` the strategy keeps ``n_o`` (evaluated models containing ``o`` in any node of any
graph parameter) and ``r̄_o`` (their mean normalised reward); with ``N`` evaluated models the priority
is ``u_o = r̄_o + c·√(2 ln N / n_o)`` (an op never evaluated has ``u_o = +inf``: it is tried first), and
a mutated node gets op ``o`` with probability ``softmax(u_o / T)`` over the ops of the arity it needs.
Everything is recomputed from the observations told, so a resumed study proposes what an
uninterrupted one would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from automl.errors import ConfigError
from automl.space.graph import Graph
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, TrialState, strategies
from automl.strategies.evolution import RegularizedEvolution

NORMALISATIONS = ("rank", "minmax", "none")
VALID_TRIES = 10  # mutations tried before a parent's mutation is rejected as invalid


@dataclass(frozen=True)
class OpPriority:
    """One op's statistics: ``mean`` and ``ucb`` are None while the op is unseen (``n == 0``)."""

    n: int
    mean: float | None
    ucb: float | None
    p: float

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "ucb": self.ucb, "p": self.p}


def normalise(rewards: Sequence[float], how: str) -> np.ndarray:
    """Rewards mapped so that c and T mean the same on any metric scale.

    ``rank``: the reward's quantile among the evaluated models, in [0, 1] (ties share their mean
    rank; robust to outliers such as a diverged run). ``minmax``: (r - min) / (max - min). ``none``:
    the raw reward. A single model (or all equal) normalises to 0.5.
    """
    r = np.asarray(rewards, dtype=float)
    if how == "none":
        return r
    if len(r) < 2 or np.ptp(r) == 0:
        return np.full(len(r), 0.5)
    normalised: np.ndarray
    if how == "rank":
        normalised = (rankdata(r, method="average") - 1.0) / (len(r) - 1)
        return normalised
    if how == "minmax":
        normalised = (r - r.min()) / np.ptp(r)
        return normalised
    raise ValueError(f"unknown normalisation {how!r}; expected one of {NORMALISATIONS}")


def softmax_priorities(ucbs: Sequence[float | None], temperature: float) -> np.ndarray:
    """softmax(u / T); unseen ops (u None, i.e. +inf) share all the mass, so they are tried first."""
    unseen = np.array([u is None for u in ucbs])
    priorities: np.ndarray
    if unseen.any():
        priorities = unseen / unseen.sum()
        return priorities
    z = np.array(ucbs, dtype=float) / temperature
    w = np.exp(z - z.max())
    priorities = w / w.sum()
    return priorities


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def op_priorities(models: Sequence[tuple[float, frozenset[str]]], arity: Mapping[str, int], c: float,
                  temperature: float, normalisation: str) -> dict[str, OpPriority]:
    """Per-op count, mean normalised reward, UCB priority and draw probability, from ``models`` =
    (reward, set of ops it contains) for every evaluated model. ``p`` is the probability that a
    mutated node of the op's arity gets that op (a softmax within each arity)."""
    rewards = normalise([r for r, _ in models], normalisation)
    total = len(models)
    stats: dict[str, tuple[int, float | None, float | None]] = {}
    for op in arity:
        mine = [float(rewards[i]) for i, (_, present) in enumerate(models) if op in present]
        if not mine:
            stats[op] = (0, None, None)
            continue
        mean = sum(mine) / len(mine)
        stats[op] = (len(mine), mean, mean + c * math.sqrt(2.0 * math.log(total) / len(mine)))
    p: dict[str, float] = {}
    for a in sorted(set(arity.values())):
        names = [op for op in arity if arity[op] == a]
        p.update(zip(names, map(float, softmax_priorities([stats[op][2] for op in names], temperature))))
    return {op: OpPriority(n, mean, ucb, p[op]) for op, (n, mean, ucb) in stats.items()}


def draw_entropy(table: Mapping[str, OpPriority], arity: Mapping[str, int]) -> float:
    """Entropy (nats) of the op draws, summed over arities: the entropy of drawing one op of each arity.
    Its maximum, sum of ln(ops of each arity), is reached while all priorities are equal."""
    return sum(entropy(np.array([table[op].p for op in arity if arity[op] == a])) for a in set(arity.values()))


@strategies.register("op-evolution")
class OpPriorityEvolution(RegularizedEvolution):
    """Operation-priority evolution (OP-NAS): aging evolution whose mutations draw new graph ops by a
    UCB priority, softmax(u_o / T).

    Options (all choices, PAPERS.md marks them [R]/[P]): ``population`` (aging population, 50),
    ``tournament`` (sample size, 10), ``c`` (UCB exploration weight, 1.0), ``temperature`` (T, 0.1),
    ``normalise`` (reward scaling before the UCB: ``rank`` quantiles over the evaluated models
    (default), ``minmax``, or ``none``). The reward is the first objective made larger-is-better
    (with several objectives the others only act through the tournament's Pareto selection).
    Failed and infeasible trials age in the population as its worst members but carry no reward;
    a re-proposed duplicate counts once. Mutations replace a node's op, rewire, insert or delete a
    node (new ops by priority) or change an ordinary parameter (e.g. the layer type or kernel);
    invalid results are rejected and duplicates re-drawn. Each proposal's ``info`` holds the
    priorities it was drawn with (``op_priority``: op -> n, mean, ucb, p; ``op_entropy`` in nats).
    """

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, population: int = 50, tournament: int = 10,
                 c: float = 1.0, temperature: float = 0.1, normalise: str = "rank", **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, population=population, tournament=tournament, **options)
        if not space.has(Graph):
            raise ConfigError(f"strategy op-evolution searches graph parameters (operation priorities), but "
                              f"space {space.name!r} has none; use e.g. 'evolution' for it")
        if not (math.isfinite(c) and c >= 0) or not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"op-evolution needs c >= 0 and temperature > 0, got c={c}, temperature={temperature}")
        if normalise not in NORMALISATIONS:
            raise ConfigError(f"op-evolution option normalise must be one of {list(NORMALISATIONS)}, got {normalise!r}")
        self.arity = _vocabulary(space)
        self.c = float(c)
        self.temperature = float(temperature)
        self.normalisation = normalise
        self.models: list[tuple[float, frozenset[str]]] = []  # (reward, ops) per evaluated model
        self._counted: set[str] = set()
        self._cache: tuple[int, dict[str, OpPriority]] | None = None

    # -- statistics -------------------------------------------------------------------------------
    def ops_in(self, config: Mapping[str, Any]) -> frozenset[str]:
        """The ops used by any node of any (active) graph parameter of ``config``."""
        return frozenset(node["op"] for _, _, nodes in self.space.graphs(dict(config)) for node in nodes)

    def priorities(self) -> dict[str, OpPriority]:
        """The current per-op statistics (recomputed when a model was added: normalisation is global)."""
        if self._cache is None or self._cache[0] != len(self.models):
            self._cache = (len(self.models), op_priorities(self.models, self.arity, self.c,
                                                           self.temperature, self.normalisation))
        return self._cache[1]

    def choose_op(self, rng: np.random.Generator, arity: int, tried: set[str] | None = None) -> str:
        """An op of ``arity`` drawn with p = softmax(u_o / T) among the ops of that arity (unseen ops,
        u = +inf, first).

        ``tried`` holds the ops already drawn for the mutation under way; it draws again only when the
        candidate was rejected (invalid, e.g. ``matmul`` where the shapes do not fit, or unchanged), so
        those ops are left out until every op of the arity was tried. Otherwise one op that rarely fits
        (typically unseen, so at +inf) would take every retry and block the other ops.
        """
        names = [op for op, a in self.arity.items() if a == arity]
        if not names:
            raise ValueError(f"no op of arity {arity} in {dict(self.arity)}")
        tried = tried if tried is not None else set()
        left = [op for op in names if op not in tried] or names
        table = self.priorities()
        p = softmax_priorities([table[op].ucb for op in left], self.temperature)
        op = left[int(rng.choice(len(left), p=p))]
        tried.add(op)
        return op

    # -- ask / tell -------------------------------------------------------------------------------
    def ask(self, number: int) -> Proposal:
        proposal = super().ask(number)
        table = self.priorities()
        info = {"op_priority": {op: s.as_json() for op, s in table.items()},
                "op_entropy": draw_entropy(table, self.arity)}
        return replace(proposal, info={**proposal.info, **info})

    def _mutate(self, config: Config, rng: np.random.Generator) -> Config:
        """A valid mutation of ``config`` with new ops drawn by priority (the parent when none is found:
        :meth:`novel` then draws again, as for a duplicate)."""
        tried: set[str] = set()
        for _ in range(VALID_TRIES):
            child = self.space.mutate(config, rng, lambda r, arity: self.choose_op(r, arity, tried))
            if not self.space.problems(child):
                return child
        return config

    def tell(self, observation: Observation) -> None:
        super().tell(observation)
        losses = observation.losses
        if observation.state is TrialState.COMPLETE and losses and math.isfinite(losses[0]) \
                and observation.key not in self._counted:
            self._counted.add(observation.key)
            self.models.append((-float(losses[0]), self.ops_in(observation.config)))


def _vocabulary(space: SearchSpace) -> dict[str, int]:
    """op -> arity shared by every graph parameter of ``space``.

    The ``choose_op`` hook is told only the arity it needs, not which graph it is mutating, so graphs
    with different op sets would be given ops they do not declare: such spaces are refused.
    """
    graphs: list[tuple[str, Graph]] = [(path, node) for path, node in space.leaves() if isinstance(node, Graph)]
    first_path, first = graphs[0]
    for path, graph in graphs[1:]:
        if dict(graph.ops) != dict(first.ops):
            raise ConfigError(f"op-evolution needs every graph parameter of space {space.name!r} to declare the "
                              f"same ops; {path!r} has {sorted(graph.arity)}, {first_path!r} has {sorted(first.arity)}")
    return dict(first.ops)
