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


def test_non_identifier_key_suggests_a_rename() -> None:
    text = '{\n  "learning-rate": {"_type": "loguniform", "_value": [0.0001, 0.1]}\n}'
    with pytest.raises(ConfigError, match="rename 'learning-rate', e.g. to 'learning_rate'") as info:
        space_from_nni_json(text, source="space.json")
    assert (info.value.line, info.value.field) == (2, "learning-rate")


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
