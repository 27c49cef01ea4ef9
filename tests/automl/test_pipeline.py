"""Pipelines of steps: from/top_k/fix/search semantics, resumption, and every bad input named."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import automl
from automl.errors import AutomlError, ConfigError
from automl.pipeline import load_pipeline, pipeline_status, run_pipeline

TINY = """\
name: tiny
steps:
  nas:   {space: digits-cnn, strategy: random, trials: 3, fix: {train: {lr: 0.01, optimizer: adam}}}
  hpo:   {from: nas, top_k: 2, search: train, strategy: random, trials: 2}
  train: {from: hpo, top_k: 1, seeds: 2, budget: 2}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_steps_pass_their_best_on_fix_holds_and_search_train_searches_only_train(tmp_path):
    storage = f"sqlite:///{tmp_path / 'l.db'}"
    studies = run_pipeline(write(tmp_path, TINY), storage=storage, output=tmp_path / "runs")
    (nas,) = studies["nas"]
    assert all(t.config["train"]["lr"] == 0.01 and t.config["train"]["optimizer"] == "adam" for t in nas.trials)  # fix
    assert len({t.config["train"]["batch_size"] for t in nas.trials} | {64}) >= 1  # what fix does not name is searched
    hpo = studies["hpo"]
    assert [s.study_name for s in hpo] == ["tiny.hpo.0", "tiny.hpo.1"]  # one study per incoming candidate
    ranked = sorted((t for t in nas.trials if t.values), key=lambda t: -t.values["accuracy"])
    for study, parent in zip(hpo, ranked):
        assert all(t.config["model"] == parent.config["model"] for t in study.trials)  # model held
        assert len({str(t.config["train"]) for t in study.trials}) == 2  # train searched
    (train,) = studies["train"]
    assert len(train.trials) == 2 and {t.info["replica"] for t in train.trials} == {0, 1}
    assert all("test_accuracy" in t.metrics for t in train.trials)  # only the train step sees the test split
    assert not any("test_accuracy" in t.metrics for s in [nas, *hpo] for t in s.trials)
    assert len({t.metrics["loss"] for t in train.trials}) == 2  # two seeds, two trainings
    assert all(t.budget == 2 for t in train.trials)
    status = pipeline_status("tiny", storage)
    assert list(status) == ["nas", "hpo", "train"] and all(s["state"] == "done" for s in status.values())
    best = status["train"]["outputs"][0]
    assert set(best["std"]) >= {"accuracy", "test_accuracy"}
    # rerun: nothing is run again
    again = run_pipeline(write(tmp_path, TINY), storage=storage, output=tmp_path / "runs")
    assert [len(s.trials) for s in again["hpo"]] == [2, 2]


def test_from_step_reruns_into_new_studies_and_keeps_the_old(tmp_path):
    storage = f"sqlite:///{tmp_path / 'l.db'}"
    run_pipeline(write(tmp_path, TINY), storage=storage, output=tmp_path / "runs")
    studies = run_pipeline(write(tmp_path, TINY), storage=storage, output=tmp_path / "runs", from_step="train")
    assert studies["train"][0].study_name == "tiny.train.r2"
    from optuna.storages import RDBStorage

    names = {s.study_name for s in RDBStorage(storage).get_all_studies()}
    assert {"tiny.train", "tiny.train.r2"} <= names


def test_a_changed_step_is_refused_until_rerun_from_it(tmp_path):
    storage = f"sqlite:///{tmp_path / 'l.db'}"
    run_pipeline(write(tmp_path, TINY), storage=storage, output=tmp_path / "runs")
    changed = write(tmp_path, TINY.replace("trials: 2}", "trials: 3}"))
    with pytest.raises(ConfigError, match="p.yaml:4: steps.hpo: step 'hpo' changed since it ran; rerun it with "
                                          "--from hpo"):
        run_pipeline(changed, storage=storage, output=tmp_path / "runs")


@pytest.mark.parametrize("edit,message", [
    (("trials: 3, fix", "trials: 3, fixx"), "p.yaml:3: steps.nas.fixx: unknown key 'fixx' for a search step"),
    (("from: nas, top_k: 2", "from: nope, top_k: 2"), "p.yaml:4: steps.hpo.from: 'from: nope' names no step"),
    (("from: hpo", "from: train"), "p.yaml:5: steps.train.from: 'from: train' names itself"),
    (("{from: nas, top_k: 2", "{from: train, top_k: 2"), "p.yaml:4: steps.hpo.from: 'from: train' names a later step"),
    (("top_k: 2, search", "top_k: 0, search"), "p.yaml:4: steps.hpo.top_k: expected an integer >= 1, got 0"),
    (("budget: 2", "budget: most"), "p.yaml:5: steps.train.budget: expected 'max' or a number > 0"),
    (("  train:", "  ../../x:"), "p.yaml:5: steps.`../../x`: a step name is letters, digits"),
    (("name: tiny", "name: ../tiny"), "p.yaml:1: name: a pipeline name is letters, digits"),
    (("seeds: 2, ", "seeds: 2, formats: [pt2], "),
     "p.yaml:5: steps.train.top_k: unknown key 'top_k' for an export step"),
])
def test_bad_pipelines_name_file_line_and_field(tmp_path, edit, message):
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, TINY.replace(*edit)))
    assert message in str(info.value), str(info.value)


def test_an_unsupported_export_format_and_top_k_beyond_what_ran(tmp_path):
    bad = TINY + "  export: {from: train, formats: [pt2, tflite]}\n"
    with pytest.raises(ConfigError, match="p.yaml:6: steps.export.formats\\[1\\]: unsupported export format 'tflite'"):
        load_pipeline(write(tmp_path, bad))
    greedy = TINY.replace("top_k: 2, search", "top_k: 5, search")
    with pytest.raises(AutomlError, match="top_k \\(5\\) is larger than what step 'nas' produced \\(3 candidates\\)"):
        run_pipeline(write(tmp_path, greedy), storage=None, output=tmp_path / "runs")


def test_a_failed_step_stops_the_pipeline_naming_it_and_keeps_what_finished(tmp_path):
    storage = f"sqlite:///{tmp_path / 'l.db'}"
    failing = TINY.replace("strategy: random, trials: 2", "strategy: random, trials: 2, options: {population: 3}")
    with pytest.raises(AutomlError, match="step 'hpo'"):
        run_pipeline(write(tmp_path, failing), storage=storage, output=tmp_path / "runs")
    status = pipeline_status("tiny", storage)
    assert status["nas"]["state"] == "done" and status["hpo"]["state"] == "failed"


def test_given_strategy_evaluates_its_list_with_replicas():
    space = automl.space_from_yaml("name: g\nspace:\n  x: {type: float, low: 0, high: 1}\n")
    study = automl.create_study(space, strategy="given", strategy_options={"configs": [{"x": 0.1}, {"x": 0.2}],
                                                                           "replicas": 2})
    study.optimize(lambda c: c["x"])
    assert [(t.config["x"], t.info["replica"]) for t in study.trials] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]


ISSUE_EXAMPLE = """\
name: digits-cnn-full
steps:
  nas:    {space: digits-cnn, strategy: evolution, trials: 4, fix: {train: {lr: 0.01, optimizer: adam}}}
  hpo:    {from: nas, top_k: 2, search: train, strategy: tpe, trials: 6}
  train:  {from: hpo, top_k: 1, seeds: 2, budget: max}
  export: {from: train, formats: [pt2, onnx]}
"""


@pytest.mark.slow
def test_the_issue_pipeline_survives_a_kill_mid_hpo_and_exports_a_model_torch_alone_loads(tmp_path):
    """Run the example pipeline from the command line, SIGKILL it during the hpo step, rerun the same
    command, and score the exported model in a separate process that has only torch."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from automl.ledger import Ledger, open_storage
    from automl.strategies.base import TrialState
    from automl.tasks.digits import DigitsTask

    automl_bin = str(Path(sys.executable).parent / "automl")
    write(tmp_path, ISSUE_EXAMPLE, "pipeline.yaml")
    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    command = [automl_bin, "run", "pipeline.yaml", "--storage", storage, "--threads", "1"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def hpo_trials() -> int:
        try:
            trials = Ledger.load(open_storage(storage), "digits-cnn-full.hpo.0").trials()
            return sum(t.state is TrialState.COMPLETE for t in trials)
        except Exception:  # not created yet
            return 0

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and hpo_trials() < 2:
        assert proc.poll() is None, "the pipeline ended before it was killed"
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= hpo_trials() < 6
    status = pipeline_status("digits-cnn-full", storage)
    assert status["nas"]["state"] == "done" and status["hpo"]["state"] == "running"
    nas_trials = len(Ledger.load(open_storage(storage), "digits-cnn-full.nas").trials())

    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "step nas: done earlier" in rerun.stdout
    assert len(Ledger.load(open_storage(storage), "digits-cnn-full.nas").trials()) == nas_trials  # not rerun
    hpo0 = Ledger.load(open_storage(storage), "digits-cnn-full.hpo.0").trials()
    assert sum(t.state is TrialState.COMPLETE for t in hpo0) == 6  # resumed up to its total

    out = tmp_path / "automl-runs" / "digits-cnn-full" / "export"
    card = json.loads((out / "card.json").read_text())
    data = DigitsTask().load()
    torch.save({"x": data.test_x, "y": data.test_y}, tmp_path / "test.pt")
    score = ("import sys, torch\n"
             "program = torch.export.load(sys.argv[1]).module()\n"
             "d = torch.load(sys.argv[2])\n"
             "print(float((program(d['x']).argmax(1) == d['y']).float().mean()))\n")
    scored = subprocess.run([sys.executable, "-I", "-c", score, str(out / "model.pt2"), str(tmp_path / "test.pt")],
                            cwd="/", capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    assert abs(float(scored.stdout) - card["metrics"]["test_accuracy"]) <= 0.01
    assert (out / "model.onnx").exists() and (out / "MODEL.md").exists()
