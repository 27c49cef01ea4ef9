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
    refused = run("search", "--space", "mine.yaml", "--trials", "6", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert refused.returncode == 2 and "names code to import and run" in refused.stderr  # unless trusted
    result = run("search", "--space", "mine.yaml", "--trials", "6", "--workers", "2", "--seed", "0", "--trust-code",
                 cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
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
    result = run("search", "--space", "shared.yaml", "--strategy", "one-shot", "--seed", "0", "--trust-code",
                 "--option", "search_trials=6", "--option", "top_k=2", "--option", "supernet={epochs: 2}",
                 cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "9 trials: 9 complete" in result.stdout
    assert "phase 'search'" in result.stdout and "phase 'supernet'" in result.stdout
    assert list((tmp_path / "automl-runs" / "shared" / "checkpoints").glob("supernet-shared-*.pt"))


# -- hostile inputs (issue 15): one line, exit 2, no code run, nothing written outside the results folder ----
CODE_SPACE = """
name: shared
task: digits
builder: "{builder}"
objectives: {{accuracy: max}}
space:
  model: {model}
  train:
    lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
"""


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("builder", ["shutil:rmtree", "pty:spawn"])
def test_a_space_file_never_runs_code_unasked(tmp_path, builder):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    model = str(victim) if builder == "shutil:rmtree" else '[sh, -c, "touch ran"]'
    (tmp_path / "s.yaml").write_text(CODE_SPACE.format(builder=builder, model=model))
    validated = run("spaces", "validate", "s.yaml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert f"s.yaml:4: builder: names code to import and run ('{builder}'); validate did not import" in \
        validated.stdout and "--trust-code" in validated.stdout
    refused = one_line_error(run("search", "--space", "s.yaml", "--trials", "1", cwd=tmp_path))
    assert f"error: s.yaml:4: builder: '{builder}' names code to import and run" in refused
    assert (victim / "keep.txt").read_text() == "precious" and not (tmp_path / "ran").exists()
    assert not (tmp_path / "automl-runs").exists()  # refused before anything was written


def test_validate_never_imports_the_code_a_space_names(tmp_path):
    (tmp_path / "noisy.py").write_text("open('imported', 'w').write('yes')\ndef build(config, info): pass\n")
    (tmp_path / "s.yaml").write_text(CODE_SPACE.format(builder="noisy:build", model="{hidden: 4}"))
    for command in (["spaces", "validate", "s.yaml"], ["spaces", "show", "s.yaml"]):
        result = run(*command, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
        assert result.returncode == 0 and "names code to import and run" in result.stdout, result.stderr
    assert not (tmp_path / "imported").exists()
    env = {"PYTHONPATH": str(tmp_path), "AUTOML_TRUSTED_MODULES": "noisy", "AUTOML_SPACE_LIMITS": "trials=0"}
    trusted = run("search", "--space", "s.yaml", "--trials", "1", cwd=tmp_path, env=env)
    assert "AUTOML_SPACE_LIMITS: trials: a space limit must be a number > 0" in one_line_error(trusted)


@pytest.mark.parametrize("text, expected", [
    ("name: x\ntask: digits\nbuilder: nope\nspace:\n  a: {type: bool}\n", "x.yaml:3: builder: unknown builder 'nope'"),
    ("name: x\ntask: digitz\nbuilder: mlp\nspace:\n  a: {type: bool}\n", "x.yaml:2: task: unknown task 'digitz'"),
    ("name: x\nsearch: {strategy: evolutoin}\nspace:\n  a: {type: bool}\n",
     "x.yaml:2: search.strategy: unknown strategy 'evolutoin' (did you mean 'evolution'?)"),
    ("name: x\ntask: digits\nbuilder: mlp\nspace:\n  model: {layers: []}\n  train: {batch_size: 0}\n",
     "x.yaml:6: space.train.batch_size: must be an integer >= 1, got 0 (training recipe)"),
    ("name: x\ntask: digits\nbuilder: mlp\nspace:\n  model: {layers: []}\n  train:\n"
     "    lr: {type: float, low: -1, high: 1}\n", "x.yaml:7: space.train.lr: must be a number > 0, got -1.0"),
    ("name: ../../x\nspace:\n  a: {type: bool}\n", "x.yaml:1: name: a name is letters, digits"),
])
def test_validate_refuses_what_cannot_work(tmp_path, text, expected):
    (tmp_path / "x.yaml").write_text(text)
    assert expected in one_line_error(run("spaces", "validate", "x.yaml", cwd=tmp_path))


def test_an_unknown_builder_fails_the_search_before_any_trial(tmp_path):
    (tmp_path / "x.yaml").write_text(FAST_SPACE.replace("builder: mlp", "builder: mpl"))
    error = one_line_error(run("search", "--space", "x.yaml", "--trials", "1", cwd=tmp_path))
    assert "x.yaml:4: builder: unknown builder 'mpl' (did you mean 'mlp'?)" in error
    assert not (tmp_path / "automl-runs").exists()


@pytest.mark.parametrize("args, expected", [
    (["search", "--space", "quick.yaml", "--study-name", "../../escaped"], "--study-name: a name is letters"),
    (["search", "--space", "quick.yaml", "--study-name", "/tmp/abs"], "--study-name: a name is letters"),
    (["report", "--study", "../up"], "--study: a name is letters"),
])
def test_names_never_lead_out_of_the_results_folder(tmp_path, args, expected):
    (tmp_path / "quick.yaml").write_text(FAST_SPACE)
    assert expected in one_line_error(run(*args, cwd=tmp_path))
    assert not (tmp_path.parent / "escaped").exists()


def test_invalid_utf8_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"name: x\nspace:\n  a: {type: categorical, choices: [caf\xe9]}\n")
    assert "bad.yaml:3: the space file is not valid UTF-8: byte 0xe9" in one_line_error(
        run("spaces", "validate", "bad.yaml", cwd=tmp_path))


@pytest.mark.parametrize("option, value", [("--timeout", "nan"), ("--trial-timeout", "inf"), ("--workers", "10**9"),
                                           ("--workers", "1000000"), ("--seed", "-1"), ("--option", "x=" + "[" * 5000),
                                           ("--option", "when=2001-13-45")])
def test_absurd_command_line_values_are_refused(tmp_path, option, value):
    result = run("search", "--space", "digits-mlp", option, value, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and option in result.stderr


def test_a_hostile_enqueue_file_is_one_line(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    error = one_line_error(run("search", "--space", "digits-mlp", "--enqueue", "deep.json", cwd=tmp_path))
    assert "error: deep.json:1: the document nests deeper than 64 levels" in error


@pytest.mark.parametrize("name, text, expected", [
    ("search_space.json", '{"x": {"_type": "uniform", "_value": [0, 1]}}',
     "error: search_space.json: task: the space names no task"),
    ("x.yaml", FAST_SPACE + "search: {strategy: evolutoin}\n",
     "x.yaml:21: search.strategy: unknown strategy 'evolutoin'"),
    ("r.yaml", FAST_SPACE + "regime: standrd\n", "r.yaml:21: regime: unknown regime 'standrd'"),
])
def test_a_search_names_the_file_and_line_of_what_it_cannot_run(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert expected in one_line_error(run("search", "--space", name, "--trials", "1", cwd=tmp_path))
    assert not (tmp_path / "automl-runs").exists()
