"""The detnas detector adapter (Joint-DetNAS, PAPERS.md §3): mmdet 3.x detectors over a searched backbone,
behind one small tensor-in / tensor-out interface.

:class:`Detector` wraps an mmdet detector built from a config dict with ``MODELS.build`` (random
initialisation, nothing downloaded) and bypasses mmdet's data pipeline and data preprocessor: images are
float tensors ``[B, 3, H, W]`` in 0..1, normalised inside with a fixed mean/std (:data:`PIXEL_MEAN`,
:data:`PIXEL_STD`, the same in every method), and ground truth is ``xyxy`` pixel boxes and ``0..C-1``
labels per image, turned into mmdet ``DetDataSample``\\ s here. No resizing or padding happens, so boxes
are in the input frame both ways.

Three kinds, sized for CPU training on 64x64 images with objects of about 6-40 pixels (see
:func:`detector_config`): ``faster-rcnn`` (two-stage), ``retinanet`` and ``fcos``, each with an FPN over
the backbone's three stage outputs (strides 4, 8, 16; no extra levels) and light heads.

The student backbone is a :class:`~search_spaces.detnas.backbone.DetNASBackbone` (registered in mmdet's
``MODELS`` as ``DetNASBackbone``); its parameters are ``model.backbone.<name>`` in a
:class:`Detector`'s ``state_dict`` (:data:`BACKBONE_PREFIX`), e.g. ``model.backbone.stem.conv.weight``.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence, cast

import mmdet.models  # noqa: F401  (registers mmdet's detectors, necks, heads and task modules)
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import nn

from automl.errors import ConfigError
from automl.registry import builders
from automl.tasks.detection import DetectionInfo
from search_spaces.detnas.backbone import DetNASBackbone
from search_spaces.openmmlab import init_weights_quietly

__all__ = [
    "BACKBONE_PREFIX",
    "DETECTOR_KINDS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "Detector",
    "build_detector",
    "build_detnas",
    "detector_config",
    "register_backbone",
    "total_loss",
]

#: the detector kinds :func:`build_detnas` and :func:`build_detector` build
DETECTOR_KINDS = ("faster-rcnn", "retinanet", "fcos")
#: where a detnas Detector's backbone parameters live in its ``state_dict`` (weight inheritance's prefix)
BACKBONE_PREFIX = "model.backbone."
#: fixed per-channel input normalisation, ``(images - PIXEL_MEAN) / PIXEL_STD`` (images are 0..1)
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25
#: the default FPN width when a config leaves ``fpn_channels`` out
DEFAULT_FPN_CHANNELS = 32

_NMS = {"type": "nms", "iou_threshold": 0.5}


def register_backbone(cls: type[nn.Module], name: str | None = None) -> None:
    """Register ``cls`` in mmdet's ``MODELS`` registry under ``name`` (default: the class name), so a
    config can say ``backbone=dict(type=name, ...)``. Registering the same class again (a second import,
    or a reload of its module) is fine; a *different* class under a taken name raises ``KeyError``."""
    name = name or cls.__name__
    existing = MODELS.module_dict.get(name)
    if existing is not None:
        same = (existing is cls or (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__))
        if not same:
            raise KeyError(f"mmdet's MODELS registry already has a different {name!r}: {existing!r}")
    MODELS.register_module(name=name, module=cls, force=True)


register_backbone(DetNASBackbone)


# ----------------------------------------------------------------------------------------------------
# Per-kind mmdet configs


def _anchor_generator(strides: Sequence[int]) -> dict[str, Any]:
    """Anchors of side 2 and 2.8 x the level's stride in three aspect ratios (6 per location): at
    strides 4, 8, 16 that is 8-45 px, matching objects of 6-40 px on 64 px images (mmdet's defaults,
    4-6 x stride, suit COCO's 800 px images)."""
    return dict(type="AnchorGenerator", octave_base_scale=2, scales_per_octave=2, ratios=[0.5, 1.0, 2.0],
                strides=list(strides))


def _fpn(in_channels: Sequence[int], fpn_channels: int) -> dict[str, Any]:
    """An FPN with one output per backbone level and no extra levels."""
    return dict(type="FPN", in_channels=list(in_channels), out_channels=fpn_channels, num_outs=len(in_channels))


def _dense_test_cfg() -> dict[str, Any]:
    return dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(_NMS), max_per_img=100)


def faster_rcnn_config(num_classes: int, strides: Sequence[int], fpn_channels: int) -> dict[str, Any]:
    """Faster R-CNN heads: a one-conv RPN and a StandardRoIHead with RoIAlign 7x7 and a shared 2-fc
    (128) box head; the RoI extractor's ``finest_scale`` 8 sends RoIs under 16 px to stride 4, 16-32 px
    to stride 8 and larger ones to stride 16 (the same scale-to-level map as the anchors). Sampling is
    scaled to small images: 64 anchors and 128 RoIs per image."""
    return dict(
        type="FasterRCNN",
        rpn_head=dict(
            type="RPNHead", in_channels=fpn_channels, feat_channels=fpn_channels,
            anchor_generator=_anchor_generator(strides),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                out_channels=fpn_channels, featmap_strides=list(strides), finest_scale=8),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=fpn_channels, fc_out_channels=128, roi_feat_size=7,
                num_classes=num_classes, reg_class_agnostic=False,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                target_stds=[0.1, 0.1, 0.2, 0.2]),
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                              match_low_quality=True, ignore_iof_thr=-1),
                sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, neg_pos_ub=-1,
                             add_gt_as_proposals=False),
                allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=300, max_per_img=300, nms=dict(type="nms", iou_threshold=0.7),
                              min_bbox_size=0),
            rcnn=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type="RandomSampler", num=128, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=300, max_per_img=100, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms=dict(_NMS), max_per_img=100)),
    )


def retinanet_config(num_classes: int, strides: Sequence[int], fpn_channels: int) -> dict[str, Any]:
    """RetinaNet with 2 stacked convs per branch (mmdet: 4) with GroupNorm, focal loss, the anchors above
    and GIoU loss on decoded boxes (weight 2): on shapes-detection GN + GIoU doubled the mAP reached in
    300 steps over mmdet's plain head with L1 loss on deltas (0.21 vs 0.10)."""
    return dict(
        type="RetinaNet",
        bbox_head=dict(
            type="RetinaHead", num_classes=num_classes, in_channels=fpn_channels, stacked_convs=2,
            feat_channels=fpn_channels, anchor_generator=_anchor_generator(strides),
            norm_cfg=dict(type="GN", num_groups=_groups(fpn_channels), requires_grad=True),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            reg_decoded_bbox=True,
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="GIoULoss", loss_weight=2.0)),
        train_cfg=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                          ignore_iof_thr=-1),
            sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=_dense_test_cfg(),
    )


def fcos_config(num_classes: int, strides: Sequence[int], fpn_channels: int) -> dict[str, Any]:
    """FCOS with 2 stacked GN convs per branch, centre sampling (radius 1.5 strides), normalised box
    targets, centre-ness on the regression branch and GIoU loss. Regress ranges are 4 x stride per level
    ((-1, 16), (16, 32), (32, inf) at strides 4, 8, 16) instead of mmdet's 8 x stride for COCO: on
    shapes-detection (objects 6-40 px) 4 x stride reached 0.18 mAP in 300 steps, 2 x and 8 x 0.12-0.15."""
    bounds = [4 * s for s in strides[:-1]]
    ranges = [(-1, bounds[0])] + [(lo, hi) for lo, hi in zip(bounds, bounds[1:])] + [(bounds[-1], 1e8)]
    return dict(
        type="FCOS",
        bbox_head=dict(
            type="FCOSHead", num_classes=num_classes, in_channels=fpn_channels, stacked_convs=2,
            feat_channels=fpn_channels, strides=list(strides), regress_ranges=tuple(ranges),
            center_sampling=True, center_sample_radius=1.5, norm_on_bbox=True, centerness_on_reg=True,
            norm_cfg=dict(type="GN", num_groups=_groups(fpn_channels), requires_grad=True),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type="GIoULoss", loss_weight=1.0),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)),
        test_cfg=_dense_test_cfg(),
    )


def _groups(channels: int, target: int = 8) -> int:
    """The largest group count <= ``target`` that divides ``channels`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(target, channels) + 1) if channels % g == 0)


_CONFIGS = {"faster-rcnn": faster_rcnn_config, "retinanet": retinanet_config, "fcos": fcos_config}


def _check_kind(kind: object) -> str:
    if kind not in _CONFIGS:
        raise ConfigError(f"unknown detector {kind!r}; expected one of {', '.join(DETECTOR_KINDS)}",
                          field="model.detector")
    return str(kind)


def detector_config(kind: str, backbone: Mapping[str, Any], out_channels: Sequence[int],
                    strides: Sequence[int], num_classes: int, fpn_channels: int) -> dict[str, Any]:
    """The mmdet config dict of a ``kind`` detector over ``backbone`` (an mmdet backbone config whose
    outputs have ``out_channels`` at ``strides``), with ``num_classes`` classes and an FPN of
    ``fpn_channels``; a fresh dict each call (mmdet's builders may modify what they are given)."""
    config = _CONFIGS[_check_kind(kind)](int(num_classes), tuple(int(s) for s in strides), int(fpn_channels))
    config["backbone"] = dict(backbone)
    config["neck"] = _fpn(out_channels, int(fpn_channels))
    return config


# ----------------------------------------------------------------------------------------------------
# The adapter


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The training objective of a :meth:`Detector.loss` dict: the sum of the entries whose key contains
    ``loss`` (mmdet's convention; e.g. Faster R-CNN's ``acc`` is a metric, not a loss)."""
    terms = [value for key, value in losses.items() if "loss" in key]
    if not terms:
        raise ValueError(f"no loss terms in {sorted(losses)}")
    return torch.stack([t.sum() for t in terms]).sum()


def _sum_values(losses: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """mmdet's loss dict with per-level lists summed into one tensor per key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in losses.items():
        # a list holds one loss tensor per level, so its sum is a tensor (the 0 start only for an empty list)
        out[key] = cast(torch.Tensor, sum(value)) if isinstance(value, (list, tuple)) else value
    return out


class Detector(nn.Module):
    """An mmdet detector (``model``) behind a tensor interface; see the module docstring.

    ``kind`` is one of :data:`DETECTOR_KINDS`, ``strides`` the FPN levels' strides, ``fpn_channels``
    their channels. ``train()``/``eval()`` work as usual; :meth:`predict` switches to eval mode for its
    call and restores the previous mode.
    """

    def __init__(self, kind: str, model: nn.Module, num_classes: int, strides: Sequence[int],
                 fpn_channels: int) -> None:
        super().__init__()
        self.kind = _check_kind(kind)
        #: the mmdet detector; typed Any: mmdet ships no types, and its heads are reached by attribute
        self.model: Any = model
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        self.fpn_channels = int(fpn_channels)

    total_loss = staticmethod(total_loss)

    @property
    def two_stage(self) -> bool:
        """Whether this detector has an RPN and an RoI head (``faster-rcnn``)."""
        return self.kind == "faster-rcnn"

    @property
    def backbone(self) -> nn.Module:
        """The backbone module (``self.model.backbone``)."""
        backbone: nn.Module = self.model.backbone
        return backbone

    # -- inputs ------------------------------------------------------------------------------------

    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a float tensor [B, C, H, W], got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        return images

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``(images - PIXEL_MEAN) / PIXEL_STD``: what every method feeds the backbone."""
        return (self._check_images(images).float() - PIXEL_MEAN) / PIXEL_STD

    @staticmethod
    def data_samples(images: torch.Tensor, boxes: Sequence[torch.Tensor] | None = None,
                     labels: Sequence[torch.Tensor] | None = None) -> list[DetDataSample]:
        """mmdet ``DetDataSample``\\ s for a batch: image metadata of the unresized, unpadded input frame
        (``scale_factor`` (1, 1)) and, when given, ``gt_instances`` (``bboxes`` xyxy px, ``labels``)."""
        batch, _, height, width = images.shape
        if (boxes is None) != (labels is None):
            raise ValueError("give both boxes and labels, or neither")
        if boxes is not None and labels is not None and not len(boxes) == len(labels) == batch:
            raise ValueError(f"{batch} images, {len(boxes)} box lists and {len(labels)} label lists: "
                             f"expected one of each per image")
        samples = []
        for i in range(batch):
            sample = DetDataSample(metainfo=dict(
                img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
            if boxes is not None and labels is not None:
                box = torch.as_tensor(boxes[i], dtype=torch.float32, device=images.device).reshape(-1, 4)
                label = torch.as_tensor(labels[i], dtype=torch.long, device=images.device).reshape(-1)
                if len(box) != len(label):
                    raise ValueError(f"image {i}: {len(box)} boxes but {len(label)} labels")
                sample.gt_instances = InstanceData(bboxes=box, labels=label)
            samples.append(sample)
        return samples

    # -- the interface -------------------------------------------------------------------------------

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The FPN outputs, one per level (strides :attr:`strides`, :attr:`fpn_channels` channels)."""
        return tuple(self.model.extract_feat(self.normalise(images)))

    def loss(self, images: torch.Tensor, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
             features: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """mmdet's training losses for a batch (per-level lists summed), e.g. ``loss_cls``, ``loss_bbox``
        (+ ``loss_centerness`` for FCOS; ``loss_rpn_cls``, ``loss_rpn_bbox``, ``acc`` for Faster R-CNN);
        :func:`total_loss` sums the losses. ``features`` = this batch's :meth:`features`, when already
        computed (e.g. for feature distillation), saves running the backbone and FPN twice."""
        labels = list(labels)
        for i, label in enumerate(labels):
            label = torch.as_tensor(label)
            if label.numel() and (int(label.min()) < 0 or int(label.max()) >= self.num_classes):
                raise ValueError(f"image {i}: labels must be in 0..{self.num_classes - 1}")
        samples = self.data_samples(self._check_images(images), boxes, labels)
        x = self.features(images) if features is None else tuple(features)
        model = self.model
        if not self.two_stage:
            return _sum_values(model.bbox_head.loss(x, samples))
        # TwoStageDetector.loss of mmdet 3.3, from the features on: class-agnostic RPN targets, RPN
        # losses renamed loss_rpn_*, then the RoI head on the RPN's proposals.
        proposal_cfg = model.train_cfg.get("rpn_proposal", model.test_cfg.rpn)
        rpn_samples = copy.deepcopy(samples)
        for sample in rpn_samples:
            sample.gt_instances.labels = torch.zeros_like(sample.gt_instances.labels)
        rpn_losses, proposals = model.rpn_head.loss_and_predict(x, rpn_samples, proposal_cfg=proposal_cfg)
        losses = {(f"rpn_{key}" if "loss" in key and "rpn" not in key else key): value
                  for key, value in rpn_losses.items()}
        losses.update(model.roi_head.loss(x, proposals, samples))
        return _sum_values(losses)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, score_thr: float = 0.05,
                max_per_img: int = 100) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Detections per image, ``(boxes[n, 4] xyxy px in the input frame, scores[n], labels[n])``, at
        most ``max_per_img`` with score >= ``score_thr``, after per-class NMS (IoU 0.5). Runs in eval
        mode without gradients (the previous mode is restored)."""
        samples = self.data_samples(self._check_images(images))
        head = self.model.roi_head if self.two_stage else self.model.bbox_head
        saved_cfg, saved_mode = head.test_cfg, self.training
        cfg = copy.deepcopy(saved_cfg)
        cfg.score_thr, cfg.max_per_img = float(score_thr), int(max_per_img)
        try:
            head.test_cfg = cfg
            self.eval()
            results = self.model.predict(self.normalise(images), samples, rescale=True)
        finally:
            head.test_cfg = saved_cfg
            self.train(saved_mode)
        return [(r.pred_instances.bboxes.detach(), r.pred_instances.scores.detach(),
                 r.pred_instances.labels.detach()) for r in results]

    def forward(self, images: torch.Tensor) -> Any:
        """The raw head outputs (mmdet's ``tensor`` mode): per-level class scores and box regressions
        (+ centre-ness for FCOS) for the one-stage kinds; for Faster R-CNN the RoI head's class scores
        and box deltas on the RPN's proposals (RPN decoding and NMS included). What latency and FLOPs are
        measured on."""
        images = self._check_images(images)
        samples = self.data_samples(images)
        return self.model._forward(self.normalise(images), samples)

    def roi_features(self, features: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """RoIAligned features ``[K, fpn_channels, 7, 7]`` of ``rois`` (``[K, 5]``: batch index, x1, y1,
        x2, y2 px), each from the FPN level its size maps to. Two-stage only."""
        roi_head = self._roi_head()
        extractor = roi_head.bbox_roi_extractor
        aligned: torch.Tensor = extractor(tuple(features)[:extractor.num_inputs], rois)
        return aligned

    def roi_outputs(self, features: Sequence[torch.Tensor],
                    rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoI head on given ``rois`` (``[K, 5]``: batch index, x1, y1, x2, y2 px) over ``features``
        (this detector's FPN outputs): ``(cls_logits[K, C + 1]`` (last = background),
        ``bbox_deltas[K, 4 * C])`` (class-specific deltas, DeltaXYWH with stds 0.1, 0.1, 0.2, 0.2).
        Two-stage only."""
        cls_logits, bbox_deltas = self._roi_head().bbox_head(self.roi_features(features, rois))
        return cls_logits, bbox_deltas

    def _roi_head(self) -> Any:
        """mmdet's RoI head (untyped, like the rest of mmdet)."""
        if not self.two_stage:
            raise TypeError(f"a {self.kind} detector has no RoI head (only faster-rcnn does)")
        return self.model.roi_head

    def extra_repr(self) -> str:
        return f"kind={self.kind}, num_classes={self.num_classes}, strides={self.strides}, " \
               f"fpn_channels={self.fpn_channels}"


# ----------------------------------------------------------------------------------------------------
# Builders


def _build_model(config: Mapping[str, Any]) -> nn.Module:
    """``MODELS.build(config)`` (as a ``ConfigDict``: mmdet reads nested configs as attributes), then
    mmdet's ``init_weights()``: the heads' ``init_cfg``, e.g. the focal-loss prior on the classification
    bias, without which training starts from a huge loss. (A backbone without ``init_weights`` keeps its
    own initialisation.)"""
    return init_weights_quietly(MODELS.build(ConfigDict(config)))  # an mmdet BaseModule (mmdet ships no types)


def build_detector(kind: str, backbone: nn.Module, out_channels: Sequence[int], strides: Sequence[int],
                   num_classes: int, fpn_channels: int = DEFAULT_FPN_CHANNELS) -> Detector:
    """A ``kind`` detector over any backbone module whose ``forward`` returns a tuple of feature maps
    with ``out_channels`` at ``strides`` (e.g. the elastic teacher); the backbone is used as given (its
    weights are not re-initialised) and sits at ``model.backbone``."""
    out_channels, strides = tuple(int(c) for c in out_channels), tuple(int(s) for s in strides)
    if len(out_channels) != len(strides) or not out_channels:
        raise ValueError(f"out_channels {out_channels} and strides {strides} must have the same, non-zero length")
    model = _build_model(detector_config(kind, {"type": nn.Identity}, out_channels, strides, num_classes,
                                         fpn_channels))
    model.backbone = backbone
    return Detector(kind, model, num_classes, strides, fpn_channels)


def _positive_int(model_cfg: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = model_cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"expected an integer >= 1, got {value!r}", field=f"model.{key}")
    return int(value)


def build_detnas(model_cfg: Mapping[str, Any], info: DetectionInfo) -> Detector:
    """The ``detnas`` builder: a ``model.detector`` detector (one of :data:`DETECTOR_KINDS`) over a
    :class:`DetNASBackbone` of ``model.stem`` and ``model.stages``, with an FPN of ``model.fpn_channels``
    (default 32) channels, for ``info.num_classes`` classes and ``info.input_shape`` images."""
    if not isinstance(model_cfg, Mapping):
        raise ConfigError(f"expected a mapping, got {model_cfg!r}", field="model")
    if "detector" not in model_cfg:
        raise ConfigError(f"missing 'detector' (one of {', '.join(DETECTOR_KINDS)})", field="model.detector")
    kind = _check_kind(model_cfg["detector"])
    fpn_channels = _positive_int(model_cfg, "fpn_channels", DEFAULT_FPN_CHANNELS)
    backbone = DetNASBackbone.from_config(model_cfg, in_channels=int(info.input_shape[0]))
    return build_detector(kind, backbone, backbone.out_channels, backbone.strides, info.num_classes, fpn_channels)


# added rather than decorated, so that ``build_detnas`` keeps its return type (Detector) for its callers
builders.add("detnas", build_detnas)
