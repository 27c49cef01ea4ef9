"""HpBandSter's BOHB (Falkner et al. 2018, the reference implementation) behind the ask/tell contract.

HpBandSter normally runs as a Pyro4 master with a name server and workers. None of that is used here
(with numpy 2 its Pyro4 worker dies on ``numpy.str_`` and ``run()`` hangs): this module drives
HpBandSter's own pieces in-process, exactly the way ``hpbandster.core.master.Master.run`` and
``hpbandster.optimizers.bohb.BOHB`` do:

* the config generator is HpBandSter's ``optimizers.config_generators.bohb.BOHB`` (the KDE model),
* each Hyperband bracket is HpBandSter's ``SuccessiveHalving`` iteration, with the bracket arithmetic
  of ``BOHB.get_next_iteration`` (``eta``, ``max_SH_iter``, ``budgets``),
* :meth:`ask` is one pass of the master's scheduling loop: the first active iteration that has a run
  gives it (sampling a new config or promoting one); when all are waiting for results a new iteration
  is opened (as the master does while it may run more iterations); with ``n_iterations`` reached,
  ``ask`` returns None until results arrive (and the study ends when all iterations are done),
* :meth:`tell` is the master's ``job_callback``: ``iteration.register_result(job)`` then
  ``config_generator.new_result(job)``. Failed and infeasible trials are crashed jobs
  (``result=None``), which HpBandSter counts as loss +inf.

The space is searched through its flat view (:meth:`SearchSpace.flatten`): every possible parameter,
including ``blocks#len`` and ``blocks[i].width``, is one unconditional ConfigSpace hyperparameter;
parameters a config switches off are dropped when it is turned back into a config (their values stay
in HpBandSter's model as noise dimensions). Graph parameters cannot be searched. ``normal``/
``lognormal`` leaves have no flat view: they are drawn from their prior once per config (not modelled).
HpBandSter optimises one objective: a study with several is refused, naming ``bohb`` (the same algorithm
ranking by non-dominated sorting), ``mo-hyperband`` and ``mo-asha``. A rank-based scalar cannot stand in:
a trial's rank changes as later results arrive, while HpBandSter keeps the loss it was told.

Determinism: HpBandSter draws from numpy's global RNG and from the ConfigSpace's own RNG. Both are
seeded from ``(seed, trial number)`` for the duration of each call, and numpy's global state is put
back afterwards, so other code's global random stream is not disturbed (not thread-safe: another
thread using ``np.random`` during an ask may see the temporary state).

Resume: each proposal records in its ``info`` HpBandSter's ``config_id``, the ConfigSpace values and
which trials had been told since the previous proposal. :meth:`restore` replays that log in order
(tells, then the master's scheduling with the recorded config in place of a new sample), which
rebuilds the iterations and the KDE models exactly; trials told after the last proposal are replayed
in trial order (their real order is unknown; with one worker it is the same).
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl.errors import ConfigError
from automl.space.graph import Graph
from automl.space.model import Config, SearchSpace
from automl.space.nodes import Budget, Objective
from automl.strategies.base import Observation, Proposal, Strategy, TrialState, strategies

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install hpbandster (it brings ConfigSpace, statsmodels and scipy)"


class _Job:
    """The part of ``hpbandster.core.dispatcher.Job`` that iterations and config generators read."""

    def __init__(self, config_id: tuple[int, int, int], config: Mapping[str, Any], budget: float,
                 result: Mapping[str, Any] | None) -> None:
        self.id = config_id
        self.kwargs = {"config": config, "budget": budget}
        self.result = result
        self.exception = None  # a crashed job is result=None; no traceback to log
        self.timestamps: dict[str, float] = {}
        self.worker_name = None


class _Param:
    """How one flat parameter maps to a ConfigSpace hyperparameter and back."""

    def __init__(self, name: str, kind: str, *, low: float = 0.0, high: float = 0.0, step: float = 1.0,
                 log: bool = False, labels: Sequence[str] = (), choices: Sequence[Any] = ()) -> None:
        self.name, self.kind = name, kind  # kind: float | int | float_grid | int_grid | categorical
        self.low, self.high, self.step, self.log = low, high, step, log
        self.labels, self.choices = tuple(labels), tuple(choices)
        # a grid (a float or int with a step) is searched as the integer index k: low + k * step
        self.n = int(round((high - low) / step)) if kind.endswith("_grid") else 0

    def hyperparameter(self) -> Any:
        import ConfigSpace as CS

        if self.kind == "float":
            return CS.UniformFloatHyperparameter(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return CS.UniformIntegerHyperparameter(self.name, int(self.low), int(self.high), log=self.log)
        if self.kind.endswith("_grid"):
            return CS.UniformIntegerHyperparameter(self.name, 0, self.n)
        return CS.CategoricalHyperparameter(self.name, list(self.labels))

    def value(self, raw: Any) -> Any:
        if self.kind == "float":
            return float(min(self.high, max(self.low, float(raw))))
        if self.kind == "int":
            return int(min(self.high, max(self.low, int(raw))))
        if self.kind == "float_grid":
            return float(min(self.high, self.low + int(raw) * self.step))
        if self.kind == "int_grid":
            return int(min(self.high, self.low + int(raw) * self.step))
        return self.choices[self.labels.index(str(raw))]


def _labels(choices: Sequence[Any]) -> list[str]:
    """ConfigSpace-safe string labels for categorical choices (bools, None, numbers, strings)."""
    labels = [c if isinstance(c, str) else repr(c) for c in choices]
    if len(set(labels)) < len(labels):  # e.g. choices 1 and "1"
        labels = [f"{i}:{c!r}" for i, c in enumerate(choices)]
    return labels


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (for JSON and for exact round trips)."""
    return value.item() if isinstance(value, np.generic) else value


@strategies.register("hpbandster-bohb")
class HpBandSterBOHB(Strategy):
    """BOHB by HpBandSter (the reference implementation, run in-process); needs a budget range.

    Options (HpBandSter's names and defaults): ``eta`` (3), ``min_points_in_model`` (None: dimensions
    + 1), ``top_n_percent`` (15), ``num_samples`` (64), ``random_fraction`` (1/3), ``bandwidth_factor``
    (3), ``min_bandwidth`` (1e-3); ``n_iterations`` (None: unlimited) caps the number of Hyperband
    brackets, like ``Master.run(n_iterations)``.
    """

    unsupported = (Graph,)

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], seed: int,
                 budget: Budget | None = None, *, eta: float = 3, min_points_in_model: int | None = None,
                 top_n_percent: int = 15, num_samples: int = 64, random_fraction: float = 1 / 3,
                 bandwidth_factor: float = 3, min_bandwidth: float = 1e-3, n_iterations: int | None = None,
                 **options: Any) -> None:
        super().__init__(space, objectives, seed, budget, **options)
        if len(self.objectives) > 1:
            raise ConfigError(f"hpbandster-bohb wraps HpBandSter, which optimises one objective; the study has "
                              f"{len(self.objectives)} ({', '.join(o.name for o in self.objectives)}): use bohb "
                              "(the same algorithm, ranking by non-dominated sorting), mo-hyperband or mo-asha")
        if budget is None:
            raise ConfigError("hpbandster-bohb needs a budget range: declare `budget:` in the space "
                              "or pass budget= to create_study")
        problems = []
        if not eta > 1:
            problems.append(f"eta must be > 1, got {eta}")
        if min_points_in_model is not None and min_points_in_model < 1:
            problems.append(f"min_points_in_model must be >= 1, got {min_points_in_model}")
        if not 0 < top_n_percent < 100:
            problems.append(f"top_n_percent must be in (0, 100), got {top_n_percent}")
        if num_samples < 1:
            problems.append(f"num_samples must be >= 1, got {num_samples}")
        if not 0 <= random_fraction <= 1:
            problems.append(f"random_fraction must be in [0, 1], got {random_fraction}")
        if not bandwidth_factor > 0 or not min_bandwidth > 0:
            problems.append(f"bandwidth_factor and min_bandwidth must be > 0, got {bandwidth_factor}, {min_bandwidth}")
        if n_iterations is not None and n_iterations < 1:
            problems.append(f"n_iterations must be >= 1 (or None), got {n_iterations}")
        if problems:
            raise ConfigError("hpbandster-bohb: " + "; ".join(problems))
        try:
            import ConfigSpace  # noqa: F401
            from hpbandster.optimizers.config_generators.bohb import BOHB as CG_BOHB
            from hpbandster.optimizers.iterations import SuccessiveHalving
        except ImportError as exc:
            raise ConfigError(f"strategy hpbandster-bohb needs HpBandSter ({exc}): {_INSTALL_HINT}") from None
        self._SuccessiveHalving = SuccessiveHalving

        self.eta = eta
        self.n_iterations = n_iterations
        self.min_budget, self.max_budget = float(budget.min), float(budget.max)
        # hpbandster.optimizers.bohb.BOHB.__init__, verbatim arithmetic
        self.max_SH_iter = -int(np.log(self.min_budget / self.max_budget) / np.log(eta)) + 1
        self.budgets = self.max_budget * np.power(eta, -np.linspace(self.max_SH_iter - 1, 0, self.max_SH_iter))

        self._params, self._fixed = self._flat_params(space)
        if not self._params:
            raise ConfigError(f"hpbandster-bohb: space {space.name!r} has nothing to search "
                              "(every parameter is fixed or has no flat view)")
        self.configspace = self._configspace()
        self._CG_BOHB = CG_BOHB
        self._cg_options = dict(min_points_in_model=min_points_in_model, top_n_percent=top_n_percent,
                                num_samples=num_samples, random_fraction=random_fraction,
                                bandwidth_factor=bandwidth_factor, min_bandwidth=min_bandwidth)
        self._reset()

    # -- the ConfigSpace view -----------------------------------------------------------------------
    @staticmethod
    def _flat_params(space: SearchSpace) -> tuple[dict[str, _Param], dict[str, Any]]:
        params: dict[str, _Param] = {}
        fixed: dict[str, Any] = {}
        for name, dist in space.flatten().items():
            if isinstance(dist, FloatDistribution):
                if dist.low == dist.high:
                    fixed[name] = float(dist.low)
                elif dist.step is not None:
                    params[name] = _Param(name, "float_grid", low=dist.low, high=dist.high, step=dist.step)
                else:
                    params[name] = _Param(name, "float", low=dist.low, high=dist.high, log=dist.log)
            elif isinstance(dist, IntDistribution):
                if dist.low == dist.high:
                    fixed[name] = int(dist.low)
                elif dist.step != 1:
                    params[name] = _Param(name, "int_grid", low=dist.low, high=dist.high, step=dist.step)
                else:
                    params[name] = _Param(name, "int", low=dist.low, high=dist.high, log=dist.log)
            elif isinstance(dist, CategoricalDistribution):
                if len(dist.choices) == 1:
                    fixed[name] = dist.choices[0]
                else:
                    params[name] = _Param(name, "categorical", labels=_labels(dist.choices), choices=dist.choices)
            else:
                raise ConfigError(f"hpbandster-bohb cannot search parameter {name!r} ({type(dist).__name__})")
        return params, fixed

    def _configspace(self) -> Any:
        import ConfigSpace as CS

        cs = CS.ConfigurationSpace(seed=self.seed)
        cs.add([p.hyperparameter() for p in self._params.values()])
        return cs

    def _to_config(self, cs_config: Mapping[str, Any], number: int) -> Config:
        params = dict(self._fixed)
        for name, raw in cs_config.items():
            params[name] = self._params[name].value(raw)
        return self.space.unflatten(params, self.rng(number))

    # -- state ------------------------------------------------------------------------------------
    def _reset(self) -> None:
        with self._quiet():
            self.config_generator = self._CG_BOHB(configspace=self.configspace, logger=logger, **self._cg_options)
        self.iterations: list[Any] = []
        self._configs: dict[tuple[int, int, int], Config] = {}  # config_id -> our config
        self._told_since_ask: list[int] = []
        # restore: the recorded (ConfigSpace values, config info) to use instead of a new sample
        self._forced: tuple[Mapping[str, Any], dict[str, Any]] | None = None
        self._seen.clear()

    def _sample(self, budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """The iterations' ``config_sampler``: HpBandSter's ``get_config`` (or, during restore, the
        config recorded in the ledger: sampling does not change the generator's state)."""
        if self._forced is not None:
            (config, info), self._forced = self._forced, None
            return dict(config), dict(info)
        config, info = self.config_generator.get_config(budget)
        return {k: _plain(v) for k, v in config.items()}, {k: _plain(v) for k, v in info.items()}

    def _next_iteration(self, iteration: int) -> Any:
        """``hpbandster.optimizers.bohb.BOHB.get_next_iteration``, verbatim arithmetic."""
        s = self.max_SH_iter - 1 - (iteration % self.max_SH_iter)
        n0 = int(np.floor(self.max_SH_iter / (s + 1)) * self.eta**s)
        ns = [max(int(n0 * (self.eta ** (-i))), 1) for i in range(s + 1)]
        return self._SuccessiveHalving(HPB_iter=iteration, num_configs=ns, budgets=self.budgets[(-s - 1):],
                                       config_sampler=self._sample, logger=logger)

    def _next_run(self) -> tuple[tuple[int, int, int], dict[str, Any], float] | None:
        """One pass of ``Master.run``'s scheduling loop (job queue: one run per free slot)."""
        while True:
            for iteration in self.iterations:
                if iteration.is_finished:
                    continue
                run: tuple[tuple[int, int, int], dict[str, Any], float] | None = iteration.get_next_run()
                if run is not None:
                    return run
            if self.n_iterations is None or len(self.iterations) < self.n_iterations:
                self.iterations.append(self._next_iteration(len(self.iterations)))
                continue
            return None

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        with warnings.catch_warnings():
            # ConfigSpace 1.x deprecations in HpBandSter's code, statsmodels' future RNG default,
            # and divide-by-zero in its Aitchison-Aitken kernel when a good set has one category only.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            yield

    @contextlib.contextmanager
    def _seeded(self, *key: int) -> Iterator[None]:
        """Seed numpy's global RNG and the ConfigSpace's RNG from (seed, *key); put numpy's back after."""
        state = np.random.get_state()
        words = np.random.SeedSequence([self.seed, *key]).generate_state(2)
        np.random.seed(int(words[0]))
        self.configspace.seed(int(words[1]))
        try:
            with self._quiet():
                yield
        finally:
            np.random.set_state(state)

    # -- ask / tell -------------------------------------------------------------------------------
    def ask(self, number: int) -> Proposal | None:
        with self._seeded(number, 0):
            run = self._next_run()
        if run is None:
            return None
        config_id, cs_config, hb_budget = run
        datum = self.iterations[config_id[0]].data[config_id]
        config = self._configs.get(config_id)
        if config is None:
            config = self._configs[config_id] = self._to_config(cs_config, number)
        budget = float(min(self.max_budget, max(self.min_budget, float(hb_budget))))
        info = {
            "config_id": list(config_id),
            "model_based_pick": datum.config_info.get("model_based_pick"),
            "hb_budget": float(hb_budget),
            "hb_ask": number,
            "hb_after": list(self._told_since_ask),
            "hb_config": dict(cs_config),
        }
        self._told_since_ask = []
        return Proposal(config, budget=budget, info=info)

    def tell(self, observation: Observation) -> None:
        self._told_since_ask.append(observation.number)
        raw_id = observation.info.get("config_id")
        if not isinstance(raw_id, (list, tuple)) or len(raw_id) != 3:
            return  # not proposed by this strategy (e.g. a trial added by another one): ignored
        config_id = (int(raw_id[0]), int(raw_id[1]), int(raw_id[2]))
        if not 0 <= config_id[0] < len(self.iterations):
            return
        iteration = self.iterations[config_id[0]]
        datum = iteration.data.get(config_id)
        if iteration.is_finished or datum is None or datum.status != "RUNNING":
            return  # told twice, or a result this state never scheduled
        result = None
        if observation.state is TrialState.COMPLETE and observation.losses:
            loss = float(observation.losses[0])
            result = {"loss": loss if math.isfinite(loss) else math.inf, "info": {"trial": observation.number}}
        job = _Job(config_id, datum.config, datum.budget, result)
        with self._seeded(observation.number, 1):
            iteration.register_result(job)  # Master.job_callback
            self.config_generator.new_result(job)

    def restore(self, history: Sequence[Observation], pending: Sequence[Observation] = ()) -> None:
        """Replay the ledger: for each recorded proposal (in order), the tells that preceded it, then
        the master's scheduling with the recorded sample; then the tells after the last proposal."""
        self._reset()
        finished = {o.number: o for o in history}
        proposals: dict[int, Observation] = {}  # hb_ask -> the (latest) trial that carries it
        for o in [*history, *pending]:
            self._seen.add(o.key)
            if (isinstance(o.info.get("hb_ask"), int) and isinstance(o.info.get("config_id"), (list, tuple))
                    and isinstance(o.info.get("hb_config"), Mapping)):
                proposals.setdefault(int(o.info["hb_ask"]), o)
        told: set[int] = set()
        for number in sorted(proposals):
            o = proposals[number]
            for t in o.info.get("hb_after", ()):
                if t in finished and t not in told:
                    told.add(t)
                    self.tell(finished[t])
            self._forced = (o.info["hb_config"], {"model_based_pick": o.info.get("model_based_pick")})
            with self._seeded(number, 0):
                run = self._next_run()
            self._forced = None
            if run is None or list(run[0]) != list(o.info["config_id"]):
                got = "nothing" if run is None else f"config_id {list(run[0])}"
                raise ConfigError(
                    f"hpbandster-bohb cannot resume: trial {o.number} was HpBandSter's config_id "
                    f"{list(o.info['config_id'])}, but replaying the ledger gives {got}; was the study "
                    "started with another budget range or other options (eta, n_iterations)?")
            self._configs.setdefault(run[0], dict(o.config))  # HpBandSter's config ids are tuples
            self._told_since_ask = []
        for o in history:
            if o.number not in told:
                told.add(o.number)
                self.tell(o)
