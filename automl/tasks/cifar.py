"""``cifar10`` and ``cifar100``: CIFAR read from a local copy of its python version (no download).

``root`` is the folder of the standard python-pickle layout, or its parent: CIFAR-10's
``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``), CIFAR-100's
``cifar-100-python/`` (``train``, ``test``); the ``batches.meta`` / ``meta`` files are not read. Relative
paths are resolved against the working directory. The validation split is a stratified, seeded
``val_fraction`` of the training batches; the test batch is the test split, held out of every search.
Images are float32 in [0, 1] of shape (N, 3, 32, 32), labels int64.

The batches are Python 2 pickles. They are read with a restricted unpickler that builds only what CIFAR's
files hold (dicts, lists, bytes, numbers and numpy arrays): a pickle naming anything else (``os.system``,
any other callable) is refused before it runs, since ``root`` is a user path and a plain ``pickle.load``
runs whatever a file asks.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from abc import abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.cache import options_key
from automl.tasks.supervised import ClassificationData, ClassificationInfo, ClassificationTask

#: pixels of one image, channels first (3 x 32 x 32), as a batch's ``data`` rows hold them
PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR version keeps its batches (file names inside ``folder``) and its labels."""

    title: str
    folder: str
    train: tuple[str, ...]
    test: str
    needs: str  # the layout's files, as error messages list them

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test)


CIFAR10 = CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      "test_batch", "data_batch_1..5, test_batch")
CIFAR100 = CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test", "train, test")


class CifarTask(ClassificationTask):
    """Shared by ``cifar10`` and ``cifar100``: the folder, its options and the pickles' reader."""

    layout: ClassVar[CifarLayout]

    def __init__(self, root: str | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 limit_train: int | None = None, **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        name = self.layout.title.lower().replace("-", "")
        if not 0.0 < _number(val_fraction, "val_fraction", name) < 1.0:
            raise ConfigError(f"{name}: val_fraction must be in (0, 1) (the share of the training batches held "
                              f"out for validation), got {val_fraction!r}", field="val_fraction")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise ConfigError(f"{name}: split_seed must be an integer >= 0, got {split_seed!r}", field="split_seed")
        if limit_train is not None and (isinstance(limit_train, bool) or not isinstance(limit_train, int)
                                        or limit_train < 1):
            raise ConfigError(f"{name}: limit_train must be a positive integer (the number of training images "
                              f"kept) or null, got {limit_train!r}", field="limit_train")
        self.root = find_folder(root, self.layout)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.limit_train = limit_train

    @property
    @abstractmethod
    def num_classes(self) -> int: ...

    @property
    @abstractmethod
    def label_key(self) -> str:
        """The batch dict's key of the labels this task reads."""

    @property
    def info(self) -> ClassificationInfo:
        return ClassificationInfo(input_shape=(3, 32, 32), num_classes=self.num_classes)

    def options(self) -> dict[str, Any]:
        return {**{k: v for k, v in vars(self).items() if not k.startswith("_")}, "root": str(self.root)}

    def _spec(self) -> dict[str, Any]:
        """What the data depends on, apart from the files' contents."""
        return {"layout": self.layout.title, "label_key": self.label_key, "num_classes": self.num_classes,
                "val_fraction": self.val_fraction, "split_seed": self.split_seed, "limit_train": self.limit_train}

    def fingerprint(self) -> str:
        """Hash of the options and of the batch files' contents (not of where the folder is)."""
        digest = hashlib.sha256(options_key(self._spec()).encode())
        for name, (size, mtime) in zip(self.layout.files, self._stamps()):
            digest.update(name.encode())
            digest.update(_file_digest(str(self.root / name), size, mtime))
        return digest.hexdigest()[:16]

    def load(self) -> ClassificationData:
        return _load(options_key({**self._spec(), "root": str(self.root), "stamps": self._stamps()}))

    def _stamps(self) -> list[tuple[int, int]]:
        """Size and modification time of each batch file (a file gone since the task was made: a ConfigError)."""
        stamps = []
        for name in self.layout.files:
            try:
                stat = (self.root / name).stat()
            except OSError:
                raise ConfigError(f"{self.root / name}: no such file ({self.layout.title} python layout needs "
                                  f"{self.layout.needs})", field="root") from None
            stamps.append((stat.st_size, stat.st_mtime_ns))
        return stamps

    def check(self) -> None:
        """Read (and cache) the batches: a broken file is reported once, before a search starts."""
        self.load()


@tasks.register("cifar10")
class Cifar10Task(CifarTask):
    """CIFAR-10 (60,000 32x32 colour images, 10 classes) from a local ``cifar-10-batches-py`` folder.

    Options: ``root`` (required: that folder or its parent), ``val_fraction`` (0.1 of the training batches,
    stratified), ``split_seed`` (0), ``limit_train`` (a stratified number of training images to keep)."""

    layout: ClassVar[CifarLayout] = CIFAR10

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def label_key(self) -> str:
        return "labels"


@tasks.register("cifar100")
class Cifar100Task(CifarTask):
    """CIFAR-100 (60,000 32x32 colour images, 100 classes) from a local ``cifar-100-python`` folder.

    Options: those of ``cifar10``, and ``labels`` (``fine``: 100 classes, the default; ``coarse``: 20
    superclasses)."""

    layout: ClassVar[CifarLayout] = CIFAR100

    def __init__(self, root: str | None = None, labels: str = "fine", val_fraction: float = 0.1,
                 split_seed: int = 0, limit_train: int | None = None, **options: Any) -> None:
        if labels not in ("fine", "coarse"):
            raise ConfigError(f"cifar100: labels must be 'fine' (100 classes) or 'coarse' (20 superclasses), got "
                              f"{labels!r}", field="labels")
        self.labels = labels
        super().__init__(root=root, val_fraction=val_fraction, split_seed=split_seed, limit_train=limit_train,
                         **options)

    @property
    def num_classes(self) -> int:
        return 100 if self.labels == "fine" else 20

    @property
    def label_key(self) -> str:
        return f"{self.labels}_labels"


def find_folder(root: object, layout: CifarLayout) -> Path:
    """The folder holding ``layout``'s batch files: ``root`` itself or its ``layout.folder`` subfolder;
    a missing folder or file is a ConfigError naming it."""
    name = layout.title.lower().replace("-", "")
    if root is None:
        raise ConfigError(f"{name}: option 'root' (the {layout.folder} folder of {layout.title}'s python version, or "
                          "its parent) is required", field="root")
    if not isinstance(root, (str, Path)) or not str(root).strip():
        raise ConfigError(f"{name}: root must be a folder path, got {root!r}", field="root")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder (expected the {layout.folder} folder of {layout.title}'s python "
                          "version, or its parent)", field="root")
    folder = path / layout.folder if (path / layout.folder).is_dir() else path
    if folder == path and not any((path / f).is_file() for f in layout.files):
        raise ConfigError(f"{path}: neither a {layout.folder} folder nor its parent ({layout.title} python layout "
                          f"needs {layout.needs})", field="root")
    for file in layout.files:
        if not (folder / file).is_file():
            raise ConfigError(f"{folder / file}: no such file ({layout.title} python layout needs {layout.needs})",
                              field="root")
    return folder


def _number(value: object, field: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: {field} must be a number, got {value!r}", field=field)
    return float(value)


# ------------------------------------------------------------------------------------------- reading


def _array_reconstructors() -> dict[tuple[str, str], Any]:
    """The globals a CIFAR pickle may name: numpy's array and dtype reconstruction, under the module names
    numpy 1 (``numpy.core``, what the Python 2 files name) and numpy 2 (``numpy._core``) pickle them with."""
    sample = np.zeros(1, dtype=np.uint8)
    reconstruct = sample.__reduce__()[0]  # numpy's _reconstruct, without importing a private module
    frombuffer = sample.__reduce_ex__(5)[0]  # _frombuffer: protocol 5 pickles of contiguous arrays
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and numpy arrays: any other global a
    pickle names is refused before it is called."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source
        self.allowed = _array_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise ConfigError(f"refused to unpickle: the file names {module}.{name}, which a CIFAR batch never holds "
                              "(only numpy arrays, lists, dicts, strings and numbers are read); nothing was run",
                              source=self.source)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise ConfigError("refused to unpickle: the file holds a persistent reference, which a CIFAR batch never "
                          "holds", source=self.source)


def read_pickle(path: Path) -> Any:
    """The object a CIFAR pickle holds, read with :class:`_BatchUnpickler`; a corrupt, truncated or hostile
    file is a ConfigError naming it."""
    try:
        raw = path.read_bytes()  # from memory, a length past the end is "truncated", never a huge allocation
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from None
    try:
        return _BatchUnpickler(io.BytesIO(raw), str(path)).load()
    except ConfigError:
        raise
    except MemoryError:
        raise ConfigError("cannot read the pickle (it asks for more memory than there is); the file is corrupt or "
                          "truncated", source=str(path)) from None
    except Exception as exc:  # any other failure inside the unpickler means an unusable file
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ConfigError(f"cannot read the pickle ({type(exc).__name__}{': ' + detail if detail else ''}); the file "
                          "is corrupt or truncated", source=str(path)) from None


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's images (uint8, (N, 3072)) and labels (int64, in [0, num_classes)), checked."""
    doc = read_pickle(path)
    source = str(path)
    if not isinstance(doc, dict):
        raise ConfigError(f"expected a pickled dict with keys b'data' and b'{label_key}', got a {type(doc).__name__}",
                          source=source)
    data, labels = _field(doc, "data", source, label_key), _field(doc, label_key, source, label_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS):
        got = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else f"a {type(data).__name__}")
        raise ConfigError(f"expected a uint8 array of shape (N, {PIXELS}) (N images of 3x32x32, channels first), "
                          f"got {got}", source=source, field="data")
    if isinstance(labels, np.ndarray):
        values = labels
    elif isinstance(labels, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        values = np.asarray(labels, dtype=np.int64) if labels else np.zeros(0, dtype=np.int64)
    else:
        raise ConfigError(f"expected a list of integer class ids, got a {type(labels).__name__}"
                          + (" holding non-integers" if isinstance(labels, (list, tuple)) else ""),
                          source=source, field=label_key)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ConfigError(f"expected a list of integer class ids, got a {values.dtype} array of shape {values.shape}",
                          source=source, field=label_key)
    if len(values) != len(data):
        raise ConfigError(f"{len(values)} labels for {len(data)} images", source=source, field=label_key)
    if len(values) == 0:
        raise ConfigError("the batch holds no images", source=source, field="data")
    outside = (values < 0) | (values >= num_classes)
    if outside.any():
        raise ConfigError(f"{int(outside.sum())} label(s) outside 0..{num_classes - 1}, e.g. "
                          f"{int(values[outside][0])}", source=source, field=label_key)
    return data, values.astype(np.int64)


def _field(doc: dict[Any, Any], key: str, source: str, label_key: str) -> Any:
    """``doc[b'key']`` (what Python 2 pickles read with encoding='bytes' hold), or ``doc['key']``."""
    for candidate in (key.encode(), key):
        if candidate in doc:
            return doc[candidate]
    keys = ", ".join(repr(k) for k in list(doc)[:8]) or "none"
    raise ConfigError(f"missing (a CIFAR batch holds b'data' and b'{label_key}'; this one has {keys})",
                      source=source, field=key)


def _images(data: np.ndarray) -> torch.Tensor:
    """uint8 rows of 3072 pixels -> float32 images in [0, 1] of shape (N, 3, 32, 32)."""
    images = data.reshape(-1, 3, 32, 32).astype(np.float32)
    images /= 255.0
    return torch.from_numpy(images)


@lru_cache(maxsize=2)
def _load(key: str) -> ClassificationData:
    from sklearn.model_selection import train_test_split

    spec = json.loads(key)
    layout = CIFAR10 if spec["layout"] == CIFAR10.title else CIFAR100
    root = Path(spec["root"])
    label_key, num_classes = spec["label_key"], spec["num_classes"]
    parts = [read_batch(root / name, label_key, num_classes) for name in layout.train]
    x = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    test_x, test_y = read_batch(root / layout.test, label_key, num_classes)
    index = np.arange(len(y))
    seed = spec["split_seed"]
    try:
        train, val = train_test_split(index, test_size=spec["val_fraction"], random_state=seed, stratify=y)
    except ValueError as exc:
        raise ConfigError(f"cannot draw a stratified validation split of {spec['val_fraction']} from "
                          f"{len(y)} training images: {exc}", source=str(root), field="val_fraction") from None
    limit = spec["limit_train"]
    if limit is not None and limit < len(train):
        try:
            train, _ = train_test_split(train, train_size=limit, random_state=seed, stratify=y[train])
        except ValueError as exc:
            raise ConfigError(f"cannot draw a stratified subset of {limit} of {len(train)} training images: {exc}",
                              source=str(root), field="limit_train") from None
    train, val = np.sort(train), np.sort(val)
    return ClassificationData(_images(x[train]), torch.from_numpy(y[train]), _images(x[val]),
                              torch.from_numpy(y[val]), _images(test_x), torch.from_numpy(test_y))


@lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    """sha256 of a file's contents; ``size`` and ``mtime_ns`` key the cache (a rewritten file is hashed again)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()
