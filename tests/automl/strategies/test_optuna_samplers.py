"""The Optuna-backed strategies (tpe, cmaes, nsga2): conformance, resume, search quality, start-up checks."""
from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any, Callable

import numpy as np
import pytest

import automl
from automl.errors import ConfigError, Infeasible
from automl.space import SearchSpace, space_from_yaml
from automl.space.nodes import Objective
from automl.strategies.base import Observation, Strategy, TrialState, strategies
from automl.strategies.optuna_samplers import NSGA2, TPE, CmaEs
from automl.testing.strategies import STRATEGY_CHECKS, check_resume_equivalence, conformance_space

needs_cmaes = pytest.mark.skipif(importlib.util.find_spec("cmaes") is None,
                                 reason="CmaEsSampler needs the 'cmaes' package (pip install cmaes)")

# -- spaces and objectives --------------------------------------------------------------------------
CONTINUOUS_YAML = """
name: continuous
space:
  x: {type: float, low: -3.0, high: 3.0}
  y: {type: float, low: 0.001, high: 10.0, log: true}
  n: {type: int, low: 1, high: 16}
  batch: 32
"""

QUADRATIC_YAML = """
name: quadratic
space:
  a: {type: float, low: -5.0, high: 5.0}
  b: {type: float, low: -5.0, high: 5.0}
  c: {type: float, low: -5.0, high: 5.0}
"""

TWO_OBJECTIVES_YAML = """
name: two-objectives
objectives: {f1: min, f2: min}
space:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 1.0}
"""


def continuous_space() -> SearchSpace:
    return space_from_yaml(CONTINUOUS_YAML, source="<test>")


def continuous_objective(config: dict[str, Any]) -> float:
    return (config["x"] - 1.0) ** 2 + math.log10(config["y"]) ** 2 + abs(config["n"] - 5) / 4


def quadratic(config: dict[str, Any]) -> float:
    return (config["a"] - 1.0) ** 2 + (config["b"] + 2.0) ** 2 + (config["c"] - 0.5) ** 2


def two_objectives(config: dict[str, Any]) -> dict[str, float]:
    return {"f1": config["x"], "f2": (1.0 - config["x"]) ** 2 + config["y"]}


def run(space: SearchSpace, strategy: str, objective: Callable[..., Any], seed: int | None, n_trials: int,
        storage: str | None = None, **options: Any) -> automl.Study:
    study = automl.create_study(space, strategy=strategy, seed=seed, storage=storage, strategy_options=options or None)
    study.optimize(objective, n_trials=n_trials)
    return study


def drive(strategy: Strategy, objective: Callable[[dict], float], numbers: range) -> list[Observation]:
    """Ask and tell directly, the way the study does with one worker."""
    told = []
    for number in numbers:
        config = strategy.ask(number).config
        observation = Observation(number, config, strategy.space.key(config), TrialState.COMPLETE,
                                  losses=(objective(config),))
        strategy.tell(observation)
        told.append(observation)
    return told


# -- the conformance suite --------------------------------------------------------------------------
# nsga2 with a small population also runs several generations within the suite's 30-40 trials
CONFORMING = [("tpe", {}), ("tpe", {"multivariate": False, "n_startup_trials": 5}),
              ("nsga2", {}), ("nsga2", {"population_size": 6})]


def test_registered():
    assert {"tpe", "cmaes", "nsga2"} <= set(strategies.names())
    assert strategies.get("tpe") is TPE and strategies.get("cmaes") is CmaEs and strategies.get("nsga2") is NSGA2


@pytest.mark.parametrize(("name", "options"), CONFORMING, ids=str)
@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
def test_conformance(name, options, check):
    check(name, **options)


@pytest.mark.parametrize(("name", "options"), CONFORMING, ids=str)
def test_resume_equivalence(name, options, tmp_path):
    check_resume_equivalence(name, str(tmp_path), **options)


# cmaes cannot search the conformance space (categorical, repeat): the same checks on a float/int space
@needs_cmaes
def test_cmaes_proposals_are_valid_and_deterministic():
    space = continuous_space()
    a = run(space, "cmaes", continuous_objective, 7, 30)
    for trial in a.trials:
        assert not space.problems(trial.config)
        assert trial.config["batch"] == 32
    b = run(space, "cmaes", continuous_objective, 7, 30)
    c = run(space, "cmaes", continuous_objective, 8, 30)
    assert [t.key for t in a.trials] == [t.key for t in b.trials], "the same seed must give the same proposals"
    assert [t.key for t in a.trials] != [t.key for t in c.trials], "another seed must give other proposals"
    evaluated = [t.key for t in a.trials if "duplicate_of" not in t.info]
    assert len(evaluated) == len(set(evaluated))


@needs_cmaes
@pytest.mark.parametrize("options", [{}, {"popsize": 5}], ids=str)
def test_cmaes_resume_equivalence(options, tmp_path):
    space = continuous_space()
    straight = [t.key for t in run(space, "cmaes", continuous_objective, 3, 30, **options).trials]
    url = f"sqlite:///{tmp_path}/resume.db"
    run(space, "cmaes", continuous_objective, 3, 12, storage=url, **options)
    resumed = run(space, "cmaes", continuous_objective, None, 18, storage=url, **options)
    assert resumed.seed == 3
    assert [t.key for t in resumed.trials] == straight


@pytest.mark.parametrize("make", [
    pytest.param(lambda: (CmaEs, continuous_space(), {"popsize": 4}), marks=needs_cmaes, id="cmaes"),
    pytest.param(lambda: (NSGA2, conformance_space(), {"population_size": 4}), id="nsga2"),
    pytest.param(lambda: (TPE, conformance_space(), {}), id="tpe"),
])
def test_restore_rebuilds_the_samplers_state(make):
    """What the sampler recorded in its study while asking (CMA-ES and NSGA-II keep generations and
    the optimizer in trial attributes) is the same after restoring from the history."""
    cls, space, options = make()
    objective = continuous_objective if cls is CmaEs else (lambda c: quadratic({"a": c["x"], "b": -2, "c": 0.5}))
    objectives = [Objective("value", "min")]
    straight = cls(space, objectives, 11, **options)
    history = drive(straight, objective, range(14))
    restored = cls(space, objectives, 11, **options)
    restored.restore(history)

    def snapshot(strategy):
        # CMA-ES pickles its optimizer with an uninitialised (np.empty) history buffer: compare which
        # optimizer attributes exist, and the optimizer's effect through the proposals below. TPE's
        # constant liar notes a trial's relative sample, read only while that trial runs.
        return [(t.number, t.state, t.values, t.params,
                 {k: "<optimizer>" if "optimizer" in k else v for k, v in t.system_attrs.items()
                  if not k.startswith("tpe:relative_params")})
                for t in strategy._study.trials]

    assert snapshot(restored) == snapshot(straight)
    if cls is not TPE:
        assert any(t.system_attrs for t in straight._study.trials), "the sampler recorded no state: test is vacuous"
    after = [o.config for o in drive(straight, objective, range(14, 22))]
    assert [o.config for o in drive(restored, objective, range(14, 22))] == after


def test_optuna_trials_hold_exactly_the_active_parameters():
    """Define-by-run: an inactive conditional parameter or a repeat's missing item is never suggested,
    so replaying a trial from its config gives the sampler the very same trial."""
    space = conformance_space()
    strategy = TPE(space, [Objective("value", "min")], 5, n_startup_trials=4)
    told = drive(strategy, lambda c: float(c["x"] ** 2), range(25))
    for observation, trial in zip(told, strategy._study.trials):
        assert trial.params == space.flat_params(observation.config)
    assert any("extra" not in t.params for t in strategy._study.trials)
    assert any("blocks[2].width" not in t.params for t in strategy._study.trials)


# -- search quality ---------------------------------------------------------------------------------
def test_tpe_beats_random_on_a_quadratic():
    space = space_from_yaml(QUADRATIC_YAML)

    def best(strategy: str, seed: int) -> float:
        return run(space, strategy, quadratic, seed, 60).best.value

    tpe = np.median([best("tpe", s) for s in range(5)])
    rnd = np.median([best("random", s) for s in range(5)])
    assert tpe < rnd


@needs_cmaes
def test_cmaes_converges_on_a_quadratic():
    space = space_from_yaml(QUADRATIC_YAML)
    cma = np.median([run(space, "cmaes", quadratic, s, 60).best.value for s in range(3)])
    rnd = np.median([run(space, "random", quadratic, s, 60).best.value for s in range(3)])
    assert cma < rnd


def test_nsga2_finds_a_pareto_front():
    study = run(space_from_yaml(TWO_OBJECTIVES_YAML), "nsga2", two_objectives, 0, 40, population_size=8)
    front = study.best_trials
    assert len(front) > 1
    values = [(t.values["f1"], t.values["f2"]) for t in front]
    for i, (f1, f2) in enumerate(values):  # nothing on the front is dominated by another front member
        assert not any(g1 <= f1 and g2 <= f2 and (g1, g2) != (f1, f2) for j, (g1, g2) in enumerate(values) if j != i)


def test_nsga2_and_tpe_accept_one_or_several_objectives():
    space = space_from_yaml(TWO_OBJECTIVES_YAML)
    assert len(run(space, "tpe", two_objectives, 1, 15, n_startup_trials=5).best_trials) > 1
    assert run(space_from_yaml(QUADRATIC_YAML), "nsga2", quadratic, 1, 15, population_size=4).best.value < 40


# -- failures, interruptions, workers ---------------------------------------------------------------
def test_failed_and_infeasible_trials_are_told_and_the_search_goes_on():
    space = space_from_yaml(QUADRATIC_YAML)

    def objective(config):
        if config["a"] > 3:
            raise RuntimeError("diverged")
        if config["b"] > 3:
            raise Infeasible("too big")
        return quadratic(config)

    study = run(space, "tpe", objective, 2, 40, n_startup_trials=5)
    states = {t.state for t in study.trials}
    assert {TrialState.COMPLETE, TrialState.FAILED} <= states
    assert study.best.value < 5

    strategy = TPE(space, [Objective("value", "min")], 0)
    config = strategy.ask(0).config
    strategy.tell(Observation(0, config, space.key(config), TrialState.INFEASIBLE))
    config = strategy.ask(1).config
    strategy.tell(Observation(1, config, space.key(config), TrialState.FAILED))
    assert [t.state.name for t in strategy._study.trials] == ["PRUNED", "FAIL"]


def test_a_trial_told_with_another_config_replaces_the_proposal():
    space = conformance_space()
    strategy = NSGA2(space, [Objective("value", "min")], 0, population_size=4)
    strategy.ask(0)
    other = space.sample(np.random.default_rng(99))
    strategy.tell(Observation(0, other, space.key(other), TrialState.COMPLETE, losses=(1.0,)))
    states = [t.state.name for t in strategy._study.trials]
    assert states == ["FAIL", "COMPLETE"]
    assert strategy._study.trials[1].params == space.flat_params(other)


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_interrupted_trials_are_rerun_on_resume(name, tmp_path):
    space = conformance_space()
    url = f"sqlite:///{tmp_path}/ledger.db"
    count = {"n": 0}

    def flaky(config):
        count["n"] += 1
        if count["n"] == 7:
            raise KeyboardInterrupt
        return quadratic({"a": config["x"], "b": -2.0, "c": 0.5})

    study = automl.create_study(space, strategy=name, storage=url, seed=4, strategy_options={"population_size": 4}
                                if name == "nsga2" else None)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(flaky, n_trials=12)
    resumed = automl.create_study(space, strategy=name, storage=url, strategy_options={"population_size": 4}
                                  if name == "nsga2" else None)
    resumed.optimize(flaky, total_trials=16)
    trials = resumed.trials
    assert trials[7].info["requeue_of"] == 6 and trials[7].key == trials[6].key
    assert sum(not t.requeued for t in trials) == 16
    assert not any(space.problems(t.config) for t in trials)


@pytest.mark.parametrize("cls", [TPE, NSGA2])
def test_several_trials_in_flight(cls):
    """With several workers, trials are told in any order while others are still asked."""
    space = conformance_space()
    strategy = cls(space, [Objective("value", "min")], 0)
    proposals = {n: strategy.ask(n).config for n in range(3)}
    assert strategy.ask(1).config == proposals[1]  # asked again before being told: the same proposal

    def tell(n):
        config = proposals[n]
        strategy.tell(Observation(n, config, space.key(config), TrialState.COMPLETE, losses=(float(n),)))

    tell(1)
    proposals[3] = strategy.ask(3).config
    for n in (0, 3, 2):
        tell(n)
    trials = strategy._study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert [t.values[0] for t in trials] == [0.0, 1.0, 2.0, 3.0]
    assert [t.params for t in trials] == [space.flat_params(proposals[n]) for n in range(4)]


def test_a_crashed_trial_re_run_in_its_slot_is_told_once_and_not_left_running():
    """The study re-runs a crashed trial in its attempt's slot: the sampler's asked trial is completed."""
    space = conformance_space()
    strategy = TPE(space, [Objective("value", "min")], 0)
    config = strategy.ask(0).config
    strategy.tell(Observation(0, config, space.key(config), TrialState.COMPLETE, losses=(2.0,),
                              info={"requeue_of": 5, "attempt": 1}))
    assert [t.state.name for t in strategy._study.trials] == ["COMPLETE"]
    assert strategy._study.trials[0].params == space.flat_params(config)


def test_no_optuna_warnings_or_log_lines(caplog):
    caplog.set_level("INFO", logger="optuna")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(conformance_space(), "tpe", lambda c: c["x"] ** 2, 0, 15, multivariate=True, group=True,
            n_startup_trials=5)
        run(conformance_space(), "nsga2", lambda c: c["x"] ** 2, 0, 15, population_size=4)
    assert not [w for w in caught if "optuna" in (w.filename + str(w.category.__module__))], \
        [str(w.message) for w in caught]
    # the ledger's own study may announce itself; the strategies' private studies stay quiet
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("optuna")]
    assert not [line for line in lines if "no-name-" in line or "independent" in line], lines


# -- start-up checks --------------------------------------------------------------------------------
GRAPH_YAML = """
name: cells
space:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
  cell:
    type: graph
    inputs: [q, k, v]
    ops: {neg: 1, add: 2, matmul: 2}
    commutative: [add]
    min_nodes: 2
    max_nodes: 4
"""


@pytest.mark.parametrize("name", ["tpe", "cmaes", "nsga2"])
def test_graph_parameters_are_refused_naming_the_parameter(name):
    with pytest.raises(ConfigError, match=r"graph.*'cell'"):
        automl.create_study(space_from_yaml(GRAPH_YAML), strategy=name)


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_normal_parameters_are_refused(name):
    space = space_from_yaml("name: n\nspace:\n  w: {type: normal, mu: 0.0, sigma: 1.0}\n")
    with pytest.raises(ConfigError, match=r"normal.*'w'"):
        automl.create_study(space, strategy=name)


@needs_cmaes
@pytest.mark.parametrize(("extra", "kind", "where"), [
    ("  act: {type: categorical, choices: [relu, tanh]}\n", "categorical", "act"),
    ("  bias: {type: bool}\n", "bool", "bias"),
    ("  layers: {type: repeat, min: 1, max: 3, item: {width: {type: int, low: 1, high: 8}}}\n", "repeat", "layers"),
])
def test_cmaes_refuses_non_numeric_parameters_and_suggests_tpe(extra, kind, where):
    space = space_from_yaml("name: mixed\nspace:\n  x: {type: float, low: 0.0, high: 1.0}\n" + extra)
    with pytest.raises(ConfigError, match=rf"{kind} parameter at '{where}'.*'tpe'"):
        automl.create_study(space, strategy="cmaes")
    automl.create_study(space, strategy="tpe")  # tpe takes it


@needs_cmaes
def test_cmaes_refuses_several_objectives():
    with pytest.raises(ConfigError, match="one objective.*nsga2"):
        automl.create_study(space_from_yaml(TWO_OBJECTIVES_YAML), strategy="cmaes")


@pytest.mark.parametrize(("name", "options", "match"), [
    ("tpe", {"n_startup_trial": 3}, r"unknown options \['n_startup_trial'\].*n_startup_trials"),
    ("nsga2", {"population": 10}, r"unknown options \['population'\].*population_size"),
    pytest.param("cmaes", {"sigma": 0.3}, r"unknown options \['sigma'\].*sigma0", marks=needs_cmaes),
    ("tpe", {"seed": 1}, "seed"),
    ("nsga2", {"population_size": 1}, "population_size"),
    ("tpe", {"multivariate": False, "group": True}, "group"),
])
def test_bad_options_are_config_errors(name, options, match):
    space = continuous_space()
    with pytest.raises(ConfigError, match=match):
        automl.create_study(space, strategy=name, strategy_options=options)


@pytest.mark.parametrize(("name", "options"), [
    ("tpe", {"n_startup_trials": 3}),
    ("nsga2", {"population_size": 4}),
    pytest.param("cmaes", {"popsize": 4, "n_startup_trials": 3}, marks=needs_cmaes),
])
def test_options_reach_the_sampler(name, options):
    space = continuous_space()
    default = [t.key for t in run(space, name, continuous_objective, 0, 16).trials]
    tuned = [t.key for t in run(space, name, continuous_objective, 0, 16, **options).trials]
    assert tuned != default
