"""NNI ``search_space.json`` files load unchanged, sample with NNI's semantics and drive a search."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import automl
from automl import ConfigError
from automl.space.nni import space_from_nni_json

NNI_SPACE = """{
    "lr": {"_type": "loguniform", "_value": [0.0001, 0.1]},
    "layers": {"_type": "randint", "_value": [1, 4]},
    "dropout": {"_type": "quniform", "_value": [0, 0.5, 0.1]},
    "batch_size": {"_type": "quniform", "_value": [10, 100, 16]},
    "momentum": {"_type": "uniform", "_value": [0.5, 0.99]},
    "init_scale": {"_type": "normal", "_value": [0, 1]},
    "shift": {"_type": "qnormal", "_value": [0, 2, 0.5]},
    "temperature": {"_type": "lognormal", "_value": [0, 0.5]},
    "activation": {"_type": "choice", "_value": ["relu", "tanh", "gelu"]},
    "block": {"_type": "choice", "_value": [
        {"_name": "conv",
         "kernel": {"_type": "choice", "_value": [3, 5, 7]},
         "width": {"_type": "randint", "_value": [8, 16]}},
        {"_name": "pool",
         "size": {"_type": "choice", "_value": [2, 3]},
         "width": {"_type": "randint", "_value": [8, 16]}},
        {"_name": "identity"}
    ]}
}
"""
ALTERNATIVES = {"conv": {"kernel", "width"}, "pool": {"size", "width"}, "identity": set()}


@pytest.fixture()
def nni_file(tmp_path: Path) -> Path:
    path = tmp_path / "search_space.json"
    path.write_text(NNI_SPACE)
    return path


def on_grid(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


def test_samples_follow_nni_semantics(nni_file: Path) -> None:
    space = automl.load_space(nni_file)
    assert space.name == "search_space"
    assert set(space.root.child_map()) == set(json.loads(NNI_SPACE))
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(200)]
    for config in configs:
        space.validate(config)
        assert 1e-4 <= config["lr"] <= 0.1
        assert isinstance(config["layers"], int) and 1 <= config["layers"] < 4
        assert 0 <= config["dropout"] <= 0.5 and on_grid(config["dropout"], 0.1)
        # NNI: clip(round(x / 16) * 16, 10, 100) for x in [10, 100] -> multiples of 16 from 16 to 96
        assert config["batch_size"] in {16.0, 32.0, 48.0, 64.0, 80.0, 96.0}
        assert 0.5 <= config["momentum"] <= 0.99
        assert isinstance(config["init_scale"], float)
        assert on_grid(config["shift"], 0.5)
        assert config["temperature"] > 0
        assert config["activation"] in ("relu", "tanh", "gelu")
        block = config["block"]
        assert set(block) == {"_name"} | ALTERNATIVES[block["_name"]]
        if block["_name"] == "conv":
            assert block["kernel"] in (3, 5, 7)
        if block["_name"] == "pool":
            assert block["size"] in (2, 3)
        if "width" in block:
            assert 8 <= block["width"] < 16
    # upper bounds of randint are exclusive, yet every value below them is reached
    assert {c["layers"] for c in configs} == {1, 2, 3}
    assert max(c["block"]["width"] for c in configs if "width" in c["block"]) == 15
    assert {c["block"]["_name"] for c in configs} == set(ALTERNATIVES)
    assert {c["batch_size"] for c in configs} == {16.0, 32.0, 48.0, 64.0, 80.0, 96.0}
    assert len({round(c["dropout"], 9) for c in configs}) == 6  # 0.0, 0.1, ..., 0.5


def test_validate_rejects_foreign_keys(nni_file: Path) -> None:
    space = automl.load_space(nni_file)
    config = space.sample(np.random.default_rng(1))
    config["block"] = {"_name": "conv", "kernel": 3, "width": 9}
    space.validate(config)
    with pytest.raises(ConfigError, match="block.size"):
        space.validate({**config, "block": {**config["block"], "size": 2}})  # a key of the 'pool' alternative
    with pytest.raises(ConfigError, match="unknown parameter"):
        space.validate({**config, "epochs": 3})
    with pytest.raises(ConfigError, match="layers"):
        space.validate({**config, "layers": 4})  # randint's upper bound is exclusive


def test_random_search_runs_on_an_nni_file(nni_file: Path) -> None:
    study = automl.create_study(nni_file, strategy="random", seed=0)
    study.optimize(lambda c: c["lr"] * c["layers"] + c["momentum"], n_trials=5)
    done = study.completed()
    assert len(done) == 5
    for trial in done:
        study.space.validate(trial.config)
        assert trial.values is not None
        assert trial.values["value"] == pytest.approx(
            trial.config["lr"] * trial.config["layers"] + trial.config["momentum"])


def test_without_source_the_space_is_named_nni_space() -> None:
    space = space_from_nni_json('{"x": {"_type": "uniform", "_value": [0, 1]}}')
    assert space.name == "nni-space"
    assert space.source is None


def test_qloguniform_and_qlognormal() -> None:
    space = space_from_nni_json('{"hidden": {"_type": "qloguniform", "_value": [16, 1024, 16]},'
                                ' "scale": {"_type": "qlognormal", "_value": [3, 0.5, 2]}}')
    rng = np.random.default_rng(2)
    for _ in range(100):
        config = space.sample(rng)
        assert 16 <= config["hidden"] <= 1024  # documented: log distribution kept, q rounding not applied
        assert config["scale"] > 0 and on_grid(config["scale"], 2)


def test_unknown_type_names_field_and_line() -> None:
    text = '{\n  "lr": {"_type": "uniform", "_value": [0, 1]},\n  "opt": {"_type": "choose", "_value": [1, 2]}\n}'
    with pytest.raises(ConfigError) as info:
        space_from_nni_json(text, source="space.json")
    err = info.value
    assert (err.source, err.line, err.field) == ("space.json", 3, "opt._type")
    assert "unknown _type 'choose'" in err.message and "quniform" in err.message


def test_wrong_value_arity_names_what_was_expected() -> None:
    text = '{\n  "lr": {"_type": "quniform",\n          "_value": [0, 1]}\n}'
    with pytest.raises(ConfigError) as info:
        space_from_nni_json(text, source="space.json")
    assert (info.value.line, info.value.field) == (3, "lr._value")
    assert "[low, high, q]" in info.value.message and "got 2" in info.value.message


def test_missing_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"lr: missing '_value'"):
        space_from_nni_json('{"lr": {"_type": "uniform"}}')


def test_invalid_json_reports_its_line() -> None:
    text = '{\n  "lr": {"_type": "uniform", "_value": [0, 1]},\n  "wd": {"_type": "uniform" "_value": [0, 1]}\n}'
    with pytest.raises(ConfigError, match=r"^space\.json:3: invalid JSON") as info:
        space_from_nni_json(text, source="space.json")
    assert info.value.line == 3


def test_a_name_with_a_backtick_is_refused() -> None:
    text = '{\n  "a`b": {"_type": "uniform", "_value": [0, 1]}\n}'
    with pytest.raises(ConfigError, match="cannot contain a backtick") as info:
        space_from_nni_json(text, source="space.json")
    assert (info.value.line, info.value.field) == (2, "`a`b`")


@pytest.mark.parametrize("text", ["[1, 2]", "{}", '"space"'])
def test_top_level_must_be_a_non_empty_object(text: str) -> None:
    with pytest.raises(ConfigError, match="JSON object mapping parameter names") as info:
        space_from_nni_json(text)
    assert info.value.line == 1


@pytest.mark.parametrize(("spec", "field", "message"), [
    ('{"_type": "uniform", "_value": [2, 1]}', "x._value", "needs low < high"),
    ('{"_type": "randint", "_value": [0, 2.5]}', "x._value[1]", "expected an integer"),
    ('{"_type": "loguniform", "_value": [0, 1]}', "x._value[0]", "low > 0"),
    ('{"_type": "normal", "_value": [0, 0]}', "x._value[1]", "sigma must be > 0"),
    ('{"_type": "choice", "_value": [1, 1]}', "x._value", "choices must be distinct"),
    ('{"_type": "choice", "_value": [{"_name": "a"}, 3]}', "x._value[1]", "'_name' key"),
])
def test_bad_values_name_the_nni_field(spec: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        space_from_nni_json('{\n"x": ' + spec + "\n}", source="s.json")
    assert (info.value.field, info.value.line) == (field, 2)


def test_nested_alternatives_with_conflicting_definitions_are_rejected() -> None:
    text = """{"opt": {"_type": "choice", "_value": [
        {"_name": "sgd", "lr": {"_type": "uniform", "_value": [0.01, 0.1]}},
        {"_name": "adam", "lr": {"_type": "loguniform", "_value": [0.0001, 0.01]}}
    ]}}"""
    with pytest.raises(ConfigError, match="'sgd' and 'adam' define 'lr' differently") as info:
        space_from_nni_json(text)
    assert (info.value.field, info.value.line) == ("opt._value[1].lr", 3)


def test_nested_choices_nest() -> None:
    text = """{"model": {"_type": "choice", "_value": [
        {"_name": "mlp", "head": {"_type": "choice", "_value": [
            {"_name": "linear"},
            {"_name": "deep", "depth": {"_type": "randint", "_value": [1, 3]}}]}},
        {"_name": "tree", "depth": {"_type": "randint", "_value": [2, 8]}}
    ]}}"""
    space = space_from_nni_json(text)
    rng = np.random.default_rng(3)
    shapes = set()
    for _ in range(100):
        model = space.sample(rng)["model"]
        if model["_name"] == "mlp":
            head = model["head"]
            assert set(model) == {"_name", "head"}
            assert set(head) == ({"_name"} if head["_name"] == "linear" else {"_name", "depth"})
            assert head.get("depth", 1) in (1, 2)
            shapes.add(("mlp", head["_name"]))
        else:
            assert set(model) == {"_name", "depth"} and 2 <= model["depth"] < 8
            shapes.add(("tree",))
    assert shapes == {("mlp", "linear"), ("mlp", "deep"), ("tree",)}


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'lr'") as info:
        space_from_nni_json('{"lr": {"_type": "uniform", "_value": [0, 1]},\n'
                            ' "lr": {"_type": "uniform", "_value": [0, 2]}}')
    assert info.value.line == 2


# -- what NNI accepts and automl used to refuse ---------------------------------------------------------------------

def search(space: automl.SearchSpace) -> None:
    """A short random search: every trial completes with a valid config."""
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda c: 0.0, n_trials=5)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    for trial in study.trials:
        space.validate(trial.config)


# NNI's examples/trials/benchmarking/hyperband/search_space.json (NAS-Bench-201 edges), plus names NNI allows
HYPERBAND = """{
    "0_1": {"_type": "choice", "_value": ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]},
    "0_2": {"_type": "choice", "_value": ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]},
    "1_2": {"_type": "choice", "_value": ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]},
    "conv-1": {"_type": "choice", "_value": [16, 32, 64]},
    "learning rate": {"_type": "loguniform", "_value": [0.0001, 0.1]},
    "lambda": {"_type": "uniform", "_value": [0, 1]},
    "block": {"_type": "choice", "_value": [
        {"_name": "conv", "kernel size": {"_type": "choice", "_value": [3, 5]}},
        {"_name": "identity"}
    ]}
}"""


def test_names_that_are_not_identifiers_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "search_space.json"
    path.write_text(HYPERBAND)
    space = automl.load_space(path)
    assert list(space.root.child_map()) == ["0_1", "0_2", "1_2", "conv-1", "learning rate", "lambda", "block"]
    rng = np.random.default_rng(0)
    for _ in range(50):
        config = space.sample(rng)
        space.validate(config)
        assert config["0_1"] in ("none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3")
        assert 1e-4 <= config["learning rate"] <= 0.1
        assert ("kernel size" in config["block"]) == (config["block"]["_name"] == "conv")
    # flat (Optuna) names quote them, so that no two parameters share one
    assert {"`0_1`", "`conv-1`", "`learning rate`", "lambda", "block.`kernel size`"} <= set(space.flatten())
    with pytest.raises(ConfigError, match="`learning rate`: 0.5 is outside"):
        space.validate({**space.sample(rng), "learning rate": 0.5})
    search(space)
    study = automl.create_study(space, strategy="tpe", seed=0)  # a flat-view strategy
    study.optimize(lambda c: c["learning rate"], n_trials=6)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


def test_an_error_names_a_quoted_field_and_its_line() -> None:
    text = ('{\n  "0_1": {"_type": "choice", "_value": ["a"]},\n'
            '  "learning rate": {"_type": "uniform", "_value": [1, 0]}\n}')
    with pytest.raises(ConfigError, match="needs low < high") as info:
        space_from_nni_json(text, source="space.json")
    assert (info.value.line, info.value.field) == (3, "`learning rate`._value")


# NNI's examples/trials/mnist-batch-tune-keras: a choice over whole parameter sets (the batch tuner's shape)
BATCH = """{
    "combine_params": {
        "_type": "choice",
        "_value": [{"optimizer": "Adam", "learning_rate": 0.00001},
                   {"optimizer": "Adam", "learning_rate": 0.0001},
                   {"optimizer": "Adam", "learning_rate": 0.001},
                   {"optimizer": "SGD", "learning_rate": 0.01},
                   {"optimizer": "SGD", "learning_rate": 0.005}]
    },
    "hidden": {"_type": "choice", "_value": [[64], [128, 64], [256, 128, 64]]}
}"""


def test_a_choice_over_plain_objects_holds_the_object() -> None:
    space = space_from_nni_json(BATCH, source="search_space.json")
    options = json.loads(BATCH)["combine_params"]["_value"]
    rng = np.random.default_rng(1)
    seen = []
    for _ in range(100):
        config = space.sample(rng)
        space.validate(config)
        assert config["combine_params"] in options and config["hidden"] in ([64], [128, 64], [256, 128, 64])
        seen.append(json.dumps(config["combine_params"], sort_keys=True))
    assert len(set(seen)) == 5
    # a sampled object is the config's own: changing it leaves the space alone
    config = space.sample(rng)
    config["combine_params"]["optimizer"] = "RMSprop"
    assert {c["optimizer"] for c in space.root.child_map()["combine_params"].choices} == {"Adam", "SGD"}
    with pytest.raises(ConfigError, match="is not one of"):
        space.validate(config)
    # the flat view holds JSON text; flat_params / unflatten give the object back
    flat = space.flatten()["combine_params"]
    assert all(isinstance(c, str) for c in flat.choices)
    config = space.sample(rng)
    params = space.flat_params(config)
    assert isinstance(params["combine_params"], str)
    assert json.loads(params["combine_params"]) == config["combine_params"]
    assert space.unflatten(params) == config
    assert space.key(config) == space.key(json.loads(json.dumps(config)))
    search(space)
    study = automl.create_study(space, strategy="tpe", seed=0)
    study.optimize(lambda c: c["combine_params"]["learning_rate"], n_trials=6)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    assert all(isinstance(t.config["combine_params"], dict) for t in study.trials)


def test_plain_objects_and_named_alternatives_cannot_be_mixed() -> None:
    text = '{"x": {"_type": "choice", "_value": [{"_name": "a"}, {"lr": 1}]}}'
    with pytest.raises(ConfigError, match="'_name' key") as info:
        space_from_nni_json(text)
    assert info.value.field == "x._value[1]"


# nnictl ss_gen output for a classic-NAS model (NNI 1.x ClassicMutator's format)
CLASSIC_NAS = """{
  "LayerChoice1": {"_type": "layer_choice", "_value": ["conv5x5", "conv3x3", "maxpool", "avgpool"]},
  "LayerChoice2": {"_type": "layer_choice", "_value": ["conv5x5", "conv3x3"]},
  "InputChoice3": {"_type": "input_choice", "_value": {"candidates": ["conv1", "conv2", "pool1"], "n_chosen": 1}},
  "skip_connect": {"_type": "input_choice", "_value": {"candidates": ["", "LayerChoice1", "LayerChoice2"],
                                                        "n_chosen": 2}},
  "any_inputs": {"_type": "input_choice", "_value": {"candidates": ["a", "b", "c", "d"], "n_chosen": null}}
}"""


def test_classic_nas_layer_and_input_choices() -> None:
    space = space_from_nni_json(CLASSIC_NAS, source="search_space.json")
    rng = np.random.default_rng(2)
    sizes = set()
    for _ in range(200):
        config = space.sample(rng)
        space.validate(config)
        assert config["LayerChoice1"] in ("conv5x5", "conv3x3", "maxpool", "avgpool")
        assert len(config["InputChoice3"]) == 1 and config["InputChoice3"][0] in ("conv1", "conv2", "pool1")
        assert len(config["skip_connect"]) == 2 and len(set(config["skip_connect"])) == 2
        assert set(config["any_inputs"]) <= {"a", "b", "c", "d"}
        order = ["a", "b", "c", "d"]
        assert config["any_inputs"] == sorted(config["any_inputs"], key=order.index)
        sizes.add(len(config["any_inputs"]))
    assert sizes == {0, 1, 2, 3, 4}  # n_chosen null: any number
    config = space.sample(rng)
    with pytest.raises(ConfigError, match="expected 1 of"):
        space.validate({**config, "InputChoice3": ["conv1", "conv2"]})
    with pytest.raises(ConfigError, match="'conv9' is not one of"):
        space.validate({**config, "InputChoice3": ["conv9"]})
    # the same inputs in another order are the same candidate
    assert space.key({**config, "skip_connect": ["LayerChoice2", "LayerChoice1"]}) == space.key(
        {**config, "skip_connect": ["LayerChoice1", "LayerChoice2"]})
    flat = space.flatten()
    assert len(flat["InputChoice3"].choices) == 3 and len(flat["any_inputs"].choices) == 16
    for _ in range(20):
        child = space.mutate(config, rng)
        space.validate(child)
        config = child
    search(space)
    study = automl.create_study(space, strategy="tpe", seed=0)
    study.optimize(lambda c: len(c["any_inputs"]), n_trials=6)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


@pytest.mark.parametrize(("value", "field", "message"), [
    ('["in1", "in2"]', "x._value", "input_choice expects _value"),
    ('{"candidates": ["a", "b"], "n_chosen": 3}', "x._value.n_chosen", "from 0 to 2"),
    ('{"candidates": [], "n_chosen": 1}', "x._value.candidates", "non-empty list"),
    ('{"candidates": ["a"], "reduction": "sum"}', "x._value.reduction", "unknown key 'reduction'"),
])
def test_bad_input_choices_name_the_field(value: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        space_from_nni_json('{\n"x": {"_type": "input_choice", "_value": ' + value + "}\n}", source="s.json")
    assert (info.value.field, info.value.line) == (field, 2)


def test_layer_choice_needs_op_names() -> None:
    with pytest.raises(ConfigError, match="expected an op name") as info:
        space_from_nni_json('{"x": {"_type": "layer_choice", "_value": ["conv", 3]}}')
    assert info.value.field == "x._value[1]"


COMMENTED = """// search space of the mnist example, with comments
{
    # the learning rate, on a log scale
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1],},   // a trailing comma
    /* the batch size:
       a quantised choice */
    "batch_size": {"_type": "choice", "_value": [16, 32, 64, 128,]},
    "url": {"_type": "choice", "_value": ["http://a/b#c", "d // e"]},
}
"""


def test_comments_and_trailing_commas_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "search_space.json"
    path.write_text(COMMENTED)
    space = automl.load_space(path)
    assert list(space.root.child_map()) == ["lr", "batch_size", "url"]
    assert space.root.child_map()["url"].choices == ("http://a/b#c", "d // e")
    assert space.lines[("space", "batch_size")] == 7
    search(space)


def test_lines_stay_right_after_comments() -> None:
    text = '{\n  // one\n  /* two\n     three */\n  "lr": {"_type": "uniform", "_value": [1, 0],},\n}'
    with pytest.raises(ConfigError, match="needs low < high") as info:
        space_from_nni_json(text, source="space.json")
    assert info.value.line == 5
    with pytest.raises(ConfigError, match=r"^space\.json:3: invalid JSON"):
        space_from_nni_json('{\n  "a": {"_type": "uniform", "_value": [0, 1]},\n  "b" {}\n}', source="space.json")


def test_an_nni_space_written_in_yaml_loads(tmp_path: Path) -> None:
    path = tmp_path / "search_space.yaml"
    path.write_text("lr: {_type: loguniform, _value: [1e-4, 1e-1]}\n"
                    "layers: {_type: randint, _value: [1, 4]}\n"
                    "opt: {_type: choice, _value: [sgd, adam]}\n")
    space = automl.load_space(path)
    assert space.name == "search_space"
    config = space.sample(np.random.default_rng(0))
    assert 1e-4 <= config["lr"] <= 0.1 and config["layers"] in (1, 2, 3)
    path.write_text("lr: {_type: loguniform, _value: [1e-4, 1e-1]}\nlayers: {_type: randint, _value: [4, 1]}\n")
    with pytest.raises(ConfigError, match="needs lower < upper") as info:
        automl.load_space(path)
    assert (info.value.line, info.value.field) == (2, "layers._value")
