"""``coco``: any COCO-format detection dataset on disk (COCO itself, SODA10M, a converted VOC, ...).

Each split is a COCO JSON plus the folder its ``file_name`` entries are relative to. SODA10M's extra
image fields (``city``, ``location``, ``period``, ``weather``) are attributes that ``train_where`` /
``val_where`` filter on, e.g. train on daytime and validate on night for a domain-shift evaluation::

    task:
      name: coco
      options:
        train_annotations: /data/SODA10M/labeled/annotations/instance_train.json
        train_images: /data/SODA10M/labeled/train
        val_annotations: /data/SODA10M/labeled/annotations/instance_val.json
        val_images: /data/SODA10M/labeled/val
        image_size: [64, 112]
        train_where: {period: daytime}
        val_where: {period: night}

Images are resized to ``image_size`` (default [64, 64]; null keeps the files' size, which must then be
one size for both splits). Labels follow the category ids in ascending order (``categories`` keeps a
subset); the validation file must name those categories the same way.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from automl.errors import ConfigError, DatasetError
from automl.tasks.attributes import check_where
from automl.tasks.base import tasks
from automl.tasks.cache import options_key
from automl.tasks.coco_format import filter_images, load_coco, read_coco
from automl.tasks.detection import DetectionData, DetectionInfo, DetectionTask, parse_image_size

_PATH_OPTIONS = {
    "train_annotations": ("the COCO JSON of the training split", "file"),
    "train_images": ("the folder of the training images", "folder"),
    "val_annotations": ("the COCO JSON of the validation split", "file"),
    "val_images": ("the folder of the validation images", "folder"),
}


@tasks.register("coco")
class CocoTask(DetectionTask):
    """Options: ``train_annotations``, ``train_images``, ``val_annotations``, ``val_images`` (required
    paths; relative ones are resolved against the working directory), ``image_size`` ([64, 64]; an
    integer for a square, or null to keep the files' size), ``train_where`` / ``val_where`` (image
    attribute filters, e.g. ``{period: night}`` or ``{weather: [rainy, overcast]}``), ``categories``
    (a list of COCO category ids to keep; default all)."""

    def __init__(self, train_annotations: str | None = None, train_images: str | None = None,
                 val_annotations: str | None = None, val_images: str | None = None,
                 image_size: int | Sequence[int] | None = (64, 64), train_where: dict[str, Any] | None = None,
                 val_where: dict[str, Any] | None = None, categories: list[int] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        given = {"train_annotations": train_annotations, "train_images": train_images,
                 "val_annotations": val_annotations, "val_images": val_images}
        paths: dict[str, Path] = {}
        for name, value in given.items():
            what, kind = _PATH_OPTIONS[name]
            if value is None:
                raise ConfigError(f"coco: option {name!r} ({what}) is required", field=name)
            if not isinstance(value, (str, Path)):
                raise ConfigError(f"coco: {name} must be a path, got {value!r}", field=name)
            path = Path(value).expanduser().resolve()
            exists = path.is_file() if kind == "file" else path.is_dir()
            if not exists:
                raise ConfigError(f"coco: no such {kind} (expected {what})", source=str(path), field=name)
            paths[name] = path
        self.train_annotations = paths["train_annotations"]
        self.train_images = paths["train_images"]
        self.val_annotations = paths["val_annotations"]
        self.val_images = paths["val_images"]
        self.image_size = _image_size(image_size)
        self.train_where = _where("train_where", train_where)
        self.val_where = _where("val_where", val_where)
        if categories is not None and not (isinstance(categories, (list, tuple)) and categories and all(
                isinstance(c, int) and not isinstance(c, bool) for c in categories)):
            raise ConfigError(f"coco: categories must be a non-empty list of COCO category ids, got {categories!r}",
                              field="categories")
        self.categories = None if categories is None else sorted(set(categories))

    @property
    def info(self) -> DetectionInfo:
        """Class names from the training file's categories (by ascending id); reads only the JSON."""
        doc = read_coco(self.train_annotations)
        names = doc.category_names
        ids = list(names) if self.categories is None else self.categories
        unknown = [c for c in ids if c not in names]
        if unknown:
            raise DatasetError(f"categories {unknown} are not in the file (it has "
                               f"{', '.join(f'{i} {n!r}' for i, n in names.items())})", source=str(doc.path))
        size = self.image_size
        if size is None:
            first = filter_images(doc, self.train_where)[0][1]
            size = (first["height"], first["width"])
        return DetectionInfo(class_names=tuple(names[c] for c in ids), image_size=size)

    def _options(self) -> dict[str, Any]:
        return {"train_annotations": str(self.train_annotations), "train_images": str(self.train_images),
                "val_annotations": str(self.val_annotations), "val_images": str(self.val_images),
                "image_size": None if self.image_size is None else list(self.image_size),
                "train_where": self.train_where, "val_where": self.val_where, "categories": self.categories}

    def fingerprint(self) -> str:
        """Hash of the options and of both annotation files' contents (not of the image files)."""
        digest = hashlib.sha256(options_key({"task": "coco", **self._options()}).encode())
        for path in (self.train_annotations, self.val_annotations):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()[:16]

    def load(self) -> DetectionData:
        stamps = [(p.stat().st_size, p.stat().st_mtime_ns) for p in (self.train_annotations, self.val_annotations)]
        return _load(options_key({**self._options(), "stamps": stamps}))


@lru_cache(maxsize=4)
def _load(key: str) -> DetectionData:
    spec = json.loads(key)
    size = None if spec["image_size"] is None else tuple(spec["image_size"])
    train = load_coco(spec["train_annotations"], spec["train_images"], image_size=size,
                      where=spec["train_where"], categories=spec["categories"])
    val_doc = read_coco(spec["val_annotations"])
    train_names = read_coco(spec["train_annotations"]).category_names
    val_names = val_doc.category_names
    for cid in train.category_ids:
        if cid not in val_names:
            raise DatasetError(f"category {cid} ({train_names[cid]!r}) of the training file is missing here",
                               source=str(val_doc.path))
        if val_names[cid] != train_names[cid]:
            raise DatasetError(f"category {cid} is {val_names[cid]!r} here but {train_names[cid]!r} in the "
                               f"training file {spec['train_annotations']}", source=str(val_doc.path))
    val = load_coco(spec["val_annotations"], spec["val_images"], image_size=size, where=spec["val_where"],
                    categories=list(train.category_ids))
    if size is None and val.image_size != train.image_size:
        raise DatasetError(f"validation images are {val.image_size[1]}x{val.image_size[0]} but training images "
                           f"are {train.image_size[1]}x{train.image_size[0]}: give image_size to resize both",
                           source=str(val_doc.path))
    return DetectionData(train=train, val=val)


def _image_size(value: object) -> tuple[int, int] | None:
    return None if value is None else parse_image_size(value, minimum=1, task="coco")


def _where(name: str, value: object) -> dict[str, Any] | None:
    spec = check_where(value, name=name)
    return None if spec is None else {k: list(v) for k, v in spec.items()}
