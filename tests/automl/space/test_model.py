"""The space model: sampling stays in bounds, conditions hold, mutation stays valid, keys are canonical."""
from __future__ import annotations

import numpy as np
import pytest

import automl
from automl.errors import ConfigError


def test_samples_stay_in_bounds_and_honour_conditions(toy_space):
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(300):
        config = toy_space.sample(rng)
        toy_space.validate(config)
        assert -5.0 <= config["x"] <= 5.0
        assert 1 <= config["n"] <= 64
        assert ("extra" in config) == (config["kind"] == "b")
        assert 1 <= len(config["blocks"]) <= 3
        for block in config["blocks"]:
            assert block["width"] % 4 == 0 and 4 <= block["width"] <= 32
            assert ("slope" in block) == (block["act"] == "relu")
        kinds.add(config["kind"])
    assert kinds == {"a", "b", "c"}


def test_log_int_sampling_favours_small_values(toy_space):
    rng = np.random.default_rng(1)
    values = [toy_space.sample(rng)["n"] for _ in range(2000)]
    # log-uniform on [1, 64]: about half the mass lies below 8 (uniform would put 11% there)
    assert 0.35 < np.mean(np.array(values) <= 8) < 0.65


def test_mutation_changes_one_site_and_stays_valid(toy_space):
    rng = np.random.default_rng(2)
    config = toy_space.sample(rng)
    for _ in range(300):
        child = toy_space.mutate(config, rng)
        toy_space.validate(child)
        assert toy_space.key(child) != toy_space.key(config)
        config = child


def test_mutation_activates_and_drops_conditional_parameters(toy_space):
    rng = np.random.default_rng(3)
    config = toy_space.sample(rng)
    config["kind"] = "a"
    config.pop("extra", None)
    seen_extra = False
    for _ in range(200):
        child = toy_space.mutate(config, rng)
        toy_space.validate(child)
        if child["kind"] == "b":
            assert "extra" in child
            seen_extra = True
    assert seen_extra


def test_neighbours_are_valid_and_distinct(toy_space):
    config = toy_space.sample(np.random.default_rng(4))
    neighbours = toy_space.neighbours(config)
    assert len(neighbours) >= 5
    keys = {toy_space.key(n) for n in neighbours}
    assert toy_space.key(config) not in keys
    for n in neighbours:
        toy_space.validate(n)


def test_key_is_canonical_over_key_order_and_number_types(toy_space):
    config = toy_space.sample(np.random.default_rng(5))
    reordered = dict(reversed(list(config.items())))
    assert toy_space.key(reordered) == toy_space.key(config)
    as_float = dict(config, x=float(config["x"]))
    assert toy_space.encode(as_float) == toy_space.encode(config)
    other = dict(config, x=config["x"] + 0.5 if config["x"] < 4 else config["x"] - 0.5)
    assert toy_space.key(other) != toy_space.key(config)


def test_validate_reports_every_problem(toy_space):
    config = toy_space.sample(np.random.default_rng(6))
    config["x"] = 99.0
    config["kind"] = "z"
    config["bogus"] = 1
    with pytest.raises(ConfigError) as info:
        toy_space.validate(config)
    message = str(info.value)
    assert "x: 99.0 is outside [-5.0, 5.0]" in message
    assert "kind: 'z' is not one of" in message
    assert "bogus: unknown parameter" in message


def test_validate_rejects_inactive_parameter(toy_space):
    config = toy_space.sample(np.random.default_rng(7))
    config["kind"] = "a"
    config["extra"] = 0.5
    assert any("condition" in p for p in toy_space.problems(config))


def test_flatten_round_trip(toy_space):
    distributions = toy_space.flatten()
    assert "blocks#len" in distributions and "blocks[2].width" in distributions
    rng = np.random.default_rng(8)
    for _ in range(50):
        config = toy_space.sample(rng)
        params = toy_space.flat_params(config)
        for name, value in params.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value))
        assert toy_space.unflatten(params) == config


def test_graph_samples_are_valid_dags(graph_space):
    rng = np.random.default_rng(9)
    for _ in range(200):
        config = graph_space.sample(rng)
        graph_space.validate(config)
        assert 1 <= len(config["cell"]) <= 6


def test_graph_mutation_stays_valid_and_changes_the_function(graph_space):
    rng = np.random.default_rng(10)
    config = graph_space.sample(rng)
    for _ in range(200):
        child = graph_space.mutate(config, rng)
        graph_space.validate(child)
        assert graph_space.key(child) != graph_space.key(config)
        config = child


def test_isomorphic_graphs_share_a_key(graph_space):
    # softmax(q) + neg(k), with the two branches listed in either order and add's operands swapped
    a = {"cell": [{"op": "softmax", "inputs": ["q"]}, {"op": "neg", "inputs": ["k"]}, {"op": "add", "inputs": [0, 1]}]}
    b = {"cell": [{"op": "neg", "inputs": ["k"]}, {"op": "softmax", "inputs": ["q"]}, {"op": "add", "inputs": [0, 1]}]}
    c = {"cell": [{"op": "neg", "inputs": ["k"]}, {"op": "softmax", "inputs": ["q"]}, {"op": "add", "inputs": [1, 0]}]}
    assert graph_space.key(a) == graph_space.key(b) == graph_space.key(c)
    # matmul is not commutative: swapping its operands is a different cell
    d = {"cell": [{"op": "softmax", "inputs": ["q"]}, {"op": "neg", "inputs": ["k"]},
                  {"op": "matmul", "inputs": [0, 1]}]}
    e = {"cell": [{"op": "softmax", "inputs": ["q"]}, {"op": "neg", "inputs": ["k"]},
                  {"op": "matmul", "inputs": [1, 0]}]}
    assert graph_space.key(d) != graph_space.key(e)


@pytest.mark.parametrize("cell, expected", [
    ([{"op": "neg", "inputs": [1]}, {"op": "neg", "inputs": [0]}], "cycle"),
    ([{"op": "neg", "inputs": ["q"]}, {"op": "softmax", "inputs": ["k"]}], "do not feed the output"),
    ([{"op": "add", "inputs": ["q"]}], "takes 2 inputs"),
    ([{"op": "conv", "inputs": ["q"]}], "is not one of"),
    ([{"op": "neg", "inputs": ["x"]}], "neither an input"),
])
def test_invalid_graphs_are_rejected(graph_space, cell, expected):
    problems = graph_space.problems({"cell": cell})
    assert any(expected in p for p in problems), problems


def test_registered_spaces_load_by_name():
    names = automl.space.spaces.names()
    assert {"digits-mlp", "digits-cnn"} <= set(names)
    space = automl.load_space("digits-mlp")
    assert [o.name for o in space.objectives] == ["accuracy", "params"]
    assert space.budget is not None and space.budget.max == 9


CONSTRAINED = """
name: constrained
constraints: ["a < b", "not (kind == 'wide' and b > 6)", "extra != 3"]
space:
  a: {type: int, low: 0, high: 9}
  b: {type: int, low: 0, high: 9}
  kind: {type: categorical, choices: [narrow, wide]}
  extra: {type: int, low: 0, high: 5, when: "kind == 'narrow'"}
"""


def holds(config: dict) -> bool:
    return (config["a"] < config["b"] and not (config["kind"] == "wide" and config["b"] > 6)
            and config.get("extra") != 3)


def test_constraints_on_parameters_hold_wherever_configs_are_made():
    space = automl.space_from_yaml(CONSTRAINED, source="c.yaml")
    assert [str(c) for c in space.config_constraints] == ["a < b", "not (kind == 'wide' and b > 6)", "extra != 3"]
    assert space.constraints == ()  # nothing for a trial's results to satisfy
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(300)]
    assert all(holds(c) for c in configs)
    assert {c["kind"] for c in configs} == {"narrow", "wide"}
    config = configs[0]
    for _ in range(200):
        config = space.mutate(config, rng)
        assert holds(config), config
    assert all(holds(n) for n in space.neighbours(config))
    for which in ("min", "max", "mid"):
        assert holds(space.extreme(which, rng))
    # completing: given values are kept when they can be, drawn again when they break a constraint
    assert space.complete({"a": 8}, rng)["a"] == 8
    done = space.complete({"a": 9}, rng)  # nothing can exceed 9
    assert holds(done) and done["a"] < 9
    # the flat view: whatever a sampler proposes comes back valid
    assert all(holds(space.unflatten({"a": 7, "b": 2}, np.random.default_rng(i))) for i in range(20))


def test_validation_reports_a_violated_constraint():
    space = automl.space_from_yaml(CONSTRAINED, source="c.yaml")
    problems = space.problems({"a": 5, "b": 3, "kind": "wide"})
    assert problems == ["constraint a < b is violated (a=5, b=3)"]
    # a constraint naming an inactive parameter is not checked
    assert space.problems({"a": 1, "b": 3, "kind": "wide"}) == []
    with pytest.raises(ConfigError, match="extra != 3 is violated"):
        space.validate({"a": 1, "b": 3, "kind": "narrow", "extra": 3})


def test_a_search_under_constraints_on_parameters_completes():
    space = automl.space_from_yaml(CONSTRAINED, source="c.yaml")
    for strategy in ("random", "evolution", "tpe"):
        study = automl.create_study(space, strategy=strategy, seed=0)
        study.optimize(lambda c: float(c["b"] - c["a"]), n_trials=8)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8, strategy
        assert all(holds(t.config) for t in study.trials)
