"""The detection task contract: images with boxes, read from COCO-format files and scored by COCO mAP.

A detection task yields a train and a validation :class:`DetectionSplit`: image tensors of one size per
split, boxes as ``xyxy`` pixels in that (possibly resized) frame, labels ``0..C-1``, and the split's
ground truth as a ``pycocotools`` :class:`~pycocotools.coco.COCO` object rebuilt in the same frame, so
:func:`evaluate_detections` scores predictions with the reference COCOeval code.

:func:`load_coco` reads any COCO-format JSON, SODA10M's schema included: extra image fields (``city``,
``location``, ``period``, ``weather``, ...) are *attributes*, and ``where={"period": "night"}`` keeps
only the images whose attributes match -- how domain-shift splits (train on daytime, test on night) are
made. Bad input raises one :class:`DatasetError` naming the file, the first offending record and how
many more records have the same problem.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from abc import abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from automl.errors import ConfigError
from automl.tasks.base import Task, TaskInfo

#: how far (pixels) a box may reach outside its image before it is an error; boxes are then clipped
BOX_TOLERANCE = 1.0
#: image record keys that are not attributes (everything else, e.g. SODA10M's city/period, is one)
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")
CATEGORY_KEYS = ("id", "name")
#: the metrics :func:`evaluate_detections` returns, in order
METRICS = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
#: COCO's object-size ranges (area in pixels^2 of the evaluated frame)
_AREA_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


class DatasetError(ConfigError):
    """A dataset file (COCO JSON or its images) that cannot be used; the message names the file, the
    first offending record and how many more records share the problem."""


@dataclass(frozen=True)
class DetectionInfo(TaskInfo):
    """What a detector builder needs: ``DetectionInfo(class_names, image_size)`` with ``image_size``
    ``(H, W)``; ``input_shape == (3, H, W)`` and ``num_classes == len(class_names)`` are derived."""

    input_shape: tuple[int, ...] = field(init=False)
    num_classes: int = field(init=False)
    class_names: tuple[str, ...]
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        size = tuple(int(s) for s in self.image_size)
        if not names:
            raise ConfigError("a detection task needs at least one class")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"image_size must be (H, W) with positive sides, got {self.image_size!r}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "input_shape", (3, size[0], size[1]))
        object.__setattr__(self, "num_classes", len(names))


def parse_image_size(value: object, *, minimum: int, task: str) -> tuple[int, int]:
    """A task's ``image_size`` option, ``N`` or ``[H, W]`` of whole numbers >= ``minimum``, as ``(H, W)``;
    anything else is a :class:`ConfigError` naming the task and the field."""
    sides = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(sides, (list, tuple)) and len(sides) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= minimum for s in sides)):
        raise ConfigError(f"{task}: image_size must be an integer >= {minimum} or [H, W] of such, got {value!r}",
                          field="image_size")
    return int(sides[0]), int(sides[1])


@dataclass(frozen=True)
class DetectionSplit:
    """One split: per-image tensors plus its COCO ground truth (treat as read-only: tasks cache it).

    ``images[i]``: float32 ``[3, H, W]`` in 0..1 (one size for the whole split); ``boxes[i]``: float32
    ``[n, 4]`` ``xyxy`` pixels of the training objects (crowd regions left out); ``labels[i]``: int64
    ``[n]`` in ``0..C-1``; ``image_ids[i]``: the COCO image id; ``coco``: the ground truth of exactly these
    images in the same pixel frame (crowd regions included, as COCO evaluates them);
    ``category_ids[label]``: the COCO category id of a label; ``attributes[i]``: the image record's
    extra fields (e.g. ``{"period": "night", "weather": "rainy"}``), empty when not known.
    """

    images: list[torch.Tensor]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    image_ids: list[int]
    coco: Any  # pycocotools.coco.COCO (typed loosely: pycocotools ships no type information)
    category_ids: tuple[int, ...]
    attributes: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the split's images."""
        if not self.images:
            raise ValueError("an empty split has no image size")
        return int(self.images[0].shape[1]), int(self.images[0].shape[2])

    def batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
        """``(images[B, 3, H, W], boxes, labels)`` batches over the split, shuffled when ``rng`` is given
        (in order otherwise); the last batch holds the remainder."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self.images)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for start in range(0, n, batch_size):
            idx = [int(i) for i in order[start:start + batch_size]]
            yield (torch.stack([self.images[i] for i in idx]), [self.boxes[i] for i in idx],
                   [self.labels[i] for i in idx])

    def subset(self, indices: Sequence[int]) -> DetectionSplit:
        """The images at ``indices`` (in that order) with their ground truth rebuilt to hold only them,
        e.g. a fixed subsample of a large validation split for quick scoring."""
        idx = [int(i) for i in indices]
        keep = {self.image_ids[i] for i in idx}
        if len(keep) != len(idx):
            raise ValueError("subset indices must be distinct")
        dataset = self.coco.dataset
        gt = _make_coco({
            "images": [self.coco.imgs[self.image_ids[i]] for i in idx],
            "annotations": [a for a in dataset["annotations"] if a["image_id"] in keep],
            "categories": list(dataset["categories"]),
        })
        return DetectionSplit(
            images=[self.images[i] for i in idx], boxes=[self.boxes[i] for i in idx],
            labels=[self.labels[i] for i in idx], image_ids=[self.image_ids[i] for i in idx], coco=gt,
            category_ids=self.category_ids,
            attributes=[self.attributes[i] for i in idx] if self.attributes else [],
        )


@dataclass(frozen=True)
class DetectionData:
    """The train and validation splits of a detection task."""

    train: DetectionSplit
    val: DetectionSplit


class DetectionTask(Task):
    """Base class of detection tasks (register with ``@tasks.register(name)``)."""

    @property
    @abstractmethod
    def info(self) -> DetectionInfo:
        """Cheap (no image loading): spaces read it at load time."""

    @abstractmethod
    def load(self) -> DetectionData:
        """The splits (tasks cache them per process: every trial loads them)."""

    def check(self) -> None:
        """Read (and cache) the splits: a broken annotation file or a missing image is reported once,
        before the search starts."""
        self.load()

    def fingerprint(self) -> str:
        """A short hash identifying the data this task yields, for caches keyed by data (e.g. a trained
        teacher). This default hashes the class and the instance's attributes; tasks that read files
        override it to hash their contents too."""
        blob = json.dumps({"task": f"{type(self).__module__}.{type(self).__qualname__}", "options": vars(self)},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Reading and checking a COCO file


@dataclass(frozen=True)
class CocoDocument:
    """A checked COCO file: its records, with image ids, category ids and boxes known to be valid."""

    path: Path
    images: tuple[dict[str, Any], ...]
    annotations: tuple[dict[str, Any], ...]
    categories: tuple[dict[str, Any], ...]

    @property
    def category_names(self) -> dict[int, str]:
        """COCO category id -> name, sorted by id."""
        return {c["id"]: str(c["name"]) for c in sorted(self.categories, key=lambda c: c["id"])}


class _Problems:
    """Problems found in one pass, by kind: the first message of each kind and how many there are."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.first: dict[str, str] = {}
        self.count: Counter[str] = Counter()

    def add(self, kind: str, message: str) -> None:
        self.first.setdefault(kind, message)
        self.count[kind] += 1

    def raise_first(self, phrases: Mapping[str, tuple[str, str]]) -> None:
        """Raise the first kind (in ``phrases`` order) that has problems: its first message, then
        "N more <plural>" (``phrases[kind] = (singular, plural)``)."""
        for kind, (singular, plural) in phrases.items():
            if kind in self.first:
                more = self.count[kind] - 1
                tail = "" if more == 0 else f"; {more} more {singular if more == 1 else plural}"
                raise DatasetError(self.first[kind] + tail, source=str(self.source))


def _label(section: str, index: int, record: object) -> str:
    """``annotations[17] (id 4711)``: where a record is, by position and (when it has one) id."""
    rid = record.get("id") if isinstance(record, dict) else None
    return f"{section}[{index}]" + (f" (id {rid!r})" if rid is not None else "")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _fmt_num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def read_coco(path: Path | str) -> CocoDocument:
    """Read and check a COCO-format JSON file; cached per process by path, size and modification time."""
    path = Path(path).expanduser().resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DatasetError("no such annotation file (expected a COCO-format JSON)", source=str(path)) from None
    if not path.is_file():
        raise DatasetError("not a file (expected a COCO-format JSON)", source=str(path))
    return _read_coco_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_coco_cached(path_str: str, size: int, mtime_ns: int) -> CocoDocument:
    path = Path(path_str)
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON: {exc.msg} (column {exc.colno})", source=str(path),
                           line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})",
                           source=str(path)) from None
    if not isinstance(doc, dict):
        raise DatasetError(f"expected a JSON object with images, annotations and categories, got a "
                           f"{type(doc).__name__ if doc is not None else 'null'}", source=str(path))
    missing = [k for k in ("images", "annotations", "categories") if k not in doc]
    if missing:
        raise DatasetError(f"missing top-level key{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(repr(k) for k in missing)} (a COCO file has images, annotations "
                           f"and categories)", source=str(path))
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc[key], list):
            raise DatasetError(f"{key} must be a list of objects, got {type(doc[key]).__name__}",
                               source=str(path))
    categories = _check_categories(path, doc["categories"])
    images = _check_images(path, doc["images"])
    annotations = _check_annotations(path, doc["annotations"], images, categories)
    return CocoDocument(path=path, images=tuple(images), annotations=tuple(annotations),
                        categories=tuple(categories))


def _check_records(problems: _Problems, section: str, noun: str, records: list, keys: Sequence[str]
                   ) -> list[tuple[int, dict]]:
    """Report records that are not objects or lack keys; returns the (index, record) pairs that are whole."""
    whole = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            problems.add("missing", f"{section}[{i}]: expected an object, got {type(rec).__name__}")
            continue
        lacking = [k for k in keys if k not in rec]
        if lacking:
            problems.add("missing", f"{_label(section, i, rec)}: missing "
                                    f"{', '.join(repr(k) for k in lacking)} ({noun} needs "
                                    f"{', '.join(keys)})")
            continue
        whole.append((i, rec))
    return whole


def _check_categories(path: Path, records: list) -> list[dict]:
    problems = _Problems(path)
    seen: dict[int, int] = {}
    for i, rec in _check_records(problems, "categories", "a category", records, CATEGORY_KEYS):
        if not _is_int(rec["id"]):
            problems.add("invalid", f"{_label('categories', i, rec)}: id must be an integer, got {rec['id']!r}")
        elif not isinstance(rec["name"], str):
            problems.add("invalid", f"{_label('categories', i, rec)}: name must be a string, got {rec['name']!r}")
        elif rec["id"] in seen:
            problems.add("duplicate", f"{_label('categories', i, rec)}: duplicate category id {rec['id']} "
                                      f"(also categories[{seen[rec['id']]}])")
        else:
            seen[rec["id"]] = i
    problems.raise_first({
        "missing": ("category lacks required keys", "categories lack required keys"),
        "invalid": ("category has an invalid field", "categories have invalid fields"),
        "duplicate": ("duplicate category id", "duplicate category ids"),
    })
    if not records:
        raise DatasetError("categories is empty (a detection dataset needs at least one category)", source=str(path))
    return list(records)


def _check_images(path: Path, records: list) -> list[dict]:
    problems = _Problems(path)
    seen: dict[int, int] = {}
    for i, rec in _check_records(problems, "images", "an image", records, IMAGE_KEYS):
        where = _label("images", i, rec)
        if not _is_int(rec["id"]):
            problems.add("invalid", f"{where}: id must be an integer, got {rec['id']!r}")
        elif not isinstance(rec["file_name"], str) or not rec["file_name"]:
            problems.add("invalid", f"{where}: file_name must be a non-empty string, got {rec['file_name']!r}")
        elif not (_is_int(rec["width"]) and rec["width"] > 0 and _is_int(rec["height"]) and rec["height"] > 0):
            problems.add("invalid", f"{where}: width and height must be positive integers, got width "
                                    f"{rec['width']!r}, height {rec['height']!r}")
        elif rec["id"] in seen:
            problems.add("duplicate", f"{where}: duplicate image id {rec['id']} (also images[{seen[rec['id']]}])")
        else:
            seen[rec["id"]] = i
    problems.raise_first({
        "missing": ("image lacks required keys", "images lack required keys"),
        "invalid": ("image has an invalid field", "images have invalid fields"),
        "duplicate": ("duplicate image id", "duplicate image ids"),
    })
    return list(records)


def _check_annotations(path: Path, records: list, images: list[dict], categories: list[dict]) -> list[dict]:
    problems = _Problems(path)
    image_by_id = {im["id"]: im for im in images}
    category_ids = {c["id"] for c in categories}
    seen: dict[int, int] = {}
    for i, rec in _check_records(problems, "annotations", "an annotation", records, ANNOTATION_KEYS):
        where = _label("annotations", i, rec)
        bad_ids = [k for k in ("id", "image_id", "category_id") if not _is_int(rec[k])]
        bbox = rec["bbox"]
        if bad_ids:
            problems.add("invalid", f"{where}: {', '.join(bad_ids)} must be "
                                    f"{'integers' if len(bad_ids) > 1 else 'an integer'}, got "
                                    f"{', '.join(repr(rec[k]) for k in bad_ids)}")
            continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            problems.add("bbox", f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}")
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            problems.add("bbox", f"{where}: bbox {_fmt_box(bbox)} has width or height <= 0")
            continue
        if "iscrowd" in rec and rec["iscrowd"] not in (0, 1, True, False):
            problems.add("invalid", f"{where}: iscrowd must be 0 or 1, got {rec['iscrowd']!r}")
            continue
        if "area" in rec and not _is_number(rec["area"]):
            problems.add("invalid", f"{where}: area must be a number, got {rec['area']!r}")
            continue
        if rec["id"] in seen:
            problems.add("duplicate", f"{where}: duplicate annotation id {rec['id']} "
                                      f"(also annotations[{seen[rec['id']]}])")
            continue
        seen[rec["id"]] = i
        if rec["category_id"] not in category_ids:
            problems.add("category", f"{where}: unknown category_id {rec['category_id']} "
                                     f"(categories: {', '.join(str(c) for c in sorted(category_ids))})")
            continue
        image = image_by_id.get(rec["image_id"])
        if image is None:
            problems.add("image", f"{where}: image_id {rec['image_id']} names no image in images")
            continue
        x, y, w, h = bbox
        W, H = image["width"], image["height"]
        if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > W + BOX_TOLERANCE or y + h > H + BOX_TOLERANCE:
            problems.add("outside", f"{where}: bbox {_fmt_box(bbox)} lies outside image {image['id']} ({W}x{H})")
    problems.raise_first({
        "missing": ("annotation lacks required keys", "annotations lack required keys"),
        "invalid": ("annotation has an invalid field", "annotations have invalid fields"),
        "bbox": ("annotation has an invalid bbox", "annotations have invalid bboxes"),
        "duplicate": ("duplicate annotation id", "duplicate annotation ids"),
        "category": ("annotation names an unknown category", "annotations name unknown categories"),
        "image": ("annotation names an unknown image", "annotations name unknown images"),
        "outside": ("annotation has a box outside its image", "annotations have boxes outside their images"),
    })
    return list(records)


def _fmt_box(bbox: Sequence[float]) -> str:
    return "[" + ", ".join(_fmt_num(v) for v in bbox) + "]"


# ----------------------------------------------------------------------------------------------------
# Attribute filters (SODA10M-style domain splits)


def check_where(where: object, *, name: str = "where") -> dict[str, tuple[object, ...]] | None:
    """Normalise a ``where`` filter: attribute -> allowed values (a scalar or a list of them).

    Raises ConfigError (field ``name``) for anything else."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ConfigError(f"expected a mapping of image attribute -> value or list of values, e.g. "
                          f"{{period: night}}, got {where!r}", field=name)
    out: dict[str, tuple[object, ...]] = {}
    for key, value in where.items():
        if not isinstance(key, str):
            raise ConfigError(f"attribute names must be strings, got {key!r}", field=name)
        values = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else (value,)
        if not values:
            raise ConfigError(f"{key}: an empty list of values keeps no image", field=name)
        for v in values:
            if isinstance(v, (dict, list)):
                raise ConfigError(f"{key}: values must be scalars, got {v!r}", field=name)
        out[key] = values
    return out


def _matches(value: object, allowed: tuple[object, ...]) -> bool:
    """Strings compare case-insensitively (SODA10M writes ``Night``, users type ``night``)."""
    for a in allowed:
        if isinstance(value, str) and isinstance(a, str):
            if value.casefold() == a.casefold():
                return True
        elif value == a and isinstance(value, bool) == isinstance(a, bool):  # True is not 1
            return True
    return False


def filter_images(doc: CocoDocument, where: Mapping[str, object] | None) -> list[tuple[int, dict]]:
    """The (index, record) pairs of ``doc``'s images whose attributes match ``where`` (all when None)."""
    spec = check_where(where)
    indexed = list(enumerate(doc.images))
    if not spec:
        if not indexed:
            raise DatasetError("images is empty", source=str(doc.path))
        return indexed
    for key in spec:
        if not any(key in im for im in doc.images):
            known = sorted({k for im in doc.images for k in im if k not in IMAGE_KEYS})
            raise DatasetError(f"where {_fmt_where(spec)}: no image has attribute {key!r} "
                               f"(attributes present: {', '.join(known) or 'none'})", source=str(doc.path))
    kept = [(i, im) for i, im in indexed if all(_matches(im.get(k), vs) for k, vs in spec.items())]
    if not kept:
        present = []
        for key in spec:
            counts = Counter(repr(im.get(key)) for im in doc.images)
            shown = sorted(counts.items())[:12]
            more = f", ... ({len(counts) - len(shown)} more values)" if len(counts) > len(shown) else ""
            present.append(f"{key}: " + ", ".join(f"{v} ({n})" for v, n in shown) + more)
        raise DatasetError(f"where {_fmt_where(spec)} keeps no image of {len(doc.images)}; values present "
                           f"(images): {'; '.join(present)}", source=str(doc.path))
    return kept


def _fmt_where(spec: Mapping[str, tuple[object, ...]]) -> str:
    return "{" + ", ".join(f"{k}: {v[0]!r}" if len(v) == 1 else f"{k}: {list(v)!r}" for k, v in spec.items()) + "}"


# ----------------------------------------------------------------------------------------------------
# Loading a split


def load_coco(
    annotations: Path | str,
    images: Path | str,
    *,
    image_size: tuple[int, int] | None = None,
    where: Mapping[str, object] | None = None,
    categories: Sequence[int] | None = None,
) -> DetectionSplit:
    """Read a COCO-format split: ``annotations`` (the JSON) and ``images`` (the folder ``file_name`` is
    relative to).

    ``image_size`` ``(H, W)`` resizes every image (bilinear) and scales its boxes; None keeps the files'
    size, which must then be one size for the split. ``where`` keeps the images whose attributes match
    (see :func:`check_where`; strings case-insensitively). ``categories`` keeps only these COCO category
    ids (others are dropped from training boxes and ground truth alike); labels follow the ids sorted
    ascending. Boxes reaching up to :data:`BOX_TOLERANCE` px outside their image are clipped. Crowd
    annotations (``iscrowd=1``) stay in the ground truth (COCOeval ignores detections on them) but are
    not training boxes. Images without annotations are kept (as negatives).
    """
    doc = read_coco(annotations)
    source = str(doc.path)
    folder = Path(images).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist (file_name entries are read relative to it)",
                           source=source)
    kept = filter_images(doc, where)
    names = doc.category_names
    if categories is None:
        category_ids = tuple(names)
    else:
        wanted = [int(c) for c in categories]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise DatasetError(f"categories {unknown} are not in the file (it has "
                               f"{', '.join(f'{i} {n!r}' for i, n in names.items())})", source=source)
        if not wanted:
            raise DatasetError("categories is empty: at least one category id is needed", source=source)
        category_ids = tuple(sorted(set(wanted)))
    label_of = {cid: k for k, cid in enumerate(category_ids)}

    # every file must exist before any is read (one error listing the first missing path and the count)
    problems = _Problems(doc.path)
    for i, rec in kept:
        file = folder / rec["file_name"]
        if not file.is_file():
            problems.add("missing", f"{_label('images', i, rec)}: image file {file} does not exist")
    if image_size is None:
        first_i, first = kept[0]
        for i, rec in kept:
            if (rec["width"], rec["height"]) != (first["width"], first["height"]):
                problems.add("size", f"{_label('images', i, rec)} is {rec['width']}x{rec['height']} but "
                                     f"{_label('images', first_i, first)} is {first['width']}x{first['height']}: "
                                     f"the images of a split must share one size (give image_size to resize them)")
    problems.raise_first({
        "missing": ("image file is missing", "image files are missing"),
        "size": ("image differs in size", "images differ in size"),
    })
    if image_size is None:
        out_h, out_w = kept[0][1]["height"], kept[0][1]["width"]
    else:
        out_h, out_w = (int(s) for s in image_size)
        if out_h < 1 or out_w < 1:
            raise ConfigError(f"image_size must be positive (H, W), got {image_size!r}", field="image_size")

    tensors: list[torch.Tensor] = []
    for i, rec in kept:
        file = folder / rec["file_name"]
        tensor = _read_image(file, rec, (out_h, out_w), problems, _label("images", i, rec))
        tensors.append(tensor)
    problems.raise_first({
        "unreadable": ("image file cannot be read", "image files cannot be read"),
        "mismatch": ("image file differs from its record's size", "image files differ from their records' sizes"),
    })

    anns_by_image: dict[int, list[dict]] = {}
    for ann in doc.annotations:
        if ann["category_id"] in label_of:
            anns_by_image.setdefault(ann["image_id"], []).append(ann)
    gt_images, gt_annotations = [], []
    boxes, labels, image_ids, attributes = [], [], [], []
    for _, rec in kept:
        sx, sy = out_w / rec["width"], out_h / rec["height"]
        gt_images.append({**rec, "width": out_w, "height": out_h})
        image_boxes, image_labels = [], []
        for ann in anns_by_image.get(rec["id"], []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0 = min(max(x * sx, 0.0), out_w), min(max(y * sy, 0.0), out_h)
            x1, y1 = min(max((x + w) * sx, 0.0), out_w), min(max((y + h) * sy, 0.0), out_h)
            area = float(ann["area"]) * sx * sy if "area" in ann else (x1 - x0) * (y1 - y0)
            crowd = int(bool(ann.get("iscrowd", 0)))
            gt_annotations.append({"id": ann["id"], "image_id": rec["id"], "category_id": ann["category_id"],
                                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": crowd})
            if not crowd and x1 > x0 and y1 > y0:
                image_boxes.append((x0, y0, x1, y1))
                image_labels.append(label_of[ann["category_id"]])
        boxes.append(torch.tensor(image_boxes, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(image_labels, dtype=torch.int64))
        image_ids.append(int(rec["id"]))
        attributes.append({k: v for k, v in rec.items() if k not in IMAGE_KEYS})
    gt = _make_coco({
        "images": gt_images, "annotations": gt_annotations,
        "categories": [c for c in doc.categories if c["id"] in label_of],
    })
    return DetectionSplit(images=tensors, boxes=boxes, labels=labels, image_ids=image_ids, coco=gt,
                          category_ids=category_ids, attributes=attributes)


def _read_image(file: Path, rec: dict, size: tuple[int, int], problems: _Problems, where: str) -> torch.Tensor:
    """One image as float32 [3, H, W] in 0..1 at ``size`` (H, W); problems are recorded, not raised."""
    out_h, out_w = size
    try:
        with Image.open(file) as im:
            if im.size != (rec["width"], rec["height"]):
                problems.add("mismatch", f"{where}: image file {file} is {im.size[0]}x{im.size[1]} but the "
                                         f"record says {rec['width']}x{rec['height']}")
                return torch.zeros(3, out_h, out_w)
            if im.size != (out_w, out_h):
                im.draft("RGB", (out_w, out_h))  # JPEG: decode at a reduced scale (much faster for big frames)
            rgb = im.convert("RGB")
            if rgb.size != (out_w, out_h):
                rgb = rgb.resize((out_w, out_h), Image.BILINEAR)
            array = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        problems.add("unreadable", f"{where}: cannot read image file {file}: {exc}")
        return torch.zeros(3, out_h, out_w)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _make_coco(dataset: dict[str, Any]) -> Any:
    """A pycocotools COCO object over an in-memory dataset (its index built silently)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"info": {}, "licenses": [], **dataset}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# ----------------------------------------------------------------------------------------------------
# Scoring


Prediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def evaluate_detections(split: DetectionSplit, predictions: Sequence[Prediction], *,
                        max_dets: int = 100) -> dict[str, float]:
    """COCO bbox metrics of ``predictions`` on ``split`` with pycocotools' COCOeval (its prints silenced).

    ``predictions[i] = (boxes[n, 4] xyxy px, scores[n], labels[n] in 0..C-1)`` for ``split.images[i]``
    (tensors or arrays). At most ``max_dets`` detections per image count (the highest-scoring). Returns
    ``mAP`` (AP@[.5:.95]), ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``, each in 0..1;
    a metric whose objects do not exist in the split (COCO's -1, e.g. ``AP_large`` on 64x64 images) is
    NaN, so the keys are always the same. No detections at all score 0.0 (NaN where no such objects).
    """
    if len(predictions) != len(split.images):
        raise ValueError(f"got predictions for {len(predictions)} images, the split has {len(split.images)}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    results = []
    num_labels = len(split.category_ids)
    for i, (image_id, prediction) in enumerate(zip(split.image_ids, predictions)):
        boxes, scores, labels = (torch.as_tensor(t).detach().cpu() for t in prediction)
        boxes = boxes.double().reshape(-1, 4)
        scores = scores.double().reshape(-1)
        labels = labels.reshape(-1).long()
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"predictions[{i}]: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(f"predictions[{i}]: labels must be in 0..{num_labels - 1}")
        order = torch.argsort(scores, descending=True, stable=True)[:max_dets]
        for k in order.tolist():
            x0, y0, x1, y1 = boxes[k].tolist()
            results.append({"image_id": image_id, "category_id": split.category_ids[int(labels[k])],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[k])})
    if not results:
        return _no_detections(split)

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        dt = split.coco.loadRes(results)
        evaluator = COCOeval(split.coco, dt, iouType="bbox")
        evaluator.params.imgIds = list(split.image_ids)
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    params = evaluator.params
    area_index = {label: k for k, label in enumerate(params.areaRngLbl)}
    iou50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    iou75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else float("nan")

    every = area_index["all"]
    return {
        "mAP": mean(precision[:, :, :, every, 0]),
        "AP50": mean(precision[iou50, :, :, every, 0]),
        "AP75": mean(precision[iou75, :, :, every, 0]),
        "AP_small": mean(precision[:, :, :, area_index["small"], 0]),
        "AP_medium": mean(precision[:, :, :, area_index["medium"], 0]),
        "AP_large": mean(precision[:, :, :, area_index["large"], 0]),
    }


def _no_detections(split: DetectionSplit) -> dict[str, float]:
    """The metrics of an empty result, without COCOeval (which cannot load one): 0.0 where the split has
    (non-crowd) objects of that size, NaN where it has none -- what COCOeval gives for zero recall."""
    areas = [a["area"] for a in split.coco.dataset["annotations"] if not a.get("iscrowd", 0)]

    def score(low: float, high: float) -> float:
        return 0.0 if any(low <= a <= high for a in areas) else float("nan")

    overall = 0.0 if areas else float("nan")
    return {"mAP": overall, "AP50": overall, "AP75": overall,
            **{f"AP_{name}": score(*bounds) for name, bounds in _AREA_RANGES.items()}}


def options_key(options: Mapping[str, Any]) -> str:
    """A canonical JSON string of task options (hashable cache key; also hashed into folder names)."""
    return json.dumps(options, sort_keys=True, default=str)


def env_data_root() -> Path:
    """Where generated datasets go by default: ``$AUTOML_DATA`` or ``~/.cache/automl/datasets``."""
    env = os.environ.get("AUTOML_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "automl" / "datasets"
