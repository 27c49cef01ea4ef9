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
one size for every split). Labels follow the category ids in ascending order (``categories`` keeps a
subset); the validation (and test) file must name those categories the same way.

A test split, held out of every search (a pipeline's ``train`` step scores it), is optional: a file of
its own (``test_annotations`` + ``test_images``, filtered by ``test_where`` when given), or, without
one, ``test_where`` alone picks the test images out of the validation file (SODA10M's validation file
holds every domain: ``val_where: {period: daytime}``, ``test_where: {period: night}``). No test image
file may be a train or validation image file (an error names the first one). Without these options
the task has no test split.
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
from automl.tasks.detection import DetectionData, DetectionInfo, DetectionSplit, DetectionTask, parse_image_size

_PATH_OPTIONS = {
    "train_annotations": ("the COCO JSON of the training split", "file"),
    "train_images": ("the folder of the training images", "folder"),
    "val_annotations": ("the COCO JSON of the validation split", "file"),
    "val_images": ("the folder of the validation images", "folder"),
    "test_annotations": ("the COCO JSON of the test split", "file"),
    "test_images": ("the folder of the test images", "folder"),
}


@tasks.register("coco")
class CocoTask(DetectionTask):
    """Options: ``train_annotations``, ``train_images``, ``val_annotations``, ``val_images`` (required
    paths; relative ones are resolved against the working directory), ``image_size`` ([64, 64]; an
    integer for a square, or null to keep the files' size), ``train_where`` / ``val_where`` (image
    attribute filters, e.g. ``{period: night}`` or ``{weather: [rainy, overcast]}``), ``categories``
    (a list of COCO category ids to keep; default all), ``test_annotations`` + ``test_images`` (optional
    paths of a test split) and ``test_where`` (its filter; without a test file, the test images are the
    validation file's images it keeps)."""

    def __init__(self, train_annotations: str | None = None, train_images: str | None = None,
                 val_annotations: str | None = None, val_images: str | None = None,
                 image_size: int | Sequence[int] | None = (64, 64), train_where: dict[str, Any] | None = None,
                 val_where: dict[str, Any] | None = None, categories: list[int] | None = None,
                 test_annotations: str | None = None, test_images: str | None = None,
                 test_where: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        given = {"train_annotations": train_annotations, "train_images": train_images,
                 "val_annotations": val_annotations, "val_images": val_images,
                 "test_annotations": test_annotations, "test_images": test_images}
        if (test_annotations is None) != (test_images is None):
            missing = "test_images" if test_images is None else "test_annotations"
            raise ConfigError(f"coco: a test file needs both test_annotations and test_images; {missing} is missing",
                              field=missing)
        paths: dict[str, Path] = {}
        for name, value in given.items():
            what, kind = _PATH_OPTIONS[name]
            if value is None:
                if name.startswith("test_"):
                    continue
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
        self.test_annotations = paths.get("test_annotations")
        self.test_images = paths.get("test_images")
        self.image_size = _image_size(image_size)
        self.train_where = _where("train_where", train_where)
        self.val_where = _where("val_where", val_where)
        self.test_where = _where("test_where", test_where)
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
                "train_where": self.train_where, "val_where": self.val_where, "categories": self.categories,
                "test_annotations": None if self.test_annotations is None else str(self.test_annotations),
                "test_images": None if self.test_images is None else str(self.test_images),
                "test_where": self.test_where}

    def _annotation_files(self) -> list[Path]:
        return [p for p in (self.train_annotations, self.val_annotations, self.test_annotations) if p is not None]

    def fingerprint(self) -> str:
        """Hash of the options and of the annotation files' contents (not of the image files)."""
        digest = hashlib.sha256(options_key({"task": "coco", **self._options()}).encode())
        for path in self._annotation_files():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()[:16]

    def load(self) -> DetectionData:
        stamps = [(p.stat().st_size, p.stat().st_mtime_ns) for p in self._annotation_files()]
        return _load(options_key({**self._options(), "stamps": stamps}))


@lru_cache(maxsize=4)
def _load(key: str) -> DetectionData:
    spec = json.loads(key)
    size = None if spec["image_size"] is None else tuple(spec["image_size"])
    train = load_coco(spec["train_annotations"], spec["train_images"], image_size=size,
                      where=spec["train_where"], categories=spec["categories"])
    train_names = read_coco(spec["train_annotations"]).category_names
    val = _other_split(spec, "val", spec["val_annotations"], spec["val_images"], spec["val_where"], train,
                       train_names)
    if spec["test_annotations"] is None and spec["test_where"] is None:
        return DetectionData(train=train, val=val)
    files = (spec["test_annotations"], spec["test_images"])
    if files[0] is None:  # test_where alone: out of the validation file
        files = (spec["val_annotations"], spec["val_images"])
    test = _other_split(spec, "test", files[0], files[1], spec["test_where"], train, train_names)
    test_files = _image_files(files[0], files[1], spec["test_where"])
    for split in ("train", "val"):
        shared = sorted(test_files & _image_files(spec[f"{split}_annotations"], spec[f"{split}_images"],
                                                  spec[f"{split}_where"]))
        if shared:
            how = "test_where keeps" if spec["test_annotations"] is None else "the test split holds"
            what = "training" if split == "train" else "validation"
            raise DatasetError(f"{how} {len(shared)} image file(s) of the {what} split, e.g. {shared[0]}: a test "
                               f"split must share no image with the splits a search sees (make {split}_where and "
                               "test_where disjoint, or give another test file)", source=str(files[0]))
    return DetectionData(train=train, val=val, test=test)


def _other_split(spec: dict[str, Any], split: str, annotations: str, images: str, where: dict[str, Any] | None,
                 train: DetectionSplit, train_names: dict[int, str]) -> DetectionSplit:
    """The validation or test split, its categories checked against the training file's."""
    doc = read_coco(annotations)
    names = doc.category_names
    for cid in train.category_ids:
        if cid not in names:
            raise DatasetError(f"category {cid} ({train_names[cid]!r}) of the training file is missing here",
                               source=str(doc.path))
        if names[cid] != train_names[cid]:
            raise DatasetError(f"category {cid} is {names[cid]!r} here but {train_names[cid]!r} in the "
                               f"training file {spec['train_annotations']}", source=str(doc.path))
    size = None if spec["image_size"] is None else tuple(spec["image_size"])
    out = load_coco(annotations, images, image_size=size, where=where, categories=list(train.category_ids))
    what = "validation" if split == "val" else "test"
    if size is None and out.image_size != train.image_size:
        raise DatasetError(f"{what} images are {out.image_size[1]}x{out.image_size[0]} but training images "
                           f"are {train.image_size[1]}x{train.image_size[0]}: give image_size to resize both",
                           source=str(doc.path))
    return out


def _image_files(annotations: str, images: str, where: dict[str, Any] | None) -> set[Path]:
    """The image files a split reads (resolved), after its filter."""
    folder = Path(images).expanduser().resolve()
    return {(folder / rec["file_name"]).resolve() for _, rec in filter_images(read_coco(annotations), where)}


def _image_size(value: object) -> tuple[int, int] | None:
    return None if value is None else parse_image_size(value, minimum=1, task="coco")


def _where(name: str, value: object) -> dict[str, Any] | None:
    spec = check_where(value, name=name)
    return None if spec is None else {k: list(v) for k, v in spec.items()}
