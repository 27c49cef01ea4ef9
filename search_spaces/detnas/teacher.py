"""The elastic teacher pool of Joint-DetNAS (PAPERS.md §3): one Faster R-CNN whose backbone can run as
any of its sub-teachers, trained once by progressive shrinking and then used as a choice of teachers.

:class:`ElasticResNetBackbone` is a ResNet of basic blocks (stride-2 stem, then 3 stages whose first
block downsamples, outputs at strides 4, 8, 16) that owns its largest variant: ``max_depth`` blocks per
stage and full inner width. :meth:`~ElasticResNetBackbone.set_active` picks a sub-teacher: the first
``depth`` blocks of every stage, each block's inner width (``conv1``'s outputs) the ratio ``width`` of
the stage's width, taken as the leading slice of the elastic weights (``automl.elastic``). Stage output
widths do not change, so the FPN and the heads are shared by every sub-teacher.

:class:`TeacherPool` is a Faster R-CNN :class:`~search_spaces.detnas.detector.Detector` over it (a
two-stage teacher: a Faster R-CNN student is the homogeneous pair of G-DetKD, RetinaNet and FCOS
students the heterogeneous ones). :func:`train_teacher_pool` trains it by Once-for-All style
progressive shrinking ("integrated progressive shrinking", Joint-DetNAS):

1. the largest teacher alone, on the detection loss;
2. elastic depth: every step samples a depth (full width) and trains that sub-teacher on the detection
   loss plus ``kd_weight`` x MSE between its FPN features and the largest teacher's on the same batch.
   The largest teacher here is a frozen copy of the pool taken after phase 1, as Once-for-All distils
   from the trained full network: distilling from the live shared weights (a target that moves with
   every step) diverged: the training loss grew from ~1 to ~1e3 within 50 steps and ~1e5 after 150;
3. elastic width: the inner channels of every block are first sorted by |BN gamma| (a permutation
   that changes nothing computed, so the slices keep the most important channels), then every step
   samples a depth and a width and trains as in 2.

Finally every sub-teacher's batch-norm statistics are re-estimated on a few training batches and
stored in the pool (they are part of its ``state_dict``); :meth:`TeacherPool.set_active` swaps them in,
so an active sub-teacher in eval mode normalises with its own statistics.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from automl.artifacts import ArtifactStore
from automl.elastic.layers import ElasticBatchNorm2d, ElasticConv2d
from automl.elastic.surgery import recalibrate_batchnorm
from automl.errors import ConfigError
from automl.progress import TrialMonitor
from automl.tasks.detection import DetectionData, DetectionSplit
from automl.training.fit import Checkpoint, FitResult, fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.seeding import seeded
from automl.training.streams import DrawStream
from search_spaces.detnas.backbone import inner_channels
from search_spaces.detnas.detector import DEFAULT_FPN_CHANNELS, Detector, build_detector, register_backbone, total_loss

__all__ = [
    "DEFAULT_POOL_STEPS",
    "ElasticBlock",
    "ElasticResNetBackbone",
    "TeacherPool",
    "train_teacher_pool",
]

#: default (largest, depth phase, width phase) steps of :func:`train_teacher_pool`: measured 84 s with
#: one thread on the 2-core dev machine (another process busy on the other core), 64 px shapes-detection,
#: batch 8; the sub-teachers then score 0.20-0.22 val mAP (largest 0.21). Phase 1 dominates (~0.18 s per
#: step); a depth/width step costs about the same (a smaller sub-teacher + the frozen reference's forward).
DEFAULT_POOL_STEPS = (300, 60, 90)


class ElasticBlock(nn.Module):
    """A basic block ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` whose inner width (the
    channels between ``conv1`` and ``conv2``) is chosen per call, up to ``width``."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.width, self.stride = int(in_channels), int(width), int(stride)
        self.conv1 = ElasticConv2d(in_channels, width, 3, bias=False, stride=stride)
        self.bn1 = ElasticBatchNorm2d(width)
        self.conv2 = ElasticConv2d(width, width, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_channels != width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor, inner: int | None = None) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x, self.width if inner is None else inner)))
        out = self.bn2(self.conv2(out, self.width))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    def num_parameters(self, inner: int) -> int:
        """Parameters this block uses at inner width ``inner``."""
        count = self.in_channels * inner * 9 + 2 * inner + inner * self.width * 9 + 2 * self.width
        if self.shortcut is not None:
            count += sum(p.numel() for p in self.shortcut.parameters())
        return count

    @torch.no_grad()
    def sort_inner_channels(self) -> None:
        """Reorder the inner channels by |bn1.weight| descending: conv1's output rows, bn1's entries and
        conv2's input columns move together, so the block computes the same, and a narrower slice keeps
        the channels with the largest |BN gamma|."""
        order = torch.argsort(self.bn1.weight.abs(), descending=True, stable=True)
        self.conv1.weight.copy_(self.conv1.weight[order])
        for name in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(self.bn1, name)
            if tensor is not None:
                tensor.copy_(tensor[order])
        self.conv2.weight.copy_(self.conv2.weight[:, order])


class ElasticResNetBackbone(nn.Module):
    """An elastic ResNet backbone: ``stem`` channels, stage ``widths``, up to ``max_depth`` blocks per
    stage, inner width ratios ``width_ratios``; :meth:`set_active` selects the sub-network ``forward``
    runs (initially the largest). Returns the 3 stage outputs (strides 4, 8, 16)."""

    def __init__(self, stem: int = 32, widths: Sequence[int] = (32, 64, 128), max_depth: int = 3,
                 width_ratios: Sequence[float] = (0.5, 0.75, 1.0), in_channels: int = 3) -> None:
        super().__init__()
        if max_depth < 1 or not widths or not width_ratios:
            raise ValueError("an elastic backbone needs max_depth >= 1, stage widths and width ratios")
        self.widths = tuple(int(w) for w in widths)
        self.max_depth = int(max_depth)
        self.width_ratios = tuple(sorted(float(r) for r in width_ratios))
        if not all(0 < r <= 1 for r in self.width_ratios):
            raise ValueError(f"width ratios must be in (0, 1], got {self.width_ratios}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.stages: nn.ModuleList = nn.ModuleList()
        channels = int(stem)
        for width in self.widths:
            self.stages.append(nn.ModuleList(
                ElasticBlock(channels if j == 0 else width, width, 2 if j == 0 else 1) for j in range(self.max_depth)))
            channels = width
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, ElasticConv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, _BatchNorm):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)
        self.depth, self.width = self.max_depth, self.width_ratios[-1]

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self.widths

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(2 ** (s + 2) for s in range(len(self.widths)))

    @property
    def active(self) -> tuple[int, float]:
        """The active sub-network's ``(depth, width)``."""
        return self.depth, self.width

    def check(self, depth: int, width: float) -> tuple[int, float]:
        """``(depth, width)`` if it names a sub-network, else ConfigError naming ``teacher.depth`` or
        ``teacher.width`` and the choices."""
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= depth <= self.max_depth:
            raise ConfigError(f"expected a depth in 1..{self.max_depth}, got {depth!r}", field="teacher.depth")
        match = [r for r in self.width_ratios if math.isclose(r, float(width), abs_tol=1e-9)]
        if isinstance(width, bool) or not match:
            raise ConfigError(f"expected a width ratio in {list(self.width_ratios)}, got {width!r}",
                              field="teacher.width")
        return int(depth), match[0]

    def set_active(self, depth: int, width: float) -> None:
        """Run the first ``depth`` blocks of every stage with inner width ratio ``width`` from now on."""
        self.depth, self.width = self.check(depth, width)

    def inner(self, stage: int) -> int:
        """The active inner width of the blocks of ``stage``."""
        return inner_channels(self.widths[stage], self.width)

    def blocks(self, stage: int) -> Sequence[ElasticBlock]:
        """The ``max_depth`` blocks of stage ``stage``: ``stages[stage]``, an ``nn.ModuleList`` of
        :class:`ElasticBlock` (which ``nn.ModuleList`` cannot say in its type)."""
        return cast(Sequence[ElasticBlock], self.stages[stage])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for s in range(len(self.stages)):
            inner = self.inner(s)
            for block in self.blocks(s)[:self.depth]:
                x = block(x, inner)
            outs.append(x)
        return tuple(outs)

    def active_num_parameters(self) -> int:
        """Parameters the active sub-network uses (sliced weights counted at their slice size)."""
        count = sum(p.numel() for p in self.stem.parameters())
        for s in range(len(self.stages)):
            count += sum(block.num_parameters(self.inner(s)) for block in self.blocks(s)[:self.depth])
        return count

    def sort_inner_channels(self) -> None:
        """:meth:`ElasticBlock.sort_inner_channels` on every block (before unlocking elastic width)."""
        for s in range(len(self.stages)):
            for block in self.blocks(s):
                block.sort_inner_channels()


register_backbone(ElasticResNetBackbone)


def _key(depth: int, width: float) -> str:
    return f"depth={depth},width={width:g}"


class TeacherPool(Detector):
    """A Faster R-CNN :class:`Detector` over an :class:`ElasticResNetBackbone`; every method of
    :class:`Detector` runs the active sub-teacher (:meth:`set_active`, initially the largest)."""

    def __init__(self, num_classes: int, fpn_channels: int = DEFAULT_FPN_CHANNELS, *, stem: int = 32,
                 widths: Sequence[int] = (32, 64, 128), max_depth: int = 3,
                 width_ratios: Sequence[float] = (0.5, 0.75, 1.0), in_channels: int = 3) -> None:
        backbone = ElasticResNetBackbone(stem, widths, max_depth, width_ratios, in_channels)
        built = build_detector("faster-rcnn", backbone, backbone.out_channels, backbone.strides, num_classes,
                               fpn_channels)
        super().__init__(built.kind, built.model, built.num_classes, built.strides, built.fpn_channels)
        #: per sub-teacher (key "depth=D,width=W"), its calibrated batch-norm buffers (see calibrate)
        self.bn_stats: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def backbone(self) -> ElasticResNetBackbone:
        """The elastic backbone (``self.model.backbone``)."""
        backbone: ElasticResNetBackbone = self.model.backbone
        return backbone

    @property
    def largest(self) -> tuple[int, float]:
        return self.backbone.max_depth, self.backbone.width_ratios[-1]

    @property
    def active(self) -> tuple[int, float]:
        return self.backbone.active

    def sub_teachers(self) -> list[tuple[int, float]]:
        """Every ``(depth, width)`` the pool holds, largest first."""
        return sorted(itertools.product(range(1, self.backbone.max_depth + 1), self.backbone.width_ratios),
                      reverse=True)

    def set_active(self, depth: int, width: float) -> None:
        """Make sub-teacher ``(depth, width)`` the one every method runs; when the pool has calibrated
        batch-norm statistics for it (after :func:`train_teacher_pool`), load them."""
        depth, width = self.backbone.check(depth, width)
        self.backbone.set_active(depth, width)
        stats = self.bn_stats.get(_key(depth, width))
        if stats:
            buffers = dict(self.backbone.named_buffers())
            with torch.no_grad():
                for name, value in stats.items():
                    buffers[name].copy_(value)

    def active_num_parameters(self) -> int:
        """Parameters of the active sub-teacher (backbone slices + the shared FPN and heads)."""
        rest = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("model.backbone."))
        return rest + self.backbone.active_num_parameters()

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, batch_size: int = 16) -> None:
        """Re-estimate every sub-teacher's batch-norm statistics on ``images`` ([N, 3, H, W]) and store
        them (``set_active`` loads them); the active sub-teacher stays active."""
        active = self.active
        self.bn_stats = {}
        batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        for depth, width in self.sub_teachers():
            self.backbone.set_active(depth, width)
            recalibrate_batchnorm(self.backbone, batches, forward=lambda b: self.backbone(self.normalise(b)))
            self.bn_stats[_key(depth, width)] = {name: t.detach().clone() for name, t in self.backbone.named_buffers()}
        self.set_active(*active)

    def get_extra_state(self) -> Any:
        return {"bn_stats": self.bn_stats, "active": list(self.active)}

    def set_extra_state(self, state: Any) -> None:
        self.bn_stats = {key: dict(value) for key, value in state.get("bn_stats", {}).items()}
        self.set_active(*state.get("active", self.largest))


def _kd_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over FPN levels of the MSE between feature maps."""
    return torch.stack([F.mse_loss(s, t) for s, t in zip(student, teacher)]).mean()


PHASES = ("largest", "depth", "width")


def train_teacher_pool(pool: TeacherPool, data: DetectionSplit | DetectionData, *,
                       steps: tuple[int, int, int] = DEFAULT_POOL_STEPS, batch_size: int = 8, lr: float = 2e-3,
                       kd_weight: float = 1.0, seed: int = 0, calibration_images: int = 64,
                       on_step: Callable[[str, int, float], None] | None = None,
                       checkpoints: tuple[ArtifactStore, str] | None = None,
                       monitor: TrialMonitor | None = None) -> dict[str, Any]:
    """Train ``pool`` by progressive shrinking (module docstring) on ``data`` (a ``DetectionSplit``, or a
    ``DetectionData`` whose train split is used): ``steps = (largest, depth phase, width phase)``
    optimiser steps of ``batch_size`` random training images, AdamW (``lr``, weight decay 1e-4, a new
    optimiser per phase, cosine decay within it, gradients clipped to norm 10), then batch-norm
    calibration of every sub-teacher on the first ``calibration_images`` training images.

    Everything random follows ``seed`` (the caller's RNG state is restored afterwards), so two runs from
    the same initial weights give the same pool. ``on_step(phase, step, loss)`` is called after every
    step (phase ``largest``, ``depth`` or ``width``). With ``checkpoints=(store, name)`` each phase is
    checkpointed under ``name.<phase>.partial`` (removed once the pool is trained), so a killed training
    continues where it stopped. Returns ``seconds``, ``steps``, per phase the mean total loss of its last
    quarter of steps (``loss_<phase>``) and the mean distillation MSE of the last quarter of the
    depth/width steps (``kd_mse``, NaN without such steps); the pool is left in eval mode with the
    largest sub-teacher active.
    """
    split = cast(DetectionSplit, getattr(data, "train", data))  # a DetectionData's train split, else data
    if len(split.images) == 0:
        raise ValueError("train_teacher_pool needs training images")
    if len(steps) != 3 or any(int(s) < 0 for s in steps):
        raise ValueError(f"steps must be 3 non-negative counts (largest, depth, width), got {steps!r}")
    largest = pool.largest
    depths = list(range(1, pool.backbone.max_depth + 1))
    widths = list(pool.backbone.width_ratios)
    report: dict[str, Any] = {"steps": dict(zip(PHASES, (int(s) for s in steps)))}
    start = time.perf_counter()
    with seeded(seed):
        rng = np.random.default_rng(seed)
        pool.bn_stats = {}
        pool.set_active(*largest)
        reference: TeacherPool | None = None
        kd_values: list[float] = []
        for phase, count in zip(PHASES, (int(s) for s in steps)):
            if count == 0:
                continue
            if phase != "largest" and reference is None:
                # the distillation target: the largest teacher as trained so far, frozen (Once-for-All);
                # kept in training mode, so it normalises with batch statistics like the trained sub-teacher
                reference = copy.deepcopy(pool).requires_grad_(False)
                reference.set_active(*largest)
            if phase == "width":
                pool.backbone.sort_inner_channels()
            run = _train_phase(pool, split, phase, count, rng, reference, batch_size=batch_size, lr=lr,
                               kd_weight=kd_weight, depths=depths, widths=widths, on_step=on_step,
                               checkpoints=checkpoints, monitor=monitor)
            losses = [h["total"] for h in run.history]
            report[f"loss_{phase}"] = float(np.mean(losses[-max(1, len(losses) // 4):]))
            kd_values += [h["kd"] / kd_weight for h in run.history if "kd" in h and kd_weight > 0]
        report["kd_mse"] = float(np.mean(kd_values[-max(1, len(kd_values) // 4):])) if kd_values else float("nan")
        pool.set_active(*largest)
        count = min(int(calibration_images), len(split.images))
        if count > 0:
            pool.calibrate(torch.stack(split.images[:count]), batch_size=max(1, batch_size * 2))
        pool.eval()
    if checkpoints is not None:
        store, name = checkpoints
        for phase in PHASES:
            if store.exists(f"{name}.{phase}.partial"):
                store.remove(f"{name}.{phase}.partial")
    report["seconds"] = time.perf_counter() - start
    return report


def _train_phase(pool: TeacherPool, split: DetectionSplit, phase: str, count: int, rng: np.random.Generator,
                 reference: TeacherPool | None, *, batch_size: int, lr: float, kd_weight: float,
                 depths: list[int], widths: list[float], on_step: Callable[[str, int, float], None] | None,
                 checkpoints: tuple[ArtifactStore, str] | None, monitor: TrialMonitor | None) -> FitResult:
    """One phase of progressive shrinking: each step a random batch and (after phase 1) a random sub-teacher."""
    largest = pool.largest

    def draw() -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], tuple[int, float]]:
        idx = rng.choice(len(split.images), size=min(batch_size, len(split.images)), replace=False)
        if phase == "largest":
            sub = largest
        else:
            sub = (int(rng.choice(depths)), largest[1] if phase == "depth" else float(rng.choice(widths)))
        return (torch.stack([split.images[i] for i in idx]), [split.boxes[i] for i in idx],
                [split.labels[i] for i in idx], sub)

    def step(net: nn.Module, batch: Any) -> StepOutput:
        images, boxes, labels, sub = batch
        pool.set_active(*sub)
        features = pool.features(images)
        terms = {"detection": total_loss(pool.loss(images, boxes, labels, features=features))}
        if reference is not None and kd_weight > 0:
            with torch.no_grad():
                target = reference.features(images)
            terms["kd"] = kd_weight * _kd_loss(features, target)
        return StepOutput(terms, features)

    recipe = Recipe(steps=count, lr=lr, optimizer="adamw", weight_decay=1e-4, schedule="cosine", clip=10.0,
                    nonfinite="skip", batch_size=batch_size)
    checkpoint = Checkpoint(checkpoints[0], f"{checkpoints[1]}.{phase}.partial") if checkpoints is not None else None
    return fit(pool, DrawStream(draw, rng), recipe, step, checkpoint=checkpoint,
               monitor=monitor.phase(f"teacher pool: {phase}") if monitor is not None else None,
               on_step=(lambda k, values: on_step(phase, k, values["total"])) if on_step is not None else None)
