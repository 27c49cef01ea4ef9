"""Exporting a detnas trial: the student's backbone + FPN as torch.export and ONNX programs, one line that
says what is left out, and the whole detector in detnas's saved format beside them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.export import CARD_FILE, ONNX_TOLERANCE
from tests.automl.test_export import max_diff, onnx_outputs, run_pt2_isolated

REPO = Path(__file__).resolve().parents[3]
TINY_TASK = {"train_images": 16, "val_images": 16, "seed": 1}
TINY_ESTIMATOR = {"init_steps": 4, "child_steps": 2, "teacher_steps": [2, 1, 1], "batch_size": 4}


def tiny_space(tmp_path: Path) -> Path:
    spec = yaml.safe_load((REPO / "search_spaces" / "detnas.yaml").read_text())
    spec["name"] = "detnas-tiny"
    spec["task"] = {"name": "shapes-detection", "options": {**TINY_TASK, "root": str(tmp_path / "data")}}
    spec["estimator"] = {"name": "detnas", "options": TINY_ESTIMATOR}
    spec["search"] = {"strategy": "morphism-evolution", "trials": 1, "options": {"population": 2}}
    path = tmp_path / "detnas-tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_exporter_is_registered_by_its_entry_point():
    from importlib.metadata import entry_points

    from automl.registry import exporters
    from search_spaces.detnas.export import export_detnas

    (point,) = [ep for ep in entry_points(group="automl.exporters") if ep.name == "detnas"]
    assert point.load() is export_detnas and exporters.get("detnas") is export_detnas


@pytest.mark.slow
def test_a_detnas_student_exports_its_backbone_and_fpn(tmp_path, capsys):
    from search_spaces.detnas.export import DetectorFeatures
    from search_spaces.detnas.saved import load_detector

    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = automl.create_study(tiny_space(tmp_path), seed=0, storage=storage, checkpoints=str(tmp_path / "ckpt"))
    study.optimize(n_trials=1)
    assert study.completed(), [t.error for t in study.trials]
    notes: list[str] = []
    result = automl.export(study, tmp_path / "out", on_note=notes.append)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("detnas: exported the backbone + FPN only") and "detector.pt" in notes[0]
    assert "NMS" in notes[0] and "do not export" in notes[0]

    out = tmp_path / "out"
    detector, saved = load_detector(out / "detector.pt")  # the loadable whole detector, detnas's format
    images = torch.stack(list(study.setup.task.load().val.images[:3]))
    boxes, scores, labels = detector.predict(images)[0]
    assert boxes.shape[-1] == 4 and len(scores) == len(labels) == len(boxes)
    assert saved["config"] == study.best.config

    model = automl.load_model(out)
    assert isinstance(model, DetectorFeatures) and not model.training
    with torch.no_grad():
        features = model(images)
    assert len(features) == 3 and [f.shape[-1] for f in features] == [16, 8, 4]  # strides 4, 8, 16 of 64 px
    (isolated,) = run_pt2_isolated(out / "model.pt2", [images], tmp_path)
    with torch.no_grad():
        assert max_diff(model(images), isolated) <= ONNX_TOLERANCE
        assert max_diff(model(images), onnx_outputs(out / "model.onnx", images)) <= ONNX_TOLERANCE
        assert max_diff(model(images), detector.features(images)) == 0.0
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff <= ONNX_TOLERANCE

    card = json.loads((out / CARD_FILE).read_text())
    assert card["builder"] == "detnas" and card["notes"] == notes and card["formats"] == ["pt2", "onnx"]
    assert card["weights"] == {"file": "detector.pt", "loader": "search_spaces.detnas.export:load_features"}
    assert card["input"]["shape"] == ["N", 3, 64, 64] and "(x - 0.5) / 0.25" in card["input"]["description"]
    assert card["training"]["estimator_options"] == TINY_ESTIMATOR and "detector.pt" in card["files"]
    assert not (out / "weights.pt").exists()
    assert notes[0] in (out / "MODEL.md").read_text()

    # the CLI says it in one line too
    capsys.readouterr()
    assert main(["export", "--study", "detnas-tiny", "--storage", storage, "--out", str(tmp_path / "cli"),
                 "--format", "pt2"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert printed == [f"note: {notes[0]}"]


def test_a_detnas_trial_without_its_kept_detector(tmp_path):
    study = automl.create_study(tiny_space(tmp_path), seed=0, checkpoints=str(tmp_path / "ckpt"))
    study.optimize(lambda config: {"mAP": 0.1, "latency_ms": 1.0}, n_trials=1)
    with pytest.raises(ConfigError, match=r"has no kept model \([0-9a-f]+\.model\.pt is not in the checkpoint store"
                                          r".*the detnas estimator keeps each candidate's detector"):
        automl.export(study, tmp_path / "out")
