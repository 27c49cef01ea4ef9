"""detnas end to end: the estimator, ``automl search`` on a detnas variant, and ``automl distill``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from automl.artifacts import ArtifactStore, model_artifact
from automl.errors import ConfigError
from automl.estimator import EvalContext, estimators
from automl.space import load_space
from automl.space.model import SearchSpace

AUTOML = str(Path(sys.executable).parent / "automl")
REPO = Path(__file__).resolve().parents[3]
TINY_TASK = {"train_images": 48, "val_images": 16, "seed": 1}
TINY_ESTIMATOR = {"init_steps": 12, "child_steps": 6, "teacher_steps": [6, 3, 3], "batch_size": 4}


def tiny_space_yaml(tmp_path: Path, **estimator: object) -> Path:
    """The registered detnas space as a user's copy, with a small task and short training."""
    spec = yaml.safe_load((REPO / "search_spaces" / "detnas.yaml").read_text())
    spec["name"] = "detnas-tiny"
    spec["task"] = {"name": "shapes-detection", "options": {**TINY_TASK, "root": str(tmp_path / "data")}}
    spec["estimator"] = {"name": "detnas", "options": {**TINY_ESTIMATOR, **estimator}}
    spec["search"] = {"strategy": "morphism-evolution", "trials": 4, "options": {"population": 2}}
    path = tmp_path / "detnas-tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOML, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def _evaluate(space: SearchSpace, config: dict, store: ArtifactStore, number: int, info: dict | None = None):
    estimator = estimators.get("detnas")(**space.estimator_options)
    ctx = EvalContext(space=space, seed=0, trial_number=number, checkpoints=store, info=info or {})
    return estimator.evaluate(space.candidate(config), None, ctx)


def test_registered_space_loads_with_its_components():
    space = load_space("detnas")
    assert space.task == "shapes-detection" and space.builder == "detnas" and space.estimator == "detnas"
    assert [o.name for o in space.objectives] == ["mAP", "latency_ms"]
    assert space.defaults.strategy == "morphism-evolution"


def test_a_child_inherits_its_parents_weights(tmp_path):
    from search_spaces.detnas.morph import morph_detnas

    space = load_space(tiny_space_yaml(tmp_path))
    store = ArtifactStore(str(tmp_path / "store"))
    parent_cfg = space.sample(np.random.default_rng(0))
    parent = _evaluate(space, parent_cfg, store, 0)
    assert store.exists(model_artifact(space.key(parent_cfg)))
    assert 0.0 <= parent.metrics["mAP"] <= 1.0 and parent.cost["latency_ms"] > 0 and parent.cost["flops"] > 0
    assert parent.metrics["inherited"] == 0.0 and parent.metrics["steps"] == TINY_ESTIMATOR["init_steps"]
    child_cfg, action = morph_detnas(space, parent_cfg, np.random.default_rng(1))
    child = _evaluate(space, child_cfg, store, 1, {"parent_key": space.key(parent_cfg), "action": action})
    assert child.metrics["inherited"] == 1.0 and child.metrics["steps"] == TINY_ESTIMATOR["child_steps"]
    assert child.metrics["inherited_copied"] + child.metrics["inherited_sliced"] > 0


def test_the_estimator_refuses_a_classification_task(tmp_path):
    spec = yaml.safe_load(tiny_space_yaml(tmp_path).read_text())
    spec["task"] = "digits"
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(spec))
    space = load_space(path)
    with pytest.raises(ConfigError, match="detection task"):
        _evaluate(space, space.sample(np.random.default_rng(0)), ArtifactStore(str(tmp_path / "s")), 0)


@pytest.mark.parametrize("options,match", [({"kd": "mse"}, "kd must be one of"),
                                           ({"teacher_steps": [1, 2]}, "teacher_steps"),
                                           ({"init_steps": -1}, ">= 0"),
                                           ({"frobnicate": 1}, "has no option 'frobnicate'")])
def test_bad_estimator_options(options, match):
    from automl.components import construct

    with pytest.raises(ConfigError, match=match):
        construct(estimators.get("detnas"), options, kind="estimator", name="detnas")


@pytest.mark.slow
def test_search_cli_end_to_end_with_resume(tmp_path):
    space = tiny_space_yaml(tmp_path)
    first = run("search", "--space", str(space), "--trials", "4", "--seed", "0", cwd=tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Pareto front of detnas-tiny" in first.stdout
    assert "exported best model" in first.stdout
    out = tmp_path / "automl-runs" / "detnas-tiny"
    from search_spaces.detnas.saved import load_detector

    detector, saved = load_detector(out / "best_model.pt")  # the exported student, rebuilt as users would
    assert "teacher" in saved["config"] and "stages" in saved["config"]["model"]
    boxes, scores, labels = detector.predict(torch.rand(2, 3, 64, 64))[0]
    assert boxes.shape[1:] == (4,) and len(scores) == len(labels)
    assert len(list((out / "models").glob("*.pt"))) == first.stdout.count("exported front member")
    best = json.loads((out / "best.json").read_text())
    assert "mAP" in best["values"] and "latency_ms" in best["values"]

    again = run("search", "--space", str(space), "--trials", "5", cwd=tmp_path)  # resume: one more trial
    assert again.returncode == 0, again.stderr + again.stdout
    import optuna

    trials = optuna.load_study(study_name="detnas-tiny", storage=f"sqlite:///{tmp_path}/automl-runs/automl.db").trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    morphs = [t for t in complete if t.user_attrs.get("info", {}).get("origin") == "morph"] or \
        [t for t in complete if t.number >= 2]
    assert morphs, "trials after the initial population are morphs of a parent"

    # the exported student distils further: homogeneous pair with a faster-rcnn teacher trained here
    distilled = run("distill", "--teacher", "faster-rcnn:16:1,1,1:16,32,64", "--student", str(out / "best_model.pt"),
                    "--teacher-steps", "6", "--steps", "4", "--batch-size", "4", "--compare",
                    "--out", str(tmp_path / "kd"), *_task_options(tmp_path), cwd=tmp_path)
    assert distilled.returncode == 0, distilled.stderr + distilled.stdout
    report = json.loads((tmp_path / "kd" / "report.json").read_text())
    assert report["baseline"] is not None and set(report["student"]) >= {"mAP", "AP50"}


def _task_options(tmp_path: Path) -> list[str]:
    opts = []
    for key, value in {**TINY_TASK, "root": str(tmp_path / "data")}.items():
        opts += ["--task-option", f"{key}={value}"]
    return opts


@pytest.mark.slow
@pytest.mark.parametrize("teacher,student,homogeneous", [("faster-rcnn:16:1,1,1:16,32,64", "faster-rcnn", True),
                                                         ("faster-rcnn:16:1,1,1:16,32,64", "fcos", False)])
def test_distill_cli(tmp_path, teacher, student, homogeneous):
    result = run("distill", "--teacher", teacher, "--student", student, "--teacher-steps", "6", "--steps", "4",
                 "--batch-size", "4", "--out", str(tmp_path / "kd"), *_task_options(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((tmp_path / "kd" / "report.json").read_text())
    assert report["homogeneous"] is homogeneous
    # head transfer (homogeneous only): with the default FPN widths (teacher 64 / student 32) the
    # RoI head's later layers match in shape, its first layer does not
    assert (report["head_transfer"] > 0) is homogeneous
    assert ("homogeneous" if homogeneous else "heterogeneous") in result.stdout
    assert (tmp_path / "kd" / "student.pt").exists() and (tmp_path / "kd" / "teacher.pt").exists()
    # the saved teacher is reused as it is (no training) by a second run
    again = run("distill", "--teacher", str(tmp_path / "kd" / "teacher.pt"), "--student", student, "--steps", "2",
                "--batch-size", "4", "--out", str(tmp_path / "kd2"), *_task_options(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "loaded" in again.stdout


@pytest.mark.parametrize("spec,match", [("yolo", "unknown detector 'yolo'"), ("retinanet:16:1,1:8,8", "3 depths"),
                                        ("nope.pt", "no such file"), ("retinanet:x", "expected KIND")])
def test_distill_bad_specs_are_one_line_errors(tmp_path, spec, match):
    result = run("distill", "--teacher", spec, "--student", "retinanet", *_task_options(tmp_path), cwd=tmp_path,
                 timeout=300)
    assert result.returncode == 2
    assert match in result.stderr and "Traceback" not in result.stderr


def test_search_on_a_broken_coco_file_fails_once_with_file_and_record(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.png")
    bad = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64, "period": "night"}],
           "categories": [{"id": 1, "name": "car"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]},
                           {"id": 2, "image_id": 1, "category_id": 7, "bbox": [4, 4, 10, 10]},
                           {"id": 3, "image_id": 1, "category_id": 9, "bbox": [4, 4, 10, 10]}]}
    (tmp_path / "ann.json").write_text(json.dumps(bad))
    spec = yaml.safe_load(tiny_space_yaml(tmp_path).read_text())
    files = {"annotations": str(tmp_path / "ann.json"), "images": str(tmp_path / "images")}
    spec["task"] = {"name": "coco",
                    "options": {f"{split}_{k}": v for split in ("train", "val") for k, v in files.items()}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run("search", "--space", str(path), "--trials", "1", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ann.json" in result.stderr and "annotations[1]" in result.stderr and "1 more" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_search_on_a_coco_folder_with_a_day_to_night_split(tmp_path):
    """A user's COCO data (here: files the shapes generator wrote, with SODA10M-style attributes) given
    by path, trained on daytime images and scored on night ones."""
    from automl.tasks.shapes_detection import ShapesDetectionTask

    folder = ShapesDetectionTask(train_images=48, val_images=48, night_fraction=0.5, seed=2,
                                 root=tmp_path / "raw").prepare()
    spec = yaml.safe_load(tiny_space_yaml(tmp_path).read_text())
    spec["name"] = "detnas-coco"
    spec["task"] = {"name": "coco", "options": {
        "train_annotations": str(folder / "train.json"), "train_images": str(folder / "train"),
        "val_annotations": str(folder / "val.json"), "val_images": str(folder / "val"),
        "train_where": {"period": "daytime"}, "val_where": {"period": "night"}}}
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run("search", "--space", str(path), "--trials", "2", "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "2 trials: 2 complete" in result.stdout
    assert (tmp_path / "automl-runs" / "detnas-coco" / "best_model.pt").exists()


@pytest.mark.parametrize("rois", ["gt", "predicted"])
def test_distillation_trains_a_heterogeneous_pair_with_either_roi_source(tmp_path, rois):
    from automl.tasks.shapes_detection import ShapesDetectionTask
    from estimators.detection_training import detection_recipe, train_detector
    from estimators.regimes.distillation import GDetKDRegime
    from estimators.regimes.gdetkd_config import GDetKDConfig
    from search_spaces.detnas.detector import build_detnas

    task = ShapesDetectionTask(train_images=16, val_images=4, root=tmp_path)
    data = task.load()
    stages = [{"depth": 1, "width": w, "prune": 1.0} for w in (16, 32, 64)]
    teacher = build_detnas({"detector": "faster-rcnn", "stem": 16, "stages": stages}, task.info)
    student = build_detnas({"detector": "fcos", "stem": 16, "stages": stages}, task.info)
    stats = train_detector(student, data.train, detection_recipe(3, batch_size=4), seed=0,
                           regimes=[GDetKDRegime.of(teacher, GDetKDConfig(), rois)])
    losses = stats.tail(0.1)
    assert stats.skipped == 0 and {"kd_feat", "kd_ckd"} <= set(losses)
    assert "kd_cls" not in losses  # heterogeneous: no class KL or localisation terms
    assert all(np.isfinite(v) for v in losses.values())
