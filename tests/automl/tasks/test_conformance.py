"""Every built-in task passes the task conformance suite (automl.testing.tasks)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automl.tasks.base import tasks
from automl.testing.tasks import TASK_CHECKS
from tests.automl.tasks.test_cifar import conformance_cases as cifar_cases
from tests.automl.tasks.test_colored_digits import conformance_cases as colored_digits_cases
from tests.automl.tasks.test_domainbed_folder import conformance_cases as domainbed_folder_cases
from tests.automl.tasks.test_fewshot_folders import conformance_cases as fewshot_folder_cases
from tests.automl.tasks.test_gaussian_envs import conformance_cases as gaussian_envs_cases
from tests.automl.tasks.test_once import conformance_cases as once_cases
from tests.automl.tasks.test_text import _sst2

SMALL_TEXT = {"n_corpus": 200, "n_corpus_val": 50, "n_train": 100, "n_val": 50}


def coco_options(tmp: Path) -> dict[str, Any]:
    """A COCO-format dataset on disk (the shapes generator writes real COCO JSON and PNGs)."""
    from automl.tasks.shapes_detection import ShapesDetectionTask

    shapes = ShapesDetectionTask(root=str(tmp / "coco-src"), train_images=6, val_images=4, test_images=3)
    shapes.load()
    folder = shapes.folder
    return {"train_annotations": str(folder / "train.json"), "train_images": str(folder / "train"),
            "val_annotations": str(folder / "val.json"), "val_images": str(folder / "val"),
            "test_annotations": str(folder / "test.json"), "test_images": str(folder / "test")}


def cases(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (quick options, options that change the data)."""
    shapes = {"root": str(tmp / "shapes"), "train_images": 6, "val_images": 4, "test_images": 3}
    return {
        "coco": (coco_options(tmp) if tmp.exists() else {}, {"image_size": [32, 32]}),
        "digits": ({}, {"split_seed": 1}),
        "digits-source": ({}, {"split_seed": 1}),
        "digits-transfer": ({"classes": [5, 6]}, {"rotation": 30.0}),
        "rotated-digits": ({"angles": [0, 30]}, {"deal_seed": 1}),
        "digits-fewshot": ({}, {"k_shot": 2}),
        "glyphs-fewshot": ({"per_pool": 60}, {"seed": 1}),
        "synthetic-text": (SMALL_TEXT, {"seed": 1}),
        "glue": ({"path": str(_sst2(tmp / "SST-2")), "max_len": 16, "vocab_size": 200}, {"max_len": 24}),
        "shapes-detection": (shapes, {"seed": 1}),
        **cifar_cases(tmp),
        **fewshot_folder_cases(tmp),
        **colored_digits_cases(),
        **gaussian_envs_cases(),
        **domainbed_folder_cases(tmp),
        **once_cases(tmp),
    }


def test_every_registered_task_has_a_case():
    assert set(tasks.names()) == set(cases(Path("/nonexistent")))


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(cases(Path("/nonexistent"))))
def test_built_in_tasks_pass_the_conformance_suite(tmp_path, name, check):
    options, changed = cases(tmp_path)[name]
    check(name, options, changed)
