"""The morphism-evolution strategy: conformance, Pareto-front parents, and the builder's morphisms."""
from __future__ import annotations

import numpy as np
import pytest

from automl.errors import ConfigError
from automl.registry import builders, morphisms
from automl.space import space_from_yaml
from automl.strategies.base import strategies
from automl.strategies.pareto import pareto_front
from automl.study import create_study
from automl.testing.strategies import STRATEGY_CHECKS, check_resume_equivalence

BUILDER = "test-morph-builder"
SPACE = f"""
name: morph-toy
builder: {BUILDER}
objectives: {{score: max, cost: min}}
space:
  depth: {{type: int, low: 1, high: 8}}
  width: {{type: categorical, choices: [8, 16, 32, 64]}}
"""


def _grow(space, config, rng, *, teacher_p):  # a builder's morphism: one step of depth or width
    child = dict(config)
    if rng.random() < 0.5 and child["depth"] < 8:
        child["depth"] += 1
        return child, "deeper"
    widths = [8, 16, 32, 64]
    child["width"] = widths[min(widths.index(child["width"]) + 1, 3)] if rng.random() < 0.5 else widths[0]
    return child, f"width {child['width']} (teacher_p {teacher_p})"


morphisms.add(BUILDER, _grow)
builders.add(BUILDER, lambda config, info: None)  # never built here (the objective is a function); named spaces need it


def _objective(config):
    return {"score": config["depth"] * np.log2(config["width"]), "cost": config["depth"] * config["width"]}


@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    check("morphism-evolution", population=5)


def test_resume_equivalence(tmp_path):
    check_resume_equivalence("morphism-evolution", str(tmp_path), population=5)


def test_registered():
    assert "morphism-evolution" in strategies.names()


def test_children_are_morphs_of_front_members_and_name_their_parent():
    space = space_from_yaml(SPACE, source="morph.yaml")
    study = create_study(space, strategy="morphism-evolution", seed=3, strategy_options={"population": 3,
                                                                                          "teacher_p": 0.5})
    study.optimize(_objective, n_trials=25)
    trials = study.trials
    assert [t.info["origin"] for t in trials[:3]] == ["random"] * 3
    for t in trials[3:]:
        assert t.info["origin"] == "morph"
        parent = trials[t.info["parent"]]
        assert t.info["parent_key"] == parent.key
        assert t.info["action"] == "deeper" or t.info["action"].startswith("width")
        assert "teacher_p 0.5" in t.info["action"] or t.info["action"] == "deeper"
        # the parent was on the Pareto front of the trials finished before this one was asked
        earlier = [p for p in trials[:t.number] if p.values is not None]
        losses = [(-p.values["score"], p.values["cost"]) for p in earlier]
        assert parent.number in {earlier[i].number for i in pareto_front(losses)}


def test_a_space_without_a_morphism_falls_back_to_mutation():
    space = space_from_yaml(SPACE.replace(f"builder: {BUILDER}\n", ""), source="plain.yaml")
    study = create_study(space, strategy="morphism-evolution", seed=0, strategy_options={"population": 2})
    study.optimize(_objective, n_trials=8)
    assert {t.info.get("action") for t in study.trials[2:]} == {"mutate"}


@pytest.mark.parametrize("options", [{"population": 0}, {"teacher_p": 1.5}, {"tournament": 3}])
def test_bad_options(options):
    space = space_from_yaml(SPACE, source="morph.yaml")
    with pytest.raises(ConfigError):
        create_study(space, strategy="morphism-evolution", strategy_options=options)


def test_a_failed_initial_population_does_not_stall_the_search():
    space = space_from_yaml(SPACE, source="morph.yaml")
    study = create_study(space, strategy="morphism-evolution", seed=0, strategy_options={"population": 2})

    def failing_at_first(config):
        if study.trials and len(study.trials) <= 3:
            raise RuntimeError("diverged")
        return _objective(config)

    study.optimize(failing_at_first, n_trials=6)
    origins = [t.info["origin"] for t in study.trials]
    assert len(study.trials) == 6 and origins[:3] == ["random"] * 3
    assert "morph" in origins[3:]
