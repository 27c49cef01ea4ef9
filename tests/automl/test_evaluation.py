"""Study creation checks the evaluation side once: the task's, estimator's and regimes' options and the
task family, each problem one ConfigError naming the file, the line and the option."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import automl
from automl.errors import ConfigError

AUTOML = str(Path(sys.executable).parent / "automl")

SPACE = """\
name: checked
task: {name: digits, options: {val_fraction: 0.2}}
builder: mlp
estimator: {name: train, options: {default_epochs: 1}}
objectives: {accuracy: max}
space:
  model:
    layers: [{width: 16, activation: relu}]
    dropout: 0.0
"""


@pytest.mark.parametrize("edit,expected", [
    (("val_fraction: 0.2", "valfrac: 0.2"), "checked.yaml:2: task.options.valfrac: task DigitsTask got unknown "
                                            "options"),
    (("val_fraction: 0.2", "val_fraction: 2"),
     "checked.yaml:2: task.options.val_fraction: digits: val_fraction must be in (0, 1)"),
    (("name: digits", "name: digit"), "checked.yaml:2: task: unknown task 'digit' (did you mean 'digits'?)"),
    (("default_epochs: 1", "default_epoch: 1"), "checked.yaml:4: estimator.options.default_epoch: estimator "
                                                "'train' has no option 'default_epoch'"),
    (("name: train", "name: biws"), "checked.yaml:4: estimator: estimator 'biws' evaluates text tasks; task 'digits' "
                                    "is a supervised task"),
])
def test_a_typo_fails_at_study_creation_with_file_line_and_option(edit, expected):
    space = automl.space_from_yaml(SPACE.replace(*edit), source="checked.yaml")
    with pytest.raises(ConfigError) as info:
        automl.create_study(space)
    assert str(info.value).startswith(expected), str(info.value)


def test_the_cli_stops_before_any_trial(tmp_path):
    (tmp_path / "checked.yaml").write_text(SPACE.replace("default_epochs: 1", "default_epoch: 1"))
    result = subprocess.run([AUTOML, "search", "--space", "checked.yaml", "--trials", "3"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: checked.yaml:4: estimator.options.default_epoch: estimator 'train' has no option 'default_epoch' "
        "(its options: default_epochs, device)"]
    assert not (tmp_path / "automl-runs" / "automl.db").exists()  # nothing was written
