"""PointPillars (Lang et al., 2019) from mmdet3d 1.4, behind a small points-in / boxes-out interface.

:class:`PillarsDetector` wraps mmdet3d's ``VoxelNet`` built from a config dict (random initialisation,
nothing downloaded): mmcv's CPU voxelisation into pillars -> ``PillarFeatureNet`` -> ``PointPillarsScatter``
(the BEV pseudo-image) -> a ``SECOND`` 2-D backbone of searched stages -> ``SECONDFPN`` -> an anchor head
(``Anchor3DHead``: per-class anchors at two headings, rotated NMS through mmcv's ``nms_rotated``) or a
centre head (``CenterHead``, CenterPoint's heat-map head). mmdet3d's data pipeline is bypassed: a frame is
a float tensor ``points[N, D]`` (x, y, z, then D - 3 features) and boxes are ONCE's
``[cx, cy, cz, l, w, h, yaw]`` (gravity centre, LiDAR frame), turned into mmdet3d's bottom-centred
``LiDARInstance3DBoxes`` here and back in :meth:`PillarsDetector.predict`.

The model config (a space's ``model`` part; every key optional)::

    pillar_size: 0.8          # metres; x = y, z spans the task's point range; must tile the range
    pillar_channels: 32       # PillarFeatureNet's output channels (the pseudo-image's)
    max_points: 32            # points kept per pillar
    stages: [{depth: 2, width: 32, stride: 2}, {depth: 3, width: 64, stride: 2}, {depth: 3, width: 128, stride: 2}]
    neck_channels: 64         # each stage's upsampled output in the FPN (concatenated)
    head: anchor              # anchor | center
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence, cast

import mmdet3d.models  # noqa: F401  (registers mmdet3d's detectors, encoders, backbones and heads)
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

from automl.errors import ConfigError
from automl.registry import builders
from automl.tasks.detection3d import Detection3DInfo, normalise_yaw
from search_spaces.openmmlab import init_weights_quietly

__all__ = ["HEADS", "PillarsDetector", "build_pointpillars", "pillars_config"]

HEADS = ("anchor", "center")
DEFAULT_STAGES = ({"depth": 2, "width": 32, "stride": 2}, {"depth": 3, "width": 64, "stride": 2},
                  {"depth": 3, "width": 128, "stride": 2})
#: anchor (l, w, h) per class: OpenPCDet's ONCE PointPillars anchors; other classes get the Car anchor
ANCHOR_SIZES: Mapping[str, tuple[float, float, float]] = {
    "Car": (4.38, 1.87, 1.59), "Bus": (11.11, 2.88, 3.41), "Truck": (7.52, 2.50, 2.62),
    "Pedestrian": (0.75, 0.76, 1.69), "Cyclist": (2.18, 0.79, 1.43),
}
#: (positive, negative) IoU thresholds of the anchor assignment: OpenPCDet's ONCE values
ANCHOR_IOU: Mapping[str, tuple[float, float]] = {
    "Car": (0.6, 0.45), "Bus": (0.55, 0.4), "Truck": (0.55, 0.4), "Pedestrian": (0.5, 0.35), "Cyclist": (0.5, 0.35),
}
#: the ground's height below the sensor (anchors stand on it): ONCE's roof LiDAR is about 1.8 m up
ANCHOR_BOTTOM = -1.8


def _number(cfg: Mapping[str, Any], key: str, default: float, *, low: float = 0.0) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise ConfigError(f"expected a number > {low:g}, got {value!r}", field=f"model.{key}")
    return float(value)


def _int(value: Any, field: str, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"expected an integer >= {low}, got {value!r}", field=field)
    return int(value)


def _stages(cfg: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    stages = cfg.get("stages", DEFAULT_STAGES)
    if not isinstance(stages, Sequence) or isinstance(stages, str) or not stages:
        raise ConfigError(f"expected a non-empty list of {{depth, width, stride}}, got {stages!r}",
                          field="model.stages")
    out = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise ConfigError(f"expected a mapping {{depth, width, stride}}, got {stage!r}", field=f"model.stages[{i}]")
        stride = stage.get("stride", 2)
        if stride not in (1, 2):
            raise ConfigError(f"expected 1 or 2, got {stride!r}", field=f"model.stages[{i}].stride")
        out.append((_int(stage.get("depth", 2), f"model.stages[{i}].depth", low=0),
                    _int(stage.get("width", 64), f"model.stages[{i}].width"), int(stride)))
    return out


def pillars_config(model_cfg: Mapping[str, Any], info: Detection3DInfo) -> dict[str, Any]:
    """mmdet3d's ``VoxelNet`` config for a model config (see the module docstring) on a task; a fresh
    dict each call (mmdet3d's builders modify what they are given). A bad value is a ConfigError naming
    ``model.<field>``."""
    if not isinstance(model_cfg, Mapping):
        raise ConfigError(f"expected a mapping, got {model_cfg!r}", field="model")
    head = model_cfg.get("head", "anchor")
    if head not in HEADS:
        raise ConfigError(f"expected one of {', '.join(HEADS)}, got {head!r}", field="model.head")
    pr = [float(v) for v in info.point_range]
    pillar = _number(model_cfg, "pillar_size", info.voxel_size[0])
    voxel = [pillar, pillar, pr[5] - pr[2]]
    grid = []
    for axis, (low, high) in enumerate(((pr[0], pr[3]), (pr[1], pr[4]))):
        cells = (high - low) / pillar
        if abs(cells - round(cells)) > 1e-6:
            raise ConfigError(f"{pillar:g} m pillars do not tile the point range's {'xy'[axis]} extent "
                              f"{high - low:g} m", field="model.pillar_size")
        grid.append(int(round(cells)))
    stages = _stages(model_cfg)
    strides = [s for _, _, s in stages]
    first = strides[0]
    cumulative = [math.prod(strides[:i + 1]) for i in range(len(strides))]
    if any(n % cumulative[-1] for n in grid):
        raise ConfigError(f"the stages' total stride {cumulative[-1]} does not divide the {grid[0]}x{grid[1]} pillar "
                          f"grid", field="model.stages")
    channels = _int(model_cfg.get("pillar_channels", 32), "model.pillar_channels")
    neck = _int(model_cfg.get("neck_channels", 64), "model.neck_channels")
    max_points = _int(model_cfg.get("max_points", 32), "model.max_points")
    widths = [w for _, w, _ in stages]
    config: dict[str, Any] = dict(
        type="VoxelNet",
        data_preprocessor=dict(type="Det3DDataPreprocessor", voxel=True, voxel_layer=dict(
            max_num_points=max_points, point_cloud_range=pr, voxel_size=voxel, max_voxels=(40000, 40000))),
        voxel_encoder=dict(type="PillarFeatureNet", in_channels=info.point_dim, feat_channels=[channels],
                           with_distance=False, voxel_size=voxel, point_cloud_range=pr),
        middle_encoder=dict(type="PointPillarsScatter", in_channels=channels, output_shape=[grid[1], grid[0]]),
        backbone=dict(type="SECOND", in_channels=channels, layer_nums=[d for d, _, _ in stages],
                      layer_strides=strides, out_channels=widths),
        neck=dict(type="SECONDFPN", in_channels=widths, out_channels=[neck] * len(stages),
                  upsample_strides=[c // first for c in cumulative]),
    )
    names = info.class_names
    if head == "anchor":
        config["bbox_head"] = dict(
            type="Anchor3DHead", num_classes=len(names), in_channels=neck * len(stages),
            feat_channels=neck * len(stages), use_direction_classifier=True, assign_per_class=True,
            anchor_generator=dict(type="AlignedAnchor3DRangeGenerator",
                                  ranges=[[pr[0], pr[1], ANCHOR_BOTTOM, pr[3], pr[4], ANCHOR_BOTTOM]] * len(names),
                                  sizes=[list(ANCHOR_SIZES.get(n, ANCHOR_SIZES["Car"])) for n in names],
                                  rotations=[0, 1.57], reshape_out=False),
            diff_rad_by_sin=True, bbox_coder=dict(type="DeltaXYZWLHRBBoxCoder"),
            loss_cls=dict(type="mmdet.FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="mmdet.SmoothL1Loss", beta=1.0 / 9.0, loss_weight=2.0),
            loss_dir=dict(type="mmdet.CrossEntropyLoss", use_sigmoid=False, loss_weight=0.2))
        config["train_cfg"] = dict(
            assigner=[dict(type="Max3DIoUAssigner", iou_calculator=dict(type="mmdet3d.BboxOverlapsNearest3D"),
                           pos_iou_thr=ANCHOR_IOU.get(n, (0.6, 0.45))[0], neg_iou_thr=ANCHOR_IOU.get(n, (0.6, 0.45))[1],
                           min_pos_iou=ANCHOR_IOU.get(n, (0.6, 0.45))[1], ignore_iof_thr=-1) for n in names],
            allowed_border=0, pos_weight=-1, debug=False)
        config["test_cfg"] = dict(use_rotate_nms=True, nms_across_levels=False, nms_pre=1000, nms_thr=0.01,
                                  score_thr=0.1, min_bbox_size=0, max_num=100)
    else:
        limit = [pr[0] - 10, pr[1] - 10, pr[2] - 5, pr[3] + 10, pr[4] + 10, pr[5] + 5]
        config["bbox_head"] = dict(
            type="CenterHead", in_channels=neck * len(stages),
            tasks=[dict(num_class=len(names), class_names=list(names))],
            # mmdet3d 1.4's CenterHead always regresses a velocity (nuScenes): it gets zero targets and weight 0
            common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)), share_conv_channel=64,
            bbox_coder=dict(type="CenterPointBBoxCoder", post_center_range=limit, max_num=100, score_threshold=0.1,
                            out_size_factor=first, voxel_size=voxel[:2], code_size=9, pc_range=pr[:2]),
            separate_head=dict(type="SeparateHead", init_bias=-2.19, final_kernel=3),
            loss_cls=dict(type="mmdet.GaussianFocalLoss", reduction="mean"),
            loss_bbox=dict(type="mmdet.L1Loss", reduction="mean", loss_weight=0.25), norm_bbox=True)
        config["train_cfg"] = dict(grid_size=[grid[0], grid[1], 1], voxel_size=voxel, out_size_factor=first,
                                   dense_reg=1, gaussian_overlap=0.1, max_objs=500, min_radius=2,
                                   code_weights=[1.0] * 8 + [0.0, 0.0], point_cloud_range=pr)
        config["test_cfg"] = dict(post_center_limit_range=limit, max_per_img=100, max_pool_nms=False,
                                  min_radius=[4.0], score_threshold=0.1, out_size_factor=first, voxel_size=voxel[:2],
                                  nms_type="rotate", pre_max_size=1000, post_max_size=100, nms_thr=0.2, pc_range=pr[:2])
    return config


def _build(config: Mapping[str, Any]) -> nn.Module:
    """``MODELS.build`` in mmdet3d's scope (its data preprocessor lives there), then ``init_weights()``
    (the heads' priors), with mmengine's per-parameter INFO logging silenced."""
    with DefaultScope.overwrite_default_scope("mmdet3d"):
        built = MODELS.build(ConfigDict(config))
    return init_weights_quietly(built)


def _sum_levels(losses: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in losses.items():
        if "loss" in key:
            out[key] = cast(torch.Tensor, sum(v.sum() for v in value)) if isinstance(value, (list, tuple)) \
                else value.sum()
    return out


class PillarsDetector(nn.Module):
    """A PointPillars detector (mmdet3d's ``VoxelNet`` at :attr:`model`); see the module docstring."""

    def __init__(self, model: nn.Module, head: str, class_names: Sequence[str], point_dim: int) -> None:
        super().__init__()
        #: the mmdet3d detector; typed Any: mmdet3d ships no types
        self.model: Any = model
        self.head = head
        self.class_names = tuple(class_names)
        self.point_dim = int(point_dim)

    def _inputs(self, points: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor] | None = None,
                labels: Sequence[torch.Tensor] | None = None, *, training: bool) -> dict[str, Any]:
        samples = []
        for i, frame in enumerate(points):
            if frame.dim() != 2 or frame.shape[1] != self.point_dim:
                raise ValueError(f"frame {i}: points must be [N, {self.point_dim}], got {tuple(frame.shape)}")
            sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes))
            if boxes is not None and labels is not None:
                box = torch.as_tensor(boxes[i], dtype=torch.float32).reshape(-1, 7)
                if self.head == "center":  # a zero velocity for CenterHead's (weight 0) velocity targets
                    box = torch.cat([box, box.new_zeros(len(box), 2)], dim=1)
                sample.gt_instances_3d = InstanceData(
                    bboxes_3d=LiDARInstance3DBoxes(box, box_dim=box.shape[1], origin=(0.5, 0.5, 0.5)),
                    labels_3d=torch.as_tensor(labels[i], dtype=torch.long).reshape(-1))
            samples.append(sample)
        data = {"inputs": {"points": [p.float() for p in points]}, "data_samples": samples}
        out: dict[str, Any] = self.model.data_preprocessor(data, training=training)
        return out

    def loss(self, points: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
             labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """mmdet3d's training losses for a batch of frames (per-level lists summed): ``loss_cls``,
        ``loss_bbox`` and ``loss_dir`` (anchor head) or ``task0.loss_heatmap``, ``task0.loss_bbox`` (centre)."""
        data = self._inputs(points, boxes, labels, training=True)
        return _sum_levels(self.model(**data, mode="loss"))

    @torch.no_grad()
    def predict(self, points: Sequence[torch.Tensor],
                score_thr: float = 0.1) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Detections per frame, ``(boxes[n, 7] as [cx, cy, cz, l, w, h, yaw], scores[n], labels[n])``,
        after rotated NMS, at most 100 with score >= ``score_thr``; eval mode for the call."""
        head, mode = self.model.bbox_head, self.training
        saved_cfg, coder = head.test_cfg, head.bbox_coder
        saved_coder = getattr(coder, "score_threshold", None)
        cfg = copy.deepcopy(saved_cfg)
        cfg["score_thr" if self.head == "anchor" else "score_threshold"] = float(score_thr)
        try:
            head.test_cfg = cfg
            if saved_coder is not None:  # CenterPoint's coder thresholds the heat map before NMS
                coder.score_threshold = float(score_thr)
            self.eval()
            results = self.model(**self._inputs(points, training=False), mode="predict")
        finally:
            head.test_cfg = saved_cfg
            if saved_coder is not None:
                coder.score_threshold = saved_coder
            self.train(mode)
        out = []
        for result in results:
            pred = result.pred_instances_3d
            keep = pred.scores_3d >= score_thr
            boxes = pred.bboxes_3d[keep]
            # mmdet3d leaves yaw in [-pi/2 - pi, pi/2 + pi); ONCE's heading test compares unwrapped angles
            centre = torch.cat([boxes.gravity_center, boxes.tensor[:, 3:6], normalise_yaw(boxes.tensor[:, 6:7])], dim=1)
            out.append((centre.detach(), pred.scores_3d[keep].detach(), pred.labels_3d[keep].detach()))
        return out

    def forward(self, points: torch.Tensor) -> Any:
        """The raw head outputs (mmdet3d's ``tensor`` mode) for ``points[B, N, D]``: what latency and FLOPs
        are measured on (voxelisation included; box decoding and NMS are not)."""
        data = self._inputs(list(points), training=False)
        return self.model(**data, mode="tensor")


def build_pointpillars(model_cfg: Mapping[str, Any], info: Detection3DInfo) -> PillarsDetector:
    """The ``pointpillars`` builder: a :class:`PillarsDetector` for a 3-D detection task."""
    config = pillars_config(model_cfg, info)
    return PillarsDetector(_build(config), str(model_cfg.get("head", "anchor")), info.class_names, info.point_dim)


builders.add("pointpillars", build_pointpillars)
