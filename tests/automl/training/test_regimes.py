"""The regime contract: the registry, the conformance suite on ``standard``, and how spaces, the CLI and
study creation name and check regimes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import automl
from automl.errors import ConfigError
from automl.testing.regimes import REGIME_CHECKS, classification_problem
from automl.training.regime import regimes

AUTOML = str(Path(sys.executable).parent / "automl")

SPACE = """\
name: regimed
task: digits
builder: mlp
objectives: {accuracy: max}
regime: {name: standard}
space:
  model:
    layers: [{width: 16, activation: relu}]
    dropout: 0.0
  train:
    lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


@pytest.mark.parametrize("check", REGIME_CHECKS)
def test_standard_passes_the_conformance_suite(check):
    check("standard", {}, classification_problem())


def test_built_in_regimes_are_registered_by_name():
    assert {"standard", "gdetkd"} <= set(regimes.names())
    assert regimes.get("gdetkd").families == frozenset({"detection"})


def test_a_space_names_its_regimes_and_the_study_checks_them(tmp_path):
    space = automl.space_from_yaml(SPACE, source="regimed.yaml")
    assert space.regimes == (("standard", {}),)
    study = automl.create_study(space, seed=0)
    assert [s.name for s in study.setup.regimes] == ["standard"]
    study.optimize(n_trials=1)
    assert study.trials[0].state is automl.TrialState.COMPLETE


@pytest.mark.parametrize("regime,message,line", [
    ("regime: nope", "unknown regime 'nope'", 5),
    ("regime: {name: standard, options: {strength: 2}}", "regime.options.strength: regime StandardRegime got "
     "unknown options ['strength']", 5),
    ("regime: [standard, {name: gdetkd}]", "regime[1].name: regime 'gdetkd' trains detection tasks, not supervised", 5),
])
def test_a_bad_regime_fails_at_study_creation_naming_file_line_and_field(regime, message, line):
    text = SPACE.replace("regime: {name: standard}", regime)
    space = automl.space_from_yaml(text, source="regimed.yaml")
    with pytest.raises(ConfigError) as info:
        automl.create_study(space)
    assert message in str(info.value) and str(info.value).startswith(f"regimed.yaml:{line}:")


def test_regimes_given_in_python_replace_the_spaces_and_change_the_study():
    space = automl.space_from_yaml(SPACE.replace("regime: {name: standard}\n", ""), source="regimed.yaml")
    plain = automl.create_study(space)
    overridden = automl.create_study(space, regimes=[("standard", {})])
    assert overridden.space.regimes == (("standard", {}),)
    assert overridden.space.fingerprint != plain.space.fingerprint  # a resumed study cannot silently switch regime
    with pytest.raises(ConfigError, match="--regime nope: unknown regime"):
        automl.create_study(space, regimes=[("nope", {})])


def test_an_estimator_that_does_not_train_refuses_a_regime(monkeypatch):
    from automl.training.regime import Regime
    from automl.training.regime import regimes as registry

    class Probe(Regime):
        """A regime for any family (the test's)."""

    monkeypatch.setitem(registry._items, "probe-for-supernet-test", Probe)
    text = SPACE.replace("regime: {name: standard}", "regime: probe-for-supernet-test").replace(
        "builder: mlp", "builder: mlp\nestimator: supernet")
    with pytest.raises(ConfigError, match="does not train with regimes"):
        automl.create_study(automl.space_from_yaml(text, source="s.yaml"))


@pytest.mark.slow
def test_cli_lists_regimes_and_overrides_them(tmp_path):
    listed = subprocess.run([AUTOML, "regimes"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "standard" in listed.stdout and "gdetkd" in listed.stdout
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SPACE))
    bad = subprocess.run([AUTOML, "search", "--space", "s.yaml", "--trials", "1", "--regime", "standard",
                          "--regime-option", "strength=2"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and "--regime standard" in bad.stderr and "strength" in bad.stderr
    ok = subprocess.run([AUTOML, "search", "--space", "s.yaml", "--trials", "1", "--regime", "standard"],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
