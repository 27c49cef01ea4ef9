"""ConfigSpace spaces (JSON and PCS, written by ConfigSpace itself) load into the same model: every
config automl samples is one ConfigSpace accepts, and every config ConfigSpace samples validates here."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import ConfigSpace as CS
import numpy as np
import pytest

import automl
from automl import ConfigError
from automl.space.configspace import space_from_configspace, space_from_configspace_json, space_from_pcs
from automl.space.jsontext import key_lines

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ConfigSpace.read_and_write import pcs, pcs_new


def quiet(write: Any, *args: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text: str = write(*args)
    return text


def to_json(cs: CS.ConfigurationSpace) -> str:
    buffer = io.StringIO()
    cs.to_json(buffer, indent=2)
    return buffer.getvalue()


def full_space() -> CS.ConfigurationSpace:
    """Every hyperparameter type, condition and forbidden clause the reader maps."""
    cs = CS.ConfigurationSpace(name="classifier-space", seed=0)
    choice = CS.CategoricalHyperparameter("classifier:__choice__", ["svm", "forest", "knn"], weights=[2, 1, 1])
    kernel = CS.CategoricalHyperparameter("svm:kernel", ["rbf", "poly", "linear"])
    c = CS.UniformFloatHyperparameter("svm:C", 0.03, 32768.0, log=True)
    degree = CS.UniformIntegerHyperparameter("svm:degree", 2, 5)
    gamma = CS.NormalFloatHyperparameter("svm:gamma", mu=0.5, sigma=0.2, lower=0.0, upper=1.0)
    trees = CS.UniformIntegerHyperparameter("forest:n_estimators", 10, 1000, log=True)
    depth = CS.NormalIntegerHyperparameter("forest:max_depth", mu=8, sigma=3, lower=1, upper=20)
    frac = CS.BetaFloatHyperparameter("forest:max_features", alpha=2, beta=5, lower=0.0, upper=1.0)
    size = CS.OrdinalHyperparameter("forest:size", ["small", "medium", "large"])
    bootstrap = CS.CategoricalHyperparameter("forest:bootstrap", [True, False])
    neighbours = CS.UniformIntegerHyperparameter("knn:n_neighbors", 1, 100, log=True)
    leaf = CS.UniformIntegerHyperparameter("knn:leaf_size", 10, 60)
    seed = CS.Constant("random_state", 1)
    lr = CS.UniformFloatHyperparameter("learning rate", 1e-4, 1e-1, log=True)
    cs.add([choice, kernel, c, degree, gamma, trees, depth, frac, size, bootstrap, neighbours, leaf, seed, lr])
    cs.add([
        CS.EqualsCondition(kernel, choice, "svm"),
        CS.EqualsCondition(c, choice, "svm"),
        CS.AndConjunction(CS.EqualsCondition(degree, choice, "svm"), CS.EqualsCondition(degree, kernel, "poly")),
        CS.AndConjunction(CS.EqualsCondition(gamma, choice, "svm"), CS.InCondition(gamma, kernel, ["rbf", "poly"])),
        CS.EqualsCondition(trees, choice, "forest"),
        CS.EqualsCondition(size, choice, "forest"),
        CS.AndConjunction(CS.EqualsCondition(depth, choice, "forest"), CS.GreaterThanCondition(depth, size, "small")),
        CS.AndConjunction(CS.EqualsCondition(frac, choice, "forest"), CS.LessThanCondition(frac, trees, 500)),
        CS.EqualsCondition(bootstrap, choice, "forest"),
        CS.EqualsCondition(neighbours, choice, "knn"),
        CS.OrConjunction(CS.NotEqualsCondition(leaf, choice, "svm"), CS.EqualsCondition(leaf, kernel, "linear")),
    ])
    cs.add([
        CS.ForbiddenAndConjunction(CS.ForbiddenEqualsClause(kernel, "linear"), CS.ForbiddenInClause(c, [0.03])),
        CS.ForbiddenAndConjunction(CS.ForbiddenEqualsClause(size, "large"), CS.ForbiddenEqualsClause(bootstrap, False)),
        CS.ForbiddenInClause(neighbours, [1, 2]),
        CS.ForbiddenGreaterThanRelation(leaf, neighbours),
    ])
    return cs


def plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def accepted_by_configspace(cs: CS.ConfigurationSpace, config: dict[str, Any]) -> None:
    """Raise unless ConfigSpace itself accepts ``config`` (ranges, active parameters, forbidden clauses)."""
    CS.Configuration(cs, values=config).check_valid_configuration()


@pytest.fixture()
def json_file(tmp_path: Path) -> Path:
    path = tmp_path / "classifier.json"
    path.write_text(to_json(full_space()))
    return path


def test_json_space_maps_every_type_condition_and_forbidden_clause(json_file: Path) -> None:
    space = automl.load_space(json_file)
    assert space.name == "classifier-space"
    leaves = {path: node for path, node in space.leaves()}
    assert leaves["`classifier:__choice__`"].describe() == (
        "categorical ['svm', 'forest', 'knn'] weights [2.0, 1.0, 1.0]")
    assert leaves["`svm:C`"].describe() == "float [0.03, 32768.0] log"
    assert leaves["`svm:gamma`"].describe() == "float [0.0, 1.0] normal(mu=0.5, sigma=0.2)"
    assert leaves["`forest:max_depth`"].describe() == "int [1, 20] normal(mu=8, sigma=3)"
    assert leaves["`forest:max_features`"].describe() == "float [0.0, 1.0] beta(alpha=2, beta=5)"
    assert leaves["`forest:size`"].describe() == "categorical ['small', 'medium', 'large']"
    assert leaves["random_state"].describe() == "constant 1"
    assert str(leaves["`forest:max_depth`"].when) == (
        "(`classifier:__choice__` == 'forest') and (`forest:size` in ['medium', 'large'])")
    assert str(leaves["`knn:leaf_size`"].when) == (
        "(`classifier:__choice__` != 'svm') or (`svm:kernel` == 'linear')")
    assert {str(c) for c in space.config_constraints} == {
        "not ((`svm:kernel` == 'linear') and (`svm:C` in [0.03]))",
        "not ((`forest:size` == 'large') and (`forest:bootstrap` == False))",
        "`knn:n_neighbors` not in [1, 2]",
        "not (`knn:leaf_size` > `knn:n_neighbors`)",
    }


def test_configs_agree_with_configspace_both_ways(json_file: Path) -> None:
    cs = full_space()
    space = automl.load_space(json_file)
    rng = np.random.default_rng(0)
    ours = [space.sample(rng) for _ in range(400)]
    for config in ours:
        space.validate(config)
        accepted_by_configspace(cs, config)
    assert {c["classifier:__choice__"] for c in ours} == {"svm", "forest", "knn"}
    # weights 2:1:1, then the forbidden clauses reject many knn draws -- in ConfigSpace's own sampling too
    theirs = cs.sample_configuration(2000)
    share = np.mean([c["classifier:__choice__"] == "svm" for c in theirs])
    assert abs(np.mean([c["classifier:__choice__"] == "svm" for c in ours]) - share) < 0.08
    depths = [c["forest:max_depth"] for c in ours if "forest:max_depth" in c]
    assert 6 < np.mean(depths) < 10 and all(isinstance(d, int) for d in depths)
    for config in cs.sample_configuration(400):
        space.validate({k: plain(v) for k, v in dict(config).items()})
    # mutation stays inside what ConfigSpace accepts
    config = ours[0]
    for _ in range(200):
        config = space.mutate(config, rng)
        accepted_by_configspace(cs, config)


def test_a_search_runs_on_a_configspace_file(json_file: Path) -> None:
    for strategy in ("random", "tpe"):
        study = automl.create_study(json_file, strategy=strategy, seed=0)
        study.optimize(lambda c: 0.0, n_trials=5)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
        for trial in study.trials:
            accepted_by_configspace(full_space(), dict(trial.config))


def pcs_space() -> CS.ConfigurationSpace:
    """What the PCS formats can hold: no weights, no normal/beta, old pcs: only `in` conditions."""
    cs = CS.ConfigurationSpace(seed=0)
    algo = CS.CategoricalHyperparameter("algo", ["sgd", "adam"])
    lr = CS.UniformFloatHyperparameter("lr", 1e-5, 1e-1, log=True)
    momentum = CS.UniformFloatHyperparameter("momentum", 0.0, 0.99)
    layers = CS.UniformIntegerHyperparameter("layers", 1, 8)
    act = CS.CategoricalHyperparameter("act", ["relu", "tanh", "gelu"])
    cs.add([algo, lr, momentum, layers, act])
    cs.add(CS.InCondition(momentum, algo, ["sgd"]))
    cs.add(CS.ForbiddenAndConjunction(CS.ForbiddenEqualsClause(algo, "adam"), CS.ForbiddenEqualsClause(act, "tanh")))
    return cs


@pytest.mark.parametrize("module", [pcs_new, pcs], ids=["pcs_new", "pcs"])
def test_pcs_files_load(tmp_path: Path, module: Any) -> None:
    path = tmp_path / "space.pcs"
    path.write_text(quiet(module.write, pcs_space()))
    space = automl.load_space(path)
    assert space.name == "space"
    assert set(space.root.child_map()) == {"algo", "lr", "momentum", "layers", "act"}
    assert str(space.root.child_map()["momentum"].when) in ("algo in ['sgd']", "algo == 'sgd'")
    assert [str(c) for c in space.config_constraints] == ["not ((algo == 'adam') and (act == 'tanh'))"]
    rng = np.random.default_rng(1)
    for _ in range(200):
        config = space.sample(rng)
        accepted_by_configspace(pcs_space(), config)
    study = automl.create_study(space, strategy="random", seed=0)
    study.optimize(lambda c: 0.0, n_trials=5)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5


def test_pcs_new_with_ordinals_and_comparisons(tmp_path: Path) -> None:
    text = """# a SMAC 3 space
size ordinal {small, medium, large} [small]
width integer [8, 256] [32] log
dropout real [0.0, 0.5] [0.1]
extra categorical {yes, no} [no]
dropout | size > small
extra | width < 64
{size=large, extra=yes}
"""
    space = space_from_pcs(text, source="s.pcs")
    children = space.root.child_map()
    assert str(children["dropout"].when) == "size in ['medium', 'large']"
    assert str(children["extra"].when) == "width < 64"
    assert [str(c) for c in space.config_constraints] == ["not ((size == 'large') and (extra == 'yes'))"]
    assert space.lines[("space", "width")] == 3 and space.lines[("constraints", 0)] == 8


def test_legacy_json_q_becomes_a_step() -> None:
    legacy = {"name": "old", "hyperparameters": [
        {"name": "batch", "type": "uniform_int", "log": False, "lower": 16, "upper": 250, "default": 32, "q": 16},
        {"name": "drop", "type": "uniform_float", "log": False, "lower": 0.0, "upper": 0.55, "default": 0.1,
         "q": 0.1},
        {"name": "lr", "type": "uniform_float", "log": True, "lower": 1e-4, "upper": 1e-1, "default": 1e-3,
         "q": 0.0001},
    ], "conditions": [], "forbiddens": [], "json_format_version": 0.2}
    space = space_from_configspace_json(json.dumps(legacy, indent=2))
    leaves = dict(space.leaves())
    assert leaves["batch"].describe() == "int [16, 240] step 16"
    assert leaves["drop"].describe() == "float [0.0, 0.5] step 0.1"
    assert leaves["lr"].describe() == "float [0.0001, 0.1] log"  # log and q cannot combine: q left out


def test_json_errors_name_the_item_and_its_line() -> None:
    cs = pcs_space()
    doc = json.loads(to_json(cs))
    doc["hyperparameters"][2]["lower"] = 5.0  # momentum: lower > upper
    with pytest.raises(ConfigError, match="ConfigSpace cannot read this space") as info:
        space_from_configspace_json(json.dumps(doc, indent=2), source="cs.json")
    text = json.dumps(doc, indent=2)
    assert info.value.field == "hyperparameters[2]"
    assert info.value.line == key_lines(text)[("hyperparameters", 2)]  # the line of the item's opening brace
    assert doc["hyperparameters"][2]["name"] in info.value.message
    doc = json.loads(to_json(cs))
    doc["hyperparameters"][0]["type"] = "weird"
    with pytest.raises(ConfigError, match="weird") as info:
        space_from_configspace_json(json.dumps(doc, indent=2), source="cs.json")
    assert info.value.field == "hyperparameters[0]" and info.value.line == 4
    with pytest.raises(ConfigError, match="'name' and a 'type'") as info:
        space_from_configspace_json('{\n"hyperparameters": [\n  {"type": "uniform_int"}\n]}', source="cs.json")
    assert info.value.line == 3


def test_pcs_errors_name_the_line() -> None:
    text = "lr real [0.0001, 0.1] [0.001] log\nlayers integer [1, 8 [2]\n"
    with pytest.raises(ConfigError, match="not a valid PCS") as info:
        space_from_pcs(text, source="s.pcs")
    assert (info.value.source, info.value.line) == ("s.pcs", 2)
    with pytest.raises(ConfigError, match="not a valid PCS") as info:
        space_from_pcs("lr real [0.0001, 0.1] [0.001] log\nmomentum | algo in {sgd}\n", source="s.pcs")
    assert info.value.line == 2


def test_json_is_told_apart_by_content(tmp_path: Path) -> None:
    nni = tmp_path / "nni.json"
    nni.write_text('{"hyperparameters": {"_type": "choice", "_value": [1, 2]}}')  # an NNI parameter of that name
    assert set(automl.load_space(nni).root.child_map()) == {"hyperparameters"}
    yaml_cs = tmp_path / "cs.yaml"
    yaml_cs.write_text(__import__("yaml").safe_dump(json.loads(to_json(pcs_space()))))
    assert set(automl.load_space(yaml_cs).root.child_map()) == {"algo", "lr", "momentum", "layers", "act"}


def test_a_configspace_object_converts_directly() -> None:
    space = space_from_configspace(pcs_space(), name="direct")
    assert space.name == "direct" and space.source is None
    assert len(list(space.leaves())) == 5
