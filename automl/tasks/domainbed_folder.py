"""``domainbed-folder``: a multi-environment image dataset in DomainBed's layout,
``root/<environment>/<class>/*.jpg|*.jpeg|*.png`` (PACS, VLCS, OfficeHome, TerraIncognita ship so)::

    task:
      name: domainbed-folder
      options: {root: /data/PACS, image_size: 32, test: [sketch]}

Environments are the sub-folders of ``root`` and classes the sub-folders of each environment (sorted by
name; names starting with a dot are skipped); every environment must have the same class folders, and the
class ids are their indices in sorted order. Images are resized (PIL, bilinear) to ``image_size`` squares
and given as float ``(n, 3, S, S)`` tensors in [0, 1]. Bad input is one :class:`ConfigError` /
:class:`DatasetError` naming the folder or file and what was expected: a missing root, fewer than two
environments, class folders that differ between environments, a class folder without images, an image
that cannot be read.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.cache import options_key
from automl.tasks.environments import (
    EnvironmentData,
    EnvironmentsData,
    EnvironmentsInfo,
    EnvironmentsTask,
    default_roles,
)
from automl.tasks.fewshot_folders import _class_files, _class_folders, _Image, _integer, _read_images, _root

NAME = "domainbed-folder"
LAYOUT = "root/<environment>/<class>/*.jpg|png"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


@tasks.register(NAME)
class DomainBedFolderTask(EnvironmentsTask):
    """Options: ``root`` (required: one folder per environment, one sub-folder of images per class),
    ``image_size`` (32), ``max_per_class`` (none: every image; n: at most n images of each class in each
    environment, evenly spaced over the sorted file names), ``train``, ``val``, ``test`` (environment
    folder names; default: test on the last in sorted order, train on those no other role names)."""

    def __init__(self, root: str | None = None, image_size: int = 32, max_per_class: int | None = None,
                 train: Sequence[str] | None = None, val: Sequence[str] | None = None,
                 test: Sequence[str] | None = None) -> None:
        super().__init__()
        self.root = _root(NAME, root, f"a DomainBed dataset folder, {LAYOUT}")
        self.image_size = _integer(NAME, "image_size", image_size, 1)
        self.max_per_class = None if max_per_class is None else _integer(NAME, "max_per_class", max_per_class, 1)
        environments = _class_folders(self.root)
        if len(environments) < 2:
            raise ConfigError(f"{NAME}: found {len(environments)} environment folder(s); expected at least two "
                              f"({LAYOUT})", source=str(self.root), field="root")
        self._environments = tuple(environments)
        self._classes = self._check_classes()
        self.train, self.val, self.test = default_roles(self._environments, train, val, test, task=NAME)

    def _check_classes(self) -> tuple[str, ...]:
        """The class folders every environment shares; a DatasetError naming the first environment whose
        class folders differ from the first environment's."""
        first_env, *others = self._environments
        classes = _class_folders(self.root / first_env)
        if len(classes) < 2:
            raise DatasetError(f"environment {first_env!r} has {len(classes)} class folder(s); expected at least "
                               f"two ({LAYOUT})", source=str(self.root / first_env), field="root")
        for env in others:
            found = _class_folders(self.root / env)
            if found != classes:
                missing = [c for c in classes if c not in found]
                extra = [c for c in found if c not in classes]
                parts = ([f"lacks {_listed(missing)}"] if missing else []) + ([f"has {_listed(extra)} too"]
                                                                               if extra else [])
                raise DatasetError(f"environment {env!r} {' and '.join(parts)}: every environment needs the class "
                                   f"folders of {first_env!r} ({_listed(classes)})", source=str(self.root / env),
                                   field="root")
        return tuple(classes)

    @property
    def classes(self) -> tuple[str, ...]:
        """The class folder names; class ``i`` is ``classes[i]``."""
        return self._classes

    @property
    def info(self) -> EnvironmentsInfo:
        """From the folder names alone (no image is read)."""
        return EnvironmentsInfo(input_shape=(3, self.image_size, self.image_size), num_classes=len(self._classes),
                                environments=self._environments, train=self.train, val=self.val, test=self.test)

    def options(self) -> dict[str, Any]:
        return {"root": str(self.root), "image_size": self.image_size, "max_per_class": self.max_per_class,
                "train": self.train, "val": self.val, "test": self.test}

    def _files(self) -> dict[str, dict[str, list[tuple[str, int, int]]]]:
        """Per environment and class, the image files read (name, size, mtime); a class folder without
        images is a DatasetError naming it."""
        out = {}
        for env in self._environments:
            files = _class_files(self.root / env, self._classes)
            if self.max_per_class is not None:
                files = {c: [f[int(i)] for i in np.unique(np.linspace(0, len(f) - 1, self.max_per_class).round())]
                         if len(f) > self.max_per_class else f for c, f in files.items()}
            out[env] = files
        return out

    def _spec(self) -> dict[str, Any]:
        return {"task": NAME, "environments": self._environments, "classes": self._classes,
                **{k: v for k, v in self.options().items() if k != "root"}}

    def fingerprint(self) -> str:
        """Hash of the options, the folder names and the image file list with sizes and modification times
        (not the pixels, nor where the folder is)."""
        digest = hashlib.sha256(options_key(self._spec()).encode())
        digest.update(json.dumps(self._files(), sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def check(self) -> None:
        """Every image can be read (before a search starts rather than in its first trial)."""
        self.load()

    def load(self) -> EnvironmentsData:
        parts = _load(options_key({"root": str(self.root), "image_size": self.image_size, "classes": self._classes,
                                   "files": self._files()}))
        return EnvironmentsData(environments={env: parts[env] for env in self._environments}, train=self.train,
                                val=self.val, test=self.test)


@lru_cache(maxsize=2)
def _load(key: str) -> dict[str, EnvironmentData]:
    spec = json.loads(key)
    root, out = Path(spec["root"]), {}
    for env, files in spec["files"].items():
        images, labels = [], []
        for label, cls in enumerate(spec["classes"]):
            for name, _, _ in files[cls]:
                path = str(root / env / cls / name)
                images.append(_Image(path, None, path))
                labels.append(label)
        x = _read_images(images, spec["image_size"], False).float().div_(255.0)
        out[env] = EnvironmentData(x, torch.tensor(labels, dtype=torch.int64))
    return out
