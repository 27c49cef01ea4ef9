"""End-to-end: the ``automl`` command as a user runs it (search, kill, resume, report, bad input)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

AUTOML = str(Path(sys.executable).parent / "automl")

FAST_SPACE = """
name: quick
task: digits
builder: mlp
objectives: {accuracy: max}
budget: {name: epochs, min: 1, max: 2}
space:
  model:
    layers:
      type: repeat
      min: 1
      max: 2
      item:
        width: {type: int, low: 8, high: 64, log: true}
        activation: {type: categorical, choices: [relu, tanh]}
    dropout: {type: float, low: 0.0, high: 0.3}
  train:
    lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    optimizer: {type: categorical, choices: [sgd, adam]}
    momentum: {type: float, low: 0.0, high: 0.99, when: "train.optimizer == 'sgd'"}
"""


def run(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOML, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def finished(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=study, storage=storage).trials
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]


def completed_count(root: Path) -> int:
    """Finished trials, read without creating anything (the driver owns the schema)."""
    path = root / "automl-runs" / "automl.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet, or a write in progress
        return 0


def test_spaces_list_show_validate(tmp_path):
    listed = run("spaces", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "digits-mlp" in listed.stdout and "digits-cnn" in listed.stdout
    shown = run("spaces", "show", "digits-mlp", cwd=tmp_path)
    assert shown.returncode == 0
    assert "train.momentum" in shown.stdout and "train.optimizer == 'sgd'" in shown.stdout
    assert "params <= 200000" in shown.stdout
    (tmp_path / "quick.yaml").write_text(FAST_SPACE)
    validated = run("spaces", "validate", "quick.yaml", cwd=tmp_path)
    assert validated.returncode == 0 and "ok" in validated.stdout


@pytest.mark.parametrize("args, expected", [
    (["search", "--space", "nope"], "unknown space 'nope'"),
    (["search", "--space", "digits-mlp", "--strategy", "evolutoin"], "unknown strateg"),
    (["search", "--space", "bad.yaml"], "bad.yaml:3: space.lr.low: low (1.0) must not exceed high (0.1)"),
    (["search", "--space", "digits-mlp", "--storage", "sqlite:////proc/nope/x.db"], "storage"),
    (["report", "--study", "missing", "--storage", "sqlite:///empty.db"], "no study named 'missing'"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, expected):
    (tmp_path / "bad.yaml").write_text("name: bad\nspace:\n  lr: {type: float, low: 1.0, high: 0.1}\n")
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_trials_must_be_positive(tmp_path):
    result = run("search", "--space", "digits-mlp", "--trials", "0", cwd=tmp_path)
    assert result.returncode == 2 and "positive integer" in result.stderr


def test_user_space_with_own_builder_searches_and_reports(tmp_path):
    (tmp_path / "mybuilders.py").write_text(textwrap.dedent("""
        from torch import nn
        def build(config, info):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, config["hidden"]), nn.ReLU(),
                                 nn.Linear(config["hidden"], info.num_classes))
    """))
    (tmp_path / "mine.yaml").write_text(textwrap.dedent("""
        name: mine
        task: digits
        builder: "mybuilders:build"
        objectives: {accuracy: max, params: min}
        budget: {name: epochs, min: 1, max: 2}
        space:
          model:
            hidden: {type: int, low: 4, high: 64, log: true}
          train:
            lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    """))
    result = run("search", "--space", "mine.yaml", "--trials", "6", "--workers", "2", "--seed", "0", cwd=tmp_path,
                 env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "Best candidates of mine" in result.stdout and "6 trials: 6 complete" in result.stdout
    assert "optuna-dashboard sqlite:///automl-runs/automl.db" in result.stdout
    assert (tmp_path / "automl-runs" / "mine" / "best.json").exists()
    report = run("report", "--study", "mine", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "Leaderboard of mine" in report.stdout
    for name in ("convergence.png", "pareto.png"):
        png = tmp_path / "automl-runs" / "mine" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    (tmp_path / "quick.yaml").write_text(FAST_SPACE)
    storage = "sqlite:///automl-runs/automl.db"
    command = [AUTOML, "search", "--space", "quick.yaml", "--trials", "14", "--seed", "5"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"sqlite:///{tmp_path}/automl-runs/automl.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and completed_count(tmp_path) < 4:
        time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited early"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = finished(url, "quick")
    assert 4 <= len(before) < 14, "the search should have been killed midway"

    result = run("search", "--space", "quick.yaml", "--trials", "14", "--seed", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = finished(url, "quick")
    assert len(after) == 14
    # every trial finished before the kill is kept as it was, and none was re-run
    kept = {t.number: t.values for t in after}
    assert all(kept[t.number] == t.values for t in before)
    keys = [t.user_attrs["automl:key"] for t in after]
    assert len(keys) == len(set(keys))
    # a rerun of a finished study evaluates nothing more
    again = run("search", "--space", "quick.yaml", "--trials", "14", cwd=tmp_path)
    assert again.returncode == 0 and len(finished(url, "quick")) == 14
    assert storage in again.stdout


def test_one_shot_on_a_user_space_with_a_shareable_builder(tmp_path):
    (tmp_path / "myspace.py").write_text(textwrap.dedent("""
        from torch import nn
        from automl.elastic.layers import ElasticLinear
        from automl.supernet import SuperNet, supernets

        def build(config, info):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, config["hidden"]), nn.ReLU(),
                                 nn.Linear(config["hidden"], info.num_classes))

        class Net(SuperNet):
            def __init__(self, space, info):
                super().__init__()
                self.hidden, self.head = ElasticLinear(64, 96), ElasticLinear(96, info.num_classes)
            def forward(self, x, config):
                return self.head(self.hidden(x.flatten(1), config["hidden"]).relu())
            def extract(self, config):
                return nn.Sequential(nn.Flatten(), self.hidden.extract(64, config["hidden"]), nn.ReLU(),
                                     self.head.extract(config["hidden"], self.head.max_out))

        @supernets.register("myspace:build")
        def build_supernet(space, info):
            return Net(space, info)
    """))
    (tmp_path / "shared.yaml").write_text(textwrap.dedent("""
        name: shared
        task: digits
        builder: "myspace:build"
        objectives: {accuracy: max}
        budget: {name: epochs, min: 1, max: 3}
        space:
          model:
            hidden: {type: int, low: 8, high: 96}
          train:
            lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
    """))
    result = run("search", "--space", "shared.yaml", "--strategy", "one-shot", "--seed", "0",
                 "--option", "search_trials=6", "--option", "top_k=2", "--option", "supernet={epochs: 2}",
                 cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "9 trials: 9 complete" in result.stdout
    assert "phase 'search'" in result.stdout and "phase 'supernet'" in result.stdout
    assert list((tmp_path / "automl-runs" / "shared" / "checkpoints").glob("supernet-shared-*.pt"))
