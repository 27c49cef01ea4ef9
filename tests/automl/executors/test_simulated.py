"""The simulated executor: trials finish in simulated-time order on N simulated workers, as on a cluster."""
from __future__ import annotations

import math

import pytest

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.estimator import Estimator, Result, estimators
from automl.executors import SimulatedExecutor, make_executor
from automl.executors.simulated import NO_COST
from automl.ledger import Ledger, open_storage
from automl.strategies.base import TrialState
from automl.worker import Outcome
from estimators.hartmann import MFHartmannEstimator, mf_hartmann, optimum

LINE = """
name: line
objectives: {loss: min}
space:
  x: {type: float, low: 0.0, high: 1.0}
"""

MULTI_FIDELITY = """
name: mf-line
objectives: {loss: min}
budget: {name: epochs, min: 1, max: 9}
space:
  x: {type: float, low: 0.0, high: 1.0}
"""

NO_COST_SPACE = """
name: no-cost
estimator: no-cost-test
objectives: {loss: min}
space:
  x: {type: float, low: 0.0, high: 1.0}
"""


class NoCostEstimator(Estimator):
    """A benchmark function that reports its value but no cost (and the space gives no budget)."""

    needs_task = False

    def evaluate(self, candidate, budget, ctx):
        return Result(metrics={"loss": candidate.config["x"]})


def costed(cost: float) -> Outcome:
    return Outcome(TrialState.COMPLETE, {"loss": cost, "cost_seconds": cost}, None, 0.0)


def test_costs_5_1_1_1_on_two_workers_finish_in_simulated_time_order():
    executor = SimulatedExecutor(workers=2)
    futures = [executor.submit(costed, 5.0), executor.submit(costed, 1.0)]
    order = []
    for cost in (1.0, 1.0, None, None):
        (done,) = executor.wait(futures, timeout=1.0)
        futures.remove(done)
        order.append(done.result().metrics)
        if cost is not None:  # a slot is free: start the next trial, as the loop does
            futures.append(executor.submit(costed, cost))
    # worker 0 runs the 5 s trial [0, 5]; worker 1 runs the three 1 s trials back to back
    assert [(m["sim_start_s"], m["sim_end_s"], m["sim_worker"]) for m in order] == [
        (0.0, 1.0, 1), (1.0, 2.0, 1), (2.0, 3.0, 1), (0.0, 5.0, 0)]
    assert executor.clock == 5.0


def test_a_study_records_each_trials_simulated_start_end_worker_and_duration():
    costs = [5.0, 1.0, 1.0, 1.0]
    study = automl.create_study(automl.space_from_yaml(LINE), strategy="random", seed=0, executor="simulated")

    def objective(config, budget, number):
        return {"loss": config["x"], "cost_seconds": costs[number]}

    study.optimize(objective, n_trials=4, n_workers=2)
    placed = [(t.metrics["sim_start_s"], t.metrics["sim_end_s"], t.metrics["sim_worker"], t.duration_s)
              for t in study.trials]
    assert placed == [(0.0, 5.0, 0, 5.0), (0.0, 1.0, 1, 1.0), (1.0, 2.0, 1, 1.0), (2.0, 3.0, 1, 1.0)]


def _asha_run(workers: int, seed: int = 3) -> list:
    study = automl.create_study(automl.space_from_yaml(MULTI_FIDELITY), strategy="asha", seed=seed,
                                strategy_options={"eta": 3}, executor="simulated")

    def objective(config, budget):  # costs grow with the budget; no two trials finish at the same moment
        return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / budget, "cost_seconds": budget * (1.0 + config["x"])}

    study.optimize(objective, n_trials=60, n_workers=workers)
    return study.trials


def test_asha_promotes_on_what_had_finished_in_simulated_time_and_workers_never_idle():
    trials = _asha_run(workers=4)
    assert all(t.state is TrialState.COMPLETE for t in trials)
    by_worker: dict[int, list] = {}
    for t in trials:
        assert t.duration_s == pytest.approx(t.metrics["cost_seconds"])
        by_worker.setdefault(int(t.metrics["sim_worker"]), []).append(t)
    assert sorted(by_worker) == [0, 1, 2, 3]
    for runs in by_worker.values():  # each worker starts its next trial the moment the last one ends
        runs.sort(key=lambda t: t.metrics["sim_start_s"])
        assert runs[0].metrics["sim_start_s"] == 0.0
        assert all(a.metrics["sim_end_s"] == b.metrics["sim_start_s"] for a, b in zip(runs, runs[1:]))
    promoted = [t for t in trials if int(t.info["rung"]) > 0]
    assert promoted
    for t in promoted:  # in the top 1/eta of the lower rung among the results known when it started
        rung = int(t.info["rung"]) - 1
        known = sorted((u.value, u.key) for u in trials if int(u.info["rung"]) == rung
                       and u.metrics["sim_end_s"] <= t.metrics["sim_start_s"])
        assert t.key in [key for _, key in known[: len(known) // 3]]


def test_the_same_seed_gives_the_same_schedule_and_more_workers_finish_sooner():
    schedule = [(t.key, t.budget, t.metrics["sim_end_s"], t.metrics["sim_worker"]) for t in _asha_run(4)]
    assert schedule == [(t.key, t.budget, t.metrics["sim_end_s"], t.metrics["sim_worker"]) for t in _asha_run(4)]
    serial = max(t.metrics["sim_end_s"] for t in _asha_run(1))
    assert max(end for _, _, end, _ in schedule) < serial / 2


def test_a_trial_that_reports_no_cost_costs_its_budget():
    study = automl.create_study(automl.space_from_yaml(MULTI_FIDELITY), strategy="asha", seed=0, executor="simulated")
    study.optimize(lambda config, budget: config["x"] / budget, n_trials=12, n_workers=3)
    assert all(t.duration_s == t.budget == t.metrics["sim_end_s"] - t.metrics["sim_start_s"] for t in study.trials)


def test_an_objective_that_reports_no_cost_stops_the_study_with_one_clear_error():
    study = automl.create_study(automl.space_from_yaml(LINE), strategy="random", seed=0, executor="simulated")
    with pytest.raises(ConfigError, match="report `cost_seconds` or give the space a budget"):
        study.optimize(lambda config: config["x"], n_trials=5, n_workers=2)


def test_a_trial_without_cost_after_others_had_one_fails_with_the_reason():
    study = automl.create_study(automl.space_from_yaml(LINE), strategy="random", seed=0, executor="simulated")
    study.optimize(lambda config, budget, number: {"loss": config["x"], **({"cost_seconds": 2.0} if number != 2
                                                                         else {})}, n_trials=4)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAILED, TrialState.COMPLETE]
    assert NO_COST in study.trials[2].error


def test_a_resumed_simulated_study_continues_its_clock(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sim.db'}"

    def objective(config):
        return {"loss": config["x"], "cost_seconds": 10.0}

    first = automl.create_study(automl.space_from_yaml(LINE), strategy="random", storage=storage, seed=0,
                                executor="simulated")
    first.optimize(objective, n_trials=4, n_workers=2)
    ended = max(t.metrics["sim_end_s"] for t in first.trials)
    assert ended == 20.0
    again = automl.create_study(automl.space_from_yaml(LINE), strategy="random", storage=storage,
                                executor="simulated")
    again.optimize(objective, n_trials=2, n_workers=2)
    later = again.trials[4:]
    assert [(t.metrics["sim_start_s"], t.metrics["sim_end_s"]) for t in later] == [(20.0, 30.0), (20.0, 30.0)]


def test_timeout_is_in_simulated_seconds():
    study = automl.create_study(automl.space_from_yaml(LINE), strategy="random", seed=0, executor="simulated")
    study.optimize(lambda config: {"loss": config["x"], "cost_seconds": 100.0}, timeout=1000.0, n_workers=2)
    # trials start until the clock reaches 1000 s: 2 workers x 10 rounds, all finished by then
    assert len(study.trials) == 20
    assert max(t.metrics["sim_end_s"] for t in study.trials) == 1000.0


def test_create_study_validates_the_executor_name():
    with pytest.raises(ConfigError, match="unknown executor 'simulate'"):
        automl.create_study(automl.space_from_yaml(LINE), executor="simulate")
    assert isinstance(make_executor(8, "simulated"), SimulatedExecutor)
    assert make_executor(8, "simulated").slots == 8


def test_mf_hartmann_is_the_hartmann_function_at_the_top_fidelity_and_flatter_below():
    for dim, minimum in ((3, -3.86278), (6, -3.32237)):
        best = tuple(optimum(dim).values())
        assert mf_hartmann(best, 100.0) == pytest.approx(minimum, abs=1e-4)
        assert mf_hartmann(best, 1.0) > minimum + 0.4  # bias 0.5 lifts the low fidelity
        assert mf_hartmann(best, 3.0) == mf_hartmann(best, 3.0)  # seeded noise
    with pytest.raises(ConfigError, match="dim must be 3 or 6"):
        MFHartmannEstimator(dim=4)
    with pytest.raises(ConfigError, match="preset must be one of"):
        MFHartmannEstimator(preset="awful")


def test_cli_searches_mf_hartmann3_in_simulated_time(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    status = main(["search", "--space", "mf-hartmann3", "--strategy", "asha", "--executor", "simulated",
                   "--workers", "8", "--trials", "24", "--seed", "0", "--storage", storage,
                   "--output", str(tmp_path / "out")])
    assert status == 0
    assert "simulated clock" in capsys.readouterr().out
    trials = Ledger.load(open_storage(storage), "mf-hartmann3").trials()
    assert len(trials) == 24 and all(t.state is TrialState.COMPLETE for t in trials)
    assert {int(t.metrics["sim_worker"]) for t in trials} == set(range(8))
    assert all(math.isclose(t.duration_s, t.metrics["cost_seconds"]) for t in trials)
    assert all(t.value >= -3.86278 for t in trials)  # never below the global minimum


def test_cli_refuses_an_unknown_executor_and_a_space_without_cost(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(estimators._items, "no-cost-test", NoCostEstimator)
    assert main(["search", "--space", "mf-hartmann3", "--executor", "simulate", "--storage",
                 f"sqlite:///{tmp_path / 'a.db'}", "--output", str(tmp_path)]) == 2
    assert "unknown executor 'simulate'" in capsys.readouterr().err
    space = tmp_path / "no-cost.yaml"  # no budget, and the estimator reports no cost_seconds
    space.write_text(NO_COST_SPACE)
    assert main(["search", "--space", str(space), "--executor", "simulated", "--trials", "3", "--storage",
                 f"sqlite:///{tmp_path / 'b.db'}", "--output", str(tmp_path)]) == 2
    assert NO_COST in capsys.readouterr().err
