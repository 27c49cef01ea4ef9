"""A seeded generator of synthetic LiDAR scenes written in the ONCE layout (:mod:`automl.tasks.once_format`).

:func:`write_synthetic_once` writes ``ImageSets/{train,val,test,raw_small}.txt`` and, per sequence,
``data/<seq>/<seq>.json`` (meta_info, calib of the seven cameras, frames with pose and -- on labeled
frames -- ``annos{names, boxes_3d, boxes_2d}``) and ``data/<seq>/lidar_roof/<frame_id>.bin``, plus
``cam0X/<frame_id>.jpg`` with ``cameras=True``. The ``test`` split's frames carry annos (unlike the
released ONCE test split) so the held-out split can be scored; the ``raw_small`` frames carry none.

A scene, as a roof LiDAR 1.8 m above the road sees it (sensor at the origin, x forward, y left):

- *objects*: 3-8 of the five ONCE classes (Car 45 %, Pedestrian 18 %, Cyclist 15 %, Truck 12 %,
  Bus 10 %) with realistic sizes (Car 4.5 x 1.9 x 1.6 m, Bus 11 x 2.9 x 3.2, Truck 8 x 2.7 x 3.0,
  Pedestrian 0.7 x 0.7 x 1.75, Cyclist 1.8 x 0.7 x 1.7; each dimension jittered by up to 8 %), random
  headings, standing on the ground (box centre z = ground + h/2), pairwise apart in bird's-eye view,
  inside |x|, |y| < 51.2 m and 5-70 m from the sensor: 45 % in 0-30 m, 30 % in 30-50 m, 25 % beyond
  50 m (there, near the diagonals), so every distance bin of the ONCE metric is populated;
- *points on objects*: on the faces that face the sensor (the four sides and the roof when it is below
  the sensor), a Poisson number per face proportional to its area x the cosine of incidence / distance^2
  (a car at 10 m gets some 200 points, at 60 m about 10; at least 6 per object), just inside the surface;
- *ground*: 32 LiDAR rings (elevations -25 deg to -1 deg) at constant azimuth resolution, so density falls
  with distance; points under the objects are removed;
- *clutter*: poles, walls along the road and uniform noise, never inside an object's box;
- *intensity* (column 4) in [0, 1]: per object a base reflectance plus noise (a few bright
  reflector points), ground 0-0.15, poles 0.3-0.7, walls 0.15-0.4, noise 0-1.

The default set (160 train, 48 val, 48 test, 160 raw frames in sequences of 54 frames: 3 + 1 + 1 + 3
sequences) has about 4,500 points per frame and takes a few seconds to write. Frame ``i`` of a
sequence depends only on (seed, sequence, i), so more frames extend a dataset rather than change it;
sequence ids come from a block per split (train 000000..., val 001000..., test 002000..., raw
003000...), frame ids are 13-digit millisecond timestamps (500 ms apart) unique over the dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw

from automl.errors import ConfigError
from automl.tasks.once_eval import ONCE_CLASSES
from automl.tasks.once_format import CAMERAS, frame_record, write_image, write_points, write_sequence, write_split

#: bump when the generator changes what a seed produces (part of a generated folder's hash)
GENERATOR_VERSION = 1
#: (length, width, height) in metres
CLASS_SIZES: Mapping[str, tuple[float, float, float]] = {
    "Car": (4.5, 1.9, 1.6), "Bus": (11.0, 2.9, 3.2), "Truck": (8.0, 2.7, 3.0),
    "Pedestrian": (0.7, 0.7, 1.75), "Cyclist": (1.8, 0.7, 1.7),
}
CLASS_SHARE: Mapping[str, float] = {"Car": 0.45, "Bus": 0.10, "Truck": 0.12, "Pedestrian": 0.18, "Cyclist": 0.15}
SIZE_JITTER = 0.08
#: (min, max, share) of the objects' distances from the sensor
DISTANCE_BINS = ((5.0, 30.0, 0.45), (30.0, 50.0, 0.30), (50.0, 70.0, 0.25))
#: objects stay inside |x|, |y| < EXTENT (the default point range's half-width)
EXTENT = 51.2
SENSOR_HEIGHT = 1.8
#: points per m^2 of a surface facing the sensor at 1 m (falls with distance^2)
DENSITY = 5000.0
MIN_OBJECT_POINTS = 6
MAX_FACE_POINTS = 1500
OBJECTS = (3, 8)
RING_ELEVATIONS_DEG = (-25.0, -1.0)
RINGS = 32
POINTS_PER_RING = 80
MAX_GROUND_RANGE = 80.0
#: first sequence number of each split's block
SPLIT_BLOCKS: Mapping[str, int] = {"train": 0, "val": 1000, "test": 2000, "raw_small": 3000}
FIRST_TIMESTAMP = 1_616_000_000_000
FRAME_PERIOD_MS = 500
MAX_FRAMES_PER_SEQUENCE = 1000
#: the synthetic camera images' size (W, H) and the cameras' yaw (optical axis, degrees, LiDAR frame)
IMAGE_SIZE = (192, 102)
CAMERA_YAW_DEG: Mapping[str, float] = {"cam01": 0.0, "cam03": 0.0, "cam05": 135.0, "cam06": 60.0,
                                       "cam07": -60.0, "cam08": -135.0, "cam09": 180.0}
FOCAL = 110.0
WEATHER = ("sunny", "cloudy", "rainy")
PERIOD = ("morning", "noon", "afternoon", "night")
AREA = ("downtown", "suburbs", "highway", "tunnel", "bridge")


@dataclass(frozen=True)
class SyntheticFrame:
    """One generated frame as written: ``points`` float32 ``[N, 4]``, ``boxes`` float32 ``[n, 7]``, the
    class ``names``, per camera ``boxes_2d`` float32 ``[n, 4]`` and ``labeled`` (written with annos)."""

    sequence_id: str
    frame_id: str
    points: np.ndarray
    boxes: np.ndarray
    names: tuple[str, ...]
    boxes_2d: Mapping[str, np.ndarray]
    pose: tuple[float, ...]
    labeled: bool


@dataclass(frozen=True)
class SyntheticLayout:
    """What :func:`write_synthetic_once` wrote: split -> sequence ids, sequence id -> frame ids."""

    root: Path
    splits: Mapping[str, tuple[str, ...]]
    frames: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def check_generator_options(*, train_frames: object, val_frames: object, test_frames: object, raw_frames: object,
                            frames_per_sequence: object, seed: object, cameras: object, task: str = "once-synthetic"
                            ) -> None:
    """A ConfigError naming the field for a bad generator option."""
    for name, value, low in (("train_frames", train_frames, 1), ("val_frames", val_frames, 1),
                             ("test_frames", test_frames, 0), ("raw_frames", raw_frames, 0),
                             ("frames_per_sequence", frames_per_sequence, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{task}: {name} must be an integer >= {low}, got {value!r}", field=name)
    assert isinstance(frames_per_sequence, int)
    if frames_per_sequence > MAX_FRAMES_PER_SEQUENCE:
        raise ConfigError(f"{task}: frames_per_sequence must be <= {MAX_FRAMES_PER_SEQUENCE}, got "
                          f"{frames_per_sequence}", field="frames_per_sequence")
    for name, value in (("train_frames", train_frames), ("val_frames", val_frames), ("test_frames", test_frames),
                        ("raw_frames", raw_frames)):
        assert isinstance(value, int)
        if math.ceil(value / frames_per_sequence) > 1000:
            raise ConfigError(f"{task}: {name} {value} needs more than 1000 sequences of {frames_per_sequence} "
                              f"frames; raise frames_per_sequence", field=name)
    if not isinstance(cameras, bool):
        raise ConfigError(f"{task}: cameras must be true or false, got {cameras!r}", field="cameras")


def sequence_plan(split: str, frames: int, frames_per_sequence: int) -> list[tuple[int, int]]:
    """``(sequence number, frame count)`` of a split's sequences."""
    base = SPLIT_BLOCKS[split]
    count = math.ceil(frames / frames_per_sequence)
    return [(base + k, min(frames_per_sequence, frames - k * frames_per_sequence)) for k in range(count)]


def sequence_id(number: int) -> str:
    return f"{number:06d}"


def frame_id(number: int, index: int) -> str:
    return str(FIRST_TIMESTAMP + number * MAX_FRAMES_PER_SEQUENCE * FRAME_PERIOD_MS * 2 + index * FRAME_PERIOD_MS)


def write_synthetic_once(root: Path | str, *, seed: int = 0, train_frames: int = 160, val_frames: int = 48,
                         test_frames: int = 48, raw_frames: int = 160, frames_per_sequence: int = 54,
                         cameras: bool = False) -> SyntheticLayout:
    """Write a synthetic ONCE dataset under ``root`` (created) and say what it wrote. ``test_frames`` /
    ``raw_frames`` 0 write an empty ``test.txt`` / ``raw_small.txt``."""
    check_generator_options(train_frames=train_frames, val_frames=val_frames, test_frames=test_frames,
                            raw_frames=raw_frames, frames_per_sequence=frames_per_sequence, seed=seed, cameras=cameras)
    root = Path(root)
    calib = camera_calib()
    splits: dict[str, tuple[str, ...]] = {}
    frames_of: dict[str, tuple[str, ...]] = {}
    for split, count in (("train", train_frames), ("val", val_frames), ("test", test_frames),
                         ("raw_small", raw_frames)):
        labeled = split != "raw_small"
        ids = []
        for number, n_frames in sequence_plan(split, count, frames_per_sequence):
            seq = sequence_id(number)
            records = []
            for index in range(n_frames):
                frame = synthesize_frame(seed, number, index, labeled=labeled)
                write_points(root, seq, frame.frame_id, frame.points)
                if labeled:
                    records.append(frame_record(frame.frame_id, frame.pose, names=frame.names, boxes_3d=frame.boxes,
                                                boxes_2d=frame.boxes_2d))
                else:
                    records.append(frame_record(frame.frame_id, frame.pose))
                if cameras:
                    for camera in CAMERAS:
                        write_image(root, seq, camera, frame.frame_id,
                                    render_camera(seed, number, index, camera, frame))
            write_sequence(root, seq, frames=records, meta_info=_meta_info(seed, number), calib=calib)
            frames_of[seq] = tuple(str(r["frame_id"]) for r in records)
            ids.append(seq)
        write_split(root, split, ids)
        splits[split] = tuple(ids)
    return SyntheticLayout(root=root, splits=splits, frames=frames_of)


def _meta_info(seed: int, number: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, number, 1_000_003])
    return {"weather": WEATHER[int(rng.integers(len(WEATHER)))], "period": PERIOD[int(rng.integers(len(PERIOD)))],
            "area": AREA[int(rng.integers(len(AREA)))], "synthetic": f"automl once-synthetic v{GENERATOR_VERSION}"}


# ------------------------------------------------------------------------------------------------ scenes

def synthesize_frame(seed: int, number: int, index: int, *, labeled: bool = True) -> SyntheticFrame:
    """Frame ``index`` of sequence ``number``, drawn from ``(seed, number, index)`` alone."""
    seq_rng = np.random.default_rng([seed, number])
    ground = -SENSOR_HEIGHT + float(seq_rng.uniform(-0.1, 0.1))
    rng = np.random.default_rng([seed, number, index])
    names, boxes = _place_objects(rng, ground)
    parts = [_object_points(rng, box, i) for i, box in enumerate(boxes)]
    ground_points = _ground_points(rng, ground)
    parts.append(_outside_boxes(ground_points, boxes, margin=0.0))
    parts.append(_outside_boxes(_clutter_points(rng, ground), boxes, margin=0.2))
    points = np.concatenate(parts, axis=0)
    points = points[rng.permutation(len(points))].astype(np.float32)
    box_array = np.asarray(boxes, dtype=np.float32).reshape(-1, 7)
    pose = (0.0, 0.0, 0.0, 1.0, round(index * 2.5, 3), 0.0, 0.0)  # quaternion (x, y, z, w), translation
    return SyntheticFrame(sequence_id=sequence_id(number), frame_id=frame_id(number, index), points=points,
                          boxes=box_array, names=tuple(names), boxes_2d=project_boxes(box_array),
                          pose=pose, labeled=labeled)


def _place_objects(rng: np.random.Generator, ground: float) -> tuple[list[str], list[tuple[float, ...]]]:
    wanted = int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))
    classes = list(CLASS_SHARE)
    shares = np.array(list(CLASS_SHARE.values()))
    bin_shares = np.array([b[2] for b in DISTANCE_BINS])
    names: list[str] = []
    boxes: list[tuple[float, ...]] = []
    circles: list[tuple[float, float, float]] = []
    for _ in range(wanted):
        name = classes[int(rng.choice(len(classes), p=shares))]
        l, w, h = (s * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)) for s in CLASS_SIZES[name])
        radius = 0.5 * math.hypot(l, w)
        low, high, _ = DISTANCE_BINS[int(rng.choice(len(DISTANCE_BINS), p=bin_shares))]
        for _attempt in range(60):
            r = float(rng.uniform(low, high))
            angle = float(rng.uniform(-math.pi, math.pi))
            x, y = r * math.cos(angle), r * math.sin(angle)
            if max(abs(x), abs(y)) + radius >= EXTENT - 0.2:
                continue
            if any(math.hypot(x - cx, y - cy) < radius + cr + 0.5 for cx, cy, cr in circles):
                continue
            yaw = float(rng.uniform(-math.pi, math.pi))
            boxes.append((x, y, ground + h / 2, l, w, h, yaw))
            names.append(name)
            circles.append((x, y, radius))
            break
    return names, boxes


def _axes(yaw: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([math.cos(yaw), math.sin(yaw), 0.0]), np.array([-math.sin(yaw), math.cos(yaw), 0.0])


def _object_points(rng: np.random.Generator, box: tuple[float, ...], number: int) -> np.ndarray:
    """Points on the faces of ``box`` that face the sensor, just inside the surface, with intensity."""
    cx, cy, cz, l, w, h, yaw = box
    centre = np.array([cx, cy, cz])
    u, v = _axes(yaw)
    z = np.array([0.0, 0.0, 1.0])
    faces = []  # (face centre, outward normal, first axis * half extent, second axis * half extent)
    for sign in (1.0, -1.0):
        faces.append((centre + sign * u * l / 2, sign * u, v * w / 2, z * h / 2))
        faces.append((centre + sign * v * w / 2, sign * v, u * l / 2, z * h / 2))
    faces.append((centre + z * h / 2, z, u * l / 2, v * w / 2))
    chunks = []
    best: tuple[float, int] = (-1.0, 0)
    for k, (face, normal, a, b) in enumerate(faces):
        distance = float(np.linalg.norm(face))
        cosine = -float(np.dot(normal, face)) / distance
        if cosine <= 0.0:
            continue
        area = 4.0 * float(np.linalg.norm(a)) * float(np.linalg.norm(b))
        expected = min(DENSITY * area * cosine / distance ** 2, MAX_FACE_POINTS)
        best = max(best, (expected, k))
        chunks.append(_face_points(rng, face, normal, a, b, int(rng.poisson(expected))))
    points = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 3))
    if len(points) < MIN_OBJECT_POINTS:
        face, normal, a, b = faces[best[1]]
        points = np.concatenate([points, _face_points(rng, face, normal, a, b, MIN_OBJECT_POINTS - len(points))])
    reflectance = float(rng.uniform(0.05, 0.5))
    intensity = np.clip(reflectance + rng.normal(0.0, 0.05, len(points)), 0.0, 1.0)
    bright = rng.random(len(points)) < 0.04
    intensity[bright] = rng.uniform(0.8, 1.0, int(bright.sum()))
    return np.concatenate([points, intensity[:, None]], axis=1)


def _face_points(rng: np.random.Generator, face: np.ndarray, normal: np.ndarray, a: np.ndarray, b: np.ndarray,
                 count: int) -> np.ndarray:
    s = rng.uniform(-0.98, 0.98, (count, 1))
    t = rng.uniform(-0.98, 0.98, (count, 1))
    depth = rng.uniform(0.005, 0.04, (count, 1))
    out: np.ndarray = face + s * a + t * b - depth * normal
    return out


def _ground_points(rng: np.random.Generator, ground: float) -> np.ndarray:
    elevations = np.radians(np.linspace(*RING_ELEVATIONS_DEG, RINGS))
    height = -ground
    radii = height / np.tan(-elevations)
    radii = radii[radii < MAX_GROUND_RANGE]
    azimuth = rng.uniform(-math.pi, math.pi, (len(radii), POINTS_PER_RING))
    r = radii[:, None] * (1.0 + rng.normal(0.0, 0.01, azimuth.shape))
    x, y = (r * np.cos(azimuth)).ravel(), (r * np.sin(azimuth)).ravel()
    zs = ground + rng.normal(0.0, 0.02, x.shape)
    intensity = rng.uniform(0.0, 0.15, x.shape)
    return np.stack([x, y, zs, intensity], axis=1)


def _clutter_points(rng: np.random.Generator, ground: float) -> np.ndarray:
    parts = []
    for _ in range(int(rng.integers(4, 11))):  # poles: the half cylinder facing the sensor
        r, angle = float(rng.uniform(6.0, 60.0)), float(rng.uniform(-math.pi, math.pi))
        px, py = r * math.cos(angle), r * math.sin(angle)
        radius, height = float(rng.uniform(0.08, 0.2)), float(rng.uniform(3.0, 6.0))
        count = int(min(DENSITY * 2 * radius * height / r ** 2, 400)) + 3
        phi = angle + math.pi + rng.uniform(-math.pi / 2, math.pi / 2, count)
        pts = np.stack([px + radius * np.cos(phi), py + radius * np.sin(phi),
                        ground + rng.uniform(0.0, height, count), rng.uniform(0.3, 0.7, count)], axis=1)
        parts.append(pts)
    for _ in range(int(rng.integers(1, 4))):  # walls along the road (parallel to x)
        wy = float(rng.choice([-1.0, 1.0]) * rng.uniform(15.0, 45.0))
        x0, length = float(rng.uniform(-60.0, 40.0)), float(rng.uniform(15.0, 50.0))
        height = float(rng.uniform(2.0, 4.0))
        xs = rng.uniform(x0, x0 + length, 4000)
        distance = np.hypot(xs, wy)
        keep = rng.random(len(xs)) < np.minimum(DENSITY * height * 0.01 * (abs(wy) / distance) / distance ** 2, 1.0)
        xs = xs[keep]
        pts = np.stack([xs, np.full(len(xs), wy), ground + rng.uniform(0.0, height, len(xs)),
                        rng.uniform(0.15, 0.4, len(xs))], axis=1)
        parts.append(pts)
    count = int(rng.integers(50, 151))  # noise
    parts.append(np.stack([rng.uniform(-60, 60, count), rng.uniform(-60, 60, count),
                           rng.uniform(ground - 0.5, 2.0, count), rng.uniform(0, 1, count)], axis=1))
    return np.concatenate(parts, axis=0)


def _outside_boxes(points: np.ndarray, boxes: list[tuple[float, ...]], margin: float) -> np.ndarray:
    """``points`` without those inside any box's footprint grown by ``margin`` (bird's-eye view)."""
    keep = np.ones(len(points), dtype=bool)
    for cx, cy, _cz, l, w, _h, yaw in boxes:
        dx, dy = points[:, 0] - cx, points[:, 1] - cy
        along = dx * math.cos(yaw) + dy * math.sin(yaw)
        across = -dx * math.sin(yaw) + dy * math.cos(yaw)
        keep &= ~((np.abs(along) <= l / 2 + margin) & (np.abs(across) <= w / 2 + margin))
    out: np.ndarray = points[keep]
    return out


# ------------------------------------------------------------------------------------------------ cameras

def camera_calib() -> dict[str, dict[str, Any]]:
    """ONCE-style calibration of the seven cameras (camera x right, y down, z forward), for
    :data:`IMAGE_SIZE` images: ``cam_to_velo`` 4x4, ``cam_intrinsic`` 3x3, ``distortion`` (zeros)."""
    width, height = IMAGE_SIZE
    out = {}
    for camera in CAMERAS:
        yaw = math.radians(CAMERA_YAW_DEG[camera])
        forward = [math.cos(yaw), math.sin(yaw), 0.0]
        right = [math.sin(yaw), -math.cos(yaw), 0.0]
        down = [0.0, 0.0, -1.0]
        matrix = np.eye(4)
        matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = right, down, forward
        matrix[:3, 3] = [0.0, 0.0, -0.3]
        intrinsic = [[FOCAL, 0.0, width / 2], [0.0, FOCAL, height / 2], [0.0, 0.0, 1.0]]
        out[camera] = {"cam_to_velo": np.round(matrix, 12).tolist(), "cam_intrinsic": intrinsic,
                       "distortion": [0.0, 0.0, 0.0, 0.0, 0.0]}
    return out


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``[n, 8, 3]`` corners of ``[n, 7]`` boxes."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64) / 2
    out = np.zeros((len(boxes), 8, 3))
    for i, (cx, cy, cz, l, w, h, yaw) in enumerate(np.asarray(boxes, dtype=np.float64)):
        local = signs * np.array([l, w, h])
        c, s = math.cos(yaw), math.sin(yaw)
        out[i, :, 0] = cx + local[:, 0] * c - local[:, 1] * s
        out[i, :, 1] = cy + local[:, 0] * s + local[:, 1] * c
        out[i, :, 2] = cz + local[:, 2]
    return out


def project_boxes(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Per camera, each box's image rectangle ``[x1, y1, x2, y2]`` (clipped), ``-1``s where the box is
    not wholly in front of the camera or falls outside the image."""
    width, height = IMAGE_SIZE
    corners = box_corners(boxes)
    out = {}
    for camera, calib in camera_calib().items():
        velo_to_cam = np.linalg.inv(np.asarray(calib["cam_to_velo"]))
        intrinsic = np.asarray(calib["cam_intrinsic"])
        rects = np.full((len(boxes), 4), -1.0, dtype=np.float32)
        for i, box in enumerate(corners):
            cam = (np.concatenate([box, np.ones((8, 1))], axis=1) @ velo_to_cam.T)[:, :3]
            if (cam[:, 2] <= 0.5).any():
                continue
            uvw = cam @ intrinsic.T
            u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
            x1, x2 = max(float(u.min()), 0.0), min(float(u.max()), width - 1.0)
            y1, y2 = max(float(v.min()), 0.0), min(float(v.max()), height - 1.0)
            if x2 > x1 and y2 > y1:
                rects[i] = (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))
        out[camera] = rects
    return out


def render_camera(seed: int, number: int, index: int, camera: str, frame: SyntheticFrame) -> np.ndarray:
    """A small RGB image: sky over road, the frame's objects as shaded rectangles, pixel noise."""
    width, height = IMAGE_SIZE
    rng = np.random.default_rng([seed, number, index, CAMERAS.index(camera) + 1])
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    sky, road = np.array([0.55, 0.7, 0.9]), np.array([0.35, 0.35, 0.37])
    image = np.where(rows < 0.5, sky * (1.0 - 0.3 * rows), road * (0.8 + 0.4 * rows)) * np.ones((1, width, 1))
    canvas = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    order = np.argsort(-np.hypot(frame.boxes[:, 0], frame.boxes[:, 1])).tolist()
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in frame.boxes_2d[camera][i])
        if x1 < 0:
            continue
        shade = 60 + 30 * ONCE_CLASSES.index(frame.names[i])
        draw.rectangle([x1, y1, x2, y2], fill=(shade, shade // 2 + 40, 255 - shade))
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0.0, 4.0, (height, width, 3))
    out: np.ndarray = np.clip(pixels, 0, 255).astype(np.uint8)
    return out
