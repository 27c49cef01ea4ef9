"""Reading COCO-format detection datasets (SODA10M's schema included) into detection splits.

:func:`load_coco` reads any COCO-format JSON: extra image fields (``city``, ``location``, ``period``,
``weather``, ...) are *attributes*, and ``where={"period": "night"}`` keeps only the images whose
attributes match (:mod:`automl.tasks.attributes`) -- how domain-shift splits (train on daytime, test on
night) are made. Bad input raises one :class:`DatasetError` naming the file, the first offending record
and how many more records have the same problem.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from automl.errors import ConfigError, DatasetError
from automl.tasks.attributes import check_where, format_where, select_records
from automl.tasks.detection import DetectionSplit, make_coco
from automl.tasks.records import RecordProblems, read_json_file

#: how far (pixels) a box may reach outside its image before it is an error; boxes are then clipped
BOX_TOLERANCE = 1.0
#: image record keys that are not attributes (everything else, e.g. SODA10M's city/period, is one)
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")
CATEGORY_KEYS = ("id", "name")
#: the metrics :func:`evaluate_detections` returns, in order


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
    doc = read_json_file(path, "images, annotations and categories")
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


def _check_records(problems: RecordProblems, section: str, noun: str, records: list[Any], keys: Sequence[str]
                   ) -> list[tuple[int, dict[str, Any]]]:
    """Report records that are not objects or lack keys; returns the (index, record) pairs that are whole."""
    whole: list[tuple[int, dict[str, Any]]] = []
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


def _check_categories(path: Path, records: list[Any]) -> list[dict[str, Any]]:
    problems = RecordProblems(path)
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


def _check_images(path: Path, records: list[Any]) -> list[dict[str, Any]]:
    problems = RecordProblems(path)
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


def _check_annotations(path: Path, records: list[Any], images: list[dict[str, Any]],
                       categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    problems = RecordProblems(path)
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


def filter_images(doc: CocoDocument, where: Mapping[str, object] | None) -> list[tuple[int, dict[str, Any]]]:
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
            raise DatasetError(f"where {format_where(spec)}: no image has attribute {key!r} "
                               f"(attributes present: {', '.join(known) or 'none'})", source=str(doc.path))
    kept = [indexed[i] for i in select_records(doc.images, spec)]
    if not kept:
        present = []
        for key in spec:
            counts = Counter(repr(im.get(key)) for im in doc.images)
            shown = sorted(counts.items())[:12]
            more = f", ... ({len(counts) - len(shown)} more values)" if len(counts) > len(shown) else ""
            present.append(f"{key}: " + ", ".join(f"{v} ({n})" for v, n in shown) + more)
        raise DatasetError(f"where {format_where(spec)} keeps no image of {len(doc.images)}; values present "
                           f"(images): {'; '.join(present)}", source=str(doc.path))
    return kept


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
    problems = RecordProblems(doc.path)
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

    anns_by_image: dict[int, list[dict[str, Any]]] = {}
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
    gt = make_coco({
        "images": gt_images, "annotations": gt_annotations,
        "categories": [c for c in doc.categories if c["id"] in label_of],
    })
    return DetectionSplit(images=tensors, boxes=boxes, labels=labels, image_ids=image_ids, coco=gt,
                          category_ids=category_ids, attributes=attributes)


def _read_image(file: Path, rec: dict[str, Any], size: tuple[int, int], problems: RecordProblems,
                where: str) -> torch.Tensor:
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
                rgb = rgb.resize((out_w, out_h), Image.Resampling.BILINEAR)
            array = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        problems.add("unreadable", f"{where}: cannot read image file {file}: {exc}")
        return torch.zeros(3, out_h, out_w)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
