"""hpbandster-bohb: HpBandSter's BOHB (the reference implementation) driven in-process behind ask/tell."""
from __future__ import annotations

import collections
import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("hpbandster")

import automl
from automl.errors import ConfigError
from automl.space import space_from_yaml
from automl.strategies.base import (
    Observation,
    TrialState,
    strategies,
)

BUDGET = {"min": 1, "max": 27}
# eta=3, budgets 1..27: HpBandSter's four brackets, (iteration -> {budget: trials}); 65 trials in all
BRACKETS = {
    0: {1.0: 27, 3.0: 9, 9.0: 3, 27.0: 1},
    1: {3.0: 9, 9.0: 3, 27.0: 1},
    2: {9.0: 6, 27.0: 2},
    3: {27.0: 4},
}
ROUND = sum(sum(b.values()) for b in BRACKETS.values())

QUAD_YAML = """
name: quad
space:
  x: {type: float, low: -5.0, high: 5.0}
  y: {type: float, low: -5.0, high: 5.0}
"""


@pytest.fixture(scope="module")
def quad():
    return space_from_yaml(QUAD_YAML, source="quad.yaml")


def true_loss(config):
    return (config["x"] - 1.0) ** 2 + (config["y"] + 0.5) ** 2


def noisy(config, budget):
    """The quadratic plus a deterministic wiggle that shrinks with the budget (higher = less noise)."""
    return true_loss(config) + 2.0 * math.sin(17 * config["x"] + 11 * config["y"]) / budget


def run(space, n_trials, seed=0, objective=noisy, storage=None, **options):
    study = automl.create_study(space, strategy="hpbandster-bohb", seed=seed, budget=BUDGET, storage=storage,
                                strategy_options=options or None)
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.fixture(scope="module")
def one_round(quad):
    return run(quad, ROUND)


def test_registered():
    assert "hpbandster-bohb" in strategies.names()


def test_budgets_follow_hpbandster_brackets(one_round):
    trials = one_round.trials
    assert len(trials) == ROUND
    counts = collections.defaultdict(collections.Counter)
    for t in trials:
        counts[t.info["config_id"][0]][t.budget] += 1
    assert {i: dict(c) for i, c in counts.items()} == BRACKETS
    # one worker: the first bracket runs rung by rung, 27 at budget 1, 9 at 3, 3 at 9, 1 at 27
    assert [t.budget for t in trials[:40]] == [1.0] * 27 + [3.0] * 9 + [9.0] * 3 + [27.0]
    assert all(t.state is TrialState.COMPLETE for t in trials)


def test_promoted_configs_are_the_best_of_their_rung(one_round):
    rungs = collections.defaultdict(list)  # (iteration, budget) -> trials
    for t in one_round.trials:
        rungs[t.info["config_id"][0], t.budget].append(t)
    checked = 0
    for (iteration, budget), trials in rungs.items():
        promoted = rungs.get((iteration, budget * 3))
        if not promoted:
            continue
        best = sorted(trials, key=lambda t: t.value)[:len(promoted)]
        assert {t.key for t in promoted} == {t.key for t in best}, (iteration, budget)
        # a promotion keeps HpBandSter's config_id and the very same config
        ids = {tuple(t.info["config_id"]): t.key for t in trials}
        assert all(ids[tuple(t.info["config_id"])] == t.key for t in promoted)
        checked += 1
    assert checked == 6  # 3 + 2 + 1 promotions steps in the four brackets


def test_seeded_determinism_and_global_rng_untouched(quad):
    np.random.seed(1234)
    before = np.random.get_state()
    a = run(quad, 45, seed=5)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    b = run(quad, 45, seed=5)
    c = run(quad, 45, seed=6)
    seq = lambda s: [(t.key, t.budget) for t in s.trials]  # noqa: E731
    assert seq(a) == seq(b)
    assert seq(a) != seq(c)


def test_needs_a_budget(quad):
    with pytest.raises(ConfigError, match="hpbandster-bohb needs a budget range"):
        automl.create_study(quad, strategy="hpbandster-bohb", seed=0)


def test_graph_space_is_rejected(graph_space):
    with pytest.raises(ConfigError, match="'cell'"):
        automl.create_study(graph_space, strategy="hpbandster-bohb", seed=0, budget=BUDGET)


def test_options_are_validated(quad):
    with pytest.raises(ConfigError, match="eta"):
        automl.create_study(quad, strategy="hpbandster-bohb", budget=BUDGET, strategy_options={"eta": 1})
    with pytest.raises(ConfigError, match="unknown options"):
        automl.create_study(quad, strategy="hpbandster-bohb", budget=BUDGET, strategy_options={"etta": 3})


def test_finds_a_good_region(quad, one_round):
    """Model-based proposals beat random sampling, and the incumbent at full budget beats the median
    random trial by far."""
    model = [true_loss(t.config) for t in one_round.trials if t.info["model_based_pick"]]
    prior = [true_loss(t.config) for t in one_round.trials if t.info["model_based_pick"] is False]
    assert len(model) >= 10
    random = automl.create_study(quad, strategy="random", seed=0)
    random.optimize(true_loss, n_trials=ROUND)
    random_median = float(np.median([t.value for t in random.trials]))
    assert np.median(model) < np.median(prior)
    assert np.median(model) < random_median / 2
    best_full = min(true_loss(t.config) for t in one_round.trials if t.budget == 27.0)
    assert best_full < random_median / 5


def test_failed_trials_are_crashed_jobs(quad):
    def sometimes_fails(config, budget):
        if config["x"] > 2.0:
            raise RuntimeError("diverged")
        return noisy(config, budget)

    study = run(quad, 40, objective=sometimes_fails)
    trials = study.trials
    failed = [t for t in trials if t.state is TrialState.FAILED]
    assert failed and len(trials) == 40
    first_rung = [t for t in trials if t.info["config_id"][0] == 0 and t.budget == 1.0]
    promoted = {t.key for t in trials if t.budget > 1.0}
    assert not promoted & {t.key for t in failed}
    done = sorted((t for t in first_rung if t.state is TrialState.COMPLETE), key=lambda t: t.value)
    assert {t.key for t in trials if t.info["config_id"][0] == 0 and t.budget == 3.0} == {t.key for t in done[:9]}


def test_n_iterations_ends_the_study(quad):
    study = run(quad, 500, n_iterations=2)
    assert len(study.trials) == 40 + 13


def test_mixed_space_round_trips(toy_space):
    """Bools, categoricals, log and stepped ints, conditional params and repeats: every proposal is valid
    (the driver validates it) and categorical choices come back as themselves."""
    def objective(config, budget):
        return (config["x"] - 1.0) ** 2 + sum(1.0 / b["width"] for b in config["blocks"]) + 1.0 / budget

    study = run(toy_space, 60, objective=objective)
    assert len(study.trials) == 60
    kinds = {t.config["kind"] for t in study.trials}
    flags = {t.config["flag"] for t in study.trials}
    assert kinds == {"a", "b", "c"} and flags == {False, True}
    assert {len(t.config["blocks"]) for t in study.trials} == {1, 2, 3}
    for t in study.trials:
        assert not toy_space.problems(t.config)


def test_odd_categorical_choices():
    space = space_from_yaml("""
name: odd
space:
  c: {type: categorical, choices: [1, "1", null, false, 2.5]}
  k: {type: int, low: 0, high: 12, step: 4}
  lr: {type: float, low: 0.0001, high: 0.1, log: true}
""", source="odd.yaml")
    study = run(space, 40, objective=lambda config, budget: config["lr"] + (config["c"] == "1"))
    seen = {(type(t.config["c"]).__name__, t.config["c"]) for t in study.trials}
    assert seen == {("int", 1), ("str", "1"), ("NoneType", None), ("bool", False), ("float", 2.5)}
    assert {t.config["k"] for t in study.trials} == {0, 4, 8, 12}
    assert sum(bool(t.info["model_based_pick"]) for t in study.trials) >= 5  # KDE vectors map back too


def test_resume_replays_to_the_same_state(quad, tmp_path):
    """40 trials straight == 17, then a new study object from the ledger (a restart), then 23 more: the
    ledger's config ids, budgets and configs are identical (the KDE model was rebuilt exactly)."""
    straight = run(quad, 75)
    url = f"sqlite:///{tmp_path}/bohb.db"
    run(quad, 17, storage=url)
    resumed = automl.create_study(quad, strategy="hpbandster-bohb", storage=url, budget=BUDGET)
    resumed.optimize(noisy, n_trials=58)
    seq = lambda s: [(t.key, t.budget, t.info["config_id"], t.info["model_based_pick"]) for t in s.trials]  # noqa: E731
    assert seq(resumed) == seq(straight)
    # in memory, each optimize() call rebuilds the strategy from the ledger too
    again = run(quad, 29)
    again.optimize(noisy, n_trials=46)
    assert seq(again) == seq(straight)


def test_resume_with_other_settings_is_refused(quad, tmp_path):
    url = f"sqlite:///{tmp_path}/bohb.db"
    run(quad, 30, storage=url)
    other = automl.create_study(quad, strategy="hpbandster-bohb", storage=url, budget={"min": 1, "max": 9})
    with pytest.raises(ConfigError, match="cannot resume"):
        other.optimize(noisy, n_trials=1)


# -- against HpBandSter's own Master ----------------------------------------------------------------
class _InlineDispatcher:
    """Stands in for hpbandster's Pyro4 dispatcher: runs each job at once, in this thread."""

    objective = None

    def __init__(self, new_result_callback, queue_callback=None, **_):
        self.callback = new_result_callback
        self.submitted = []

    def run(self):
        pass

    def shutdown(self, shutdown_workers=False):
        pass

    def number_of_workers(self):
        return 1

    def trigger_discover_worker(self):
        pass

    def submit_job(self, id, **kwargs):
        from hpbandster.core.dispatcher import Job

        job = Job(id, **kwargs)
        self.submitted.append((id, dict(kwargs["config"]), kwargs["budget"]))
        job.result = {"loss": self.objective(kwargs["config"], kwargs["budget"]), "info": {}}
        self.callback(job)


def test_same_runs_as_hpbandsters_master(quad, monkeypatch, tmp_path):
    """HpBandSter's real ``BOHB`` optimizer (its Master.run loop, iterations and config generator), with
    the Pyro dispatcher replaced by an inline one and the same per-trial seeding, proposes exactly
    the same config ids, budgets and configs as the strategy."""
    import hpbandster.core.master as master
    from hpbandster.optimizers.bohb import BOHB

    seed, n_iterations = 3, 5
    study = run(quad, 1000, seed=seed, n_iterations=n_iterations)
    strategy = strategies.get("hpbandster-bohb")(quad, study.objectives, seed, study.budget)
    configspace = strategy.configspace

    monkeypatch.setattr(master, "Dispatcher", _InlineDispatcher)
    _InlineDispatcher.objective = staticmethod(lambda config, budget: noisy(dict(config), budget))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        opt = BOHB(configspace=configspace, run_id="ref", eta=3, min_budget=1, max_budget=27,
                   job_queue_sizes=(0, 1), dynamic_queue_size=False, working_directory=str(tmp_path))
    cg = opt.config_generator
    get_config, new_result = cg.get_config, cg.new_result

    def seeded_get_config(budget):  # the strategy's seeding: (seed, trial number, 0)
        words = np.random.SeedSequence([seed, len(opt.dispatcher.submitted), 0]).generate_state(2)
        np.random.seed(int(words[0]))
        configspace.seed(int(words[1]))
        return get_config(budget)

    cg.get_config = seeded_get_config
    cg.new_result = lambda job, update_model=True: new_result(job, update_model)
    # Master.run holds its (re-entrant) condition while the inline dispatcher calls job_callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.run(n_iterations=n_iterations, min_n_workers=1)
    reference = opt.dispatcher.submitted
    ours = [(tuple(t.info["config_id"]), t.info["hb_config"], t.budget) for t in study.trials]
    assert len(ours) == len(reference) == 40 + 13 + 8 + 4 + 40
    for (rid, rconf, rbudget), (oid, oconf, obudget) in zip(reference, ours):
        assert rid == oid and rbudget == obudget
        assert rconf.keys() == oconf.keys() and all(math.isclose(rconf[k], oconf[k]) for k in rconf)



def test_restore_is_exact_with_parallel_workers(quad):
    """Three simulated workers finishing in random order, cut off with trials still running: a fresh
    strategy restored from the finished and pending trials continues exactly as the original."""
    cls = strategies.get("hpbandster-bohb")
    objectives = (automl.space.Objective("value", "min"),)
    budget = automl.space.Budget("budget", 1.0, 27.0)

    def observe(number, proposal, state=TrialState.COMPLETE):
        loss = (noisy(proposal.config, proposal.budget),) if state is TrialState.COMPLETE else None
        return Observation(number, proposal.config, quad.key(proposal.config), state, loss, proposal.budget,
                           json.loads(json.dumps(dict(proposal.info))))

    def drive(strategy, number, running, told, n_asks, rng):
        proposals = []
        while len(proposals) < n_asks:
            while len(running) < 3:
                proposal = strategy.ask(number)
                if proposal is None:
                    break
                state = TrialState.FAILED if rng.random() < 0.1 else TrialState.COMPLETE
                running.append(observe(number, proposal, state))
                proposals.append((proposal.info["config_id"], proposal.budget, proposal.config))
                number += 1
            done = running.pop(int(rng.integers(len(running))))
            strategy.tell(done)
            told.append(done)
        return number, proposals

    original, running, told = cls(quad, objectives, 11, budget), [], []
    number, first = drive(original, 0, running, told, 70, np.random.default_rng(0))
    assert running and any(o.state is TrialState.FAILED for o in told)
    assert len({tuple(p[0][:1]) for p in first}) > 2  # several brackets were open at once
    restored = cls(quad, objectives, 11, budget)
    restored.restore(sorted(told, key=lambda o: o.number), sorted(running, key=lambda o: o.number))
    # the cut-off trials go on running in both; then 60 more proposals each
    _, a = drive(original, number, list(running), [], 60, np.random.default_rng(1))
    _, b = drive(restored, number, list(running), [], 60, np.random.default_rng(1))
    assert a == b
    assert sum(p[2] != q[2] for p, q in zip(a, first[:60])) > 30  # not a trivial repeat
