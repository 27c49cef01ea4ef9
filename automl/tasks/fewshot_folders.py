"""Few-shot image datasets on disk: ``miniimagenet`` (the Ravi & Larochelle split CSVs) and
``image-folder-fewshot`` (one folder per class: CUB, a flattened Omniglot, ...).

``miniimagenet`` reads ``root/train.csv``, ``val.csv`` and ``test.csv`` (header ``filename,label``; file
names relative to ``root/images``) as the base, val and novel pools::

    task:
      name: miniimagenet
      options: {root: /data/mini-imagenet, image_size: 84, n_way: 5, k_shot: 1, n_query: 15}

``image-folder-fewshot`` reads ``root/<class>/*.png|*.jpg|*.jpeg`` and deals the classes (sorted by name)
into the pools by a seeded shuffle (``split`` fractions, ``split_seed``), or takes explicit ``base`` /
``val`` / ``novel`` class-name lists::

    task:
      name: image-folder-fewshot
      options: {root: /data/omniglot-flat, image_size: 28, grayscale: true, split: [0.6, 0.2, 0.2]}

Images are resized (with PIL, bilinear) to ``image_size`` squares and kept as uint8 ``(n, C, S, S)``
tensors (the episode sampler turns them into floats in [0, 1]); class ids are the indices of the class
names (of all three pools) in sorted order. Bad input is one :class:`DatasetError` (or :class:`ConfigError`
for an option) naming the file, line and field, the first offending record and how many more share the
problem.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.cache import options_key
from automl.tasks.episodic import EpisodicData, EpisodicInfo, EpisodicTask, LabelledPool

#: the pools, in order
POOLS: tuple[str, ...] = ("base", "val", "novel")
#: mini-ImageNet's CSV of each pool
SPLIT_FILES: Mapping[str, str] = {"base": "train.csv", "val": "val.csv", "novel": "test.csv"}
#: the image files a class folder's images may be (case-insensitive)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: the pool fractions ``image-folder-fewshot`` deals classes by when given no class lists
DEFAULT_SPLIT: tuple[float, float, float] = (0.5, 0.25, 0.25)


class _Problems:
    """Problems found in one pass, by kind: the first of each kind (message, source, line, field) and how
    many there are; :meth:`raise_first` raises one DatasetError for the first kind that has any."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, str | None, int | None, str | None]] = {}
        self.count: Counter[str] = Counter()

    def add(self, kind: str, message: str, *, source: str | None = None, line: int | None = None,
            field: str | None = None) -> None:
        self.first.setdefault(kind, (message, source, line, field))
        self.count[kind] += 1

    def raise_first(self, phrases: Mapping[str, tuple[str, str]]) -> None:
        for kind, (singular, plural) in phrases.items():
            if kind in self.first:
                message, source, line, field = self.first[kind]
                more = self.count[kind] - 1
                tail = "" if more == 0 else f"; {more} more {singular if more == 1 else plural}"
                raise DatasetError(message + tail, source=source, line=line, field=field)


# --------------------------------------------------------------------------------------------- options


def _integer(task: str, field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{task}: {field} must be an integer >= {low}, got {value!r}", field=field)
    return int(value)


def _root(task: str, root: object, what: str) -> Path:
    if root is None:
        raise ConfigError(f"{task}: option 'root' ({what}) is required", field="root")
    if not isinstance(root, (str, Path)) or not str(root).strip():
        raise ConfigError(f"{task}: root must be a folder path, got {root!r}", field="root")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{task}: no such folder (expected {what})", source=str(path), field="root")
    return path


class _FolderFewshotTask(EpisodicTask):
    """What both tasks share: the episode options, the image size, a cached load and a check naming pools."""

    name: str = ""
    root: Path

    def _episode_options(self, image_size: object, n_way: object, k_shot: object, n_query: object) -> None:
        self.image_size = _integer(self.name, "image_size", image_size, 1)
        self.n_way = _integer(self.name, "n_way", n_way, 2)
        self.k_shot = _integer(self.name, "k_shot", k_shot, 1)
        self.n_query = _integer(self.name, "n_query", n_query, 1)

    @property
    def channels(self) -> int:
        return 3

    @property
    def info(self) -> EpisodicInfo:
        """From the options alone (no file is read)."""
        return EpisodicInfo(input_shape=(self.channels, self.image_size, self.image_size), n_way=self.n_way,
                            k_shot=self.k_shot, n_query=self.n_query)

    def options(self) -> dict[str, Any]:
        return {**{k: v for k, v in vars(self).items() if not k.startswith("_")}, "root": str(self.root)}

    def _spec(self) -> dict[str, Any]:
        """What the task's data and episodes depend on apart from the files (and where the folder is)."""
        return {"task": self.name, **{k: v for k, v in self.options().items() if k != "root"}}

    def _images_spec(self) -> dict[str, Any]:
        """What the loaded images depend on (not the episode shape: changing it reads nothing again)."""
        return {k: v for k, v in self._spec().items() if k not in ("n_way", "k_shot", "n_query")}

    def _pool_source(self, pool: str) -> str:
        """What a message about ``pool`` names as its source."""
        return str(self.root)

    def check(self) -> None:
        """Every pool can give the task's ``n_way``-way episodes of ``k_shot + n_query`` images per class; an
        error names the task, the pool and where its classes come from."""
        data, need = self.load(), self.k_shot + self.n_query
        for pool_name in POOLS:
            pool = data.pool(pool_name)
            counts = pool.counts()
            large = sum(n >= need for n in counts.values())
            if large >= self.n_way:
                continue
            source = self._pool_source(pool_name)
            if len(counts) < self.n_way:
                raise ConfigError(f"{self.name}: the {pool_name} pool has {len(counts)} classes; {self.n_way}-way "
                                  f"episodes need {self.n_way}", source=source, field="n_way")
            smallest = min(counts.values())
            raise ConfigError(f"{self.name}: the {pool_name} pool has {large} classes with at least {need} images "
                              f"(k_shot + n_query = {self.k_shot} + {self.n_query}; its smallest class holds "
                              f"{smallest}); {self.n_way}-way episodes need {self.n_way}: lower k_shot, n_query "
                              f"or n_way", source=source, field="n_query")


# --------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class _Image:
    """One image to read, and where a problem with it is reported."""

    path: str
    #: how a message names the image (None: the message's source is the image itself)
    where: str | None
    source: str | None = None
    line: int | None = None
    field: str | None = None


def _read_one(path: str, size: int, grayscale: bool) -> np.ndarray | str:
    """An image as uint8 ``(C, size, size)``, or why it cannot be read."""
    try:
        with Image.open(path) as im:
            if im.size != (size, size):
                im.draft("L" if grayscale else "RGB", (size, size))  # JPEG: decode at a reduced scale
            out = im.convert("L" if grayscale else "RGB")
            if out.size != (size, size):
                out = out.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(out, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return array[None] if grayscale else array.transpose(2, 0, 1)


def _read_images(images: Sequence[_Image], size: int, grayscale: bool) -> torch.Tensor:
    """The images as one uint8 tensor ``(n, C, size, size)`` (read on a few threads); unreadable files are
    one DatasetError naming the first of them and how many more there are."""
    channels = 1 if grayscale else 3
    out = np.zeros((len(images), channels, size, size), dtype=np.uint8)
    problems = _Problems()
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda im: _read_one(im.path, size, grayscale), images, chunksize=64)
        for i, (image, result) in enumerate(zip(images, results)):
            if isinstance(result, str):
                what = f"image {image.where}" if image.where else "the image"
                problems.add("unreadable", f"cannot read {what}: {result}", source=image.source,
                             line=image.line, field=image.field)
            else:
                out[i] = result
    problems.raise_first({"unreadable": ("image cannot be read", "images cannot be read")})
    return torch.from_numpy(out)


def _pools(images: Mapping[str, list[_Image]], labels: Mapping[str, list[int]], size: int,
           grayscale: bool) -> EpisodicData:
    pools = []
    for name in POOLS:
        x = _read_images(images[name], size, grayscale)
        pools.append(LabelledPool(x, torch.tensor(labels[name], dtype=torch.int64)))
    return EpisodicData(*pools)


# ----------------------------------------------------------------------------------------- miniimagenet


@dataclass(frozen=True)
class _Row:
    line: int
    filename: str
    label: str


def read_split_csv(path: Path) -> list[_Row]:
    """The rows of a mini-ImageNet split CSV (header ``filename,label``), checked: a bad header or row is a
    DatasetError naming the file and line."""
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["filename", "label"]:
        got = "an empty file" if header is None else repr(",".join(header))
        raise DatasetError(f"expected the header 'filename,label', got {got}", source=source, line=1)
    rows, problems = [], _Problems()
    for record in reader:
        line = reader.line_num
        if not record or not any(cell.strip() for cell in record):
            continue
        if len(record) != 2:
            problems.add("columns", f"expected 2 columns (filename,label), got {len(record)}", source=source,
                         line=line)
            continue
        filename, label = record[0].strip(), record[1].strip()
        if not filename:
            problems.add("empty", "empty file name", source=source, line=line, field="filename")
        elif not label:
            problems.add("empty", "empty label", source=source, line=line, field="label")
        else:
            rows.append(_Row(line, filename, label))
    problems.raise_first({"columns": ("row has another column count", "rows have other column counts"),
                          "empty": ("row has an empty cell", "rows have empty cells")})
    if not rows:
        raise DatasetError("no rows after the header (a split needs images)", source=source, line=2)
    return rows


@tasks.register("miniimagenet")
class MiniImageNetTask(_FolderFewshotTask):
    """mini-ImageNet (or any dataset in its layout) from a local folder.

    Options: ``root`` (required: the folder of ``train.csv``, ``val.csv``, ``test.csv`` -- header
    ``filename,label`` -- and ``images/``), ``image_size`` (84: images are resized to squares), ``n_way``
    (5), ``k_shot`` (1), ``n_query`` (15). The pools: base = train.csv, val = val.csv, novel = test.csv."""

    name = "miniimagenet"

    def __init__(self, root: str | None = None, image_size: int = 84, n_way: int = 5, k_shot: int = 1,
                 n_query: int = 15, **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        what = "the mini-ImageNet folder holding train.csv, val.csv, test.csv and images/"
        self.root = _root(self.name, root, what)
        for file in SPLIT_FILES.values():
            if not (self.root / file).is_file():
                raise ConfigError(f"{self.name}: no such file (root must be {what})", source=str(self.root / file),
                                  field="root")
        if not (self.root / "images").is_dir():
            raise ConfigError(f"{self.name}: no such folder (root must be {what})",
                              source=str(self.root / "images"), field="root")
        self._episode_options(image_size, n_way, k_shot, n_query)

    def _csvs(self) -> list[Path]:
        return [self.root / SPLIT_FILES[pool] for pool in POOLS]

    def _pool_source(self, pool: str) -> str:
        return str(self.root / SPLIT_FILES[pool])

    def _stamps(self) -> list[tuple[int, int]]:
        stamps = []
        for path in self._csvs():
            try:
                stat = path.stat()
            except OSError:
                raise ConfigError(f"{self.name}: no such file (it was there when the task was made)",
                                  source=str(path), field="root") from None
            stamps.append((stat.st_size, stat.st_mtime_ns))
        return stamps

    def fingerprint(self) -> str:
        """Hash of the options and of the CSVs' contents (not of the images, nor of where the folder is)."""
        digest = hashlib.sha256(options_key(self._spec()).encode())
        for path in self._csvs():
            try:
                digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
            except OSError as exc:
                raise ConfigError(f"{self.name}: cannot read the file: {exc.strerror or exc}", source=str(path),
                                  field="root") from None
        return digest.hexdigest()[:16]

    def load(self) -> EpisodicData:
        return _load_miniimagenet(options_key({**self._images_spec(), "root": str(self.root),
                                               "stamps": self._stamps()}))


@lru_cache(maxsize=2)
def _load_miniimagenet(key: str) -> EpisodicData:
    spec = json.loads(key)
    root = Path(spec["root"])
    rows = {pool: read_split_csv(root / SPLIT_FILES[pool]) for pool in POOLS}
    # a class in two splits: named with both files and lines
    first_seen: dict[str, tuple[str, int]] = {}
    problems = _Problems()
    for pool in POOLS:
        file = SPLIT_FILES[pool]
        seen_here: set[str] = set()
        for row in rows[pool]:
            if row.label in seen_here:
                continue
            seen_here.add(row.label)
            if row.label in first_seen:
                other, line = first_seen[row.label]
                problems.add("shared", f"label {row.label!r} is also in {other} (line {line}): the splits' "
                                       f"classes must be disjoint", source=str(root / file), line=row.line,
                             field="label")
            else:
                first_seen[row.label] = (file, row.line)
    problems.raise_first({"shared": ("label is in two splits", "labels are in two splits")})
    class_id = {label: i for i, label in enumerate(sorted(first_seen))}
    images: dict[str, list[_Image]] = {}
    folder = root / "images"
    for pool in POOLS:
        source = str(root / SPLIT_FILES[pool])
        images[pool] = []
        for row in rows[pool]:
            path = folder / row.filename
            if not path.is_file():
                problems.add("missing", f"no image images/{row.filename}", source=source, line=row.line,
                             field="filename")
            images[pool].append(_Image(str(path), f"images/{row.filename}", source, row.line, "filename"))
        problems.raise_first({"missing": ("row names a missing image", "rows name missing images")})
    labels = {pool: [class_id[row.label] for row in rows[pool]] for pool in POOLS}
    return _pools(images, labels, spec["image_size"], False)


# ----------------------------------------------------------------------------------- image-folder-fewshot


def _class_folders(root: Path) -> list[str]:
    """The class folders of ``root`` (sub-folders not starting with a dot), sorted by name."""
    try:
        return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    except OSError as exc:
        raise ConfigError(f"cannot list the folder: {exc.strerror or exc}", source=str(root), field="root") from None


def _class_files(root: Path, classes: Sequence[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Per class, its image files (name, size, mtime), sorted; a class folder without images is a
    DatasetError naming the first of them and how many more there are."""
    files: dict[str, list[tuple[str, int, int]]] = {}
    problems = _Problems()
    for cls in classes:
        folder = root / cls
        found = []
        try:
            for entry in os.scandir(folder):
                if (entry.name.lower().endswith(IMAGE_SUFFIXES) and not entry.name.startswith(".")
                        and entry.is_file()):
                    stat = entry.stat()
                    found.append((entry.name, stat.st_size, stat.st_mtime_ns))
        except OSError as exc:
            problems.add("unlisted", f"cannot list the class folder: {exc.strerror or exc}", source=str(folder),
                         field="root")
            continue
        if not found:
            problems.add("empty", f"class folder {cls!r} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} image",
                         source=str(folder), field="root")
        files[cls] = sorted(found)
    problems.raise_first({"unlisted": ("class folder cannot be listed", "class folders cannot be listed"),
                          "empty": ("class folder holds no image", "class folders hold no image")})
    return files


def _fractions(task: str, split: object) -> tuple[float, float, float]:
    if isinstance(split, (list, tuple)) and len(split) == 3 and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in split):
        fractions = (float(split[0]), float(split[1]), float(split[2]))
        if abs(sum(fractions) - 1.0) <= 1e-6:
            return fractions
    raise ConfigError(f"{task}: split must be three positive fractions (base, val, novel) summing to 1, got "
                      f"{split!r}", field="split")


def _names(task: str, field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{task}: {field} must be a non-empty list of class folder names, got {value!r}",
                          field=field)
    duplicated = sorted({v for v in value if value.count(v) > 1})
    if duplicated:
        raise ConfigError(f"{task}: {field} names {duplicated[0]!r} more than once", field=field)
    return tuple(value)


@tasks.register("image-folder-fewshot")
class ImageFolderFewshotTask(_FolderFewshotTask):
    """A few-shot dataset of one folder per class (``root/<class>/*.png|*.jpg|*.jpeg``: CUB, Omniglot with
    its alphabets flattened, ...).

    Options: ``root`` (required), ``image_size`` (84), ``grayscale`` (false; true reads one channel, as for
    Omniglot), ``split`` (the base/val/novel class fractions, [0.5, 0.25, 0.25]: the classes, sorted by name,
    are shuffled with ``split_seed`` (0) and dealt in that order), or explicit ``base`` / ``val`` / ``novel``
    lists of class folder names (all three; ``split`` is then not allowed), ``n_way`` (5), ``k_shot`` (1),
    ``n_query`` (15)."""

    name = "image-folder-fewshot"

    def __init__(self, root: str | None = None, image_size: int = 84, grayscale: bool = False,
                 split: Sequence[float] | None = None, split_seed: int = 0, base: Sequence[str] | None = None,
                 val: Sequence[str] | None = None, novel: Sequence[str] | None = None, n_way: int = 5,
                 k_shot: int = 1, n_query: int = 15, **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        self.root = _root(self.name, root, "a folder of one sub-folder of images per class")
        if not isinstance(grayscale, bool):
            raise ConfigError(f"{self.name}: grayscale must be true or false, got {grayscale!r}", field="grayscale")
        self.grayscale = grayscale
        self.split_seed = _integer(self.name, "split_seed", split_seed, 0)
        self._episode_options(image_size, n_way, k_shot, n_query)
        folders = _class_folders(self.root)
        if not folders:
            raise ConfigError(f"{self.name}: the folder has no class sub-folders (expected root/<class>/*.png)",
                              source=str(self.root), field="root")
        lists = {"base": base, "val": val, "novel": novel}
        given = [k for k, v in lists.items() if v is not None]
        if given:
            if split is not None:
                raise ConfigError(f"{self.name}: give either split (fractions) or the class lists {', '.join(given)}, "
                                  f"not both", field="split")
            missing = [k for k in POOLS if lists[k] is None]
            if missing:
                raise ConfigError(f"{self.name}: explicit class lists need all of base, val and novel; "
                                  f"{', '.join(missing)} is missing", field=missing[0])
            self.split = None
            pools = {k: _names(self.name, k, lists[k]) for k in POOLS}
            known = set(folders)
            for k in POOLS:
                unknown = [c for c in pools[k] if c not in known]
                if unknown:
                    shown = ", ".join(repr(c) for c in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
                    raise ConfigError(f"{self.name}: {k} names {len(unknown)} class(es) with no folder under root: "
                                      f"{shown}", source=str(self.root), field=k)
            for a, b in (("base", "val"), ("base", "novel"), ("val", "novel")):
                shared = [c for c in pools[a] if c in set(pools[b])]
                if shared:
                    raise ConfigError(f"{self.name}: {a} and {b} share class(es) {shared[:3]}: few-shot pools must "
                                      f"be disjoint", field=b)
        else:
            self.split = list(_fractions(self.name, DEFAULT_SPLIT if split is None else split))
            pools = self._deal(folders)
        self.base, self.val, self.novel = (list(pools[k]) for k in POOLS)

    def _deal(self, folders: list[str]) -> dict[str, tuple[str, ...]]:
        assert self.split is not None
        n = len(folders)
        n_base, n_val = int(self.split[0] * n + 0.5), int(self.split[1] * n + 0.5)
        counts = {"base": n_base, "val": n_val, "novel": n - n_base - n_val}
        if min(counts.values()) < 1:
            raise ConfigError(f"{self.name}: split {self.split} of {n} classes leaves "
                              f"{', '.join(f'{k} {v}' for k, v in counts.items())}: every pool needs a class",
                              source=str(self.root), field="split")
        order = [folders[i] for i in np.random.default_rng(self.split_seed).permutation(n)]
        return {"base": tuple(sorted(order[:n_base])), "val": tuple(sorted(order[n_base:n_base + n_val])),
                "novel": tuple(sorted(order[n_base + n_val:]))}

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def _files(self) -> dict[str, list[tuple[str, int, int]]]:
        return _class_files(self.root, [*self.base, *self.val, *self.novel])

    def fingerprint(self) -> str:
        """Hash of the options and of the image file list with sizes and modification times (not the pixels)."""
        digest = hashlib.sha256(options_key(self._spec()).encode())
        digest.update(json.dumps(self._files(), sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def load(self) -> EpisodicData:
        return _load_image_folder(options_key({**self._images_spec(), "root": str(self.root),
                                               "files": self._files()}))


@lru_cache(maxsize=2)
def _load_image_folder(key: str) -> EpisodicData:
    spec = json.loads(key)
    root, files = Path(spec["root"]), spec["files"]
    class_id = {cls: i for i, cls in enumerate(sorted(files))}
    images: dict[str, list[_Image]] = {}
    labels: dict[str, list[int]] = {}
    for pool in POOLS:
        images[pool], labels[pool] = [], []
        for cls in spec[pool]:
            for name, _, _ in files[cls]:
                path = root / cls / name
                images[pool].append(_Image(str(path), None, str(path)))
                labels[pool].append(class_id[cls])
    return _pools(images, labels, spec["image_size"], spec["grayscale"])
