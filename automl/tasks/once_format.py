"""The ONCE dataset's files, read and written exactly as released (no conversion step, no info pickles).

The layout (as OpenPCDet's ``pcdet/datasets/once/once_dataset.py`` and ``once_toolkits.py`` read it)::

    ROOT/ImageSets/{train,val,test,raw_small,raw_medium,raw_large}.txt   sequence ids, one a line
    ROOT/data/<seq>/<seq>.json                                          the sequence's frames
    ROOT/data/<seq>/lidar_roof/<frame_id>.bin                           float32 N x 4: x, y, z, intensity
    ROOT/data/<seq>/cam0X/<frame_id>.jpg                                cam01 cam03 cam05 cam06 cam07 cam08 cam09

A split file lists *sequences* (OpenPCDet's ``sample_seq_list``), not frames. A sequence JSON is
``{"meta_info": {...}, "calib": {cam: {"cam_to_velo": 4x4, "cam_intrinsic": 3x3, "distortion": [...]}},
"frames": [{"frame_id": "<timestamp>", "pose": [...], "annos": {"names": [...], "boxes_3d": [[cx, cy,
cz, l, w, h, heading], ...], "boxes_2d": {cam: [[x1, y1, x2, y2], ...]}}}, ...]}``; ``annos`` is present
only on annotated frames (raw sequences have none). Boxes are in the LiDAR frame.

Reading checks what it reads and raises one :class:`DatasetError` naming the file and the first
offending record (and how many more share the problem): malformed JSON (with its line), a frame
record without a ``frame_id``, a ``boxes_3d`` row that is not 7 numbers, ``names`` and ``boxes_3d`` of
different lengths, a class that is not one of :data:`ONCE_CLASSES`, a split file naming a sequence
whose folder or JSON is missing, a frame of the JSON without its ``lidar_roof/<frame_id>.bin`` and a
``.bin`` whose frame id is missing from its sequence JSON, and a ``.bin`` whose size is not a multiple
of 16 bytes. The writer side (:func:`write_split`, :func:`write_sequence`, :func:`write_points`,
:func:`write_image`) is what the synthetic generator writes with, so both sides share this one
definition of the format.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from automl.errors import DatasetError
from automl.tasks.once_eval import ONCE_CLASSES
from automl.tasks.records import RecordProblems, read_json_file

#: ONCE's seven cameras, as the sequence folders and the calibration name them
CAMERAS = ("cam01", "cam03", "cam05", "cam06", "cam07", "cam08", "cam09")
#: the split files ONCE ships
SPLITS = ("train", "val", "test", "raw_small", "raw_medium", "raw_large")
#: bytes per LiDAR point: 4 float32 values (x, y, z, intensity)
POINT_BYTES = 16
LIDAR = "lidar_roof"


@dataclass(frozen=True)
class OnceAnnos:
    """One frame's annotations: class names, ``boxes_3d`` float32 ``[n, 7]`` (cx, cy, cz, l, w, h,
    heading; LiDAR frame) and, per camera that has them, ``boxes_2d`` float32 ``[n, 4]`` (x1, y1, x2, y2;
    -1 where the object is not in that camera)."""

    names: tuple[str, ...]
    boxes_3d: np.ndarray
    boxes_2d: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class OnceFrame:
    """One frame record of a sequence JSON (``index``: its position in ``frames[]``)."""

    frame_id: str
    index: int
    pose: tuple[float, ...] | None
    annos: OnceAnnos | None

    @property
    def where(self) -> str:
        return f"frames[{self.index}] (frame_id {self.frame_id!r})"


@dataclass(frozen=True)
class OnceSequence:
    """A checked sequence JSON."""

    sequence_id: str
    folder: Path
    json_path: Path
    meta_info: Mapping[str, Any]
    calib: Mapping[str, Any]
    frames: tuple[OnceFrame, ...]

    def lidar_path(self, frame_id: str) -> Path:
        return self.folder / LIDAR / f"{frame_id}.bin"

    def image_path(self, frame_id: str, camera: str) -> Path:
        return self.folder / camera / f"{frame_id}.jpg"


# ------------------------------------------------------------------------------------------------ paths

def split_path(root: Path, split: str) -> Path:
    return Path(root) / "ImageSets" / f"{split}.txt"


def sequence_folder(root: Path, sequence_id: str) -> Path:
    return Path(root) / "data" / sequence_id


def sequence_json(root: Path, sequence_id: str) -> Path:
    return sequence_folder(root, sequence_id) / f"{sequence_id}.json"


# ------------------------------------------------------------------------------------------------ reading

def read_split(root: Path, split: str) -> tuple[str, ...]:
    """The sequence ids ``ImageSets/<split>.txt`` lists (blank lines skipped), each checked to have its
    ``data/<seq>/<seq>.json``."""
    path = split_path(root, split)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(f"no such split file (ImageSets/{split}.txt lists sequence ids, one a line)",
                           source=str(path)) from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the split file ({exc})", source=str(path)) from None
    out: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        seq = line.strip()
        if not seq:
            continue
        if seq in seen:
            raise DatasetError(f"sequence {seq!r} is listed twice (also line {seen[seq]})", source=str(path),
                               line=number)
        seen[seq] = number
        folder = sequence_folder(root, seq)
        if not folder.is_dir():
            raise DatasetError(f"sequence {seq!r} has no folder {folder}", source=str(path), line=number)
        if not sequence_json(root, seq).is_file():
            raise DatasetError(f"sequence {seq!r} has no sequence JSON {sequence_json(root, seq)}",
                               source=str(path), line=number)
        out.append(seq)
    return tuple(out)


def split_has_sequences(root: Path, split: str) -> bool:
    """Whether ``ImageSets/<split>.txt`` exists and lists at least one sequence (no other check)."""
    try:
        return any(line.strip() for line in split_path(root, split).read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        return False


def read_sequence(root: Path, sequence_id: str) -> OnceSequence:
    """Read and check ``data/<seq>/<seq>.json``; cached per process by path, size and modification time."""
    path = sequence_json(root, sequence_id).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"no such sequence JSON (sequence {sequence_id!r})", source=str(path)) from None
    return _read_sequence(str(path), sequence_id, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_sequence(path_str: str, sequence_id: str, size: int, mtime_ns: int) -> OnceSequence:
    path = Path(path_str)
    doc = read_json_file(path, "meta_info, calib and frames")
    if not isinstance(doc.get("frames"), list):
        raise DatasetError("missing or non-list 'frames' (a ONCE sequence JSON has meta_info, calib and "
                           "frames)", source=str(path))
    for key in ("meta_info", "calib"):
        if key in doc and not isinstance(doc[key], dict):
            raise DatasetError(f"{key} must be an object, got {type(doc[key]).__name__}", source=str(path))
    problems = RecordProblems(path)
    frames: list[OnceFrame] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(doc["frames"]):
        frame = _check_frame(problems, index, record)
        if frame is None:
            continue
        if frame.frame_id in seen:
            problems.add("duplicate", f"{frame.where}: duplicate frame_id (also frames[{seen[frame.frame_id]}])")
            continue
        seen[frame.frame_id] = index
        frames.append(frame)
    problems.raise_first()
    return OnceSequence(sequence_id=sequence_id, folder=path.parent, json_path=path,
                        meta_info=doc.get("meta_info") or {}, calib=doc.get("calib") or {}, frames=tuple(frames))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_frame(problems: RecordProblems, index: int, record: object) -> OnceFrame | None:
    if not isinstance(record, dict):
        problems.add("record", f"frames[{index}]: expected an object with frame_id, got {type(record).__name__}")
        return None
    raw_id = record.get("frame_id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
        problems.add("record", f"frames[{index}]: frame_id must be a non-empty string (the frame's timestamp), "
                               f"got {raw_id!r}")
        return None
    frame_id = str(raw_id)
    where = f"frames[{index}] (frame_id {frame_id!r})"
    pose = record.get("pose")
    if pose is not None and not (isinstance(pose, list) and all(_is_number(v) for v in pose)):
        problems.add("pose", f"{where}: pose must be a list of numbers, got {pose!r}")
        return None
    annos = None
    if "annos" in record:
        annos = _check_annos(problems, where, record["annos"])
        if annos is None:
            return None
    return OnceFrame(frame_id=frame_id, index=index, pose=None if pose is None else tuple(float(v) for v in pose),
                     annos=annos)


def _check_annos(problems: RecordProblems, where: str, annos: object) -> OnceAnnos | None:
    if not isinstance(annos, dict):
        problems.add("annos", f"{where}: annos must be an object with names and boxes_3d, got "
                              f"{type(annos).__name__}")
        return None
    names, boxes = annos.get("names"), annos.get("boxes_3d")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.add("annos", f"{where}: annos.names must be a list of class names, got {names!r}")
        return None
    if not isinstance(boxes, list):
        problems.add("annos", f"{where}: annos.boxes_3d must be a list of [cx, cy, cz, l, w, h, heading] rows, "
                              f"got {boxes!r}")
        return None
    if len(names) != len(boxes):
        problems.add("length", f"{where}: annos has {len(names)} names but {len(boxes)} boxes_3d rows")
        return None
    for row_index, row in enumerate(boxes):
        if not isinstance(row, list) or len(row) != 7:
            width = len(row) if isinstance(row, list) else type(row).__name__
            problems.add("width", f"{where}: annos.boxes_3d[{row_index}] has {width} values, expected 7 "
                                  f"(cx, cy, cz, l, w, h, heading)")
            return None
        if not all(_is_number(v) for v in row):
            problems.add("value", f"{where}: annos.boxes_3d[{row_index}] must be 7 finite numbers, got {row!r}")
            return None
        if not (row[3] > 0 and row[4] > 0 and row[5] > 0):
            problems.add("value", f"{where}: annos.boxes_3d[{row_index}] has l, w, h {row[3:6]!r}; each must be "
                                  f"> 0")
            return None
    for name_index, name in enumerate(names):
        if name not in ONCE_CLASSES:
            problems.add("class", f"{where}: annos.names[{name_index}] is {name!r}, not a ONCE class "
                                  f"({', '.join(ONCE_CLASSES)})")
            return None
    boxes_2d: dict[str, np.ndarray] = {}
    raw_2d = annos.get("boxes_2d")
    if raw_2d is not None:
        if not isinstance(raw_2d, dict):
            problems.add("boxes_2d", f"{where}: annos.boxes_2d must be an object camera -> boxes, got "
                                     f"{type(raw_2d).__name__}")
            return None
        for camera, rows in raw_2d.items():
            if not (isinstance(rows, list) and len(rows) == len(names) and all(
                    isinstance(r, list) and len(r) == 4 and all(_is_number(v) for v in r) for r in rows)):
                problems.add("boxes_2d", f"{where}: annos.boxes_2d.{camera} must be {len(names)} rows of 4 "
                                         f"numbers [x1, y1, x2, y2] (one per object)")
                return None
            boxes_2d[str(camera)] = np.asarray(rows, dtype=np.float32).reshape(len(rows), 4)
    array = np.asarray(boxes, dtype=np.float64).astype(np.float32).reshape(len(boxes), 7)
    return OnceAnnos(names=tuple(names), boxes_3d=array, boxes_2d=boxes_2d)


def check_lidar_files(sequence: OnceSequence) -> None:
    """Every frame of the sequence JSON has its ``lidar_roof/<frame_id>.bin`` and every ``.bin`` there is a
    frame of the JSON (one directory listing)."""
    folder = sequence.folder / LIDAR
    try:
        present = {entry.name[:-4] for entry in os.scandir(folder) if entry.name.endswith(".bin")}
    except FileNotFoundError:
        present = set()
    ids = [f.frame_id for f in sequence.frames]
    missing = [f for f in sequence.frames if f.frame_id not in present]
    if missing:
        more = len(missing) - 1
        tail = "" if not more else f"; {more} more frame{'s' if more > 1 else ''} without a .bin"
        raise DatasetError(f"{missing[0].where}: no point cloud {sequence.lidar_path(missing[0].frame_id)}" + tail,
                           source=str(sequence.json_path))
    extra = sorted(present - set(ids))
    if extra:
        more = len(extra) - 1
        tail = "" if not more else f"; {more} more .bin file{'s' if more > 1 else ''} like it"
        raise DatasetError(f"frame id {extra[0]!r} of this point cloud is missing from its sequence JSON "
                           f"{sequence.json_path}" + tail, source=str(folder / f"{extra[0]}.bin"))


def read_points(path: Path, *, where: str = "") -> np.ndarray:
    """A ``.bin`` point cloud as float32 ``[N, 4]`` (x, y, z, intensity)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise DatasetError(f"no such point cloud{f' ({where})' if where else ''}", source=str(path)) from None
    if size % POINT_BYTES:
        raise DatasetError(f"{size} bytes is not a multiple of {POINT_BYTES} (a point is 4 float32: x, y, z, "
                           f"intensity){f'; {where}' if where else ''}", source=str(path))
    points: np.ndarray = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    return points


def read_image(path: Path, *, where: str = "") -> np.ndarray:
    """A camera JPEG as uint8 ``[H, W, 3]`` RGB."""
    try:
        with Image.open(path) as image:
            pixels: np.ndarray = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"no such camera image{f' ({where})' if where else ''}", source=str(path)) from None
    except OSError as exc:
        raise DatasetError(f"not a readable image ({exc}){f'; {where}' if where else ''}", source=str(path)) from None
    return pixels


# ------------------------------------------------------------------------------------------------ writing

def _short(values: np.ndarray) -> list[Any]:
    """float32 values as the shortest decimals that read back to the same float32 (compact JSON)."""
    array = np.asarray(values, dtype=np.float32)
    flat = [float(str(v)) for v in array.ravel()]
    return np.asarray(flat, dtype=object).reshape(array.shape).tolist()  # type: ignore[no-any-return]


def frame_record(frame_id: str, pose: Sequence[float] | None = None, *, names: Sequence[str] | None = None,
                 boxes_3d: np.ndarray | None = None, boxes_2d: Mapping[str, np.ndarray] | None = None
                 ) -> dict[str, Any]:
    """One ``frames[]`` entry; ``names`` + ``boxes_3d`` make an annotated frame (``annos``), else none."""
    record: dict[str, Any] = {"frame_id": str(frame_id)}
    if pose is not None:
        record["pose"] = [float(v) for v in pose]
    if names is not None:
        boxes = np.zeros((0, 7), np.float32) if boxes_3d is None else np.asarray(boxes_3d, np.float32).reshape(-1, 7)
        if len(boxes) != len(names):
            raise ValueError(f"frame {frame_id}: {len(names)} names but {len(boxes)} boxes")
        annos: dict[str, Any] = {"names": list(names), "boxes_3d": _short(boxes)}
        if boxes_2d is not None:
            annos["boxes_2d"] = {cam: _short(np.asarray(b, np.float32).reshape(-1, 4)) for cam, b in boxes_2d.items()}
        record["annos"] = annos
    return record


def write_split(root: Path, split: str, sequence_ids: Sequence[str]) -> Path:
    path = split_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in sequence_ids))
    return path


def write_sequence(root: Path, sequence_id: str, *, frames: Sequence[Mapping[str, Any]],
                   meta_info: Mapping[str, Any] | None = None, calib: Mapping[str, Any] | None = None) -> Path:
    """``data/<seq>/<seq>.json`` (one line per frame record, so a JSON error's line names its frame)."""
    path = sequence_json(root, sequence_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({"meta_info": dict(meta_info or {}), "calib": dict(calib or {})})[:-1]
    body = ",\n".join(json.dumps(dict(f)) for f in frames)
    path.write_text(f"{head}, \"frames\": [\n{body}\n]}}\n")
    return path


def write_points(root: Path, sequence_id: str, frame_id: str, points: np.ndarray) -> Path:
    array = np.ascontiguousarray(points, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"points must be [N, 4] (x, y, z, intensity), got {array.shape}")
    path = sequence_folder(root, sequence_id) / LIDAR / f"{frame_id}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    array.tofile(path)
    return path


def write_image(root: Path, sequence_id: str, camera: str, frame_id: str, pixels: np.ndarray,
                quality: int = 85) -> Path:
    path = sequence_folder(root, sequence_id) / camera / f"{frame_id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB").save(path, quality=quality)
    return path
