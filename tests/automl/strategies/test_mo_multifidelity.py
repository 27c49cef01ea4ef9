"""Multi-objective multi-fidelity search: the promotion ranking, mo-asha / mo-hyperband, multi-objective
asha / hyperband / bohb, resume mid-bracket, and ``automl search --objective``."""
from __future__ import annotations

import itertools
import math
import textwrap

import numpy as np
import optuna
import pytest

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.space import Budget
from automl.strategies.base import Observation, TrialState, strategies
from automl.strategies.kde import KDESearcher
from automl.strategies.mo_ranking import crowding_distances, promotion_order
from automl.strategies.pareto import dominates, nondominated_ranks
from automl.testing.strategies import (
    BUDGET,
    STRATEGY_CHECKS,
    check_resume_equivalence,
    conformance_mo_objective,
    conformance_mo_space,
    conformance_space,
)

MO_NAMES = ["mo-asha", "mo-hyperband"]

# front 0: A B C D (A and D its extremes); front 1: E F; front 2: G
POINTS = {"A": (1, 5), "B": (2, 3), "C": (3, 2.5), "D": (5, 1), "E": (3, 4), "F": (4, 3), "G": (5, 5)}


def test_fronts_then_crowding_then_trial_number():
    losses = list(POINTS.values())
    assert nondominated_ranks(losses) == [0, 0, 0, 0, 1, 1, 2]
    # front 0, ranges 4 and 4: B = (3-1)/4 + (5-2.5)/4 = 1.125, C = (5-2)/4 + (3-1)/4 = 1.25
    assert crowding_distances(losses[:4]) == [math.inf, 1.125, 1.25, math.inf]
    order = promotion_order(losses, list(range(len(losses))))
    assert [list(POINTS)[i] for i in order] == ["A", "D", "C", "B", "E", "F", "G"]
    # the trial number breaks ties (both extremes are infinitely crowded): D first when it is the older trial
    assert [list(POINTS)[i] for i in promotion_order(losses, [6, 5, 4, 3, 2, 1, 0])][:2] == ["D", "A"]


def test_duplicates_share_their_crowding_and_failures_come_last():
    losses = [(1.0, 3.0), (math.inf, math.inf), (2.0, 2.0), (2.0, 2.0), (3.0, 1.0)]
    assert crowding_distances([losses[0], losses[2], losses[3], losses[4]]) == [math.inf, 2.0, 2.0, math.inf]
    assert promotion_order(losses, [10, 11, 12, 13, 14]) == [0, 4, 2, 3, 1]


def test_one_objective_is_the_loss_then_number_order():
    rng = np.random.default_rng(0)
    losses = [(float(v),) for v in rng.integers(0, 5, size=40)] + [(math.inf,)] * 3
    numbers = list(rng.permutation(len(losses)))
    expected = sorted(range(len(losses)), key=lambda i: (losses[i][0], numbers[i]))
    assert promotion_order(losses, numbers) == expected


@pytest.mark.parametrize("dims", [2, 3])  # two objectives have their own O(n log n) sort
def test_fast_nondominated_sort_matches_the_definition(dims):
    rng = np.random.default_rng(dims)
    for _ in range(20):
        points = [tuple(p) for p in rng.integers(0, 6, size=(40, dims)).astype(float)]  # many ties
        points[:3] = [(math.inf,) * dims, (math.inf, *points[3][1:]), points[4]]  # failures, a duplicate
        remaining, ranks, rank = set(range(len(points))), {}, 0
        while remaining:
            front = {i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)}
            ranks.update({i: rank for i in front})
            remaining -= front
            rank += 1
        assert nondominated_ranks(points) == [ranks[i] for i in range(len(points))]


def test_mo_strategies_are_registered():
    assert {"mo-asha", "mo-hyperband"} <= set(strategies.names())


@pytest.mark.parametrize("name", MO_NAMES)
@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
def test_conformance(name, check):
    check(name)


@pytest.mark.parametrize("name", MO_NAMES)
def test_resume_equivalence(name, tmp_path):
    check_resume_equivalence(name, str(tmp_path))  # 12 of the first bracket's 13 trials, then a restart


@pytest.mark.parametrize("name,plain", [("mo-asha", "asha"), ("mo-hyperband", "hyperband")])
def test_single_objective_space_is_refused_naming_the_alternative(name, plain):
    with pytest.raises(ConfigError, match=rf"{name} needs a space with two or more objectives; the study has 1 "
                                          rf"\(value\).*use {plain}$"):
        automl.create_study(conformance_space(), strategy=name, budget=BUDGET)


def test_hpbandster_bohb_refuses_several_objectives_naming_bohb_and_mo_asha():
    with pytest.raises(ConfigError, match="HpBandSter, which optimises one objective; the study has 2 "
                                          r"\(loss, size\): use bohb .*mo-asha"):
        automl.create_study(conformance_mo_space(), strategy="hpbandster-bohb", budget=BUDGET)


@pytest.mark.parametrize("name", ["asha", "hyperband", "successive-halving", "bohb"])
def test_every_multi_fidelity_strategy_takes_several_objectives(name):
    study = automl.create_study(conformance_mo_space(), strategy=name, seed=0, budget=BUDGET)
    study.optimize(conformance_mo_objective, n_trials=30)
    assert max(t.budget for t in study.trials) == 9  # something was promoted to the top rung
    assert study.best_trials and all(len(t.values) == 2 for t in study.best_trials)


TOY = """
name: toy2
objectives: {error: min, cost: min}
budget: {name: epochs, min: 1, max: 9}
space:
  x: {type: float, low: 0.0, high: 1.0}
  waste: {type: float, low: 0.0, high: 1.0}
"""


def toy(config, budget):
    """error falls with x, cost rises with it: the front is waste = 0 (noise shrinks with the budget)."""
    noise = 0.05 / budget * math.sin(1000 * config["x"])
    return {"error": 1 - config["x"] + config["waste"] + noise, "cost": config["x"] + config["waste"]}


def test_asha_promotes_non_dominated_configs():
    study = automl.create_study(automl.space_from_yaml(TOY), strategy="asha", seed=0)
    study.optimize(toy, n_trials=60)
    trials = study.trials
    losses = {t.number: study.losses(t) for t in trials}
    promoted_for_cost = False
    for t in trials:
        if t.budget != 3:
            continue
        rung = [u for u in trials if u.budget == 1 and u.number < t.number]
        already = {u.key for u in trials if u.budget == 3 and u.number < t.number}
        mine = next(u for u in rung if u.key == t.key)
        order = promotion_order([losses[u.number] for u in rung], [u.number for u in rung])
        assert mine.number in {rung[i].number for i in order[: len(rung) // 3]}
        # nothing that dominates it was left behind: what dominates a config ranks before it
        assert not any(dominates(losses[u.number], losses[mine.number]) for u in rung if u.key not in already)
        # one objective alone would never promote a config that another beats on error
        promoted_for_cost |= any(losses[u.number][0] < losses[mine.number][0] for u in rung if u.key not in already)
    assert promoted_for_cost
    assert {t.budget for t in trials} == {1, 3, 9}


@pytest.mark.parametrize("name", MO_NAMES)
def test_restore_mid_bracket_with_running_trials_gives_the_same_proposals(name):
    space = conformance_mo_space()
    cls = strategies.get(name)
    objectives, budget = space.objectives, Budget("budget", 1, 9)

    def observation(number, proposal, done):
        values = conformance_mo_objective(proposal.config)
        return Observation(number, proposal.config, space.key(proposal.config),
                           TrialState.COMPLETE if done else TrialState.RUNNING,
                           (values["loss"], values["size"]) if done else None, proposal.budget, proposal.info)

    straight = cls(space, objectives, 4, budget)
    history, pending = [], []
    for number in itertools.count():
        proposal = straight.ask(number)
        if number >= 10 and len(pending) < 2:  # two trials still running when the study is interrupted
            pending.append(observation(number, proposal, done=False))
            if len(pending) == 2:
                break
            continue
        history.append(observation(number, proposal, done=True))
        straight.tell(history[-1])
    resumed = cls(space, objectives, 4, budget)
    resumed.restore(history, pending)
    for number in range(len(history) + 2, len(history) + 6):
        a, b = straight.ask(number), resumed.ask(number)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (space.key(a.config), a.budget, dict(a.info)) == (space.key(b.config), b.budget, dict(b.info))


def test_kde_splits_good_and_bad_by_multi_objective_rank():
    space = automl.space_from_yaml("name: k\nspace:\n  x: {type: float, low: 0, high: 1}\n")
    searcher = KDESearcher(space, random_fraction=0.0)
    rng = np.random.default_rng(0)
    for _ in range(60):
        x = float(rng.random())
        # both objectives are smallest near x = 0.2, in different ways: the good set is around it
        searcher.observe({"x": x}, 1.0, (abs(x - 0.2), (x - 0.2) ** 2 + 0.01 * x))
    suggestions = [searcher.suggest(np.random.default_rng(i))["x"] for i in range(40)]
    assert np.median(np.abs(np.array(suggestions) - 0.2)) < 0.1


QUICK = """
name: quick2
task: digits
builder: mlp
objectives: {accuracy: max}
budget: {name: epochs, min: 1, max: 3}
space:
  model:
    layers:
      type: repeat
      min: 1
      max: 2
      item:
        width: {type: int, low: 8, high: 64, log: true}
        activation: {type: categorical, choices: [relu, tanh]}
  train:
    lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
"""


def test_search_command_line_with_objectives(tmp_path, capsys):
    (tmp_path / "quick2.yaml").write_text(textwrap.dedent(QUICK))
    storage = f"sqlite:///{tmp_path}/mo.db"
    common = ["search", "--space", str(tmp_path / "quick2.yaml"), "--storage", storage, "--output", str(tmp_path),
              "--seed", "0", "--trials", "3"]
    assert main([*common, "--strategy", "mo-asha"]) == 2
    assert "mo-asha needs a space with two or more objectives" in capsys.readouterr().err
    assert main([*common, "--strategy", "mo-asha", "--objective", "accuracy=max",
                 "--objective", "latency=min"]) == 2
    err = capsys.readouterr().err
    assert "'latency' is not a metric estimator 'train' reports" in err and "latency_ms" in err
    assert main([*common, "--strategy", "mo-asha", "--objective", "accuracy=max",
                 "--objective", "latency_ms=min", "--study-name", "mo"]) == 0
    assert "Pareto front of mo" in capsys.readouterr().out
    study = optuna.load_study(study_name="mo", storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all(t.values[1] > 0 for t in done)  # latency_ms measured
    # the objectives are part of the study: the same name with the space's own objectives is another study
    assert main([*common, "--strategy", "asha", "--study-name", "mo"]) == 2


def test_create_study_objectives_replace_the_spaces_and_change_the_fingerprint():
    plain = automl.create_study(conformance_space(), strategy="asha", budget=BUDGET)
    study = automl.create_study(conformance_space(), strategy="mo-asha", budget=BUDGET,
                                objectives={"loss": "min", "size": "minimize"})
    assert [(o.name, o.direction) for o in study.objectives] == [("loss", "min"), ("size", "min")]
    assert study.space.fingerprint != plain.space.fingerprint
    study.optimize(conformance_mo_objective, n_trials=6)
    assert len(study.completed()) == 6
    with pytest.raises(ConfigError, match="objective 'size': expected a metric name and 'max' or 'min'"):
        automl.create_study(conformance_space(), objectives={"loss": "min", "size": "smallest"})
