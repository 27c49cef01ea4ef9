"""Loader errors: each bad input names the file, the line and the field, and says what was expected."""
from __future__ import annotations

import textwrap

import pytest

import automl
from automl.errors import ConfigError, RegistryError
from tests.conftest import ISSUE_EXAMPLE


def load(tmp_path, text: str) -> automl.SearchSpace:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return automl.load_space(path)


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_issue_example_loads_exactly_as_written():
    space = automl.load_space(ISSUE_EXAMPLE)
    assert space.name == "digits-mlp" and space.task == "digits" and space.builder == "mlp"
    assert [(o.name, o.direction) for o in space.objectives] == [("accuracy", "max"), ("params", "min")]
    assert [str(c) for c in space.constraints] == ["params <= 200000"]
    assert (space.budget.name, space.budget.min, space.budget.max) == ("epochs", 1, 9)
    paths = dict(space.leaves())
    assert paths["train.momentum"].when is not None


def test_malformed_yaml(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          a: {type: float, low: 0
          b: 1
        """)
    assert "bad.yaml:" in message and "invalid YAML" in message
    assert message.split(":")[1].isdigit()


def test_unknown_parameter_type(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          a: {type: float, low: 0, high: 1}
          b: {type: floot, low: 0, high: 1}
        """)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:4: space.b.type: unknown parameter type 'floot'")
    assert "float" in message


def test_low_above_high(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          train:
            lr: {type: float, low: 0.5, high: 0.1}
        """)
    assert ":4: space.train.lr.low: low (0.5) must not exceed high (0.1)" in message


def test_condition_naming_unknown_parameter(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          optimizer: {type: categorical, choices: [sgd, adam]}
          momentum: {type: float, low: 0, high: 1, when: "optimiser == 'sgd'"}
        """)
    assert ":4: space.momentum.when:" in message and "'optimiser'" in message and "optimizer" in message


def test_condition_that_is_not_an_expression(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          a: {type: bool}
          b: {type: float, low: 0, high: 1, when: "__import__('os')"}
        """)
    assert ":4: space.b.when:" in message and "not allowed" in message


def test_unknown_key_in_parameter(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          a: {type: int, low: 0, high: 3, lgo: true}
        """)
    assert ":3: space.a.lgo: unknown key 'lgo'" in message


def test_unknown_top_level_key_and_missing_space(tmp_path):
    assert "unknown top-level key 'spcae'" in error_of(tmp_path, "name: x\nspcae: {}\n")
    assert "missing required top-level key 'space'" in error_of(tmp_path, "name: x\n")


def test_constraint_on_unknown_name(tmp_path):
    message = error_of(tmp_path, """
        name: x
        constraints: ["parms <= 10"]
        space:
          a: {type: bool}
        """)
    assert ":2: constraints[0]:" in message and "'parms'" in message


def test_bad_objective_direction(tmp_path):
    assert ":2: objectives.accuracy: expected 'max' or 'min'" in error_of(tmp_path, """
        name: x
        objectives: {accuracy: up}
        space:
          a: {type: bool}
        """)


def test_log_with_non_positive_low(tmp_path):
    assert "needs low > 0" in error_of(tmp_path, """
        name: x
        space:
          lr: {type: float, low: 0, high: 1, log: true}
        """)


def test_duplicate_key(tmp_path):
    assert ":4: space.a: duplicate key 'a'" in error_of(tmp_path, """
        name: x
        space:
          a: {type: bool}
          a: {type: bool}
        """)


def test_missing_file_lists_registered_spaces():
    with pytest.raises(ConfigError) as info:
        automl.load_space("nope/missing.yaml")
    assert "no such space file" in str(info.value) and "digits-mlp" in str(info.value)


def test_unknown_registered_space_suggests_a_name():
    with pytest.raises(RegistryError) as info:
        automl.load_space("digits-mpl")
    assert "did you mean 'digits-mlp'" in str(info.value)


def test_scientific_notation_without_dot_is_accepted(tmp_path):
    space = load(tmp_path, """
        name: x
        space:
          lr: {type: float, low: 1e-4, high: 1e-1, log: true}
        """)
    assert dict(space.leaves())["lr"].low == pytest.approx(1e-4)


def test_loaded_space_is_immutable(toy_space):
    with pytest.raises(AttributeError):
        toy_space.name = "other"  # type: ignore[misc]


def test_step_must_divide_the_range(tmp_path):
    assert "must be a multiple of step (0.3)" in error_of(tmp_path, """
        name: x
        space:
          a: {type: float, low: 0, high: 1, step: 0.3}
        """)
    assert "must be a multiple of step (4)" in error_of(tmp_path, """
        name: x
        space:
          a: {type: int, low: 0, high: 10, step: 4}
        """)


SHAPED = """
name: cells
space:
  cell:
    type: graph
    inputs: {q: [T, d], k: [T, d]}
    output: [T, d]
    ops: [transpose, matmul, softmax, add]
    max_nodes: 5
"""


def test_shaped_graph_samples_only_cells_whose_shapes_fit():
    space = automl.space_from_yaml(SHAPED, source="cells.yaml")
    graph = space.graphs({"cell": [{"op": "add", "inputs": ["q", "k"]}]})[0][1]
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(30):
        nodes = space.sample(rng)["cell"]
        shapes = graph.shapes(nodes)
        assert None not in shapes and shapes[-1] == ("T", "d")


@pytest.mark.parametrize("old, new, message", [
    ("    output: [T, d]\n", "", r"cells.yaml:4: space.cell: missing required key 'output'"),
    ("ops: [transpose, matmul, softmax, add]", "ops: {transpose: 1, frob: 2}", r"need ops listed by primitive name"),
    ("output: [T, d]", "output: [T]", r"space.cell.output: expected a shape of two dimension names"),
    ("inputs: {q: [T, d], k: [T, d]}\n    output: [T, d]\n", "inputs: [q, k]\n    output: [T, d]\n",
     r"an output shape needs input shapes"),
])
def test_shaped_graph_declarations_are_checked(old, new, message):
    assert old in SHAPED
    with pytest.raises(ConfigError, match=message):
        automl.space_from_yaml(SHAPED.replace(old, new), source="cells.yaml")


def test_names_that_are_not_identifiers_are_quoted_in_expressions(tmp_path):
    space = load(tmp_path, """
        name: x
        constraints: ["`0_1` != 'none' or `learning rate` < 0.01"]
        space:
          "0_1": {type: categorical, choices: [none, conv]}
          "learning rate": {type: float, low: 0.001, high: 0.1, log: true}
          "lambda": {type: float, low: 0, high: 1, when: "`0_1` == 'conv'"}
          block:
            "kernel size": {type: categorical, choices: [3, 5]}
            dilation: {type: int, low: 1, high: 2, when: "`kernel size` == 3"}
        """)
    assert [str(c) for c in space.config_constraints] == ["`0_1` != 'none' or `learning rate` < 0.01"]
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(100):
        config = space.sample(rng)
        space.validate(config)
        assert ("lambda" in config) == (config["0_1"] == "conv")
        assert ("dilation" in config["block"]) == (config["block"]["kernel size"] == 3)
        assert config["0_1"] != "none" or config["learning rate"] < 0.01


def test_an_unquoted_name_that_is_not_an_identifier_is_an_error(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          "learning rate": {type: float, low: 0.001, high: 0.1}
          wd: {type: float, low: 0, high: 1, when: "learning rate > 0.01"}
        """)
    assert ":4: space.wd.when: cannot parse expression" in message


def test_a_key_that_yaml_reads_as_a_number_must_be_quoted(tmp_path):
    message = error_of(tmp_path, """
        name: x
        space:
          0_1: {type: categorical, choices: [a, b]}
        """)
    assert ":3: space[1]:" in message and "YAML reads this key as the int 1: write it in quotes" in message


def test_constraints_on_parameters_and_on_costs_are_kept_apart(tmp_path):
    space = load(tmp_path, """
        name: x
        objectives: {accuracy: max}
        constraints: ["params <= 1000", "a < b"]
        space:
          a: {type: int, low: 0, high: 9}
          b: {type: int, low: 0, high: 9}
        """)
    assert [str(c) for c in space.constraints] == ["params <= 1000"]
    assert [str(c) for c in space.config_constraints] == ["a < b"]


def test_a_constraint_naming_costs_and_parameters_is_an_error(tmp_path):
    message = error_of(tmp_path, """
        name: x
        constraints: ["params <= 1000 or a < 3"]
        space:
          a: {type: int, low: 0, high: 9}
        """)
    assert ":2: constraints[0]:" in message and "write them as two constraints" in message


def test_a_constraint_on_a_repeated_parameter_is_an_error(tmp_path):
    message = error_of(tmp_path, """
        name: x
        constraints: ["layers.item.width < 64"]
        space:
          layers: {type: repeat, min: 1, max: 3, item: {width: {type: int, low: 8, high: 128}}}
        """)
    assert "inside a repeat" in message


def test_unsatisfiable_constraints_fail_at_load(tmp_path):
    message = error_of(tmp_path, """
        name: x
        constraints: ["a > 9"]
        space:
          a: {type: int, low: 0, high: 9}
        """)
    assert "no config found in 1000 draws that satisfies a > 9" in message


def test_weights_priors_subsets_and_object_choices(tmp_path):
    space = load(tmp_path, """
        name: x
        space:
          opt: {type: categorical, choices: [{name: adam, lr: 0.001}, {name: sgd, lr: 0.1}], weights: [3, 1]}
          width: {type: int, low: 8, high: 64, prior: {type: normal, mu: 16, sigma: 4}}
          drop: {type: float, low: 0, high: 1, prior: {type: beta, alpha: 2, beta: 8}}
          inputs: {type: subset, choices: [x0, x1, x2], size: 2}
        """)
    rng = __import__("numpy").random.default_rng(0)
    configs = [space.sample(rng) for _ in range(2000)]
    for config in configs[:100]:
        space.validate(config)
    import numpy as np

    assert 0.7 < np.mean([c["opt"]["name"] == "adam" for c in configs]) < 0.8
    assert 14 < np.mean([c["width"] for c in configs]) < 18.5
    assert 0.15 < np.mean([c["drop"] for c in configs]) < 0.25
    assert all(len(c["inputs"]) == 2 for c in configs)


@pytest.mark.parametrize("spec, message", [
    ("{type: categorical, choices: [a, b], weights: [1]}", "expected a list of 2 weights"),
    ("{type: categorical, choices: [a, b], weights: [0, 0]}", "not all 0"),
    ("{type: categorical, choices: [{a: 1}, {a: 1}]}", "choices must be distinct"),
    ("{type: float, low: 0, high: 1, prior: {type: normal, mu: 0}}", "missing required key 'sigma'"),
    ("{type: float, low: 0, high: 1, prior: {type: cauchy}}", "expected prior type 'normal' or 'beta'"),
    ("{type: subset, choices: [a, b], size: 3}", "expected 0 <= size <= 2"),
    ("{type: subset, choices: [a, a]}", "choices must be distinct"),
])
def test_bad_new_parameter_kinds(tmp_path, spec, message):
    assert message in error_of(tmp_path, f"""
        name: x
        space:
          p: {spec}
        """)
