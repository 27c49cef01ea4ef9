"""G-DetKD regime (estimators/regimes/gdetkd.py): loss terms, gradients, level weights, CKD queue, RoI sampling."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from automl.errors import ConfigError
from estimators.regimes.gdetkd import GDetKD, gt_rois, level_shift, sample_rois
from estimators.regimes.gdetkd_config import GDetKDConfig

STRIDES = (4, 8, 16)
SIZE = 64


def pyramid(batch: int, channels: int, strides=STRIDES, requires_grad: bool = False) -> list[torch.Tensor]:
    return [torch.randn(batch, channels, SIZE // s, SIZE // s, requires_grad=requires_grad) for s in strides]


def square_boxes(sides, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for side in sides:
        x, y = torch.randint(0, SIZE - int(side), (2,), generator=g).float()
        rows.append(torch.tensor([x, y, x + side, y + side]))
    return torch.stack(rows)


def test_all_terms_shapes_finite_and_gradients():
    torch.manual_seed(0)
    cs, ct, c = 8, 16, 3
    gd = GDetKD(GDetKDConfig(queue_size=16), cs, ct, STRIDES)
    s, t = pyramid(2, cs, requires_grad=True), pyramid(2, ct, requires_grad=True)
    rois = gt_rois([square_boxes([6, 12, 24, 40]), square_boxes([10, 30], seed=1)])
    s_cls, t_cls = torch.randn(6, c + 1, requires_grad=True), torch.randn(6, c + 1, requires_grad=True)
    s_reg, t_reg = torch.randn(6, 4 * c, requires_grad=True), torch.randn(6, 4 * c, requires_grad=True)
    out = gd(s, t, rois, student_cls=s_cls, teacher_cls=t_cls, student_reg=s_reg, teacher_reg=t_reg)
    assert set(out) == {"kd_feat", "kd_ckd", "kd_cls", "kd_loc"}
    for value in out.values():
        assert value.shape == () and torch.isfinite(value) and value.item() >= 0
    assert gd.last_level_weights is not None and gd.last_level_weights.shape == (6, 3)
    assert torch.allclose(gd.last_level_weights.sum(1), torch.ones(6))
    sum(out.values()).backward()
    for f in s:  # SGFI reads every student level
        assert f.grad is not None and f.grad.abs().sum() > 0
    assert s_cls.grad is not None and s_reg.grad is not None
    for f in (*t, t_cls, t_reg):
        assert f.grad is None
    params = dict(gd.named_parameters())
    assert {n.split(".")[0] for n in params} == {"adapt", "embed", "log_tau", "f_theta"}
    assert len(gd.extra_parameters()) == len(params)
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert "queue" not in params and int(gd.queue_len) == 6


@pytest.mark.parametrize("options, keys", [
    ({"feature": "none"}, {"kd_ckd"}),
    ({"feature": "none", "ckd": False}, set()),
    ({"feature": "fixed"}, {"kd_feat", "kd_ckd"}),
    ({"ckd": False}, {"kd_feat"}),
    ({"ckd_student": "sgfi"}, {"kd_feat", "kd_ckd"}),
    ({"sgfi_similarity": "dot"}, {"kd_feat", "kd_ckd"}),
])
def test_enabled_terms_only(options, keys):
    torch.manual_seed(1)
    gd = GDetKD(GDetKDConfig(**options), 8, 16, STRIDES)
    s = pyramid(1, 8, requires_grad=True)
    out = gd(s, pyramid(1, 16), gt_rois([square_boxes([8, 20, 36])]))
    assert set(out) == keys
    if options.get("feature") == "none":
        assert gd.embed is None and gd.log_tau is None and "kd_feat" not in out
    if out:
        sum(out.values()).backward()
        assert any(f.grad is not None and f.grad.abs().sum() > 0 for f in s)


def test_head_terms_need_both_sides_and_respect_flags():
    gd = GDetKD(GDetKDConfig(cls_kl=False), 8, 16, STRIDES)
    rois = gt_rois([square_boxes([8, 20])])
    cls = torch.randn(2, 4)
    out = gd(pyramid(1, 8), pyramid(1, 16), rois, student_cls=cls, teacher_cls=cls,
             student_reg=torch.randn(2, 12), teacher_reg=torch.randn(2, 12))
    assert "kd_cls" not in out and "kd_loc" in out
    with pytest.raises(ValueError, match="both student_cls and teacher_cls"):
        gd(pyramid(1, 8), pyramid(1, 16), rois, student_cls=cls)


def test_level_assignment_spreads_object_sizes_monotonically():
    gd = GDetKD(GDetKDConfig(), 8, 16, STRIDES)
    sides = [6, 12, 24, 40]
    levels = gd.teacher_levels(gt_rois([torch.tensor([[0.0, 0.0, s, s] for s in sides])])).tolist()
    assert levels == sorted(levels) and set(levels) == {0, 1, 2}
    assert levels == [0, 0, 1, 2]
    big = gd.teacher_levels(torch.tensor([[0.0, 0, 0, 500, 500], [0.0, 1, 1, 1, 1]]))
    assert big.tolist() == [2, 0]  # clipped to the pyramid; a degenerate box goes to the finest level


@pytest.mark.parametrize("match, teacher_strides", [(2, (8, 16, 32)), (0, STRIDES)])
def test_sgfi_weights_concentrate_on_the_matching_level(match, teacher_strides):
    """The teacher's assigned-level feature is a fixed linear map of one student level; the rest is noise.

    With ``teacher_strides=(8, 16, 32)`` (a level-shifted teacher) 40 px objects sit on the teacher's
    level 1 (stride 16), which matches the student's level 2, not the same-index level 1.
    """
    torch.manual_seed(0)
    cs, ct, batch = 8, 16, 4
    gd = GDetKD(GDetKDConfig(ckd=False), cs, ct, STRIDES, teacher_strides=teacher_strides)
    mix = torch.randn(ct, cs) / math.sqrt(cs)
    teacher_level = teacher_strides.index(STRIDES[match])
    side = {0: 12, 1: 24, 2: 40}[teacher_level]
    opt = torch.optim.Adam(gd.extra_parameters(), lr=1e-2)
    first = None
    for step in range(80):
        s, t = pyramid(batch, cs), pyramid(batch, ct, teacher_strides)
        t[teacher_level] = torch.einsum("oc,bchw->bohw", mix, s[match])
        rois = gt_rois([square_boxes([side] * 3, seed=step * batch + b) for b in range(batch)])
        assert (gd.teacher_levels(rois) == teacher_level).all()
        loss = gd(s, t, rois)["kd_feat"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    alpha = gd.last_level_weights
    assert alpha is not None
    assert alpha[:, match].mean() > 0.6
    assert (alpha.argmax(1) == match).float().mean() > 0.9
    assert loss.item() < 0.3 * first
    assert gd.tau.item() < 1.0  # the temperature is learned (it sharpens here)


def test_fixed_mode_matches_direct_roi_align():
    torch.manual_seed(2)
    gd = GDetKD(GDetKDConfig(feature="fixed", ckd=False), 8, 16, STRIDES)
    s, t = pyramid(1, 8), pyramid(1, 16)
    rois = gt_rois([torch.tensor([[4.0, 4.0, 28.0, 28.0]])])  # 24 px -> level 1 (stride 8)
    from torchvision.ops import roi_align
    ts = roi_align(t[1], rois, (4, 4), 1 / 8, 2, True)
    ss = gd.adapt(roi_align(s[1], rois, (4, 4), 1 / 8, 2, True))
    assert torch.allclose(gd(s, t, rois)["kd_feat"], F.mse_loss(ss, ts))


def test_ckd_lower_for_matched_than_shuffled_pairs():
    torch.manual_seed(3)
    c = 16
    gd = GDetKD(GDetKDConfig(feature="none", queue_size=0), c, c, STRIDES)
    with torch.no_grad():  # adapter = identity, so a matched pair has identical region features
        gd.adapt.weight.copy_(torch.eye(c)[:, :, None, None])
        gd.adapt.bias.zero_()
    s = pyramid(4, c)
    rois = gt_rois([square_boxes([10, 20, 36], seed=b) for b in range(4)])
    matched = gd(s, [f.clone() for f in s], rois)["kd_ckd"]
    shuffled = gd(s, [f.roll(1, dims=0) for f in s], rois)["kd_ckd"]
    assert matched.item() < shuffled.item()


def test_ckd_drops_overlapping_negatives_of_the_same_image_only():
    torch.manual_seed(4)
    c = 8
    gd = GDetKD(GDetKDConfig(feature="none", queue_size=0), c, c, STRIDES)
    s, t = pyramid(2, c), pyramid(2, c)
    box = torch.tensor([[8.0, 8.0, 30.0, 30.0]])
    same = gd(s, t, gt_rois([torch.cat([box, box]), box[:0]]))["kd_ckd"]
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # the only other RoI overlaps: no negatives left
    other = gd(s, t, gt_rois([box, box]))["kd_ckd"]
    assert other.item() > 0.0  # the same box in another image is a negative


def test_queue_is_fifo_and_wraps():
    gd = GDetKD(GDetKDConfig(feature="none", queue_size=5, embed_dim=2), 4, 4, STRIDES)
    assert gd.memory().shape == (0, 2)
    rows = torch.arange(16.0).view(8, 2)
    gd.enqueue(rows[:3])
    assert torch.equal(gd.memory(), rows[:3]) and int(gd.queue_ptr) == 3
    gd.enqueue(rows[3:6])
    assert torch.equal(gd.memory(), rows[1:6]) and int(gd.queue_ptr) == 1 and int(gd.queue_len) == 5
    gd.enqueue(rows[6:8])
    assert torch.equal(gd.memory(), rows[3:8])
    gd.enqueue(torch.arange(14.0).view(7, 2))  # longer than the queue: the last 5 stay
    assert torch.equal(gd.memory(), torch.arange(14.0).view(7, 2)[2:])
    assert "queue" in dict(gd.named_buffers()) and "queue" not in dict(gd.named_parameters())

    torch.manual_seed(5)
    gd = GDetKD(GDetKDConfig(feature="none", queue_size=5), 4, 4, STRIDES)
    rois = gt_rois([square_boxes([10, 20, 30])])
    gd(pyramid(1, 4), pyramid(1, 4), rois)
    assert int(gd.queue_len) == 3
    assert torch.allclose(gd.memory().norm(dim=1), torch.ones(3))
    gd(pyramid(1, 4), pyramid(1, 4), rois)
    assert int(gd.queue_len) == 5 and int(gd.queue_ptr) == 1
    gd.eval()
    gd(pyramid(1, 4), pyramid(1, 4), rois)
    assert int(gd.queue_ptr) == 1  # evaluation does not enqueue


def test_cls_kl_is_zero_for_identical_logits_and_scaled_by_temperature():
    gd = GDetKD(GDetKDConfig(feature="none", ckd=False, kl_temperature=2.0), 4, 4, STRIDES)
    rois = gt_rois([square_boxes([10, 20, 30])])
    logits = torch.randn(3, 5)
    out = gd(pyramid(1, 4), pyramid(1, 4), rois, student_cls=logits, teacher_cls=logits.clone())
    assert out["kd_cls"].item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(3, 5)
    out = gd(pyramid(1, 4), pyramid(1, 4), rois, student_cls=other, teacher_cls=logits)
    p_t = torch.softmax(logits / 2, 1)
    expected = (p_t * (p_t.log() - torch.log_softmax(other / 2, 1))).sum(1).mean() * 4
    assert out["kd_cls"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_loc_term_is_zero_for_identical_regs_and_weighted_by_teacher_probs():
    gd = GDetKD(GDetKDConfig(feature="none", ckd=False, cls_kl=False), 4, 4, STRIDES)
    rois = gt_rois([square_boxes([10, 20])])
    feats = (pyramid(1, 4), pyramid(1, 4))
    # 2 foreground classes + background last; RoI 0: teacher sure of class 0; RoI 1: sure of background.
    t_cls = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]])
    reg = torch.randn(2, 8)
    same = gd(*feats, rois, student_cls=t_cls, teacher_cls=t_cls, student_reg=reg, teacher_reg=reg.clone())
    assert same["kd_loc"].item() == pytest.approx(0.0, abs=1e-7)
    off_class1 = reg.clone()
    off_class1[:, 4:8] += 1.0  # differs only in the deltas of the class the teacher rules out
    assert gd(*feats, rois, student_cls=t_cls, teacher_cls=t_cls, student_reg=off_class1,
              teacher_reg=reg)["kd_loc"].item() < 1e-6
    off_class0 = reg.clone()
    off_class0[:, 0:4] += 1.0  # RoI 0 counts fully (p=1); RoI 1 is background (p~0): mean = 0.5
    assert gd(*feats, rois, student_cls=t_cls, teacher_cls=t_cls, student_reg=off_class0,
              teacher_reg=reg)["kd_loc"].item() == pytest.approx(0.5, abs=1e-6)
    agnostic = torch.randn(2, 4)  # class-agnostic deltas: weighted by the foreground probability
    out = gd(*feats, rois, student_cls=t_cls, teacher_cls=t_cls, student_reg=agnostic + 1.0, teacher_reg=agnostic)
    assert out["kd_loc"].item() == pytest.approx(0.5, abs=1e-6)
    first = GDetKD(GDetKDConfig(feature="none", ckd=False, cls_kl=False, background="first"), 4, 4, STRIDES)
    out = first(*feats, rois, student_cls=t_cls, teacher_cls=t_cls, student_reg=agnostic + 1.0, teacher_reg=agnostic)
    assert out["kd_loc"].item() == pytest.approx(0.5, abs=1e-6)  # now column 0 is background


def test_empty_rois_give_backprop_safe_zeros():
    gd = GDetKD(GDetKDConfig(), 8, 16, STRIDES)
    s = pyramid(2, 8, requires_grad=True)
    s_cls = torch.randn(0, 4, requires_grad=True)
    s_reg = torch.randn(0, 12, requires_grad=True)
    out = gd(s, pyramid(2, 16), torch.zeros(0, 5), student_cls=s_cls, teacher_cls=torch.randn(0, 4),
             student_reg=s_reg, teacher_reg=torch.randn(0, 12))
    assert set(out) == {"kd_feat", "kd_ckd", "kd_cls", "kd_loc"}
    assert all(v.item() == 0.0 for v in out.values())
    sum(out.values()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() == 0 for f in s)
    assert int(gd.queue_len) == 0


@pytest.mark.parametrize("field, value", [
    ("feature", "same-level"), ("gamma", 0.0), ("tau_init", -1.0), ("queue_size", -1), ("roi_size", 0),
    ("finest_scale", 0), ("kl_temperature", float("nan")), ("neg_iou", 1.5), ("embed_dim", 0),
    ("feat_weight", -1.0), ("ckd", "yes"), ("background", "middle"), ("sgfi_similarity", "l2"),
    ("queue_size", 4.5),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        GDetKDConfig(**{field: value})
    assert err.value.field == field and field in str(err.value)


def test_config_cross_checks_and_from_mapping():
    with pytest.raises(ConfigError) as err:
        GDetKDConfig(feature="fixed", ckd_student="sgfi")
    assert err.value.field == "ckd_student"
    assert GDetKDConfig.from_mapping({"feature": "fixed", "gamma": 0.1}) == GDetKDConfig(feature="fixed", gamma=0.1)
    with pytest.raises(ConfigError) as err:
        GDetKDConfig.from_mapping({"gama": 0.1}, source="detnas.yaml")
    assert err.value.field == "gama" and "detnas.yaml" in str(err.value)


def test_sample_rois_ratio_and_ground_truth():
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 60.0, 60.0]])
    near = gt[torch.arange(20) % 2] + torch.randn(20, 4, generator=g).clamp(-1, 1)  # IoU > 0.5
    far = torch.rand(40, 2, generator=g) * 4 + torch.tensor([[0.0, 0.0]])
    far = torch.cat([far, far + 5], dim=1)  # small boxes in the top-left corner: IoU 0
    rois = sample_rois([torch.cat([near, far]), far[:5]], [gt, gt[:1]], num=32, generator=g)
    first, second = rois[rois[:, 0] == 0, 1:], rois[rois[:, 0] == 1, 1:]
    assert first.shape[0] == 32 and second.shape[0] == 4
    from torchvision.ops import box_iou
    for boxes, truth in ((first, gt), (second, gt[:1])):
        assert torch.equal(boxes[: truth.shape[0]], truth)  # GT always included, first
        positives = (box_iou(boxes, truth).max(1).values > 0.5).sum().item()
        assert positives * 3 == boxes.shape[0] - positives  # 1:3
    assert (box_iou(first, gt).max(1).values > 0.5).sum() == 8
    preds = [torch.cat([near, far]), far[:5]]
    once = sample_rois(preds, [gt, gt[:1]], generator=torch.Generator().manual_seed(7))
    assert torch.equal(once, sample_rois(preds, [gt, gt[:1]], generator=torch.Generator().manual_seed(7)))
    # no ground truth: 3 negatives; no predictions: the GT alone
    rois = sample_rois([far, torch.zeros(0, 4)], [torch.zeros(0, 4), gt])
    assert (rois[:, 0] == 0).sum() == 3 and torch.equal(rois[rois[:, 0] == 1, 1:], gt)


def test_gt_rois_and_level_shift():
    rois = gt_rois([torch.ones(2, 4), torch.zeros(0, 4), 2 * torch.ones(1, 4)])
    assert rois.shape == (3, 5) and rois[:, 0].tolist() == [0.0, 0.0, 2.0]
    assert gt_rois([]).shape == (0, 5)
    feats = pyramid(1, 3)
    up = level_shift(feats, 1)
    assert [f.shape[-1] for f in up] == [8, 4, 2]
    assert up[0] is feats[1] and up[1] is feats[2] and torch.allclose(up[2], F.avg_pool2d(feats[2], 2))
    down = level_shift(feats, -1)
    assert [f.shape[-1] for f in down] == [32, 16, 8]
    assert down[1] is feats[0] and torch.equal(down[0], F.interpolate(feats[0], scale_factor=2))
    assert [f.shape[-1] for f in level_shift(feats, 4)] == [1, 1, 1]
    assert all(a is b for a, b in zip(level_shift(feats, 0), feats))
    # a level-shifted teacher runs through GDetKD with the doubled strides
    gd = GDetKD(GDetKDConfig(), 3, 3, STRIDES, teacher_strides=(8, 16, 32))
    out = gd(feats, up, gt_rois([square_boxes([8, 20, 40])]))
    assert all(torch.isfinite(v) for v in out.values())


def test_ckd_backpropagates_after_the_queue_has_entries():
    """Two training steps: the second uses the queue as negatives and then enqueues into it, which must
    not invalidate the graph of its own loss."""
    torch.manual_seed(0)
    kd = GDetKD(GDetKDConfig(feature="none", ckd=True, queue_size=64), 8, 8, (4, 8, 16)).train()
    rois = gt_rois([torch.tensor([[4.0, 4.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]])])
    for _ in range(2):
        student = [torch.randn(1, 8, 64 // s, 64 // s, requires_grad=True) for s in (4, 8, 16)]
        teacher = [torch.randn(1, 8, 64 // s, 64 // s) for s in (4, 8, 16)]
        kd(student, teacher, rois)["kd_ckd"].backward()
        assert any(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
