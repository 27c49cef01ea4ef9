"""A killed and resumed study evaluates exactly what an uninterrupted one would have: the same
candidates, in the same order, trained with the same seeds (README: "the proposals are the ones an
uninterrupted run would have made")."""
from __future__ import annotations

import pytest

import automl
from automl.estimator import EvalContext
from tests.conftest import toy_objective


def _sequence(study: automl.Study) -> list[tuple[str, float | None]]:
    """What the study evaluated, attempt by attempt in order, re-runs in their attempt's place."""
    return [(t.key, t.value) for t in study.trials if not t.requeued]


def _interrupting(kill_at: set[int]):
    calls = {"n": 0}

    def objective(config):
        calls["n"] += 1
        if calls["n"] in kill_at:
            raise KeyboardInterrupt  # the search stops with this trial in flight
        return toy_objective(config)

    return objective


@pytest.mark.parametrize("strategy", ["random", "evolution", "tpe"])
def test_a_study_interrupted_several_times_evaluates_what_an_uninterrupted_one_does(toy_space, tmp_path, strategy):
    options = {"population": 4, "tournament": 2} if strategy == "evolution" else {}
    reference = automl.create_study(toy_space, strategy=strategy, strategy_options=options, seed=7)
    reference.optimize(toy_objective, n_trials=14)

    url = f"sqlite:///{tmp_path}/ledger.db"
    kills = {3, 6, 7, 11}  # calls of the objective that are cut off (a re-run is a call too)
    objective = _interrupting(kills)
    for _ in range(len(kills) + 1):
        study = automl.create_study(toy_space, strategy=strategy, strategy_options=options, seed=7, storage=url)
        try:
            study.optimize(objective, total_trials=14)
            break
        except KeyboardInterrupt:
            continue
    assert sum(t.requeued for t in study.trials) == len(kills)
    finished = [t for t in study.trials if not t.requeued]
    # a re-run sits where its attempt was: order the finished trials by the attempt they replace
    assert sorted(_sequence(study)) == sorted(_sequence(reference))
    slots = [int(t.info.get("slot", t.number)) for t in finished]
    ordered = [(t.key, t.value) for _, t in sorted(zip(slots, finished), key=lambda p: p[0])]
    assert ordered == _sequence(reference)


def test_a_re_run_trains_with_the_seed_of_the_attempt_it_replaces(toy_space, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    seen: list[tuple[int, dict]] = []

    def objective(config, budget, number, info):
        seen.append((number, dict(info)))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return toy_objective(config)

    study = automl.create_study(toy_space, strategy="random", seed=3, storage=url)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=4)
    automl.create_study(toy_space, strategy="random", seed=3, storage=url).optimize(objective, total_trials=4)
    # attempt 1 was cut off; its re-run is trial 2 and carries slot 1, the trial after it slot 2
    numbers = [(n, info.get("slot", n)) for n, info in seen]
    assert numbers == [(0, 0), (1, 1), (2, 1), (3, 2), (4, 3)]
    ctx = EvalContext(space=toy_space, seed=3, trial_number=2, info=seen[2][1])
    assert ctx.trial_seed == EvalContext(space=toy_space, seed=3, trial_number=1).trial_seed


def test_strategies_see_slots_and_the_ledger_names_the_parent_trial(toy_space, tmp_path):
    """Evolution's ``parent`` in the ledger is a trial number (a re-run's, not its cut-off attempt's)."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    options = {"population": 3, "tournament": 2}
    study = automl.create_study(toy_space, strategy="evolution", strategy_options=options, seed=1, storage=url)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(_interrupting({2}), n_trials=8)
    study = automl.create_study(toy_space, strategy="evolution", strategy_options=options, seed=1, storage=url)
    study.optimize(toy_objective, total_trials=8)
    trials = study.trials
    by_number = {t.number: t for t in trials}
    for t in trials:
        if "parent" in t.info:
            parent = by_number[t.info["parent"]]
            assert not parent.requeued and parent.value is not None
