"""``automl spaces convert``: any loadable space written as our YAML loads back as an equivalent space."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

import automl
from automl.cli import main
from automl.space import space_from_yaml
from automl.space.writer import convert_to_yaml, differences, space_to_yaml
from tests.automl.space.test_configspace import full_space, pcs_space, quiet
from tests.automl.space.test_nni import BATCH, CLASSIC_NAS, COMMENTED, HYPERBAND, NNI_SPACE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ConfigSpace.read_and_write import pcs_new


def assert_equivalent(original: automl.SearchSpace, written: automl.SearchSpace) -> None:
    assert differences(original, written, np.random.default_rng(0), samples=100) == []
    # configs of the written space are valid in the original too, with the same keys
    rng = np.random.default_rng(1)
    for _ in range(50):
        config = written.sample(rng)
        original.validate(config)
        assert original.key(config) == written.key(config)
    assert original.flatten().keys() == written.flatten().keys()


def sources(tmp_path: Path) -> dict[str, Path]:
    files = {
        "nni.json": NNI_SPACE, "hyperband.json": HYPERBAND, "batch.json": BATCH, "classic_nas.json": CLASSIC_NAS,
        "commented.json": COMMENTED,
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    buffer = io.StringIO()
    full_space().to_json(buffer)
    paths["configspace.json"] = tmp_path / "configspace.json"
    paths["configspace.json"].write_text(buffer.getvalue())
    paths["space.pcs"] = tmp_path / "space.pcs"
    paths["space.pcs"].write_text(quiet(pcs_new.write, pcs_space()))
    return paths


@pytest.mark.parametrize("name", ["nni.json", "hyperband.json", "batch.json", "classic_nas.json", "commented.json",
                                  "configspace.json", "space.pcs"])
def test_round_trip_of_foreign_formats(tmp_path: Path, name: str) -> None:
    original = automl.load_space(sources(tmp_path)[name])
    text = space_to_yaml(original)
    written = space_from_yaml(text, source="converted.yaml")
    assert written.name == original.name
    assert_equivalent(original, written)
    # and once more: converting the converted space changes nothing
    assert space_to_yaml(written).split("\n", 1)[1] == text.split("\n", 1)[1]


@pytest.mark.parametrize("name", automl.space.spaces.names())
def test_round_trip_of_registered_yaml_spaces(name: str) -> None:
    original = automl.load_space(name)
    written = space_from_yaml(convert_to_yaml(original), source="converted.yaml")
    assert_equivalent(original, written)
    for attribute in ("task", "task_options", "builder", "estimator", "estimator_options", "regimes", "budget",
                      "defaults", "objectives"):
        assert getattr(written, attribute) == getattr(original, attribute), attribute
    assert [str(c) for c in written.constraints] == [str(c) for c in original.constraints]


def test_round_trip_of_yaml_with_quoted_names_and_every_kind(tmp_path: Path) -> None:
    text = """
name: kinds
description: every parameter kind
objectives: {accuracy: max}
constraints: ["`0_1` < b", "params <= 1000"]
search: {strategy: random, trials: 7}
space:
  "0_1": {type: int, low: 0, high: 8, step: 2}
  b: {type: int, low: 1, high: 9, prior: {type: normal, mu: 5, sigma: 2}}
  "learning rate": {type: float, low: 0.0001, high: 0.1, log: true}
  drop: {type: float, low: 0.0, high: 0.5, step: 0.1}
  noise: {type: normal, mu: 0, sigma: 1, step: 0.5}
  flag: {type: bool}
  when: {type: constant, value: later}
  batch: 64
  opt: {type: categorical, choices: [{name: adam, lr: 0.001}, {name: sgd, lr: 0.1}], weights: [2, 1]}
  inputs: {type: subset, choices: [a, b, c]}
  "lambda": {type: float, low: 0, high: 1, when: "`0_1` >= 4 or flag"}
  layers:
    type: repeat
    min: 1
    max: 3
    item:
      width: {type: categorical, choices: [16, 32]}
      act: {type: categorical, choices: ["yes", "1e-3", "null"]}
  head:
    when: "flag == True"
    units: {type: int, low: 1, high: 4}
  cell:
    type: graph
    inputs: [q, k]
    ops: {neg: 1, add: 2}
    commutative: [add]
    max_nodes: 4
"""
    original = space_from_yaml(text, source="kinds.yaml")
    written = space_from_yaml(convert_to_yaml(original), source="converted.yaml")
    assert_equivalent(original, written)
    assert written.document["description"] == "every parameter kind"
    assert written.defaults == original.defaults


def test_convert_command_writes_a_loadable_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = sources(tmp_path)
    for name in ("hyperband.json", "configspace.json", "space.pcs"):
        out = tmp_path / (name.split(".")[0] + ".yaml")
        assert main(["spaces", "convert", str(paths[name]), "--out", str(out)]) == 0
        assert f"wrote {out}" in capsys.readouterr().out.replace("\n", "")
        assert_equivalent(automl.load_space(paths[name]), automl.load_space(out))
    assert main(["spaces", "convert", str(paths["classic_nas.json"])]) == 0
    printed = capsys.readouterr().out
    assert "type: subset" in printed and "LayerChoice1" in printed
    assert_equivalent(automl.load_space(paths["classic_nas.json"]), space_from_yaml(printed))
    assert main(["spaces", "convert", "digits-mlp"]) == 0  # a registered name works too
    assert "name: digits-mlp" in capsys.readouterr().out


def test_convert_command_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "lr": {"_type": "uniform", "_value": [1, 0]}\n}')
    assert main(["spaces", "convert", str(bad)]) == 2
    assert f"{bad}:2: lr._value: uniform needs low < high" in capsys.readouterr().err
