"""Model-selection rules as a study option: ``study.best`` follows the rule, the rule is checked at study
creation, and the report shows every rule's pick beside the test-environment accuracy."""
from __future__ import annotations

import numpy as np
import pytest

import automl
from automl.errors import AutomlError, ConfigError
from automl.ood import select_expansion
from automl.selection_report import plot_selection, rule_picks, selection_table, spearman_variation
from automl.space import load_space
from automl.space.writer import space_to_yaml

SPACE = """
name: picks
objectives: {{accuracy: max}}
{selection}
space:
  i: {{type: int, low: 0, high: 7}}
"""

# eight candidates: accuracy, v(h), oracle (test-domain validation) accuracy, test-environment accuracy
ACCURACY = [0.90, 0.88, 0.86, 0.84, 0.70, 0.60, 0.89, 0.50]
VARIATION = [0.50, 0.10, 0.30, 0.05, 0.01, 0.20, 0.40, 0.90]
ORACLE = [0.30, 0.70, 0.50, 0.80, 0.60, 0.40, 0.35, 0.20]
OOD = [0.31, 0.69, 0.52, 0.79, 0.58, 0.41, 0.33, 0.22]


def _space(tmp_path, selection=""):
    path = tmp_path / "picks.yaml"
    path.write_text(SPACE.format(selection=selection))
    return str(path)


def _objective(config):
    i = config["i"]
    return {"accuracy": ACCURACY[i], "variation": VARIATION[i], "oracle_accuracy": ORACLE[i], "ood_accuracy": OOD[i]}


def _run(tmp_path, **kwargs):
    study = automl.create_study(_space(tmp_path, kwargs.pop("yaml", "")), strategy="given", seed=0,
                                strategy_options={"configs": [{"i": i} for i in range(8)]}, **kwargs)
    study.optimize(_objective, n_trials=8)
    return study


def test_best_value_is_the_default_and_picks_the_best_accuracy(tmp_path):
    study = _run(tmp_path)
    assert study.best.config == {"i": 0}


def test_expansion_picks_what_the_official_criterion_picks(tmp_path):
    expected = select_expansion(ACCURACY, VARIATION)
    assert expected != int(np.argmax(ACCURACY))  # the case is one where the rules disagree
    study = _run(tmp_path, selection="expansion")
    assert study.best.config == {"i": expected}
    # from the space's own `selection:` too, with an option
    assert _run(tmp_path, yaml="selection: {name: expansion, options: {window: 0.1}}").best.config == {"i": expected}


def test_oracle_picks_the_best_test_domain_validation_accuracy(tmp_path):
    assert _run(tmp_path, selection="oracle").best.config == {"i": int(np.argmax(ORACLE))}


def test_a_rule_whose_metric_no_trial_reports_says_so(tmp_path):
    study = automl.create_study(_space(tmp_path), strategy="random", seed=0, selection="expansion")
    study.optimize(lambda c: {"accuracy": 0.5}, n_trials=2)
    with pytest.raises(AutomlError, match="no completed trial reports a finite variation.*train the candidates longer"):
        _ = study.best


@pytest.mark.parametrize("yaml, message", [
    ("selection: median-of-three", "unknown selection 'median-of-three'"),
    ("selection: {name: expansion, options: {window: 2}}", "window must be a number in \\(0, 1\\]"),
    ("selection: {name: expansion, options: {ratio: 1}}", "ratio"),
])
def test_a_bad_selection_in_the_space_names_its_line(tmp_path, yaml, message):
    with pytest.raises(ConfigError, match=message) as caught:
        automl.create_study(_space(tmp_path, yaml), seed=0)
    assert caught.value.line == 4 and "picks.yaml" in str(caught.value)


def test_expansion_needs_a_maximised_first_objective(tmp_path):
    path = tmp_path / "loss.yaml"
    path.write_text("name: l\nobjectives: {loss: min}\nspace:\n  i: {type: int, low: 0, high: 3}\n")
    with pytest.raises(ConfigError, match="first objective must be one .got loss min"):
        automl.create_study(str(path), seed=0, selection="expansion")


def test_an_estimator_that_cannot_report_the_rules_metric_is_refused_at_creation():
    with pytest.raises(ConfigError, match="reads variation, which estimator 'train' does not report for supervised"):
        automl.create_study("digits-mlp", seed=0, selection="expansion")


def test_the_selection_changes_the_study_and_round_trips_through_yaml(tmp_path):
    plain = load_space(_space(tmp_path))
    chosen = load_space(_space(tmp_path, "selection: expansion"))
    assert chosen.selection == ("expansion", {}) and plain.selection == ("best-value", {})
    assert chosen.fingerprint != plain.fingerprint
    again = tmp_path / "again.yaml"
    again.write_text(space_to_yaml(chosen))
    assert load_space(str(again)).selection == ("expansion", {})


def test_the_report_shows_each_rules_pick_with_its_test_accuracy(tmp_path):
    study = _run(tmp_path, selection="expansion")
    picks = rule_picks(study.trials, study.objectives)
    assert {n: t.config["i"] for n, t in picks.items()} == {
        "best-value": 0, "expansion": select_expansion(ACCURACY, VARIATION), "oracle": int(np.argmax(ORACLE))}
    table = selection_table(study.trials, study.objectives, "expansion")
    assert table is not None and table.row_count == 3
    from scipy.stats import spearmanr

    assert spearman_variation(study.trials) == pytest.approx(spearmanr([-v for v in VARIATION], OOD).statistic)
    path = plot_selection(study.trials, study.objectives, tmp_path / "out")
    assert path is not None and path.stat().st_size > 1000


def test_no_table_for_a_study_without_test_environments(tmp_path):
    study = automl.create_study(_space(tmp_path), strategy="random", seed=0)
    study.optimize(lambda c: {"accuracy": 0.5}, n_trials=2)
    assert selection_table(study.trials, study.objectives, "best-value") is None
    assert plot_selection(study.trials, study.objectives, tmp_path) is None
