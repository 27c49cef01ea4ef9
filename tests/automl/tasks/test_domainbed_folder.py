"""domainbed-folder: environments and classes read from ROOT/<environment>/<class>/*.png|jpg, one clear error
per bad input."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from automl.components import construct
from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.domainbed_folder import DomainBedFolderTask
from automl.testing.tasks import TASK_CHECKS

ENVIRONMENTS = ("art", "cartoon", "photo")
CLASSES = ("dog", "horse")
PER_CLASS = 3


def write_domainbed(root: Path, per_class: int = PER_CLASS) -> Path:
    """A tiny DomainBed layout: 3 environments x 2 classes x ``per_class`` random 10x10 images (png/jpg)."""
    seed = 0
    for env in ENVIRONMENTS:
        for cls in CLASSES:
            (root / env / cls).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                pixels = np.random.default_rng(seed).integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / env / cls / f"{k}.{'png' if k % 2 else 'jpg'}")
                seed += 1
            (root / env / cls / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir(exist_ok=True)  # ignored: hidden
    return root


def conformance_cases(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (quick options, options that change the data) for the task conformance suite; the folder
    is written only when ``tmp`` exists (collection calls this with a path that does not)."""
    root = tmp / "domainbed"
    if tmp.exists():
        write_domainbed(root)
    return {"domainbed-folder": ({"root": str(root), "image_size": 8}, {"image_size": 6})}


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
def test_passes_the_task_conformance_suite(tmp_path, check):
    options, changed = conformance_cases(tmp_path)["domainbed-folder"]
    check("domainbed-folder", options, changed)


def test_environments_classes_sizes_and_default_roles(tmp_path):
    root = write_domainbed(tmp_path / "PACS")
    task = construct(tasks.get("domainbed-folder"), {"root": str(root), "image_size": 8}, kind="task",
                     name="domainbed-folder")
    info = task.info
    assert info.environments == ENVIRONMENTS and task.classes == CLASSES and info.num_classes == 2
    assert info.train == ("art", "cartoon") and info.test == ("photo",) and info.input_shape == (3, 8, 8)
    data = task.load()
    assert list(data.environments) == list(ENVIRONMENTS)
    for env in data.environments.values():
        assert env.x.shape == (2 * PER_CLASS, 3, 8, 8) and env.x.dtype == torch.float32
        assert 0 <= float(env.x.min()) and float(env.x.max()) <= 1 and float(env.x.max()) > 0.5
        assert env.y.tolist() == [0] * PER_CLASS + [1] * PER_CLASS
    x, y, index = data.pooled("train")
    assert len(x) == len(y) == 4 * PER_CLASS and index.tolist() == [0] * 6 + [1] * 6
    task.check()


def test_roles_image_size_and_max_per_class(tmp_path):
    root = write_domainbed(tmp_path / "PACS", per_class=5)
    task = DomainBedFolderTask(root=str(root), image_size=4, max_per_class=2, train=["photo"], val=["cartoon"],
                               test=["art"])
    assert (task.info.train, task.info.val, task.info.test) == (("photo",), ("cartoon",), ("art",))
    data = task.load()
    assert all(env.x.shape == (4, 3, 4, 4) for env in data.environments.values())
    full = DomainBedFolderTask(root=str(root), image_size=4).load().environments["art"]
    assert torch.equal(data.environments["art"].x[:2], full.x[[0, 4]])  # the first and last of the sorted files


def test_the_fingerprint_follows_the_files(tmp_path):
    root = write_domainbed(tmp_path / "PACS")
    before = DomainBedFolderTask(root=str(root)).fingerprint()
    Image.new("RGB", (10, 10)).save(root / "art" / "dog" / "extra.png")
    assert DomainBedFolderTask(root=str(root)).fingerprint() != before


def _error(kind: type[Exception], **options: Any) -> Exception:
    with pytest.raises(kind) as exc:
        DomainBedFolderTask(**options).load()
    return exc.value


def test_a_missing_or_unset_root_is_a_config_error(tmp_path):
    missing = _error(ConfigError, root=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(missing) and "no such folder" in str(missing)
    assert "root/<environment>/<class>/" in str(missing) and missing.field == "root"
    assert "required" in str(_error(ConfigError))
    assert _error(ConfigError, root=str(write_domainbed(tmp_path / "d")), image_size=0).field == "image_size"
    assert _error(ConfigError, root=str(tmp_path / "d"), max_per_class=0).field == "max_per_class"
    assert _error(ConfigError, root=str(tmp_path / "d"), test=["sketch"]).field == "test"


def test_a_single_environment_or_class_is_refused(tmp_path):
    (tmp_path / "one" / "art" / "dog").mkdir(parents=True)
    assert "expected at least two" in str(_error(ConfigError, root=str(tmp_path / "one")))
    (tmp_path / "one" / "photo" / "dog").mkdir(parents=True)
    error = _error(DatasetError, root=str(tmp_path / "one"))
    assert str(tmp_path / "one" / "art") in str(error) and "1 class folder" in str(error)


def test_class_folders_that_differ_across_environments_name_the_environment(tmp_path):
    root = write_domainbed(tmp_path / "PACS")
    (root / "photo" / "horse").rename(root / "photo" / "giraffe")
    error = _error(DatasetError, root=str(root))
    message = str(error)
    assert str(root / "photo") in message and "lacks 'horse'" in message and "has 'giraffe' too" in message
    assert "'art'" in message


def test_an_empty_class_folder_names_it(tmp_path):
    root = write_domainbed(tmp_path / "PACS")
    for file in (root / "cartoon" / "horse").iterdir():
        file.unlink()
    error = _error(DatasetError, root=str(root))
    assert str(root / "cartoon" / "horse") in str(error) and "holds no" in str(error)


def test_an_unreadable_image_names_the_file(tmp_path):
    root = write_domainbed(tmp_path / "PACS")
    bad = root / "photo" / "dog" / "0.jpg"
    bad.write_bytes(b"not a jpeg")
    error = _error(DatasetError, root=str(root))
    assert str(bad) in str(error) and "cannot read" in str(error)
    with pytest.raises(DatasetError, match="cannot read"):
        DomainBedFolderTask(root=str(root)).check()
