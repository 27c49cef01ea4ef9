"""ONCE's official 3-D detection metric, reproducing OpenPCDet's ``pcdet/datasets/once/once_eval``
(``evaluation.py``: ``get_evaluation_results`` with its defaults ``use_superclass=True``,
``num_pr_points=50``, ``difficulty_mode='Overall&Distance'``, ``ap_with_heading=True``; ``eval_utils.py``;
``iou_utils.py``), numpy and shapely only.

Input, as ``ONCEDataset.evaluation`` passes it: two lists aligned frame by frame, each frame a dict with
``name`` (class names), ``boxes_3d`` (``[n, 7]`` ``(cx, cy, cz, l, w, h, θ)`` in the LiDAR frame) and, for
predictions, ``score``. :func:`evaluate` returns the official keys ``AP_Vehicle/overall``,
``AP_Vehicle/0-30m``, ``AP_Vehicle/30-50m``, ``AP_Vehicle/50m-inf``, the same for ``Pedestrian`` and
``Cyclist``, and ``AP_mean/<bin>`` (the mean over the classes), each in percent.

The reference's behaviour, quirks included, reproduced here (where it was read):

* **Superclass** (``evaluation.filter_data``): for ``Vehicle`` every name that is neither ``Pedestrian``
  nor ``Cyclist`` counts, so a ``Truck`` prediction matches a ``Bus`` ground truth. ``Vehicle`` is always
  evaluated, first, even when ``classes`` names none of Car/Bus/Truck (``get_evaluation_results`` drops
  them and ``classes.insert(0, 'Vehicle')`` unconditionally); naming only some of them is an error there
  (an assertion) and here (a :class:`~automl.errors.ConfigError`).
* **IoU** (``iou3d_kernel_with_heading``): 3-D, the rotated BEV intersection times the overlap of the
  height intervals ``cz ± h/2``, over ``l·w·h + l'·w'·h' - intersection``.
* **The BEV footprint turns clockwise** (``iou_utils.rbbox_to_corners``: a corner ``(x, y)`` goes to
  ``(cos θ·x + sin θ·y, -sin θ·x + cos θ·y)``, KITTI's camera-frame convention), while ONCE's LiDAR
  heading turns counter-clockwise. Two boxes are therefore intersected as if both headings were negated
  about their own centres: the same IoU when the headings are equal (or the centres coincide), a different
  one when a rotated box is offset from the other.
* **Heading test**: ``d = |θ_gt - θ_pred|``, replaced by ``2π - d`` when ``d >= π``; the IoU is set to 0
  when ``d > π/2``. Exactly 90° still matches, and the angles are not wrapped first, so a difference of
  ``3π`` (opposite headings written one turn apart) passes the test (``2π - 3π = -π``).
* **Matching** needs ``IoU > threshold`` (strictly): Vehicle 0.7, Pedestrian 0.3, Cyclist 0.5.
* **Distance** (``eval_utils.overall_distance_filter``) is ``sqrt(cx² + cy² + cz²)``, *with* the height,
  binned ``[0, 30)``, ``[30, 50)``, ``[50, ∞)``. Ground truths *and* predictions are each binned by their
  own distance, and those outside the bin are *ignored*, not removed: an out-of-bin ground truth matched
  by an in-bin prediction makes it neither a true nor a false positive, an in-bin ground truth matched only
  by an out-of-bin prediction is not a false negative, and an out-of-bin prediction is never a false
  positive.
* **Counting** (``compute_statistics``, at each score threshold, on predictions with ``score >= t``): the
  ground truths of a frame are visited in their listed order; each takes, among the predictions not yet
  taken, the in-bin one of highest IoU (the first of equals), else the *first listed* out-of-bin one
  (which of them only changes false negatives, which the AP does not use: it is built from precision).
* **Score thresholds** (``accumulate_scores`` and ``get_thresholds``) come from a *different* matching:
  each ground truth, in-bin or not, takes the unassigned prediction over the IoU threshold with the highest
  score (the first of equals; only scores ``> -1`` qualify, the search starting at -1), in-bin or not.
  The scores of in-bin/in-bin pairs, sorted in descending order, are walked with recall
  ``l = (i+1)/n_gt``, ``r = (i+2)/n_gt`` (``r = l`` at the last): a score is skipped while
  ``l + r < 2·level`` (except the last), else appended, ``level`` goes up by ``1/50``, and the same score is
  appended again while ``l + r + 1e-6 > 2·level``. So a score can fill several of the 51 slots.
* **AP**: precision ``tp/(tp+fp)`` at each threshold, replaced by the maximum at that and all later
  thresholds; AP is the sum of slots 1..50 (slot 0 is dropped) over 50, times 100; slots past the last
  threshold count 0, so AP is capped by the highest recall reached.
* **No valid ground truth** in a class and bin: no thresholds, AP ``0.0`` (not NaN), and ``AP_mean``
  averages that 0 in. A threshold at which every prediction above it is ignored gives ``0/0``: NaN, which
  the maximum carries into the AP, as in the reference.
* Predictions in frames without ground truth are false positives (of their class and bin). The official
  ONCE infos never hold such frames (``ONCEDataset.get_infos`` skips frames without boxes).

Deliberate differences: the BEV intersection is exact, in float64 (shapely), where the reference clips the
two quadrilaterals in float32 on the GPU (``rotate_iou_gpu_eval``); IoUs differ in about the 7th digit, which
can only change a match whose IoU is that close to its threshold, and degenerate cases (identical boxes,
whose clipping collects more points than the kernel's 8-point buffer) are exact here. A zero-volume pair
(union 0) has IoU 0 here, NaN there: neither ever matches. Inputs are checked (the reference only asserts
the list lengths): an unknown class name is an error here where the reference would count it as a Vehicle.
``classes`` is not modified (the reference inserts into the caller's list).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from automl.errors import ConfigError, DatasetError

#: the class names of ONCE's annotations (``name``)
ONCE_CLASSES = ("Car", "Bus", "Truck", "Pedestrian", "Cyclist")
#: the names merged into the ``Vehicle`` superclass
VEHICLE_CLASSES = ("Car", "Bus", "Truck")
#: the IoU a match must exceed, per superclass
IOU_THRESHOLDS: Mapping[str, float] = {"Vehicle": 0.7, "Pedestrian": 0.3, "Cyclist": 0.5}
#: the difficulty columns of the result, in the official order
DISTANCE_BINS = ("overall", "0-30m", "30-50m", "50m-inf")
#: recall points of the AP
NUM_PR_POINTS = 50

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_BOX_FIELDS = 7
_EPS = 1e-6  # get_thresholds' guard against rounding
#: most frame pairs of boxes handled in one vectorised batch (bounds memory)
_PAIRS_PER_BATCH = 2_000_000


def annos_from_arrays(names: Iterable[str], boxes: npt.ArrayLike,
                      scores: npt.ArrayLike | None = None) -> dict[str, Any]:
    """One frame's annotation dict in the official format: ``name`` (a string array), ``boxes_3d``
    (``[n, 7]`` float64) and, when ``scores`` is given, ``score`` (``[n]`` float64). Checked like
    :func:`evaluate`'s input (a :class:`~automl.errors.DatasetError` on a bad shape, value or name)."""
    anno: dict[str, Any] = {"name": list(names) if not isinstance(names, np.ndarray) else names,
                            "boxes_3d": boxes}
    if scores is not None:
        anno["score"] = scores
    return check_frame(anno, predictions=scores is not None, where="frame")


def check_frame(anno: Mapping[str, Any], *, predictions: bool, where: str,
                source: str | None = None) -> dict[str, Any]:
    """``anno`` checked and normalised (``name`` a ``str`` array, ``boxes_3d`` ``[n, 7]`` float64,
    ``score`` ``[n]`` float64 for predictions; an empty ``boxes_3d`` of any shape becomes ``[0, 7]``).
    A :class:`~automl.errors.DatasetError` names ``where`` (e.g. ``"predictions frame 3 (frame_id
    '16161')"``), the field and what was expected."""
    def bad(field: str, message: str) -> DatasetError:
        return DatasetError(f"{where}: {message}", source=source, field=field)

    if not isinstance(anno, Mapping):
        raise bad("frame", f"expected a mapping with name, boxes_3d{', score' if predictions else ''}, got "
                           f"{type(anno).__name__}")
    needed = ("name", "boxes_3d", "score") if predictions else ("name", "boxes_3d")
    missing = [key for key in needed if key not in anno]
    if missing:
        raise bad(missing[0], f"missing (a {'prediction' if predictions else 'ground-truth'} frame needs "
                              f"{', '.join(needed)})")
    names = np.asarray(anno["name"])
    if names.ndim != 1:
        raise bad("name", f"expected a 1-D list of class names, got shape {names.shape}")
    if names.size == 0:
        names = np.zeros(0, dtype=str)  # OpenPCDet's empty predictions carry np.zeros(0): any dtype
    elif names.dtype.kind != "U":
        if names.dtype.kind != "O" or not all(isinstance(n, str) for n in names):
            first = next((n for n in names.tolist() if not isinstance(n, str)), names[0])
            raise bad("name", f"expected class names (strings), got {first!r}")
        names = names.astype(str)
    unknown = ~np.isin(names, ONCE_CLASSES)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise bad("name", f"box {i}: unknown class {str(names[i])[:40]!r} ({int(unknown.sum())} unknown in the "
                          f"frame); expected one of {', '.join(ONCE_CLASSES)}")
    try:
        boxes = np.asarray(anno["boxes_3d"], dtype=np.float64)
    except (TypeError, ValueError):
        raise bad("boxes_3d", "expected an [n, 7] array of numbers (cx, cy, cz, l, w, h, θ)") from None
    if boxes.size == 0 and names.size == 0:
        boxes = boxes.reshape(0, _BOX_FIELDS)
    if boxes.ndim != 2 or boxes.shape[1] != _BOX_FIELDS:
        raise bad("boxes_3d", f"expected an [n, 7] array (cx, cy, cz, l, w, h, θ), got shape {boxes.shape}")
    if len(boxes) != len(names):
        raise bad("name", f"{len(names)} names for {len(boxes)} boxes (expected one name per box)")
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise bad("boxes_3d", f"box {i} is not finite: {boxes[i].tolist()} ({int((~finite).sum())} such boxes)")
    negative = (boxes[:, 3:6] < 0).any(axis=1)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise bad("boxes_3d", f"box {i} has a negative size (l, w, h) = {boxes[i, 3:6].tolist()} "
                              "(expected sizes >= 0)")
    out: dict[str, Any] = {"name": names, "boxes_3d": boxes}
    if predictions:
        try:
            scores = np.asarray(anno["score"], dtype=np.float64)
        except (TypeError, ValueError):
            raise bad("score", "expected a list of numbers, one per box") from None
        if names.size == 0 and scores.size == 0:
            scores = scores.reshape(0)
        if scores.shape != (len(boxes),):
            raise bad("score", f"expected {len(boxes)} scores (one per box), got shape {scores.shape}")
        if not np.isfinite(scores).all():
            i = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise bad("score", f"score {i} is not finite ({scores[i]})")
        out["score"] = scores
    if "frame_id" in anno:
        out["frame_id"] = anno["frame_id"]
    return out


def superclasses(classes: Sequence[str] = ONCE_CLASSES) -> tuple[str, ...]:
    """The evaluated classes, as the reference derives them: Car/Bus/Truck (all three, or none) become
    ``Vehicle``, which always comes first, even when none of them is named."""
    if isinstance(classes, str):
        classes = (classes,)
    names = list(classes)
    unknown = [name for name in names if name not in ONCE_CLASSES and name != "Vehicle"]
    if unknown:
        raise ConfigError(f"unknown class {unknown[0]!r}; expected names from {', '.join(ONCE_CLASSES)}",
                          field="classes")
    if len(set(names)) != len(names):
        raise ConfigError(f"a class is named twice in {names}", field="classes")
    vehicles = [name for name in names if name in VEHICLE_CLASSES]
    if vehicles and len(vehicles) != len(VEHICLE_CLASSES):
        raise ConfigError(f"Car, Bus and Truck are evaluated together as Vehicle: name all three or none, got "
                          f"{', '.join(vehicles)}", field="classes")
    return ("Vehicle", *(name for name in names if name not in VEHICLE_CLASSES and name != "Vehicle"))


def _where(side: str, index: int, anno: Any) -> str:
    frame_id = anno.get("frame_id") if isinstance(anno, Mapping) else None
    return f"{side} frame {index}" + (f" (frame_id {frame_id!r})" if frame_id is not None else "")


def _checked(annos: Sequence[Mapping[str, Any]], side: str, predictions: bool) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    first: DatasetError | None = None
    more = 0
    for index, anno in enumerate(annos):
        try:
            frames.append(check_frame(anno, predictions=predictions, where=_where(side, index, anno)))
        except DatasetError as exc:
            if first is None:
                first = exc
            else:
                more += 1
    if first is not None:
        if more:
            raise DatasetError(f"{first.message} ({more} more {side} frame(s) have problems)", field=first.field)
        raise first
    return frames


@dataclass
class _Boxes:
    """All frames' boxes of one side, concatenated."""

    boxes: FloatArray  # [N, 7]
    names: npt.NDArray[np.str_]  # [N]
    frame_start: IntArray  # [F + 1]: frame f holds rows frame_start[f]:frame_start[f+1]
    scores: FloatArray  # [N] (zeros for ground truth)

    @classmethod
    def of(cls, frames: list[dict[str, Any]]) -> _Boxes:
        counts = np.array([len(f["name"]) for f in frames], dtype=np.int64)
        start = np.zeros(len(frames) + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        boxes = (np.concatenate([f["boxes_3d"] for f in frames]) if frames
                 else np.zeros((0, _BOX_FIELDS)))
        names = np.concatenate([f["name"] for f in frames]) if frames else np.zeros(0, dtype=str)
        scores = (np.concatenate([f["score"] for f in frames]) if frames and "score" in frames[0]
                  else np.zeros(len(boxes)))
        return cls(boxes.astype(np.float64, copy=False), names.astype(str), start, scores)

    def superclass(self) -> npt.NDArray[np.str_]:
        out = np.full(len(self.names), "Vehicle", dtype="<U10")
        for name in ("Pedestrian", "Cyclist"):
            out[self.names == name] = name
        return out

    def distance(self) -> FloatArray:
        xyz = self.boxes[:, 0:3]
        return np.asarray(np.sqrt(np.sum(xyz * xyz, axis=1)), dtype=np.float64)


def _footprints(boxes: FloatArray) -> Any:
    """The BEV rectangles as shapely polygons, corners turned by the reference's (clockwise) rule."""
    import shapely

    cx, cy, length, width, theta = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    x = length[:, None] * np.array([-0.5, -0.5, 0.5, 0.5])
    y = width[:, None] * np.array([-0.5, 0.5, 0.5, -0.5])
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    corners = np.stack([cos * x + sin * y + cx[:, None], -sin * x + cos * y + cy[:, None]], axis=-1)
    return shapely.polygons(corners)


def _pair_iou(g: FloatArray, p: FloatArray, g_poly: Any, p_poly: Any) -> FloatArray:
    """The 3-D IoU of row-aligned pairs of boxes ``g[k]``, ``p[k]`` (footprints ``g_poly[k]``,
    ``p_poly[k]``), 0 where the headings differ by more than 90°: ``iou3d_kernel_with_heading``."""
    import shapely

    # the heading test, exactly as the reference writes it (the angles are not wrapped first)
    diff = np.abs(g[:, 6] - p[:, 6])
    diff = np.where(diff >= np.pi, 2 * np.pi - diff, diff)
    inter_h = np.minimum(g[:, 2] + g[:, 5] * 0.5, p[:, 2] + p[:, 5] * 0.5) - \
        np.maximum(g[:, 2] - g[:, 5] * 0.5, p[:, 2] - p[:, 5] * 0.5)
    # footprints can only meet where their circumscribed circles do: the others need no polygon clipping
    reach = 0.5 * (np.hypot(g[:, 3], g[:, 4]) + np.hypot(p[:, 3], p[:, 4]))
    near = np.hypot(g[:, 0] - p[:, 0], g[:, 1] - p[:, 1]) <= reach
    keep = np.flatnonzero(~(diff > np.pi / 2) & (inter_h > 0) & near)
    iou = np.zeros(len(g))
    if len(keep) == 0:
        return iou
    g, p = g[keep], p[keep]
    area = np.asarray(shapely.area(shapely.intersection(g_poly[keep], p_poly[keep])), dtype=np.float64)
    inter = area * inter_h[keep]
    union = g[:, 3] * g[:, 4] * g[:, 5] + p[:, 3] * p[:, 4] * p[:, 5] - inter
    iou[keep] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def iou_matrix(gt_boxes: npt.ArrayLike, pred_boxes: npt.ArrayLike) -> FloatArray:
    """The reference's ``[n, m]`` 3-D IoU of two sets of ``(cx, cy, cz, l, w, h, θ)`` boxes, with its
    heading test (0 beyond 90°) and its clockwise footprints (see the module)."""
    a = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, _BOX_FIELDS)
    b = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, _BOX_FIELDS)
    gi, pj = np.repeat(np.arange(len(a)), len(b)), np.tile(np.arange(len(b)), len(a))
    if len(gi) == 0:
        return np.zeros((len(a), len(b)))
    iou = _pair_iou(a[gi], b[pj], _footprints(a)[gi], _footprints(b)[pj])
    return iou.reshape(len(a), len(b))


def _pairs(gt: _Boxes, pred: _Boxes, gt_class: npt.NDArray[np.str_], pred_class: npt.NDArray[np.str_],
           thresholds: Mapping[str, float]) -> tuple[IntArray, IntArray, FloatArray]:
    """``(gt_index, pred_index, iou)`` of every same-frame, same-superclass pair whose 3-D IoU exceeds
    its class's threshold, sorted by ground truth then prediction."""
    n_gt = np.diff(gt.frame_start)
    n_pred = np.diff(pred.frame_start)
    per_frame = n_gt * n_pred
    out_g: list[IntArray] = []
    out_p: list[IntArray] = []
    out_iou: list[FloatArray] = []
    gt_limit = np.full(len(gt_class), np.inf)  # the IoU to exceed; inf: a class not evaluated
    for name, threshold in thresholds.items():
        gt_limit[gt_class == name] = threshold
    g_poly: Any = None
    p_poly: Any = None
    frame = 0
    while frame < len(per_frame):  # batches of whole frames, at most _PAIRS_PER_BATCH pairs (or one frame)
        total = np.cumsum(per_frame[frame:])
        stop = frame + max(1, int(np.searchsorted(total, _PAIRS_PER_BATCH, side="right")))
        frames, counts = np.arange(frame, stop), per_frame[frame:stop]
        frame = stop
        if counts.sum() == 0:
            continue
        pair_frame = np.repeat(frames, counts)
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        gi = gt.frame_start[pair_frame] + offset // n_pred[pair_frame]
        pj = pred.frame_start[pair_frame] + offset % n_pred[pair_frame]
        limit = gt_limit[gi]
        keep = (gt_class[gi] == pred_class[pj]) & (limit < np.inf)
        gi, pj, limit = gi[keep], pj[keep], limit[keep]
        if len(gi) == 0:
            continue
        if g_poly is None:
            g_poly, p_poly = _footprints(gt.boxes), _footprints(pred.boxes)
        iou = _pair_iou(gt.boxes[gi], pred.boxes[pj], g_poly[gi], p_poly[pj])
        keep = iou > limit
        out_g.append(gi[keep])
        out_p.append(pj[keep])
        out_iou.append(iou[keep])
    if not out_g:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_g), np.concatenate(out_p), np.concatenate(out_iou)


def _depths(pair_gt: IntArray, pair_pred: IntArray) -> IntArray:
    """For each pair, the round its ground truth is matched in: one more than the latest round of an
    earlier ground truth (same frame, lower index) sharing a candidate prediction. Ground truths of one
    round share no candidate, so a round runs as one vectorised step and still follows the reference's
    in-order greedy matching."""
    depth = np.ones(len(pair_gt), dtype=np.int64)
    if len(pair_gt) == 0 or len(np.unique(pair_pred)) == len(pair_pred):
        return depth  # no prediction is a candidate of two ground truths: one round
    latest: dict[int, int] = {}
    starts = np.flatnonzero(np.r_[True, pair_gt[1:] != pair_gt[:-1]]).tolist() + [len(pair_gt)]
    preds = pair_pred.tolist()
    for s, e in zip(starts[:-1], starts[1:]):
        d = 1 + max(latest.get(p, 0) for p in preds[s:e])
        for p in preds[s:e]:
            latest[p] = d
        depth[s:e] = d
    return depth


@dataclass
class _Candidates:
    """One class's candidate pairs (IoU over the threshold), grouped into rounds; predictions renumbered
    ``0..P-1`` (``pred``), ``pred_global`` maps them back."""

    gt: IntArray
    pred: IntArray
    iou: FloatArray
    score: FloatArray
    pred_global: IntArray
    rounds: list[IntArray]  # the pair indices of each round, in pair order

    @classmethod
    def of(cls, gt: IntArray, pred: IntArray, iou: FloatArray, scores: FloatArray) -> _Candidates:
        pred_global, local = np.unique(pred, return_inverse=True)
        depth = _depths(gt, pred)
        top = int(depth.max()) if len(depth) else 0
        rounds = [np.flatnonzero(depth == d) for d in range(1, top + 1)]
        return cls(gt, local.astype(np.int64), iou, scores[pred], pred_global.astype(np.int64), rounds)


def _segments(gt_of_pair: IntArray) -> tuple[IntArray, IntArray]:
    starts = np.flatnonzero(np.r_[True, gt_of_pair[1:] != gt_of_pair[:-1]])
    lengths = np.diff(np.r_[starts, len(gt_of_pair)])
    return starts, lengths


def _first_max(key: FloatArray, starts: IntArray, lengths: IntArray) -> IntArray:
    """Per segment of the last axis: the position of the first maximum of ``key``; ``n`` (the length of
    the axis) where the whole segment is ``-inf``."""
    n = key.shape[-1]
    best = np.maximum.reduceat(key, starts, axis=-1)
    hit = (key == np.repeat(best, lengths, axis=-1)) & (key > -np.inf)
    return np.asarray(np.minimum.reduceat(np.where(hit, np.arange(n), n), starts, axis=-1), dtype=np.int64)


def _first_true(mask: BoolArray, starts: IntArray) -> IntArray:
    """Per segment of the last axis: the position of the first ``True``; ``n`` where there is none."""
    n = mask.shape[-1]
    return np.asarray(np.minimum.reduceat(np.where(mask, np.arange(n), n), starts, axis=-1), dtype=np.int64)


def _accumulate_scores(c: _Candidates, gt_flag: IntArray, pred_flag: IntArray) -> FloatArray:
    """``accumulate_scores``: each ground truth (in-bin or not) takes the highest-score unassigned
    candidate (in-bin or not, score > -1); the scores of in-bin/in-bin matches. ``pred_flag`` is local."""
    assigned = np.zeros(len(c.pred_global), dtype=bool)
    found: list[FloatArray] = []
    for pairs in c.rounds:
        gts, preds, scores = c.gt[pairs], c.pred[pairs], c.score[pairs]
        starts, lengths = _segments(gts)
        chosen = _first_max(np.where(~assigned[preds] & (scores > -1), scores, -np.inf), starts, lengths)
        hit = chosen < len(pairs)
        pick = chosen[hit]
        assigned[preds[pick]] = True
        true = (gt_flag[gts[starts[hit]]] == 0) & (pred_flag[preds[pick]] == 0)
        found.append(scores[pick[true]])
    return np.concatenate(found) if found else np.zeros(0)


def _thresholds(scores: FloatArray, num_gt: int, num_pr_points: int) -> list[float]:
    """``get_thresholds``, step by step (the same float operations in the same order)."""
    ordered = np.sort(scores)[::-1].tolist()
    last = len(ordered) - 1
    level = 0.0
    out: list[float] = []
    for i, score in enumerate(ordered):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < last else l_recall
        if r_recall + l_recall < 2 * level and i < last:
            continue
        out.append(score)
        level += 1 / num_pr_points
        while r_recall + l_recall + _EPS > 2 * level:
            out.append(score)
            level += 1 / num_pr_points
    return out


def _statistics(c: _Candidates, gt_flag: IntArray, pred_flag: IntArray, thresholds: FloatArray,
                valid_scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``compute_statistics`` at every threshold at once: ``(tp, fp)`` per threshold. ``pred_flag`` is
    local; ``valid_scores`` are the scores of all in-class, in-bin predictions (those that can be false
    positives)."""
    t = len(thresholds)
    assigned = np.zeros((t, len(c.pred_global)), dtype=bool)
    tp = np.zeros(t)
    for pairs in c.rounds:
        gts, preds, iou, scores = c.gt[pairs], c.pred[pairs], c.iou[pairs], c.score[pairs]
        pf = pred_flag[preds]
        starts, lengths = _segments(gts)
        active = (scores[None, :] >= thresholds[:, None]) & ~assigned[:, preds]  # [T, pairs]
        first_in = _first_max(np.where(active & (pf == 0), iou, -np.inf), starts, lengths)  # [T, gts]
        first_out = _first_true(active & (pf == 1), starts)
        n = len(pairs)
        chosen = np.where(first_in < n, first_in, first_out)
        hit = chosen < n
        gf = gt_flag[gts[starts]][None, :]
        tp += np.sum(hit & (gf == 0) & (pf[np.where(hit, chosen, 0)] == 0), axis=1)
        rows, cols = np.nonzero(hit)
        assigned[rows, preds[chosen[rows, cols]]] = True
    ordered = np.sort(valid_scores)
    above = len(ordered) - np.searchsorted(ordered, thresholds, side="left")  # score >= threshold
    taken = np.sum(assigned & (pred_flag == 0)[None, :], axis=1)
    return tp, (above - taken).astype(np.float64)


def _average_precision(tp: FloatArray, fp: FloatArray, num_pr_points: int) -> float:
    precision = np.zeros(num_pr_points + 1)
    t = min(len(tp), num_pr_points + 1)  # at most num_pr_points + 1 thresholds arise (recall <= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision[:t] = tp[:t] / (tp[:t] + fp[:t])
    # precision[i] = max(precision[i:]) for the thresholds' slots (NaN carries, as np.max does)
    precision[:t] = np.maximum.accumulate(precision[::-1])[::-1][:t]
    ap = 0.0
    for value in precision[1:].tolist():  # slot 0 is left out, as in the reference
        ap += value
    return ap / num_pr_points * 100


def _bin_mask(distance: FloatArray, level: int) -> BoolArray:
    if level == 0:
        return np.ones(len(distance), dtype=bool)
    if level == 1:
        return np.asarray(distance < 30)
    if level == 2:
        return np.asarray((distance >= 30) & (distance < 50))
    return np.asarray(distance >= 50)


def evaluate(gt_annos: Sequence[Mapping[str, Any]], pred_annos: Sequence[Mapping[str, Any]], *,
             classes: Sequence[str] = ONCE_CLASSES) -> dict[str, float]:
    """ONCE's official AP (percent) of ``pred_annos`` against ``gt_annos`` (lists aligned frame by frame;
    see the module for the format and every rule): ``AP_<class>/<bin>`` for ``Vehicle`` and the other
    ``classes``, over :data:`DISTANCE_BINS`, then ``AP_mean/<bin>``. A
    :class:`~automl.errors.DatasetError` names the first bad frame and field."""
    evaluated = superclasses(classes)
    if len(gt_annos) != len(pred_annos):
        raise DatasetError(f"{len(gt_annos)} ground-truth frames but {len(pred_annos)} prediction frames "
                           "(expected lists aligned frame by frame)", field="pred_annos")
    gt = _Boxes.of(_checked(gt_annos, "ground-truth", predictions=False))
    pred = _Boxes.of(_checked(pred_annos, "predictions", predictions=True))
    gt_class, pred_class = gt.superclass(), pred.superclass()
    thresholds = {name: IOU_THRESHOLDS[name] for name in evaluated}
    pair_gt, pair_pred, pair_iou = _pairs(gt, pred, gt_class, pred_class, thresholds)
    gt_distance, pred_distance = gt.distance(), pred.distance()

    ap = np.zeros((len(evaluated), len(DISTANCE_BINS)))
    for k, name in enumerate(evaluated):
        mine = gt_class[pair_gt] == name
        cand = _Candidates.of(pair_gt[mine], pair_pred[mine], pair_iou[mine], pred.scores)
        gt_in, pred_in = gt_class == name, pred_class == name
        for level in range(len(DISTANCE_BINS)):
            gt_flag = np.where(gt_in, np.where(_bin_mask(gt_distance, level), 0, 1), -1)
            pred_flag = np.where(pred_in, np.where(_bin_mask(pred_distance, level), 0, 1), -1)
            local_flag = pred_flag[cand.pred_global]
            n_valid = int(np.sum(gt_flag == 0))
            scores = _accumulate_scores(cand, gt_flag, local_flag)
            chosen = np.array(_thresholds(scores, n_valid, NUM_PR_POINTS) if n_valid else [], dtype=np.float64)
            tp, fp = _statistics(cand, gt_flag, local_flag, chosen, pred.scores[pred_flag == 0])
            ap[k, level] = _average_precision(tp, fp, NUM_PR_POINTS)

    result: dict[str, float] = {}
    for k, name in enumerate(evaluated):
        for level, label in enumerate(DISTANCE_BINS):
            result[f"AP_{name}/{label}"] = float(ap[k, level])
    mean = np.mean(ap, axis=0)
    for level, label in enumerate(DISTANCE_BINS):
        result[f"AP_mean/{label}"] = float(mean[level])
    return result


def result_table(result: Mapping[str, float]) -> str:
    """``result`` as a text table: a row per class and the mean, a column per distance bin."""
    names = [key[3:].split("/")[0] for key in result if key.endswith("/overall")]
    lines = [f"{'AP@50':12}" + "".join(f"{label:>10}" for label in DISTANCE_BINS)]
    for name in names:
        cells = "".join(f"{result.get(f'AP_{name}/{label}', math.nan):10.2f}" for label in DISTANCE_BINS)
        lines.append(f"{name:12}{cells}")
    return "\n".join(lines)
