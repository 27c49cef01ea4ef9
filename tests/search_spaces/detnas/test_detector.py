"""The detnas detector adapter (mmdet 3.x) and the elastic teacher pool: tiny models on 64x64 synthetic
boxes, so every test takes well under a second once the module-scope models are built."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("mmcv.ops", reason="mmdet/mmcv with compiled ops are installed by tools/install_mmdet.sh")

from torch.utils.flop_counter import FlopCounterMode

from automl.errors import ConfigError
from automl.registry import builders
from automl.tasks.detection import DetectionInfo
from search_spaces.detnas.detector import BACKBONE_PREFIX, DETECTOR_KINDS, Detector, build_detnas, total_loss
from search_spaces.detnas.teacher import TeacherPool, train_teacher_pool

# mmdet 3.3's point generator calls torch.meshgrid without `indexing` (its behaviour is the intended 'ij')
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

INFO = DetectionInfo(class_names=("a", "b", "c"), image_size=(64, 64))
SMALL = {"stem": 8, "fpn_channels": 16,
         "stages": [{"depth": 1, "width": 16, "prune": 1.0}, {"depth": 2, "width": 24, "prune": 0.5},
                    {"depth": 1, "width": 32, "prune": 0.75}]}


def synthetic_batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """``n`` 64x64 images with 1-3 solid squares (6-30 px) whose colour is their class."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])
    images = torch.full((n, 3, 64, 64), 0.1) + 0.05 * torch.rand(n, 3, 64, 64, generator=g)
    boxes, labels = [], []
    for i in range(n):
        k = int(torch.randint(1, 4, (1,), generator=g))
        b, lab = [], []
        for _ in range(k):
            side = int(torch.randint(6, 31, (1,), generator=g))
            x, y = (int(v) for v in torch.randint(0, 64 - side, (2,), generator=g))
            c = int(torch.randint(0, 3, (1,), generator=g))
            images[i, :, y:y + side, x:x + side] = colours[c, :, None, None]
            b.append([x, y, x + side, y + side])
            lab.append(c)
        boxes.append(torch.tensor(b, dtype=torch.float32))
        labels.append(torch.tensor(lab))
    return images, boxes, labels


@pytest.fixture(scope="module")
def batch():
    return synthetic_batch()


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    torch.manual_seed(0)
    return {kind: build_detnas({**SMALL, "detector": kind}, INFO) for kind in DETECTOR_KINDS}


@pytest.fixture(scope="module")
def pool() -> TeacherPool:
    torch.manual_seed(0)
    return TeacherPool(num_classes=3, fpn_channels=16, stem=8, widths=(16, 24, 32))


def test_builder_is_registered():
    assert builders.get("detnas") is build_detnas


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_loss_is_finite_and_reaches_the_backbone(detectors, batch, kind):
    det = detectors[kind]
    images, boxes, labels = batch
    det.train()
    det.zero_grad()
    losses = det.loss(images, boxes, labels)
    assert {"loss_cls", "loss_bbox"} <= set(losses)
    if kind == "faster-rcnn":
        assert {"loss_rpn_cls", "loss_rpn_bbox", "acc"} <= set(losses)
    if kind == "fcos":
        assert "loss_centerness" in losses
    assert all(torch.isfinite(v).all() for v in losses.values())
    loss = total_loss(losses)
    loss.backward()
    grad = det.model.backbone.stem.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # passing precomputed features gives the same losses (up to the random RoI sampling of faster-rcnn)
    if kind != "faster-rcnn":
        with torch.no_grad():
            again = det.loss(images, boxes, labels, features=det.features(images))
        assert torch.allclose(total_loss(again), loss.detach(), rtol=1e-5)


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_features_are_one_fpn_map_per_level(detectors, batch, kind):
    det = detectors[kind]
    feats = det.features(batch[0])
    assert det.strides == (4, 8, 16) and det.fpn_channels == 16
    assert [tuple(f.shape) for f in feats] == [(4, 16, 64 // s, 64 // s) for s in det.strides]


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_predict_returns_boxes_in_the_frame(detectors, batch, kind):
    det = detectors[kind]
    det.train()
    out = det.predict(batch[0], score_thr=0.0, max_per_img=20)
    assert det.training  # the mode is restored
    assert len(out) == 4
    for boxes, scores, labels in out:
        assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels) <= 20
        assert len(boxes) > 0  # score_thr 0: an untrained detector still proposes boxes
        assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 64 and boxes[:, [1, 3]].max() <= 64
        assert ((scores >= 0) & (scores <= 1)).all()
        assert labels.dtype == torch.long and labels.min() >= 0 and labels.max() < 3


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_forward_runs_under_the_flop_counter(detectors, batch, kind):
    det = detectors[kind].eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = det(batch[0][:1])
    assert counter.get_total_flops() > 1e6
    assert out is not None


def test_roi_outputs_shapes(detectors, batch):
    det = detectors["faster-rcnn"]
    feats = det.features(batch[0])
    rois = torch.tensor([[0, 2.0, 2.0, 12.0, 12.0], [1, 10.0, 5.0, 40.0, 45.0], [3, 0.0, 0.0, 64.0, 64.0]])
    cls_logits, deltas = det.roi_outputs(feats, rois)
    assert cls_logits.shape == (3, 4) and deltas.shape == (3, 12)
    assert det.roi_features(feats, rois).shape == (3, 16, 7, 7)
    with pytest.raises(TypeError, match="no RoI head"):
        detectors["retinanet"].roi_outputs(feats, rois)


def test_backbone_parameters_have_the_inheritance_prefix(detectors):
    keys = detectors["retinanet"].state_dict().keys()
    for name in ("stem.conv.weight", "stem.bn.running_mean", "stages.0.0.conv1.weight",
                 "stages.1.1.bn2.weight", "stages.1.0.shortcut.0.weight"):
        assert BACKBONE_PREFIX + name in keys
    assert not any(k.startswith("pixel") for k in keys)


@pytest.mark.parametrize("kind", DETECTOR_KINDS)
def test_a_few_dozen_steps_reduce_the_loss(batch, kind):
    torch.manual_seed(1)
    det = build_detnas({**SMALL, "detector": kind}, INFO).train()
    images, boxes, labels = batch
    optimiser = torch.optim.AdamW(det.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        loss = total_loss(det.loss(images, boxes, labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:5]) / 5


def test_unknown_detector_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="model.detector: unknown detector 'yolo'; expected one of "
                                          "faster-rcnn, retinanet, fcos"):
        build_detnas({**SMALL, "detector": "yolo"}, INFO)
    with pytest.raises(ConfigError, match="model.stem"):
        build_detnas({**SMALL, "detector": "fcos", "stem": 0}, INFO)


# -- the elastic teacher pool ------------------------------------------------------------------------


def test_set_active_changes_features_and_parameter_count(pool, batch):
    pool.eval()
    seen = {}
    for depth, width in pool.sub_teachers():
        pool.set_active(depth, width)
        with torch.no_grad():
            feats = pool.features(batch[0][:2])
        assert [f.shape[1] for f in feats] == [16] * 3
        seen[(depth, width)] = (feats[0], pool.active_num_parameters())
    assert len(seen) == 9 and pool.sub_teachers()[0] == (3, 1.0)
    full_feat, full_params = seen[(3, 1.0)]
    assert full_params == sum(p.numel() for p in pool.parameters())
    for key, (feat, params) in seen.items():
        if key != (3, 1.0):
            assert params < full_params and not torch.allclose(feat, full_feat)
    assert seen[(1, 0.5)][1] < seen[(1, 1.0)][1] < seen[(2, 1.0)][1]
    with pytest.raises(ConfigError, match="teacher.depth"):
        pool.set_active(4, 1.0)
    with pytest.raises(ConfigError, match="teacher.width"):
        pool.set_active(2, 0.6)
    pool.set_active(3, 1.0)


def test_every_sub_teacher_trains_and_predicts(pool, batch):
    images, boxes, labels = batch
    for depth, width in pool.sub_teachers():
        pool.set_active(depth, width)
        pool.train()
        pool.zero_grad()
        total_loss(pool.loss(images[:2], boxes[:2], labels[:2])).backward()
        assert pool.backbone.stages[0][0].conv1.weight.grad is not None
        assert len(pool.predict(images[:2])) == 2
    pool.set_active(3, 1.0)


class _Split:
    def __init__(self, n: int = 8) -> None:
        images, self.boxes, self.labels = synthetic_batch(n, seed=3)
        self.images = list(images)


def test_train_teacher_pool_is_deterministic_for_a_seed():
    data = _Split()
    states, reports = [], []
    for _ in range(2):
        torch.manual_seed(5)
        teacher = TeacherPool(num_classes=3, fpn_channels=8, stem=8, widths=(8, 16, 16))
        rng_before = torch.get_rng_state()
        calls = []
        reports.append(train_teacher_pool(teacher, data, steps=(2, 2, 2), batch_size=4, seed=11,
                                          calibration_images=8, on_step=lambda *a, calls=calls: calls.append(a)))
        assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
        assert [c[0] for c in calls] == ["largest"] * 2 + ["depth"] * 2 + ["width"] * 2
        assert not teacher.training and teacher.active == (3, 1.0)
        assert len(teacher.bn_stats) == 9
        states.append(teacher.state_dict())
    assert all(math.isfinite(reports[0][f"loss_{p}"]) for p in ("largest", "depth", "width"))
    assert reports[0]["loss_width"] == reports[1]["loss_width"]
    for key, value in states[0].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, states[1][key]), key
    # the calibrated statistics travel with the state_dict and set_active swaps them in
    torch.manual_seed(6)
    copy = TeacherPool(num_classes=3, fpn_channels=8, stem=8, widths=(8, 16, 16))
    copy.load_state_dict(states[0])
    copy.set_active(1, 0.5)
    assert torch.equal(copy.backbone.stages[0][0].bn1.running_mean,
                       states[0]["_extra_state"]["bn_stats"]["depth=1,width=0.5"]["stages.0.0.bn1.running_mean"])
