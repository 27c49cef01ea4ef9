"""Conformance checks every strategy must pass; a plugin's tests call them with its strategy's name.

    @pytest.mark.parametrize("check", STRATEGY_CHECKS)
    def test_my_strategy(check):
        check("my-strategy")

A strategy that needs several objectives (``min_objectives`` > 1, e.g. ``mo-asha``) is checked on the
two-objective variant of the problem (:func:`conformance_mo_space`, :func:`conformance_mo_objective`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from automl.space import SearchSpace, space_from_yaml
from automl.strategies.base import strategies
from automl.study import Study, create_study

CONFORMANCE_SPACE = """
name: conformance
space:
  x: {type: float, low: -3.0, high: 3.0}
  n: {type: int, low: 1, high: 16}
  kind: {type: categorical, choices: [a, b, c]}
  extra: {type: float, low: 0.0, high: 1.0, when: "kind == 'b'"}
  blocks:
    type: repeat
    min: 1
    max: 3
    item:
      width: {type: int, low: 1, high: 8}
"""


CONFORMANCE_MO_SPACE = CONFORMANCE_SPACE.replace("name: conformance\n",
                                                "name: conformance-mo\nobjectives: {loss: min, size: min}\n")


def conformance_space() -> SearchSpace:
    return space_from_yaml(CONFORMANCE_SPACE, source="<conformance>")


def conformance_objective(config: dict[str, Any]) -> float:
    loss = (config["x"] - 1.0) ** 2 + abs(config["n"] - 5) / 4 + (0.0 if config["kind"] == "c" else 1.0)
    total: float = loss + sum(abs(b["width"] - 6) for b in config["blocks"]) / 8
    return total


def conformance_mo_space() -> SearchSpace:
    """The conformance space with two objectives to minimise: ``loss`` and ``size`` (which conflict)."""
    return space_from_yaml(CONFORMANCE_MO_SPACE, source="<conformance-mo>")


def conformance_mo_objective(config: dict[str, Any]) -> dict[str, float]:
    """``loss`` as :func:`conformance_objective`; ``size`` grows with ``n`` and the blocks' widths, which
    the loss wants near 5 and 6: a Pareto front of small-and-worse to large-and-better configs."""
    size = config["n"] + sum(b["width"] for b in config["blocks"]) + (0.5 if config["kind"] == "b" else 0.0)
    return {"loss": conformance_objective(config), "size": float(size)}


def _problem(strategy: str) -> tuple[SearchSpace, Callable[[dict[str, Any]], Any]]:
    """The conformance space and objective, with as many objectives as the strategy needs."""
    if strategies.get(strategy).min_objectives > 1:
        return conformance_mo_space(), conformance_mo_objective
    return conformance_space(), conformance_objective


BUDGET = {"min": 1, "max": 9}  # multi-fidelity strategies use it; others evaluate at the max


def _run(strategy: str, seed: int, n_trials: int, storage: str | None = None, **options: Any) -> Study:
    space, objective = _problem(strategy)
    study = create_study(space, strategy=strategy, storage=storage, seed=seed,
                         strategy_options=options or None, budget=BUDGET)
    study.optimize(objective, n_trials=n_trials)
    return study


def check_proposals_are_valid(strategy: str, **options: Any) -> None:
    space = conformance_space()
    study = _run(strategy, 0, 40, **options)
    assert len(study.trials) == 40
    for trial in study.trials:
        assert not space.problems(trial.config), (trial.number, space.problems(trial.config))


def check_seeded_determinism(strategy: str, **options: Any) -> None:
    a = [(t.key, t.budget) for t in _run(strategy, 7, 30, **options).trials]
    b = [(t.key, t.budget) for t in _run(strategy, 7, 30, **options).trials]
    c = [(t.key, t.budget) for t in _run(strategy, 8, 30, **options).trials]
    assert a == b, "the same seed must give the same proposals"
    assert a != c, "another seed must give other proposals"


def check_resume_equivalence(strategy: str, storage_dir: str, **options: Any) -> None:
    """30 trials straight == 12 trials, a new process-like restart from the ledger, 18 more."""
    straight = [(t.key, t.budget) for t in _run(strategy, 3, 30, **options).trials]
    url = f"sqlite:///{storage_dir}/resume.db"
    _run(strategy, 3, 12, storage=url, **options)
    space, objective = _problem(strategy)
    resumed = create_study(space, strategy=strategy, storage=url, strategy_options=options or None, budget=BUDGET)
    assert resumed.seed == 3, "a resumed study keeps its seed"
    resumed.optimize(objective, n_trials=18)
    assert [(t.key, t.budget) for t in resumed.trials] == straight


def check_no_duplicate_evaluations(strategy: str, **options: Any) -> None:
    study = _run(strategy, 1, 40, **options)
    evaluated = [(t.key, t.budget) for t in study.trials if "duplicate_of" not in t.info]
    assert len(evaluated) == len(set(evaluated))


def check_enqueued_configs_come_first(strategy: str, **options: Any) -> None:
    """Enqueued configs are the first trials, evaluated once; the strategy then goes on with the search
    (it learns from them like from its own)."""
    space, objective = _problem(strategy)
    rng = np.random.default_rng(5)
    given = [space.sample(rng) for _ in range(2)]
    study = create_study(space, strategy=strategy, seed=3, strategy_options=options or None, budget=BUDGET)
    for config in given:
        study.enqueue(config)
    study.optimize(objective, n_trials=12)
    assert [t.config for t in study.trials[:2]] == given
    assert [t.info.get("enqueued") for t in study.trials[:2]] == [0, 1]
    assert len(study.trials) == 12 and all("enqueued" not in t.info for t in study.trials[2:])


STRATEGY_CHECKS: list[Callable[..., None]] = [
    check_proposals_are_valid, check_seeded_determinism, check_no_duplicate_evaluations,
    check_enqueued_configs_come_first,
]
