"""One-shot NAS: train a weight-sharing supernet once, search it, re-evaluate the best stand-alone.

Three phases, each visible in the ledger (``info["phase"]``) and on the progress bar:

1. ``supernet``: one trial that trains the space's supernet (the ``supernet`` estimator; it is
   cached, so a resumed or repeated search reuses it) and scores its smallest sub-network (the one
   that upper-bound cost constraints admit);
2. ``search``: ``search_trials`` candidates proposed by regularized evolution (Pareto tournaments with
   several objectives; cost constraints apply) and scored with inherited weights;
3. ``standalone``: the ``top_k`` best candidates of the search, trained from scratch by the space's
   own estimator. These are marked ``final``: the study's best candidates are chosen among them.

A supernet scores architectures, not training hyperparameters: when the config has a ``model`` part
(what the builder receives), every other part (e.g. ``train``) is held fixed for all trials, at the
``fixed`` option's values or else at the middle of each range (first option of each choice).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

from automl.errors import ConfigError
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies
from automl.strategies.evolution import RegularizedEvolution
from automl.strategies.pareto import nondominated_ranks
from automl.supernet import find_supernet, supernets

SUPERNET, SEARCH, STANDALONE = "supernet", "search", "standalone"
_FIXED_STREAM = 2**31  # the random stream of the fixed parts, apart from every trial's


@strategies.register("one-shot")
class OneShot(Strategy):
    """Supernet training + evolutionary search over subnets + top-k stand-alone re-evaluation.
    Options: ``search_trials`` (200), ``top_k`` (3), ``population`` (20), ``tournament`` (5),
    ``supernet`` (options of the supernet estimator, e.g. ``{epochs: 30, sampling: sandwich}``),
    ``fixed`` (values for the non-architecture parts, e.g. ``{train: {optimizer: adam, lr: 0.003}}``)."""

    plans_own_budget: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, search_trials: int = 200, top_k: int = 3,
                 population: int = 20, tournament: int = 5, supernet: Mapping[str, Any] | None = None,
                 fixed: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, **options)
        if space.task is None or space.builder is None:
            raise ConfigError(f"one-shot needs a space with a task and a builder; {space.name!r} has "
                              f"{'no task' if space.task is None else 'no builder'}", source=space.source)
        if find_supernet(space.builder) is None:
            raise ConfigError(f"one-shot: builder {space.builder!r} is not shareable (no supernet registered for "
                              f"it; shareable: {', '.join(supernets.names()) or 'none'})", source=space.source)
        if search_trials < 1 or top_k < 1:
            raise ConfigError(f"one-shot needs search_trials >= 1 and top_k >= 1, got {search_trials}, {top_k}")
        self.search_trials, self.top_k = int(search_trials), int(top_k)
        self.supernet_options = dict(supernet or {})
        self.fixed = self._fixed_parts(dict(fixed or {}))
        self.evolution = RegularizedEvolution(space, objectives, seed, budget, population=population,
                                              tournament=tournament)
        self.supernet_state = "todo"  # todo -> running -> done | failed
        self.search_asked = 0
        self.searched: list[Observation] = []
        self.finalists: list[Config] | None = None
        self.final_asked = 0

    def _fixed_parts(self, given: dict[str, Any]) -> dict[str, Any]:
        """The non-architecture parts every trial uses: ``given`` merged over the space's middle."""
        middle = self.space.extreme("mid", self.rng(_FIXED_STREAM))
        if "model" not in middle:
            if given:
                raise ConfigError("one-shot: 'fixed' needs a space whose builder part is under 'model'")
            return {}
        unknown = sorted(set(given) - (set(middle) - {"model"}))
        if unknown:
            raise ConfigError(f"one-shot: fixed parts {unknown} are not non-architecture parts of the space "
                              f"(expected some of {sorted(set(middle) - {'model'})})")
        parts = {k: ({**v, **given.get(k, {})} if isinstance(v, dict) else given.get(k, v))
                 for k, v in middle.items() if k != "model"}
        problems = self.space.problems(
            self.space.complete({"model": middle["model"], **parts}, self.rng(_FIXED_STREAM)))
        if problems:
            raise ConfigError("one-shot: invalid 'fixed' values: " + "; ".join(problems))
        return parts

    def _with_fixed(self, config: Config) -> Config:
        return self.space.complete({**config, **self.fixed}, self.rng(_FIXED_STREAM)) if self.fixed else config

    def _info(self, phase: str) -> dict[str, Any]:
        if phase == STANDALONE:
            return {"phase": phase, "final": True}
        return {"phase": phase, "estimator": "supernet", "estimator_options": self.supernet_options}

    def ask(self, number: int) -> Proposal | None:
        if self.supernet_state == "todo":
            self.supernet_state = "running"
            return Proposal(self._with_fixed(self.space.extreme("min", self.rng(number))), info=self._info(SUPERNET))
        if self.supernet_state != "done":
            return None  # wait for the supernet (or stop: its training failed)
        if self.search_asked < self.search_trials:
            self.search_asked += 1
            return self._search_proposal(number)
        if len(self.searched) < self.search_asked:
            return None  # the finalists are chosen once every search result is in
        if self.finalists is None:
            self.finalists = self._choose_finalists()
        if self.final_asked < len(self.finalists):
            self.final_asked += 1
            return Proposal(self.finalists[self.final_asked - 1], info=self._info(STANDALONE))
        return None

    def _search_proposal(self, number: int) -> Proposal:
        """Evolution's next architecture with the fixed parts applied; configs that differ only in a
        fixed part are the same candidate here, so evolution is asked again (it never repeats one)."""
        for _ in range(50):
            proposal = self.evolution.ask(number)
            config = self._with_fixed(proposal.config)
            key = self.space.key(config)
            if key not in self._seen:
                break
        self._seen.add(key)
        return Proposal(config, info={**proposal.info, **self._info(SEARCH)})

    def _choose_finalists(self) -> list[Config]:
        done = [o for o in self.searched if o.state is TrialState.COMPLETE and o.losses]
        if not done:
            return []
        ranks = nondominated_ranks([o.losses for o in done])  # type: ignore[misc]
        order = sorted(range(len(done)), key=lambda i: (ranks[i], done[i].losses, done[i].number))
        finalists: list[Config] = []
        keys: set[str] = set()
        for i in order:
            if done[i].key not in keys:
                keys.add(done[i].key)
                finalists.append(done[i].config)
            if len(finalists) == self.top_k:
                break
        return finalists

    def tell(self, observation: Observation) -> None:
        phase = observation.info.get("phase")
        if phase == SUPERNET:
            # infeasible: the supernet was trained, only its scored sub-network broke a constraint
            trained = observation.state in (TrialState.COMPLETE, TrialState.INFEASIBLE)
            self.supernet_state = "done" if trained else "failed"
        elif phase == SEARCH:
            self.evolution.tell(observation)
            self.searched.append(observation)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        for observation in [*history, *pending]:
            phase = observation.info.get("phase")
            if phase == SUPERNET and self.supernet_state == "todo":
                self.supernet_state = "running"
            elif phase == SEARCH:
                self.search_asked += 1
                self._seen.add(observation.key)
                self.evolution._seen.add(observation.key)
            elif phase == STANDALONE:
                self.final_asked += 1
        for observation in history:
            self.tell(observation)
