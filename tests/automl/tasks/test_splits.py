"""Every built-in task's test split: held out of every search, its size, disjoint from train and validation,
a function of the seed, and the splits a search sees left as they were before it existed where possible."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.errors import ConfigError, DatasetError
from automl.tasks.coco import CocoTask
from automl.tasks.digits import DigitsTask
from automl.tasks.digits_transfer import DigitsSourceTask, DigitsTransferTask
from automl.tasks.glue import GlueTask
from automl.tasks.shapes_detection import ShapesDetectionTask
from automl.tasks.supervised import ClassificationData
from automl.tasks.synthetic_text import SyntheticTextTask
from automl.testing import tasks as task_checks
from automl.testing.tasks import check_test_split_is_held_out, split_examples
from tests.automl.tasks.test_detection import _soda_doc, _write

SMALL_TEXT = {"n_corpus": 200, "n_corpus_val": 50, "n_train": 100, "n_val": 50}


def _rows(t: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in t}


def _disjoint(data: Any) -> None:
    views = split_examples(data)
    test = {x.numpy().tobytes() for x in views["test"]}
    assert test and not any(x.numpy().tobytes() in test for split in ("train", "val") for x in views[split])


def _config_error(make: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.field == field and field in str(caught.value)


# ------------------------------------------------------------------------------------- the check itself


def test_the_held_out_check_finds_a_test_example_that_is_also_a_train_example(monkeypatch):
    x, y = torch.arange(40.0).reshape(10, 4), torch.arange(10) % 2

    class Leaky:
        def load(self) -> ClassificationData:
            return ClassificationData(x[:6], y[:6], x[6:8], y[6:8], x[5:10], y[5:10])  # x[5] twice

    monkeypatch.setattr(task_checks, "make_task", lambda name, options: Leaky())
    with pytest.raises(AssertionError, match="1 train example"):
        check_test_split_is_held_out("leaky", {}, {})


# ------------------------------------------------------------------------------------- digits family


def test_digits_source_holds_out_a_stratified_test_split_and_keeps_its_validation_split():
    data = DigitsSourceTask().load()
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (540, 181, 180)  # of 901 digits 0-4
    assert torch.bincount(data.test_y).tolist() == [36] * 5  # stratified
    _disjoint(data)
    before = DigitsSourceTask(test_fraction=0).load()  # the split as it was before the test split existed
    assert before.test_x is None and len(before.train_x) == 720
    assert torch.equal(before.val_x, data.val_x) and torch.equal(before.val_y, data.val_y)
    assert _rows(data.train_x.flatten(1)) | _rows(data.test_x.flatten(1)) == _rows(before.train_x.flatten(1))
    again, other = DigitsSourceTask().load(), DigitsSourceTask(split_seed=1).load()
    assert torch.equal(again.test_x, data.test_x) and not torch.equal(other.test_x, data.test_x)
    _config_error(lambda: DigitsSourceTask(test_fraction=0.75), "test_fraction")
    _config_error(lambda: DigitsSourceTask(val_fraction=1.0), "val_fraction")


@pytest.mark.parametrize("options", [{}, {"subsample": 0.3, "noise": 0.2, "rotation": 20.0, "size": 12}])
def test_digits_transfer_test_split_is_transformed_not_subsampled_and_validation_ignores_it(options):
    data = DigitsTransferTask(classes=[5, 6, 7], **options).load()
    assert data.test_x is not None and data.test_y is not None
    assert data.test_x.shape[1:] == data.val_x.shape[1:] == data.train_x.shape[1:]
    assert len(data.test_x) == 109 and len(data.val_x) == 163  # 0.2 and 0.3 of the 542 digits 5-7
    assert len(data.train_x) == (270 if not options else 81)  # the rest; a subsample takes 30% of it
    _disjoint(data)
    before = DigitsTransferTask(classes=[5, 6, 7], test_fraction=0, **options).load()
    assert before.test_x is None
    assert torch.equal(before.val_x, data.val_x) and torch.equal(before.val_y, data.val_y)
    other = DigitsTransferTask(classes=[5, 6, 7], seed=1, **options).load()
    assert not torch.equal(other.test_x, data.test_x)
    _config_error(lambda: DigitsTransferTask(test_fraction=0.65), "test_fraction")
    _config_error(lambda: DigitsTransferTask(test_fraction=-0.1), "test_fraction")


def test_digits_keeps_its_test_split():
    data = DigitsTask().load()
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (1077, 360, 360)
    _disjoint(data)


# ------------------------------------------------------------------------------------- text


def test_synthetic_text_test_split_comes_from_its_own_seed_streams():
    task = SyntheticTextTask(**SMALL_TEXT, n_test=60, n_corpus_test=40)
    data = task.load()
    assert data.test_ids is not None and data.test_y is not None and data.corpus_test is not None
    assert data.test_ids.shape == (60, 64) and data.corpus_test.shape == (40, 64)
    assert int(data.test_y.sum()) == 30  # balanced
    assert torch.equal(task.is_matched(data.test_ids), data.test_y.bool())  # label 1 <=> well nested
    assert task.is_matched(data.corpus_test).all()
    _disjoint(data)
    before = SyntheticTextTask(**SMALL_TEXT, n_test=0, n_corpus_test=0).load()  # no test split: as before
    assert before.test_ids is None and before.corpus_test is None
    for name in ("corpus", "corpus_val", "train_ids", "train_y", "val_ids", "val_y"):
        assert torch.equal(getattr(before, name), getattr(data, name)), name
    again = SyntheticTextTask(**SMALL_TEXT, n_test=60, n_corpus_test=40).load()
    other = SyntheticTextTask(**SMALL_TEXT, n_test=60, n_corpus_test=40, seed=1).load()
    assert torch.equal(again.test_ids, data.test_ids) and not torch.equal(other.test_ids, data.test_ids)
    default = SyntheticTextTask(**SMALL_TEXT).load()
    assert default.test_ids is not None and default.corpus_test is not None
    assert len(default.test_ids) == len(default.corpus_test) == 1000
    assert SyntheticTextTask(**SMALL_TEXT).fingerprint() != SyntheticTextTask(**SMALL_TEXT, n_test=10).fingerprint()


def test_synthetic_text_test_options_are_checked():
    _config_error(lambda: SyntheticTextTask(n_test=1), "n_test")
    _config_error(lambda: SyntheticTextTask(n_test=-1), "n_test")
    _config_error(lambda: SyntheticTextTask(n_corpus_test=2.5), "n_corpus_test")
    task = SyntheticTextTask(**SMALL_TEXT, n_test=0, n_corpus_test=10)
    one = task._sequences(np.random.default_rng(0), np.zeros((48, 4), dtype=np.int64), np.ones(1, bool))
    task._sequences = lambda rng, successors, forward: one.repeat(len(forward), 0)  # a language of one sequence
    _config_error(task.load, "n_corpus_test")


def _glue(folder: Path) -> Path:
    """SST-2 rows: 30 unique sentences, one sentence twice, and two sentences that are also dev rows."""
    rows = [f"sentence number {i}\t{i % 2}" for i in range(30)]
    rows += ["said twice\t1", "said twice\t1", "also in dev\t0", "also in dev too\t1"]
    dev = ["also in dev\t0", "also in dev too\t1", "only in dev\t0", "only in dev too\t1"]
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(dev) + "\n")
    return folder


def test_glue_holds_out_a_seeded_part_of_train_whose_inputs_occur_nowhere_else(tmp_path):
    path = str(_glue(tmp_path / "SST-2"))
    data = GlueTask(path=path, max_len=12, vocab_size=120, test_fraction=0.25).load()
    assert data.test_ids is not None and data.test_y is not None and data.corpus_test is not None
    assert len(data.test_ids) == 8 and len(data.train_ids) == 26 and len(data.val_ids) == 4  # round(0.25 * 34)
    assert torch.equal(data.corpus_test, data.test_ids) and torch.equal(data.corpus, data.train_ids)
    _disjoint(data)
    default = GlueTask(path=path, max_len=12, vocab_size=120).load()
    assert default.test_ids is not None and len(default.test_ids) == 3  # round(0.1 * 34)
    before = GlueTask(path=path, max_len=12, vocab_size=120, test_fraction=0).load()
    assert before.test_ids is None and len(before.train_ids) == 34
    assert torch.equal(before.val_y, data.val_y)  # the dev rows do not depend on the test split
    again = GlueTask(path=path, max_len=12, vocab_size=120, test_fraction=0.25).load()
    other = GlueTask(path=path, max_len=12, vocab_size=120, test_fraction=0.25, seed=1).load()
    assert torch.equal(again.test_ids, data.test_ids) and not torch.equal(other.test_ids, data.test_ids)
    assert GlueTask(path=path).fingerprint() != GlueTask(path=path, test_fraction=0.2).fingerprint()
    _config_error(lambda: GlueTask(path=path, test_fraction=0.9), "test_fraction")
    _config_error(lambda: GlueTask(path=path, test_fraction=True), "test_fraction")


def test_glue_without_a_row_to_hold_out_names_test_fraction(tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    rows = "sentence\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(6))
    (folder / "train.tsv").write_text(rows)
    (folder / "dev.tsv").write_text(rows)  # every train input is a dev input
    _config_error(lambda: GlueTask(path=str(folder), max_len=8, vocab_size=60).load(), "test_fraction")
    assert GlueTask(path=str(folder), max_len=8, vocab_size=60, test_fraction=0).load().test_ids is None


# ------------------------------------------------------------------------------------- detection


def test_shapes_detection_test_split_leaves_train_and_val_as_they_were(tmp_path):
    small = {"root": str(tmp_path), "train_images": 8, "val_images": 4}
    data = ShapesDetectionTask(**small, test_images=5).load()
    assert data.test is not None and (len(data.train), len(data.val), len(data.test)) == (8, 4, 5)
    _disjoint(data)
    before = ShapesDetectionTask(**small, test_images=0).load()
    assert before.test is None
    for split in ("train", "val"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(before, split).images, getattr(data, split).images))
    default = ShapesDetectionTask(root=str(tmp_path), train_images=2, val_images=2)
    assert default.test_images == 96
    again = ShapesDetectionTask(**small, test_images=5).load()
    other = ShapesDetectionTask(**small, test_images=5, seed=1).load()
    assert again.test is not None and other.test is not None
    assert all(torch.equal(a, b) for a, b in zip(again.test.images, data.test.images))
    assert not torch.equal(other.test.images[0], data.test.images[0])


def test_shapes_detection_test_where_and_bad_test_options(tmp_path):
    task = ShapesDetectionTask(root=str(tmp_path), train_images=8, val_images=4, test_images=12, night_fraction=0.5,
                               train_where={"period": "daytime"}, val_where={"period": "daytime"},
                               test_where={"period": "night"})
    data = task.load()
    assert data.test is not None and 0 < len(data.test) < 12
    assert all(a["period"] == "night" for a in data.test.attributes)
    _config_error(lambda: ShapesDetectionTask(test_images=-1), "test_images")
    _config_error(lambda: ShapesDetectionTask(test_images=0, test_where={"period": "daytime"}), "test_where")
    _config_error(lambda: ShapesDetectionTask(test_where={"period": "night"}), "test_where")  # no night images


def test_coco_test_split_from_a_file_or_from_the_validation_file(tmp_path):
    ann = _write(tmp_path / "soda", _soda_doc())
    images = str(tmp_path / "soda" / "images")
    paths = dict(train_annotations=str(ann), train_images=images, val_annotations=str(ann), val_images=images,
                 image_size=[32, 32], train_where={"weather": "clear"}, val_where={"weather": "rainy"})
    assert CocoTask(**paths).load().test is None  # optional: none unless asked for
    from_val = CocoTask(**paths, test_where={"weather": "overcast"}).load()
    assert from_val.test is not None and from_val.test.image_ids == [13, 16]
    assert from_val.train.image_ids == [11, 14] and from_val.val.image_ids == [12, 15]
    other = _soda_doc()
    other["images"] = [{**im, "file_name": f"test_{im['file_name']}"} for im in other["images"]]
    test_ann = _write(tmp_path / "test", other)
    from_file = CocoTask(**paths, test_annotations=str(test_ann), test_images=str(tmp_path / "test" / "images"))
    data = from_file.load()
    assert data.test is not None and len(data.test) == 6 and data.test.images[0].shape == (3, 32, 32)
    assert from_file.fingerprint() != CocoTask(**paths).fingerprint()
    with pytest.raises(DatasetError, match="test_where keeps 1 image file\\(s\\) of the training split"):
        CocoTask(**paths, test_where={"period": "night"}).load()  # night: 14 (clear: a training image) and 16
    with pytest.raises(DatasetError, match="the test split holds 2 image file\\(s\\) of the training split"):
        CocoTask(**paths, test_annotations=str(ann), test_images=images).load()
    _config_error(lambda: CocoTask(**paths, test_annotations=str(test_ann)), "test_images")
    _config_error(lambda: CocoTask(**paths, test_images=images), "test_annotations")
