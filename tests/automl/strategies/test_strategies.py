"""Every registered strategy passes the conformance suite; evolution also searches better than random."""
from __future__ import annotations

import numpy as np
import pytest

from automl.strategies.base import strategies
from automl.strategies.pareto import nondominated_ranks, pareto_front
from automl.study import create_study
from automl.testing.strategies import (
    STRATEGY_CHECKS,
    check_resume_equivalence,
    conformance_objective,
    conformance_space,
)

NAMES = ["random", "evolution", "successive-halving", "hyperband", "asha", "bohb"]


def test_builtin_strategies_are_registered():
    assert set(NAMES) <= set(strategies.names())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
def test_conformance(name, check):
    check(name)


@pytest.mark.parametrize("name", NAMES)
def test_resume_equivalence(name, tmp_path):
    check_resume_equivalence(name, str(tmp_path))


def test_evolution_beats_random_on_the_conformance_problem():
    def best(strategy: str, seed: int) -> float:
        study = create_study(conformance_space(), strategy=strategy, seed=seed,
                             strategy_options={"population": 10, "tournament": 3} if strategy == "evolution" else None)
        study.optimize(conformance_objective, n_trials=80)
        return study.best.value

    evo = np.median([best("evolution", s) for s in range(5)])
    rnd = np.median([best("random", s) for s in range(5)])
    assert evo < rnd


def test_evolution_options_are_validated():
    from automl.errors import ConfigError

    with pytest.raises(ConfigError, match="tournament"):
        create_study(conformance_space(), strategy="evolution", strategy_options={"population": 4, "tournament": 9})
    with pytest.raises(ConfigError, match="unknown options"):
        create_study(conformance_space(), strategy="random", strategy_options={"populaton": 4})


def test_pareto_ranks():
    losses = [(1, 5), (2, 2), (5, 1), (3, 3), (6, 6)]
    assert sorted(pareto_front(losses)) == [0, 1, 2]
    assert nondominated_ranks(losses) == [0, 0, 0, 1, 2]
