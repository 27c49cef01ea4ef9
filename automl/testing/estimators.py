"""Conformance checks every estimator must pass, on a space (with its task) and a config of it::

    def test_my_estimator_isolates_rng():
        check_rng_isolation(load_space("my-space"), config, budget=2)
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from automl.estimator import EvalContext
from automl.evaluation import prepare_evaluation
from automl.space.model import SearchSpace

#: metrics that measure the machine rather than the model (left out of comparisons)
TIMING = ("seconds", "_ms", "latency", "cached")


def _comparable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not any(t in k for t in TIMING)}


def evaluate(space: SearchSpace, config: Mapping[str, Any], budget: float | None, *, seed: int = 0,
             trial_number: int = 0, **context: Any) -> dict[str, Any]:
    """The space's estimator on ``config``, with the context a study would build."""
    setup = prepare_evaluation(space)
    ctx = EvalContext(space=space, seed=seed, trial_number=trial_number, task=setup.task, regimes=setup.regimes,
                      metric_sets=setup.metric_sets,
                      **context)
    return dict(setup.make_estimator().evaluate(space.candidate(dict(config)), budget, ctx).all_metrics())


def check_rng_isolation(space: SearchSpace, config: Mapping[str, Any], budget: float | None = None,
                        **context: Any) -> None:
    """Two evaluations of the same trial after different global torch RNG states agree (one seeding
    policy: a score never depends on what the worker ran before), and leave the caller's RNG as it was."""
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        torch.rand(global_seed * 7)
        before = torch.get_rng_state()
        results.append(_comparable(evaluate(space, config, budget, **context)))
        assert torch.equal(torch.get_rng_state(), before), "the estimator changed the caller's RNG state"
    assert results[0] == results[1], f"metrics depend on the global RNG: {results[0]} != {results[1]}"


def check_trial_seeds_differ(space: SearchSpace, config: Mapping[str, Any], budget: float | None = None,
                             **context: Any) -> None:
    """Two trial numbers of one study train differently (their seeds differ)."""
    first = _comparable(evaluate(space, config, budget, trial_number=0, **context))
    second = _comparable(evaluate(space, config, budget, trial_number=1, **context))
    assert first != second, "two trials of the same config gave identical metrics: is the trial seed used?"


def check_metric_sets_reported(space: SearchSpace, config: Mapping[str, Any], budget: float | None = None,
                               **context: Any) -> None:
    """An estimator that says it reports metric sets does: on ``space`` with ``metrics: [robust]`` added (a
    quick setting), the trial's metrics hold the set's, and otherwise the estimator's own numbers."""
    import dataclasses

    robust = ("robust", {"epsilon": 0.05, "steps": 2, "subset": 16, "flatness_samples": 1})
    asked = dataclasses.replace(space, metrics=(*space.metrics, robust))
    plain = _comparable(evaluate(space, config, budget, **context))
    measured = _comparable(evaluate(asked, config, budget, **context))
    assert {"clean_accuracy", "pgd_accuracy", "robust_accuracy", "energy_flatness"} <= set(measured), sorted(measured)
    assert {k: v for k, v in measured.items() if k in plain} == plain, "measuring changed the estimator's own metrics"
