"""ONCE's official 3-D detection metric (OpenPCDet's ``once_eval``): hand-computed cases, every quirk of the
reference pinned, a literal loop-by-loop port of the reference compared on random scenes, and
``automl once-eval`` end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely

from automl.cli import main
from automl.errors import ConfigError, DatasetError
from automl.tasks.once_eval import (
    DISTANCE_BINS,
    ONCE_CLASSES,
    annos_from_arrays,
    evaluate,
    iou_matrix,
    superclasses,
)

KEYS = [f"AP_{c}/{b}" for c in ("Vehicle", "Pedestrian", "Cyclist", "mean") for b in DISTANCE_BINS]
SIZE = {"Car": (4.0, 2.0, 1.5), "Bus": (10.0, 2.8, 3.2), "Truck": (8.0, 2.6, 3.0),
        "Pedestrian": (0.8, 0.6, 1.7), "Cyclist": (2.0, 0.8, 1.6)}


def box(name: str, x: float, y: float = 0.0, z: float = 0.0, theta: float = 0.0, **size: float) -> list[float]:
    l, w, h = SIZE[name]
    return [x, y, z, size.get("l", l), size.get("w", w), size.get("h", h), theta]


def gt(*objects: tuple[str, list[float]]) -> dict:
    return annos_from_arrays([n for n, _ in objects], [b for _, b in objects] or np.zeros((0, 7)))


def pred(*objects: tuple[str, list[float], float]) -> dict:
    return annos_from_arrays([n for n, _, _ in objects], [b for _, b, _ in objects] or np.zeros((0, 7)),
                             [s for _, _, s in objects])


def as_predictions(frame: dict, score: float = 1.0) -> dict:
    return annos_from_arrays(frame["name"], frame["boxes_3d"], np.full(len(frame["name"]), score))


def scene() -> list[dict]:
    """Every class in every distance bin (10 m, 40 m, 60 m), over three frames (one without objects)."""
    frames = []
    for k, name in enumerate(ONCE_CLASSES):
        frames.append(gt(*[(name, box(name, d, y=4.0 * k - 8.0, theta=0.3 * k)) for d in (10.0, 40.0, 60.0)]))
    frames.append(gt())
    return frames


# ---------------------------------------------------------------------------------------------------------
# the basics


def test_ground_truth_as_predictions_scores_100_everywhere():
    gts = scene()
    result = evaluate(gts, [as_predictions(f) for f in gts])
    assert list(result) == KEYS
    assert all(value == 100.0 for value in result.values()), result


def test_headings_flipped_by_pi_score_0():
    gts = scene()
    flipped = []
    for frame in gts:
        boxes = frame["boxes_3d"].copy()
        boxes[:, 6] += np.pi
        flipped.append(annos_from_arrays(frame["name"], boxes, np.ones(len(boxes))))
    assert all(value == 0.0 for value in evaluate(gts, flipped).values())


def test_car_bus_truck_are_one_vehicle_class():
    gts = [gt(("Bus", box("Bus", 10.0)), ("Car", box("Car", 10.0, y=10.0)))]
    # a Truck prediction on the Bus, a Bus prediction on the Car (same boxes)
    preds = [pred(("Truck", box("Bus", 10.0), 0.9), ("Bus", box("Car", 10.0, y=10.0), 0.8))]
    result = evaluate(gts, preds)
    assert result["AP_Vehicle/overall"] == result["AP_Vehicle/0-30m"] == 100.0
    # ... but not a Pedestrian prediction on a Car
    assert evaluate([gt(("Car", box("Car", 10.0)))], [pred(("Pedestrian", box("Car", 10.0), 0.9))]) == \
        evaluate([gt(("Car", box("Car", 10.0)))], [pred()])


def test_an_object_at_40m_only_affects_30_50m_and_overall():
    near, far = ("Car", box("Car", 10.0)), ("Car", box("Car", 40.0))
    both = evaluate([gt(near, far)], [pred((*near, 0.9), (*far, 0.8))])
    missed = evaluate([gt(near, far)], [pred((*near, 0.9))])
    assert both["AP_Vehicle/30-50m"] == 100.0 and missed["AP_Vehicle/30-50m"] == 0.0
    assert both["AP_Vehicle/overall"] == 100.0 and missed["AP_Vehicle/overall"] == 50.0
    for key in ("AP_Vehicle/0-30m", "AP_Vehicle/50m-inf"):
        assert both[key] == missed[key], key
    assert both["AP_Vehicle/0-30m"] == 100.0 and both["AP_Vehicle/50m-inf"] == 0.0


def shifted(name: str, iou: float, x: float = 10.0) -> tuple[list[float], list[float]]:
    """A box and the same box shifted along its length to the given IoU: (l - d) / (l + d) = iou."""
    l = SIZE[name][0]
    d = l * (1 - iou) / (1 + iou)
    return box(name, x), box(name, x + d)


@pytest.mark.parametrize(("name", "iou", "matched"), [
    ("Pedestrian", 0.35, True), ("Pedestrian", 0.25, False),
    ("Cyclist", 0.55, True), ("Cyclist", 0.45, False),
    ("Car", 0.75, True), ("Car", 0.6, False), ("Truck", 0.6, False),
])
def test_iou_thresholds(name, iou, matched):
    a, b = shifted(name, iou)
    assert iou_matrix([a], [b])[0, 0] == pytest.approx(iou)
    key = "AP_Vehicle/overall" if name in ("Car", "Truck") else f"AP_{name}/overall"
    assert evaluate([gt((name, a))], [pred((name, b, 0.5))])[key] == (100.0 if matched else 0.0)


def test_a_partial_case_by_hand():
    """4 cars, 3 found (scores 0.9, 0.8, 0.6), one false positive (0.7) between them.

    accumulate_scores gives the true positives' scores [0.9, 0.8, 0.6] with n_gt = 4; get_thresholds walks
    them with l = (i+1)/4, r = (i+2)/4 (r = l at the last) and level += 1/50 at each appended slot:
      0.9: l + r = 0.75: appended while 2·level < 0.75 (level 0, .02, ..., .36): slots 0-18, level .38
      0.8: l + r = 1.25 >= .76: appended at levels .38 ... .62: slots 19-31, level .64
      0.6 (last): l + r = 1.5: appended at .64 ... .74: slots 32-37; 38 thresholds in all.
    Precision at >= 0.9 and >= 0.8: 1; at >= 0.6: 3 of 4 (0.7 is a false positive) = 0.75. Interpolated
    (the max to the right) slots 0-31 hold 1, 32-37 0.75, 38-50 0. AP = (31 · 1 + 6 · 0.75) / 50 · 100 = 71
    (slot 0 is left out of the sum).
    """
    gts = [gt(("Car", box("Car", x))) for x in (10.0, 12.0, 14.0, 16.0)]
    preds = [pred(("Car", box("Car", 10.0), 0.9)),
             pred(("Car", box("Car", 12.0), 0.8), ("Car", box("Car", 20.0, y=5.0), 0.7)),
             pred(("Car", box("Car", 14.0), 0.6)), pred()]
    result = evaluate(gts, preds)
    assert result["AP_Vehicle/overall"] == pytest.approx(71.0, abs=1e-9)
    assert result["AP_Vehicle/0-30m"] == pytest.approx(71.0, abs=1e-9)
    assert result["AP_mean/overall"] == pytest.approx(71.0 / 3, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------
# the reference's quirks, one test each


def test_quirk_counting_takes_the_highest_iou_not_the_highest_score():
    """compute_statistics: each ground truth, in order, takes the highest-IoU prediction over the score
    threshold; accumulate_scores (the thresholds) takes the highest score.

    GT A (x=10) and B (x=10.6); P (x=10.1, score 0.8): IoU .951 with A, .778 with B; Q (x=9.6, 0.9): IoU .818
    with A, 0.6 with B. Thresholds: A takes Q, B takes P: scores [0.9, 0.8], n_gt 2 -> 0.9 fills slots 0-37,
    0.8 slots 38-50. At >= 0.9 only Q: A matched, precision 1. At >= 0.8, A takes P (higher IoU), so B has
    nothing and Q is a false positive: precision 1/2. AP = (37 · 1 + 13 · 0.5) / 50 · 100 = 87 (a score-
    greedy matching would give 100).
    """
    result = evaluate([gt(("Car", box("Car", 10.0)), ("Car", box("Car", 10.6)))],
                      [pred(("Car", box("Car", 10.1), 0.8), ("Car", box("Car", 9.6), 0.9))])
    assert result["AP_Vehicle/overall"] == pytest.approx(87.0, abs=1e-9)


def test_quirk_distance_includes_the_height():
    """sqrt(x² + y² + z²): at x = 29, z = 8 a box is 30.08 m away, in 30-50m, though 29 m away in BEV."""
    obj = ("Pedestrian", box("Pedestrian", 29.0, z=8.0))
    result = evaluate([gt(obj)], [pred((*obj, 0.5))])
    assert result["AP_Pedestrian/30-50m"] == 100.0 and result["AP_Pedestrian/0-30m"] == 0.0


def test_quirk_out_of_bin_objects_are_ignored_not_removed():
    """X (GT at 29.9 m) is matched by X' (at 30.1 m, score 0.9); Y (40 m) and Z (10 m) are found (0.5).

    30-50m: X is out of the bin, so X' is ignored, not a false positive: AP 100 (50 if it were an FP).
    0-30m: X is in, X' out: X is no false negative but still counts in the n_gt of the thresholds
    (2: X and Z), so only slots 0-25 exist: AP 50. Overall: 100.
    """
    result = evaluate([gt(("Car", box("Car", 29.9)), ("Car", box("Car", 40.0)), ("Car", box("Car", 10.0)))],
                      [pred(("Car", box("Car", 30.1), 0.9), ("Car", box("Car", 40.0), 0.5),
                            ("Car", box("Car", 10.0), 0.5))])
    assert result["AP_Vehicle/30-50m"] == 100.0
    assert result["AP_Vehicle/0-30m"] == 50.0
    assert result["AP_Vehicle/overall"] == 100.0


def test_quirk_all_ignored_above_a_threshold_gives_nan():
    """0-30m: G1 (30.2 m, out) and A (29.6 m, in); P (29.9 m, in, 0.9) overlaps both, Q (30.4 m, out, 0.95)
    only G1. The thresholds' matching: G1 takes Q (higher score), A takes P: threshold 0.9. Counting at 0.9:
    G1 comes first and prefers the in-bin P, so A is missed and Q (out of the bin) is no false positive:
    tp = fp = 0, precision 0/0 = NaN, carried into the AP and the mean, as in the reference."""
    result = evaluate([gt(("Car", box("Car", 30.2)), ("Car", box("Car", 29.6)))],
                      [pred(("Car", box("Car", 29.9), 0.9), ("Car", box("Car", 30.4), 0.95))])
    assert math.isnan(result["AP_Vehicle/0-30m"]) and math.isnan(result["AP_mean/0-30m"])
    assert result["AP_Vehicle/overall"] == 100.0


def test_quirk_footprints_turn_clockwise():
    """rbbox_to_corners turns corners by -θ: an offset, rotated prediction is intersected as if its heading
    (and the ground truth's) were negated. A Pedestrian at (0.24, 0.24) turned by 0.9 rad has a true IoU of
    0.333 (a match) but the reference's 0.259; mirrored to (0.24, -0.24) it is the other way round."""
    def true_iou(a: list[float], b: list[float]) -> float:  # counter-clockwise, same height
        def polygon(x: list[float]) -> shapely.Polygon:
            c, s = math.cos(x[6]), math.sin(x[6])
            return shapely.Polygon([(x[0] + c * u - s * v, x[1] + s * u + c * v) for u, v in
                                    ((-x[3] / 2, -x[4] / 2), (-x[3] / 2, x[4] / 2), (x[3] / 2, x[4] / 2),
                                     (x[3] / 2, -x[4] / 2))])
        inter = polygon(a).intersection(polygon(b)).area
        return inter / (a[3] * a[4] + b[3] * b[4] - inter)

    g = box("Pedestrian", 10.0)
    up, down = box("Pedestrian", 10.24, 0.24, theta=0.9), box("Pedestrian", 10.24, -0.24, theta=0.9)
    assert true_iou(g, up) > 0.33 and iou_matrix([g], [up])[0, 0] < 0.26
    assert iou_matrix([g], [up])[0, 0] == pytest.approx(true_iou(g, [*up[:6], -0.9]))
    assert iou_matrix([g], [down])[0, 0] == pytest.approx(true_iou(g, up))
    assert evaluate([gt(("Pedestrian", g))], [pred(("Pedestrian", up, 0.5))])["AP_Pedestrian/overall"] == 0.0
    assert evaluate([gt(("Pedestrian", g))], [pred(("Pedestrian", down, 0.5))])["AP_Pedestrian/overall"] == 100.0


def test_quirk_heading_test_is_unwrapped_and_keeps_exactly_90_degrees():
    square = {"l": 1.0, "w": 1.0}  # a square footprint: any turn by 90° is the same box
    g = box("Pedestrian", 10.0, **square)

    def iou(theta: float) -> float:
        return float(iou_matrix([g], [box("Pedestrian", 10.0, theta=theta, **square)])[0, 0])

    assert iou(np.pi / 2) == pytest.approx(1.0)  # d > π/2 is the test: exactly 90° is kept
    assert iou(np.pi / 2 + 1e-6) == 0.0
    assert iou(np.pi) == 0.0 and iou(-np.pi) == 0.0
    assert iou(3 * np.pi) == pytest.approx(1.0)  # |d| = 3π -> 2π - 3π = -π: passes, not wrapped
    assert iou(2.0) == 0.0 and iou(2 * np.pi + 2.0) > 0.5  # 2π - (2π + 2) = -2: passes, though 115° apart


def test_quirk_iou_must_exceed_the_threshold():
    """Same unit footprint, the prediction 0.3 high inside the 1-high ground truth: IoU exactly 0.3,
    Pedestrian's threshold, which ``>`` does not pass; 0.31 does."""
    unit = {"l": 1.0, "w": 1.0, "h": 1.0}
    g = box("Pedestrian", 10.0, **unit)
    exact, above = box("Pedestrian", 10.0, **{**unit, "h": 0.3}), box("Pedestrian", 10.0, **{**unit, "h": 0.31})
    assert iou_matrix([g], [exact])[0, 0] == 0.3
    assert evaluate([gt(("Pedestrian", g))], [pred(("Pedestrian", exact, 0.5))])["AP_Pedestrian/overall"] == 0.0
    assert evaluate([gt(("Pedestrian", g))], [pred(("Pedestrian", above, 0.5))])["AP_Pedestrian/overall"] == 100.0


def test_quirk_iou_is_3d():
    g = box("Car", 10.0)
    assert iou_matrix([g], [box("Car", 10.0, z=0.5)])[0, 0] == pytest.approx(1.0 / 2.0)  # 1.0 of 1.5 overlaps
    assert iou_matrix([g], [box("Car", 10.0, z=1.5)])[0, 0] == 0.0  # touching: no overlap


def test_quirk_a_class_without_ground_truth_scores_0_and_counts_in_the_mean():
    cars = [gt(("Car", box("Car", 10.0)))]
    result = evaluate(cars, [pred(("Car", box("Car", 10.0), 0.5), ("Cyclist", box("Cyclist", 20.0), 0.5))])
    assert result["AP_Vehicle/overall"] == 100.0
    assert result["AP_Pedestrian/overall"] == 0.0 and result["AP_Cyclist/overall"] == 0.0
    assert result["AP_mean/overall"] == pytest.approx(100.0 / 3)


def test_quirk_vehicle_is_always_evaluated():
    cars = [gt(("Car", box("Car", 10.0)), ("Pedestrian", box("Pedestrian", 20.0)))]
    preds = [as_predictions(cars[0])]
    result = evaluate(cars, preds, classes=["Pedestrian"])
    assert list(result) == [f"AP_{c}/{b}" for c in ("Vehicle", "Pedestrian", "mean") for b in DISTANCE_BINS]
    assert result["AP_Vehicle/overall"] == result["AP_Pedestrian/overall"] == result["AP_mean/overall"] == 100.0
    assert superclasses(["Cyclist", "Car", "Truck", "Bus"]) == ("Vehicle", "Cyclist")
    with pytest.raises(ConfigError, match="Car, Bus and Truck"):
        evaluate(cars, preds, classes=["Car", "Pedestrian"])


def test_quirk_predictions_in_frames_without_ground_truth_are_false_positives():
    result = evaluate([gt(("Car", box("Car", 10.0))), gt()],
                      [pred(("Car", box("Car", 10.0), 0.5)), pred(("Car", box("Car", 10.0), 0.9))])
    assert result["AP_Vehicle/overall"] == 50.0  # one threshold (0.5), precision 1/2 there


def test_quirk_scores_of_minus_1_or_less_never_match():
    """accumulate_scores starts its search at score -1 and needs a higher one."""
    g = [gt(("Car", box("Car", 10.0)))]
    assert evaluate(g, [pred(("Car", box("Car", 10.0), -1.0))])["AP_Vehicle/overall"] == 0.0
    assert evaluate(g, [pred(("Car", box("Car", 10.0), -0.5))])["AP_Vehicle/overall"] == 100.0


# ---------------------------------------------------------------------------------------------------------
# a literal port of the reference's loops, on random scenes


def reference_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pair by pair: clockwise corners (rbbox_to_corners), intersection × height overlap, heading test."""
    def polygon(x: np.ndarray) -> shapely.Polygon:
        c, s = math.cos(x[6]), math.sin(x[6])
        return shapely.Polygon([(c * u + s * v + x[0], -s * u + c * v + x[1]) for u, v in
                                ((-x[3] / 2, -x[4] / 2), (-x[3] / 2, x[4] / 2), (x[3] / 2, x[4] / 2),
                                 (x[3] / 2, -x[4] / 2))])
    out = np.zeros((len(a), len(b)))
    for i, g in enumerate(a):
        for j, p in enumerate(b):
            inter_h = max(0.0, min(g[2] + g[5] * 0.5, p[2] + p[5] * 0.5) - max(g[2] - g[5] * 0.5, p[2] - p[5] * 0.5))
            inter = polygon(g).intersection(polygon(p)).area * inter_h
            union = g[3] * g[4] * g[5] + p[3] * p[4] * p[5] - inter
            d = abs(g[6] - p[6])
            if d >= math.pi:
                d = 2 * math.pi - d
            out[i, j] = 0.0 if d > math.pi / 2 or union <= 0 else inter / union
    return out


def reference_flags(frame: dict, cls: str, level: int) -> np.ndarray:
    names = frame["name"]
    flag = np.zeros(len(names), dtype=np.int64)
    flag[(names == "Pedestrian") | (names == "Cyclist") if cls == "Vehicle" else names != cls] = -1
    dist = np.sqrt(np.sum(frame["boxes_3d"][:, :3] ** 2, axis=1))
    keep = [np.ones(len(dist), bool), dist < 30, (dist >= 30) & (dist < 50), dist >= 50][level]
    flag[~keep] = 1
    return flag


def reference_evaluate(gts: list[dict], preds: list[dict]) -> dict[str, float]:
    ious = [reference_iou(g["boxes_3d"], p["boxes_3d"]) for g, p in zip(gts, preds)]
    out = {}
    aps = np.zeros((3, 4))
    for k, (cls, thr) in enumerate((("Vehicle", 0.7), ("Pedestrian", 0.3), ("Cyclist", 0.5))):
        for level in range(4):
            flags = [(reference_flags(g, cls, level), reference_flags(p, cls, level)) for g, p in zip(gts, preds)]
            num_gt = sum(int(np.sum(gf == 0)) for gf, _ in flags)
            scores = []
            for (gf, pf), iou, p in zip(flags, ious, preds):
                assigned = [False] * len(pf)
                for i in range(len(gf)):
                    if gf[i] == -1:
                        continue
                    det, best = -1, -1.0
                    for j in range(len(pf)):
                        if pf[j] == -1 or assigned[j]:
                            continue
                        if iou[i, j] > thr and p["score"][j] > best:
                            det, best = j, p["score"][j]
                    if best == -1:
                        continue
                    assigned[det] = True
                    if gf[i] == 0 and pf[det] == 0:
                        scores.append(best)
            thresholds, level_r = [], 0.0
            scores = sorted(scores, reverse=True)
            for i, s in enumerate(scores):
                lr = (i + 1) / num_gt
                rr = (i + 2) / num_gt if i < len(scores) - 1 else lr
                if rr + lr < 2 * level_r and i < len(scores) - 1:
                    continue
                thresholds.append(s)
                level_r += 1 / 50
                while rr + lr + 1e-6 > 2 * level_r:
                    thresholds.append(s)
                    level_r += 1 / 50
            precision = np.zeros(51)
            for t, th in enumerate(thresholds):
                tp = fp = 0
                for (gf, pf), iou, p in zip(flags, ious, preds):
                    assigned = [False] * len(pf)
                    for i in range(len(gf)):
                        if gf[i] == -1:
                            continue
                        det, detected, best, to_ignore = -1, False, 0.0, False
                        for j in range(len(pf)):
                            if pf[j] == -1 or assigned[j] or p["score"][j] < th:
                                continue
                            if iou[i, j] > thr and (iou[i, j] > best or to_ignore) and pf[j] == 0:
                                best, det, detected, to_ignore = iou[i, j], j, True, False
                            elif iou[i, j] > thr and not detected and pf[j] == 1:
                                det, detected, to_ignore = j, True, True
                        if detected and (gf[i] == 1 or pf[det] == 1):
                            assigned[det] = True
                        elif detected:
                            tp += 1
                            assigned[det] = True
                    fp += sum(1 for j in range(len(pf)) if not assigned[j] and pf[j] == 0 and p["score"][j] >= th)
                with np.errstate(invalid="ignore"):
                    precision[t] = np.float64(tp) / np.float64(tp + fp)
            for t in range(len(thresholds)):
                precision[t] = np.max(precision[t:])
            aps[k, level] = sum(precision[1:]) / 50 * 100
            out[f"AP_{cls}/{DISTANCE_BINS[level]}"] = aps[k, level]
    for level, label in enumerate(DISTANCE_BINS):
        out[f"AP_mean/{label}"] = float(np.mean(aps[:, level]))
    return out


def random_scene(rng: np.random.Generator, frames: int) -> tuple[list[dict], list[dict]]:
    """Crowded scenes around the bin edges: jittered copies (some relabelled within Vehicle, some turned
    round), duplicates, random false positives, scores with ties."""
    gts, preds = [], []
    for _ in range(frames):
        n = int(rng.integers(0, 7))
        names = rng.choice(ONCE_CLASSES, n)
        centre = rng.choice([10.0, 29.5, 49.7, 60.0], n) + rng.normal(0, 0.6, n)
        angle = rng.uniform(-0.3, 0.3, n)
        sizes = np.array([SIZE[str(c)] for c in names]).reshape(n, 3)
        boxes = np.c_[centre * np.cos(angle), centre * np.sin(angle), rng.normal(0, 0.5, n), sizes,
                      rng.uniform(-np.pi, np.pi, n)]
        if n and rng.random() < 0.5:  # a crowd: one class in a row, overlapping, so predictions compete
            names[:] = names[0]
            boxes[:, 3:6] = SIZE[str(names[0])]
            step = rng.uniform(0.1, 0.35) * boxes[0, 3] * np.arange(n)
            heading = boxes[0, 6] + rng.normal(0, 0.05, n)
            boxes[:, 0] = boxes[0, 0] + step * np.cos(boxes[0, 6])
            boxes[:, 1] = boxes[0, 1] + step * np.sin(boxes[0, 6])
            boxes[:, 2], boxes[:, 6] = boxes[0, 2], heading
        gts.append(annos_from_arrays(names, boxes))
        copies = rng.integers(0, n, int(rng.integers(0, 2 * n + 1))) if n else np.zeros(0, int)
        pb = boxes[copies] + rng.normal(0, [0.25, 0.25, 0.1, 0.1, 0.05, 0.05, 0.2], (len(copies), 7))
        pb[:, 6] += np.where(rng.random(len(copies)) < 0.1, np.pi, 0.0)
        pn = names[copies].copy()
        vehicle = np.isin(pn, ("Car", "Bus", "Truck"))
        pn[vehicle] = rng.choice(("Car", "Bus", "Truck"), int(vehicle.sum()))
        extra = int(rng.integers(0, 3))
        xb = np.c_[rng.uniform(-60, 60, (extra, 2)), np.zeros(extra), np.tile(SIZE["Car"], (extra, 1)),
                   np.zeros(extra)]
        scores = np.round(rng.uniform(0, 1, len(copies) + extra), 1)
        preds.append(annos_from_arrays([*pn, *["Car"] * extra], np.r_[pb, xb], scores))
    return gts, preds


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_literal_port_of_the_reference(seed):
    gts, preds = random_scene(np.random.default_rng(seed), 60)
    ours, theirs = evaluate(gts, preds), reference_evaluate(gts, preds)
    assert list(ours) == list(theirs)
    np.testing.assert_allclose([ours[k] for k in ours], [theirs[k] for k in ours], rtol=0, atol=1e-9,
                               equal_nan=True)
    assert 0 < ours["AP_mean/overall"] < 100  # the scenes are neither trivial nor hopeless


def test_iou_matrix_matches_pair_by_pair():
    gts, preds = random_scene(np.random.default_rng(7), 6)
    for g, p in zip(gts, preds):
        np.testing.assert_allclose(iou_matrix(g["boxes_3d"], p["boxes_3d"]),
                                   reference_iou(g["boxes_3d"], p["boxes_3d"]), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize(("gts", "preds", "message"), [
    ([{"name": ["Car"], "boxes_3d": [[0] * 7]}], [], "1 ground-truth frames but 0 prediction frames"),
    ([{"name": ["Car"], "boxes_3d": [[0] * 6]}], [{"name": [], "boxes_3d": [], "score": []}],
     r"ground-truth frame 0: expected an \[n, 7\] array .* got shape \(1, 6\)"),
    ([{"name": [], "boxes_3d": []}], [{"frame_id": "1616", "name": ["Car"], "boxes_3d": [[1] * 7], "score": []}],
     r"score: predictions frame 0 \(frame_id '1616'\): expected 1 scores"),
    ([{"name": ["Car", "Car"], "boxes_3d": [[1] * 7]}], [{"name": [], "boxes_3d": [], "score": []}],
     "2 names for 1 boxes"),
    ([{"name": ["Car"], "boxes_3d": [[1, 1, math.nan, 1, 1, 1, 0]]}], [{"name": [], "boxes_3d": [], "score": []}],
     "box 0 is not finite"),
    ([{"name": ["Van"], "boxes_3d": [[1] * 7]}], [{"name": [], "boxes_3d": [], "score": []}],
     "unknown class 'Van'.*expected one of Car, Bus, Truck, Pedestrian, Cyclist"),
    ([{"name": [], "boxes_3d": []}], [{"name": [], "boxes_3d": []}], "score: predictions frame 0: missing"),
    ([{"name": ["Car"], "boxes_3d": [[1, 1, 1, -4, 1, 1, 0]]}], [{"name": [], "boxes_3d": [], "score": []}],
     "negative size"),
    ([{"name": [], "boxes_3d": []}], [{"name": ["Car"], "boxes_3d": [[1] * 7], "score": [math.inf]}],
     "score 0 is not finite"),
])
def test_bad_input_names_the_frame_and_field(gts, preds, message):
    with pytest.raises(DatasetError, match=message):
        evaluate(gts, preds)


def test_bad_frames_are_counted():
    bad = {"name": ["Van"], "boxes_3d": [[1] * 7]}
    with pytest.raises(DatasetError, match=r"ground-truth frame 1: .*\(2 more ground-truth frame\(s\) have"):
        evaluate([gt(), bad, bad, bad], [pred()] * 4)


def test_openpcdet_style_frames_are_accepted():
    """OpenPCDet's empty predictions carry name = np.zeros(0) (floats) and boxes_3d = np.zeros((0, 7))."""
    empty = {"name": np.zeros(0), "score": np.zeros(0), "boxes_3d": np.zeros((0, 7)), "frame_id": "1"}
    frame = {"name": np.array(["Car"]), "boxes_3d": np.array([box("Car", 10.0)]), "frame_id": "1"}
    assert evaluate([frame], [empty])["AP_Vehicle/overall"] == 0.0
    one = annos_from_arrays(("Car",), [box("Car", 10.0)], [0.5])
    assert one["name"].dtype.kind == "U" and one["boxes_3d"].shape == (1, 7) and one["score"].tolist() == [0.5]


# ---------------------------------------------------------------------------------------------------------
# automl once-eval


def write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def frame_json(frame: dict, frame_id: str | None = None, scores: bool = False) -> dict:
    out = {"name": frame["name"].tolist(), "boxes_3d": frame["boxes_3d"].tolist()}
    if scores:
        out["score"] = [1.0] * len(frame["name"])
    if frame_id is not None:
        out["frame_id"] = frame_id
    return out


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    gts = scene()
    gt_file = write(tmp_path / "gt.json", [frame_json(f, str(i)) for i, f in enumerate(gts)])
    # predictions keyed by frame id, one frame left out (its objects are missed: the empty frame here)
    pred_file = write(tmp_path / "pred.json", {str(i): frame_json(f, scores=True) for i, f in enumerate(gts[:-1])})
    out_file = tmp_path / "out" / "ap.json"
    assert main(["once-eval", "--gt", gt_file, "--pred", pred_file, "--json", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "6 frames, 5 with predictions" in out
    assert "overall" in out and "50m-inf" in out
    for row in ("Vehicle", "Pedestrian", "Cyclist", "mean"):
        line = next(line for line in out.splitlines() if line.startswith(row))
        assert line.split()[1:] == ["100.00"] * 4, line
    assert json.loads(out_file.read_text()) == {key: 100.0 for key in KEYS}


def test_cli_matches_lists_by_position_without_frame_ids(tmp_path, capsys):
    gts = [gt(("Car", box("Car", 10.0))), gt(("Car", box("Car", 40.0)))]
    gt_file = write(tmp_path / "gt.json", [frame_json(f) for f in gts])
    pred_file = write(tmp_path / "pred.json", [frame_json(gts[0], scores=True), frame_json(gt(), scores=True)])
    assert main(["once-eval", "--gt", gt_file, "--pred", pred_file]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Vehicle"))
    assert line.split()[1:] == ["50.00", "100.00", "0.00", "0.00"]


@pytest.mark.parametrize(("gt_data", "pred_text", "message"), [
    ([{"frame_id": "a", "name": [], "boxes_3d": []}], '[\n  {"frame_id": "a",\n  "name": [}\n]',
     r"pred\.json:3: not valid JSON"),
    ([{"frame_id": "a", "name": [], "boxes_3d": []}], '{"b": {"name": [], "boxes_3d": [], "score": []}}',
     r"pred\.json: prediction frame_id 'b' is not in the ground truth"),
    ([{"name": [], "boxes_3d": []}], "[]", "1 ground-truth frames but 0 prediction frames"),
    ({"a": {"name": ["Van"], "boxes_3d": [[1] * 7]}}, "{}", r"gt\.json: name: ground-truth frame 0 \(frame_id "
     r"'a'\): box 0: unknown class 'Van'"),
    ([{"frame_id": "a", "name": [], "boxes_3d": []}], '{"a": {"name": ["Car"], "boxes_3d": [[1, 2]], '
     '"score": [1]}}', r"pred\.json: boxes_3d: predictions frame 0 \(frame_id 'a'\): expected an \[n, 7\]"),
    ([{"frame_id": "a", "name": [], "boxes_3d": []}, {"frame_id": "a", "name": [], "boxes_3d": []}], "{}",
     "frame_id 'a' appears twice"),
    ("x", "{}", "expected a list of frames or an object"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, gt_data, pred_text, message):
    gt_file = write(tmp_path / "gt.json", gt_data)
    (tmp_path / "pred.json").write_text(pred_text)
    assert main(["once-eval", "--gt", gt_file, "--pred", str(tmp_path / "pred.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert __import__("re").search(message, err), err


def test_cli_missing_file(tmp_path, capsys):
    assert main(["once-eval", "--gt", str(tmp_path / "none.json"), "--pred", str(tmp_path / "none.json")]) == 2
    assert "none.json: cannot read the ground-truth file: no such file" in capsys.readouterr().err
