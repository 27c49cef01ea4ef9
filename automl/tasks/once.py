"""``once`` and ``once-synthetic``: 3-D LiDAR detection on the ONCE dataset's layout, read as released.

``once`` reads a ONCE root by path (:mod:`automl.tasks.once_format` has the layout: split files list
*sequences*; each sequence JSON lists its frames, annotated ones with ``annos``)::

    task:
      name: once
      options: {root: /data/once, point_range: [-75.2, -75.2, -5.0, 75.2, 75.2, 3.0], voxel_size: [0.2, 0.2, 8.0]}

Splits. ``train`` and ``val`` are the frames with annotations (``annos`` with at least one box, as
OpenPCDet's infos keep them) of the sequences ``ImageSets/<train_split>.txt`` and ``<val_split>.txt``
list, in file order, then JSON order. ONCE's released test split has no public annotations, so the
held-out test split is: the frames of ``ImageSets/<test_split>.txt`` when its sequences carry annotations
(a synthetic set, or a user's own labelled test set); otherwise ``test_fraction`` (0.2) of the
*training sequences*, drawn with ``split_seed`` (at least one; whole sequences, so no test frame is a
neighbour of a training frame), which then leave the train split. ``test_fraction: 0`` (with an
unannotated or absent test file) gives no test split. No sequence may be in two of train, val, test.

Unlabeled stream. :meth:`unlabeled_frames` yields the frames of ``ImageSets/<unlabeled_split>.txt``
(``raw_small``; ``raw_medium``/``raw_large`` for more, null for none) lazily, one ``.bin`` at a time, in an
order drawn from its ``seed``, from position ``start``. It never yields a labeled frame: frames with
``annos`` and every sequence of the train/val/test split files are left out.

Frames. Points are float32 ``[N, 4]`` (x, y, z, intensity) cropped to ``point_range`` (``min <= p < max``
on x, y and z, as a voxel grid over it holds them). Boxes are all the frame's annotated boxes, *not*
cropped: the official evaluation scores against every ground truth, so a detector that cannot see a box
outside its range pays for it there, as in OpenPCDet's evaluation (which reads the uncropped infos).
``labels`` index :data:`ONCE_CLASSES`; ``attributes`` hold ``sequence_id``, ``frame_id`` and ``names``
(the class names as written) and, with ``cameras: true``, ``images`` (camera -> uint8 ``[H, W, 3]``
tensor of ``cam0X/<frame_id>.jpg``) and ``calib`` (the sequence's calibration).

``once-synthetic`` (the embedded default) writes a seeded synthetic scene set in that exact layout
(:mod:`automl.tasks.once_synthetic`) into ``<root>/once-synthetic-<hash of the generator options>``
(under a file lock: concurrent workers generate it once) and reads it back through the same loader.

The metric is ONCE's official evaluation, :func:`evaluate` (re-exported from
:mod:`automl.tasks.once_eval`): ``evaluate(gt_annos, pred_annos)``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.cache import env_data_root, generated_folder, options_digest, options_key
from automl.tasks.detection3d import Detection3DData, Detection3DInfo, Detection3DSplit, Detection3DTask, Frame3D
from automl.tasks.once_eval import ONCE_CLASSES
from automl.tasks.once_eval import evaluate as evaluate
from automl.tasks.once_format import (
    CAMERAS,
    LIDAR,
    OnceFrame,
    OnceSequence,
    check_lidar_files,
    read_image,
    read_points,
    read_sequence,
    read_split,
    sequence_json,
    split_has_sequences,
    split_path,
)
from automl.tasks.once_synthetic import GENERATOR_VERSION, check_generator_options, write_synthetic_once

#: OpenPCDet's ONCE point-cloud range (``tools/cfgs/dataset_configs/once_dataset.yaml``) and its PointPillars pillar
ONCE_POINT_RANGE = (-75.2, -75.2, -5.0, 75.2, 75.2, 3.0)
ONCE_VOXEL_SIZE = (0.2, 0.2, 8.0)
SYNTHETIC_POINT_RANGE = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
SYNTHETIC_VOXEL_SIZE = (0.8, 0.8, 8.0)
_CLASS_INDEX = {name: i for i, name in enumerate(ONCE_CLASSES)}

__all__ = ["ONCE_CLASSES", "OnceSpec", "OnceSyntheticTask", "OnceTask", "evaluate", "load_once", "unlabeled_once"]


@dataclass(frozen=True)
class OnceSpec:
    """What the loader reads (hashable: the in-process cache key, with the files' stamps)."""

    root: str
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = "test"
    test_fraction: float = 0.2
    split_seed: int = 0
    unlabeled_split: str | None = "raw_small"
    point_range: tuple[float, ...] = ONCE_POINT_RANGE
    cameras: bool = False
    max_frames: int | None = None


@dataclass(frozen=True)
class SplitPlan:
    """The sequences of each role; ``test_source`` is ``"file"``, ``"held-out"`` or None (no test split)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] | None
    test_source: str | None
    unlabeled: tuple[str, ...]


# ------------------------------------------------------------------------------------------------ loader

def plan_splits(spec: OnceSpec, *, with_unlabeled: bool = False) -> SplitPlan:
    """Which sequences make up train, val, test and (``with_unlabeled``) the unlabeled stream; reads the
    split files, and the test split's JSONs to see whether they carry annotations."""
    root = Path(spec.root)
    train = read_split(root, spec.train_split)
    val = read_split(root, spec.val_split)
    _disjoint(root, (spec.train_split, train), (spec.val_split, val))
    test_file: tuple[str, ...] = ()
    if spec.test_split is not None and split_path(root, spec.test_split).is_file():
        test_file = read_split(root, spec.test_split)
    test: tuple[str, ...] | None = None
    source: str | None = None
    if test_file and any(_labeled(read_sequence(root, s).frames) for s in test_file):
        assert spec.test_split is not None
        _disjoint(root, (spec.train_split, train), (spec.test_split, test_file))
        _disjoint(root, (spec.val_split, val), (spec.test_split, test_file))
        test, source = test_file, "file"
    elif spec.test_fraction > 0:
        count = max(1, round(spec.test_fraction * len(train)))
        if count >= len(train):
            raise DatasetError(f"cannot hold out a test split of {count} of the {len(train)} training sequence(s) "
                               f"(the test split file has no annotations): give test_fraction: 0 for no test split, "
                               f"or more training sequences", source=str(split_path(root, spec.train_split)))
        held = set(np.random.default_rng(spec.split_seed).permutation(len(train))[:count].tolist())
        test = tuple(s for i, s in enumerate(train) if i in held)
        train = tuple(s for i, s in enumerate(train) if i not in held)
        source = "held-out"
    unlabeled: tuple[str, ...] = ()
    if with_unlabeled and spec.unlabeled_split is not None and split_path(root, spec.unlabeled_split).is_file():
        labeled = set(train) | set(val) | set(test or ()) | set(test_file)
        unlabeled = tuple(s for s in read_split(root, spec.unlabeled_split) if s not in labeled)
    return SplitPlan(train=train, val=val, test=test, test_source=source, unlabeled=unlabeled)


def _disjoint(root: Path, a: tuple[str, tuple[str, ...]], b: tuple[str, tuple[str, ...]]) -> None:
    shared = [s for s in b[1] if s in set(a[1])]
    if shared:
        raise DatasetError(f"sequence {shared[0]!r} is in both the {a[0]} and the {b[0]} split"
                           + (f" ({len(shared) - 1} more)" if len(shared) > 1 else "")
                           + "; a sequence belongs to one split", source=str(split_path(root, b[0])))


def _labeled(frames: Sequence[OnceFrame]) -> list[OnceFrame]:
    """The frames a labeled split keeps: annotated, with at least one box (OpenPCDet skips the others)."""
    return [f for f in frames if f.annos is not None and len(f.annos)]


def _stamps(spec: OnceSpec, *, with_unlabeled: bool = False) -> tuple[tuple[str, int, int], ...]:
    """(file, size, mtime) of the split files and the sequence JSONs the spec reads (an in-process cache key)."""
    root = Path(spec.root)
    files = []
    for split in (spec.train_split, spec.val_split, spec.test_split, spec.unlabeled_split if with_unlabeled else None):
        if split is None or not split_path(root, split).is_file():
            continue
        files.append(split_path(root, split))
        files.extend(sequence_json(root, s) for s in read_split(root, split))
    out = []
    for path in files:
        stat = path.stat()
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def load_once(spec: OnceSpec) -> Detection3DData:
    """The labeled splits of a ONCE root (cached per process while its files are unchanged)."""
    return _load(spec, _stamps(spec))


@lru_cache(maxsize=4)
def _load(spec: OnceSpec, stamps: tuple[tuple[str, int, int], ...]) -> Detection3DData:
    plan = plan_splits(spec)
    train = _load_split(spec, plan.train)
    val = _load_split(spec, plan.val)
    test = None if plan.test is None else _load_split(spec, plan.test)
    return Detection3DData(train=train, val=val, test=test)


def _load_split(spec: OnceSpec, sequences: Sequence[str]) -> Detection3DSplit:
    root = Path(spec.root)
    frames: list[Frame3D] = []
    for seq_id in sequences:
        sequence = read_sequence(root, seq_id)
        check_lidar_files(sequence)
        for frame in _labeled(sequence.frames):
            if spec.max_frames is not None and len(frames) >= spec.max_frames:
                return Detection3DSplit(frames=tuple(frames))
            frames.append(read_frame(spec, sequence, frame, labeled=True))
    return Detection3DSplit(frames=tuple(frames))


def crop_points(points: np.ndarray, point_range: Sequence[float]) -> np.ndarray:
    """The points with ``min <= x, y, z < max`` of ``point_range``."""
    low = np.asarray(point_range[:3], dtype=np.float32)
    high = np.asarray(point_range[3:], dtype=np.float32)
    xyz = points[:, :3]
    keep = np.all((xyz >= low) & (xyz < high), axis=1)
    out: np.ndarray = points[keep]
    return out


def read_frame(spec: OnceSpec, sequence: OnceSequence, frame: OnceFrame, *, labeled: bool) -> Frame3D:
    """One frame as the family's :class:`Frame3D` (an unlabeled one with no boxes)."""
    where = f"{frame.where} of {sequence.json_path}"
    points = crop_points(read_points(sequence.lidar_path(frame.frame_id), where=where), spec.point_range)
    if labeled and frame.annos is not None:
        names = frame.annos.names
        boxes = torch.from_numpy(frame.annos.boxes_3d.copy())
        labels = torch.tensor([_CLASS_INDEX[n] for n in names], dtype=torch.int64)
    else:
        names = ()
        boxes = torch.zeros((0, 7), dtype=torch.float32)
        labels = torch.zeros((0,), dtype=torch.int64)
    attributes: dict[str, object] = {"sequence_id": sequence.sequence_id, "frame_id": frame.frame_id, "names": names}
    if spec.cameras:
        attributes["images"] = {cam: torch.from_numpy(read_image(sequence.image_path(frame.frame_id, cam),
                                                                 where=f"{cam} of {where}").copy())
                                for cam in CAMERAS}
        attributes["calib"] = sequence.calib
    return Frame3D(frame_id=frame.frame_id, points=torch.from_numpy(points), boxes=boxes, labels=labels,
                   attributes=attributes)


def unlabeled_once(spec: OnceSpec, *, seed: int = 0, start: int = 0, limit: int | None = None) -> Iterator[Frame3D]:
    """The unlabeled stream: frames read one at a time in the order ``seed`` draws (see the module doc)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"unlabeled_frames: seed must be an integer, got {seed!r}", field="seed")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ConfigError(f"unlabeled_frames: start must be an integer >= 0, got {start!r}", field="start")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"unlabeled_frames: limit must be an integer >= 0 or None, got {limit!r}", field="limit")
    if spec.unlabeled_split is None:
        raise ConfigError("this ONCE task has no unlabeled frames (unlabeled_split is null)", field="unlabeled_split")
    path = split_path(Path(spec.root), spec.unlabeled_split)
    if not path.is_file():
        raise ConfigError(f"no unlabeled split file (ImageSets/{spec.unlabeled_split}.txt)", source=str(path),
                          field="unlabeled_split")
    return _stream(spec, seed, start, limit)


@dataclass(frozen=True)
class _UnlabeledIndex:
    """Every unlabeled frame, compactly (a raw split has up to a million): its sequence (with no frame
    records kept), its position in the sequence JSON's ``frames[]`` and its frame id."""

    sequences: tuple[OnceSequence, ...]
    sequence: np.ndarray
    position: np.ndarray
    frame_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame_ids)


def _stream(spec: OnceSpec, seed: int, start: int, limit: int | None) -> Iterator[Frame3D]:
    index = _unlabeled_index(spec, _stamps(spec, with_unlabeled=True))  # at the first next(): the generator is lazy
    order = np.random.default_rng(seed).permutation(len(index))
    stop = len(order) if limit is None else min(len(order), start + limit)
    for position in range(start, stop):
        k = int(order[position])
        sequence = index.sequences[int(index.sequence[k])]
        frame = OnceFrame(frame_id=index.frame_ids[k], index=int(index.position[k]), pose=None, annos=None)
        yield read_frame(spec, sequence, frame, labeled=False)


@lru_cache(maxsize=4)
def _unlabeled_index(spec: OnceSpec, stamps: tuple[tuple[str, int, int], ...]) -> _UnlabeledIndex:
    """The unlabeled frames (without ``annos``) of the unlabeled split's sequences that are in no labeled
    split, in split-file then JSON order; each sequence JSON is parsed once, here."""
    root = Path(spec.root)
    sequences: list[OnceSequence] = []
    seq_of: list[int] = []
    positions: list[int] = []
    frame_ids: list[str] = []
    for seq_id in plan_splits(spec, with_unlabeled=True).unlabeled:
        sequence = read_sequence(root, seq_id)
        check_lidar_files(sequence)
        for frame in sequence.frames:
            if frame.annos is None:
                seq_of.append(len(sequences))
                positions.append(frame.index)
                frame_ids.append(frame.frame_id)
        sequences.append(dataclasses.replace(sequence, frames=()))
    return _UnlabeledIndex(sequences=tuple(sequences), sequence=np.asarray(seq_of, dtype=np.int32),
                           position=np.asarray(positions, dtype=np.int64), frame_ids=tuple(frame_ids))


# ------------------------------------------------------------------------------------------------ options

def _split_name(task: str, name: str, value: object, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or "/" in value or "\\" in value or value.startswith("."):
        what = "a split name (a file ImageSets/<name>.txt)" + (" or null" if nullable else "")
        raise ConfigError(f"{task}: {name} must be {what}, got {value!r}", field=name)
    return value


def _numbers(task: str, name: str, value: object, count: int) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != count or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value):
        raise ConfigError(f"{task}: {name} must be {count} numbers, got {value!r}", field=name)
    return [float(v) for v in value]


def _info(task: str, point_range: object, voxel_size: object) -> Detection3DInfo:
    """The task's info from its options (a ConfigError naming the field for a bad range or pillar size)."""
    r = _numbers(task, "point_range", point_range, 6)
    v = _numbers(task, "voxel_size", voxel_size, 3)
    try:
        return Detection3DInfo(ONCE_CLASSES, 4, (r[0], r[1], r[2], r[3], r[4], r[5]), (v[0], v[1], v[2]))
    except ConfigError as exc:
        raise ConfigError(f"{task}: {exc.message}", field=exc.field or "point_range") from None


def _max_frames(task: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{task}: max_frames must be an integer >= 1 or null, got {value!r}", field="max_frames")
    return value


def _bool(task: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{task}: {name} must be true or false, got {value!r}", field=name)
    return value


class _OnceBase(Detection3DTask):
    """What ``once`` and ``once-synthetic`` share: the loader, the info, the unlabeled stream."""

    point_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]

    def spec(self) -> OnceSpec:
        """What the loader reads (for ``once-synthetic``, generates the files first)."""
        raise NotImplementedError

    @property
    def info(self) -> Detection3DInfo:
        return Detection3DInfo(class_names=ONCE_CLASSES, point_dim=4, point_range=self.point_range,
                               voxel_size=self.voxel_size)

    def load(self) -> Detection3DData:
        return load_once(self.spec())

    def unlabeled_frames(self, *, seed: int = 0, start: int = 0, limit: int | None = None) -> Iterator[Frame3D]:
        return unlabeled_once(self.spec(), seed=seed, start=start, limit=limit)


@tasks.register("once")
class OnceTask(_OnceBase):
    """The ONCE dataset read from its released layout: LiDAR frames with 3-D boxes, a raw unlabeled stream.

    Options: ``root`` (required: the ONCE root, holding ``ImageSets/`` and ``data/``), ``train_split``
    ("train"), ``val_split`` ("val"), ``test_split`` ("test": used when its sequences carry annotations,
    else ``test_fraction`` of the training sequences are held out; null: always hold out),
    ``test_fraction`` (0.2; 0 for no held-out test split), ``split_seed`` (0: which training sequences are
    held out), ``unlabeled_split`` ("raw_small"; null for no unlabeled stream), ``point_range``
    (OpenPCDet's [-75.2, -75.2, -5.0, 75.2, 75.2, 3.0]), ``voxel_size`` ([0.2, 0.2, 8.0]: the pillar size
    detectors default to), ``cameras`` (false: true adds the seven camera images to each frame's
    attributes), ``max_frames`` (null: at most this many frames per labeled split, the first in order)."""

    #: points of the cost-measurement input (a ONCE frame keeps some 60-70k points in the default range)
    example_points = 65536

    def __init__(self, root: str | None = None, train_split: str = "train", val_split: str = "val",
                 test_split: str | None = "test", test_fraction: float = 0.2, split_seed: int = 0,
                 unlabeled_split: str | None = "raw_small", point_range: Sequence[float] = ONCE_POINT_RANGE,
                 voxel_size: Sequence[float] = ONCE_VOXEL_SIZE, cameras: bool = False, max_frames: int | None = None,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        if root is None:
            raise ConfigError("once: option 'root' (the ONCE root folder, holding ImageSets/ and data/) is required",
                              field="root")
        if not isinstance(root, (str, Path)):
            raise ConfigError(f"once: root must be a path, got {root!r}", field="root")
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError("once: no such folder (expected a ONCE root holding ImageSets/ and data/)",
                              source=str(self.root), field="root")
        self.train_split = _split_name("once", "train_split", train_split, nullable=False)
        self.val_split = _split_name("once", "val_split", val_split, nullable=False)
        self.test_split = _split_name("once", "test_split", test_split, nullable=True)
        self.unlabeled_split = _split_name("once", "unlabeled_split", unlabeled_split, nullable=True)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0.0 <= test_fraction < 1.0:
            raise ConfigError(f"once: test_fraction must be a number in [0, 1), got {test_fraction!r}",
                              field="test_fraction")
        self.test_fraction = float(test_fraction)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise ConfigError(f"once: split_seed must be an integer, got {split_seed!r}", field="split_seed")
        self.split_seed = split_seed
        info = _info("once", point_range, voxel_size)
        self.point_range, self.voxel_size = info.point_range, info.voxel_size
        self.cameras = _bool("once", "cameras", cameras)
        self.max_frames = _max_frames("once", max_frames)

    def spec(self) -> OnceSpec:
        assert self.train_split is not None and self.val_split is not None
        return OnceSpec(root=str(self.root), train_split=self.train_split, val_split=self.val_split,
                        test_split=self.test_split, test_fraction=self.test_fraction, split_seed=self.split_seed,
                        unlabeled_split=self.unlabeled_split, point_range=self.point_range, cameras=self.cameras,
                        max_frames=self.max_frames)

    @property
    def has_unlabeled(self) -> bool:
        return self.unlabeled_split is not None and split_has_sequences(self.root, self.unlabeled_split)

    def check(self) -> None:
        """The split files and their sequence JSONs exist and read cleanly, each labeled sequence's point
        clouds match its JSON's frames, and the unlabeled split's sequences exist (their JSONs are read
        when the stream starts)."""
        if not (self.root / "ImageSets").is_dir() or not (self.root / "data").is_dir():
            raise ConfigError("once: not a ONCE root (expected ImageSets/ and data/ in it)", source=str(self.root),
                              field="root")
        plan = plan_splits(self.spec())
        for seq_id in (*plan.train, *plan.val, *(plan.test or ())):
            check_lidar_files(read_sequence(self.root, seq_id))
        for name, sequences in (("train", plan.train), ("val", plan.val), ("test", plan.test or ())):
            if not any(_labeled(read_sequence(self.root, s).frames) for s in sequences) and sequences:
                raise DatasetError(f"the {name} split's {len(sequences)} sequence(s) have no annotated frame",
                                   source=str(sequence_json(self.root, sequences[0])))

    def fingerprint(self) -> str:
        """Hash of the options, of the split files and the labeled sequences' JSONs (contents), and of the
        names and sizes of their point clouds and the sizes of the unlabeled sequences' JSONs."""
        digest = hashlib.sha256(options_key({"task": "once", **self.options(), "root": str(self.root)}).encode())
        for split in (self.train_split, self.val_split, self.test_split, self.unlabeled_split):
            if split is None or not split_path(self.root, split).is_file():
                continue
            digest.update(split.encode() + split_path(self.root, split).read_bytes())
            for seq_id in read_split(self.root, split):
                json_path = sequence_json(self.root, seq_id)
                if split == self.unlabeled_split:
                    digest.update(f"{seq_id}:{json_path.stat().st_size}".encode())
                    continue
                digest.update(hashlib.sha256(json_path.read_bytes()).digest())
                lidar = self.root / "data" / seq_id / LIDAR
                if lidar.is_dir():
                    digest.update(repr(sorted((e.name, e.stat().st_size) for e in os.scandir(lidar))).encode())
        return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ synthetic

@tasks.register("once-synthetic")
class OnceSyntheticTask(_OnceBase):
    """Seeded synthetic LiDAR scenes written in ONCE's exact layout and read back by the ``once`` loader.

    Options: the generator's (:func:`~automl.tasks.once_synthetic.write_synthetic_once`) ``seed`` (0),
    ``train_frames`` (160), ``val_frames`` (48), ``test_frames`` (48: the held-out test split; 0 for none),
    ``raw_frames`` (160: the unlabeled stream; 0 for none), ``frames_per_sequence`` (54), ``cameras``
    (false: also write, and load, small camera JPEGs); ``root`` (parent folder of the generated dataset;
    default ``$AUTOML_DATA`` or ``~/.cache/automl/datasets``); and the loader's ``point_range``
    ([-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]), ``voxel_size`` ([0.8, 0.8, 8.0]) and ``max_frames`` (null)."""

    #: points of the cost-measurement input (a synthetic frame has some 3-8k points)
    example_points = 4096

    def __init__(self, seed: int = 0, train_frames: int = 160, val_frames: int = 48, test_frames: int = 48,
                 raw_frames: int = 160, frames_per_sequence: int = 54, cameras: bool = False, root: str | None = None,
                 point_range: Sequence[float] = SYNTHETIC_POINT_RANGE,
                 voxel_size: Sequence[float] = SYNTHETIC_VOXEL_SIZE, max_frames: int | None = None,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        check_generator_options(train_frames=train_frames, val_frames=val_frames, test_frames=test_frames,
                                raw_frames=raw_frames, frames_per_sequence=frames_per_sequence, seed=seed,
                                cameras=cameras)
        self.seed = seed
        self.train_frames = train_frames
        self.val_frames = val_frames
        self.test_frames = test_frames
        self.raw_frames = raw_frames
        self.frames_per_sequence = frames_per_sequence
        self.cameras = cameras
        if root is not None and not isinstance(root, (str, Path)):
            raise ConfigError(f"once-synthetic: root must be a path, got {root!r}", field="root")
        self.root = (Path(root).expanduser() if root is not None else env_data_root()).resolve()
        info = _info("once-synthetic", point_range, voxel_size)
        self.point_range, self.voxel_size = info.point_range, info.voxel_size
        self.max_frames = _max_frames("once-synthetic", max_frames)

    def generator_options(self) -> dict[str, Any]:
        """What the generated files depend on (hashed into the folder name)."""
        return {"version": GENERATOR_VERSION, "seed": self.seed, "train_frames": self.train_frames,
                "val_frames": self.val_frames, "test_frames": self.test_frames, "raw_frames": self.raw_frames,
                "frames_per_sequence": self.frames_per_sequence, "cameras": self.cameras}

    @property
    def folder(self) -> Path:
        """The generated ONCE root (it exists once :meth:`prepare`, :meth:`load` or the stream has run)."""
        return self.root / f"once-synthetic-{options_digest(self.generator_options())}"

    def prepare(self) -> Path:
        """Generate the dataset unless a complete copy exists; returns its folder (a ONCE root)."""
        return ensure_synthetic(self.root, self.generator_options())

    def spec(self) -> OnceSpec:
        return OnceSpec(root=str(self.prepare()), test_split="test" if self.test_frames else None, test_fraction=0.0,
                        unlabeled_split="raw_small" if self.raw_frames else None, point_range=self.point_range,
                        cameras=self.cameras, max_frames=self.max_frames)

    @property
    def has_unlabeled(self) -> bool:
        return self.raw_frames > 0

    def check(self) -> None:
        self.prepare()

    def fingerprint(self) -> str:
        blob = options_key({"task": "once-synthetic", **self.generator_options(),
                            "point_range": list(self.point_range), "max_frames": self.max_frames})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_synthetic(root: Path, options: dict[str, Any]) -> Path:
    """The folder of the synthetic ONCE set generated with ``options`` under ``root``, generated when absent
    (:func:`automl.tasks.cache.generated_folder`)."""
    return generated_folder(root, "once-synthetic", options, lambda tmp: write_synthetic_once(
        tmp, **{k: v for k, v in options.items() if k != "version"}))
