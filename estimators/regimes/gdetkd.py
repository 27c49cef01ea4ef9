"""G-DetKD (2108.07482) as a detector-agnostic distillation regime, in plain PyTorch.

The caller runs its student and teacher detectors, then hands this module their feature pyramids and a
set of regions of interest (RoIs, ``[K, 5]`` rows of ``(batch_index, x1, y1, x2, y2)`` in input pixels);
:class:`GDetKD` returns named loss terms (already weighted) to add to the student's detection loss:

- ``kd_feat``: semantic-guided feature imitation (SGFI) -- the student's RoI features from *every*
  pyramid level are mixed with learned, per-RoI level weights and imitate the teacher's RoI feature
  from its FPN-assigned level; or the same-level MSE baseline (``feature="fixed"``).
- ``kd_ckd``: contrastive distillation (CKD) -- an InfoNCE loss between student and teacher region
  embeddings, with the teacher features of the other RoIs and a memory queue as negatives.
- ``kd_cls``, ``kd_loc``: for homogeneous two-stage pairs only (the caller passes both RoI heads'
  outputs): KL on class predictions and class-aware localisation distillation.

Heterogeneous pairs (two-stage teacher, RetinaNet/FCOS student) have no RoI head on the student side:
their RoIs come from :func:`sample_rois` (student predictions matched to ground truth) or
:func:`gt_rois`, and only ``kd_feat`` and ``kd_ckd`` apply. The helper networks (adapter, embedding,
temperature, projection) exist only during training; :meth:`GDetKD.extra_parameters` returns them
for the student's optimiser. No mmdet import: only ``torch`` and ``torchvision.ops``.

The details of the method come from a third-party note on the paper ([N] in ``PAPERS.md`` section 4);
the choices the note does not fix ([P]) are named options of :class:`GDetKDConfig`, and their
docstrings say so.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

from estimators.regimes.gdetkd_config import GDetKDConfig

__all__ = [
    "GDetKD",
    "gt_rois",
    "level_shift",
    "sample_rois",
]


class GDetKD(nn.Module):
    """The G-DetKD distillation regime for one student/teacher pair (see the module docstring).

    ``strides`` are the student's pyramid strides (e.g. ``(4, 8, 16)``); ``teacher_strides`` default to
    the same. A level-shifted teacher (e.g. P3-P5 against a P2-P4 student) is given by passing its
    features with ``teacher_strides=(8, 16, 32)`` -- see :func:`level_shift`. RoIs are assigned to a
    *teacher* level index by :meth:`teacher_levels` (the same ``finest_scale`` rule whatever the teacher's
    strides, as each detector's own RoI extractor would do); ``feature="fixed"`` imitates with the student level
    of the same index (clipped to the student's levels), which is exactly what goes wrong when the two
    pyramids are shifted, and what SGFI's learned level weights repair.

    Helpers (training only, returned by :meth:`extra_parameters`): ``adapt`` (1x1 conv, student ->
    teacher channels), ``embed`` (two 3x3 stride-2 convs with a ReLU between, then a global average pool
    and flatten: on a 4x4 RoI the convs (padding 1) already give 1x1, so the pool only keeps
    ``embed_dim`` fixed for other ``roi_size`` values -- the paper flattens), ``log_tau`` (SGFI temperature,
    ``tau = exp(log_tau)``), ``f_theta`` (CKD projection, Linear-ReLU-Linear shared by student and
    teacher region features, [P]) and the CKD memory queue (buffers ``queue``, ``queue_ptr``,
    ``queue_len``; unit-norm teacher embeddings, FIFO, filled only in training mode, MoCo-style: entries
    keep the projection of the step that wrote them). Helpers a config does not use are ``None``.
    """

    # the CKD memory queue's buffers (registered in ``__init__`` only with ``ckd=True``)
    queue: Tensor
    queue_ptr: Tensor
    queue_len: Tensor

    def __init__(self, config: GDetKDConfig, student_channels: int, teacher_channels: int, strides: Sequence[int],
                 *, teacher_strides: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(config, GDetKDConfig):
            raise TypeError(f"config must be a GDetKDConfig, got {type(config).__name__}")
        if student_channels < 1 or teacher_channels < 1:
            raise ValueError(f"channels must be >= 1, got student {student_channels}, teacher {teacher_channels}")
        self.config = config
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.strides = tuple(int(s) for s in strides)
        self.teacher_strides = tuple(int(s) for s in (strides if teacher_strides is None else teacher_strides))
        if not self.strides or not self.teacher_strides or min(self.strides + self.teacher_strides) < 1:
            raise ValueError(f"strides must be non-empty and >= 1, got {self.strides} / {self.teacher_strides}")
        r, d, ct = config.roi_size, config.embed_dim, self.teacher_channels
        needs_adapt = config.feature != "none" or config.ckd
        self.adapt: nn.Conv2d | None = nn.Conv2d(self.student_channels, ct, 1) if needs_adapt else None
        self.embed: nn.Sequential | None = None
        self.log_tau: nn.Parameter | None = None
        if config.feature == "sgfi":
            self.embed = nn.Sequential(
                nn.Conv2d(ct, d, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(d, d, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.log_tau = nn.Parameter(torch.tensor(math.log(config.tau_init)))
        self.f_theta: nn.Sequential | None = None
        if config.ckd:
            self.f_theta = nn.Sequential(nn.Linear(ct * r * r, d), nn.ReLU(inplace=True), nn.Linear(d, d))
            self.register_buffer("queue", torch.zeros(config.queue_size, d))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
            self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.last_level_weights: Tensor | None = None

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def tau(self) -> Tensor:
        """The learned SGFI temperature (``exp(log_tau)``); only with ``feature="sgfi"``."""
        if self.log_tau is None:
            raise AttributeError("tau exists only with feature='sgfi'")
        return self.log_tau.exp()

    def extra_parameters(self) -> list[nn.Parameter]:
        """The trainable helper parameters, to add to the student's optimiser (not the queue buffers)."""
        return list(self.parameters())

    def teacher_levels(self, rois: Tensor) -> Tensor:
        """FPN level index of each RoI on the teacher pyramid (mmdet's ``map_roi_levels`` rule)."""
        boxes = rois[:, 1:5].float()
        scale = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
        levels = torch.floor(torch.log2(scale / self.config.finest_scale + 1e-6))
        return levels.clamp(0, len(self.teacher_strides) - 1).long()

    def memory(self) -> Tensor:
        """The CKD queue's filled entries, oldest first (``[n, embed_dim]``, n <= queue_size)."""
        if self.f_theta is None:
            raise AttributeError("the memory queue exists only with ckd=True")
        n, size = int(self.queue_len), self.queue.shape[0]
        if n < size:
            return self.queue[:n]
        ptr = int(self.queue_ptr)
        return torch.cat([self.queue[ptr:], self.queue[:ptr]])

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor) -> None:
        """Append teacher embeddings to the FIFO queue, overwriting the oldest once it is full."""
        if self.f_theta is None:
            raise AttributeError("the memory queue exists only with ckd=True")
        size = self.queue.shape[0]
        if size == 0 or embeddings.shape[0] == 0:
            return
        embeddings = embeddings.detach().to(self.queue.dtype)[-size:]
        n, ptr = embeddings.shape[0], int(self.queue_ptr)
        idx = (torch.arange(n, device=self.queue.device) + ptr) % size
        self.queue[idx] = embeddings
        self.queue_ptr.fill_((ptr + n) % size)
        self.queue_len.fill_(min(size, int(self.queue_len) + n))

    def _align(self, feature: Tensor, rois: Tensor, stride: int) -> Tensor:
        r = self.config.roi_size
        aligned: Tensor = roi_align(feature, rois, (r, r), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
        return aligned

    # ---- the loss ------------------------------------------------------------------------------
    def forward(self, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], rois: Tensor, *,
                student_cls: Tensor | None = None, teacher_cls: Tensor | None = None,
                student_reg: Tensor | None = None, teacher_reg: Tensor | None = None) -> dict[str, Tensor]:
        """The weighted distillation terms for one batch (keys among kd_feat, kd_ckd, kd_cls, kd_loc).

        Teacher tensors are detached here. ``kd_cls`` needs both ``*_cls`` ([K, C+1] logits);
        ``kd_loc`` needs both ``*_cls`` and both ``*_reg`` ([K, 4*C] class-specific or [K, 4] deltas).
        With no RoIs every applicable term is a zero that still backpropagates.
        """
        cfg = self.config
        if len(student_features) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} student levels, got {len(student_features)}")
        if len(teacher_features) != len(self.teacher_strides):
            raise ValueError(f"expected {len(self.teacher_strides)} teacher levels, got {len(teacher_features)}")
        for name, feats, channels in (("student", student_features, self.student_channels),
                                      ("teacher", teacher_features, self.teacher_channels)):
            for level, f in enumerate(feats):
                if f.dim() != 4 or f.shape[1] != channels:
                    raise ValueError(f"{name} level {level}: expected [B, {channels}, H, W], got {tuple(f.shape)}")
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be [K, 5] (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}")
        teacher_features = [f.detach() for f in teacher_features]
        head = self._head_inputs(student_cls, teacher_cls, student_reg, teacher_reg)
        rois = rois.detach().to(student_features[0].dtype)
        out: dict[str, Tensor] = {}

        if rois.shape[0] == 0:
            zero = sum((f.sum() for f in student_features), student_features[0].new_zeros(())) * 0.0
            if cfg.feature != "none":
                out["kd_feat"] = zero
            if cfg.ckd:
                out["kd_ckd"] = zero
            if head.get("cls") is not None and cfg.cls_kl:
                out["kd_cls"] = head["cls"][0].sum() * 0.0
            if head.get("reg") is not None and cfg.loc:
                out["kd_loc"] = head["reg"][0].sum() * 0.0
            if cfg.feature == "sgfi":
                self.last_level_weights = rois.new_zeros(0, len(self.strides))
            return out

        levels = self.teacher_levels(rois)
        need_student = cfg.feature != "none" or cfg.ckd
        teacher_roi = self._teacher_rois(teacher_features, rois, levels) if need_student else None
        aggregated: Tensor | None = None
        assigned: Tensor | None = None
        if need_student:
            assert self.adapt is not None and teacher_roi is not None
            # adapt after RoIAlign: the 1x1 conv commutes with bilinear sampling inside the image, and K*r*r
            # positions are far fewer than the maps' H*W.
            if cfg.feature == "sgfi":
                per_level = torch.stack([self.adapt(self._align(f, rois, s))
                                         for f, s in zip(student_features, self.strides)], dim=1)  # [K, L, Ct, r, r]
                aggregated = self._sgfi(per_level, teacher_roi)
                student_level = levels.clamp(max=len(self.strides) - 1)
                assigned = per_level[torch.arange(rois.shape[0], device=rois.device), student_level]
                out["kd_feat"] = cfg.feat_weight * F.mse_loss(aggregated, teacher_roi)
            else:
                assigned = self._student_assigned(student_features, rois, levels)
                if cfg.feature == "fixed":
                    out["kd_feat"] = cfg.feat_weight * F.mse_loss(assigned, teacher_roi)
        if cfg.ckd:
            assert teacher_roi is not None and assigned is not None
            student_region = aggregated if cfg.ckd_student == "sgfi" else assigned
            assert student_region is not None  # GDetKDConfig: ckd_student="sgfi" needs feature="sgfi"
            out["kd_ckd"] = cfg.ckd_weight * self._ckd(student_region, teacher_roi, rois)
        if head.get("cls") is not None and cfg.cls_kl:
            s_cls, t_cls = head["cls"]
            t = cfg.kl_temperature
            kl = F.kl_div(F.log_softmax(s_cls / t, dim=1), F.log_softmax(t_cls / t, dim=1),
                          reduction="batchmean", log_target=True)
            out["kd_cls"] = cfg.kl_weight * kl * t * t
        if head.get("reg") is not None and cfg.loc:
            out["kd_loc"] = cfg.loc_weight * self._loc(head["cls"][1], *head["reg"])
        return out

    def _head_inputs(self, student_cls: Tensor | None, teacher_cls: Tensor | None, student_reg: Tensor | None,
                     teacher_reg: Tensor | None) -> dict[str, tuple[Tensor, Tensor]]:
        heads: dict[str, tuple[Tensor, Tensor]] = {}
        if (student_cls is None) != (teacher_cls is None):
            raise ValueError("pass both student_cls and teacher_cls, or neither")
        if (student_reg is None) != (teacher_reg is None):
            raise ValueError("pass both student_reg and teacher_reg, or neither")
        if student_cls is not None and teacher_cls is not None:
            if student_cls.shape != teacher_cls.shape or student_cls.dim() != 2:
                raise ValueError(f"class logits must both be [K, C+1], got {tuple(student_cls.shape)} "
                                 f"and {tuple(teacher_cls.shape)}")
            heads["cls"] = (student_cls, teacher_cls.detach())
        if student_reg is not None and teacher_reg is not None:
            if "cls" not in heads:
                raise ValueError("the localisation term needs the class logits (student_cls, teacher_cls) too")
            if student_reg.shape != teacher_reg.shape or student_reg.dim() != 2 or student_reg.shape[1] % 4:
                raise ValueError(f"box deltas must both be [K, 4*C] or [K, 4], got {tuple(student_reg.shape)} "
                                 f"and {tuple(teacher_reg.shape)}")
            if student_reg.shape[0] != student_cls.shape[0]:  # type: ignore[union-attr]
                raise ValueError("box deltas and class logits must have the same number of RoIs")
            heads["reg"] = (student_reg, teacher_reg.detach())
        return heads

    def _teacher_rois(self, teacher_features: Sequence[Tensor], rois: Tensor, levels: Tensor) -> Tensor:
        r = self.config.roi_size
        out = rois.new_zeros(rois.shape[0], self.teacher_channels, r, r)
        for level, (f, s) in enumerate(zip(teacher_features, self.teacher_strides)):
            idx = (levels == level).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = self._align(f, rois[idx], s).to(out.dtype)
        return out

    def _student_assigned(self, student_features: Sequence[Tensor], rois: Tensor, levels: Tensor) -> Tensor:
        assert self.adapt is not None
        student_level = levels.clamp(max=len(self.strides) - 1)
        parts, order = [], []
        for level, (f, s) in enumerate(zip(student_features, self.strides)):
            idx = (student_level == level).nonzero(as_tuple=True)[0]
            if idx.numel():
                parts.append(self.adapt(self._align(f, rois[idx], s)))
                order.append(idx)
        stacked, index = torch.cat(parts), torch.cat(order)
        return stacked[torch.argsort(index)]

    def _sgfi(self, per_level: Tensor, teacher_roi: Tensor) -> Tensor:
        """alpha_i = softmax_l(<embed(S_i^l), embed(T_i)> / tau); returns sum_l alpha_i^l S_i^l."""
        assert self.embed is not None
        k, n_levels = per_level.shape[:2]
        keys = self.embed(per_level.flatten(0, 1)).view(k, n_levels, -1)  # [K, L, D]
        query = self.embed(teacher_roi)  # [K, D]
        if self.config.sgfi_similarity == "cosine":
            keys, query = F.normalize(keys, dim=2), F.normalize(query, dim=1)
        alpha = torch.softmax(torch.einsum("kld,kd->kl", keys, query) / self.tau, dim=1)
        self.last_level_weights = alpha.detach()
        return (alpha[:, :, None, None, None] * per_level).sum(dim=1)

    def _ckd(self, student_region: Tensor, teacher_region: Tensor, rois: Tensor) -> Tensor:
        """InfoNCE over cosine similarities of f_theta projections, in log space."""
        assert self.f_theta is not None
        zs = F.normalize(self.f_theta(student_region.flatten(1)), dim=1)
        zt = F.normalize(self.f_theta(teacher_region.flatten(1)), dim=1)
        gamma = self.config.gamma
        logits = zs @ zt.t() / gamma  # [K, K]: row i, column j = <s_i, t_j>
        batch = rois[:, 0].long()
        same_image = batch[:, None] == batch[None, :]
        eye = torch.eye(rois.shape[0], dtype=torch.bool, device=rois.device)
        overlap = box_iou(rois[:, 1:], rois[:, 1:]) >= self.config.neg_iou
        logits = logits.masked_fill(same_image & overlap & ~eye, float("-inf"))
        memory = self.memory().clone()  # a copy: enqueue below writes the buffer before backward runs
        if memory.shape[0]:
            logits = torch.cat([logits, zs @ memory.to(zs.dtype).t() / gamma], dim=1)
        loss = (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
        if self.training:
            self.enqueue(zt)
        return loss

    def _loc(self, teacher_cls: Tensor, student_reg: Tensor, teacher_reg: Tensor) -> Tensor:
        """mean |sum_c p_t^c (reg_t^c - reg_s^c)| over the C foreground classes (p from the full softmax)."""
        probs = torch.softmax(teacher_cls.float(), dim=1)
        background = self.config.background
        fg = probs[:, :-1] if background == "last" else probs[:, 1:] if background == "first" else probs
        diff = (teacher_reg - student_reg).float()
        k, n_classes = fg.shape
        if diff.shape[1] == 4:  # class-agnostic: sum_c p_c * diff = p_fg * diff
            weighted = fg.sum(dim=1, keepdim=True) * diff
        elif diff.shape[1] == 4 * n_classes:
            weighted = (fg[:, :, None] * diff.view(k, n_classes, 4)).sum(dim=1)
        else:
            raise ValueError(f"box deltas have {diff.shape[1]} columns; expected 4 or 4*C = {4 * n_classes} "
                             f"(background={background!r})")
        return weighted.abs().mean().to(student_reg.dtype)


def level_shift(features: Sequence[Tensor], shift: int) -> list[Tensor]:
    """The pyramid re-indexed by ``shift`` levels, same number of levels, strides times ``2**shift``.

    ``shift > 0`` (coarser; e.g. 1 turns P2-P4 into P3-P5): level l becomes input level l+shift; levels
    past the end are 2x2 average pools (stride 2) of the level before them, the way FPN makes P6 from P5.
    ``shift < 0`` (finer): level l becomes input level l+shift; levels before the start are 2x
    nearest-neighbour upsamplings of the level after them. ``shift == 0`` returns the levels unchanged.
    Used for the level-shifted teacher experiment: pass the result with
    ``GDetKD(..., teacher_strides=[s * 2**shift for s in strides])``.
    """
    if not isinstance(shift, int) or isinstance(shift, bool):
        raise TypeError(f"shift must be an int, got {shift!r}")
    feats = list(features)
    n = len(feats)
    if n == 0:
        raise ValueError("level_shift needs at least one level")
    out: list[Tensor | None] = [feats[l + shift] if 0 <= l + shift < n else None for l in range(n)]
    if shift > 0:
        for l in range(n):
            if out[l] is None:
                prev = out[l - 1] if l > 0 else None
                if prev is None:  # shift >= n: pool the coarsest input level repeatedly
                    prev = feats[-1]
                    for _ in range(l + shift - n):
                        prev = F.avg_pool2d(prev, 2, ceil_mode=True)
                out[l] = F.avg_pool2d(prev, 2, ceil_mode=True)
    elif shift < 0:
        for l in reversed(range(n)):
            if out[l] is None:
                nxt = out[l + 1] if l + 1 < n else None
                if nxt is None:  # -shift >= n: upsample the finest input level repeatedly
                    nxt = feats[0]
                    for _ in range(-(l + shift) - 1):
                        nxt = F.interpolate(nxt, scale_factor=2, mode="nearest")
                out[l] = F.interpolate(nxt, scale_factor=2, mode="nearest")
    return [f for f in out if f is not None]


def gt_rois(gt_boxes: Sequence[Tensor]) -> Tensor:
    """Ground-truth boxes (per image, ``[n, 4]`` xyxy px) as ``[K, 5]`` RoIs with the batch index first.

    The small-scale default RoI set for both pair types: the teacher and student are compared on the
    objects themselves.
    """
    rows = [torch.cat([boxes.new_full((boxes.shape[0], 1), float(i)), boxes.reshape(-1, 4)], dim=1)
            for i, boxes in enumerate(gt_boxes)]
    if not rows:
        return torch.zeros(0, 5)
    return torch.cat(rows).float()


def sample_rois(pred_boxes: Sequence[Tensor], gt_boxes: Sequence[Tensor], *, iou: float = 0.5,
                pos_fraction: float = 0.25, num: int = 32,
                generator: torch.Generator | None = None) -> Tensor:
    """RoIs for a heterogeneous pair: a one-stage student's predicted boxes matched to ground truth.

    Per image: the ground-truth boxes are always positives; a prediction is positive when its best IoU
    with a ground-truth box is > ``iou`` and negative otherwise. Positives are the GT boxes plus randomly
    chosen positive predictions up to ``round(num * pos_fraction)`` in all (more only when the GT alone
    exceed it); negatives are randomly chosen, at most ``pos * (1 - pos_fraction) / pos_fraction`` (1:3
    at the default, the paper's ratio) and at most what keeps the image's total within ``num``. An image
    without ground truth contributes ``round((1 - pos_fraction) / pos_fraction)`` negatives, as if it had
    one positive. Sampling uses ``generator`` (a CPU generator) for reproducibility. Returns ``[K, 5]``
    (batch_index, x1, y1, x2, y2), positives then negatives per image, float32 on the boxes' device.
    """
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"pred_boxes has {len(pred_boxes)} images, gt_boxes {len(gt_boxes)}")
    if not 0 < pos_fraction < 1:
        raise ValueError(f"pos_fraction must be in (0, 1), got {pos_fraction}")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    ratio = (1.0 - pos_fraction) / pos_fraction
    rows: list[Tensor] = []
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    for image, (pred, gt) in enumerate(zip(pred_boxes, gt_boxes)):
        pred = pred.detach().reshape(-1, 4).float().to(device)
        gt = gt.detach().reshape(-1, 4).float().to(device)
        if gt.shape[0] and pred.shape[0]:
            best = box_iou(pred, gt).max(dim=1).values
        else:
            best = pred.new_zeros(pred.shape[0])
        pos_idx = (best > iou).nonzero(as_tuple=True)[0]
        neg_idx = (best <= iou).nonzero(as_tuple=True)[0]
        want_pos = max(int(round(num * pos_fraction)) - gt.shape[0], 0)
        pos_idx = pos_idx[torch.randperm(pos_idx.numel(), generator=generator)[:want_pos].to(device)]
        n_pos = gt.shape[0] + pos_idx.numel()
        n_neg = min(neg_idx.numel(), int(round(max(n_pos, 1) * ratio)), max(num - n_pos, 0))
        neg_idx = neg_idx[torch.randperm(neg_idx.numel(), generator=generator)[:n_neg].to(device)]
        boxes = torch.cat([gt, pred[pos_idx], pred[neg_idx]])
        rows.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(image)), boxes], dim=1))
    if not rows:
        return torch.zeros(0, 5)
    return torch.cat(rows)
