"""The nb201-digits cell space, its tabulated benchmark (build script -> table file -> loader) and the
``tabular`` estimator that reads it."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import automl
from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.space.catalog import load_space
from automl.space.loader import space_from_yaml
from automl.tasks.supervised import ClassificationInfo
from estimators.tabular import TabularEstimator
from search_spaces.nb201 import (
    EDGE_KEYS,
    OPS,
    CellBlock,
    arch_string,
    build_nb201,
    canonical_cell,
    cell_config,
    make_op,
    parse_arch_string,
)
from search_spaces.nb201_table import load_nas_table

ROOT = Path(__file__).resolve().parents[2]
INFO = ClassificationInfo(input_shape=(1, 8, 8), num_classes=10)


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_nas_table", ROOT / "benchmarks" / "build_nas_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of the first 3 classes of equivalent cells, written by the build script itself."""
    out = tmp_path_factory.mktemp("table") / "tiny.npz"
    torch_threads = torch.get_num_threads()
    try:
        assert _build_script().main(["--limit", "3", "--out", str(out), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    return out


@pytest.mark.parametrize("op", OPS[1:])
def test_every_op_keeps_the_shape(op: str) -> None:
    x = torch.randn(2, 8, 8, 8)
    assert make_op(op, 8)(x).shape == x.shape


@pytest.mark.parametrize("op", OPS)
def test_a_network_of_every_op_maps_digits_to_logits(op: str) -> None:
    model = build_nb201(cell_config([op] * 6), INFO)
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_a_cell_with_no_path_to_its_output_outputs_zeros() -> None:
    cell = CellBlock(("nor_conv_3x3", "skip_connect", "skip_connect", "none", "none", "none"), 4)
    assert len(cell.edges) == 0 and not cell(torch.randn(1, 4, 8, 8)).any()


def test_equivalent_cells_share_a_canonical_form_and_build_the_same_network() -> None:
    # node 2 is always zero (its inputs are none): its out-edge is dead
    assert canonical_cell(("skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3")) == \
        canonical_cell(("skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_3x3", "none"))
    # node 1 never reaches the output: its in-edge is dead
    assert canonical_cell(("skip_connect", "none", "none", "nor_conv_3x3", "none", "none")) == (
        "none", "none", "none", "nor_conv_3x3", "none", "none")
    # nodes 1 and 2 unconnected: swapping them is the same cell
    a = ("nor_conv_3x3", "skip_connect", "none", "none", "avg_pool_3x3", "nor_conv_1x1")
    b = ("skip_connect", "nor_conv_3x3", "none", "none", "nor_conv_1x1", "avg_pool_3x3")
    assert canonical_cell(a) == canonical_cell(b)
    torch.manual_seed(0)
    first = build_nb201(cell_config(a), INFO).state_dict()
    torch.manual_seed(0)
    second = build_nb201(cell_config(b), INFO).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    # a connected chain is not symmetric
    chain = ("nor_conv_3x3", "skip_connect", "skip_connect", "none", "none", "nor_conv_3x3")
    assert canonical_cell(chain) == chain
    cells = list(itertools.product(("none", "skip_connect", "nor_conv_3x3"), repeat=6))
    assert len({canonical_cell(c) for c in cells}) == 261 and all(canonical_cell(canonical_cell(c)) == canonical_cell(c)
                                                                     for c in cells)


def test_arch_strings_are_nas_bench_201s_and_round_trip() -> None:
    ops = ("nor_conv_3x3", "skip_connect", "none", "nor_conv_1x1", "avg_pool_3x3", "skip_connect")
    text = arch_string(ops)
    assert text == "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|"
    assert parse_arch_string(text) == ops
    with pytest.raises(ValueError, match="NAS-Bench-201 cell string"):
        parse_arch_string("|nor_conv_3x3~0|+|skip_connect~0|")


def test_the_space_refuses_an_unknown_op_at_load() -> None:
    text = "\n".join(["name: bad", "task: digits", "builder: nb201", "space:", "  model:",
                      *(f"    {k}: {{type: categorical, choices: [none, conv5x5]}}" for k in EDGE_KEYS)])
    with pytest.raises(ConfigError, match="unknown op 'conv5x5'"):
        space_from_yaml(text, source="bad.yaml")


def test_the_build_script_table_round_trips_through_the_loader(tiny_table: Path) -> None:
    table = load_nas_table(tiny_table)
    assert table.metadata["space"] == "nb201-digits" and table.metadata["trained_cells"] == 3
    assert table.metadata["ops"] == ["none", "skip_connect", "nor_conv_3x3"] and not table.metadata["complete"]
    assert table.budgets.tolist() == list(range(1, 10))
    n = len(table)
    assert table.val_accuracy.shape == table.val_loss.shape == table.test_accuracy.shape == (n, 9)
    assert table.train_seconds.shape == (n, 9)
    assert len(set(table.keys)) == n and len(np.unique(table.representative)) == 3
    assert (np.diff(table.train_seconds, axis=1) > 0).all()  # cumulative seconds
    assert ((0 <= table.val_accuracy) & (table.val_accuracy <= 1)).all()
    # every row holds the numbers of the cell trained for its class
    for row, ops in enumerate(table.ops):
        rep = table.representative[row]
        assert canonical_cell(ops) == canonical_cell(table.ops[rep])
        assert table.val_accuracy[row].tolist() == table.val_accuracy[rep].tolist()
    assert table.row(table.ops[5]) == 5


def _context(space_name: str = "nb201-digits-table", **info: object) -> EvalContext:
    return EvalContext(space=load_space(space_name), seed=0, trial_number=0, info=info)


def test_the_lookup_estimator_returns_the_tables_numbers(tiny_table: Path) -> None:
    table = load_nas_table(tiny_table)
    row = int(np.argmax(table.val_accuracy[:, -1]))
    estimator = TabularEstimator(table=str(tiny_table))
    config = {"model": cell_config(table.ops[row])}
    result = estimator.evaluate(automl.space.model.Candidate(config, "k"), 3, _context())
    assert result.metrics["accuracy"] == pytest.approx(table.val_accuracy[row, 2])
    assert result.metrics["loss"] == pytest.approx(table.val_loss[row, 2])
    assert result.metrics["cost_seconds"] == pytest.approx(table.train_seconds[row, 2])
    assert result.metrics["epochs"] == 3 and "test_accuracy" not in result.metrics
    assert result.cost == {"params": table.params[row], "flops": table.flops[row]}
    # a budget between two tabulated ones uses the one below; no budget, the largest; a test-scoring step, test
    assert estimator.lookup(config, 4.5)["epochs"] == 4
    assert estimator.lookup(config, None)["accuracy"] == pytest.approx(table.val_accuracy[row, -1])
    tested = estimator.evaluate(automl.space.model.Candidate(config, "k"), 9, _context(test=True))
    assert tested.metrics["test_accuracy"] == pytest.approx(table.test_accuracy[row, -1])


def test_bad_budget_unknown_cell_and_missing_table_are_clear_errors(tiny_table: Path, tmp_path: Path) -> None:
    table = load_nas_table(tiny_table)
    estimator = TabularEstimator(table=str(tiny_table))
    config = {"model": cell_config(table.ops[0])}
    for budget in (0.5, 10):
        with pytest.raises(ConfigError, match="outside the table's budgets 1..9"):
            estimator.lookup(config, budget)
    missing = next(c for c in itertools.product(("skip_connect", "nor_conv_3x3"), repeat=6) if c not in table.ops)
    with pytest.raises(ConfigError, match="is not in the table"):
        estimator.lookup({"model": cell_config(missing)}, 1)
    partial = {k: v for k, v in cell_config(table.ops[0]).items() if k != "edge_2_3"}
    with pytest.raises(ConfigError, match="the config lacks edge_2_3"):
        estimator.lookup({"model": partial}, 1)
    with pytest.raises(ConfigError, match="run `python benchmarks/build_nas_table.py`"):
        TabularEstimator(table=str(tmp_path / "absent.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a table")
    with pytest.raises(ConfigError, match="not a NAS table"):
        load_nas_table(tmp_path / "junk.npz")


def test_a_search_over_the_table_trains_nothing_and_charges_the_tabulated_seconds(tiny_table: Path) -> None:
    table = load_nas_table(tiny_table)
    configs = [{"model": cell_config(ops)} for ops in table.ops[:4]]
    text = (ROOT / "search_spaces" / "nb201-digits-table.yaml").read_text().replace(
        "estimator: {name: tabular}", f"estimator: {{name: tabular, options: {{table: '{tiny_table}'}}}}")
    study = automl.create_study(space_from_yaml(text, source="table.yaml"), strategy="given",
                                strategy_options={"configs": configs}, seed=0)
    study.optimize(n_trials=4)
    done = study.completed()
    assert len(done) == 4
    for trial in done:
        row = table.row(tuple(trial.config["model"][k] for k in EDGE_KEYS))
        column = table.budget_column(trial.budget if trial.budget is not None else 9)
        assert trial.metrics["accuracy"] == pytest.approx(table.val_accuracy[row, column])
        assert trial.metrics["cost_seconds"] == pytest.approx(table.train_seconds[row, column])


def test_the_cell_space_trains_with_the_train_estimator() -> None:
    study = automl.create_study("nb201-digits", strategy="random", seed=0, budget={"min": 1, "max": 1})
    study.optimize(n_trials=1)
    (trial,) = study.completed()
    assert 0.0 <= trial.metrics["accuracy"] <= 1.0 and trial.metrics["epochs"] == 1 and trial.metrics["params"] > 0
