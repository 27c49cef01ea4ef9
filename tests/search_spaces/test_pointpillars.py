"""PointPillars on mmdet3d: the builder's config checks, both heads training and predicting ONCE boxes,
the detection3d estimator (search trials never see the test split; pseudo-labelling over the raw
stream), `automl search --space once-pillars` end to end with its export."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import automl
from automl.artifacts import ArtifactStore
from automl.cli import main
from automl.errors import ConfigError
from automl.tasks.detection3d import Detection3DInfo
from automl.testing.estimators import check_rng_isolation
from automl.testing.tasks import check_test_split_scored, check_test_split_withheld

pytest.importorskip("mmdet3d")

from search_spaces.pointpillars.detector import build_pointpillars, pillars_config

REPO = Path(__file__).resolve().parents[2]
INFO = Detection3DInfo(class_names=("Car", "Bus", "Truck", "Pedestrian", "Cyclist"), point_dim=4,
                       point_range=(-25.6, -25.6, -5.0, 25.6, 25.6, 3.0), voxel_size=(0.8, 0.8, 8.0))
SMALL = {"pillar_channels": 16, "neck_channels": 16,
         "stages": [{"depth": 1, "width": 16, "stride": 2}, {"depth": 1, "width": 16, "stride": 2},
                    {"depth": 1, "width": 32, "stride": 2}]}
TINY_TASK = {"train_frames": 6, "val_frames": 3, "test_frames": 3, "raw_frames": 6, "frames_per_sequence": 6}
CONFIG = {"model": {**SMALL, "head": "anchor"}, "train": {"lr": 2e-3, "epochs": 1}}


def frame(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    points = torch.cat([torch.rand(2000, 2, generator=generator) * 50 - 25, torch.rand(2000, 1, generator=generator)
                        * 3 - 2.5, torch.rand(2000, 1, generator=generator)], dim=1)
    boxes = torch.tensor([[5.0, 3.0, -1.0, 4.5, 1.9, 1.6, 0.3], [-8.0, 10.0, -0.9, 0.7, 0.7, 1.75, -2.0]])
    return points, boxes, torch.tensor([0, 3])


@pytest.mark.parametrize("head", ["anchor", "center"])
def test_both_heads_train_and_predict_once_boxes(head):
    torch.manual_seed(0)
    detector = build_pointpillars({**SMALL, "head": head}, INFO)
    points, boxes, labels = frame(0)
    losses = detector.loss([points, points], [boxes, boxes], [labels, labels])
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in detector.parameters())
    (out,) = detector.predict([points], score_thr=0.0)
    got, scores, got_labels = out
    assert got.shape[1] == 7 and len(got) == len(scores) == len(got_labels) > 0
    assert (got[:, 6] >= -math.pi).all() and (got[:, 6] < math.pi).all()  # wrapped for ONCE's heading test
    assert ((got_labels >= 0) & (got_labels < 5)).all()
    assert detector(points[None]) is not None  # the cost-measurement forward on [1, N, D]


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"pillar_size": 0.7}, "model.pillar_size", "do not tile"),
    ({"stages": [{"depth": 1, "width": 16, "stride": 2}] * 7}, "model.stages", "does not divide"),
    ({"head": "ssd"}, "model.head", "anchor, center"),
    ({"stages": [{"depth": 1, "width": 16, "stride": 3}]}, "model.stages[0].stride", "1 or 2"),
    ({"pillar_channels": 0}, "model.pillar_channels", ">= 1"),
])
def test_bad_model_configs_name_the_field(change, field, message):
    with pytest.raises(ConfigError, match=message) as caught:
        pillars_config({**SMALL, **change}, INFO)
    assert caught.value.field == field


def test_the_anchor_head_uses_each_class_own_anchor_size():
    head = pillars_config(SMALL, INFO)["bbox_head"]
    sizes = head["anchor_generator"]["sizes"]
    assert len(sizes) == 5 and sizes[1][0] > 10 and sizes[3][0] < 1  # Bus long, Pedestrian small


def tiny_space(tmp_path: Path, **estimator: object) -> Path:
    spec = yaml.safe_load((REPO / "search_spaces" / "once-pillars.yaml").read_text())
    spec["name"] = "once-pillars-tiny"
    spec["task"] = {"name": "once-synthetic", "options": {**TINY_TASK, "root": str(tmp_path / "data"),
                                                          "point_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]}}
    spec["estimator"] = {"name": "detection3d", "options": {"batch_size": 2, **estimator}}
    spec["space"]["model"]["pillar_size"] = {"type": "categorical", "choices": [0.8, 1.6]}
    spec["space"]["model"]["stages"]["item"]["width"] = {"type": "categorical", "choices": [8, 16]}
    spec["space"]["model"]["neck_channels"] = 16
    spec["space"]["model"]["pillar_channels"] = 16
    spec["space"]["train"]["epochs"] = 1
    spec["search"] = {"strategy": "random", "trials": 2}
    path = tmp_path / "once-pillars-tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_registered_space_loads_with_its_task_builder_and_estimator():
    space = automl.load_space("once-pillars")
    assert (space.task, space.builder, space.estimator) == ("once-synthetic", "pointpillars", "detection3d")
    assert [(o.name, o.direction) for o in space.objectives] == [("mAP", "max"), ("latency_ms", "min")]
    config = space.sample(np.random.default_rng(0))
    pillars_config(config["model"], Detection3DInfo(
        class_names=INFO.class_names, point_dim=4, point_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)))


def test_a_search_trial_never_touches_the_test_split_and_a_train_step_scores_it(tmp_path):
    space = automl.load_space(tiny_space(tmp_path))
    check_test_split_withheld(space, CONFIG, None, checkpoints=ArtifactStore(str(tmp_path / "a")))
    scored = check_test_split_scored(space, CONFIG, None, checkpoints=ArtifactStore(str(tmp_path / "b")))
    assert {"test_mAP", "test_AP_Vehicle/overall", "test_AP_mean/50m-inf"} <= set(scored)
    assert 0.0 <= scored["mAP"] <= 100.0 and scored["latency_ms"] > 0 and scored["flops"] > 0


def test_the_estimator_isolates_the_rng(tmp_path):
    check_rng_isolation(automl.load_space(tiny_space(tmp_path)), CONFIG, None)


def test_pseudo_labelling_trains_a_student_on_the_raw_stream(tmp_path):
    from automl.testing.estimators import evaluate

    space = automl.load_space(tiny_space(tmp_path, semi="pseudo-label", pseudo_threshold=0.0, unlabeled=4,
                                         label_fraction=0.5))
    metrics = evaluate(space, CONFIG, None)
    assert metrics["labelled_frames"] == 3 and metrics["pseudo_frames"] == 4
    assert metrics["pseudo_boxes"] > 0 and "teacher_mAP" in metrics and metrics["student_seconds"] > 0


@pytest.mark.parametrize(("options", "field"), [({"semi": "mean"}, "semi"), ({"label_fraction": 0}, "label_fraction"),
                                                ({"steps": 0}, "steps"), ({"pseudo_threshold": 2}, "pseudo_threshold")])
def test_bad_estimator_options_are_refused_at_study_creation(tmp_path, options, field):
    with pytest.raises(ConfigError, match=field):
        automl.create_study(tiny_space(tmp_path, **options), storage=f"sqlite:///{tmp_path / 'l.db'}")


@pytest.mark.slow
def test_search_over_once_pillars_ends_with_the_front_and_exports_the_detector(tmp_path, capsys):
    from search_spaces.pointpillars.export import BevNetwork
    from search_spaces.pointpillars.saved import load_pillars

    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    assert main(["search", "--space", str(tiny_space(tmp_path)), "--storage", storage, "--trials", "2",
                 "--output", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "Pareto" in printed and "mAP" in printed
    best_model = tmp_path / "runs" / "once-pillars-tiny" / "best_model.pt"  # search copies the best detector out
    assert load_pillars(best_model)[0].head in ("anchor", "center")
    assert main(["export", "--study", "once-pillars-tiny", "--storage", storage, "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert (out / "model.pt2").exists() and (out / "model.onnx").exists() and (out / "detector.pt").exists()
    card = json.loads((out / "card.json").read_text())
    assert card["builder"] == "pointpillars" and "voxelisation" in card["notes"][0]
    detector, _ = load_pillars(out / "detector.pt")
    points = frame(1)[0]
    boxes, scores, labels = detector.predict([points])[0]
    assert boxes.shape[1] == 7 and len(scores) == len(labels)
    model = automl.load_model(out)
    assert isinstance(model, BevNetwork)
    image = model.pseudo_image([points])
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        expected = torch.utils._pytree.tree_flatten(model(image))[0]
        got = torch.utils._pytree.tree_flatten(program(image))[0]
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(expected, got))
